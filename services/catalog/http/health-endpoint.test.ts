/**
 * `/v1/health/*` over real HTTP, in-process, against a view fed by a fake consensus
 * (reference/consul-compat.md §4.2 shapes and `?passing`, §4.7 serfHealth as a node-level check).
 */
import { SERF_HEALTH } from '../state/model';
import { FakeConsensus } from '../testing/fake-consensus';
import { HttpHarness, startHttp } from '../testing/http-harness';
import { registerCatalogEndpoints } from './catalog-endpoint';
import { registerHealthEndpoints, withEveryCheckPassing } from './health-endpoint';

let consensus: FakeConsensus;
let http: HttpHarness;

beforeEach(async () => {
  consensus = new FakeConsensus();
  const deps = { datacenter: 'dc1', view: consensus.view, sync: { lastContactMs: Date.now() }, consensus };
  http = await startHttp((router) => {
    registerCatalogEndpoints(router, deps);
    registerHealthEndpoints(router, deps);
  });
});

afterEach(() => http.close());

const serf = (status: string) => ({ CheckID: SERF_HEALTH.CheckID, Name: SERF_HEALTH.Name, Status: status, Output: status === 'passing' ? SERF_HEALTH.alive : SERF_HEALTH.failed });

/** Three instances of web: a1 all passing, b1 with a warning service check, c1 on a node whose serfHealth is critical. */
async function populate(): Promise<void> {
  const registrations = [
    { Node: 'a1', Address: '10.0.0.1', NodeMeta: { 'consul-network-segment': 'alpha' }, Service: { ID: 'web', Service: 'web', Tags: ['v1'], Port: 80 }, Checks: [serf('passing'), { CheckID: 'web-http', Name: 'http', Status: 'passing', ServiceID: 'web' }] },
    { Node: 'b1', Address: '10.0.0.2', NodeMeta: { 'consul-network-segment': 'beta' }, Service: { ID: 'web', Service: 'web', Tags: ['v2'], Port: 80 }, Checks: [serf('passing'), { CheckID: 'web-http', Name: 'http', Status: 'warning', ServiceID: 'web' }] },
    { Node: 'c1', Address: '10.0.0.3', Service: { ID: 'web', Service: 'web', Tags: ['v1'], Port: 80, Weights: { Passing: 5, Warning: 1 } }, Checks: [serf('critical')] },
    { Node: 'c1', Address: '10.0.0.3', Service: { ID: 'db', Service: 'db', Port: 5432 }, Check: { CheckID: 'db-tcp', Name: 'tcp', Status: 'passing', ServiceID: 'db' } },
  ];
  for (const body of registrations) expect((await http.request('PUT', '/v1/catalog/register', body)).text).toBe('true');
}

type Entry = { Node: { Node: string }; Service: { ID: string }; Checks: { CheckID: string; Status: string }[] };

async function entries(path: string): Promise<Entry[]> {
  const answer = await http.request('GET', path);
  expect(answer.status).toBe(200);
  return answer.json as Entry[];
}

describe('GET /v1/health/service/:service', () => {
  test("Consul's CheckServiceNode: Node, Service (with Weights), and Checks: node-level first, then the service's", async () => {
    await populate();
    const [a1] = await entries('/v1/health/service/web');
    const nodeRow = consensus.view.get('/c/n/a1')!;
    const serviceRow = consensus.view.get('/c/s/a1/web')!;
    const serfRow = consensus.view.get('/c/h/a1/serfhealth')!;
    expect(a1).toEqual({
      Node: { ID: '', Node: 'a1', Address: '10.0.0.1', Datacenter: 'dc1', TaggedAddresses: {}, Meta: { 'consul-network-segment': 'alpha' }, CreateIndex: nodeRow.createRevision, ModifyIndex: nodeRow.modRevision },
      Service: {
        ID: 'web',
        Service: 'web',
        Tags: ['v1'],
        Address: '',
        Meta: {},
        Port: 80,
        Weights: { Passing: 1, Warning: 1 },
        EnableTagOverride: false,
        Proxy: { Mode: '', MeshGateway: {}, Expose: {} },
        Connect: {},
        CreateIndex: serviceRow.createRevision,
        ModifyIndex: serviceRow.modRevision,
      },
      Checks: [
        {
          Node: 'a1',
          CheckID: 'serfHealth',
          Name: 'Serf Health Status',
          Status: 'passing',
          Notes: '',
          Output: 'Agent alive and reachable',
          ServiceID: '',
          ServiceName: '',
          ServiceTags: [],
          Type: '',
          Interval: '',
          Timeout: '',
          ExposedPort: 0,
          Definition: {},
          CreateIndex: serfRow.createRevision,
          ModifyIndex: serfRow.modRevision,
        },
        expect.objectContaining({ CheckID: 'web-http', ServiceID: 'web', ServiceName: 'web', ServiceTags: ['v1'], Status: 'passing' }),
      ],
    });
  });

  test("another service's checks on the same node are not the instance's", async () => {
    await populate();
    const c1 = (await entries('/v1/health/service/web')).find((e) => e.Node.Node === 'c1')!;
    expect(c1.Checks.map((c) => c.CheckID)).toEqual(['serfHealth']);
  });

  test('?passing keeps instances whose EVERY check passes: a warning and a critical serfHealth both exclude', async () => {
    await populate();
    expect((await entries('/v1/health/service/web?passing')).map((e) => e.Node.Node)).toEqual(['a1']);
    expect((await entries('/v1/health/service/web?passing=true')).map((e) => e.Node.Node)).toEqual(['a1']);
    expect((await entries('/v1/health/service/web?passing=0')).map((e) => e.Node.Node)).toEqual(['a1', 'b1', 'c1']);
    const bad = await http.request('GET', '/v1/health/service/web?passing=maybe');
    expect({ status: bad.status, text: bad.text }).toEqual({ status: 400, text: 'Invalid value for ?passing' });
  });

  test("?passing drops by swapping in the last entry, so the order is Consul's", () => {
    const at = (name: string, status: string) => ({ name, Checks: [{ Status: status }] });
    expect(withEveryCheckPassing([at('x', 'critical'), at('y', 'passing'), at('z', 'passing')]).map((e) => e.name)).toEqual(['z', 'y']);
    expect(withEveryCheckPassing([at('x', 'passing'), at('y', 'warning'), at('z', 'critical')]).map((e) => e.name)).toEqual(['x']);
  });

  test('tag (AND) and node-meta filters; unknown service: []', async () => {
    await populate();
    expect((await entries('/v1/health/service/web?tag=v1')).map((e) => e.Node.Node)).toEqual(['a1', 'c1']);
    expect((await entries('/v1/health/service/web?tag=v1&node-meta=consul-network-segment:alpha')).map((e) => e.Node.Node)).toEqual(['a1']);
    expect(await entries('/v1/health/service/nope')).toEqual([]);
  });

  test('a check change wakes a blocking query on the service', async () => {
    await populate();
    const first = await http.request('GET', '/v1/health/service/web?passing');
    const blocked = http.request('GET', `/v1/health/service/web?passing&index=${first.headers['x-consul-index']}&wait=5s`);
    await http.request('PUT', '/v1/catalog/register', { Node: 'b1', Address: '10.0.0.2', SkipNodeUpdate: true, Check: { CheckID: 'web-http', Name: 'http', Status: 'passing', ServiceID: 'web' } });
    const woken = await blocked;
    expect(Number(woken.headers['x-consul-index'])).toBeGreaterThan(Number(first.headers['x-consul-index']));
    expect((woken.json as Entry[]).map((e) => e.Node.Node)).toEqual(['a1', 'b1']);
  });

  test('no service name: 400 Missing service name', async () => {
    const answer = await http.request('GET', '/v1/health/service/');
    expect({ status: answer.status, text: answer.text }).toEqual({ status: 400, text: 'Missing service name' });
  });
});

describe('GET /v1/health/node, /checks, /state', () => {
  test('/v1/health/node/:node: every check of the node, node-level and service-level', async () => {
    await populate();
    const answer = await http.request('GET', '/v1/health/node/c1');
    expect((answer.json as { CheckID: string }[]).map((c) => c.CheckID)).toEqual(['db-tcp', 'serfHealth']);
    expect((await http.request('GET', '/v1/health/node/nope')).json).toEqual([]);
  });

  test('/v1/health/checks/:service: the checks carrying that service name', async () => {
    await populate();
    const answer = await http.request('GET', '/v1/health/checks/web');
    expect((answer.json as { Node: string; CheckID: string }[]).map((c) => `${c.Node}/${c.CheckID}`)).toEqual(['a1/web-http', 'b1/web-http']);
    const alpha = await http.request('GET', '/v1/health/checks/web?node-meta=consul-network-segment:alpha');
    expect((alpha.json as { Node: string }[]).map((c) => c.Node)).toEqual(['a1']);
  });

  test('/v1/health/state/:state: any, a status, and an unknown state (an empty list, as Consul answers)', async () => {
    await populate();
    const ids = async (state: string) => ((await http.request('GET', `/v1/health/state/${state}`)).json as { Node: string; CheckID: string }[]).map((c) => `${c.Node}/${c.CheckID}`);
    expect(await ids('critical')).toEqual(['c1/serfHealth']);
    expect(await ids('warning')).toEqual(['b1/web-http']);
    expect(await ids('passing')).toEqual(['a1/serfHealth', 'a1/web-http', 'b1/serfHealth', 'c1/db-tcp']);
    expect(await ids('any')).toHaveLength(6);
    expect(await ids('bogus')).toEqual([]);
    const missing = await http.request('GET', '/v1/health/state/');
    expect({ status: missing.status, text: missing.text }).toEqual({ status: 400, text: 'Missing check state' });
  });

  // ?dc= of another datacenter never reaches the handlers: remote-datacenter.test.ts.
  test('conflicting consistency modes', async () => {
    const conflicting = await http.request('GET', '/v1/health/node/a1?stale&consistent');
    expect({ status: conflicting.status, text: conflicting.text }).toEqual({ status: 400, text: 'Cannot specify ?stale with ?consistent, conflicting semantics.' });
  });
});
