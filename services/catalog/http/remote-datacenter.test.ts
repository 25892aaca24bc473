// `?dc=` of another datacenter (reference/consul-compat.md §3.9, errors §3.7): the catalog's whole
// route table behind the real HTTP server, forwarding through a RouterClient to fake routers over
// real gRPC (testing/fake-router.ts). The request crosses as it came, the answer comes back as the
// remote catalog gave it, and each way of failing is Consul's 500.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { ForwardResponse } from '../../gen/consulate/router/v1/operator';
import { FederatedCatalog, serveFederatedCatalog } from '../testing/federated-catalog';
import { FakeRouter, startFakeRouter } from '../testing/fake-router';
import { FORWARD_TIMEOUT_MS, MAX_FORWARDED_BODY_BYTES, forwardPolicy, withoutDatacenter } from './remote-datacenter';

const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('test');

/** A dc1 catalog whose federation routers are at `routerAddresses`. */
const serveCatalog = (routerAddresses: string[], maxForwardsInFlight?: number) => serveFederatedCatalog(routerAddresses, { tracer, maxForwardsInFlight });

async function call(catalog: FederatedCatalog, method: string, path: string, options: { body?: Buffer | string; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${catalog.base}${path}`, { method, body: options.body, headers: options.headers });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** An address nothing listens on. */
async function deadAddress(): Promise<string> {
  const router = await startFakeRouter('dc1');
  await router.close();
  return router.address;
}

function answer(status: number, headers: Record<string, string>, body: string | Buffer): ForwardResponse {
  return { response: { status, headers, body: Buffer.from(body) }, path: ['dc2'] };
}

describe('?dc= of another datacenter, through the federation routers', () => {
  let router: FakeRouter;
  let catalog: FederatedCatalog;

  beforeAll(async () => {
    router = await startFakeRouter('dc1');
    catalog = await serveCatalog([router.address]);
  });

  afterAll(async () => {
    await catalog.close();
    await router.close();
  });

  beforeEach(() => {
    router.forwarded.length = 0;
    catalog.logs.length = 0;
    exporter.reset();
  });

  test('a read crosses as it came, less `dc`; the answer comes back unchanged: status, index headers, body', async () => {
    router.forwardAnswer = () =>
      answer(200, { 'Content-Type': 'application/json', 'X-Consul-Index': '42', 'X-Consul-KnownLeader': 'true', 'X-Consul-LastContact': '3', 'X-Consul-Effective-Consistency': 'stale', 'Set-Cookie': 'a=b', 'X-Powered-By': 'dc2', Connection: 'close' }, '{"consul":[],"web":["v1"]}');
    const response = await call(catalog, 'GET', '/v1/catalog/services?index=41&dc=dc2&wait=1s&stale&node-meta=rack%3Ar1', { headers: { 'X-Consul-Token': 'secret' } });
    expect({ status: response.status, text: response.text }).toEqual({ status: 200, text: '{"consul":[],"web":["v1"]}' });
    expect(Object.fromEntries(['content-type', 'x-consul-index', 'x-consul-knownleader', 'x-consul-lastcontact', 'x-consul-effective-consistency'].map((h) => [h, response.headers.get(h)]))).toEqual({
      'content-type': 'application/json',
      'x-consul-index': '42',
      'x-consul-knownleader': 'true',
      'x-consul-lastcontact': '3',
      'x-consul-effective-consistency': 'stale',
    });
    // Only the remote catalog's own headers come back, whatever a remote of another version sent.
    expect([response.headers.get('set-cookie'), response.headers.get('x-powered-by')]).toEqual([null, null]);
    expect(router.forwarded).toHaveLength(1);
    const forwarded = router.forwarded[0];
    expect(forwarded).toMatchObject({ datacenter: 'dc2', request: { method: 'GET', path: '/v1/catalog/services', rawQuery: 'index=41&wait=1s&stale&node-meta=rack%3Ar1', body: Buffer.alloc(0) } });
    expect(forwarded.request?.headers['x-consul-token']).toBe('secret');
    // Hop-by-hop headers stay on this hop.
    expect(Object.keys(forwarded.request!.headers).filter((h) => ['host', 'connection', 'content-length', 'traceparent'].includes(h))).toEqual([]);
  });

  test('a write crosses with its body and content type, its path as it came (%2F kept)', async () => {
    router.forwardAnswer = () => answer(200, { 'Content-Type': 'application/json' }, 'true');
    const value = Buffer.from([0, 1, 2, 250, 251, 255]);
    const response = await call(catalog, 'PUT', '/v1/kv/app%2Fconfig?cas=0&dc=dc2', { body: value, headers: { 'Content-Type': 'application/octet-stream' } });
    expect({ status: response.status, text: response.text }).toEqual({ status: 200, text: 'true' });
    expect(router.forwarded[0]).toMatchObject({ datacenter: 'dc2', request: { method: 'PUT', path: '/v1/kv/app%2Fconfig', rawQuery: 'cas=0', headers: { 'content-type': 'application/octet-stream' } } });
    expect(Buffer.compare(router.forwarded[0].request!.body, value)).toBe(0);
  });

  test("the remote catalog's refusals are its own: a 404 with its index, a 400, come back as they are", async () => {
    router.forwardAnswer = () => answer(404, { 'X-Consul-Index': '7' }, '');
    const missing = await call(catalog, 'GET', '/v1/kv/nope?dc=dc2');
    expect({ status: missing.status, text: missing.text, index: missing.headers.get('x-consul-index') }).toEqual({ status: 404, text: '', index: '7' });
    router.forwardAnswer = () => answer(400, { 'Content-Type': 'text/plain; charset=utf-8' }, 'Cannot specify ?stale with ?consistent, conflicting semantics.');
    const conflicting = await call(catalog, 'GET', '/v1/health/service/web?dc=dc2&stale&consistent');
    expect({ status: conflicting.status, text: conflicting.text }).toEqual({ status: 400, text: 'Cannot specify ?stale with ?consistent, conflicting semantics.' });
    expect(router.forwarded.map((f) => f.request?.rawQuery)).toEqual(['', 'stale&consistent']);
  });

  test('our own datacenter, no `dc`, an empty `dc`: served here', async () => {
    for (const path of ['/v1/kv/nope?dc=dc1', '/v1/kv/nope', '/v1/kv/nope?dc=']) expect((await call(catalog, 'GET', path)).status).toBe(404);
    expect(router.forwarded).toEqual([]);
  });

  test("routes Consul answers from the agent itself stay here, whatever `dc` says: /v1/agent/*, the datacenters lists", async () => {
    expect((await call(catalog, 'GET', '/v1/catalog/datacenters?dc=dc2')).text).toBe('["dc1"]');
    expect((await call(catalog, 'GET', '/v1/coordinate/datacenters?dc=dc2')).text).toBe('[]');
    const agent = await call(catalog, 'GET', '/v1/agent/members?dc=dc2');
    expect(agent.text).toMatch(/-gossip-addr/);
    expect(router.forwarded).toEqual([]);
  });

  test('an unknown path or method is still answered here (404, 405), not forwarded', async () => {
    expect((await call(catalog, 'GET', '/v1/nothing/here?dc=dc2')).status).toBe(404);
    expect((await call(catalog, 'DELETE', '/v1/catalog/services?dc=dc2')).status).toBe(405);
    expect(router.forwarded).toEqual([]);
  });

  test('§3.7: no route is `No path to datacenter`, no server behind it `Remote DC has no server currently reachable`; each logged', async () => {
    router.forwardAnswer = () => ({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    expect(await call(catalog, 'GET', '/v1/catalog/nodes?dc=dc9')).toMatchObject({ status: 500, text: 'No path to datacenter' });
    router.forwardAnswer = () => ({ code: GrpcStatus.UNAVAILABLE, details: 'Remote DC has no server currently reachable' });
    expect(await call(catalog, 'GET', '/v1/catalog/nodes?dc=dc2')).toMatchObject({ status: 500, text: 'Remote DC has no server currently reachable' });
    router.forwardAnswer = () => ({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'the answer is larger than 4194304 bytes' });
    expect(await call(catalog, 'GET', '/v1/catalog/nodes?dc=dc2')).toMatchObject({ status: 500, text: 'the answer is larger than 4194304 bytes' });
    expect(catalog.logs.map((l) => [l.msg, l.datacenter, l.path])).toEqual([
      ['RPC request for DC is currently failing as no path was found', 'dc9', '/v1/catalog/nodes'],
      ['RPC request to DC is currently failing as no server can be reached', 'dc2', '/v1/catalog/nodes'],
      ['cannot forward GET /v1/catalog/nodes to datacenter dc2: the answer is larger than 4194304 bytes', 'dc2', '/v1/catalog/nodes'],
    ]);
  });

  test('the request span names the target datacenter', async () => {
    router.forwardAnswer = () => answer(200, {}, '[]');
    await call(catalog, 'GET', '/v1/catalog/nodes?dc=dc2');
    await call(catalog, 'GET', '/v1/catalog/datacenters');
    const spans = exporter.getFinishedSpans().filter((s) => s.name.startsWith('HTTP '));
    expect(spans.map((s) => [s.name, s.attributes.datacenter])).toEqual([
      ['HTTP GET /v1/catalog/nodes', 'dc2'],
      ['HTTP GET /v1/catalog/datacenters', undefined],
    ]);
  });

  test('a body past what one forward carries is refused here, with the usual 413', async () => {
    const response = await call(catalog, 'PUT', '/v1/kv/big?dc=dc2', { body: Buffer.alloc(MAX_FORWARDED_BODY_BYTES + 1) });
    expect({ status: response.status, text: response.text }).toEqual({ status: 413, text: `Request body(${MAX_FORWARDED_BODY_BYTES + 1} bytes) too large, max size: ${MAX_FORWARDED_BODY_BYTES} bytes` });
    expect(router.forwarded).toEqual([]);
  });
});

describe('which router carries it', () => {
  test('the first router unreachable: the second carries the request', async () => {
    const router = await startFakeRouter('dc1');
    router.forwardAnswer = () => answer(200, { 'Content-Type': 'application/json' }, '{}');
    const catalog = await serveCatalog([await deadAddress(), router.address]);
    try {
      expect(await call(catalog, 'GET', '/v1/catalog/services?dc=dc2')).toMatchObject({ status: 200, text: '{}' });
      expect(router.forwarded).toHaveLength(1);
    } finally {
      await catalog.close();
      await router.close();
    }
  });

  test('no router reachable: a 500 that names each router and why', async () => {
    const [a, b] = [await deadAddress(), await deadAddress()];
    const catalog = await serveCatalog([a, b]);
    try {
      const response = await call(catalog, 'GET', '/v1/catalog/services?dc=dc2');
      expect(response.status).toBe(500);
      expect(response.text).toMatch(new RegExp(`^No federation router could answer: ${a}: unreachable .*; ${b}: unreachable`));
      expect(catalog.logs.map((l) => l.msg)).toEqual([expect.stringMatching(/^cannot forward GET \/v1\/catalog\/services to datacenter dc2: No federation router could answer/)]);
    } finally {
      await catalog.close();
    }
  });

  test('forwards in flight are bounded: one more is a 429 to retry later, and the slot frees when the first ends', async () => {
    const router = await startFakeRouter('dc1');
    let release = () => undefined as void;
    router.forwardAnswer = () => new Promise((resolve) => (release = () => resolve(answer(200, {}, '[]'))));
    const catalog = await serveCatalog([router.address], 1);
    try {
      const first = call(catalog, 'GET', '/v1/catalog/nodes?dc=dc2&index=3&wait=5s');
      while (router.forwarded.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(await call(catalog, 'GET', '/v1/catalog/nodes?dc=dc2')).toMatchObject({ status: 429, text: 'too many requests forwarded to other datacenters at once (1); retry later' });
      release();
      expect((await first).status).toBe(200);
      router.forwardAnswer = () => answer(200, {}, '[]');
      expect((await call(catalog, 'GET', '/v1/catalog/nodes?dc=dc2')).status).toBe(200);
    } finally {
      await catalog.close();
      await router.close();
    }
  });

  test('no router configured: every endpoint family that takes `dc` answers No path to datacenter, as before federation', async () => {
    const catalog = await serveCatalog([]);
    try {
      const requests: [string, string][] = [
        ['GET', '/v1/catalog/services'],
        ['GET', '/v1/catalog/node/n1'],
        ['PUT', '/v1/catalog/register'],
        ['GET', '/v1/health/service/web'],
        ['GET', '/v1/kv/k'],
        ['PUT', '/v1/kv/k'],
        ['DELETE', '/v1/kv/k'],
        ['PUT', '/v1/session/create'],
        ['GET', '/v1/session/list'],
        ['PUT', '/v1/txn'],
        ['GET', '/v1/coordinate/nodes'],
        ['GET', '/v1/status/leader'],
        ['GET', '/v1/operator/raft/configuration'],
        ['GET', '/v1/operator/segment'],
        ['GET', '/v1/operator/area'],
        ['POST', '/v1/operator/area'],
      ];
      for (const [method, path] of requests) {
        expect([method, path, await call(catalog, method, `${path}?dc=dc2`).then((r) => [r.status, r.text])]).toEqual([method, path, [500, 'No path to datacenter']]);
      }
    } finally {
      await catalog.close();
    }
  });
});

describe('forwardPolicy: how long a forward may take, and whether a second router may carry it', () => {
  const policy = (method: string, query: string) => forwardPolicy({ method, query: new URLSearchParams(query) });

  test('a plain read: the forward timeout, and it may go to the next router', () => {
    expect(policy('GET', '')).toEqual({ timeoutMs: FORWARD_TIMEOUT_MS, repeatable: true });
  });

  test("a blocking read: its wait, Consul's wait/16 of jitter and the forward timeout; once only (the first may still wait)", () => {
    expect(policy('GET', 'index=5&wait=16s')).toEqual({ timeoutMs: 16_000 + 1_000 + FORWARD_TIMEOUT_MS, repeatable: false, readOnly: true });
    // Consul's default 5 min, its cap of 10 min.
    expect(policy('GET', 'index=5')).toEqual({ timeoutMs: 300_000 + 18_750 + FORWARD_TIMEOUT_MS, repeatable: false, readOnly: true });
    expect(policy('GET', 'index=5&wait=1h')).toEqual({ timeoutMs: 600_000 + 37_500 + FORWARD_TIMEOUT_MS, repeatable: false, readOnly: true });
  });

  test('a write is carried once; options the remote refuses travel all the same (it answers the 400)', () => {
    expect(policy('PUT', 'cas=0')).toEqual({ timeoutMs: FORWARD_TIMEOUT_MS, repeatable: false });
    expect(policy('GET', 'index=x&wait=forever')).toEqual({ timeoutMs: FORWARD_TIMEOUT_MS, repeatable: true });
  });
});

test('withoutDatacenter: every `dc` out, the rest as it came', () => {
  expect(withoutDatacenter('dc=dc2')).toBe('');
  expect(withoutDatacenter('stale&dc=dc2&index=4&d%63=dc3&dcx=1&tag=a+b')).toBe('stale&index=4&dcx=1&tag=a+b');
  expect(withoutDatacenter('')).toBe('');
});
