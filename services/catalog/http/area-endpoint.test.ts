// `/v1/operator/area` (reference/consul-compat.md §3.1-3.2) and `/v1/catalog/datacenters` (§3.8)
// over a fake federation router on real gRPC: Consul's JSON shapes, blocking reads and their
// headers, Go's decode errors, the router's refusals, and what happens without a router.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { createLogger } from '../../lib/log';
import { RouterClient } from '../router-client';
import { FakeRouter, startFakeRouter } from '../testing/fake-router';
import { HttpHarness, startHttp } from '../testing/http-harness';
import { registerAreaEndpoints } from './area-endpoint';
import { registerDatacentersEndpoint } from './catalog-endpoint';

const tracer = trace.getTracer('test');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Served {
  readonly http: HttpHarness;
  readonly logs: string[];
  close(): Promise<void>;
}

async function serve(routerAddresses: string[]): Promise<Served> {
  const logs: string[] = [];
  const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'warn', destination: { write: (line: string) => void logs.push(JSON.parse(line).msg) } });
  const routers = new RouterClient(routerAddresses, tracer);
  const http = await startHttp((router) => {
    registerAreaEndpoints(router, { datacenter: 'dc1', routers });
    registerDatacentersEndpoint(router, { datacenter: 'dc1', routers, logger });
  });
  return {
    http,
    logs,
    async close() {
      await http.close();
      routers.close();
    },
  };
}

async function deadAddress(): Promise<string> {
  const router = await startFakeRouter('dc1');
  await router.close();
  return router.address;
}

describe('/v1/operator/area (§3.2)', () => {
  let router: FakeRouter;
  let served: Served;
  let http: HttpHarness;

  beforeAll(async () => {
    router = await startFakeRouter('dc1');
    served = await serve([router.address]);
    http = served.http;
  });

  afterAll(async () => {
    await served.close();
    await router.close();
  });

  beforeEach(() => {
    router.areas.clear();
    router.members.clear();
    router.operatorRefusal = undefined;
  });

  const create = async (body: unknown) => {
    const answer = await http.request('POST', '/v1/operator/area', body);
    expect(answer.status).toBe(200);
    return (answer.json as { ID: string }).ID;
  };

  test('create answers {"ID"} (a UUID made by the router); list answers api.Area with our Transit, RetryJoin null when empty', async () => {
    const first = await create({ PeerDatacenter: 'dc2', RetryJoin: ['10.1.2.3', '10.1.2.4:8300'], UseTLS: true });
    const second = await create({ PeerDatacenter: 'other', Transit: true });
    expect(first).toMatch(UUID);
    expect(router.areas.get(first)).toEqual({ id: first, peerDatacenter: 'dc2', retryJoin: ['10.1.2.3', '10.1.2.4:8300'], useTls: true, transit: false });
    const list = await http.request('GET', '/v1/operator/area');
    expect(list.status).toBe(200);
    expect(list.text).toBe(
      `[{"ID":"${first}","PeerDatacenter":"dc2","RetryJoin":["10.1.2.3","10.1.2.4:8300"],"UseTLS":true,"Transit":false},` +
        `{"ID":"${second}","PeerDatacenter":"other","RetryJoin":null,"UseTLS":false,"Transit":true}]`,
    );
  });

  test("list and get are blocking reads: index/wait/stale/consistent go to the router, Consul's headers come back", async () => {
    await create({ PeerDatacenter: 'dc2' });
    const list = await http.request('GET', '/v1/operator/area');
    expect(list.headers).toMatchObject({ 'x-consul-index': String(router.index), 'x-consul-knownleader': 'true', 'x-consul-lastcontact': '0', 'x-consul-effective-consistency': 'leader' });
    expect(router.lastReadOptions).toEqual({ minIndex: 0n, waitMs: 300_000, stale: false, consistent: false });

    await http.request('GET', '/v1/operator/area?index=3&wait=2s&stale');
    expect(router.lastReadOptions).toEqual({ minIndex: 3n, waitMs: 2_000, stale: true, consistent: false });
    const id = [...router.areas.keys()][0];
    const get = await http.request('GET', `/v1/operator/area/${id}?consistent`);
    expect(router.lastReadOptions).toEqual({ minIndex: 0n, waitMs: 300_000, stale: false, consistent: true });
    expect(get.headers['x-consul-effective-consistency']).toBe('consistent');

    const conflicting = await http.request('GET', '/v1/operator/area?stale&consistent');
    expect({ status: conflicting.status, text: conflicting.text }).toEqual({ status: 400, text: 'Cannot specify ?stale with ?consistent, conflicting semantics.' });
    expect((await http.request('GET', '/v1/operator/area?wait=soon&index=1')).text).toBe('Invalid wait time');
  });

  test('a blocking list answers when an area changes', async () => {
    const index = (await http.request('GET', '/v1/operator/area')).headers['x-consul-index'];
    const blocked = http.request('GET', `/v1/operator/area?index=${index}&wait=4s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await create({ PeerDatacenter: 'dc5' });
    const answer = await blocked;
    expect(Number(answer.headers['x-consul-index'])).toBeGreaterThan(Number(index));
    expect((answer.json as { PeerDatacenter: string }[]).map((a) => a.PeerDatacenter)).toEqual(['dc5']);
  });

  test('get answers an array: the area, or [] for an unknown ID (not a 404)', async () => {
    const id = await create({ PeerDatacenter: 'dc2' });
    expect((await http.request('GET', `/v1/operator/area/${id}`)).json).toEqual([{ ID: id, PeerDatacenter: 'dc2', RetryJoin: null, UseTLS: false, Transit: false }]);
    expect(await http.request('GET', '/v1/operator/area/8f246b77-f3e1-ff88-5b48-8ec93abf3e05')).toMatchObject({ status: 200, text: '[]' });
  });

  test("update changes what its body names (UseTLS, Transit) and answers {\"ID\"}; a Go client's whole api.Area leaves Transit alone", async () => {
    const id = await create({ PeerDatacenter: 'dc2' });
    expect((await http.request('PUT', `/v1/operator/area/${id}`, { UseTLS: true })).json).toEqual({ ID: id });
    expect(router.areas.get(id)).toMatchObject({ useTls: true, transit: false });
    await http.request('PUT', `/v1/operator/area/${id}`, { Transit: true, UseTLS: null });
    expect(router.areas.get(id)).toMatchObject({ useTls: true, transit: true });
    await http.request('PUT', `/v1/operator/area/${id}`, { ID: id, PeerDatacenter: 'dc2', RetryJoin: null, UseTLS: false });
    expect(router.areas.get(id)).toMatchObject({ peerDatacenter: 'dc2', useTls: false, transit: true });
  });

  test('delete answers 200 with no body; the area is gone', async () => {
    const id = await create({ PeerDatacenter: 'dc2' });
    expect(await http.request('DELETE', `/v1/operator/area/${id}`)).toMatchObject({ status: 200, text: '' });
    expect((await http.request('GET', `/v1/operator/area/${id}`)).json).toEqual([]);
  });

  test('join answers one {Address, Joined, Error} per address; a failed address does not fail the call', async () => {
    const id = await create({ PeerDatacenter: 'dc2' });
    const answer = await http.request('PUT', `/v1/operator/area/${id}/join`, ['10.1.2.3', 'unreachable.example']);
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual([
      { Address: '10.1.2.3', Joined: true, Error: '' },
      { Address: 'unreachable.example', Joined: false, Error: 'failed to connect to "unreachable.example:8300": dial tcp unreachable.example:8300: i/o timeout' },
    ]);
  });

  test('members answers api.SerfMember, RTT in nanoseconds (0 for the router itself, negative when not estimated)', async () => {
    const id = await create({ PeerDatacenter: 'dc2' });
    const member = { id: 'a2f0', addr: '127.0.0.2', port: 8300, role: 'server', build: '0.1.0', protocol: 2, status: 'alive' };
    router.members.set(id, [
      { ...member, name: 'router-1.dc1', datacenter: 'dc1', rttNs: 0n },
      { ...member, name: 'router-1.dc2', datacenter: 'dc2', rttNs: 2_964_369n },
      { ...member, name: 'router-2.dc2', datacenter: 'dc2', status: 'failed', rttNs: -1n },
    ]);
    const answer = await http.request('GET', `/v1/operator/area/${id}/members`);
    expect(answer.text).toBe(
      '[{"ID":"a2f0","Name":"router-1.dc1","Addr":"127.0.0.2","Port":8300,"Datacenter":"dc1","Role":"server","Build":"0.1.0","Protocol":2,"Status":"alive","RTT":0},' +
        '{"ID":"a2f0","Name":"router-1.dc2","Addr":"127.0.0.2","Port":8300,"Datacenter":"dc2","Role":"server","Build":"0.1.0","Protocol":2,"Status":"alive","RTT":2964369},' +
        '{"ID":"a2f0","Name":"router-2.dc2","Addr":"127.0.0.2","Port":8300,"Datacenter":"dc2","Role":"server","Build":"0.1.0","Protocol":2,"Status":"failed","RTT":-1}]',
    );
  });

  test("a body Go cannot decode is a 400 `Request decode failed: <Go's error>`", async () => {
    const id = await create({ PeerDatacenter: 'dc2' });
    const calls = router.calls.length;
    for (const [method, path, body, error] of [
      ['POST', '/v1/operator/area', '{', 'unexpected EOF'],
      ['POST', '/v1/operator/area', '', 'EOF'],
      ['POST', '/v1/operator/area', '{"PeerDatacenter":5}', 'json: cannot unmarshal number into Go struct field Area.PeerDatacenter of type string'],
      ['PUT', `/v1/operator/area/${id}`, '{"UseTLS":"yes"}', 'json: cannot unmarshal string into Go struct field Area.UseTLS of type bool'],
      ['PUT', `/v1/operator/area/${id}/join`, '{"Address":"10.1.2.3"}', 'json: cannot unmarshal object into Go value of type []string'],
    ]) {
      expect([method, path, await http.request(method, path, body).then((a) => [a.status, a.text])]).toEqual([method, path, [400, `Request decode failed: ${error}`]]);
    }
    expect(router.calls.slice(calls)).toEqual([]);
  });

  test("the router's refusals keep its text: 400 for a request that can never succeed, else Consul's 500", async () => {
    expect(await http.request('POST', '/v1/operator/area', { RetryJoin: ['10.1.2.3'] })).toMatchObject({ status: 400, text: 'Must provide a peer datacenter' });
    expect(await http.request('POST', '/v1/operator/area', { PeerDatacenter: 'dc1' })).toMatchObject({ status: 400, text: 'Cannot create an area with the local datacenter "dc1"' });
    await create({ PeerDatacenter: 'dc2' });
    expect(await http.request('POST', '/v1/operator/area', { PeerDatacenter: 'dc2' })).toMatchObject({ status: 500, text: 'An area with peer datacenter "dc2" already exists' });
    const unknown = '8b0ee2f4-0000-4000-8000-000000000000';
    for (const [method, suffix] of [
      ['GET', '/members'],
      ['PUT', ''],
      ['DELETE', ''],
      ['PUT', '/join'],
    ]) {
      const ask = (id: string) => http.request(method, `/v1/operator/area/${id}${suffix}`, method === 'PUT' ? (suffix === '/join' ? [] : {}) : undefined).then((a) => [a.status, a.text]);
      expect([method, suffix, await ask(unknown)]).toEqual([method, suffix, [500, `area ID "${unknown}" does not exist`]]);
      expect([method, suffix, await ask('nope')]).toEqual([method, suffix, [400, 'Invalid area ID "nope": an area ID is a UUID (8-4-4-4-12 hex digits)']]);
    }
    router.operatorRefusal = { code: GrpcStatus.UNAVAILABLE, details: 'No cluster leader' };
    expect(await http.request('GET', '/v1/operator/area')).toMatchObject({ status: 500, text: 'No cluster leader' });
  });
});

describe('without a federation router', () => {
  test('every area endpoint is a 500 that says how to configure one (not a 404)', async () => {
    const served = await serve([]);
    try {
      for (const [method, path, body] of [
        ['POST', '/v1/operator/area', { PeerDatacenter: 'dc2' }],
        ['GET', '/v1/operator/area', undefined],
        ['GET', '/v1/operator/area/x', undefined],
        ['PUT', '/v1/operator/area/x', {}],
        ['DELETE', '/v1/operator/area/x', undefined],
        ['PUT', '/v1/operator/area/x/join', ['10.1.2.3']],
        ['GET', '/v1/operator/area/x/members', undefined],
      ] as const) {
        const answer = await served.http.request(method, path, body);
        expect([method, path, answer.status, answer.text]).toEqual([method, path, 500, expect.stringContaining('start it with -router-addr=HOST:8330')]);
      }
    } finally {
      await served.close();
    }
  });

  test('no router reachable: a 500 naming each one', async () => {
    const dead = await deadAddress();
    const served = await serve([dead]);
    try {
      const answer = await served.http.request('GET', '/v1/operator/area');
      expect(answer.status).toBe(500);
      expect(answer.text).toMatch(new RegExp(`^No federation router could answer: ${dead}: unreachable`));
    } finally {
      await served.close();
    }
  });
});

describe('/v1/catalog/datacenters (§3.8)', () => {
  test("the router's list as it gives it: nearest first, in Consul's order", async () => {
    const router = await startFakeRouter('dc1');
    router.datacenters = { datacenters: ['dc1', 'dc3', 'dc2', 'dc9'], routes: [] };
    const served = await serve([router.address]);
    try {
      expect((await served.http.request('GET', '/v1/catalog/datacenters')).json).toEqual(['dc1', 'dc3', 'dc2', 'dc9']);
    } finally {
      await served.close();
      await router.close();
    }
  });

  test('no router configured: ours alone, as Consul with no WAN and no areas', async () => {
    const served = await serve([]);
    try {
      expect(await served.http.request('GET', '/v1/catalog/datacenters')).toMatchObject({ status: 200, text: '["dc1"]' });
      expect(served.logs).toEqual([]);
    } finally {
      await served.close();
    }
  });

  test('no router reachable, or one that fails: ours alone, and a log line saying why', async () => {
    const router = await startFakeRouter('dc1');
    router.operatorRefusal = { code: GrpcStatus.INTERNAL, details: 'route table not ready' };
    const unreachable = await serve([await deadAddress()]);
    const failing = await serve([router.address]);
    try {
      expect(await unreachable.http.request('GET', '/v1/catalog/datacenters')).toMatchObject({ status: 200, text: '["dc1"]' });
      expect(unreachable.logs).toEqual([expect.stringMatching(/^no federation router answered for the list of datacenters, answering with ours alone: No federation router could answer: .*unreachable/)]);
      expect(await failing.http.request('GET', '/v1/catalog/datacenters')).toMatchObject({ status: 200, text: '["dc1"]' });
      expect(failing.logs).toEqual([expect.stringContaining('route table not ready')]);
    } finally {
      await unreachable.close();
      await failing.close();
      await router.close();
    }
  });
});
