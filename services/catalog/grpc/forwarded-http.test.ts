import { Metadata, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { SpanKind, context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { ForwardedHttpServiceClient, ServeResponse } from '../../gen/consulate/catalog/v1/forwarded';
import { HttpRequest } from '../../gen/consulate/router/v1/operator';
import { eventually } from '../../../test/harness/processes';
import { callUnary, createRoleClient } from '../../lib/grpc-client';
import { RoleGrpcServer } from '../../lib/grpc-server';
import { createLogger } from '../../lib/log';
import { Telemetry, setupTelemetry } from '../../lib/telemetry';
import { CatalogHttpServer, HttpRouter } from '../http/http-server';
import { HttpError } from '../http/http-errors';
import { forwardedHttpService } from './forwarded-http';

// The catalog's two doors to one set of handlers: 8500 (node:http) and ForwardedHttpService on
// 8502, which a router uses for requests from other datacenters. Both must answer the same.
describe('ForwardedHttpService', () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let http: CatalogHttpServer;
  let grpc: RoleGrpcServer;
  let forwarded: ReturnType<typeof forwardedHttpService>;
  let client: ForwardedHttpServiceClient;
  let base: string;
  let waiting: { signal: AbortSignal } | undefined;

  beforeAll(async () => {
    telemetry = setupTelemetry({ role: 'catalog', datacenter: 'dc2', node: 'catalog', env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const logger = createLogger({ role: 'catalog', datacenter: 'dc2', node: 'catalog', level: 'silent' });
    const router = new HttpRouter()
      .on(['GET'], '/v1/catalog/service/:service', async (request) => ({ body: [{ ServiceName: request.params.service, Query: request.rawQuery, Token: request.headers['x-consul-token'] ?? null }], headers: { 'X-Consul-Index': '42' } }))
      .on(['PUT'], '/v1/kv/*key', async (request) => ({ body: (await request.body(8)).length > 0 }))
      .on(['GET'], '/v1/echo-headers', async (request) => ({ body: request.headers }))
      .on(['GET'], '/v1/fail', async () => {
        throw new HttpError(500, 'No cluster leader');
      })
      .on(['GET'], '/v1/wait', (request) => {
        waiting = { signal: request.signal() };
        return new Promise((resolve) => waiting!.signal.addEventListener('abort', () => resolve({ body: 'gone' }), { once: true }));
      });
    http = new CatalogHttpServer({ router, logger, tracer: telemetry.tracer });
    base = `http://${await http.listen('127.0.0.1', 0)}`;
    grpc = new RoleGrpcServer({ logger, tracer: telemetry.tracer, services: [(forwarded = forwardedHttpService(http)).service], shutdownGraceMs: 100 });
    const address = await grpc.listen('127.0.0.1', 0);
    grpc.setServing(true);
    client = createRoleClient(ForwardedHttpServiceClient, address, { tracer: telemetry.tracer });
  });

  afterAll(async () => {
    client.close();
    await grpc.shutdown();
    await http.close();
    await telemetry.shutdown();
  });

  beforeEach(() => exporter.reset());

  const serve = (request: Partial<HttpRequest>): Promise<ServeResponse> =>
    callUnary(client.serve.bind(client), { request: { method: 'GET', path: '/', rawQuery: '', headers: {}, body: Buffer.alloc(0), ...request } }, { timeoutMs: 5_000, idempotent: false });

  test.each<[string, Partial<HttpRequest>, RequestInit & { url: string }]>([
    ['a read with a query and a header', { path: '/v1/catalog/service/web', rawQuery: 'tag=a&pretty', headers: { 'X-Consul-Token': 't' } }, { url: '/v1/catalog/service/web?tag=a&pretty', headers: { 'X-Consul-Token': 't' } }],
    ['a write with a body', { method: 'PUT', path: '/v1/kv/a/b', body: Buffer.from('value') }, { url: '/v1/kv/a/b', method: 'PUT', body: 'value' }],
    ['a body over the handler\'s limit (413, Consul\'s text)', { method: 'PUT', path: '/v1/kv/a', body: Buffer.alloc(9) }, { url: '/v1/kv/a', method: 'PUT', body: Buffer.alloc(9) }],
    ['an error of the handler', { path: '/v1/fail' }, { url: '/v1/fail' }],
    ['an unknown path (Consul: 404, empty)', { path: '/v1/nowhere' }, { url: '/v1/nowhere' }],
    ['a method the route does not take (405)', { method: 'DELETE', path: '/v1/catalog/service/web' }, { url: '/v1/catalog/service/web', method: 'DELETE' }],
  ])('%s: the same status, bytes and travelling headers as on 8500', async (_name, forwarded, direct) => {
    const { response } = await serve(forwarded);
    const expected = await fetch(`${base}${direct.url}`, direct);
    const body = Buffer.from(await expected.arrayBuffer());
    expect(response?.status).toBe(expected.status);
    expect(Buffer.from(response?.body ?? [])).toEqual(body);
    for (const name of ['content-type', 'x-consul-index']) expect(response?.headers[name]).toBe(expected.headers.get(name) ?? undefined);
    // Only the catalog's own headers go back to another datacenter (lib/forwarded-headers.ts).
    expect(Object.keys(response?.headers ?? {}).filter((name) => !/^(content-type|x-consul-[a-z-]+)$/.test(name))).toEqual([]);
  });

  test('hop-by-hop request headers and cookies from another datacenter never reach the handlers', async () => {
    const { response } = await serve({ path: '/v1/echo-headers', headers: { 'X-Consul-Token': 't', Cookie: 'session=1', Connection: 'close', 'Transfer-Encoding': 'chunked', Accept: 'application/json' } });
    expect(JSON.parse(Buffer.from(response!.body).toString())).toEqual({ 'x-consul-token': 't', accept: 'application/json', 'content-length': '0' });
  });

  test("the request's HTTP span is a child of the router's call, in its trace", async () => {
    const parent = telemetry.tracer.startSpan('router');
    await context.with(trace.setSpan(context.active(), parent), () => serve({ path: '/v1/catalog/service/web' }));
    parent.end();
    const spans = exporter.getFinishedSpans();
    const call = spans.find((span) => span.kind === SpanKind.SERVER && span.name === 'consulate.catalog.v1.ForwardedHttpService/Serve')!;
    const httpSpan = spans.find((span) => span.name === 'HTTP GET /v1/catalog/service/:service')!;
    expect(httpSpan.parentSpanContext?.spanId).toBe(call.spanContext().spanId);
    expect(httpSpan.spanContext().traceId).toBe(parent.spanContext().traceId);
  });

  test("the router's call cancelled (its caller went away): the request's signal aborts, its wait ends", async () => {
    const call = client.serve({ request: { method: 'GET', path: '/v1/wait', rawQuery: '', headers: {}, body: Buffer.alloc(0) } }, new Metadata(), { deadline: Date.now() + 30_000 }, () => undefined);
    await eventually('the request to wait', () => waiting);
    expect(waiting?.signal.aborted).toBe(false);
    call.cancel();
    await eventually('its signal to abort', () => waiting?.signal.aborted);
    expect(waiting?.signal.aborted).toBe(true);
  });

  test('closeAll (the catalog stopping) ends the requests in flight', async () => {
    waiting = undefined;
    const answered = serve({ path: '/v1/wait' });
    await eventually('the request to wait', () => waiting);
    forwarded.closeAll();
    expect(Buffer.from((await answered).response!.body).toString()).toBe('"gone"');
  });

  test('a request without an HTTP request is refused', async () => {
    const err = (await callUnary(client.serve.bind(client), {}, { timeoutMs: 5_000, idempotent: false, metadata: new Metadata() }).catch((e: ServiceError) => e)) as ServiceError;
    expect([err.code, err.details]).toEqual([GrpcStatus.INVALID_ARGUMENT, 'a ServeRequest needs an HTTP request']);
  });
});
