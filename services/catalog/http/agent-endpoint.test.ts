// /v1/agent/members, /self, /join, /force-leave through the real HTTP server, with a scripted
// gossip agent, and `?wan` through a fake federation router over real gRPC
// (reference/consul-compat.md §2.6, §4.8; §1.3: WAN members are named `<node>.<dc>`).
import { status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { JoinResponse, Member } from '../../gen/consulate/gossip/v1/membership';
import { AreaMember } from '../../gen/consulate/router/v1/operator';
import { GossipAnswerError, GossipUnavailableError } from '../gossip-client';
import { RouterClient } from '../router-client';
import { FakeRouter, startFakeRouter } from '../testing/fake-router';
import { AgentDeps, NO_WAN_POOL, WAN_FORCE_LEAVE_NOT_HERE, registerAgentEndpoints } from './agent-endpoint';
import { Served, serveRouter } from './testing/serve-router';

function gossipMember(name: string, segment: string, role = 'node', status = 'alive', statusCode = 1): Member {
  return { name, address: '127.0.1.101', port: segment === 'alpha' && role === 'consul' ? 8303 : 8301, tags: { role, dc: 'dc1', segment, id: 'x' }, status, statusCode, segment, incarnation: 1n };
}

const POOLS: Record<string, Member[]> = {
  _all: [gossipMember('server-1', '', 'consul'), gossipMember('node-alpha-1', 'alpha'), gossipMember('node-beta-1', 'beta', 'node', 'failed', 4)],
  alpha: [gossipMember('server-1', 'alpha', 'consul'), gossipMember('node-alpha-1', 'alpha')],
  '': [gossipMember('server-1', '', 'consul')],
};

const calls: string[] = [];
let unavailable = false;
const gossip: AgentDeps['gossip'] = {
  async members(segment) {
    calls.push(`members ${segment}`);
    if (unavailable) throw new GossipUnavailableError('No gossip agent answered: 127.0.1.1:8320: unreachable (connection refused)');
    const pool = POOLS[segment];
    if (pool === undefined) throw new GossipAnswerError(5, `segment "${segment}" not found`);
    return pool;
  },
  async join(addresses, segment): Promise<JoinResponse> {
    calls.push(`join ${addresses.join(',')} ${segment}`);
    if (addresses[0].startsWith('127.0.9.')) return { joined: 0, results: [{ address: addresses[0], joined: false, error: `Failed to join ${addresses[0]}: Member 'server-1' part of wrong segment 'alpha' (expected 'beta')` }] };
    return { joined: 1, results: [{ address: addresses[0], joined: true, error: '' }] };
  },
  async forceLeave(node, prune) {
    calls.push(`force-leave ${node} ${prune}`);
  },
};

function wanMember(node: string, datacenter: string, addr: string, status: string): AreaMember {
  return { id: `${node}-${datacenter}-id`, name: `${node}.${datacenter}`, addr, port: 8300, datacenter, role: 'server', build: '0.1.0:abc', protocol: 2, status, rttNs: 0n };
}

const WAN_POOL = [wanMember('router-1', 'dc1', '127.0.1.20', 'alive'), wanMember('router-2', 'dc1', '127.0.1.21', 'failed'), wanMember('router-1', 'dc2', '127.0.2.20', 'left'), wanMember('router-2', 'dc2', '127.0.2.21', 'leaving')];

const AGENT = { datacenter: 'dc1', node: 'catalog', nodeId: '11111111-2222-4333-8444-555555555555', address: '127.0.1.10', gossip };

let served: Served;
let wanRouter: FakeRouter;
let routers: RouterClient;

beforeAll(async () => {
  wanRouter = await startFakeRouter('dc1');
  routers = new RouterClient([wanRouter.address], trace.getTracer('test'));
  served = await serveRouter((router) => registerAgentEndpoints(router, { ...AGENT, routers }));
});

afterAll(async () => {
  await served.close();
  routers.close();
  await wanRouter.close();
});

beforeEach(() => {
  calls.length = 0;
  unavailable = false;
  wanRouter.wan = WAN_POOL;
  wanRouter.wanJoins.length = 0;
  wanRouter.calls.length = 0;
  wanRouter.operatorRefusal = undefined;
});

const get = (path: string, method = 'GET') => served.request(path, method);

describe('GET /v1/agent/members (§2.6)', () => {
  test("Consul's member JSON: Status as serf's integer, serf protocol numbers", async () => {
    const response = await get('/v1/agent/members?segment=_all');
    expect(response.status).toBe(200);
    expect(response.json()).toEqual([
      { Name: 'server-1', Addr: '127.0.1.101', Port: 8301, Tags: { role: 'consul', dc: 'dc1', segment: '', id: 'x' }, Status: 1, ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2, DelegateMin: 2, DelegateMax: 5, DelegateCur: 4 },
      expect.objectContaining({ Name: 'node-alpha-1', Tags: expect.objectContaining({ segment: 'alpha' }), Status: 1 }),
      expect.objectContaining({ Name: 'node-beta-1', Status: 4 }),
    ]);
  });

  test('?segment=alpha lists that pool (the server with its segment port); no segment is the default pool', async () => {
    expect((await get('/v1/agent/members?segment=alpha')).json()).toEqual([expect.objectContaining({ Name: 'server-1', Port: 8303 }), expect.objectContaining({ Name: 'node-alpha-1' })]);
    expect((await get('/v1/agent/members')).json()).toEqual([expect.objectContaining({ Name: 'server-1' })]);
    expect(calls).toEqual(['members alpha', 'members ']);
  });

  test("an unknown segment is the agent's error, a 500 with its text", async () => {
    expect(await get('/v1/agent/members?segment=gamma')).toMatchObject({ status: 500, text: 'segment "gamma" not found' });
  });

  test("no gossip agent reachable: a 500 naming each agent tried", async () => {
    unavailable = true;
    expect(await get('/v1/agent/members')).toMatchObject({ status: 500, text: expect.stringContaining('127.0.1.1:8320: unreachable') });
  });
});

describe('GET /v1/agent/members?wan=1: the federation routers\' WAN pool (§2.6, §1.3, §1.5)', () => {
  test("Consul's member JSON for each router: `<node>.<dc>`, its 8300 address, a server's WAN tags, Status as serf's integer", async () => {
    const response = await get('/v1/agent/members?wan=1');
    expect(response.status).toBe(200);
    const members = response.json() as { Name: string; Status: number }[];
    expect(members[0]).toEqual({
      Name: 'router-1.dc1',
      Addr: '127.0.1.20',
      Port: 8300,
      Tags: { role: 'consul', dc: 'dc1', segment: '', port: '8300', build: '0.1.0:abc', vsn: '2', id: 'router-1-dc1-id' },
      Status: 1,
      ProtocolMin: 1,
      ProtocolMax: 5,
      ProtocolCur: 2,
      DelegateMin: 2,
      DelegateMax: 5,
      DelegateCur: 4,
    });
    // alive 1, failed 4, left 3, leaving 2.
    expect(members.map((m) => [m.Name, m.Status])).toEqual([['router-1.dc1', 1], ['router-2.dc1', 4], ['router-1.dc2', 3], ['router-2.dc2', 2]]);
    expect(wanRouter.calls).toEqual(['wanMembers']);
    expect(calls).toEqual([]);
  });

  test('any non-empty wan counts; segment= and segment=_all are allowed with it', async () => {
    for (const query of ['wan=true', 'wan=1&segment=', 'wan=1&segment=_all']) {
      expect((await get(`/v1/agent/members?${query}`)).status).toBe(200);
    }
    expect(wanRouter.calls).toEqual(['wanMembers', 'wanMembers', 'wanMembers']);
    // `?wan=` is no WAN: the LAN pool.
    await get('/v1/agent/members?wan=');
    expect(calls).toEqual(['members ']);
  });

  test('wan with a real segment is a 400 with Consul\'s text, and the router is not asked', async () => {
    expect(await get('/v1/agent/members?wan=1&segment=alpha')).toMatchObject({ status: 400, text: 'Cannot provide a segment with wan=true' });
    expect(wanRouter.calls).toEqual([]);
  });

  test("the router's own refusal is a 500 with its text", async () => {
    wanRouter.operatorRefusal = { code: GrpcStatus.UNAVAILABLE, details: 'No cluster leader' };
    expect(await get('/v1/agent/members?wan=1')).toMatchObject({ status: 500, text: 'No cluster leader' });
  });
});

describe('?wan without a federation router', () => {
  let none: Served;
  let unconfigured: RouterClient;

  beforeAll(async () => {
    unconfigured = new RouterClient([], trace.getTracer('test'));
    none = await serveRouter((router) => registerAgentEndpoints(router, { ...AGENT, routers: unconfigured }));
  });

  afterAll(async () => {
    await none.close();
    unconfigured.close();
  });

  test('no -router-addr: members and join are a 500 that says how to configure one', async () => {
    for (const [path, method] of [['/v1/agent/members?wan=1', 'GET'], ['/v1/agent/join/127.0.2.20?wan=1', 'PUT']]) {
      const response = await none.request(path, method);
      expect(response.status).toBe(500);
      expect(response.text).toMatch(/^No federation router is configured for this catalog: start it with -router-addr=HOST:8330/);
    }
  });

  test('a catalog served without routers at all says the WAN pool is theirs', async () => {
    const lanOnly = await serveRouter((router) => registerAgentEndpoints(router, AGENT));
    try {
      expect(await lanOnly.request('/v1/agent/members?wan=1')).toMatchObject({ status: 500, text: NO_WAN_POOL });
    } finally {
      await lanOnly.close();
    }
  });
});

describe('GET /v1/agent/self', () => {
  test('Config names the catalog (not a server); Member is the catalog as a default-segment member', async () => {
    const body = (await get('/v1/agent/self')).json() as { Config: Record<string, unknown>; Member: Record<string, unknown> };
    expect(body.Config).toMatchObject({ Datacenter: 'dc1', NodeName: 'catalog', NodeID: '11111111-2222-4333-8444-555555555555', Server: false, Version: expect.any(String), Revision: expect.any(String) });
    expect(body.Member).toMatchObject({ Name: 'catalog', Addr: '127.0.1.10', Status: 1, Tags: { role: 'node', dc: 'dc1', segment: '' } });
  });

  test("with a gossip agent under the catalog's node name, Config.NodeID is that agent's node ID (its `id` tag, the catalog's node ID) and Member is that agent", async () => {
    const agent: Member = { ...gossipMember('catalog', ''), address: '127.0.1.10', tags: { role: 'node', dc: 'dc1', segment: '', id: '66666666-7777-4888-8999-aaaaaaaaaaaa' } };
    POOLS._all.push(agent);
    try {
      const body = (await get('/v1/agent/self')).json() as { Config: Record<string, unknown>; Member: Record<string, unknown> };
      expect(body.Config).toMatchObject({ NodeName: 'catalog', NodeID: '66666666-7777-4888-8999-aaaaaaaaaaaa' });
      expect(body.Member).toMatchObject({ Name: 'catalog', Port: 8301, Tags: { id: '66666666-7777-4888-8999-aaaaaaaaaaaa' } });
    } finally {
      POOLS._all.pop();
    }
  });

  test('still answers when no gossip agent does', async () => {
    unavailable = true;
    expect((await get('/v1/agent/self')).status).toBe(200);
  });
});

describe('/v1/agent/join and /v1/agent/force-leave', () => {
  test.each(['PUT', 'GET'])('%s join asks the agent to join the address with the segment; 200, empty body', async (method) => {
    const response = await get('/v1/agent/join/127.0.1.1:8303?segment=alpha', method);
    expect(response).toMatchObject({ status: 200, text: '' });
    expect(calls).toEqual(['join 127.0.1.1:8303 alpha']);
  });

  test('?dc= does not apply to a join: the local agent joins (AgentJoin reads no dc; node-consul sends its default dc on every call)', async () => {
    expect(await get('/v1/agent/join/127.0.1.1?dc=dc2', 'PUT')).toMatchObject({ status: 200, text: '' });
    expect(calls).toEqual(['join 127.0.1.1 ']);
  });

  test("a join no address accepted is a 500 with the agent's (Consul's) text", async () => {
    const response = await get('/v1/agent/join/127.0.9.1:8303', 'PUT');
    expect(response).toMatchObject({ status: 500, text: "Failed to join 127.0.9.1:8303: Member 'server-1' part of wrong segment 'alpha' (expected 'beta')" });
  });

  test.each(['PUT', 'GET'])("%s join ?wan=1: a router of the datacenter joins the WAN pool through the address (Consul's JoinWAN); 200, empty body", async (method) => {
    expect(await get('/v1/agent/join/127.0.2.20:8300?wan=1', method)).toMatchObject({ status: 200, text: '' });
    // A segment does not apply to the WAN; the gossip agent is not asked.
    expect(await get('/v1/agent/join/127.0.2.21?wan=1&segment=alpha', method)).toMatchObject({ status: 200, text: '' });
    expect(wanRouter.wanJoins).toEqual(['127.0.2.20:8300', '127.0.2.21']);
    expect(calls).toEqual([]);
  });

  test("a WAN join no address accepted is a 500 with memberlist's `Failed to join <ip:port>: ...` (port 8300 when none was given)", async () => {
    const response = await get('/v1/agent/join/unreachable.dc2?wan=1', 'PUT');
    expect(response).toMatchObject({ status: 500, text: 'Failed to join unreachable.dc2:8300: failed to connect to "unreachable.dc2:8300": dial tcp unreachable.dc2:8300: i/o timeout' });
  });

  test('force-leave ?wan: the routers have none yet, a 500 that says so', async () => {
    expect(await get('/v1/agent/force-leave/router-1.dc2?wan=1', 'PUT')).toMatchObject({ status: 500, text: WAN_FORCE_LEAVE_NOT_HERE });
    expect(calls).toEqual([]);
  });

  test('force-leave, with ?prune', async () => {
    expect((await get('/v1/agent/force-leave/node-beta-1', 'PUT')).status).toBe(200);
    expect((await get('/v1/agent/force-leave/node-beta-1?prune', 'PUT')).status).toBe(200);
    expect(calls).toEqual(['force-leave node-beta-1 false', 'force-leave node-beta-1 true']);
  });

  test('DELETE is not a method of join: 405 with Allow', async () => {
    const response = await get('/v1/agent/join/127.0.1.1', 'DELETE');
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('OPTIONS,PUT,GET');
  });
});
