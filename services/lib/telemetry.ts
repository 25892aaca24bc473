/**
 * OpenTelemetry for a role process: a tracer provider whose resource names the role
 * (`service.name` = `consulate-<role>`) and its datacenter, W3C trace-context propagation, and an
 * OTLP exporter configured from the standard variables:
 *
 *   OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   where to send; unset = no export
 *   OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL    grpc | http/protobuf | http/json
 *   OTEL_TRACES_EXPORTER=none                                          turn export off
 *   OTEL_SDK_DISABLED=true                                             turn tracing off entirely
 *   OTEL_BSP_SCHEDULE_DELAY and friends                                batching, read by the SDK
 *
 * A role with nowhere to send spans starts no trace of its own, but records the spans of a trace
 * a caller sampled (W3C `sampled` flag), so a trace started elsewhere stays whole: about 5-10 us of
 * CPU per span saved on every request otherwise. Logs carry the trace IDs either way.
 *
 * With OTEL_SDK_DISABLED=true (the OpenTelemetry spec's switch) the role registers nothing: no
 * spans, no trace IDs in logs, no trace context passed on, and no AsyncLocalStorage, whose async
 * hook runs on every promise: 5-8 % of a consensus server's CPU per put (2026-12-02, c=1).
 *
 * Spans come from our own gRPC and HTTP interceptors (grpc-tracing.ts), not from
 * auto-instrumentation, which does nothing inside jest and needs load-order tricks elsewhere.
 */
import { Tracer, context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, BatchSpanProcessor, ParentBasedSampler, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

import { TRACING_OFF } from './grpc-tracing';
import { VERSION } from './version';

export interface TelemetryOptions {
  readonly role: string;
  readonly datacenter: string;
  readonly node: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Extra processors (tests pass an in-memory one). */
  readonly spanProcessors?: SpanProcessor[];
}

export interface Telemetry {
  readonly tracer: Tracer;
  /** Where spans go, for the startup line: "none" or "<protocol> <endpoint>". */
  readonly exportTarget: string;
  /** Flushes what is batched and stops; call once on shutdown. */
  shutdown(): Promise<void>;
}

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';

export function serviceName(role: string): string {
  return `consulate-${role}`;
}

export function setupTelemetry(options: TelemetryOptions): Telemetry {
  const env = options.env ?? process.env;
  if (sdkDisabled(env)) return { tracer: TRACING_OFF, exportTarget: 'disabled (OTEL_SDK_DISABLED)', shutdown: async () => {} };
  const processors = [...(options.spanProcessors ?? [])];
  const exporter = exporterFromEnv(env);
  if (exporter !== undefined) processors.push(new BatchSpanProcessor(exporter.exporter));

  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: serviceName(options.role),
      [ATTR_SERVICE_VERSION]: VERSION,
      'service.namespace': 'consulate',
      'service.instance.id': `${options.datacenter}/${options.node}`,
      datacenter: options.datacenter,
      'consulate.node': options.node,
    }),
    spanProcessors: processors,
    // Otherwise the SDK's default (OTEL_TRACES_SAMPLER, else parent-based always-on).
    ...(processors.length === 0 ? { sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }) } : {}),
  });
  // Registering sets the global tracer provider, an AsyncLocalStorage context manager (so the
  // active span follows awaits) and the W3C propagator our interceptors inject and extract with.
  provider.register({ contextManager: new AsyncLocalStorageContextManager(), propagator: new W3CTraceContextPropagator() });

  return {
    tracer: provider.getTracer('consulate', VERSION),
    exportTarget: exporter === undefined ? 'none' : `${exporter.protocol} ${exporter.endpoint}`,
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** The spec's boolean: only a case-insensitive "true" disables. */
function sdkDisabled(env: NodeJS.ProcessEnv): boolean {
  return env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
}

function exporterFromEnv(env: NodeJS.ProcessEnv): { exporter: SpanExporter; protocol: OtlpProtocol; endpoint: string } | undefined {
  if ((env.OTEL_TRACES_EXPORTER ?? '').split(',').includes('none')) return undefined;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (endpoint === undefined || endpoint === '') return undefined;
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf') as OtlpProtocol;
  // Each exporter reads the endpoint, headers and timeouts from the same variables itself; we
  // only pick the module, and load only that one.
  switch (protocol) {
    case 'grpc': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc');
      return { exporter: new OTLPTraceExporter(), protocol, endpoint };
    }
    case 'http/json': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
      return { exporter: new OTLPTraceExporter(), protocol, endpoint };
    }
    case 'http/protobuf': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto') as typeof import('@opentelemetry/exporter-trace-otlp-proto');
      return { exporter: new OTLPTraceExporter(), protocol, endpoint };
    }
    default:
      throw new Error(`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="${String(protocol)}" is not supported: use grpc, http/protobuf or http/json`);
  }
}
