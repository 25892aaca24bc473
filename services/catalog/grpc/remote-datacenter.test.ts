// gRPC calls naming another datacenter (grpc/remote-datacenter.ts; reference/consul-compat.md §3.9,
// errors §3.7): the four services behind a real gRPC server, forwarding through a RouterClient to a
// fake router over real gRPC (testing/fake-router.ts). The request crosses as its message's bytes,
// the remote catalog's answer comes back as it gave it (status, details, `consulate-*` trailers),
// and the router's own failures get the codes the table in remote-datacenter.ts gives them.
import { Client, Metadata, MethodDefinition, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';

import { CatalogServiceService, ListNodesRequest, ListNodesResponse, Node } from '../../gen/consulate/catalog/v1/catalog';
import { HealthServiceService } from '../../gen/consulate/catalog/v1/health';
import { GetRequest, GetResponse, KVServiceService, PutRequest, PutResponse, WatchPrefixRequest, WatchPrefixResponse } from '../../gen/consulate/catalog/v1/kv';
import { Consistency, QueryOptions } from '../../gen/consulate/catalog/v1/query';
import { SessionServiceService } from '../../gen/consulate/catalog/v1/session';
import { ForwardResponse } from '../../gen/consulate/router/v1/operator';
import { FORWARD_TIMEOUT_MS } from '../router-client';
import { DEFAULT_WAIT_MS } from '../state/consistent-read';
import { ROUTER_ANSWER_TRAILER } from '../../lib/watch-relay';
import { FakeRouter, Refusal, routerAnswer, startFakeRouter } from '../testing/fake-router';
import { CatalogGrpc, startCatalogGrpc } from '../testing/grpc-harness';
import { FORWARDED_WAIT_MARGIN_MS, grpcForwardPolicy } from './remote-datacenter';
import { INDEX_TRAILER } from './status';

const query = (datacenter: string, more: Partial<QueryOptions> = {}): QueryOptions => ({ consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: undefined, datacenter, ...more });

const dc2Node: Node = { id: '', name: 'only-in-dc2', address: '10.0.2.5', datacenter: 'dc2', taggedAddresses: {}, meta: {}, createIndex: 7n, modifyIndex: 7n };

const watchAt = (index: bigint): WatchPrefixResponse => ({ entries: [{ key: `cfg/${index}`, value: Buffer.from('v'), flags: 0n, session: '', lockIndex: 0n, createIndex: index, modifyIndex: index }], index });

/** The remote catalog's answer to a gRPC call, as a router hands it back. */
function grpcAnswer(message: Uint8Array, more: Partial<NonNullable<ForwardResponse['grpc']>> = {}): ForwardResponse {
  return { path: ['dc2'], grpc: { code: GrpcStatus.OK, details: '', message: Buffer.from(message), trailers: {}, ...more } };
}

let router: FakeRouter;
let api: CatalogGrpc;
let logs: { msg: string; [field: string]: unknown }[];

beforeEach(async () => {
  router = await startFakeRouter('dc1');
  logs = [];
  api = await startCatalogGrpc({ routerAddresses: [router.address], logLines: logs });
});

afterEach(async () => {
  await api.close();
  await router.close();
});

const listNodes = (request: Partial<ListNodesRequest>, timeoutMs?: number) => api.call(api.catalog.listNodes.bind(api.catalog), { query: undefined, nodeMeta: {}, ...request }, timeoutMs);
const kvGet = (request: Partial<GetRequest>) => api.call(api.kv.get.bind(api.kv), { query: undefined, key: '', recurse: false, keys: false, separator: '', ...request });
const kvPut = (request: Partial<PutRequest>) => api.call(api.kv.put.bind(api.kv), { key: '', value: Buffer.alloc(0), flags: 0n, condition: undefined, datacenter: '', ...request });
const failure = <T>(promise: Promise<T>): Promise<ServiceError> =>
  promise.then(
    () => Promise.reject(new Error('the call succeeded; a failure was expected')),
    (err: ServiceError) => err,
  );

describe('a call naming another datacenter goes through the routers', () => {
  test('a read: its message crosses as bytes, and the remote answer comes back decoded', async () => {
    router.forwardAnswer = () => grpcAnswer(ListNodesResponse.encode({ nodes: [dc2Node], meta: { index: 7n, knownLeader: true, lastContact: undefined, consistency: Consistency.CONSISTENCY_DEFAULT } }).finish());
    const request: ListNodesRequest = { query: query('dc2'), nodeMeta: { rack: 'r1' } };
    const answer = await listNodes(request);

    // dc1's own catalog has no such node: the answer is dc2's.
    expect(answer.nodes).toEqual([dc2Node]);
    expect(answer.meta?.index).toBe(7n);
    const [forwarded] = router.forwarded;
    expect(forwarded.datacenter).toBe('dc2');
    expect(forwarded.request).toBeUndefined();
    expect(forwarded.grpc?.method).toBe('/consulate.catalog.v1.CatalogService/ListNodes');
    expect(forwarded.grpc?.readOnly).toBe(true);
    // The request as sent, datacenter included: the remote catalog serves it as its own.
    expect(ListNodesRequest.decode(forwarded.grpc!.message)).toEqual(request);
  });

  test("the remote catalog's error is the answer: its code, its text, its consulate-* trailers", async () => {
    router.forwardAnswer = () => grpcAnswer(new Uint8Array(), { code: GrpcStatus.NOT_FOUND, details: 'key "only/dc2" doesn\'t exist', trailers: { [INDEX_TRAILER]: '42', 'x-other': 'dropped' } });
    const err = await failure(kvGet({ key: 'only/dc2', query: query('dc2') }));
    expect({ code: err.code, details: err.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'key "only/dc2" doesn\'t exist' });
    expect(err.metadata.get(INDEX_TRAILER)).toEqual(['42']);
    expect(err.metadata.get('x-other')).toEqual([]);
  });

  test('an OK answer keeps its trailers too', async () => {
    router.forwardAnswer = () => grpcAnswer(GetResponse.encode({ entries: [], keys: ['a'], meta: undefined }).finish(), { trailers: { 'consulate-known-leader': 'true' } });
    const trailers = await new Promise<Metadata>((resolve, reject) => {
      const call = api.kv.get({ query: query('dc2'), key: '', recurse: false, keys: true, separator: '' }, (err) => err && reject(err));
      call.on('status', (status) => resolve(status.metadata));
    });
    expect(trailers.get('consulate-known-leader')).toEqual(['true']);
  });

  test('a write crosses too, is not marked read-only, and changes nothing here', async () => {
    router.forwardAnswer = () => grpcAnswer(PutResponse.encode({ succeeded: true, index: 99n }).finish());
    const txns = api.consensus.fake.txns.length;
    const answer = await kvPut({ key: 'from-dc1', value: Buffer.from('hello'), datacenter: 'dc2' });
    expect(answer).toEqual({ succeeded: true, index: 99n });
    expect(api.consensus.fake.txns).toHaveLength(txns);
    const [forwarded] = router.forwarded;
    expect(forwarded.grpc?.method).toBe('/consulate.catalog.v1.KVService/Put');
    expect(forwarded.grpc?.readOnly).toBe(false);
    expect(PutRequest.decode(forwarded.grpc!.message)).toMatchObject({ key: 'from-dc1', value: Buffer.from('hello'), datacenter: 'dc2' });
  });

  test('a call naming this datacenter, or none, is served here and never reaches a router', async () => {
    await kvPut({ key: 'here', value: Buffer.from('v'), datacenter: 'dc1' });
    expect((await kvGet({ key: 'here', query: query('dc1') })).entries.map((e) => e.key)).toEqual(['here']);
    expect((await listNodes({ query: query('') })).nodes).toEqual([]);
    expect(router.forwarded).toEqual([]);
  });

  test('every unary method that names a datacenter is forwarded; Status and ListDatacenters are not', async () => {
    // Whatever the method, the fake dc2 answers an empty (default) message.
    router.forwardAnswer = () => grpcAnswer(new Uint8Array());
    const client = new Client(api.address, credentials.createInsecure());
    const definitions = [CatalogServiceService, HealthServiceService, KVServiceService, SessionServiceService];
    const unary = definitions.flatMap((definition) => Object.values(definition) as MethodDefinition<object, unknown>[]).filter((method) => !method.requestStream && !method.responseStream);
    const forwardable: string[] = [];
    try {
      for (const method of unary) {
        const request = method.requestDeserialize(Buffer.alloc(0)) as { datacenter?: string; query?: QueryOptions };
        if ('datacenter' in request) request.datacenter = 'dc2';
        else if ('query' in request) request.query = query('dc2');
        else continue;
        forwardable.push(method.path);
        await new Promise<void>((resolve, reject) =>
          client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, new Metadata(), { deadline: Date.now() + 5_000 }, (err) => (err ? reject(new Error(`${method.path}: ${err.message}`)) : resolve())),
        );
      }
    } finally {
      client.close();
    }
    expect(router.forwarded.map((forwarded) => forwarded.grpc?.method)).toEqual(forwardable);
    expect(unary.map((method) => method.path).filter((path) => !forwardable.includes(path))).toEqual(['/consulate.catalog.v1.CatalogService/Status', '/consulate.catalog.v1.CatalogService/ListDatacenters']);
  });

  test("a watch of another datacenter goes to the routers' ForwardWatch: the remote messages as sent, then its status and own trailers", async () => {
    router.forwardWatchAnswer = (_, call) => {
      call.write({ message: Buffer.from(WatchPrefixResponse.encode(watchAt(7n)).finish()) });
      call.write({ message: Buffer.from(WatchPrefixResponse.encode(watchAt(9n)).finish()) });
      const trailers = routerAnswer();
      trailers.set('consulate-index', '9');
      call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'this catalog is shutting down: watch again through another catalog', metadata: trailers });
    };
    const stream = api.kv.watchPrefix({ prefix: 'cfg/', query: query('dc2') });
    const got: WatchPrefixResponse[] = [];
    stream.on('data', (message: WatchPrefixResponse) => got.push(message));
    const err = await new Promise<ServiceError>((resolve) => stream.on('error', resolve));

    expect(got).toEqual([watchAt(7n), watchAt(9n)]);
    expect([err.code, err.details]).toEqual([GrpcStatus.UNAVAILABLE, 'this catalog is shutting down: watch again through another catalog']);
    expect(err.metadata.get('consulate-index')).toEqual(['9']);
    expect(err.metadata.get(ROUTER_ANSWER_TRAILER)).toEqual([]);
    const [watch] = router.watches;
    expect([watch.datacenter, watch.grpc?.method, watch.grpc?.readOnly]).toEqual(['dc2', '/consulate.catalog.v1.KVService/WatchPrefix', true]);
    expect(WatchPrefixRequest.decode(watch.grpc!.message)).toEqual({ prefix: 'cfg/', query: query('dc2') });
  });

  test("a watch the router refuses (No path to datacenter) ends NOT_FOUND with Consul's text and log line", async () => {
    const stream = api.health.watchServiceHealth({ service: 'web', tags: [], nodeMeta: {}, passingOnly: false, query: query('dc9') });
    const err = await new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    expect([err.code, err.details]).toEqual([GrpcStatus.NOT_FOUND, 'No path to datacenter']);
    expect(logs.map((line) => line.msg)).toContain('RPC request for DC is currently failing as no path was found');
  });

  test('a message that does not decode ends the watch INTERNAL, saying so, and cancels the forwarded one', async () => {
    let cancelled = false;
    router.forwardWatchAnswer = (_, call) => {
      call.on('cancelled', () => (cancelled = true));
      call.write({ message: Buffer.from([0xff, 0xff, 0xff, 0xff]) });
    };
    const stream = api.kv.watchPrefix({ prefix: 'cfg/', query: query('dc2') });
    stream.on('data', () => undefined);
    const err = await new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    expect(err.code).toBe(GrpcStatus.INTERNAL);
    expect(err.details).toMatch(/^a message of dc2's watch does not decode as \/consulate\.catalog\.v1\.KVService\/WatchPrefix's response: /);
    const deadline = Date.now() + 5_000;
    while (!cancelled && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(cancelled).toBe(true);
  });

  test('a client that cancels its watch cancels the forwarded one', async () => {
    let cancelled = false;
    router.forwardWatchAnswer = (_, call) => {
      call.on('cancelled', () => (cancelled = true));
      call.write({ message: Buffer.from(WatchPrefixResponse.encode(watchAt(7n)).finish()) });
    };
    const stream = api.kv.watchPrefix({ prefix: 'cfg/', query: query('dc2') });
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('data', resolve));
    stream.cancel();
    const deadline = Date.now() + 5_000;
    while (!cancelled && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(cancelled).toBe(true);
  });
});

describe('deadlines', () => {
  test('a client that cancels its call cancels the forward through the router', async () => {
    router.forwardAnswer = () => new Promise(() => undefined); // dc2 keeps the blocking read waiting
    const before = router.forwarded.length;
    const call = api.catalog.listNodes({ query: query('dc2', { minIndex: 5n }), nodeMeta: {} }, () => undefined);
    while (router.forwarded.length === before) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(router.forwardsCancelled).toBe(0);
    call.cancel();
    const deadline = Date.now() + 5_000;
    while (router.forwardsCancelled === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(router.forwardsCancelled).toBe(1);
  });

  test("the call's deadline travels to the router", async () => {
    router.forwardAnswer = () => grpcAnswer(ListNodesResponse.encode({ nodes: [], meta: undefined }).finish());
    const sent = Date.now();
    await listNodes({ query: query('dc2', { minIndex: 5n }) }, 20_000);
    expect(Math.abs(router.forwardDeadlines[0] - (sent + 20_000))).toBeLessThan(1_000);
    // A read: a router may pass it to another router of dc2 (as an HTTP GET); this catalog does not resend it.
    expect(router.forwarded[0].grpc?.readOnly).toBe(true);
  });

  test('without a deadline: 30 s for a plain read, a blocking read the wait it would have here and a margin', () => {
    const list = CatalogServiceService.listNodes.path;
    expect(grpcForwardPolicy(list, { query: query('dc2') }, undefined)).toEqual({ timeoutMs: FORWARD_TIMEOUT_MS, repeatable: true, readOnly: true });
    expect(grpcForwardPolicy(list, { query: query('dc2', { minIndex: 3n }) }, undefined)).toEqual({ timeoutMs: DEFAULT_WAIT_MS + FORWARDED_WAIT_MARGIN_MS, repeatable: false, readOnly: true });
    expect(grpcForwardPolicy(list, { query: query('dc2', { minIndex: 3n }) }, 42_000)).toEqual({ timeoutMs: 42_000, repeatable: false, readOnly: true });
    // A write never goes to a second router once it may have left; a transaction may write.
    expect(grpcForwardPolicy(KVServiceService.put.path, { datacenter: 'dc2' }, undefined)).toEqual({ timeoutMs: FORWARD_TIMEOUT_MS, repeatable: false, readOnly: false });
    expect(grpcForwardPolicy(KVServiceService.txn.path, { query: query('dc2', { minIndex: 3n }) }, undefined)).toEqual({ timeoutMs: FORWARD_TIMEOUT_MS, repeatable: false, readOnly: false });
  });
});

describe("the routers' failures, with the codes the HTTP side's errors map to", () => {
  const refuse = (refusal: Refusal) => () => refusal;

  test('no route: NOT_FOUND "No path to datacenter", logged with Consul\'s line', async () => {
    router.forwardAnswer = refuse({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    const err = await failure(listNodes({ query: query('dc9') }));
    expect({ code: err.code, details: err.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    expect(logs.map((line) => [line.msg, line.datacenter, line.method])).toContainEqual(['RPC request for DC is currently failing as no path was found', 'dc9', '/consulate.catalog.v1.CatalogService/ListNodes']);
  });

  test('a route but no server: UNAVAILABLE "Remote DC has no server currently reachable", the detail in the log', async () => {
    router.forwardAnswer = refuse({ code: GrpcStatus.UNAVAILABLE, details: 'Remote DC has no server currently reachable: no catalog of dc2 answered (x)' });
    const err = await failure(kvPut({ key: 'k', datacenter: 'dc2' }));
    expect({ code: err.code, details: err.details }).toEqual({ code: GrpcStatus.UNAVAILABLE, details: 'Remote DC has no server currently reachable' });
    expect(logs.find((line) => line.msg === 'RPC request to DC is currently failing as no server can be reached')?.reason).toMatch(/no catalog of dc2 answered/);
  });

  test("any other answer of the router keeps its code and text (a method it does not forward)", async () => {
    router.forwardAnswer = refuse({ code: GrpcStatus.INVALID_ARGUMENT, details: 'gRPC method "/x/Y" is not forwarded' });
    const err = await failure(listNodes({ query: query('dc2') }));
    expect({ code: err.code, details: err.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'gRPC method "/x/Y" is not forwarded' });
  });

  test('no router answers: UNAVAILABLE, naming it', async () => {
    await router.close();
    const err = await failure(listNodes({ query: query('dc2') }));
    expect(err.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(err.details).toMatch(/^No federation router could answer: 127\.0\.0\.1:\d+: unreachable/);
  });

  test('an HTTP answer to a gRPC call is not passed off as one: INTERNAL', async () => {
    router.forwardAnswer = () => ({ path: ['dc2'], response: { status: 200, headers: {}, body: Buffer.from('[]') } });
    const err = await failure(listNodes({ query: query('dc2') }));
    expect({ code: err.code, details: err.details }).toEqual({ code: GrpcStatus.INTERNAL, details: 'the router answered without a gRPC response' });
  });

  test('without a router: NOT_FOUND "No path to datacenter", as before federation', async () => {
    const alone = await startCatalogGrpc();
    try {
      const err = await alone.failure(alone.kv.put.bind(alone.kv), { key: 'k', value: Buffer.alloc(0), flags: 0n, condition: undefined, datacenter: 'dc2' });
      expect({ code: err.code, details: err.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    } finally {
      await alone.close();
    }
  });

  test('past the limit of forwards in flight: RESOURCE_EXHAUSTED, and the slot comes back', async () => {
    const limited = await startCatalogGrpc({ routerAddresses: [router.address], maxForwardsInFlight: 1 });
    let release: () => void = () => undefined;
    router.forwardAnswer = () => new Promise((resolve) => (release = () => resolve(grpcAnswer(ListNodesResponse.encode({ nodes: [], meta: undefined }).finish()))));
    try {
      const list = () => limited.call(limited.catalog.listNodes.bind(limited.catalog), { query: query('dc2'), nodeMeta: {} });
      const first = list();
      while (router.forwarded.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const second = await failure(list());
      expect({ code: second.code, details: second.details }).toEqual({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'too many requests forwarded to other datacenters at once (1); retry later' });
      release();
      await first;
      router.forwardAnswer = () => grpcAnswer(ListNodesResponse.encode({ nodes: [], meta: undefined }).finish());
      await list();
      expect(router.forwarded).toHaveLength(2);
    } finally {
      await limited.close();
    }
  });
});
