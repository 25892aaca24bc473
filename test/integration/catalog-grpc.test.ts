/**
 * The catalog's public gRPC API (`consulate.catalog.v1` on 8502, DESIGN.md "polyglot API") with
 * real processes and the generated grpc-js clients, as a client in any language would use it:
 *
 *   server-1   consensus, a one-server Raft
 *   catalog    gRPC on <its address>:8502 (and HTTP on 8500), over the same watch-fed view
 *
 * register → ServiceHealth; a WatchServiceHealth stream that gets the current instances, then an
 * update when another instance registers; KV put/get/cas/delete; a WatchPrefix woken by a put; a
 * session holding a lock; bad input answered with a status code and Consul's text; and the
 * catalog's shutdown ending a watch with UNAVAILABLE (reference/consul-compat.md §4.1-4.5).
 */
import { ClientReadableStream, Metadata, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';

import { CatalogServiceClient, HealthStatus, RegisterRequest } from '../../services/gen/consulate/catalog/v1/catalog';
import { HealthServiceClient, WatchServiceHealthResponse } from '../../services/gen/consulate/catalog/v1/health';
import { KVServiceClient, PutRequest, WatchPrefixResponse } from '../../services/gen/consulate/catalog/v1/kv';
import { SessionBehavior, SessionServiceClient } from '../../services/gen/consulate/catalog/v1/session';
import { callUnary } from '../../services/lib/grpc-client';
import { RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

let consensus: RoleProcess;
let catalog: RoleProcess;
let catalogApi: CatalogServiceClient;
let health: HealthServiceClient;
let kv: KVServiceClient;
let sessions: SessionServiceClient;

type Unary<Req, Res> = Parameters<typeof callUnary<Req, Res>>[0];

/** One call, no retries: what the test sees is what a client sees. */
function call<Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs = 10_000): Promise<Res> {
  return callUnary(method, request, { timeoutMs, idempotent: false });
}

async function failure<Req, Res>(method: Unary<Req, Res>, request: Req): Promise<{ code: GrpcStatus; details: string; metadata: Metadata }> {
  try {
    await call(method, request);
  } catch (err) {
    const { code, details, metadata } = err as ServiceError;
    return { code, details, metadata };
  }
  throw new Error('the call succeeded; a refusal was expected');
}

function registration(request: Partial<RegisterRequest>): RegisterRequest {
  return { datacenter: '', id: '', node: '', address: '', taggedAddresses: {}, nodeMeta: {}, service: undefined, checks: [], skipNodeUpdate: false, ...request };
}

function instance(node: string, address: string, id: string): RegisterRequest {
  return registration({
    node,
    address,
    service: { id, name: 'web', tags: ['v1'], address: '', taggedAddresses: {}, meta: {}, port: 8080, weights: undefined, enableTagOverride: false },
    checks: [
      { node: '', checkId: 'serfHealth', name: 'Serf Health Status', status: HealthStatus.HEALTH_STATUS_PASSING, notes: '', output: 'Agent alive and reachable', serviceId: '', type: '' },
      { node: '', checkId: `${id}-http`, name: 'web http', status: HealthStatus.HEALTH_STATUS_PASSING, notes: '', output: '', serviceId: id, type: 'http' },
    ],
  });
}

function put(key: string, value: string | Buffer, condition?: PutRequest['condition']) {
  return call(kv.put.bind(kv), { key, value: Buffer.from(value), flags: 0n, condition, datacenter: '' });
}

function get(key: string, recurse = false) {
  return call(kv.get.bind(kv), { query: undefined, key, recurse, keys: false, separator: '' });
}

/** A server stream's messages and its end, as they arrive. */
function collect<T>(stream: ClientReadableStream<T>) {
  const messages: T[] = [];
  let error: ServiceError | undefined;
  stream.on('data', (message: T) => messages.push(message));
  stream.on('error', (err: ServiceError) => (error = err));
  return {
    messages,
    stream,
    error: () => error,
    until: (what: string, predicate: () => boolean, timeoutMs = 10_000) => eventually(what, () => predicate() || error !== undefined || undefined, timeoutMs),
  };
}

beforeAll(async () => {
  const serverHost = freeLoopbackAddress();
  consensus = await startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] });
  catalog = await startRole({ role: 'catalog', node: 'catalog', args: [`-consensus-addr=${consensus.grpc}`] });
  const insecure = credentials.createInsecure();
  catalogApi = new CatalogServiceClient(catalog.grpc, insecure);
  health = new HealthServiceClient(catalog.grpc, insecure);
  kv = new KVServiceClient(catalog.grpc, insecure);
  sessions = new SessionServiceClient(catalog.grpc, insecure);
  // Up is not ready: the one-server Raft elects itself and the view loads in the background.
  await eventually(
    'the catalog to answer a default-consistency read over gRPC',
    () =>
      call(catalogApi.listNodes.bind(catalogApi), { query: undefined, nodeMeta: {} }, 2_000).then(
        () => true,
        () => undefined,
      ),
    20_000,
  );
});

afterAll(async () => {
  for (const client of [catalogApi, health, kv, sessions]) client?.close();
  await stopAll();
});

test('register a service, then see it in ServiceHealth with its checks and index', async () => {
  const { index } = await call(catalogApi.register.bind(catalogApi), instance('node-alpha-1', '127.0.1.101', 'web-1'));
  expect(index).toBeGreaterThan(0n);
  const answer = await call(health.serviceHealth.bind(health), { query: undefined, service: 'web', tags: ['v1'], passingOnly: true, nodeMeta: {} });
  expect(answer.entries.map((e) => [e.node?.name, e.node?.address, e.service?.id, e.service?.port, e.checks.map((c) => c.checkId)])).toEqual([['node-alpha-1', '127.0.1.101', 'web-1', 8080, ['serfHealth', 'web-1-http']]]);
  expect(answer.entries[0].service?.createIndex).toBe(index);
  expect(answer.meta).toMatchObject({ index, knownLeader: true });
  const node = await call(catalogApi.getNode.bind(catalogApi), { query: undefined, node: 'node-alpha-1' });
  expect(node.services.map((s) => s.id)).toEqual(['web-1']);
});

test('WatchServiceHealth: the current instances at once, then an update when another instance registers', async () => {
  const watch = collect<WatchServiceHealthResponse>(health.watchServiceHealth({ service: 'web', tags: [], passingOnly: true, nodeMeta: {}, query: undefined }));
  await watch.until('the first message', () => watch.messages.length >= 1);
  expect(watch.error()).toBeUndefined();
  expect(watch.messages[0].entries.map((e) => e.service?.id)).toEqual(['web-1']);
  const first = watch.messages[0].index;

  const { index: added } = await call(catalogApi.register.bind(catalogApi), instance('node-beta-1', '127.0.1.102', 'web-2'));
  await watch.until('the update', () => watch.messages.length >= 2);
  expect(watch.error()).toBeUndefined();
  expect(watch.messages[1].entries.map((e) => e.service?.id)).toEqual(['web-1', 'web-2']);
  expect(watch.messages[1].index).toBe(added);
  expect(added).toBeGreaterThan(first);
  watch.stream.cancel();
});

test('KV: put, get, cas (0 creates only, a stale index is succeeded=false), delete by cas', async () => {
  const written = await put('app/config', 'v1');
  expect(written.succeeded).toBe(true);
  const [entry] = (await get('app/config')).entries;
  expect([entry.key, entry.value.toString(), entry.modifyIndex]).toEqual(['app/config', 'v1', written.index]);

  expect((await put('app/config', 'v2', { $case: 'cas', value: 0n })).succeeded).toBe(false);
  expect((await put('app/config', 'v2', { $case: 'cas', value: entry.modifyIndex + 1000n })).succeeded).toBe(false);
  const swapped = await put('app/config', 'v2', { $case: 'cas', value: entry.modifyIndex });
  expect(swapped.succeeded).toBe(true);
  expect((await get('app/config')).entries[0]).toMatchObject({ value: Buffer.from('v2'), createIndex: entry.createIndex, modifyIndex: swapped.index });

  expect((await call(kv.delete.bind(kv), { key: 'app/config', recurse: false, cas: entry.modifyIndex, datacenter: '' })).succeeded).toBe(false);
  expect((await call(kv.delete.bind(kv), { key: 'app/config', recurse: false, cas: swapped.index, datacenter: '' })).succeeded).toBe(true);
  const gone = await failure(kv.get.bind(kv), { query: undefined, key: 'app/config', recurse: false, keys: false, separator: '' });
  expect({ code: gone.code, details: gone.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'key "app/config" doesn\'t exist' });
  expect(BigInt(String(gone.metadata.get('consulate-index')[0]))).toBeGreaterThan(swapped.index);
});

test('WatchPrefix: woken by a put under the prefix, with a higher index', async () => {
  await put('cfg/a', '1');
  const watch = collect<WatchPrefixResponse>(kv.watchPrefix({ prefix: 'cfg/', query: undefined }));
  await watch.until('the first message', () => watch.messages.length >= 1);
  expect(watch.messages[0].entries.map((e) => e.key)).toEqual(['cfg/a']);

  await put('elsewhere', 'not watched');
  const { index } = await put('cfg/b', '2');
  await watch.until('the put to wake the watch', () => watch.messages.length >= 2);
  expect(watch.error()).toBeUndefined();
  expect(watch.messages).toHaveLength(2);
  expect(watch.messages[1].entries.map((e) => [e.key, e.value.toString()])).toEqual([
    ['cfg/a', '1'],
    ['cfg/b', '2'],
  ]);
  expect(watch.messages[1].index).toBe(index);
  watch.stream.cancel();
});

test('a session takes a lock, another cannot, and destroying it releases the lock', async () => {
  const create = (name: string) => call(sessions.create.bind(sessions), { name, node: 'node-alpha-1', lockDelay: { seconds: 0n, nanos: 0 }, behavior: SessionBehavior.SESSION_BEHAVIOR_UNSPECIFIED, ttl: { seconds: 30n, nanos: 0 }, nodeChecks: undefined, serviceChecks: [], datacenter: '' });
  const { id: first } = await create('first');
  const { id: second } = await create('second');
  const { session } = await call(sessions.info.bind(sessions), { query: undefined, id: first });
  expect(session).toMatchObject({ id: first, node: 'node-alpha-1', behavior: SessionBehavior.SESSION_BEHAVIOR_RELEASE, ttl: { seconds: 30n, nanos: 0 }, nodeChecks: ['serfHealth'] });
  expect((await call(sessions.renew.bind(sessions), { id: first, datacenter: '' })).session?.id).toBe(first);

  expect((await put('service/leader', 'first', { $case: 'acquire', value: first })).succeeded).toBe(true);
  expect((await put('service/leader', 'second', { $case: 'acquire', value: second })).succeeded).toBe(false);
  expect((await get('service/leader')).entries[0]).toMatchObject({ session: first, lockIndex: 1n });

  await call(sessions.destroy.bind(sessions), { id: first, datacenter: '' });
  expect((await get('service/leader')).entries[0]).toMatchObject({ session: '', lockIndex: 1n, value: Buffer.from('first') });
  expect((await put('service/leader', 'second', { $case: 'acquire', value: second })).succeeded).toBe(true);
  const listed = await call(sessions.list.bind(sessions), { query: undefined, node: 'node-alpha-1' });
  expect(listed.sessions.map((s) => s.id)).toEqual([second]);
  await call(sessions.destroy.bind(sessions), { id: second, datacenter: '' });
});

test("bad input: a clear status code and Consul's text (invalid node, oversized value, unknown session, another datacenter)", async () => {
  const noNode = await failure(catalogApi.register.bind(catalogApi), registration({ address: '10.0.0.1' }));
  expect({ code: noNode.code, details: noNode.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'Must provide node' });
  const badId = await failure(catalogApi.register.bind(catalogApi), registration({ node: 'n1', address: '10.0.0.1', id: 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz' }));
  expect({ code: badId.code, details: badId.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: "Bad node ID: encoding/hex: invalid byte: U+007A 'z'" });
  const unknownNode = await failure(catalogApi.getNode.bind(catalogApi), { query: undefined, node: 'no-such-node' });
  expect({ code: unknownNode.code, details: unknownNode.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'node "no-such-node" is not registered' });

  const big = await failure(kv.put.bind(kv), { key: 'too/big', value: Buffer.alloc(512 * 1024 + 1, 'x'), flags: 0n, condition: undefined, datacenter: '' });
  expect({ code: big.code, details: big.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'Value for key "too/big" is too large (524289 > 524288 bytes)' });
  expect((await failure(kv.get.bind(kv), { query: undefined, key: 'too/big', recurse: false, keys: false, separator: '' })).code).toBe(GrpcStatus.NOT_FOUND);

  const lock = await failure(kv.put.bind(kv), { key: 'x', value: Buffer.alloc(0), flags: 0n, condition: { $case: 'acquire', value: '00000000-0000-0000-0000-000000000001' }, datacenter: '' });
  expect({ code: lock.code, details: lock.details }).toEqual({ code: GrpcStatus.FAILED_PRECONDITION, details: 'invalid session "00000000-0000-0000-0000-000000000001"' });
  const ttl = await failure(sessions.create.bind(sessions), { name: '', node: 'node-alpha-1', lockDelay: undefined, behavior: 0, ttl: { seconds: 1n, nanos: 0 }, nodeChecks: undefined, serviceChecks: [], datacenter: '' });
  expect({ code: ttl.code, details: ttl.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: "Invalid Session TTL '1000000000', must be between [10s=24h0m0s]" });

  const remote = await failure(health.serviceHealth.bind(health), { query: { consistency: 0, minIndex: 0n, maxStale: undefined, datacenter: 'dc2' }, service: 'web', tags: [], passingOnly: false, nodeMeta: {} });
  expect({ code: remote.code, details: remote.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
  // The catalog still answers.
  expect((await call(catalogApi.listServices.bind(catalogApi), { query: undefined, nodeMeta: {} })).services.map((s) => s.name)).toEqual(['web']);
});

test('stopping the catalog ends an open watch with UNAVAILABLE at once, not after the grace period', async () => {
  const watch = collect<WatchPrefixResponse>(kv.watchPrefix({ prefix: '', query: undefined }));
  await watch.until('the first message', () => watch.messages.length >= 1);
  const started = Date.now();
  const exited = catalog.stop();
  await watch.until('the watch to end', () => watch.error() !== undefined);
  expect(watch.error()?.code).toBe(GrpcStatus.UNAVAILABLE);
  expect(await exited).toBe(0);
  // The gRPC server's grace period is 5 s: the watch did not hold the shutdown.
  expect(Date.now() - started).toBeLessThan(4_000);
});
