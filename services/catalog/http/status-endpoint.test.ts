// /v1/status/leader and /v1/status/peers (reference/consul-compat.md §4.6) and
// /v1/operator/raft/configuration, from a scripted consensus Cluster API.
import { MemberListResponse, RaftRole, StatusResponse } from '../../gen/consulate/consensus/v1/cluster';
import { ConsensusClient } from '../../lib/consensus-client';
import { registerOperatorEndpoints } from './operator-endpoint';
import { registerStatusEndpoints, serverRpcAddress } from './status-endpoint';
import { Served, serveRouter } from './testing/serve-router';

const MEMBERS = [
  { id: 'server-1', address: '127.0.1.1:8310', learner: false },
  { id: 'server-2', address: '127.0.1.2:8310', learner: false },
  { id: 'server-3', address: '127.0.1.3:8310', learner: false },
  { id: 'server-4', address: '127.0.1.4:8310', learner: true },
];

/** What each server answers: server-2 leads unless `leader` says otherwise. */
const cluster = { leader: 'server-2', reachable: true, calls: [] as string[] };

function statusOf(address: string): StatusResponse {
  const self = MEMBERS.find((m) => m.address === address)!;
  const leader = MEMBERS.find((m) => m.id === cluster.leader);
  return {
    role: self.id === cluster.leader ? RaftRole.RAFT_ROLE_LEADER : RaftRole.RAFT_ROLE_FOLLOWER,
    term: 3n,
    leader: leader?.id ?? '',
    leaderAddress: leader?.address ?? '',
    commitIndex: 42n,
    appliedIndex: 42n,
    revision: 40n,
    members: MEMBERS,
  };
}

const consensus = {
  async cluster(method: 'status' | 'memberList', _request: object, options: { address?: string }) {
    const address = options.address ?? MEMBERS[0].address;
    cluster.calls.push(`${method} ${address}`);
    if (!cluster.reachable) throw Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 });
    if (method === 'status') return { ...statusOf(address), answeredBy: address };
    const list: MemberListResponse = { members: MEMBERS, leader: cluster.leader };
    return { ...list, answeredBy: address };
  },
} as unknown as Pick<ConsensusClient, 'cluster'>;

let served: Served;

beforeAll(async () => {
  served = await serveRouter((router) => {
    registerStatusEndpoints(router, { datacenter: 'dc1', consensus });
    registerOperatorEndpoints(router, { datacenter: 'dc1', consensus, gossip: { segments: async () => ['', 'alpha', 'beta'] } });
  });
});

afterAll(async () => {
  await served.close();
});

beforeEach(() => {
  cluster.leader = 'server-2';
  cluster.reachable = true;
  cluster.calls.length = 0;
});

describe('/v1/status (§4.6)', () => {
  test('leader: the Raft leader as Consul shows a server, "ip:8300"', async () => {
    expect((await served.request('/v1/status/leader')).json()).toBe('127.0.1.2:8300');
  });

  test('leader: "" when there is none', async () => {
    cluster.leader = '';
    const response = await served.request('/v1/status/leader');
    expect(response).toMatchObject({ status: 200, text: '""' });
  });

  test('peers: the voters, "ip:8300" each (a learner is not a peer)', async () => {
    expect((await served.request('/v1/status/peers')).json()).toEqual(['127.0.1.1:8300', '127.0.1.2:8300', '127.0.1.3:8300']);
  });

  test("no consensus server reachable: Consul's No known Consul servers, a 500", async () => {
    cluster.reachable = false;
    const response = await served.request('/v1/status/leader');
    expect(response.status).toBe(500);
    expect(response.text).toMatch(/^No known Consul servers/);
  });

  // ?dc= of another datacenter never reaches the handler: remote-datacenter.test.ts.
  test('?dc= of our own datacenter is served here', async () => {
    expect((await served.request('/v1/status/peers?dc=dc1')).status).toBe(200);
  });

  test('serverRpcAddress keeps the host, IPv6 included', () => {
    expect(serverRpcAddress('10.1.10.12:8310')).toBe('10.1.10.12:8300');
    expect(serverRpcAddress('[::1]:8310')).toBe('[::1]:8300');
  });
});

describe('/v1/operator/raft/configuration', () => {
  test("Consul's RaftConfigurationResponse, read on the leader", async () => {
    const body = (await served.request('/v1/operator/raft/configuration')).json();
    expect(body).toEqual({
      Servers: [
        { ID: 'server-1', Node: 'server-1', Address: '127.0.1.1:8300', Leader: false, Voter: true, ProtocolVersion: '3' },
        { ID: 'server-2', Node: 'server-2', Address: '127.0.1.2:8300', Leader: true, Voter: true, ProtocolVersion: '3' },
        { ID: 'server-3', Node: 'server-3', Address: '127.0.1.3:8300', Leader: false, Voter: true, ProtocolVersion: '3' },
        { ID: 'server-4', Node: 'server-4', Address: '127.0.1.4:8300', Leader: false, Voter: false, ProtocolVersion: '3' },
      ],
      Index: 42,
    });
    expect(cluster.calls).toEqual(['status 127.0.1.1:8310', 'status 127.0.1.2:8310']);
  });

  test('?stale answers from whichever server answers', async () => {
    await served.request('/v1/operator/raft/configuration?stale');
    expect(cluster.calls).toEqual(['status 127.0.1.1:8310']);
  });

  test('no leader: No cluster leader, a 500', async () => {
    cluster.leader = '';
    expect(await served.request('/v1/operator/raft/configuration')).toMatchObject({ status: 500, text: 'No cluster leader' });
  });
});

describe('/v1/operator/segment (§2.7)', () => {
  test('every segment, "" first', async () => {
    expect((await served.request('/v1/operator/segment')).json()).toEqual(['', 'alpha', 'beta']);
  });
});
