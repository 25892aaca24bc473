/**
 * `/v1/agent/...` as far as gossip goes (agent/agent_endpoint.go; reference/consul-compat.md §2.6):
 * members, self, join, force-leave. The catalog is not a gossip member itself: it asks a server
 * gossip agent of its datacenter (`-gossip-addr`), which sees every segment, so these answer as a
 * Consul server agent would. The WAN pool belongs to the federation router, which is not here yet.
 */
import { Member } from '../../gen/consulate/gossip/v1/membership';
import { VERSION } from '../../lib/version';
import { ALL_SEGMENTS, GossipClient } from '../gossip-client';
import { SERF_PROTOCOL } from '../reconciler-decisions';
import { badRequest } from './http-errors';
import { HttpResult, HttpRouter } from './http-server';

export interface AgentDeps {
  readonly datacenter: string;
  readonly node: string;
  readonly nodeId: string;
  /** The address the catalog binds to (its `Member.Addr` when no gossip agent knows it). */
  readonly address: string;
  readonly gossip: Pick<GossipClient, 'members' | 'join' | 'forceLeave'>;
}

/** Until the router holds the WAN pool, a `?wan` request has nowhere to go. */
export const WAN_NOT_HERE = 'The WAN pool is not served by this catalog yet: it comes with the federation router (consulate federation-router), which holds the WAN and area pools';

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
  return {
    Name: member.name,
    Addr: member.address,
    Port: member.port,
    Tags: member.tags,
    Status: member.statusCode,
    ProtocolMin: SERF_PROTOCOL.min,
    ProtocolMax: SERF_PROTOCOL.max,
    ProtocolCur: SERF_PROTOCOL.cur,
    DelegateMin: DELEGATE.min,
    DelegateMax: DELEGATE.max,
    DelegateCur: DELEGATE.cur,
  };
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
      throw new Error(WAN_NOT_HERE);
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
  // datacenter is another one still joins here).
  router.on(['PUT', 'GET'], '/v1/agent/join/:address', async ({ query, params }): Promise<HttpResult> => {
    if (wanAsked(query)) throw new Error(WAN_NOT_HERE);
    const response = await deps.gossip.join([params.address], query.get('segment') ?? '');
    // Consul's JoinLAN: the error of the addresses tried when none was joined.
    if (response.joined === 0) throw new Error(response.results.map((r) => r.error).filter((e) => e !== '').join('; ') || `Failed to join ${params.address}`);
    return { body: Buffer.alloc(0) };
  });

  router.on(['PUT', 'GET'], '/v1/agent/force-leave/:node', async ({ query, params }): Promise<HttpResult> => {
    if (wanAsked(query)) throw new Error(WAN_NOT_HERE);
    await deps.gossip.forceLeave(params.node, query.has('prune'));
    return { body: Buffer.alloc(0) };
  });
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
