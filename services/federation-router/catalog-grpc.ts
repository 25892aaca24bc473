/**
 * The catalog's gRPC API (consulate.catalog.v1, 8502) as a router calls it to serve a forwarded
 * gRPC request (operator.proto GrpcRequest): the request's bytes go to the catalog as they came and
 * its answer comes back as bytes, never decoded here, with its status and its own trailers. Only
 * unary methods of the four catalog services cross; anything else is refused before it travels.
 *
 * A status the catalog ends the call with (NOT_FOUND for a missing key, UNAVAILABLE "No cluster
 * leader", ...) is its answer, carried back like an HTTP 404. The call failed to reach the catalog
 * only when it provably never left (no connection): then the router may ask another catalog.
 *
 * Forwarded HTTP requests go to the same port: ForwardedHttpService runs them through the
 * catalog's HTTP handlers, on one Calls stream per catalog (lib/call-stream.ts).
 */
import { Client, Metadata, MethodDefinition, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { CatalogServiceService } from '../gen/consulate/catalog/v1/catalog';
import { EventServiceService } from '../gen/consulate/catalog/v1/event';
import { ForwardedHttpServiceClient, ForwardedHttpServiceService } from '../gen/consulate/catalog/v1/forwarded';
import { HealthServiceService } from '../gen/consulate/catalog/v1/health';
import { KVServiceService } from '../gen/consulate/catalog/v1/kv';
import { SessionServiceService } from '../gen/consulate/catalog/v1/session';
import { GrpcRequest, GrpcResponse } from '../gen/consulate/router/v1/operator';
import { StreamedMethod, encodedUnary } from '../lib/call-stream';
import { Cancellation } from '../lib/cancellation';
import { RoleClients } from '../lib/grpc-client';
import { WatchEnd, WatchSink, relayWatch } from '../lib/watch-relay';
import { asBuffer, encodedMethod } from './forward-wire';

/** The catalog's public API on 8502 (DESIGN.md "Ports"): what `-catalog-grpc-addr` defaults to. */
export const CATALOG_GRPC_PORT = 8502;

/** The services whose unary methods are forwarded, by the prefix of their method paths. */
const CATALOG_SERVICES = [CatalogServiceService, HealthServiceService, KVServiceService, SessionServiceService, EventServiceService];
const FORWARDED_SERVICES = CATALOG_SERVICES.map((definition) => Object.values(definition)[0].path.split('/')[1]);

const CATALOG_METHODS = CATALOG_SERVICES.flatMap((definition): MethodDefinition<unknown, unknown>[] => Object.values(definition));

/** The streaming methods of those services: a unary call cannot carry them. */
const STREAMING_METHODS = new Set(CATALOG_METHODS.filter((method) => method.requestStream || method.responseStream).map((method) => method.path));

/** Their watches (server streams), which ForwardWatch carries; not EventService.Watch, a catalog's own events, which names no datacenter. */
const WATCH_METHODS = new Set(
  CATALOG_METHODS.filter((method) => method.responseStream && !method.requestStream && method.path !== EventServiceService.watch.path).map((method) => method.path),
);

/** `/<package>.<Service>/<Method>`, nothing more. */
const METHOD_PATH = /^\/([A-Za-z0-9_.]+)\/([A-Za-z0-9_]+)$/;

/** Trailers of the catalog's answer that travel back: its own (`consulate-index`), text only. */
export const CATALOG_TRAILERS = /^consulate-[a-z0-9-]+$/;

/** Why `method` is not forwarded, or undefined when it is. */
export function refusedMethod(method: string): string | undefined {
  const match = METHOD_PATH.exec(method);
  if (match === null || !FORWARDED_SERVICES.includes(match[1])) {
    return `gRPC method "${method}" is not forwarded: only the unary methods of ${FORWARDED_SERVICES.join(', ')} cross datacenters`;
  }
  if (STREAMING_METHODS.has(method)) return `gRPC method "${method}" streams: forward watches with ForwardWatch`;
  return undefined;
}

/** Why `method` is not forwarded as a watch, or undefined when it is. */
export function refusedWatch(method: string): string | undefined {
  if (WATCH_METHODS.has(method)) return undefined;
  return `gRPC method "${method}" is not a watch: only ${[...WATCH_METHODS].join(', ')} are forwarded as watches`;
}

/** The call never reached a catalog (no connection): another catalog may be asked. */
export class CatalogUnreachableError extends Error {
  override readonly name = 'CatalogUnreachableError';
}

/** The catalog has no ForwardedHttpService (an older version): ask its HTTP API. */
export class NoForwardedHttpError extends Error {
  override readonly name = 'NoForwardedHttpError';
}

const identity = (bytes: Buffer): Buffer => bytes;

/** One client per catalog gRPC address, each call with the tracing interceptor and a deadline. */
export class CatalogGrpcClients {
  private readonly clients: RoleClients<Client>;
  private readonly forwardedHttp: StreamedMethod<ForwardedHttpServiceClient, Buffer, Buffer>;

  constructor(tracer: Tracer) {
    this.clients = new RoleClients(Client, { tracer });
    const serve = encodedMethod(ForwardedHttpServiceService.serve);
    this.forwardedHttp = new StreamedMethod(new RoleClients(ForwardedHttpServiceClient, { tracer }), serve, (client) => encodedUnary(client, serve), tracer);
  }

  /**
   * Serves a forwarded HTTP request (an encoded ServeRequest) on the catalog at `address`
   * (ForwardedHttpService), by `deadlineMs`: resolves with the catalog's answer, an encoded
   * ServeResponse, whatever its status. Rejects with CatalogUnreachableError when the request
   * never left, NoForwardedHttpError when the catalog does not serve them so, and the call's
   * ServiceError when it was lost on the way.
   */
  serveHttp(address: string, request: Uint8Array, deadlineMs: number, signal?: Cancellation): Promise<Uint8Array> {
    const serve = this.forwardedHttp.get(address);
    return new Promise((resolve, reject) => {
      const call = serve(asBuffer(request), new Metadata(), { deadline: deadlineMs }, (err, answer) => {
        signal?.removeEventListener('abort', cancel);
        if (err === null) return resolve(answer);
        if (neverSent(err)) return reject(new CatalogUnreachableError(err.details || err.message));
        if (err.code === GrpcStatus.UNIMPLEMENTED) return reject(new NoForwardedHttpError(err.details));
        reject(err);
      });
      const cancel = () => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  /**
   * Calls `request.method` on the catalog at `address` with the request's bytes, by `deadlineMs`.
   * Resolves with however the catalog ended the call; rejects with CatalogUnreachableError only
   * when the call never left. Aborting `signal` cancels the call (it ends CANCELLED).
   */
  call(address: string, request: Pick<GrpcRequest, 'method'> & { readonly message: Uint8Array }, deadlineMs: number, signal?: Cancellation): Promise<GrpcResponse> {
    const client = this.clients.get(address);
    return new Promise((resolve, reject) => {
      let answer: Buffer | undefined;
      let failure: ServiceError | undefined;
      const call = client.makeUnaryRequest(request.method, identity, identity, asBuffer(request.message), new Metadata(), { deadline: deadlineMs }, (err, value) => {
        if (err !== null) failure = err;
        else answer = value;
      });
      const cancel = () => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
      // grpc-js reports 'status' after the callback: the trailers of an OK answer come only here.
      call.on('status', (status) => {
        signal?.removeEventListener('abort', cancel);
        if (failure !== undefined && neverSent(failure)) return reject(new CatalogUnreachableError(failure.details || failure.message));
        const trailers: Record<string, string> = {};
        for (const [name, value] of Object.entries(status.metadata.getMap())) if (CATALOG_TRAILERS.test(name) && typeof value === 'string') trailers[name] = value;
        if (failure !== undefined) resolve({ code: failure.code, details: failure.details ?? '', message: Buffer.alloc(0), trailers });
        else resolve({ code: GrpcStatus.OK, details: '', message: answer ?? Buffer.alloc(0), trailers });
      });
    });
  }

  /**
   * Opens the watch `request.method` on the catalog at `address` with the request's bytes, its
   * messages written to `sink` as they come; resolves with however the stream ended (neverSent:
   * it never reached the catalog). Aborting `signal` cancels it.
   */
  watch(address: string, request: GrpcRequest, sink: WatchSink, signal?: Cancellation): Promise<WatchEnd> {
    const stream = this.clients.get(address).makeServerStreamRequest(request.method, identity, identity, Buffer.from(request.message), new Metadata(), {});
    return relayWatch(stream, identity, sink, signal);
  }

  close(): void {
    this.forwardedHttp.close();
    this.clients.close();
  }
}

/** The catalog's gRPC address beside its HTTP one: the same host, port 8502. */
export function defaultCatalogGrpcAddr(httpAddress: string): string {
  return httpAddress.replace(/:\d+$/, `:${CATALOG_GRPC_PORT}`);
}

/** grpc-js says so when the call never got a connection: nothing reached the other side. */
export function neverSent(err: Pick<ServiceError, 'code' | 'details'>): boolean {
  return err.code === GrpcStatus.UNAVAILABLE && (err.details ?? '').includes('No connection established');
}
