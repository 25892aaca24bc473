// /v1/agent/members, /self, /join, /force-leave through the real HTTP server, with a scripted
// gossip agent (reference/consul-compat.md §2.6, §4.8).
import { JoinResponse, Member } from '../../gen/consulate/gossip/v1/membership';
import { GossipAnswerError, GossipUnavailableError } from '../gossip-client';
import { AgentDeps, registerAgentEndpoints } from './agent-endpoint';
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

let served: Served;

beforeAll(async () => {
  served = await serveRouter((router) => registerAgentEndpoints(router, { datacenter: 'dc1', node: 'catalog', nodeId: '11111111-2222-4333-8444-555555555555', address: '127.0.1.10', gossip }));
});

afterAll(async () => {
  await served.close();
});

beforeEach(() => {
  calls.length = 0;
  unavailable = false;
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

  test.each(['alpha', ''])('wan with segment %p: 400 only for a real segment; wan alone: 500 until the router', async (segment) => {
    const response = await get(`/v1/agent/members?wan=1&segment=${segment}`);
    if (segment === 'alpha') expect(response).toMatchObject({ status: 400, text: 'Cannot provide a segment with wan=true' });
    else expect(response.status).toBe(500);
  });

  test('wan=1 with segment=_all is allowed, and answered 500: the WAN pool comes with the federation router', async () => {
    const response = await get('/v1/agent/members?wan=1&segment=_all');
    expect(response.status).toBe(500);
    expect(response.text).toMatch(/federation router/);
    expect(calls).toEqual([]);
  });

  test("no gossip agent reachable: a 500 naming each agent tried", async () => {
    unavailable = true;
    expect(await get('/v1/agent/members')).toMatchObject({ status: 500, text: expect.stringContaining('127.0.1.1:8320: unreachable') });
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

  test('?wan joins go to the WAN pool: not here yet', async () => {
    expect((await get('/v1/agent/join/127.0.2.1?wan=1', 'PUT')).status).toBe(500);
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
