/**
 * Where the catalog keeps Consul's tables in the consensus store, one key per row, so a change to
 * a row is one revision and every read can tell its CreateIndex and ModifyIndex:
 *
 *   /c/n/<node>                 a node           (StoredNode JSON)
 *   /c/s/<node>/<service id>    a node's service (StoredService JSON)
 *   /c/h/<node>/<check id>      a node's check   (StoredCheck JSON)
 *   /kv/<key>                   a KV entry       (kv-codec.ts envelope)
 *   /se/<session id>            a session        (StoredSession JSON), on its consensus lease
 *   /sys/...                    the catalog's own bookkeeping (the reconciler's lock)
 *
 * Node names, service and check IDs are matched case-insensitively, as Consul's indexes do, so
 * their key components are lower-cased; each component is URI-encoded so "/" cannot split it.
 */

export type Table = 'nodes' | 'services' | 'checks' | 'kvs' | 'sessions' | 'system';

const PREFIX: Record<Table, string> = { nodes: '/c/n/', services: '/c/s/', checks: '/c/h/', kvs: '/kv/', sessions: '/se/', system: '/sys/' };

function component(name: string): string {
  return encodeURIComponent(name.toLowerCase());
}

export const keys = {
  node: (node: string) => `${PREFIX.nodes}${component(node)}`,
  service: (node: string, serviceId: string) => `${PREFIX.services}${component(node)}/${component(serviceId)}`,
  nodeServices: (node: string) => `${PREFIX.services}${component(node)}/`,
  check: (node: string, checkId: string) => `${PREFIX.checks}${component(node)}/${component(checkId)}`,
  nodeChecks: (node: string) => `${PREFIX.checks}${component(node)}/`,
  /** KV keys keep their case and bytes: Consul's KV is case-sensitive. */
  kv: (key: string) => `${PREFIX.kvs}${key}`,
  session: (id: string) => `${PREFIX.sessions}${id}`,
  system: (name: string) => `${PREFIX.system}${name}`,
  prefix: (table: Table) => PREFIX[table],
};

/** Which table a stored key belongs to, or undefined for keys the catalog does not own. */
export function tableOf(key: string): Table | undefined {
  for (const [table, prefix] of Object.entries(PREFIX) as [Table, string][]) if (key.startsWith(prefix)) return table;
  return undefined;
}

/** The KV key of a stored `/kv/...` key. */
export function kvKeyOf(stored: string): string {
  return stored.slice(PREFIX.kvs.length);
}

/** The end of a prefix range in etcd's convention: the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]);
}
