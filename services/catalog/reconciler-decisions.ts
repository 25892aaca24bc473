/**
 * What the reconciler does about one gossip member, decided from the member and the catalog's
 * rows for it and nothing else (no I/O): Consul's leader reconciliation (agent/consul/leader.go
 * `reconcileMember`, `handleAliveMember`, `handleFailedMember`, `handleDeregisterMember`,
 * `reconcileReaped`; reference/consul-compat.md §4.7):
 *
 *   alive, join, update  register the node (Node = member name, Address = its IP, ID = `id` tag,
 *                        node meta consul-network-segment = its segment) with serfHealth passing,
 *                        and for a server the `consul` service on its RPC port; nothing when the
 *                        catalog already says so
 *   failed               serfHealth critical, the node left as it is (SkipNodeUpdate); nothing
 *                        for a node the catalog does not have, or whose serfHealth is critical
 *   left, reap           deregister the node with its services and checks
 *   full reconcile       also deregister every catalog node with a serfHealth check that is no
 *                        longer a gossip member at all (reaped while nobody reconciled)
 */
import { Member, MemberEventType } from '../gen/consulate/gossip/v1/membership';
import { META_SEGMENT_KEY, SERF_HEALTH, StoredCheck, StoredNode, StoredService } from './state/model';

export type MemberIntent = 'alive' | 'failed' | 'left' | 'reaped';

/** Consul's RPC port, which a server's `port` tag carries and the `consul` service shows. */
export const SERVER_RPC_PORT = 8300;
/** Serf protocol numbers as Consul's API shows them (serf's ProtocolMin/Max, Cur of our agents). */
export const SERF_PROTOCOL = { min: 1, max: 5, cur: 2 } as const;

/** The catalog's rows for one node, as far as the reconciler cares. */
export interface CatalogEntry {
  readonly node?: StoredNode;
  readonly serfHealth?: StoredCheck;
  /** The `consul` service, on server nodes. */
  readonly consulService?: StoredService;
}

export type ReconcileAction =
  | { readonly kind: 'register'; readonly node: StoredNode; readonly check: StoredCheck; readonly service?: StoredService; readonly reason: string }
  | { readonly kind: 'mark-critical'; readonly node: string; readonly check: StoredCheck; readonly reason: string }
  | { readonly kind: 'deregister'; readonly node: string; readonly reason: string }
  | { readonly kind: 'none'; readonly node: string; readonly reason: string };

/** What a member's event or listed state asks of the catalog; undefined for nothing (leaving, none). */
export function intentOf(type: MemberEventType, status: string): MemberIntent | undefined {
  if (type === MemberEventType.MEMBER_EVENT_TYPE_REAP) return 'reaped';
  switch (status) {
    case 'alive':
      return 'alive';
    case 'failed':
      return 'failed';
    case 'left':
      return 'left';
    default:
      // "leaving" settles as left or alive; Consul's switch has no case for it either.
      return undefined;
  }
}

/**
 * Why the reconciler leaves a member alone, or undefined when it handles it. Another datacenter's
 * member never belongs in this catalog; a server is reconciled from the default pool only (it is
 * in every segment's pool too, with that segment's tags); an agent that is neither a server nor a
 * client (`role` tag) is not Consul's.
 */
export function ignoreReason(member: Member, datacenter: string): string | undefined {
  const role = member.tags.role;
  if (role !== 'consul' && role !== 'node') return `not a Consul agent (role tag "${role ?? ''}")`;
  if (member.tags.dc !== undefined && member.tags.dc !== datacenter) return `a member of datacenter ${member.tags.dc}, not ${datacenter}`;
  if (role === 'consul' && member.segment !== '') return `a server as seen in segment ${member.segment}'s pool (servers are reconciled from the default pool)`;
  return undefined;
}

/** The member's network segment: its `segment` tag, else the pool it was listed from. */
export function segmentOf(member: Member): string {
  return member.tags.segment ?? member.segment;
}

export function decide(member: Member, intent: MemberIntent, entry: CatalogEntry, datacenter: string): ReconcileAction {
  switch (intent) {
    case 'alive':
      return decideAlive(member, entry, datacenter);
    case 'failed':
      return decideFailed(member, entry);
    case 'left':
    case 'reaped':
      return decideDeregister(member.name, member.tags.id ?? '', entry, intent === 'left' ? 'the member left' : 'the member was reaped');
  }
}

function decideAlive(member: Member, entry: CatalogEntry, datacenter: string): ReconcileAction {
  const segment = segmentOf(member);
  const service = member.tags.role === 'consul' ? consulService(member) : undefined;
  const existing = entry.node;
  const node: StoredNode = {
    ID: member.tags.id ?? existing?.ID ?? '',
    Node: member.name,
    Address: member.address,
    Datacenter: datacenter,
    // Consul keeps what the node's own agent registered: tagged addresses and other meta.
    TaggedAddresses: existing?.TaggedAddresses ?? {},
    Meta: { ...(existing?.Meta ?? {}), [META_SEGMENT_KEY]: segment },
  };
  const upToDate =
    existing !== undefined &&
    existing.Address === node.Address &&
    existing.ID === node.ID &&
    existing.Meta[META_SEGMENT_KEY] === segment &&
    entry.serfHealth?.Status === 'passing' &&
    (service === undefined || (entry.consulService !== undefined && entry.consulService.Port === service.Port && sameRecord(entry.consulService.Meta, service.Meta)));
  if (upToDate) return { kind: 'none', node: member.name, reason: 'already registered with serfHealth passing' };
  const what = existing === undefined ? 'a new node' : existing.Address !== node.Address ? `its address moved from ${existing.Address}` : entry.serfHealth?.Status !== 'passing' ? `serfHealth was ${entry.serfHealth?.Status ?? 'missing'}` : 'its registration differed';
  return { kind: 'register', node, check: serfHealthCheck(member.name, 'passing'), ...(service === undefined ? {} : { service }), reason: `the member is alive (${what})` };
}

function decideFailed(member: Member, entry: CatalogEntry): ReconcileAction {
  // Newer Consul: a failure of a node the catalog does not have is not worth registering.
  if (entry.node === undefined) return { kind: 'none', node: member.name, reason: 'failed, but not in the catalog' };
  if (entry.serfHealth?.Status === 'critical') return { kind: 'none', node: member.name, reason: 'serfHealth is already critical' };
  return { kind: 'mark-critical', node: member.name, check: serfHealthCheck(member.name, 'critical'), reason: 'the member failed' };
}

function decideDeregister(name: string, memberId: string, entry: CatalogEntry, reason: string): ReconcileAction {
  if (entry.node === undefined) return { kind: 'none', node: name, reason: `${reason}, and it is not in the catalog` };
  // The name now belongs to another node (a new ID registered it): not this member's to remove.
  if (memberId !== '' && entry.node.ID !== '' && memberId.toLowerCase() !== entry.node.ID.toLowerCase()) {
    return { kind: 'none', node: name, reason: `${reason}, but the catalog's ${name} has ID ${entry.node.ID}, not ${memberId}` };
  }
  return { kind: 'deregister', node: entry.node.Node, reason };
}

/**
 * Consul's `reconcileReaped`: catalog nodes the reconciler owns (they have a serfHealth check)
 * whose name no gossip member has, in any state. Names compare case-insensitively, as the catalog's.
 */
export function reapedNodes(members: readonly Member[], serfHealthNodes: readonly string[]): string[] {
  const known = new Set(members.map((m) => m.name.toLowerCase()));
  return serfHealthNodes.filter((node) => !known.has(node.toLowerCase()));
}

export function serfHealthCheck(node: string, status: 'passing' | 'critical'): StoredCheck {
  return {
    Node: node,
    CheckID: SERF_HEALTH.CheckID,
    Name: SERF_HEALTH.Name,
    Status: status,
    Notes: '',
    Output: status === 'passing' ? SERF_HEALTH.alive : SERF_HEALTH.failed,
    ServiceID: '',
    ServiceName: '',
    ServiceTags: [],
    Type: '',
  };
}

/** The `consul` service Consul registers for each server (handleAliveMember). */
export function consulService(member: Member): StoredService {
  const port = Number(member.tags.port);
  return {
    ID: 'consul',
    Service: 'consul',
    Tags: [],
    Address: '',
    TaggedAddresses: {},
    Meta: {
      non_voter: String(member.tags.nonvoter === '1'),
      read_replica: String(member.tags.read_replica === '1'),
      raft_version: member.tags.raft_vsn ?? '',
      serf_protocol_current: String(SERF_PROTOCOL.cur),
      serf_protocol_min: String(SERF_PROTOCOL.min),
      serf_protocol_max: String(SERF_PROTOCOL.max),
      version: (member.tags.build ?? '').split(':')[0],
    },
    Port: Number.isInteger(port) && port > 0 && port <= 65535 ? port : SERVER_RPC_PORT,
    Weights: { Passing: 1, Warning: 1 },
    EnableTagOverride: false,
  };
}

function sameRecord(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keysA = Object.keys(a);
  return keysA.length === Object.keys(b).length && keysA.every((key) => a[key] === b[key]);
}
