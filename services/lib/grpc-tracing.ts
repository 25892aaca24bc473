/**
 * Spans for every gRPC call we make and serve, with W3C trace context carried in gRPC metadata
 * (`traceparent`, `tracestate`), so one trace follows a request across roles and datacenters.
 *
 * Client side: a grpc-js interceptor starts a CLIENT span as a child of the active context,
 * injects it into the outgoing metadata and ends it with the call's status.
 *
 * Server side: grpc-js server interceptors run outside the handler's async context, so they
 * cannot make a span active for the handler (and for the calls it makes in turn). We wrap each
 * handler instead: extract the caller's context from the metadata, start a SERVER span, run the
 * handler inside it, end the span when the call ends, including by cancellation.
 */
import {
  Context,
  ProxyTracer,
  ROOT_CONTEXT,
  Span,
  SpanKind,
  SpanStatusCode,
  TextMapGetter,
  TextMapSetter,
  Tracer,
  context,
  propagation,
  trace,
} from '@opentelemetry/api';
import {
  Interceptor,
  InterceptingCall,
  Metadata,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  StatusObject,
  UntypedServiceImplementation,
  sendUnaryData,
  status as GrpcStatus,
} from '@grpc/grpc-js';

/**
 * The tracer of a role with tracing off (OTEL_SDK_DISABLED=true, telemetry.ts). Nothing is traced
 * with it and no trace context is carried, so the calls and requests of such a role skip the span
 * plumbing (context extraction, a no-op span, its listeners) rather than run it for nothing:
 * about 10 us of CPU per process on a forwarded read's path. `tracing()` tells it apart. A proxy
 * with no delegate: the API's no-op tracer, whatever provider another part of the process registers.
 */
export const TRACING_OFF: Tracer = new ProxyTracer({ getDelegateTracer: () => undefined }, 'consulate-tracing-off', undefined, undefined);

/** false for TRACING_OFF: make no spans, extract and inject no trace context. */
export function tracing(tracer: Tracer): boolean {
  return tracer !== TRACING_OFF;
}

const metadataSetter: TextMapSetter<Metadata> = {
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

const metadataGetter: TextMapGetter<Metadata> = {
  keys(carrier) {
    return Object.keys(carrier.getMap());
  },
  get(carrier, key) {
    const values = carrier.get(key);
    if (values.length === 0) return undefined;
    return values.map((value) => value.toString());
  },
};

/** "/consulate.catalog.v1.CatalogService/Status" → names and attributes by OTel's RPC conventions. */
function rpcNames(path: string): RpcNames {
  let names = knownRpcNames.get(path);
  if (names === undefined) {
    const [, service = '', method = ''] = path.split('/');
    names = { spanName: `${service}/${method}`, service, method };
    // The paths are our services' methods: a few dozen. The bound only guards the memory.
    if (knownRpcNames.size < MAX_KNOWN_RPC_NAMES) knownRpcNames.set(path, names);
  }
  return names;
}

interface RpcNames {
  readonly spanName: string;
  readonly service: string;
  readonly method: string;
}

const MAX_KNOWN_RPC_NAMES = 1024;
const knownRpcNames = new Map<string, RpcNames>();

function endSpan(span: Span, code: GrpcStatus, details: string): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (code !== GrpcStatus.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: `${GrpcStatus[code]}: ${details}` });
  span.end();
}

/** A CLIENT span for one call to `path`, a child of the active context. */
export interface ClientSpan {
  /** Puts the span's context in the call's outgoing metadata (or a Calls frame's), for the server to continue. */
  inject(metadata: Metadata | Record<string, string>): void;
  end(code: GrpcStatus, details: string): void;
}

export function startClientSpan(tracer: Tracer, path: string, peer: string): ClientSpan {
  const { spanName, service, method } = rpcNames(path);
  const parent = context.active();
  const span = tracer.startSpan(spanName, { kind: SpanKind.CLIENT, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method, 'server.address': peer } }, parent);
  return {
    inject: (metadata) => {
      const carried = trace.setSpan(parent, span);
      if (metadata instanceof Metadata) propagation.inject(carried, metadata, metadataSetter);
      else propagation.inject(carried, metadata);
    },
    end: (code, details) => endSpan(span, code, details),
  };
}

/** A client interceptor that makes a CLIENT span per call and carries its context to the server. */
export function tracingClientInterceptor(tracer: Tracer, peer: string): Interceptor {
  return (options, nextCall) => {
    const span = startClientSpan(tracer, options.method_definition.path, peer);
    return new InterceptingCall(nextCall(options), {
      start(metadata, _listener, next) {
        span.inject(metadata);
        next(metadata, {
          onReceiveStatus(status: StatusObject, nextStatus: (status: StatusObject) => void) {
            span.end(status.code, status.details);
            nextStatus(status);
          },
        });
      },
    });
  };
}

/** The caller's trace context, from a call's metadata. */
export function contextFromMetadata(metadata: Metadata): Context {
  return propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown> | ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;
type AnyHandler = (call: AnyCall, callback?: sendUnaryData<unknown>) => void;

/** Returns `implementation` with every handler wrapped in a SERVER span. */
export function traceServiceImplementation<S extends UntypedServiceImplementation>(tracer: Tracer, definition: ServiceDefinition, implementation: S): S {
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, methodDefinition] of Object.entries(definition)) {
    const handler = implementation[name] as unknown as AnyHandler | undefined;
    if (handler === undefined) continue;
    const { spanName, service, method } = rpcNames(methodDefinition.path);
    const unaryResponse = !methodDefinition.responseStream;
    const wrappedHandler: AnyHandler = (call, callback) => {
      const parent = contextFromMetadata(call.metadata);
      const span = tracer.startSpan(spanName, { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } }, parent);
      let ended = false;
      const finish = (code: GrpcStatus, details: string) => {
        if (ended) return;
        ended = true;
        endSpan(span, code, details);
      };
      (call as ServerUnaryCall<unknown, unknown>).on('cancelled', () => finish(GrpcStatus.CANCELLED, 'cancelled by the client'));
      context.with(trace.setSpan(parent, span), () => {
        if (unaryResponse) {
          handler(call, (err, value, trailer, flags) => {
            const failure = err as { code?: GrpcStatus; details?: string; message?: string } | null;
            finish(failure ? (failure.code ?? GrpcStatus.UNKNOWN) : GrpcStatus.OK, failure ? (failure.details ?? failure.message ?? '') : '');
            callback!(err, value, trailer, flags);
          });
        } else {
          const stream = call as ServerWritableStream<unknown, unknown>;
          stream.on('finish', () => finish(GrpcStatus.OK, ''));
          stream.on('error', (err: { code?: GrpcStatus; message?: string }) => finish(err.code ?? GrpcStatus.UNKNOWN, err.message ?? ''));
          handler(call);
        }
      });
    };
    wrapped[name] = wrappedHandler as never;
  }
  return wrapped as S;
}
