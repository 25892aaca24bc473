/**
 * The gossip agent of one node: its pools and what Consul layers over them.
 *
 *   server  the default pool on the LAN port (8301) and one pool per configured segment on the
 *           segment's port (8303, 8304, ...), the same node name in each (consul-compat.md §2.3);
 *           its default-pool tags carry `sl_<segment>=ip:port`, so servers find each other's
 *           segment ports and join them (ENT's segment flooding)
 *   client  exactly one pool: its segment's, on its LAN port
 *
 * Every pool checks every member that arrives with Consul's LAN merge delegate, so a member of
 * another segment or datacenter never enters it (merge-delegate.ts).
 */
import { Logger } from '../lib/log';
import { SwimTimings } from '../lib/swim/config';
import { MemberInfo, SwimEvent } from '../lib/swim/types';
import { Coordinate } from '../lib/vivaldi/coordinate';
import { Keyring } from './keyring';
import { lanMergeDelegate } from './merge-delegate';
import { JoinResult, SwimPool } from '../lib/swim-pool';
import { GossipTransport } from './transport';
import { ALL_SEGMENTS, SegmentSpec } from './segments';

export interface AgentOptions {
  readonly datacenter: string;
  readonly node: string;
  /** The node's UUID (Consul's node ID), kept in the data directory. */
  readonly nodeId: string;
  readonly bind: string;
  readonly server: boolean;
  /** A client's segment ("" for the default). */
  readonly segment: string;
  /** A server's segments. */
  readonly segments: readonly SegmentSpec[];
  readonly lanPort: number;
  readonly timings: SwimTimings;
  readonly keyring: Keyring | undefined;
  readonly version: string;
  readonly logger: Logger;
}

/** A member as listed from one pool: which segment it was seen in. */
export interface ListedMember {
  readonly member: MemberInfo;
  readonly segment: string;
}

export type AgentListener = (segment: string, event: SwimEvent) => void;

/** Consul's RPC port tag: what a server advertises for RPC (here the router's 8300). */
const SERVER_RPC_PORT = 8300;

export class GossipAgent {
  private readonly listeners = new Set<AgentListener>();

  private constructor(
    readonly options: AgentOptions,
    /** By segment name; "" is the default pool. A client has exactly one. */
    private readonly pools: ReadonlyMap<string, SwimPool>,
  ) {
    for (const pool of pools.values()) pool.subscribe((event) => this.onPoolEvent(pool, event));
  }

  static async start(options: AgentOptions): Promise<GossipAgent> {
    const pools = new Map<string, SwimPool>();
    const specs: { segment: string; port: number }[] = options.server ? [{ segment: '', port: options.lanPort }, ...options.segments.map((s) => ({ segment: s.name, port: s.port }))] : [{ segment: options.segment, port: options.lanPort }];
    try {
      for (const spec of specs) {
        const transport = await GossipTransport.listen({ host: options.bind, port: spec.port, label: spec.segment, keyring: options.keyring, logger: options.logger });
        const pool = new SwimPool(transport, {
          segment: spec.segment,
          name: options.node,
          tags: tagsFor(options, spec.segment),
          timings: options.timings,
          validateMembers: lanMergeDelegate({ nodeName: options.node, nodeId: options.nodeId, datacenter: options.datacenter, segment: spec.segment }),
          logger: options.logger,
        });
        pools.set(spec.segment, pool);
        if (spec.segment !== '') options.logger.info({ segment: spec.segment, address: pool.address }, `Started listener for LAN segment "${spec.segment}" on ${pool.address}`);
      }
    } catch (err) {
      await Promise.all([...pools.values()].map((pool) => pool.stop()));
      throw err;
    }
    return new GossipAgent(options, pools);
  }

  /** Segment names this agent is in; "" (the default) first on a server. */
  segments(): string[] {
    return [...this.pools.keys()];
  }

  /** The pool a request names: "" is a client's own pool; unknown names are Consul's error. */
  pool(segment: string): SwimPool | { error: string } {
    if (!this.options.server && (segment === '' || segment === ALL_SEGMENTS)) return this.pools.values().next().value!;
    const pool = this.pools.get(segment);
    return pool ?? { error: `segment "${segment}" not found` };
  }

  /**
   * Members of one segment's pool, or with `_all` of every pool with each server once (from the
   * default pool, as Consul shows them), each with the segment it was listed from.
   */
  members(segment: string): ListedMember[] | { error: string } {
    if (this.options.server && segment === ALL_SEGMENTS) {
      const out: ListedMember[] = this.pools.get('')!.members().map((member) => ({ member, segment: '' }));
      for (const [name, pool] of this.pools) {
        if (name === '') continue;
        for (const member of pool.members()) if (member.tags.role !== 'consul') out.push({ member, segment: name });
      }
      return out;
    }
    const pool = this.pool(segment);
    if ('error' in pool) return pool;
    return pool.members().map((member) => ({ member, segment: pool.segment }));
  }

  async join(addresses: readonly string[], segment: string): Promise<JoinResult[] | { error: string }> {
    const pool = this.pool(segment === ALL_SEGMENTS ? '' : segment);
    if ('error' in pool) return pool;
    // Consul's port rule: an address without a port means this agent's own port for that pool.
    const port = pool.address.replace(/^.*:/, '');
    return pool.join(addresses.map((address) => (/:\d+$/.test(address) ? address : `${address}:${port}`)));
  }

  async leave(timeoutMs = 5_000): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.leave(timeoutMs)));
  }

  /** Force-leave in every pool that knows the node; Consul's error when none does. */
  forceLeave(node: string, prune: boolean): string | undefined {
    const errors = [...this.pools.values()].map((pool) => pool.forceLeave(node, prune));
    return errors.every((error) => error !== undefined) ? errors[0] : undefined;
  }

  /** A user event on every pool of this agent (Consul fires on all LAN segments). */
  fireEvent(name: string, payload: Uint8Array): { ltime: number } | { error: string } {
    let result: { ltime: number } | { error: string } = { error: 'no pool' };
    for (const pool of this.pools.values()) {
      const fired = pool.fireEvent(name, payload);
      if ('error' in fired) return fired;
      result = fired;
    }
    return result;
  }

  coordinates(segment: string): { node: string; segment: string; coordinate: Coordinate }[] | { error: string } {
    const pools = segment === ALL_SEGMENTS ? [...this.pools.values()] : [this.pool(segment)];
    const out: { node: string; segment: string; coordinate: Coordinate }[] = [];
    for (const pool of pools) {
      if ('error' in pool) return pool;
      out.push({ node: this.options.node, segment: pool.segment, coordinate: pool.coordinate() });
      for (const [node, coordinate] of pool.coordinates()) out.push({ node, segment: pool.segment, coordinate });
    }
    return out;
  }

  subscribe(listener: AgentListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every pool, for tests and status. */
  allPools(): SwimPool[] {
    return [...this.pools.values()];
  }

  async stop(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.stop()));
  }

  private onPoolEvent(pool: SwimPool, event: SwimEvent): void {
    if (pool.segment === '' && this.options.server && (event.type === 'member-join' || event.type === 'member-update')) this.floodSegments(event.member);
    for (const listener of this.listeners) listener(pool.segment, event);
  }

  /**
   * ENT's segment flooding: a server that appears in the default pool advertises its segment
   * ports in `sl_<name>` tags; we join each of our segment pools to it, so servers meet in every
   * segment without the operator joining each port by hand.
   */
  private floodSegments(member: MemberInfo): void {
    if (member.tags.role !== 'consul' || member.name === this.options.node) return;
    for (const [segment, pool] of this.pools) {
      if (segment === '') continue;
      const address = member.tags[`sl_${segment}`];
      if (address === undefined || pool.members().some((m) => m.name === member.name && (m.state === 'alive' || m.state === 'suspect'))) continue;
      void pool.join([address]).then(([result]) => {
        if (!result.joined) this.options.logger.warn({ segment, member: member.name, error: result.error }, `could not join server ${member.name} in segment ${segment}: ${result.error}`);
      });
    }
  }
}

/** Serf tags as Consul sets them (consul-compat.md §1.5). */
export function tagsFor(options: Pick<AgentOptions, 'server' | 'datacenter' | 'nodeId' | 'version' | 'bind' | 'segments'>, segment: string): Record<string, string> {
  const tags: Record<string, string> = {
    role: options.server ? 'consul' : 'node',
    dc: options.datacenter,
    segment,
    id: options.nodeId,
    vsn: '2',
    vsn_min: '2',
    vsn_max: '3',
    build: options.version,
  };
  if (options.server) {
    tags.port = String(SERVER_RPC_PORT);
    tags.raft_vsn = '3';
    if (segment === '') for (const spec of options.segments) tags[`sl_${spec.name}`] = `${options.bind}:${spec.port}`;
  }
  return tags;
}
