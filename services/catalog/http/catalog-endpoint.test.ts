/**
 * `/v1/catalog/*` over real HTTP, in-process, against a view fed by a fake consensus
 * (reference/consul-compat.md §4.1 shapes, §4.4 blocking, §4.5 headers, §4.8 error mapping, §2.8
 * node-meta filter).
 */
import { FakeConsensus } from '../testing/fake-consensus';
import { HttpHarness, startHttp } from '../testing/http-harness';
import { MAX_CATALOG_WRITE_BODY_BYTES, registerCatalogEndpoints } from './catalog-endpoint';

const NODE_ID = '40e4a748-2192-161a-0510-9bf59fe950b5';

let consensus: FakeConsensus;
let http: HttpHarness;

beforeEach(async () => {
  consensus = new FakeConsensus();
  const deps = { datacenter: 'dc1', view: consensus.view, sync: { lastContactMs: Date.now() }, consensus };
  http = await startHttp((router) => registerCatalogEndpoints(router, deps));
});

afterEach(() => http.close());

async function put(path: string, body: unknown): Promise<void> {
  const answer = await http.request('PUT', path, body);
  expect({ status: answer.status, text: answer.text }).toEqual({ status: 200, text: 'true' });
}

async function populate(): Promise<void> {
  await put('/v1/catalog/register', {
    ID: NODE_ID,
    Node: 'alpha-1',
    Address: '10.1.0.1',
    TaggedAddresses: { lan: '10.1.0.1' },
    NodeMeta: { 'consul-network-segment': 'alpha', rack: 'r1' },
    Service: { ID: 'web-1', Service: 'web', Tags: ['v1', 'Primary'], Port: 8080, Meta: { version: '1' } },
    Checks: [{ CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' }],
  });
  await put('/v1/catalog/register', {
    Node: 'beta-1',
    Address: '10.2.0.1',
    NodeMeta: { 'consul-network-segment': 'beta' },
    Service: { ID: 'web-2', Service: 'web', Tags: ['v2'], Address: '10.2.0.99', Port: 8080 },
  });
  await put('/v1/catalog/register', { Node: 'beta-1', Address: '10.2.0.1', NodeMeta: { 'consul-network-segment': 'beta' }, Service: { Service: 'redis', Tags: ['primary'], Port: 6379 } });
}

describe('PUT /v1/catalog/register and /deregister', () => {
  test('answer true; rows readable at once with their indexes', async () => {
    await populate();
    const nodes = await http.request('GET', '/v1/catalog/nodes');
    expect(nodes.status).toBe(200);
    const alpha = consensus.view.get('/c/n/alpha-1')!;
    expect(nodes.json).toEqual([
      {
        ID: NODE_ID,
        Node: 'alpha-1',
        Address: '10.1.0.1',
        Datacenter: 'dc1',
        TaggedAddresses: { lan: '10.1.0.1' },
        Meta: { 'consul-network-segment': 'alpha', rack: 'r1' },
        CreateIndex: alpha.createRevision,
        ModifyIndex: alpha.modRevision,
      },
      expect.objectContaining({ ID: '', Node: 'beta-1', Address: '10.2.0.1' }),
    ]);
  });

  test('deregister a service, then the node', async () => {
    await populate();
    await put('/v1/catalog/deregister', { Node: 'beta-1', ServiceID: 'redis' });
    expect((await http.request('GET', '/v1/catalog/services')).json).toEqual({ web: ['v1', 'Primary', 'v2'] });
    await put('/v1/catalog/deregister', { Node: 'beta-1' });
    expect((await http.request('GET', '/v1/catalog/nodes')).json).toEqual([expect.objectContaining({ Node: 'alpha-1' })]);
    expect((await http.request('GET', '/v1/catalog/node/beta-1')).json).toBeNull();
  });

  test("malformed JSON and wrong types: 400 Request decode failed: <Go's error>", async () => {
    for (const [body, text] of [
      ['{"Node": "a",', 'Request decode failed: unexpected EOF'],
      ['{Node}', "Request decode failed: invalid character 'N' looking for beginning of object key string"],
      ['', 'Request decode failed: EOF'],
      ['{"Node": 5, "Address": "a"}', 'Request decode failed: json: cannot unmarshal number into Go struct field RegisterRequest.Node of type string'],
      ['{"Node": "n", "Address": "a", "Service": {"Service": "web", "Port": "80"}}', 'Request decode failed: json: cannot unmarshal string into Go struct field NodeService.Service.Port of type int'],
      ['{"Node": "n", "Address": "a", "Check": {"Definition": {"Interval": "10x"}}}', 'Request decode failed: time: unknown unit "x" in duration "10x"'],
    ]) {
      const answer = await http.request('PUT', '/v1/catalog/register', body);
      expect({ status: answer.status, text: answer.text }).toEqual({ status: 400, text });
    }
    const deregister = await http.request('PUT', '/v1/catalog/deregister', '{"Node": []}');
    expect({ status: deregister.status, text: deregister.text }).toEqual({ status: 400, text: 'Request decode failed: json: cannot unmarshal array into Go struct field DeregisterRequest.Node of type string' });
    expect(consensus.txns).toHaveLength(0);
  });

  test("Consul's refusals are 500s with its text", async () => {
    for (const [body, text] of [
      [{ Address: 'a' }, 'Must provide node'],
      [{ Node: 'n' }, 'Must provide address if SkipNodeUpdate is not set'],
      [{ Node: 'n', Address: 'a', Check: { CheckID: 'c', ServiceID: 'nope' } }, "Unknown service ID 'nope' for check ID 'c'"],
      [{ Node: 'n', Address: 'a', Datacenter: 'dc2' }, 'No path to datacenter'],
    ] as const) {
      const answer = await http.request('PUT', '/v1/catalog/register', body);
      expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text });
    }
    const answer = await http.request('PUT', '/v1/catalog/deregister', {});
    expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: 'Must provide node' });
  });

  test('a body over the limit is refused before it is read: 413', async () => {
    const answer = await http.request('PUT', '/v1/catalog/register', Buffer.alloc(MAX_CATALOG_WRITE_BODY_BYTES + 1, 0x20));
    expect(answer.status).toBe(413);
    expect(answer.text).toBe(`Request body(${MAX_CATALOG_WRITE_BODY_BYTES + 1} bytes) too large, max size: ${MAX_CATALOG_WRITE_BODY_BYTES} bytes`);
  });

  test('GET on a write endpoint: 405 with Allow', async () => {
    const answer = await http.request('GET', '/v1/catalog/register');
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('OPTIONS,PUT');
  });
});

describe('GET reads', () => {
  test('/v1/catalog/services: name → union of tags; node-meta filters by node', async () => {
    await populate();
    const all = await http.request('GET', '/v1/catalog/services');
    expect(all.json).toEqual({ redis: ['primary'], web: ['v1', 'Primary', 'v2'] });
    expect(Object.keys(all.json as object)).toEqual(['redis', 'web']);
    const alpha = await http.request('GET', '/v1/catalog/services?node-meta=consul-network-segment:alpha');
    expect(alpha.json).toEqual({ web: ['v1', 'Primary'] });
  });

  test("/v1/catalog/service/:name: Consul's ServiceNode, the node's fields beside the service's", async () => {
    await populate();
    const answer = await http.request('GET', '/v1/catalog/service/web');
    const service = consensus.view.get('/c/s/alpha-1/web-1')!;
    expect(answer.json).toEqual([
      {
        ID: NODE_ID,
        Node: 'alpha-1',
        Address: '10.1.0.1',
        Datacenter: 'dc1',
        TaggedAddresses: { lan: '10.1.0.1' },
        NodeMeta: { 'consul-network-segment': 'alpha', rack: 'r1' },
        ServiceKind: '',
        ServiceID: 'web-1',
        ServiceName: 'web',
        ServiceTags: ['v1', 'Primary'],
        ServiceAddress: '', // as stored: the client falls back to Address
        ServiceWeights: { Passing: 1, Warning: 1 },
        ServiceMeta: { version: '1' },
        ServicePort: 8080,
        ServiceEnableTagOverride: false,
        ServiceProxy: { Mode: '', MeshGateway: {}, Expose: {} },
        ServiceConnect: {},
        CreateIndex: service.createRevision,
        ModifyIndex: service.modRevision,
      },
      expect.objectContaining({ Node: 'beta-1', ServiceID: 'web-2', ServiceAddress: '10.2.0.99' }),
    ]);
  });

  test('/v1/catalog/service/:name filters: tags AND, case-insensitive; node-meta; the name case-insensitive', async () => {
    await populate();
    const ids = async (path: string) => ((await http.request('GET', path)).json as { ServiceID: string }[]).map((s) => s.ServiceID);
    expect(await ids('/v1/catalog/service/web?tag=v1')).toEqual(['web-1']);
    expect(await ids('/v1/catalog/service/web?tag=primary&tag=V1')).toEqual(['web-1']);
    expect(await ids('/v1/catalog/service/web?tag=v1&tag=v2')).toEqual([]);
    expect(await ids('/v1/catalog/service/web?node-meta=consul-network-segment:beta')).toEqual(['web-2']);
    expect(await ids('/v1/catalog/service/WEB')).toEqual(['web-1', 'web-2']);
    expect(await ids('/v1/catalog/service/nope')).toEqual([]);
  });

  test('/v1/catalog/node/:name: the node and its services by ID; unknown: null with index headers', async () => {
    await populate();
    const answer = await http.request('GET', '/v1/catalog/node/beta-1');
    expect(answer.json).toEqual({
      Node: expect.objectContaining({ Node: 'beta-1', Address: '10.2.0.1', Meta: { 'consul-network-segment': 'beta' } }),
      Services: {
        redis: expect.objectContaining({ ID: 'redis', Service: 'redis', Tags: ['primary'], Port: 6379, Weights: { Passing: 1, Warning: 1 }, Proxy: { Mode: '', MeshGateway: {}, Expose: {} }, Connect: {} }),
        'web-2': expect.objectContaining({ ID: 'web-2', Address: '10.2.0.99' }),
      },
    });
    const unknown = await http.request('GET', '/v1/catalog/node/nope');
    expect({ status: unknown.status, text: unknown.text }).toEqual({ status: 200, text: 'null' });
    expect(Number(unknown.headers['x-consul-index'])).toBeGreaterThan(1);
  });

  test('/v1/catalog/nodes?node-meta (§2.8: consul-network-segment)', async () => {
    await populate();
    const answer = await http.request('GET', '/v1/catalog/nodes?node-meta=consul-network-segment:alpha&node-meta=rack:r1&near=_agent');
    expect((answer.json as { Node: string }[]).map((n) => n.Node)).toEqual(['alpha-1']);
    expect((await http.request('GET', '/v1/catalog/nodes?node-meta=rack:r2')).json).toEqual([]);
  });

  test('headers: X-Consul-Index (never 0), KnownLeader, LastContact, Effective-Consistency', async () => {
    const empty = await http.request('GET', '/v1/catalog/nodes');
    expect(empty.json).toEqual([]);
    expect(empty.headers['x-consul-index']).toBe('1');
    await populate();
    const answer = await http.request('GET', '/v1/catalog/nodes');
    expect(answer.headers).toMatchObject({ 'x-consul-index': String(consensus.view.index('nodes')), 'x-consul-knownleader': 'true', 'x-consul-lastcontact': '0', 'x-consul-effective-consistency': 'leader' });
  });

  test('a blocking query returns when a write moves its index past ?index', async () => {
    await populate();
    const first = await http.request('GET', '/v1/catalog/service/web');
    const index = first.headers['x-consul-index'];
    const blocked = http.request('GET', `/v1/catalog/service/web?index=${index}&wait=5s`);
    let answered = false;
    void blocked.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(answered).toBe(false);
    await put('/v1/catalog/register', { Node: 'gamma-1', Address: '10.3.0.1', Service: { Service: 'web', Port: 80 } });
    const woken = await blocked;
    expect(Number(woken.headers['x-consul-index'])).toBeGreaterThan(Number(index));
    expect((woken.json as unknown[]).length).toBe(3);
  });

  test('a blocking query times out with the unchanged result', async () => {
    const first = await http.request('GET', '/v1/catalog/nodes');
    const answer = await http.request('GET', `/v1/catalog/nodes?index=${first.headers['x-consul-index']}&wait=50ms`);
    expect(answer.status).toBe(200);
    expect(answer.headers['x-consul-index']).toBe(first.headers['x-consul-index']);
  });

  // ?dc= of another datacenter never reaches the handlers: remote-datacenter.test.ts.
  test('query option errors: 400 for conflicting modes; ?dc= of our own datacenter is served here', async () => {
    const conflicting = await http.request('GET', '/v1/catalog/nodes?stale&consistent');
    expect({ status: conflicting.status, text: conflicting.text }).toEqual({ status: 400, text: 'Cannot specify ?stale with ?consistent, conflicting semantics.' });
    expect((await http.request('GET', '/v1/catalog/services?dc=dc1')).status).toBe(200);
  });

  test('?filter expressions are refused rather than ignored', async () => {
    const answer = await http.request('GET', '/v1/catalog/nodes?filter=Meta.rack%3D%3Dr1');
    expect(answer.status).toBe(400);
    expect(answer.text).toMatch(/^Consulate does not evaluate \?filter expressions yet/);
  });

  test('?stale answers from the view without asking consensus', async () => {
    await populate();
    consensus.failNext.push(new Error('no leader'));
    const stale = await http.request('GET', '/v1/catalog/nodes?stale');
    expect(stale.status).toBe(200);
    expect(stale.headers['x-consul-effective-consistency']).toBe('stale');
    expect(consensus.failNext).toHaveLength(1);
    const leader = await http.request('GET', '/v1/catalog/nodes');
    expect({ status: leader.status, text: leader.text }).toEqual({ status: 500, text: 'No cluster leader' });
  });
});
