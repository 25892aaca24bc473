/**
 * How a role calls another role: every client carries the tracing interceptor, keepalive and a
 * message size limit; every call has a deadline (there is no way to make one without); idempotent
 * calls are retried with capped, fully jittered exponential backoff on the codes that mean "try
 * again" (UNAVAILABLE, RESOURCE_EXHAUSTED), all within the one deadline.
 */
import { CallOptions, ChannelCredentials, ChannelOptions, Client, Metadata, ServiceError, credentials as grpcCredentials, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { Cancellation } from './cancellation';
import { Clock, systemClock } from './clock';
import { GRPC_SERVER_DEFAULTS } from './grpc-limits';
import { tracing, tracingClientInterceptor } from './grpc-tracing';

export interface RoleClientOptions {
  readonly tracer: Tracer;
  /** TLS credentials; plaintext when omitted (in-datacenter traffic in `make up`). */
  readonly credentials?: ChannelCredentials;
  readonly maxMessageBytes?: number;
  readonly channelOptions?: ChannelOptions;
  /** false for chatter that would drown the traces (gossip between routers). Default true. */
  readonly traced?: boolean;
}

type ClientConstructor<C extends Client> = new (address: string, credentials: ChannelCredentials, options?: Partial<ChannelOptions>) => C;

/** One client per address, made on first use by createRoleClient; close() closes every one. */
export class RoleClients<C extends Client> {
  private readonly clients = new Map<string, C>();

  constructor(
    private readonly Ctor: ClientConstructor<C>,
    private readonly options: RoleClientOptions,
  ) {}

  get(address: string): C {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = createRoleClient(this.Ctor, address, this.options);
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

export function createRoleClient<C extends Client>(Ctor: ClientConstructor<C>, address: string, options: RoleClientOptions): C {
  const maxMessageBytes = options.maxMessageBytes ?? GRPC_SERVER_DEFAULTS.maxMessageBytes;
  return new Ctor(address, options.credentials ?? grpcCredentials.createInsecure(), {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.keepalive_time_ms': GRPC_SERVER_DEFAULTS.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': GRPC_SERVER_DEFAULTS.keepaliveTimeoutMs,
    // Our servers refuse pings more often than minPingIntervalMs, so never send them idle.
    'grpc.keepalive_permit_without_calls': 0,
    // channelz statistics cost every call and nobody reads them.
    'grpc.enable_channelz': 0,
    interceptors: options.traced === false || !tracing(options.tracer) ? [] : [tracingClientInterceptor(options.tracer, address)],
    ...options.channelOptions,
  });
}

export interface CallPolicy {
  /** The whole call, retries included, ends by this many milliseconds from now. */
  readonly timeoutMs: number;
  /** Only idempotent calls are retried: a retried write could apply twice. */
  readonly idempotent: boolean;
  /** Attempts at most, the first included. */
  readonly maxAttempts?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
  readonly metadata?: Metadata;
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Aborting it cancels the call in flight (the server sees it cancelled) and stops the retries. */
  readonly signal?: Cancellation;
}

export const CALL_DEFAULTS = { maxAttempts: 5, backoffBaseMs: 25, backoffCapMs: 1_000 };

const RETRYABLE = new Set<GrpcStatus>([GrpcStatus.UNAVAILABLE, GrpcStatus.RESOURCE_EXHAUSTED]);

type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, response: Res) => void) => unknown;

/**
 * Calls a unary method (`client.status.bind(client)`) under `policy`; rejects with the last
 * `ServiceError` when attempts or time run out.
 */
export async function callUnary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, policy: CallPolicy): Promise<Res> {
  if (!(policy.timeoutMs > 0)) throw new RangeError(`a call needs a positive deadline, got ${policy.timeoutMs} ms`);
  const clock = policy.clock ?? systemClock;
  const random = policy.random ?? Math.random;
  const maxAttempts = policy.idempotent ? (policy.maxAttempts ?? CALL_DEFAULTS.maxAttempts) : 1;
  const deadlineMs = clock.nowMs() + policy.timeoutMs;
  const signal = policy.signal;
  for (let attempt = 1; ; attempt++) {
    try {
      return await new Promise<Res>((resolve, reject) => {
        if (signal?.aborted === true) return reject(cancelledError());
        const call = method(request, policy.metadata ?? new Metadata(), { deadline: new Date(deadlineMs) }, (err, response) => {
          signal?.removeEventListener('abort', cancel);
          if (err) reject(err);
          else resolve(response);
        }) as { cancel?: () => void } | undefined;
        function cancel(): void {
          call?.cancel?.();
        }
        signal?.addEventListener('abort', cancel, { once: true });
      });
    } catch (err) {
      const code = (err as ServiceError).code;
      if (attempt >= maxAttempts || !RETRYABLE.has(code) || signal?.aborted === true) throw err;
      const ceilingMs = Math.min(policy.backoffCapMs ?? CALL_DEFAULTS.backoffCapMs, (policy.backoffBaseMs ?? CALL_DEFAULTS.backoffBaseMs) * 2 ** (attempt - 1));
      const delayMs = Math.floor(random() * ceilingMs);
      if (clock.nowMs() + delayMs >= deadlineMs) throw err;
      await clock.sleep(delayMs);
    }
  }
}

/** What a call aborted before it started fails with: grpc-js's CANCELLED, as if cancelled in flight. */
function cancelledError(): ServiceError {
  return Object.assign(new Error('1 CANCELLED: Cancelled on client'), { code: GrpcStatus.CANCELLED, details: 'Cancelled on client', metadata: new Metadata() });
}
