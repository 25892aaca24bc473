/**
 * Cross-datacenter forwarding (forwarder.ts). The routes and areas are given (a fake Federation
 * and AreaStore); everything on the wire is real: the next hops are FederationService gRPC
 * servers on 127.0.0.1 (scripted ones, or a real router: the federationService adapter over a
 * Forwarder of its own), and a datacenter's catalog is an HTTP server. Only mutual TLS is left out:
 * PeerClients hands out plaintext clients and the adapter's listener vouches for the caller.
 *
 * Consul's texts (consul-compat.md §3.7, agent/structs/errors.go): `No path to datacenter` as
 * NOT_FOUND, `Remote DC has no server currently reachable` as UNAVAILABLE. Failover to the next
 * router and the offline marking are beyond Consul, as is transit (DESIGN.md "Beyond Consul").
 */
import { IncomingHttpHeaders, IncomingMessage, Server as HttpServer, ServerResponse, createServer as createHttpServer } from 'node:http';
import { AddressInfo, createServer as createTcpServer } from 'node:net';

import { Metadata, Server as GrpcServer, ServerCredentials, ServerUnaryCall, ServerWritableStream, ServiceDefinition, credentials, sendUnaryData, status as GrpcStatus } from '@grpc/grpc-js';
import { ROOT_CONTEXT, TraceFlags, context as otelContext, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

import {
  FederationServiceClient,
  FederationServiceForwardRequest,
  FederationServiceForwardResponse,
  FederationServiceService,
} from '../gen/consulate/router/v1/federation';
import { CatalogServiceService, ListNodesRequest, ListNodesResponse } from '../gen/consulate/catalog/v1/catalog';
import { GetRequest, KVServiceService, PutRequest, WatchPrefixRequest, WatchPrefixResponse } from '../gen/consulate/catalog/v1/kv';
import { Consistency } from '../gen/consulate/catalog/v1/query';
import { ForwardRequest, ForwardResponse, GrpcRequest } from '../gen/consulate/router/v1/operator';
import { EncodedAnswer, RawRequest } from '../catalog/http/http-server';
import { forwardedHttpService } from '../catalog/grpc/forwarded-http';
import { RoleGrpcServer } from '../lib/grpc-server';
import { WatchSink } from '../lib/watch-relay';
import { createLogger } from '../lib/log';
import { Area, AreaStore } from './area-store';
import { Federation } from './federation';
import { FEDERATION_SERVICE, federationService, forwardFailure } from './federation-service';
import { ANSWER_TRAILER, ForwardError, Forwarder, ForwarderOptions, GRPC_RETURN_MARGIN_MS, NO_PATH, NO_SERVER } from './forwarder';
import { DATACENTER_METADATA, PeerClients } from './peer-clients';
import { readForwardRequest } from './forward-wire';
import { peerOf } from './testing/peer-of';
import { MAX_HOPS, NextHop, Route } from './routing/route-table';
import { MutualTlsListener } from './tls-listener';

const logger = createLogger({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', level: 'silent' });
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// ---------------------------------------------------------------------------------------------
// Builders: a datacenter's catalog, routers on 8300, routes and areas

interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** A catalog's HTTP API on an ephemeral port, answering with `answer`; every request is kept. */
async function fakeCatalog(answer: (request: SeenRequest, res: ServerResponse) => void = (_, res) => res.end('{}')): Promise<{ address: string; seen: SeenRequest[] }> {
  const seen: SeenRequest[] = [];
  const server: HttpServer = createHttpServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(request);
      answer(request, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** An address nothing listens on: connecting is refused at once. */
async function deadAddress(): Promise<string> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `127.0.0.1:${port}`;
}

type ForwardCall = ServerUnaryCall<FederationServiceForwardRequest, FederationServiceForwardResponse>;
type ForwardHandler = (call: ForwardCall, callback: sendUnaryData<FederationServiceForwardResponse>) => void;

/** A router's 8300 serving only Forward, with `handler`; `calls` counts what reached it. */
async function scriptedRouter(handler: ForwardHandler): Promise<{ address: string; calls: ForwardCall[]; handler: ForwardHandler }> {
  const router = { address: '', calls: [] as ForwardCall[], handler };
  const unimplemented = (_: unknown, callback: sendUnaryData<never>) => callback({ code: GrpcStatus.UNIMPLEMENTED });
  router.address = await serveFederation({
    forward: (call: ForwardCall, callback: sendUnaryData<FederationServiceForwardResponse>) => {
      router.calls.push(call);
      router.handler(call, callback);
    },
    packet: unimplemented,
    pushPull: unimplemented,
    ping: unimplemented,
  });
  return router;
}

/** A real router of `datacenter` on 8300: the FederationService adapter over its own Forwarder. */
async function realRouter(
  datacenter: string,
  catalogAddrs: string[],
  more: { caller?: string; routes?: Route[]; areas?: Area[]; catalogGrpcAddrs?: string[]; adjacent?: string[]; catchUp?: () => Promise<void> } = {},
): Promise<{ address: string; forwarder: Forwarder }> {
  const caller = more.caller ?? 'dc1';
  const forwarder = newForwarder({ datacenter, catalogAddrs, catalogGrpcAddrs: more.catalogGrpcAddrs, routes: more.routes, areas: more.areas, adjacent: more.adjacent, catchUp: more.catchUp });
  // Plaintext here: the listener that checks certificates vouches for whoever calls.
  const listener = { datacenterOf: () => caller } as unknown as MutualTlsListener;
  const address = await serveFederation(federationService({ datacenter, node: `router-1.${datacenter}`, federation: {} as Federation, forwarder, listener: () => listener, logger }), FEDERATION_SERVICE);
  return { address, forwarder };
}

/** Serves `implementation` as FederationService (`definition`: the generated one, or the router's own). */
async function serveFederation(implementation: object, definition: ServiceDefinition = FederationServiceService): Promise<string> {
  const server = new GrpcServer();
  server.addService(definition, implementation as never);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))));
  cleanups.push(() => server.forceShutdown());
  return `127.0.0.1:${port}`;
}

/** PeerClients without TLS: one plaintext client per address, calls saying `datacenter`. */
function plaintextPeers(datacenter: string): PeerClients {
  const clients = new Map<string, FederationServiceClient>();
  cleanups.push(() => clients.forEach((client) => client.close()));
  const client = (address: string) => {
    let one = clients.get(address);
    if (one === undefined) clients.set(address, (one = new FederationServiceClient(address, credentials.createInsecure())));
    return one;
  };
  const metadata = () => {
    const sent = new Metadata();
    sent.set(DATACENTER_METADATA, datacenter);
    return sent;
  };
  const peer = (address: string) => peerOf(client(address));
  const fake: Pick<PeerClients, 'gossip' | 'forwarding' | 'metadata'> = { gossip: peer, forwarding: peer, metadata };
  return fake as PeerClients;
}

/** A Forwarder of `datacenter` with these routes and areas, adjacent to the datacenters `adjacent` names (default: every one). */
function newForwarder(options: { datacenter: string; catalogAddrs?: string[]; catalogGrpcAddrs?: string[]; routes?: Route[]; areas?: Area[]; adjacent?: string[]; catchUp?: () => Promise<void>; rebalancer?: ForwarderOptions['rebalancer'] }): Forwarder {
  const routes = new Map((options.routes ?? []).map((route) => [route.datacenter, route]));
  const areas = options.areas ?? [];
  const adjacent = options.adjacent;
  const federation = { route: (datacenter: string) => routes.get(datacenter), adjacent: (datacenter: string) => adjacent === undefined || adjacent.includes(datacenter) } as unknown as Federation;
  const store = { areas: () => areas, area: (id: string) => areas.find((area) => area.id === id), catchUp: options.catchUp ?? (async () => undefined) } as unknown as AreaStore;
  const forwarder = new Forwarder({ datacenter: options.datacenter, catalogAddrs: options.catalogAddrs ?? [], catalogGrpcAddrs: options.catalogGrpcAddrs ?? [], logger, rebalancer: options.rebalancer }, federation, store, plaintextPeers(options.datacenter));
  cleanups.push(() => forwarder.close());
  return forwarder;
}

/**
 * dc1 → dc2 (transit) → dc3, dc2 and dc3 real routers, dc3 serving from the catalog `dc3Catalog`
 * names; returns dc1's Forwarder.
 */
async function transitChain(dc3Catalog: { catalogAddrs?: string[]; catalogGrpcAddrs?: string[] }): Promise<Forwarder> {
  const dc3 = await realRouter('dc3', dc3Catalog.catalogAddrs ?? [], { caller: 'dc2', catalogGrpcAddrs: dc3Catalog.catalogGrpcAddrs });
  const dc2 = await realRouter('dc2', [], {
    caller: 'dc1',
    routes: [route(['dc3'], [hop('r1.dc3', dc3.address, 'dc3', { areaId: 'area-dc3' })], 'area-dc3')],
    areas: [area('area-dc1', 'dc1', true), area('area-dc3', 'dc3', true)],
  });
  return newForwarder({ datacenter: 'dc1', routes: [route(['dc2', 'dc3'], [hop('r1.dc2', dc2.address, 'dc2', { areaId: 'area-dc2' })], 'area-dc2')] });
}

function hop(name: string, address: string, datacenter: string, more: { alive?: boolean; areaId?: string } = {}): NextHop {
  return { name, address, datacenter, areaId: more.areaId ?? 'wan', alive: more.alive ?? true };
}

/** A route to the last datacenter of `path`, leaving through `areaId`, trying `hops` in order. */
function route(path: string[], hops: NextHop[], areaId = 'wan'): Route {
  return { datacenter: path[path.length - 1], path, areaId, rttNs: 1_000_000, nextHops: hops, reachable: hops.some((h) => h.alive) };
}

function area(id: string, peerDatacenter: string, transit: boolean): Area {
  return { id, peerDatacenter, retryJoin: [], useTls: false, transit };
}

/** `GET /v1/catalog/services` for `datacenter`, as a catalog hands it to its router. */
function request(datacenter: string, http: Partial<NonNullable<ForwardRequest['request']>> = {}): ForwardRequest {
  return { datacenter, request: { method: 'GET', path: '/v1/catalog/services', rawQuery: '', headers: {}, body: Buffer.alloc(0), ...http } };
}

const inSeconds = (s: number) => Date.now() + s * 1_000;

/** A Forward answer with `status` and a body naming who served it. */
function answered(servedBy: string, status = 200): FederationServiceForwardResponse {
  return { forward: { response: { status, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(servedBy)) }, path: [servedBy] } };
}

/**
 * A write that reached the first of two routers, which is then declared failed: it fails as one
 * that may have been applied, and the second router never sees it.
 */
async function expectNotSentAgain(write: ForwardRequest): Promise<void> {
  const r1 = await scriptedRouter(() => undefined);
  const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
  const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
  const pending = failure(forwarder.forward(write, inSeconds(30), [], undefined));
  while (r1.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  forwarder.routerFailed(r1.address);
  const err = await pending;
  expect(err.code).toBe(GrpcStatus.UNKNOWN);
  expect(err.message).toMatch(/^rpc error: the request to r1\.dc2 failed after it was sent and may or may not have been applied/);
  expect(r2.calls).toHaveLength(0);
}

async function failure(promise: Promise<unknown>): Promise<ForwardError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ForwardError)) throw new Error(`expected a ForwardError, got ${String(err)}`);
  return err;
}

const bodyOf = (answer: ForwardResponse) => Buffer.from(answer.response?.body ?? []).toString();

// ---------------------------------------------------------------------------------------------
// The last hop: the request is for this datacenter

describe('serving a request for this datacenter', () => {
  test('asks the catalog over HTTP and hands back its status, its Consul headers and its body', async () => {
    const catalog = await fakeCatalog((_, res) => {
      res.writeHead(404, { 'Content-Type': 'text/plain', 'X-Consul-Index': '42', 'X-Consul-KnownLeader': 'true', 'Set-Cookie': 'a=b', 'X-Powered-By': 'catalog' });
      res.end('Unknown service "web"');
    });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogAddrs: [catalog.address] });

    const answer = await forwarder.forward(
      request('dc2', {
        method: 'PUT',
        path: '/v1/kv/config/web',
        rawQuery: 'cas=7&flags=1',
        headers: { 'Content-Type': 'application/json', 'X-Consul-Token': 'secret', Authorization: 'Bearer t', Cookie: 'c=d', 'X-Forwarded-For': '10.0.0.9', Connection: 'upgrade' },
        body: Buffer.from('{"a":1}'),
      }),
      inSeconds(5),
      ['dc1'],
      'dc1',
    );

    expect(answer.path).toEqual(['dc2']);
    expect(answer.response?.status).toBe(404);
    expect(answer.response?.headers).toEqual({ 'content-type': 'text/plain', 'x-consul-index': '42', 'x-consul-knownleader': 'true' });
    expect(bodyOf(answer)).toBe('Unknown service "web"');

    const [seen] = catalog.seen;
    expect([seen.method, seen.url, seen.body]).toEqual(['PUT', '/v1/kv/config/web?cas=7&flags=1', '{"a":1}']);
    expect(seen.headers).toMatchObject({ 'content-type': 'application/json', 'x-consul-token': 'secret', authorization: 'Bearer t', 'content-length': '7' });
    expect(seen.headers).not.toHaveProperty('cookie');
    expect(seen.headers).not.toHaveProperty('x-forwarded-for');
    expect(seen.headers.connection).not.toBe('upgrade');
  });

  test('asks for the path alone when there is no query string', async () => {
    const catalog = await fakeCatalog();
    const forwarder = newForwarder({ datacenter: 'dc2', catalogAddrs: [catalog.address] });
    await forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1');
    expect(catalog.seen.map((seen) => seen.url)).toEqual(['/v1/catalog/services']);
  });

  test('carries the active trace to the catalog in traceparent', async () => {
    const contextManager = new AsyncLocalStorageContextManager().enable();
    otelContext.setGlobalContextManager(contextManager);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    cleanups.push(() => (propagation.disable(), otelContext.disable()));
    const catalog = await fakeCatalog();
    const forwarder = newForwarder({ datacenter: 'dc2', catalogAddrs: [catalog.address] });

    const span = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
    await otelContext.with(trace.setSpanContext(ROOT_CONTEXT, span), () => forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1'));
    expect(catalog.seen[0].headers.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  });

  test('tries the next catalog when one cannot be reached', async () => {
    const catalog = await fakeCatalog((_, res) => res.end('"served"'));
    const forwarder = newForwarder({ datacenter: 'dc2', catalogAddrs: [await deadAddress(), catalog.address] });
    const answer = await forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1');
    expect(bodyOf(answer)).toBe('"served"');
  });

  test('answers UNAVAILABLE with Consul\'s text when no catalog can be reached', async () => {
    const [a, b] = [await deadAddress(), await deadAddress()];
    const forwarder = newForwarder({ datacenter: 'dc2', catalogAddrs: [a, b] });
    const err = await failure(forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1'));
    expect(err.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(err.message).toMatch(new RegExp(`^${NO_SERVER}: no catalog of dc2 answered \\(${a}: .*ECONNREFUSED.*; ${b}: .*ECONNREFUSED.*\\)$`));
  });

  test('gives up on a catalog that does not answer by the deadline', async () => {
    const catalog = await fakeCatalog(() => undefined);
    const forwarder = newForwarder({ datacenter: 'dc2', catalogAddrs: [catalog.address] });
    const err = await failure(forwarder.forward(request('dc2'), Date.now() + 200, ['dc1'], 'dc1'));
    expect([err.code, err.message]).toEqual([GrpcStatus.UNAVAILABLE, `${NO_SERVER}: no catalog of dc2 answered (${catalog.address}: deadline passed)`]);
  });

  test('refuses a request for this datacenter from its own catalog: the catalog serves those', async () => {
    const forwarder = newForwarder({ datacenter: 'dc1', catalogAddrs: ['127.0.0.1:1'] });
    const err = await failure(forwarder.forward(request('dc1'), inSeconds(5), [], undefined));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  });

  test('refuses a router of a datacenter it is not adjacent to (no area, not in the WAN pool): PERMISSION_DENIED, the catalog never asked', async () => {
    const catalog = await fakeCatalog();
    const dc1 = await realRouter('dc1', [catalog.address], { caller: 'dc3', adjacent: ['dc2'] });
    const forwarder = newForwarder({ datacenter: 'dc3', routes: [route(['dc1'], [hop('r1.dc1', dc1.address, 'dc1')])] });
    const err = await failure(forwarder.forward(request('dc1', { method: 'PUT', path: '/v1/kv/secret', body: Buffer.from('x') }), inSeconds(5), [], undefined));
    expect([err.code, err.message]).toEqual([GrpcStatus.PERMISSION_DENIED, 'datacenter "dc3" is not adjacent to "dc1": no area with it and not in the WAN pool']);
    const watchEnd = await forwarder.forwardWatch(watchRequest('dc1'), [], undefined, collectingSink());
    expect(watchEnd.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(catalog.seen).toEqual([]);
    // Adjacent, the same request is served.
    const adjacent = await realRouter('dc1', [catalog.address], { caller: 'dc3', adjacent: ['dc3'] });
    const served = await newForwarder({ datacenter: 'dc3', routes: [route(['dc1'], [hop('r1.dc1', adjacent.address, 'dc1')])] }).forward(request('dc1'), inSeconds(5), [], undefined);
    expect(served.response?.status).toBe(200);
    expect(catalog.seen).toHaveLength(1);
  });

  test('a router whose mirror of the areas is behind catches up before it refuses: the area just created lets the request in', async () => {
    const catalog = await fakeCatalog();
    const adjacent: string[] = [];
    let catchUps = 0;
    const dc1 = await realRouter('dc1', [catalog.address], { caller: 'dc3', adjacent, catchUp: async () => (catchUps++, adjacent.push('dc3'), undefined) });
    const served = await newForwarder({ datacenter: 'dc3', routes: [route(['dc1'], [hop('r1.dc1', dc1.address, 'dc1')])] }).forward(request('dc1'), inSeconds(5), [], undefined);
    expect([served.response?.status, catchUps]).toEqual([200, 1]);
  });
});

// ---------------------------------------------------------------------------------------------
// Sending it on

/** A catalog's ForwardedHttpService on its gRPC port, as the catalog serves it (its adapter), answering with `serve`. */
async function fakeForwardedHttp(serve: (request: RawRequest) => Promise<EncodedAnswer> | undefined): Promise<{ address: string; seen: RawRequest[]; server: RoleGrpcServer }> {
  const seen: RawRequest[] = [];
  const server = new RoleGrpcServer({
    logger,
    tracer: trace.getTracer('test'),
    services: [forwardedHttpService({ serve: (request) => (seen.push(request), serve(request) ?? new Promise<never>(() => undefined)) }).service],
    shutdownGraceMs: 50,
  });
  const address = await server.listen('127.0.0.1', 0);
  server.setServing(true);
  cleanups.push(() => server.shutdown());
  return { address, seen, server };
}

const answersWith = (servedBy: string) => () => Promise.resolve({ status: 200, headers: { 'Content-Type': 'application/json', 'Content-Length': 9 }, body: Buffer.from(JSON.stringify(servedBy)) });

describe("serving a request for this datacenter on the catalog's gRPC port (ForwardedHttpService)", () => {
  test('hands the request to the catalog and back its status, its Consul headers and its body', async () => {
    const catalog = await fakeForwardedHttp(() => Promise.resolve({ status: 404, headers: { 'Content-Type': 'text/plain', 'X-Consul-Index': 42, 'Set-Cookie': 'a=b', 'Content-Length': 21 }, body: Buffer.from('Unknown service "web"') }));
    const http = await fakeCatalog();
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [catalog.address], catalogAddrs: [http.address] });

    const answer = await forwarder.forward(
      request('dc2', { method: 'PUT', path: '/v1/kv/config/web', rawQuery: 'cas=7', headers: { 'Content-Type': 'application/json', 'X-Consul-Token': 'secret', Cookie: 'c=d', Connection: 'upgrade' }, body: Buffer.from('{"a":1}') }),
      inSeconds(5),
      ['dc1'],
      'dc1',
    );

    expect(answer.path).toEqual(['dc2']);
    expect(answer.response?.status).toBe(404);
    expect(answer.response?.headers).toEqual({ 'content-type': 'text/plain', 'x-consul-index': '42' });
    expect(bodyOf(answer)).toBe('Unknown service "web"');
    const [seen] = catalog.seen;
    expect([seen.method, seen.url, (await seen.body(1024, () => new Error('too large') as never)).toString()]).toEqual(['PUT', '/v1/kv/config/web?cas=7', '{"a":1}']);
    expect(seen.headers).toEqual({ 'content-type': 'application/json', 'x-consul-token': 'secret', 'content-length': '7' });
    expect(http.seen).toEqual([]);
  });

  test('a catalog without the service (an older version): its HTTP API answers', async () => {
    const older = await fakeCatalogGrpc({});
    const http = await fakeCatalog((_, res) => res.end('"over http"'));
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [older.address], catalogAddrs: [http.address] });
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1'))).toBe('"over http"');
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1'))).toBe('"over http"');
    expect(http.seen).toHaveLength(2);
  });

  test("no catalog's gRPC port can be reached (a wrong -catalog-grpc-addr): their HTTP API answers, a write too", async () => {
    const http = await fakeCatalog((request, res) => res.end(JSON.stringify(request.method)));
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [await deadAddress()], catalogAddrs: [http.address] });
    expect(bodyOf(await forwarder.forward(request('dc2', { method: 'PUT', path: '/v1/kv/x' }), inSeconds(5), ['dc1'], 'dc1'))).toBe('"PUT"');
    expect(http.seen.map((seen) => seen.url)).toEqual(['/v1/kv/x']);
  });

  test('tries the next catalog when one cannot be reached', async () => {
    const catalog = await fakeForwardedHttp(answersWith('second'));
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [await deadAddress(), catalog.address] });
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1'))).toBe('"second"');
  });

  test('a read lost on its way goes to the next catalog; a write is not sent again (it may have been applied)', async () => {
    // The first catalog takes the request and goes away before it answers.
    const vanishing = await fakeForwardedHttp(() => void setImmediate(() => vanishing.server.shutdown()) as undefined);
    const other = await fakeForwardedHttp(answersWith('other'));
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [vanishing.address, other.address] });
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), ['dc1'], 'dc1'))).toBe('"other"');

    const vanishingAgain = await fakeForwardedHttp(() => void setImmediate(() => vanishingAgain.server.shutdown()) as undefined);
    const untouched = await fakeForwardedHttp(answersWith('untouched'));
    const writer = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [vanishingAgain.address, untouched.address] });
    const err = await failure(writer.forward(request('dc2', { method: 'PUT', path: '/v1/kv/x' }), inSeconds(5), ['dc1'], 'dc1'));
    expect(err.code).toBe(GrpcStatus.UNKNOWN);
    expect(err.message).toMatch(/may or may not have been applied/);
    expect(untouched.seen).toEqual([]);
  });

  test('an HTTP request that does not decode (routers pass it on unread) is refused as undecodable, tried nowhere else, never run', async () => {
    const first = await fakeForwardedHttp(answersWith('first'));
    const second = await fakeForwardedHttp(answersWith('second'));
    const http = await fakeCatalog();
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [first.address, second.address], catalogAddrs: [http.address] });
    // Method and path read fine; a headers entry claims a 5-byte key and holds 1 byte.
    const broken = (method: string) => Buffer.concat([Buffer.from([0x0a, method.length]), Buffer.from(method), Buffer.from([0x12, 0x02]), Buffer.from('/x'), Buffer.from([0x22, 0x03, 0x0a, 0x05, 0x61])]);
    const forwardRequest = (method: string) => Buffer.concat([Buffer.from([0x0a, 0x03]), Buffer.from('dc2'), Buffer.from([0x12, broken(method).length]), broken(method)]);
    for (const method of ['GET', 'PUT']) {
      const envelope = readForwardRequest(forwardRequest(method));
      expect([envelope.datacenter, envelope.http?.method, envelope.http?.path]).toEqual(['dc2', method, '/x']);
      const err = await failure(forwarder.forwardEncoded(envelope, inSeconds(5), ['dc1'], 'dc1'));
      expect([err.code, err.message]).toEqual([GrpcStatus.INTERNAL, 'Error deserializing request']);
    }
    expect([first.seen, second.seen, http.seen]).toEqual([[], [], []]);

    // Over the catalogs' HTTP API (no gRPC port), the router decodes it itself, with the same answer.
    const overHttp = newForwarder({ datacenter: 'dc2', catalogAddrs: [http.address] });
    const err = await failure(overHttp.forwardEncoded(readForwardRequest(forwardRequest('GET')), inSeconds(5), ['dc1'], 'dc1'));
    expect([err.code, err.message]).toEqual([GrpcStatus.INTERNAL, 'Error deserializing request']);
    expect(http.seen).toEqual([]);
  });
});

describe('forwarding to another datacenter', () => {
  test('without a route: NOT_FOUND, No path to datacenter', async () => {
    const forwarder = newForwarder({ datacenter: 'dc1' });
    const err = await failure(forwarder.forward(request('dc9'), inSeconds(5), [], undefined));
    expect([err.code, err.message]).toEqual([GrpcStatus.NOT_FOUND, NO_PATH]);
  });

  test('when every router of the next datacenter has failed: UNAVAILABLE, no server reachable', async () => {
    const router = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', router.address, 'dc2', { alive: false })])] });
    const err = await failure(forwarder.forward(request('dc2'), inSeconds(5), [], undefined));
    expect([err.code, err.message]).toEqual([GrpcStatus.UNAVAILABLE, NO_SERVER]);
    expect(router.calls).toHaveLength(0);
  });

  test('when no router of the next datacenter can be reached: UNAVAILABLE, no server reachable', async () => {
    const hops = [hop('r1.dc2', await deadAddress(), 'dc2'), hop('r2.dc2', await deadAddress(), 'dc2')];
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], hops)] });
    const err = await failure(forwarder.forward(request('dc2'), inSeconds(5), [], undefined));
    expect([err.code, err.message]).toEqual([GrpcStatus.UNAVAILABLE, NO_SERVER]);
  });

  test('sends the request, the datacenters it left and the deadline to the next router', async () => {
    const router = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', router.address, 'dc2')])] });
    const deadline = inSeconds(5);
    const answer = await forwarder.forward(request('dc2', { rawQuery: 'index=7' }), deadline, [], undefined);

    expect(bodyOf(answer)).toBe('"dc2"');
    expect(answer.path).toEqual(['dc2']);
    const [call] = router.calls;
    expect(call.request.forward).toEqual(request('dc2', { rawQuery: 'index=7' }));
    expect(call.request.visited).toEqual(['dc1']);
    expect(call.metadata.get(DATACENTER_METADATA)).toEqual(['dc1']);
    expect(Math.abs(new Date(call.getDeadline() as Date).getTime() - deadline)).toBeLessThan(1_000);
  });

  test('end to end: a real router of dc2 serves it from its catalog', async () => {
    const catalog = await fakeCatalog((_, res) => (res.writeHead(200, { 'X-Consul-Index': '9' }), res.end('["web"]')));
    const dc2 = await realRouter('dc2', [catalog.address]);
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', dc2.address, 'dc2')])] });
    const answer = await forwarder.forward(request('dc2'), inSeconds(5), [], undefined);
    expect(answer).toEqual({ path: ['dc2'], response: { status: 200, headers: { 'x-consul-index': '9' }, body: Buffer.from('["web"]') } });
  });

  test('fails over: the first router cannot be reached, the second answers', async () => {
    const catalog = await fakeCatalog((_, res) => res.end('"from r2"'));
    const r2 = await realRouter('dc2', [catalog.address]);
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', await deadAddress(), 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    const answer = await forwarder.forward(request('dc2'), inSeconds(5), [], undefined);
    expect(bodyOf(answer)).toBe('"from r2"');
  });

  test('an answer is final: an error a router answers with is not retried on the next', async () => {
    // r1 of dc2 is up but no catalog of dc2 is: r1 answers, and a write may have applied.
    const r1 = await realRouter('dc2', [await deadAddress()]);
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });

    const err = await failure(forwarder.forward(request('dc2', { method: 'PUT', path: '/v1/kv/x' }), inSeconds(5), [], undefined));
    expect(err.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(err.message).toMatch(new RegExp(`^${NO_SERVER}: no catalog of dc2 answered`));
    expect(r2.calls).toHaveLength(0);
  });

  test("a router's answer that does not decode fails its call, never the process: a read goes to the next router, a write is not sent again", async () => {
    // A FederationServiceForwardResponse whose field 1 says 5 bytes follow, and none do.
    const truncated = (_call: unknown, callback: sendUnaryData<Buffer>) => callback(null, Buffer.from([0x0a, 0x05]));
    const r1 = await serveFederation({ forward: truncated }, FEDERATION_SERVICE);
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const routes = [route(['dc2'], [hop('r1.dc2', r1, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])];

    expect(bodyOf(await newForwarder({ datacenter: 'dc1', routes }).forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"dc2"');
    expect(r2.calls).toHaveLength(1);

    const err = await failure(newForwarder({ datacenter: 'dc1', routes }).forward(request('dc2', { method: 'PUT', path: '/v1/kv/x' }), inSeconds(5), [], undefined));
    expect(err.code).toBe(GrpcStatus.UNKNOWN);
    expect(err.message).toMatch(/^rpc error: the request to r1\.dc2 failed after it was sent and may or may not have been applied: router r1\.dc2 sent an answer that is not a FederationServiceForwardResponse/);
    expect(r2.calls).toHaveLength(1);
  });

  test('a router declared failed mid-call: a read in flight to it moves on to the next at once', async () => {
    // r1 takes the request and never answers, as a router behind a cut link.
    const r1 = await scriptedRouter(() => undefined);
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    const pending = forwarder.forward(request('dc2'), inSeconds(30), [], undefined);
    while (r1.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    forwarder.routerFailed(r1.address);
    await pending;
    expect(r2.calls).toHaveLength(1);
  });

  test('a caller that goes away cancels the call down the route; the router stays online and no other is tried', async () => {
    const cancelled: string[] = [];
    const r1 = await scriptedRouter((call) => void call.on('cancelled', () => cancelled.push('r1')));
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    const caller = new AbortController();
    const pending = failure(forwarder.forward(request('dc2'), inSeconds(30), [], undefined, caller.signal));
    while (r1.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    caller.abort();
    const err = await pending;
    expect(err.code).toBe(GrpcStatus.CANCELLED);
    while (cancelled.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(cancelled).toEqual(['r1']);
    expect(r2.calls).toHaveLength(0);
    // Still first in line: a cancellation says nothing about the router.
    expect(forwarder.tryOrder([hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')]).map((h) => h.name)).toEqual(['r1.dc2', 'r2.dc2']);
  });

  test('a write that may have reached a router is not sent again to the next', async () => {
    await expectNotSentAgain(request('dc2', { method: 'PUT', path: '/v1/kv/x' }));
  });

  test('a write that never reached a router (no connection) goes to the next', async () => {
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', await deadAddress(), 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    await forwarder.forward(request('dc2', { method: 'PUT', path: '/v1/kv/x' }), inSeconds(5), [], undefined);
    expect(r2.calls).toHaveLength(1);
  });

  test('an answered error does not mark the router offline', async () => {
    const r1 = await scriptedRouter((_, callback) => callback(forwardFailure(new ForwardError('Unknown service "web"', GrpcStatus.NOT_FOUND))));
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    for (let i = 0; i < 2; i++) {
      const err = await failure(forwarder.forward(request('dc2'), inSeconds(5), [], undefined));
      expect([err.code, err.message]).toEqual([GrpcStatus.NOT_FOUND, 'Unknown service "web"']);
    }
    expect([r1.calls.length, r2.calls.length]).toEqual([2, 0]);
  });

  test('a router that failed is tried last on the next requests, but still tried', async () => {
    //   dc1 ──► r1.dc2  (fails without answering: UNAVAILABLE, no answer trailer)
    //      └──► r2.dc2  (answers)
    const unreachable: ForwardHandler = (_, callback) => callback({ code: GrpcStatus.UNAVAILABLE, details: 'connection reset' });
    const r1 = await scriptedRouter(unreachable);
    const r2 = await scriptedRouter((_, callback) => callback(null, answered('r2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });

    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"r2"');
    expect([r1.calls.length, r2.calls.length]).toEqual([1, 1]);

    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"r2"');
    expect([r1.calls.length, r2.calls.length]).toEqual([1, 2]);

    // r2 goes away and r1 comes back: r1, though marked, is still tried after r2.
    r2.handler = unreachable;
    r1.handler = (_, callback) => callback(null, answered('r1'));
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"r1"');
    expect([r1.calls.length, r2.calls.length]).toEqual([2, 3]);

    // r1 answered, so it is no longer marked; r2 now is.
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"r1"');
    expect([r1.calls.length, r2.calls.length]).toEqual([3, 3]);
  });

  test("routers are tried in the rebalancer's order (Consul's rebalancing), the failed ones still last", async () => {
    const r1 = await scriptedRouter((_, callback) => callback(null, answered('r1')));
    const r2 = await scriptedRouter((_, callback) => callback({ code: GrpcStatus.UNAVAILABLE, details: 'connection reset' }));
    const forwarder = newForwarder({
      datacenter: 'dc1',
      routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])],
      rebalancer: { order: (hops) => [...hops].reverse() },
    });
    // r2 first, as the rebalancer has it; it fails, so r1 answers.
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"r1"');
    expect([r1.calls.length, r2.calls.length]).toEqual([1, 1]);
    // r2 is offline for a while: first in the rebalancer's order, but tried after r1.
    expect(bodyOf(await forwarder.forward(request('dc2'), inSeconds(5), [], undefined))).toBe('"r1"');
    expect([r1.calls.length, r2.calls.length]).toEqual([2, 1]);
  });

  test('tries no router once the deadline has passed', async () => {
    const router = await scriptedRouter((_, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', router.address, 'dc2')])] });
    const err = await failure(forwarder.forward(request('dc2'), Date.now() - 1, [], undefined));
    expect([err.code, err.message]).toEqual([GrpcStatus.UNAVAILABLE, NO_SERVER]);
    expect(router.calls).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Transit (beyond Consul): dc2 between dc1 and dc3
//
//   dc1 ──area-dc1── dc2 ──area-dc3── dc3 ── dc4
//
// dc2's router receives a request from dc1 for dc4, whose route leaves through area-dc3.

describe('passing a request through (transit)', () => {
  async function transitRouter(more: { inbound?: Area | null; outbound?: Area; path?: string[] } = {}) {
    const next = await scriptedRouter((_, callback) => callback(null, { forward: { response: { status: 200, headers: {}, body: Buffer.from('"dc4"') }, path: ['dc3', 'dc4'] } }));
    const outbound = more.outbound ?? area('area-dc3', 'dc3', true);
    const inbound = more.inbound === undefined ? area('area-dc1', 'dc1', true) : more.inbound;
    const forwarder = newForwarder({
      datacenter: 'dc2',
      routes: [route(more.path ?? ['dc3', 'dc4'], [hop('r1.dc3', next.address, 'dc3', { areaId: outbound.id })], outbound.id)],
      areas: [...(inbound === null ? [] : [inbound]), outbound],
    });
    return { forwarder, next };
  }

  test('end to end: dc1 → dc2 (transit) → dc3, each a real router, dc3 serving from its catalog', async () => {
    const catalog = await fakeCatalog((_, res) => res.end('"dc3"'));
    const dc1 = await transitChain({ catalogAddrs: [catalog.address] });

    const answer = await dc1.forward(request('dc3'), inSeconds(5), [], undefined);
    expect(bodyOf(answer)).toBe('"dc3"');
    expect(answer.path).toEqual(['dc2', 'dc3']);
  });

  test('passes it on between two transit areas, adding itself to the datacenters left and to the path', async () => {
    const { forwarder, next } = await transitRouter();
    const answer = await forwarder.forward(request('dc4'), inSeconds(5), ['dc1'], 'dc1');
    expect(next.calls.map((call) => call.request.visited)).toEqual([['dc1', 'dc2']]);
    expect(bodyOf(answer)).toBe('"dc4"');
    // ForwardResponse.path: "from the first remote one to the one that answered".
    expect(answer.path).toEqual(['dc2', 'dc3', 'dc4']);
  });

  test.each([
    ['the area it came in by is not a transit area', { inbound: area('area-dc1', 'dc1', false) }],
    ['it came in by no area (the WAN)', { inbound: null }],
    ['the area it would leave by is not a transit area', { outbound: area('area-dc3', 'dc3', false) }],
  ])('refuses with No path to datacenter when %s', async (_, more) => {
    const { forwarder, next } = await transitRouter(more);
    const err = await failure(forwarder.forward(request('dc4'), inSeconds(5), ['dc1'], 'dc1'));
    expect([err.code, err.message]).toEqual([GrpcStatus.NOT_FOUND, NO_PATH]);
    expect(next.calls).toHaveLength(0);
  });

  test('refuses to leave by the WAN', async () => {
    const next = await scriptedRouter((_, callback) => callback(null, answered('dc4')));
    const forwarder = newForwarder({ datacenter: 'dc2', routes: [route(['dc4'], [hop('r1.dc4', next.address, 'dc4')], 'wan')], areas: [area('area-dc1', 'dc1', true)] });
    const err = await failure(forwarder.forward(request('dc4'), inSeconds(5), ['dc1'], 'dc1'));
    expect(err.message).toBe(NO_PATH);
    expect(next.calls).toHaveLength(0);
  });

  test('refuses a loop: a request that already left this datacenter', async () => {
    const { forwarder, next } = await transitRouter();
    const err = await failure(forwarder.forward(request('dc4'), inSeconds(5), ['dc2', 'dc1'], 'dc1'));
    expect(err.message).toBe(NO_PATH);
    expect(next.calls).toHaveLength(0);
  });

  test('refuses to send it back through the datacenter it came from', async () => {
    const { forwarder, next } = await transitRouter({ path: ['dc3', 'dc1', 'dc4'] });
    const err = await failure(forwarder.forward(request('dc4'), inSeconds(5), ['dc1'], 'dc1'));
    expect(err.message).toBe(NO_PATH);
    expect(next.calls).toHaveLength(0);
  });

  test(`crosses at most MAX_HOPS (${MAX_HOPS}) datacenters, the target included`, async () => {
    // Left so far: the origin and the transit datacenters before dc1; the route adds dc3, dc4.
    const before = (n: number) => [...Array.from({ length: n }, (_, i) => `dc${100 + i}`), 'dc1'];
    const { forwarder, next } = await transitRouter();

    await forwarder.forward(request('dc4'), inSeconds(5), before(MAX_HOPS - 3), 'dc1');
    expect(next.calls).toHaveLength(1);

    const err = await failure(forwarder.forward(request('dc4'), inSeconds(5), before(MAX_HOPS - 2), 'dc1'));
    expect(err.message).toBe(NO_PATH);
    expect(next.calls).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// gRPC calls (operator.proto GrpcRequest): the same path as HTTP, served from the catalog's 8502
//
//   dc1 ──► r1.dc2 ──► dc2's catalog, gRPC: the request's bytes in, its status, trailers and
//                      answer's bytes out

interface SeenGrpcCall {
  readonly path: string;
  readonly request: unknown;
  readonly metadata: Metadata;
  readonly deadlineMs: number;
}

/** How a scripted catalog ends a call: an answer, a status, or never (undefined). */
type CatalogScript = (request: unknown) => { answer: unknown } | { code: GrpcStatus; details: string; trailers?: Record<string, string> } | undefined;

/** A catalog's gRPC API (Catalog and KV services) on an ephemeral port, scripted by method path; every call is kept. */
async function fakeCatalogGrpc(script: Record<string, CatalogScript>): Promise<{ address: string; seen: SeenGrpcCall[] }> {
  const seen: SeenGrpcCall[] = [];
  const server = new GrpcServer();
  for (const definition of [CatalogServiceService, KVServiceService]) {
    const implementation: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(definition)) {
      implementation[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const deadline = call.getDeadline();
        seen.push({ path: method.path, request: call.request, metadata: call.metadata, deadlineMs: deadline instanceof Date ? deadline.getTime() : Number(deadline) });
        const outcome = (script[method.path] ?? (() => ({ code: GrpcStatus.UNIMPLEMENTED, details: 'not scripted' })))(call.request);
        if (outcome === undefined) return;
        if ('answer' in outcome) return callback(null, outcome.answer);
        const trailers = new Metadata();
        for (const [key, value] of Object.entries(outcome.trailers ?? {})) trailers.set(key, value);
        callback({ code: outcome.code, details: outcome.details, metadata: trailers });
      };
    }
    server.addService(definition, implementation as never);
  }
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))));
  cleanups.push(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, seen };
}

const LIST_NODES = '/consulate.catalog.v1.CatalogService/ListNodes';
const KV_GET = '/consulate.catalog.v1.KVService/Get';
const KV_PUT = '/consulate.catalog.v1.KVService/Put';
const dc2Node = { id: '', name: 'only-in-dc2', address: '10.0.2.5', datacenter: 'dc2', taggedAddresses: {}, meta: {}, createIndex: 7n, modifyIndex: 7n };
const listNodesRequest: ListNodesRequest = { query: { consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: undefined, datacenter: 'dc2' }, nodeMeta: {} };
const listsDc2Node: CatalogScript = () => ({ answer: { nodes: [dc2Node], meta: undefined } });

/** A gRPC call for `datacenter`, as a catalog hands it to its router. */
function grpcRequest(datacenter: string, grpc: Partial<GrpcRequest> = {}): ForwardRequest {
  return { datacenter, grpc: { method: LIST_NODES, message: Buffer.from(ListNodesRequest.encode(listNodesRequest).finish()), readOnly: true, ...grpc } };
}

const putRequest = (): Partial<GrpcRequest> => ({ method: KV_PUT, message: Buffer.from(PutRequest.encode({ key: 'k', value: Buffer.from('v'), flags: 0n, condition: undefined, datacenter: 'dc2' }).finish()), readOnly: false });

describe('serving a gRPC call for this datacenter', () => {
  test("calls the catalog's gRPC API with the request's bytes and hands back its answer's bytes", async () => {
    const catalog = await fakeCatalogGrpc({ [LIST_NODES]: listsDc2Node });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [catalog.address] });

    const answer = await forwarder.forward(grpcRequest('dc2'), inSeconds(5), ['dc1'], 'dc1');

    expect(answer.path).toEqual(['dc2']);
    expect(answer.response).toBeUndefined();
    expect({ ...answer.grpc, message: undefined }).toEqual({ code: GrpcStatus.OK, details: '', message: undefined, trailers: {} });
    expect(ListNodesResponse.decode(answer.grpc!.message).nodes).toEqual([dc2Node]);
    expect(catalog.seen.map((call) => [call.path, call.request])).toEqual([[LIST_NODES, listNodesRequest]]);
  });

  test("the catalog's error status is its answer, not the router's: code, details, and its consulate-* trailers", async () => {
    const catalog = await fakeCatalogGrpc({ [KV_GET]: () => ({ code: GrpcStatus.NOT_FOUND, details: 'key "x" doesn\'t exist', trailers: { 'consulate-index': '42', 'x-other': 'no' } }) });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [catalog.address] });
    const get = Buffer.from(GetRequest.encode({ query: undefined, key: 'x', recurse: false, keys: false, separator: '' }).finish());

    const answer = await forwarder.forward(grpcRequest('dc2', { method: KV_GET, message: get }), inSeconds(5), ['dc1'], 'dc1');

    expect(answer.grpc).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'key "x" doesn\'t exist', message: Buffer.alloc(0), trailers: { 'consulate-index': '42' } });
  });

  test('gives the catalog the deadline less a margin for the way back: 1 s, or a tenth of what is left', async () => {
    const catalog = await fakeCatalogGrpc({ [LIST_NODES]: listsDc2Node });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [catalog.address] });
    const long = inSeconds(30);
    await forwarder.forward(grpcRequest('dc2'), long, ['dc1'], 'dc1');
    const short = inSeconds(2);
    await forwarder.forward(grpcRequest('dc2'), short, ['dc1'], 'dc1');
    const [first, second] = catalog.seen.map((call) => call.deadlineMs);
    expect(Math.abs(first - (long - GRPC_RETURN_MARGIN_MS))).toBeLessThan(150);
    expect(Math.abs(second - (short - 200))).toBeLessThan(150);
  });

  test('carries the active trace to the catalog in the gRPC metadata', async () => {
    const contextManager = new AsyncLocalStorageContextManager().enable();
    otelContext.setGlobalContextManager(contextManager);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    cleanups.push(() => (propagation.disable(), otelContext.disable()));
    const catalog = await fakeCatalogGrpc({ [LIST_NODES]: listsDc2Node });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [catalog.address] });

    const span = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
    await otelContext.with(trace.setSpanContext(ROOT_CONTEXT, span), () => forwarder.forward(grpcRequest('dc2'), inSeconds(5), ['dc1'], 'dc1'));
    expect(String(catalog.seen[0].metadata.get('traceparent')[0])).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
  });

  test('tries the next catalog when one cannot be reached', async () => {
    const catalog = await fakeCatalogGrpc({ [LIST_NODES]: listsDc2Node });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [await deadAddress(), catalog.address] });
    const answer = await forwarder.forward(grpcRequest('dc2'), inSeconds(5), ['dc1'], 'dc1');
    expect(ListNodesResponse.decode(answer.grpc!.message).nodes).toEqual([dc2Node]);
  });

  test("answers UNAVAILABLE with Consul's text when no catalog can be reached, or none is configured", async () => {
    const [a, b] = [await deadAddress(), await deadAddress()];
    const unreachable = await failure(newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [a, b] }).forward(grpcRequest('dc2'), inSeconds(5), ['dc1'], 'dc1'));
    expect(unreachable.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(unreachable.message).toMatch(new RegExp(`^${NO_SERVER}: no catalog of dc2 answered \\(${a}: .*; ${b}: .*\\)$`));
    const none = await failure(newForwarder({ datacenter: 'dc2', catalogAddrs: ['127.0.0.1:8500'] }).forward(grpcRequest('dc2'), inSeconds(5), ['dc1'], 'dc1'));
    expect([none.code, none.message]).toEqual([GrpcStatus.UNAVAILABLE, 'router has no catalog gRPC API to ask in dc2 (-catalog-grpc-addr)']);
  });

  test('a catalog that takes the call and never answers: its DEADLINE_EXCEEDED is the answer, not tried elsewhere (it may have applied)', async () => {
    const silent = await fakeCatalogGrpc({ [KV_PUT]: () => undefined });
    const other = await fakeCatalogGrpc({ [KV_PUT]: () => ({ answer: { succeeded: true, index: 1n } }) });
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [silent.address, other.address] });
    const answer = await forwarder.forward(grpcRequest('dc2', putRequest()), Date.now() + 1_000, ['dc1'], 'dc1');
    expect(answer.grpc?.code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(other.seen).toHaveLength(0);
  });
});

describe('forwarding a gRPC call to another datacenter', () => {
  test.each([
    ['a service of another role', '/consulate.consensus.v1.KVService/Range'],
    ['gRPC health checking', '/grpc.health.v1.Health/Check'],
    ['server reflection', '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'],
    ['a watch (a server stream)', '/consulate.catalog.v1.KVService/WatchPrefix'],
    ['the other watch', '/consulate.catalog.v1.HealthService/WatchServiceHealth'],
    ['a path without its leading slash', 'consulate.catalog.v1.KVService/Get'],
    ['a path with more in it', '/consulate.catalog.v1.KVService/Get/../../x'],
  ])('refuses %s with INVALID_ARGUMENT before it travels', async (_, method) => {
    const router = await scriptedRouter((_call, callback) => callback(null, answered('dc2')));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', router.address, 'dc2')])] });
    const err = await failure(forwarder.forward(grpcRequest('dc2', { method }), inSeconds(5), [], undefined));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err.message).toMatch(/^gRPC method ".*" (is not forwarded: only the unary methods of consulate\.catalog\.v1\.CatalogService, consulate\.catalog\.v1\.HealthService, consulate\.catalog\.v1\.KVService, consulate\.catalog\.v1\.SessionService, consulate\.catalog\.v1\.EventService cross datacenters|streams: forward watches with ForwardWatch)$/);
    expect(router.calls).toHaveLength(0);
  });

  test('refuses a request that is both HTTP and gRPC, or neither', async () => {
    const forwarder = newForwarder({ datacenter: 'dc1' });
    const both = await failure(forwarder.forward({ ...grpcRequest('dc2'), request: request('dc2').request }, inSeconds(5), [], undefined));
    expect([both.code, both.message]).toEqual([GrpcStatus.INVALID_ARGUMENT, 'a forwarded request is an HTTP request or a gRPC call, not both']);
    const neither = await failure(forwarder.forward({ datacenter: 'dc2' }, inSeconds(5), [], undefined));
    expect(neither.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  });

  test('a serving router refuses one too, whoever sent it', async () => {
    const catalog = await fakeCatalogGrpc({});
    const forwarder = newForwarder({ datacenter: 'dc2', catalogGrpcAddrs: [catalog.address] });
    const err = await failure(forwarder.forward(grpcRequest('dc2', { method: '/grpc.health.v1.Health/Check' }), inSeconds(5), ['dc1'], 'dc1'));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(catalog.seen).toHaveLength(0);
  });

  test('end to end: a real router of dc2 serves it from its catalog; the answer comes back whole', async () => {
    const catalog = await fakeCatalogGrpc({ [LIST_NODES]: listsDc2Node });
    const dc2 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', dc2.address, 'dc2')])] });
    const answer = await forwarder.forward(grpcRequest('dc2'), inSeconds(5), [], undefined);
    expect(answer.path).toEqual(['dc2']);
    expect(answer.grpc?.code).toBe(GrpcStatus.OK);
    expect(ListNodesResponse.decode(answer.grpc!.message).nodes).toEqual([dc2Node]);
  });

  test("end to end through transit: dc1 → dc2 → dc3's catalog, the catalog's error status intact", async () => {
    const catalog = await fakeCatalogGrpc({ [KV_GET]: () => ({ code: GrpcStatus.NOT_FOUND, details: 'key "x" doesn\'t exist', trailers: { 'consulate-index': '9' } }) });
    const dc1 = await transitChain({ catalogGrpcAddrs: [catalog.address] });
    const get = Buffer.from(GetRequest.encode({ query: undefined, key: 'x', recurse: false, keys: false, separator: '' }).finish());

    const answer = await dc1.forward(grpcRequest('dc3', { method: KV_GET, message: get }), inSeconds(5), [], undefined);
    expect(answer.path).toEqual(['dc2', 'dc3']);
    expect(answer.grpc).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'key "x" doesn\'t exist', message: Buffer.alloc(0), trailers: { 'consulate-index': '9' } });
  });

  test('a read-only call in flight to a router declared failed moves on to the next', async () => {
    const r1 = await scriptedRouter(() => undefined);
    const r2 = await scriptedRouter((_, callback) => callback(null, { forward: { grpc: { code: GrpcStatus.OK, details: '', message: Buffer.from('r2'), trailers: {} }, path: ['dc2'] } }));
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    const pending = forwarder.forward(grpcRequest('dc2'), inSeconds(30), [], undefined);
    while (r1.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    forwarder.routerFailed(r1.address);
    expect(Buffer.from((await pending).grpc!.message).toString()).toBe('r2');
    expect(r2.calls.map((call) => call.request.forward?.grpc?.method)).toEqual([LIST_NODES]);
  });

  test('a call that is not read-only, once it may have reached a router, is not sent again', async () => {
    await expectNotSentAgain(grpcRequest('dc2', putRequest()));
  });
});

// ---------------------------------------------------------------------------------------------
// Watches (ForwardWatch, lib/watch-relay.ts): the same route, a stream at every hop
//
//   dc1 ──► r1.dc2 ──► dc2's catalog, WatchPrefix: each message as the catalog encoded it, then
//                      its status and trailers, marked as the router's answer

const WATCH_PREFIX = '/consulate.catalog.v1.KVService/WatchPrefix';

type WatchCall = ServerWritableStream<WatchPrefixRequest, WatchPrefixResponse>;

/** A catalog's gRPC API serving WatchPrefix with `serve`; every watch it got is kept. */
async function fakeCatalogWatch(serve: (call: WatchCall) => void): Promise<{ address: string; calls: WatchCall[] }> {
  const calls: WatchCall[] = [];
  const server = new GrpcServer();
  server.addService(KVServiceService, {
    watchPrefix: (call: WatchCall) => {
      calls.push(call);
      serve(call);
    },
  } as never);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))));
  cleanups.push(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, calls };
}

const watchAt = (index: bigint): WatchPrefixResponse => ({ entries: [{ key: `cfg/${index}`, value: Buffer.from('v'), flags: 0n, session: '', lockIndex: 0n, createIndex: index, modifyIndex: index }], index });

function watchRequest(datacenter: string, method = WATCH_PREFIX): ForwardRequest {
  const message = Buffer.from(WatchPrefixRequest.encode({ prefix: 'cfg/', query: { consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: undefined, datacenter } }).finish());
  return { datacenter, grpc: { method, message, readOnly: true } };
}

/** A sink that keeps what it is given, decoded; `full` makes it report a reader that is behind. */
function collectingSink(): WatchSink & { readonly got: WatchPrefixResponse[]; full: boolean; drain(): void } {
  const drains: (() => void)[] = [];
  const sink = {
    got: [] as WatchPrefixResponse[],
    full: false,
    write(message: Buffer) {
      sink.got.push(WatchPrefixResponse.decode(message));
      return !sink.full;
    },
    once(_event: 'drain', listener: () => void) {
      drains.push(listener);
    },
    drain() {
      sink.full = false;
      for (const listener of drains.splice(0)) listener();
    },
  };
  return sink;
}

async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('forwarding a watch (ForwardWatch)', () => {
  test("end to end: dc2's catalog's messages reach dc1 in order, as encoded there, then its status and trailers", async () => {
    const catalog = await fakeCatalogWatch((call) => {
      call.write(watchAt(7n));
      call.write(watchAt(9n));
      const trailers = new Metadata();
      trailers.set('consulate-index', '9');
      trailers.set('x-other', 'no');
      call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'this catalog is shutting down: watch again through another catalog', metadata: trailers });
    });
    const dc2 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', dc2.address, 'dc2')])] });
    const sink = collectingSink();

    const end = await forwarder.forwardWatch(watchRequest('dc2'), [], undefined, sink);

    expect(sink.got.map((message) => message.index)).toEqual([7n, 9n]);
    expect(sink.got[1]).toEqual(watchAt(9n));
    expect([end.code, end.details, end.messages]).toEqual([GrpcStatus.UNAVAILABLE, 'this catalog is shutting down: watch again through another catalog', 2]);
    expect(end.trailers.get('consulate-index')).toEqual(['9']);
    expect(end.trailers.get('x-other')).toEqual([]);
    expect(end.trailers.get(ANSWER_TRAILER)).toEqual(['1']);
    expect(catalog.calls.map((call) => call.request.prefix)).toEqual(['cfg/']);
  });

  test('fails over while the watch has not started: the first router cannot be reached, the second opens it', async () => {
    const catalog = await fakeCatalogWatch((call) => (call.write(watchAt(3n)), call.end()));
    const r2 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', await deadAddress(), 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    const sink = collectingSink();
    const end = await forwarder.forwardWatch(watchRequest('dc2'), [], undefined, sink);
    expect([end.code, end.messages]).toEqual([GrpcStatus.OK, 1]);
    expect(sink.got.map((message) => message.index)).toEqual([3n]);
  });

  test('a watch that breaks after its first message is not opened again: UNAVAILABLE, watch again from the last index', async () => {
    const catalog = await fakeCatalogWatch((call) => call.write(watchAt(3n)));
    const r1 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const r2 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', r1.address, 'dc2'), hop('r2.dc2', r2.address, 'dc2')])] });
    const sink = collectingSink();
    const pending = failure(forwarder.forwardWatch(watchRequest('dc2'), [], undefined, sink));
    await until(() => sink.got.length === 1);
    forwarder.routerFailed(r1.address);
    const err = await pending;
    expect(err.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(err.message).toMatch(/^the watch through router r1\.dc2 of dc2 broke \(.*\): watch again from the last index$/);
    expect(catalog.calls).toHaveLength(1);
  });

  test("a caller that goes away cancels the watch down to the remote catalog's stream", async () => {
    const catalog = await fakeCatalogWatch((call) => call.write(watchAt(3n)));
    const dc2 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', dc2.address, 'dc2')])] });
    const sink = collectingSink();
    const caller = new AbortController();
    const pending = failure(forwarder.forwardWatch(watchRequest('dc2'), [], undefined, sink, caller.signal));
    await until(() => sink.got.length === 1);
    let cancelled = false;
    catalog.calls[0].on('cancelled', () => (cancelled = true));
    caller.abort();
    expect((await pending).code).toBe(GrpcStatus.CANCELLED);
    await until(() => cancelled);
  });

  test('a reader that is behind pauses the watch at every hop; draining resumes it, nothing lost', async () => {
    const catalog = await fakeCatalogWatch((call) => {
      for (let index = 1n; index <= 50n; index++) call.write(watchAt(index));
      call.end();
    });
    const dc2 = await realRouter('dc2', [], { catalogGrpcAddrs: [catalog.address] });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', dc2.address, 'dc2')])] });
    const sink = collectingSink();
    sink.full = true;
    const pending = forwarder.forwardWatch(watchRequest('dc2'), [], undefined, sink);
    await until(() => sink.got.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Paused after the first: nothing more was handed over while the reader was behind.
    expect(sink.got).toHaveLength(1);
    sink.drain();
    const end = await pending;
    expect(end.code).toBe(GrpcStatus.OK);
    expect(sink.got.map((message) => message.index)).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i + 1)));
  });

  test('through a transit datacenter: dc1 → dc2 → dc3', async () => {
    const catalog = await fakeCatalogWatch((call) => (call.write(watchAt(5n)), call.end()));
    const dc1 = await transitChain({ catalogGrpcAddrs: [catalog.address] });
    const sink = collectingSink();
    const end = await dc1.forwardWatch(watchRequest('dc3'), [], undefined, sink);
    expect([end.code, sink.got.map((message) => message.index)]).toEqual([GrpcStatus.OK, [5n]]);
  });

  test("a router's refusal further on is the answer: No path to datacenter from dc2, not tried elsewhere", async () => {
    const dc2 = await realRouter('dc2', [], { caller: 'dc1' });
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2', 'dc3'], [hop('r1.dc2', dc2.address, 'dc2')])] });
    const end = await forwarder.forwardWatch(watchRequest('dc3'), [], undefined, collectingSink());
    expect([end.code, end.details, end.messages]).toEqual([GrpcStatus.NOT_FOUND, NO_PATH, 0]);
  });

  test.each([
    ['a unary method', KV_GET],
    ['a method of another service', '/consulate.consensus.v1.WatchService/Watch'],
  ])('refuses %s as a watch with INVALID_ARGUMENT before it travels', async (_, method) => {
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', await deadAddress(), 'dc2')])] });
    const err = await failure(forwarder.forwardWatch(watchRequest('dc2', method), [], undefined, collectingSink()));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err.message).toMatch(/is not a watch/);
  });

  test('without a route: NOT_FOUND, No path to datacenter; no router of dc2 reachable: UNAVAILABLE', async () => {
    const none = await failure(newForwarder({ datacenter: 'dc1' }).forwardWatch(watchRequest('dc2'), [], undefined, collectingSink()));
    expect([none.code, none.message]).toEqual([GrpcStatus.NOT_FOUND, NO_PATH]);
    const forwarder = newForwarder({ datacenter: 'dc1', routes: [route(['dc2'], [hop('r1.dc2', await deadAddress(), 'dc2')])] });
    const dead = await failure(forwarder.forwardWatch(watchRequest('dc2'), [], undefined, collectingSink()));
    expect([dead.code, dead.message]).toEqual([GrpcStatus.UNAVAILABLE, NO_SERVER]);
  });
});
