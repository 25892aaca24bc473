/**
 * Consul's merge delegates (`agent/consul/merge.go`): before a pool merges the member list a
 * join or push/pull brings in, it checks every member, and the first failure cancels the whole
 * merge with Consul's text (reference/consul-compat.md §2.4). This is what keeps a client of
 * segment alpha out of beta's pool, and two datacenters from fusing into one LAN.
 */
import { MemberInfo } from '../lib/swim/types';

/** Returns Consul's error text for the first member that may not merge, or undefined to merge. */
export type MergeDelegate = (members: readonly MemberInfo[]) => string | undefined;

export interface LanMergeIdentity {
  readonly nodeName: string;
  /** This agent's node UUID (the `id` tag). */
  readonly nodeId: string;
  readonly datacenter: string;
  /** The segment of *this pool*: "" for the default segment. */
  readonly segment: string;
}

/**
 * The LAN pool's delegate (lanMergeDelegate.NotifyMerge), member by member and in Consul's order:
 * node-ID conflicts (with us, then with an earlier member), a wrong datacenter, a wrong segment.
 */
export function lanMergeDelegate(identity: LanMergeIdentity): MergeDelegate {
  const { nodeName, nodeId, datacenter, segment } = identity;
  return (members) => {
    const nodeNames = new Map<string, string>();
    for (const m of members) {
      const id = m.tags['id'];
      if (id !== undefined && id !== '') {
        // Consul's `continue` sits inside the ID check, so a member that left (and has an ID)
        // skips the datacenter and segment checks too: it is leaving the pool anyway.
        if (m.state === 'left') continue;

        // Names compare case-insensitively, as Consul's node names do (strings.EqualFold).
        if (id === nodeId && m.name.toLowerCase() !== nodeName.toLowerCase()) return `Member '${m.name}' has conflicting node ID '${id}' with this agent's ID`;

        const other = nodeNames.get(id);
        if (other !== undefined) return `Member '${m.name}' has conflicting node ID '${id}' with member '${other}'`;

        // Consul indexes only builds >= 0.8.5 (older ones predate unique IDs, consul#3070); every
        // member of a Consulate pool is a Consulate build, and all of them keep unique IDs.
        nodeNames.set(id, m.name);
      }

      // Clients (isConsulNode) and well-formed servers (metadata.IsConsulServer) must share our datacenter.
      if (m.tags['role'] === 'node' && (m.tags['dc'] ?? '') !== datacenter) return `Member '${m.name}' part of wrong datacenter '${m.tags['dc'] ?? ''}'`;
      if (isConsulServer(m.tags) && (m.tags['dc'] ?? '') !== datacenter) return `Member '${m.name}' part of wrong datacenter '${m.tags['dc'] ?? ''}'`;

      const memberSegment = m.tags['segment'] ?? '';
      if (memberSegment !== segment) return `Member '${m.name}' part of wrong segment '${memberSegment}' (expected '${segment}')`;
    }
    return undefined;
  };
}

/**
 * The WAN pool's delegate (wanMergeDelegate.NotifyMerge): only Consul servers federate. The
 * federation router runs it for the WAN and area pools.
 */
export function wanMergeDelegate(): MergeDelegate {
  return (members) => {
    for (const m of members) {
      if (!isConsulServer(m.tags)) return `Member '${m.name}' is not a server`;
    }
    return undefined;
  };
}

/**
 * Consul's `metadata.IsConsulServer`: `role=consul` *and* tags that parse (an integer `port` and
 * `vsn`, a `build` holding a version, and any optional numeric tags well-formed). A member
 * claiming to be a server with broken tags is not one: Consul could not route RPCs to it.
 */
export function isConsulServer(tags: Readonly<Record<string, string>>): boolean {
  if (tags['role'] !== 'consul') return false;
  for (const optional of ['expect', 'wan_join_port', 'raft_vsn']) {
    if (tags[optional] !== undefined && !isGoInt(tags[optional])) return false;
  }
  if (!isGoInt(tags['port']) || !isGoInt(tags['vsn'])) return false;
  for (const [name, value] of Object.entries(tags)) {
    if (name.startsWith('sl_') && !isHostPort(value)) return false;
    else if (name.startsWith('ft_') && !isGoInt(value)) return false;
  }
  // At least one gRPC port must be valid when either tag is present.
  const grpc = tags['grpc_port'];
  const grpcTls = tags['grpc_tls_port'];
  if ((grpc !== undefined || grpcTls !== undefined) && !(goAtoiOrZero(grpc) >= 1 || goAtoiOrZero(grpcTls) >= 1)) return false;
  return buildVersion(tags) !== undefined;
}

/** Go's strconv.Atoi accepts an optional sign and decimal digits, nothing else. */
function isGoInt(value: string | undefined): value is string {
  return value !== undefined && /^[+-]?\d+$/.test(value) && Number.isSafeInteger(Number(value));
}

function goAtoiOrZero(value: string | undefined): number {
  return isGoInt(value) ? Number(value) : 0;
}

/** net.SplitHostPort plus a numeric port, as IsConsulServer reads an `sl_<segment>` tag. */
function isHostPort(value: string): boolean {
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:[\]]*)$/.exec(value);
  return match !== null && isGoInt(match[3]);
}

/** `metadata.Build`: the first `N.N.N` anywhere in the `build` tag (e.g. "1.14.0+ent:abcdef"). */
function buildVersion(tags: Readonly<Record<string, string>>): [number, number, number] | undefined {
  const match = /(\d+)\.(\d+)\.(\d+)/.exec(tags['build'] ?? '');
  return match === null ? undefined : [Number(match[1]), Number(match[2]), Number(match[3])];
}
