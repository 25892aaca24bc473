import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { CatalogServiceClient, CatalogServiceServer, CatalogServiceService, protobufFileName } from '../gen/consulate/catalog/v1/catalog';
import { callUnary, createRoleClient } from './grpc-client';
import { RoleGrpcServer } from './grpc-server';
import { checkHealth } from './health-probe';
import { createLogger } from './log';
import { TRACING_OFF, tracing } from './grpc-tracing';
import { Telemetry, setupTelemetry } from './telemetry';

// Our own interceptors, in process: what auto-instrumentation would do, but testable inside jest
// (reference/toolchain.md §B2).
describe('gRPC tracing', () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let server: RoleGrpcServer;
  let client: CatalogServiceClient;
  let behaviour: 'ok' | 'fail' | 'hang' = 'ok';
  let handlerSawSpan: string | undefined;

  beforeAll(async () => {
    telemetry = setupTelemetry({ role: 'catalog', datacenter: 'dc1', node: 'catalog', env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
    // Only Status: the other methods answer UNIMPLEMENTED, which these tests do not call.
    const implementation: Pick<CatalogServiceServer, 'status'> = {
      status(_call, callback) {
        handlerSawSpan = trace.getActiveSpan()?.spanContext().spanId;
        if (behaviour === 'ok') callback(null, { dependencies: [] });
        else if (behaviour === 'fail') callback({ code: GrpcStatus.FAILED_PRECONDITION, details: 'not today' } as ServiceError);
      },
    };
    server = new RoleGrpcServer({
      logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog', level: 'silent' }),
      tracer: telemetry.tracer,
      services: [{ definition: CatalogServiceService, implementation, protoFile: protobufFileName }],
      shutdownGraceMs: 100,
    });
    const address = await server.listen('127.0.0.1', 0);
    server.setServing(true);
    client = createRoleClient(CatalogServiceClient, address, { tracer: telemetry.tracer });
  });

  afterAll(async () => {
    client.close();
    await server.shutdown();
    await telemetry.shutdown();
  });

  beforeEach(() => {
    exporter.reset();
    behaviour = 'ok';
  });

  test('a call makes a CLIENT and a SERVER span in one trace, under the caller, active in the handler', async () => {
    const parent = telemetry.tracer.startSpan('caller');
    await context.with(trace.setSpan(context.active(), parent), () => callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: true }));
    parent.end();
    const spans = exporter.getFinishedSpans();
    const clientSpan = spans.find((span) => span.kind === SpanKind.CLIENT)!;
    const serverSpan = spans.find((span) => span.kind === SpanKind.SERVER)!;
    expect(clientSpan.name).toBe('consulate.catalog.v1.CatalogService/Status');
    expect(serverSpan.name).toBe('consulate.catalog.v1.CatalogService/Status');
    expect(clientSpan.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(serverSpan.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(clientSpan.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(serverSpan.parentSpanContext?.spanId).toBe(clientSpan.spanContext().spanId);
    expect(handlerSawSpan).toBe(serverSpan.spanContext().spanId);
    expect(serverSpan.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'consulate.catalog.v1.CatalogService', 'rpc.method': 'Status', 'rpc.grpc.status_code': 0 });
    expect(serverSpan.resource.attributes).toMatchObject({ 'service.name': 'consulate-catalog', datacenter: 'dc1' });
  });

  test('an error status marks both spans as errors, with the gRPC code', async () => {
    behaviour = 'fail';
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: true })).rejects.toMatchObject({ code: GrpcStatus.FAILED_PRECONDITION });
    for (const span of exporter.getFinishedSpans()) {
      expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'FAILED_PRECONDITION: not today' });
      expect(span.attributes['rpc.grpc.status_code']).toBe(GrpcStatus.FAILED_PRECONDITION);
    }
  });

  test('a call cut by its deadline still ends the server span (CANCELLED)', async () => {
    behaviour = 'hang';
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 100, idempotent: false })).rejects.toMatchObject({ code: GrpcStatus.DEADLINE_EXCEEDED });
    const deadline = Date.now() + 2_000;
    while (!exporter.getFinishedSpans().some((span) => span.kind === SpanKind.SERVER) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const serverSpan = exporter.getFinishedSpans().find((span) => span.kind === SpanKind.SERVER)!;
    expect(serverSpan.attributes['rpc.grpc.status_code']).toBe(GrpcStatus.CANCELLED);
  });

  test('health checks make no spans', async () => {
    expect((await checkHealth(server.address!, 1_000)).answer).toBe('SERVING');
    expect((await checkHealth(server.address!, 1_000, 'consulate.catalog.v1.CatalogService')).answer).toBe('SERVING');
    expect((await checkHealth(server.address!, 1_000, 'no.such.Service')).answer).toBe('SERVICE_UNKNOWN');
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  test('with tracing off (TRACING_OFF), calls make no spans and carry no trace context, whatever provider the process has', async () => {
    expect(tracing(TRACING_OFF)).toBe(false);
    expect(tracing(telemetry.tracer)).toBe(true);
    let traceparent: unknown[] = ['not called'];
    let active: unknown = 'not called';
    const implementation: Pick<CatalogServiceServer, 'status'> = {
      status(call, callback) {
        traceparent = call.metadata.get('traceparent');
        active = trace.getActiveSpan();
        callback(null, { dependencies: [] });
      },
    };
    const off = new RoleGrpcServer({
      logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog', level: 'silent' }),
      tracer: TRACING_OFF,
      services: [{ definition: CatalogServiceService, implementation, protoFile: protobufFileName }],
      shutdownGraceMs: 100,
    });
    const offClient = createRoleClient(CatalogServiceClient, await off.listen('127.0.0.1', 0), { tracer: TRACING_OFF });
    off.setServing(true);
    try {
      // A sampled caller's span is active: a traced client would carry it on.
      const parent = telemetry.tracer.startSpan('caller');
      await context.with(trace.setSpan(context.active(), parent), () => callUnary(offClient.status.bind(offClient), {}, { timeoutMs: 2_000, idempotent: true }));
      parent.end();
      expect(traceparent).toEqual([]);
      expect(active).toBeUndefined();
      expect(TRACING_OFF.startSpan('x').isRecording()).toBe(false);
      expect(exporter.getFinishedSpans().map((span) => span.name)).toEqual(['caller']);
    } finally {
      offClient.close();
      await off.shutdown();
    }
  });
});
