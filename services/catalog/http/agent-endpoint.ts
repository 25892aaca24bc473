/**
 * `/v1/agent/...` as far as gossip goes (agent/agent_endpoint.go; reference/consul-compat.md §2.6):
 * members, self, join, force-leave. The catalog is not a gossip member itself: it asks a server
 * gossip agent of its datacenter (`-gossip-addr`), which sees every segment, so these answer as a
 * Consul server agent would. The WAN pool (`?wan`) is the federation routers' (`-router-addr`):
 * its members and joins go to them (OperatorService WanMembers, JoinWan), as a Consul server
 * answers from its own WAN Serf. `/v1/agent/metrics?format=prometheus` is the catalog's own
 * Prometheus registry, the same one its metrics port serves.
 */
import { Member } from '../../gen/consulate/gossip/v1/membership';
import { AreaMember, JoinResult } from '../../gen/consulate/router/v1/operator';
import { SERF_STATUS_CODE, SerfStatus } from '../../lib/swim/types';
import { PROMETHEUS_CONTENT_TYPE } from '../../lib/metrics';
import { VERSION } from '../../lib/version';
import { ALL_SEGMENTS, GossipClient } from '../gossip-client';
import { SERF_PROTOCOL } from '../reconciler-decisions';
import { RouterClient, RouterUnavailableError } from '../router-client';
import { badRequest } from './http-errors';
import { HttpResult, HttpRouter } from './http-server';

export interface AgentDeps {
  readonly datacenter: string;
  readonly node: string;
  readonly nodeId: string;
  /** The address the catalog binds to (its `Member.Addr` when no gossip agent knows it). */
  readonly address: string;
  readonly gossip: Pick<GossipClient, 'members' | 'join' | 'forceLeave'>;
  /**
   * The datacenter's federation routers, which hold the WAN pool. The catalog always has a
   * RouterClient (without -router-addr it answers how to configure one); a setup serving only the
   * LAN side may leave this out, and `?wan` then answers NO_WAN_POOL.
   */
  readonly routers?: Pick<RouterClient, 'wanMembers' | 'joinWan'>;
  /** The catalog's Prometheus registry; without it `/v1/agent/metrics` answers that metrics are off. */
  readonly metrics?: { text(): Promise<string> };
}

/** `?wan` with no federation router to ask (a 500, as Consul answers an agent's error). */
export const NO_WAN_POOL = 'The WAN pool is held by the federation routers, and this catalog knows none: start it with -router-addr=HOST:8330, once per federation router of its datacenter';

/** The routers have no force-leave for the WAN pool yet. */
export const WAN_FORCE_LEAVE_NOT_HERE = 'force-leave -wan is not supported: the federation routers have no force-leave for the WAN pool yet; a failed router is reaped from it on its own';

/**
 * Consul's answer (415) to `?format=prometheus` when Prometheus is off; here, when the catalog has
 * no registry.
 */
export const PROMETHEUS_OFF = 'Prometheus is not enabled since its retention time is not positive';
/**
 * Without `?format=prometheus` Consul shows go-metrics' in-memory sink as JSON; we keep no such
 * sink (its counters are per 10 s interval, Prometheus's are totals), so we say where to look.
 */
export const ONLY_PROMETHEUS = 'only the Prometheus format is served: use /v1/agent/metrics?format=prometheus, or GET /metrics on the catalog\'s -metrics-port';

/** Consul's server RPC port, which a WAN join address without one gets (the router adds it too). */
const SERVER_RPC_PORT = 8300;

/** A member as Consul's `/v1/agent/members` shows it (serf.Member through api.AgentMember). */
export interface AgentMember {
  readonly Name: string;
  readonly Addr: string;
  readonly Port: number;
  readonly Tags: Readonly<Record<string, string>>;
  /** 0 none, 1 alive, 2 leaving, 3 left, 4 failed. */
  readonly Status: number;
  readonly ProtocolMin: number;
  readonly ProtocolMax: number;
  readonly ProtocolCur: number;
  readonly DelegateMin: number;
  readonly DelegateMax: number;
  readonly DelegateCur: number;
}

/** Serf's delegate protocol numbers as Consul 1.x agents report them. */
const DELEGATE = { min: 2, max: 5, cur: 4 } as const;

export function agentMember(member: Member): AgentMember {
  return serfMember({ Name: member.name, Addr: member.address, Port: member.port, Tags: member.tags, Status: member.statusCode });
}

/**
 * A WAN pool member as Consul's `/v1/agent/members?wan=1` shows a server of its WAN Serf: the
 * router's name `<node>.<dc>`, its 8300 address, and the tags a Consul server gossips there
 * (agent/consul/server_serf.go) as far as the router reports them. Only routers are WAN members,
 * so each is `role=consul`.
 */
export function wanAgentMember(member: AreaMember): AgentMember {
  const tags: Record<string, string> = { role: 'consul', dc: member.datacenter, segment: '', port: String(member.port), build: member.build, vsn: String(member.protocol) };
  if (member.id !== '') tags.id = member.id;
  return serfMember({ Name: member.name, Addr: member.addr, Port: member.port, Tags: tags, Status: serfStatusCode(member.status) });
}

/** A member with the protocol numbers every member of a Consul agent's pools reports. */
function serfMember(member: Pick<AgentMember, 'Name' | 'Addr' | 'Port' | 'Tags' | 'Status'>): AgentMember {
  return {
    ...member,
    ProtocolMin: SERF_PROTOCOL.min,
    ProtocolMax: SERF_PROTOCOL.max,
    ProtocolCur: SERF_PROTOCOL.cur,
    DelegateMin: DELEGATE.min,
    DelegateMax: DELEGATE.max,
    DelegateCur: DELEGATE.cur,
  };
}

/** Serf's integer for the router's status text; 0 (none) for one it does not know. */
function serfStatusCode(status: string): number {
  return Object.hasOwn(SERF_STATUS_CODE, status) ? SERF_STATUS_CODE[status as SerfStatus] : 0;
}

/** Consul reads `?wan` as set when it has any non-empty value (`?wan=1`, `?wan=true`). */
function wanAsked(query: URLSearchParams): boolean {
  return (query.get('wan') ?? '') !== '';
}

export function registerAgentEndpoints(router: HttpRouter, deps: AgentDeps): void {
  router.on(['GET'], '/v1/agent/members', async ({ query }) => {
    const segment = query.get('segment') ?? '';
    if (wanAsked(query)) {
      if (segment !== '' && segment !== ALL_SEGMENTS) throw badRequest('Cannot provide a segment with wan=true');
      const { members } = await wanPool(deps).wanMembers();
      return { body: members.map(wanAgentMember) };
    }
    return { body: (await deps.gossip.members(segment)).map(agentMember) };
  });

  router.on(['GET'], '/v1/agent/self', async () => {
    // The catalog's own member if a gossip agent runs under its node name; else the catalog as it
    // would be listed: a client of the default segment.
    const listed = await deps.gossip.members(ALL_SEGMENTS).catch(() => [] as Member[]);
    const own = listed.find((member) => member.name.toLowerCase() === deps.node.toLowerCase() && member.segment === (member.tags.segment ?? ''));
    // Consul's Config.NodeID is the agent's node ID, the one its `id` tag gossips and the catalog
    // registers: with an agent under our name, that agent's.
    const nodeId = own?.tags.id || deps.nodeId;
    return {
      body: {
        Config: { Datacenter: deps.datacenter, PrimaryDatacenter: deps.datacenter, NodeName: deps.node, NodeID: nodeId, Revision: '', Server: false, Version: VERSION, BuildDate: '' },
        Member: own !== undefined ? agentMember(own) : selfMember(deps),
        Meta: { 'consul-network-segment': own?.tags.segment ?? '' },
      },
    };
  });

  // A join is the local agent's (Consul's AgentJoin reads no ?dc=, so a client whose default
  // datacenter is another one still joins here). With ?wan a router of this datacenter joins the
  // WAN pool (Consul's JoinWAN; `segment` does not apply to it).
  router.on(['PUT', 'GET'], '/v1/agent/join/:address', async ({ query, params }): Promise<HttpResult> => {
    if (wanAsked(query)) {
      const { results } = await wanPool(deps).joinWan({ addresses: [params.address] });
      if (!results.some((result) => result.joined)) throw new Error(wanJoinFailure(params.address, results));
      return { body: Buffer.alloc(0) };
    }
    const response = await deps.gossip.join([params.address], query.get('segment') ?? '');
    // Consul's JoinLAN: the error of the addresses tried when none was joined.
    if (response.joined === 0) throw new Error(response.results.map((r) => r.error).filter((e) => e !== '').join('; ') || `Failed to join ${params.address}`);
    return { body: Buffer.alloc(0) };
  });

  // Consul's AgentMetrics: `?format=prometheus` is the Prometheus text format of the agent's registry.
  router.on(['GET'], '/v1/agent/metrics', async ({ query }): Promise<HttpResult> => {
    if (query.get('format') !== 'prometheus') return { status: 415, body: ONLY_PROMETHEUS, contentType: 'text/plain; charset=utf-8' };
    if (deps.metrics === undefined) return { status: 415, body: PROMETHEUS_OFF, contentType: 'text/plain; charset=utf-8' };
    return { body: await deps.metrics.text(), contentType: PROMETHEUS_CONTENT_TYPE };
  });

  router.on(['PUT', 'GET'], '/v1/agent/force-leave/:node', async ({ query, params }): Promise<HttpResult> => {
    if (wanAsked(query)) throw new Error(WAN_FORCE_LEAVE_NOT_HERE);
    await deps.gossip.forceLeave(params.node, query.has('prune'));
    return { body: Buffer.alloc(0) };
  });
}

function wanPool(deps: AgentDeps): NonNullable<AgentDeps['routers']> {
  if (deps.routers === undefined) throw new RouterUnavailableError(NO_WAN_POOL);
  return deps.routers;
}

/**
 * Consul's JoinWAN error when no address was joined: memberlist's `Failed to join <ip:port>: <why>`
 * for each (the router reports the reason alone, as the area join API shows it).
 */
function wanJoinFailure(address: string, results: readonly JoinResult[]): string {
  const failures = results.filter((result) => result.error !== '').map((result) => `Failed to join ${withServerPort(result.address)}: ${result.error}`);
  return failures.length > 0 ? failures.join('; ') : `Failed to join ${withServerPort(address)}`;
}

function withServerPort(address: string): string {
  return /:\d+$/.test(address) ? address : `${address}:${SERVER_RPC_PORT}`;
}

function selfMember(deps: AgentDeps): AgentMember {
  return agentMember({
    name: deps.node,
    address: deps.address,
    port: 0,
    tags: { role: 'node', dc: deps.datacenter, segment: '', id: deps.nodeId, build: VERSION, vsn: '2', vsn_min: '2', vsn_max: '3' },
    status: 'alive',
    statusCode: 1,
    segment: '',
    incarnation: 0n,
  });
}
