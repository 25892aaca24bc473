/**
 * The gRPC twin of http/remote-datacenter.ts (reference/consul-compat.md §3.9): a call naming
 * another datacenter (its QueryOptions.datacenter for a read, its own `datacenter` field for a
 * write, as the .proto files place them) is decided once, before any handler runs. Its request
 * message is encoded again from the decoded one and handed to the datacenter's federation routers
 * (ForwardService.Forward with a GrpcRequest), which call that datacenter's catalog on 8502 with
 * it; the remote catalog's status, details, trailers (`consulate-index`) and answer come back as
 * it gave them. Writes go too, as Consul forwards KV puts and registrations.
 *
 * Watches (WatchPrefix, WatchServiceHealth) of another datacenter go to the routers'
 * ForwardWatch: the remote catalog serves the watch, and each of its messages comes back through
 * the routers as it was encoded (lib/watch-relay.ts, backpressure included); the stream ends with
 * the remote watch's status. A watch that breaks on the way ends UNAVAILABLE: watch again, from
 * the last index, as after a catalog's restart. At most MAX_FORWARDED_WATCHES at once per catalog.
 *
 * Deadlines: the call's own deadline travels; a call without one gets FORWARD_TIMEOUT_MS, or for
 * a blocking read (min_index) the wait one served here would have (DEFAULT_WAIT_MS) plus
 * FORWARDED_WAIT_MARGIN_MS, since the remote catalog's wait ends a little before the deadline it
 * sees. A read that does not block may go to the next router when one cannot be reached; a write
 * or a blocking read only when it never left. A client that cancels its call cancels the forward
 * (the router cancels what it started in turn), so it holds no forward slot past its caller.
 *
 * Failures, with the codes the rest of the API uses (status.ts) and Consul's texts:
 *
 * | what happened                                                  | code               |
 * |----------------------------------------------------------------|--------------------|
 * | no route, or no router configured ("No path to datacenter")    | NOT_FOUND          |
 * | a route, but nothing answers behind it ("Remote DC has no      | UNAVAILABLE        |
 * |   server currently reachable"), or no router of ours answers   |                    |
 * | lost on its way, and it may have been carried out (a write)    | UNKNOWN            |
 * | too many forwards (or forwarded watches) on this catalog       | RESOURCE_EXHAUSTED |
 *
 * Each failed forward is logged with Consul's log text, and the call's span carries a
 * `datacenter` attribute.
 */
import {
  Metadata,
  MethodDefinition,
  ServerErrorResponse,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  UntypedServiceImplementation,
  sendUnaryData,
  status as GrpcStatus,
} from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { CatalogServiceService } from '../../gen/consulate/catalog/v1/catalog';
import { HealthServiceService } from '../../gen/consulate/catalog/v1/health';
import { KVServiceService } from '../../gen/consulate/catalog/v1/kv';
import { SessionServiceService } from '../../gen/consulate/catalog/v1/session';
import { ForwardResponse } from '../../gen/consulate/router/v1/operator';
import { Logger } from '../../lib/log';
import { WatchSink, copyTrailers } from '../../lib/watch-relay';
import { FORWARD_TIMEOUT_MS, ForwardSlots, NO_SERVER_REACHABLE, RouterAnswerError, RouterCallOptions, RouterClient, RouterUnavailableError } from '../router-client';
import { DEFAULT_WAIT_MS } from '../state/consistent-read';
import { NoPathToDatacenterError } from '../state/errors';

/**
 * Added to DEFAULT_WAIT_MS for a blocking read forwarded without a deadline: the remote catalog
 * keeps a second of it back from its wait, each router's last hop another, and the rest is the
 * answer's way home.
 */
export const FORWARDED_WAIT_MARGIN_MS = 5_000;

/** Watches of other datacenters one catalog carries at once (each holds a stream to a router). */
export const MAX_FORWARDED_WATCHES = 256;

/** Methods that change nothing: a read that does not block may be sent to the next router. */
const READ_METHODS = new Set<string>([
  CatalogServiceService.listNodes.path,
  CatalogServiceService.listServices.path,
  CatalogServiceService.getService.path,
  CatalogServiceService.getNode.path,
  HealthServiceService.serviceHealth.path,
  HealthServiceService.nodeHealth.path,
  HealthServiceService.checksInState.path,
  KVServiceService.get.path,
  SessionServiceService.info.path,
  SessionServiceService.list.path,
]);

/** What a forwarded gRPC trailer may be called: the catalog's own, never gRPC's reserved ones nor the routers' mark. */
const CATALOG_TRAILERS = /^consulate-(?!router-answer$)[a-z0-9-]+$/;

const NO_PATH_TO_DATACENTER = new NoPathToDatacenterError().message;

export interface GrpcForwardingDeps {
  /** This catalog's datacenter: a call naming it (or none) is served here. */
  readonly datacenter: string;
  /** The datacenter's routers; without any (`configured` false), another datacenter has no path. */
  readonly routers: Pick<RouterClient, 'configured' | 'forward' | 'forwardWatch'>;
  readonly logger: Logger;
  /** Forwards in flight, shared with the HTTP API (role.ts). */
  readonly slots: ForwardSlots;
}

type Request = { readonly datacenter?: unknown; readonly query?: { readonly datacenter?: unknown; readonly minIndex?: unknown } };

export class GrpcDatacenterForwarding {
  private watches = 0;

  constructor(private readonly deps: GrpcForwardingDeps) {}

  /**
   * `implementation` with every handler first asking which datacenter its call names: calls for
   * this one reach the handler, calls and watches for another are forwarded.
   */
  wrap<S extends UntypedServiceImplementation>(definition: ServiceDefinition, implementation: S): S {
    const wrapped: UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(definition)) {
      const handler = implementation[name];
      if (handler === undefined) continue;
      if (method.requestStream) {
        wrapped[name] = handler;
      } else if (method.responseStream) {
        const serve = handler as (call: ServerWritableStream<unknown, unknown>) => void;
        wrapped[name] = ((call: ServerWritableStream<unknown, unknown>) => {
          const datacenter = this.remoteDatacenter(call.request);
          if (datacenter === undefined) return serve(call);
          trace.getActiveSpan()?.setAttribute('datacenter', datacenter);
          void this.forwardWatch(datacenter, method, call);
        }) as never;
      } else {
        const serve = handler as (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;
        wrapped[name] = ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
          const datacenter = this.remoteDatacenter(call.request);
          if (datacenter === undefined) return serve(call, callback);
          trace.getActiveSpan()?.setAttribute('datacenter', datacenter);
          void this.forward(datacenter, method, call, callback);
        }) as never;
      }
    }
    return wrapped as S;
  }

  /** The datacenter a request names when it is not ours. */
  private remoteDatacenter(request: unknown): string | undefined {
    const datacenter = datacenterOf(request as Request);
    return datacenter === '' || datacenter === this.deps.datacenter ? undefined : datacenter;
  }

  private async forward(datacenter: string, method: MethodDefinition<unknown, unknown>, call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>): Promise<void> {
    const { routers, slots } = this.deps;
    if (!routers.configured) return callback(this.noPath(datacenter, method.path, 'no federation router is configured (-router-addr)'));
    if (!slots.tryTake()) return callback(failure(GrpcStatus.RESOURCE_EXHAUSTED, `too many requests forwarded to other datacenters at once (${slots.limit}); retry later`));
    let answer: ForwardResponse;
    // A caller that goes away cancels the forward all the way down (router, remote router, remote catalog).
    const cancelled = new AbortController();
    const onCancelled = () => cancelled.abort();
    call.once('cancelled', onCancelled);
    try {
      const policy = Object.assign(grpcForwardPolicy(method.path, call.request as Request, remainingMsOf(call)), { signal: cancelled.signal });
      const message = method.requestSerialize(call.request);
      answer = await routers.forward({ datacenter, grpc: { method: method.path, message, readOnly: policy.readOnly === true } }, policy);
    } catch (err) {
      return callback(this.failed(datacenter, method.path, err));
    } finally {
      call.removeListener('cancelled', onCancelled);
      slots.release();
    }
    const response = answer.grpc;
    if (response === undefined) return callback(this.failed(datacenter, method.path, new Error('the router answered without a gRPC response')));
    const trailers = new Metadata();
    for (const [name, value] of Object.entries(response.trailers)) if (CATALOG_TRAILERS.test(name)) trailers.set(name, value);
    if (response.code !== GrpcStatus.OK) {
      const code = response.code in GrpcStatus && response.code <= GrpcStatus.UNAUTHENTICATED ? (response.code as GrpcStatus) : GrpcStatus.UNKNOWN;
      return callback(Object.assign(failure(code, response.details), { metadata: trailers }));
    }
    let decoded: unknown;
    try {
      decoded = method.responseDeserialize(Buffer.from(response.message));
    } catch (err) {
      return callback(this.failed(datacenter, method.path, new Error(`the answer of ${datacenter} does not decode as ${method.path}'s response: ${(err as Error).message}`)));
    }
    callback(null, decoded, trailers);
  }

  private async forwardWatch(datacenter: string, method: MethodDefinition<unknown, unknown>, call: ServerWritableStream<unknown, unknown>): Promise<void> {
    const { routers } = this.deps;
    if (!routers.configured) return void call.emit('error', this.noPath(datacenter, method.path, 'no federation router is configured (-router-addr)'));
    if (this.watches >= MAX_FORWARDED_WATCHES) return void call.emit('error', failure(GrpcStatus.RESOURCE_EXHAUSTED, `too many watches of other datacenters on this catalog (${MAX_FORWARDED_WATCHES}); close some, or retry later`));
    this.watches++;
    // A caller that goes away cancels the watch all the way down (routers, remote catalog).
    const cancelled = new AbortController();
    const onCancelled = () => cancelled.abort();
    call.once('cancelled', onCancelled);
    let undecodable: Error | undefined;
    const sink: WatchSink = {
      // Decoded once, for the typed stream to encode; a message that does not decode ends the watch.
      write: (message) => {
        if (call.cancelled) return true;
        try {
          return call.write(method.responseDeserialize(message));
        } catch (err) {
          undecodable = err as Error;
          cancelled.abort();
          return true;
        }
      },
      once: (event, listener) => call.once(event, listener),
    };
    try {
      const message = method.requestSerialize(call.request);
      const end = await routers.forwardWatch({ datacenter, grpc: { method: method.path, message, readOnly: true } }, sink, cancelled.signal);
      if (undecodable !== undefined) throw undecodable;
      if (end.code === GrpcStatus.NOT_FOUND && end.details === NO_PATH_TO_DATACENTER) throw new RouterAnswerError(end.code, end.details);
      if (end.code === GrpcStatus.UNAVAILABLE && end.details.startsWith(NO_SERVER_REACHABLE)) throw new RouterAnswerError(end.code, end.details);
      const trailers = copyTrailers(end.trailers, CATALOG_TRAILERS);
      if (end.code === GrpcStatus.OK) call.end(trailers);
      else call.emit('error', Object.assign(failure(end.code, end.details), { metadata: trailers }));
    } catch (err) {
      if (undecodable !== undefined) call.emit('error', this.failed(datacenter, method.path, new Error(`a message of ${datacenter}'s watch does not decode as ${method.path}'s response: ${undecodable.message}`)));
      else if (!cancelled.signal.aborted) call.emit('error', this.failed(datacenter, method.path, err));
    } finally {
      call.removeListener('cancelled', onCancelled);
      this.watches--;
    }
  }

  /** Logs a failed forward (Consul's lines, §3.7) and gives its status. */
  private failed(datacenter: string, path: string, err: unknown): ServerErrorResponse {
    const reason = (err as Error)?.message ?? String(err);
    if (err instanceof RouterAnswerError && err.code === GrpcStatus.NOT_FOUND) return this.noPath(datacenter, path, reason);
    const fields = { datacenter, method: path, reason };
    if (err instanceof RouterAnswerError && err.code === GrpcStatus.UNAVAILABLE) {
      this.deps.logger.warn(fields, 'RPC request to DC is currently failing as no server can be reached');
      return failure(GrpcStatus.UNAVAILABLE, NO_SERVER_REACHABLE);
    }
    this.deps.logger.warn(fields, `cannot forward ${path} to datacenter ${datacenter}: ${reason}`);
    if (err instanceof RouterAnswerError) return failure(err.code, reason);
    if (err instanceof RouterUnavailableError) return failure(err.mayHaveApplied ? GrpcStatus.UNKNOWN : err.timedOut ? GrpcStatus.DEADLINE_EXCEEDED : GrpcStatus.UNAVAILABLE, reason);
    return failure(GrpcStatus.INTERNAL, reason);
  }

  private noPath(datacenter: string, path: string, reason: string): ServerErrorResponse {
    this.deps.logger.warn({ datacenter, method: path, reason }, 'RPC request for DC is currently failing as no path was found');
    return failure(GrpcStatus.NOT_FOUND, NO_PATH_TO_DATACENTER);
  }
}

/**
 * How long a forwarded call may take and whether it may go to a second router. `remainingMs` is
 * what is left of the call's deadline (undefined: it has none): it travels as it is, since the
 * remote catalog reads a blocking read's wait from it as this one would.
 */
export function grpcForwardPolicy(path: string, request: Request, remainingMs: number | undefined): RouterCallOptions {
  const read = READ_METHODS.has(path);
  const blocking = read && typeof request.query?.minIndex === 'bigint' && request.query.minIndex > 0n;
  const fallbackMs = blocking ? DEFAULT_WAIT_MS + FORWARDED_WAIT_MARGIN_MS : FORWARD_TIMEOUT_MS;
  return { timeoutMs: remainingMs === undefined ? fallbackMs : Math.max(1, remainingMs), repeatable: read && !blocking, readOnly: read };
}

/** The request's datacenter: its own field (writes), else its QueryOptions' (reads); "" for none. */
function datacenterOf(request: Request): string {
  if (typeof request.datacenter === 'string') return request.datacenter;
  return typeof request.query?.datacenter === 'string' ? request.query.datacenter : '';
}

function remainingMsOf(call: ServerUnaryCall<unknown, unknown>): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? at - Date.now() : undefined;
}

function failure(code: GrpcStatus, details: string): ServerErrorResponse {
  return { name: GrpcStatus[code], message: details, code, details, metadata: new Metadata() };
}
