/**
 * The catalog's Consul-compatible HTTP API with real processes (DESIGN.md data flows 1 and 2;
 * reference/consul-compat.md §4.1, §4.2, §4.4, §4.5, §4.8):
 *
 *   server-1   consensus, a one-server Raft
 *   catalog    HTTP on <its address>:8500, writes as consensus txns, reads from its watch-fed view
 *
 * register → list → a blocking query woken by a write (X-Consul-Index, never 0) → deregister, and
 * the refusals: bad JSON and wrong types (400, Consul's text), an oversized body (413), conflicting
 * consistency modes (400), another datacenter (500 No path to datacenter).
 */
import { MAX_CATALOG_WRITE_BODY_BYTES } from '../../services/catalog/http/catalog-endpoint';
import { Answer, send } from '../../services/catalog/testing/http-harness';
import { RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

let consensus: RoleProcess;
let catalog: RoleProcess;

function http(method: string, path: string, body?: unknown): Promise<Answer> {
  return send(`${catalog.address}:8500`, method, path, body);
}

async function registered(body: unknown): Promise<void> {
  const answer = await http('PUT', '/v1/catalog/register', body);
  expect({ status: answer.status, text: answer.text }).toEqual({ status: 200, text: 'true' });
}

function index(answer: Answer): number {
  const value = Number(answer.headers['x-consul-index']);
  // §4.4: never 0 (Consul's setIndex turns 0 into 1).
  expect(value).toBeGreaterThanOrEqual(1);
  return value;
}

beforeAll(async () => {
  const serverHost = freeLoopbackAddress();
  consensus = await startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] });
  catalog = await startRole({ role: 'catalog', node: 'catalog', args: [`-consensus-addr=${consensus.grpc}`] });
  // Up is not ready: the one-server Raft elects itself and the view loads in the background.
  await eventually('the catalog to answer a default-consistency read', async () => (await http('GET', '/v1/catalog/nodes')).status === 200 || undefined, 20_000);
});

afterAll(stopAll);

test('register, then list: nodes, services, a service, a node, health', async () => {
  await registered({
    Node: 'node-alpha-1',
    Address: '127.0.1.101',
    NodeMeta: { 'consul-network-segment': 'alpha' },
    Service: { ID: 'web-1', Service: 'web', Tags: ['v1'], Port: 8080 },
    Checks: [
      { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', Output: 'Agent alive and reachable' },
      { CheckID: 'web-http', Name: 'web http', Status: 'passing', ServiceID: 'web-1' },
    ],
  });

  const nodes = await http('GET', '/v1/catalog/nodes');
  expect(nodes.status).toBe(200);
  expect(nodes.json).toEqual([expect.objectContaining({ Node: 'node-alpha-1', Address: '127.0.1.101', Datacenter: 'dc1', Meta: { 'consul-network-segment': 'alpha' } })]);
  const node = (nodes.json as { CreateIndex: number; ModifyIndex: number }[])[0];
  expect(node.CreateIndex).toBeGreaterThan(0);
  expect(node.ModifyIndex).toBe(node.CreateIndex);
  expect(index(nodes)).toBeGreaterThanOrEqual(node.ModifyIndex);
  expect(nodes.headers).toMatchObject({ 'x-consul-knownleader': 'true', 'x-consul-effective-consistency': 'leader' });

  expect((await http('GET', '/v1/catalog/services')).json).toEqual({ web: ['v1'] });
  const service = await http('GET', '/v1/catalog/service/web');
  expect(service.json).toEqual([expect.objectContaining({ Node: 'node-alpha-1', Address: '127.0.1.101', ServiceID: 'web-1', ServiceName: 'web', ServiceAddress: '', ServicePort: 8080, ServiceTags: ['v1'] })]);
  expect((await http('GET', '/v1/catalog/node/node-alpha-1')).json).toEqual({ Node: expect.objectContaining({ Node: 'node-alpha-1' }), Services: { 'web-1': expect.objectContaining({ ID: 'web-1', Service: 'web', Port: 8080 }) } });

  const health = await http('GET', '/v1/health/service/web?passing');
  expect((health.json as { Checks: { CheckID: string }[] }[]).map((entry) => entry.Checks.map((check) => check.CheckID))).toEqual([['serfHealth', 'web-http']]);
  expect((await http('GET', '/v1/catalog/nodes?node-meta=consul-network-segment:alpha&stale')).json).toHaveLength(1);
});

test('a blocking query waits, and a write wakes it with a higher X-Consul-Index', async () => {
  const first = await http('GET', '/v1/catalog/service/web');
  const seen = index(first);
  const started = Date.now();
  const blocked = http('GET', `/v1/catalog/service/web?index=${seen}&wait=20s`);
  let answered = false;
  void blocked.then(() => (answered = true));
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(answered).toBe(false);

  await registered({ Node: 'node-beta-1', Address: '127.0.1.102', Service: { ID: 'web-2', Service: 'web', Port: 8080 } });
  const woken = await blocked;
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(index(woken)).toBeGreaterThan(seen);
  expect((woken.json as { ServiceID: string }[]).map((s) => s.ServiceID)).toEqual(['web-1', 'web-2']);
});

test('a blocking query that sees no change returns at its wait with the same index', async () => {
  const first = await http('GET', '/v1/catalog/nodes');
  const answer = await http('GET', `/v1/catalog/nodes?index=${index(first)}&wait=300ms`);
  expect(answer.status).toBe(200);
  expect(index(answer)).toBe(index(first));
});

test('deregister a service, then a node', async () => {
  const answer = await http('PUT', '/v1/catalog/deregister', { Node: 'node-alpha-1', ServiceID: 'web-1' });
  expect(answer.text).toBe('true');
  expect((await http('GET', '/v1/catalog/service/web')).json).toEqual([expect.objectContaining({ ServiceID: 'web-2' })]);
  // The service's check went with it; the node's serfHealth stays.
  expect((await http('GET', '/v1/health/node/node-alpha-1')).json).toEqual([expect.objectContaining({ CheckID: 'serfHealth' })]);

  expect((await http('PUT', '/v1/catalog/deregister', { Node: 'node-beta-1' })).text).toBe('true');
  expect(((await http('GET', '/v1/catalog/nodes')).json as { Node: string }[]).map((n) => n.Node)).toEqual(['node-alpha-1']);
  const gone = await http('GET', '/v1/catalog/node/node-beta-1');
  expect({ status: gone.status, text: gone.text }).toEqual({ status: 200, text: 'null' });
  index(gone);
});

test("bad JSON and wrong types: 400 with Consul's text; Consul's own refusals: 500", async () => {
  const bad = await http('PUT', '/v1/catalog/register', '{"Node": "x",');
  expect({ status: bad.status, text: bad.text }).toEqual({ status: 400, text: 'Request decode failed: unexpected EOF' });
  const wrongType = await http('PUT', '/v1/catalog/register', { Node: 'x', Address: 'a', Service: { Service: 'web', Port: '80' } });
  expect({ status: wrongType.status, text: wrongType.text }).toEqual({ status: 400, text: 'Request decode failed: json: cannot unmarshal string into Go struct field NodeService.Service.Port of type int' });
  const noNode = await http('PUT', '/v1/catalog/register', { Address: 'a' });
  expect({ status: noNode.status, text: noNode.text }).toEqual({ status: 500, text: 'Must provide node' });
});

test('an oversized body is refused with 413 before it is read', async () => {
  const answer = await http('PUT', '/v1/catalog/register', Buffer.alloc(MAX_CATALOG_WRITE_BODY_BYTES + 1, 0x20));
  expect(answer.status).toBe(413);
  expect(answer.text).toBe(`Request body(${MAX_CATALOG_WRITE_BODY_BYTES + 1} bytes) too large, max size: ${MAX_CATALOG_WRITE_BODY_BYTES} bytes`);
  // The catalog still answers.
  expect((await http('GET', '/v1/catalog/nodes')).status).toBe(200);
});

test('?stale&consistent: 400; another datacenter: 500 No path to datacenter', async () => {
  const conflicting = await http('GET', '/v1/catalog/nodes?stale&consistent');
  expect({ status: conflicting.status, text: conflicting.text }).toEqual({ status: 400, text: 'Cannot specify ?stale with ?consistent, conflicting semantics.' });
  const remote = await http('GET', '/v1/health/service/web?dc=dc2');
  expect({ status: remote.status, text: remote.text }).toEqual({ status: 500, text: 'No path to datacenter' });
  const remoteWrite = await http('PUT', '/v1/catalog/register', { Datacenter: 'dc2', Node: 'x', Address: 'a' });
  expect({ status: remoteWrite.status, text: remoteWrite.text }).toEqual({ status: 500, text: 'No path to datacenter' });
  const consistent = await http('GET', '/v1/catalog/nodes?consistent');
  expect(consistent.headers['x-consul-effective-consistency']).toBe('consistent');
});
