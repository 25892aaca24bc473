/**
 * consulate.catalog.v1.CatalogService over the in-process fakes: Consul's catalog
 * (reference/consul-compat.md §4.1) as the HTTP API serves it, from the same state functions, with
 * the gRPC status mapping of grpc/status.ts and the reads' QueryMeta (§4.4, §4.5).
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

import { HealthStatus, RegisterRequest } from '../../gen/consulate/catalog/v1/catalog';
import { Consistency } from '../../gen/consulate/catalog/v1/query';
import { registerCatalogEndpoints } from '../http/catalog-endpoint';
import { MAX_CATALOG_WRITE_BYTES } from '../state/catalog-writes';
import { CatalogGrpc, startCatalogGrpc } from '../testing/grpc-harness';
import { HttpHarness, startHttp } from '../testing/http-harness';
import { INDEX_TRAILER } from './status';

let api: CatalogGrpc;

beforeEach(async () => {
  api = await startCatalogGrpc();
});

afterEach(async () => {
  await api.close();
});

const web1: Partial<RegisterRequest> = {
  node: 'node-alpha-1',
  address: '10.0.1.101',
  nodeMeta: { 'consul-network-segment': 'alpha' },
  service: { id: 'web-1', name: 'web', tags: ['v1'], address: '', taggedAddresses: { lan: { address: '10.0.1.101', port: 8080 } }, meta: { team: 'a' }, port: 8080, weights: undefined, enableTagOverride: false },
  checks: [
    { node: '', checkId: 'serfHealth', name: 'Serf Health Status', status: HealthStatus.HEALTH_STATUS_PASSING, notes: '', output: 'Agent alive and reachable', serviceId: '', type: '' },
    { node: '', checkId: 'web-http', name: 'web http', status: HealthStatus.HEALTH_STATUS_PASSING, notes: '', output: '', serviceId: 'web-1', type: 'http' },
  ],
};

function registration(overrides: Partial<RegisterRequest>): RegisterRequest {
  return { datacenter: '', id: '', node: '', address: '', taggedAddresses: {}, nodeMeta: {}, service: undefined, checks: [], skipNodeUpdate: false, ...overrides };
}

async function register(overrides: Partial<RegisterRequest>): Promise<bigint> {
  return (await api.call(api.catalog.register.bind(api.catalog), registration(overrides))).index;
}

const noQuery = { query: undefined, nodeMeta: {} };

test('register, then every read: nodes, services, a service, a node, with their indexes (§4.1)', async () => {
  const index = await register(web1);
  expect(index).toBe(BigInt(api.consensus.fake.revision));

  const nodes = await api.call(api.catalog.listNodes.bind(api.catalog), noQuery);
  expect(nodes.nodes).toEqual([{ id: '', name: 'node-alpha-1', address: '10.0.1.101', datacenter: 'dc1', taggedAddresses: {}, meta: { 'consul-network-segment': 'alpha' }, createIndex: index, modifyIndex: index }]);
  expect(nodes.meta).toMatchObject({ index, knownLeader: true, consistency: Consistency.CONSISTENCY_DEFAULT });

  const services = await api.call(api.catalog.listServices.bind(api.catalog), noQuery);
  expect(services.services).toEqual([{ name: 'web', tags: ['v1'] }]);

  const service = await api.call(api.catalog.getService.bind(api.catalog), { ...noQuery, service: 'WEB', tags: ['V1'] });
  expect(service.instances).toHaveLength(1);
  expect(service.instances[0].service).toEqual({
    id: 'web-1',
    name: 'web',
    tags: ['v1'],
    address: '',
    taggedAddresses: { lan: { address: '10.0.1.101', port: 8080 } },
    meta: { team: 'a' },
    port: 8080,
    // structs.NodeService.ToServiceNode: registered without weights, {1, 1}.
    weights: { passing: 1, warning: 1 },
    enableTagOverride: false,
    createIndex: index,
    modifyIndex: index,
  });
  expect((await api.call(api.catalog.getService.bind(api.catalog), { ...noQuery, service: 'web', tags: ['v2'] })).instances).toEqual([]);

  const node = await api.call(api.catalog.getNode.bind(api.catalog), { query: undefined, node: 'NODE-ALPHA-1' });
  expect(node.node?.name).toBe('node-alpha-1');
  expect(node.services.map((s) => s.id)).toEqual(['web-1']);
  expect(await api.call(api.catalog.listDatacenters.bind(api.catalog), {})).toEqual({ datacenters: ['dc1'] });
});

test('the HTTP API answers the same registration from the same state (one model, two APIs)', async () => {
  await register(web1);
  const http: HttpHarness = await startHttp((router) => registerCatalogEndpoints(router, api.deps));
  try {
    const json = (await http.request('GET', '/v1/catalog/service/web')).json as { ServiceID: string; ServicePort: number; CreateIndex: number; ModifyIndex: number }[];
    const grpc = (await api.call(api.catalog.getService.bind(api.catalog), { ...noQuery, service: 'web', tags: [] })).instances;
    expect(json.map((s) => [s.ServiceID, s.ServicePort, BigInt(s.CreateIndex), BigInt(s.ModifyIndex)])).toEqual(grpc.map((i) => [i.service!.id, i.service!.port, i.service!.createIndex, i.service!.modifyIndex]));
  } finally {
    await http.close();
  }
});

test('node-meta filters nodes and services; a registration that changes nothing writes nothing', async () => {
  await register(web1);
  await register({ node: 'node-beta-1', address: '10.0.2.101', nodeMeta: { 'consul-network-segment': 'beta' }, service: { ...web1.service!, id: 'db-1', name: 'db', tags: ['primary'] } });
  const alpha = { query: undefined, nodeMeta: { 'consul-network-segment': 'alpha' } };
  expect((await api.call(api.catalog.listNodes.bind(api.catalog), alpha)).nodes.map((n) => n.name)).toEqual(['node-alpha-1']);
  expect((await api.call(api.catalog.listServices.bind(api.catalog), alpha)).services).toEqual([{ name: 'web', tags: ['v1'] }]);

  const txns = api.consensus.fake.txns.length;
  const again = await register(web1);
  expect(api.consensus.fake.txns).toHaveLength(txns);
  expect(again).toBe(BigInt(api.consensus.fake.revision));
});

test('deregister a service with its checks, then the node (Consul applyDeregister order)', async () => {
  await register(web1);
  const removed = await api.call(api.catalog.deregister.bind(api.catalog), { datacenter: '', node: 'node-alpha-1', serviceId: 'web-1', checkId: '' });
  expect(removed.index).toBe(BigInt(api.consensus.fake.revision));
  expect((await api.call(api.catalog.getService.bind(api.catalog), { ...noQuery, service: 'web', tags: [] })).instances).toEqual([]);
  expect(api.consensus.fake.keys('/c/h/')).toEqual(['/c/h/node-alpha-1/serfhealth']);
  await api.call(api.catalog.deregister.bind(api.catalog), { datacenter: '', node: 'node-alpha-1', serviceId: '', checkId: '' });
  expect(api.consensus.fake.keys('/c/')).toEqual([]);
});

test("invalid input: INVALID_ARGUMENT with Consul's texts", async () => {
  const cases: [Partial<RegisterRequest>, string][] = [
    [{ address: '10.0.0.1' }, 'Must provide node'],
    [{ node: 'n1', address: '10.0.0.1', id: 'not-a-uuid' }, 'Bad node ID: uuid string is wrong length'],
    [{ node: 'n1' }, 'Must provide address if SkipNodeUpdate is not set'],
    [{ node: 'n1', address: '10.0.0.1', service: { ...web1.service!, address: '0.0.0.0' } }, 'Invalid service address'],
    [{ node: 'n1', address: '10.0.0.1', service: { ...web1.service!, meta: { 'consul-x': 'y' } } }, "failed inserting service: Invalid Service Meta for node n1 and serviceID web-1: Couldn't load metadata pair ('consul-x', 'y'): Key prefix 'consul-' is reserved for internal use"],
  ];
  for (const [request, text] of cases) {
    const failure = await api.failure(api.catalog.register.bind(api.catalog), registration(request));
    expect({ code: failure.code, details: failure.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: text });
  }
  const badStatus = await api.failure(api.catalog.register.bind(api.catalog), registration({ node: 'n1', address: 'a', checks: [{ ...web1.checks![0], status: 9 as HealthStatus }] }));
  expect(badStatus.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  expect(badStatus.details).toMatch(/^check 0 has an unknown status \(9\)/);
  expect((await api.failure(api.catalog.getService.bind(api.catalog), { ...noQuery, service: '', tags: [] })).details).toBe('Missing service name');
  const huge = await api.failure(api.catalog.register.bind(api.catalog), registration({ node: 'n1', address: 'a', nodeMeta: { big: 'x'.repeat(MAX_CATALOG_WRITE_BYTES) } }));
  expect(huge.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  expect(huge.details).toMatch(/^registration of \d+ bytes too large, max size: 1048576 bytes/);
  expect(api.consensus.fake.txns).toHaveLength(0);
});

test('refusals of the current state: FAILED_PRECONDITION (a check for a service not registered)', async () => {
  const failure = await api.failure(api.catalog.register.bind(api.catalog), registration({ node: 'n1', address: 'a', checks: [{ ...web1.checks![1] }] }));
  expect({ code: failure.code, details: failure.details }).toEqual({ code: GrpcStatus.FAILED_PRECONDITION, details: "Unknown service ID 'web-1' for check ID 'web-http'" });
});

test('an unknown node: NOT_FOUND with its index in the consulate-index trailer; another datacenter: NOT_FOUND', async () => {
  await register(web1);
  const missing = await api.failure(api.catalog.getNode.bind(api.catalog), { query: undefined, node: 'nope' });
  expect({ code: missing.code, details: missing.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'node "nope" is not registered' });
  expect(missing.metadata.get(INDEX_TRAILER)).toEqual([String(api.consensus.fake.revision)]);

  const remote = await api.failure(api.catalog.listNodes.bind(api.catalog), { query: { consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: undefined, datacenter: 'dc2' }, nodeMeta: {} });
  expect({ code: remote.code, details: remote.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
  const remoteWrite = await api.failure(api.catalog.register.bind(api.catalog), registration({ ...web1, datacenter: 'dc2' }));
  expect(remoteWrite.code).toBe(GrpcStatus.NOT_FOUND);
});

test('no leader: UNAVAILABLE "No cluster leader", for reads and writes', async () => {
  api.consensus.fake.failNext.push(new Error('14 UNAVAILABLE: no leader'));
  const read = await api.failure(api.catalog.listNodes.bind(api.catalog), noQuery);
  expect({ code: read.code, details: read.details }).toEqual({ code: GrpcStatus.UNAVAILABLE, details: 'No cluster leader' });
  api.consensus.fake.failNext.push(new Error('14 UNAVAILABLE: no leader'));
  const write = await api.failure(api.catalog.register.bind(api.catalog), registration(web1));
  expect({ code: write.code, details: write.details }).toEqual({ code: GrpcStatus.UNAVAILABLE, details: 'No cluster leader' });
  // A stale read asks no one: the view answers, knownLeader as the view last heard.
  const stale = await api.call(api.catalog.listNodes.bind(api.catalog), { query: { consistency: Consistency.CONSISTENCY_STALE, minIndex: 0n, maxStale: undefined, datacenter: '' }, nodeMeta: {} });
  expect(stale.meta?.consistency).toBe(Consistency.CONSISTENCY_STALE);
});

test('max_stale without CONSISTENCY_STALE is refused', async () => {
  const failure = await api.failure(api.catalog.listNodes.bind(api.catalog), { query: { consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: { seconds: 5n, nanos: 0 }, datacenter: '' }, nodeMeta: {} });
  expect(failure.code).toBe(GrpcStatus.INVALID_ARGUMENT);
});

test('a blocking read (min_index) waits for a write past it, then answers with the new index (§4.4)', async () => {
  const first = await register(web1);
  const started = Date.now();
  const blocked = api.call(api.catalog.getService.bind(api.catalog), { query: { consistency: Consistency.CONSISTENCY_UNSPECIFIED, minIndex: first, maxStale: undefined, datacenter: '' }, nodeMeta: {}, service: 'web', tags: [] }, 10_000);
  let answered = false;
  void blocked.then(() => (answered = true));
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(answered).toBe(false);
  const second = await register({ node: 'node-beta-1', address: '10.0.2.101', service: { ...web1.service!, id: 'web-2' } });
  const woken = await blocked;
  expect(Date.now() - started).toBeLessThan(5_000);
  expect(woken.meta?.index).toBe(second);
  expect(woken.instances.map((i) => i.service?.id)).toEqual(['web-1', 'web-2']);
});

test('a blocking read with no change answers shortly before the call deadline, with the same index', async () => {
  const first = await register(web1);
  const started = Date.now();
  const answer = await api.call(api.catalog.listNodes.bind(api.catalog), { query: { consistency: Consistency.CONSISTENCY_UNSPECIFIED, minIndex: first, maxStale: undefined, datacenter: '' }, nodeMeta: {} }, 1_500);
  expect(answer.meta?.index).toBe(first);
  expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
});
