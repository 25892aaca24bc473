/**
 * Cross-datacenter forwarding. A catalog hands its router a request for another datacenter
 * (ForwardService on 8330); the router sends it along its route to a router of the next
 * datacenter on 8300 (FederationService.Forward, on one Calls stream per router), which serves it
 * from its own catalog, or, through a transit area, passes it on. A request is either one to the
 * catalog's HTTP API or a unary call to its gRPC API, both served on the catalog's gRPC port
 * (-catalog-grpc-addr, catalog-grpc.ts; HTTP on -catalog-addr for a catalog too old for that); both
 * take the same path, failover and limits, and only the last hop tells them apart. Deadlines shrink
 * along the way, the trace context rides in gRPC metadata, and the answer comes back unchanged.
 *
 * Failover (beyond Consul, which returns the first error): a router that cannot be reached is
 * marked offline for a while, so later requests try the datacenter's other routers first, and
 * this request goes on to the next one. An answer is never retried: a write may have applied.
 */
import { Agent, IncomingMessage, request as httpRequest } from 'node:http';

import { Deadline, Metadata, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer, context as otelContext, propagation, trace } from '@opentelemetry/api';

import { ForwardRequest, ForwardResponse, GrpcRequest, GrpcResponse, HttpRequest, HttpResponse } from '../gen/consulate/router/v1/operator';
import { Cancellation, abortSignalOf } from '../lib/cancellation';
import { returningHeaders, travellingHeaders } from '../lib/forwarded-headers';
import { tracing } from '../lib/grpc-tracing';
import { Logger } from '../lib/log';
import { ROUTER_ANSWER_TRAILER, WatchEnd, WatchSink, isRouterAnswer, relayWatch } from '../lib/watch-relay';
import { AreaStore } from './area-store';
import { CatalogGrpcClients, CatalogUnreachableError, NoForwardedHttpError, neverSent, refusedMethod, refusedWatch } from './catalog-grpc';
import { Federation } from './federation';
import { ForwardEnvelope, federationForward, forwardOfFederationAnswer, readForwardRequest, serveRequest, withPathFirst } from './forward-wire';
import { PeerClients } from './peer-clients';
import { Rebalancer } from './routing/rebalance';
import { MAX_HOPS, NextHop } from './routing/route-table';

/** Consul's texts (agent/structs/errors.go). */
export const NO_PATH = 'No path to datacenter';
export const NO_SERVER = 'Remote DC has no server currently reachable';
/** Marks an error as a router's answer, not a failure to reach it: an answer is not retried elsewhere. */
export const ANSWER_TRAILER = ROUTER_ANSWER_TRAILER;
/** Watches of other datacenters this router carries at once: each holds a stream at every hop it crosses. */
export const MAX_FORWARDED_WATCHES = 1_024;
/** How long a router that could not be reached is tried after the others. */
const OFFLINE_MS = 10_000;
/** How long the catalogs' HTTP API is used after one had no ForwardedHttpService, before it is tried again. */
const HTTP_ONLY_MS = 60_000;
/** Methods that change nothing: sent again to the next router when one fails mid-call. */
const SAFE_METHODS = new Set(['GET', 'HEAD']);
/**
 * Kept back from the deadline of a gRPC call to the catalog: a blocking read there ends its wait
 * a little before the deadline it sees (catalog grpc/query.ts), and this leaves its answer time to
 * travel back through the routers before the caller's deadline. At most a tenth of what is left.
 */
export const GRPC_RETURN_MARGIN_MS = 1_000;

/** An error the router answers with; `code` is the gRPC status it travels as. */
export class ForwardError extends Error {
  override readonly name = 'ForwardError';
  constructor(
    message: string,
    readonly code: GrpcStatus,
  ) {
    super(message);
  }
}

export interface ForwarderOptions {
  readonly datacenter: string;
  /** This datacenter's catalogs, host:port of their HTTP API. */
  readonly catalogAddrs: readonly string[];
  /** This datacenter's catalogs, host:port of their gRPC API (8502): where forwarded gRPC calls go. */
  readonly catalogGrpcAddrs?: readonly string[];
  readonly logger: Logger;
  readonly metrics?: ForwardMetrics;
  /** For the spans of calls to the catalog's gRPC API. */
  readonly tracer?: Tracer;
  /** Which router of a datacenter comes first (Consul's rebalancing); without one, the route table's order. */
  readonly rebalancer?: Pick<Rebalancer, 'order'>;
}

/** How a forward() ended: answered, no route (Consul's NO_PATH), no router or catalog reachable (NO_SERVER), or else. */
export type ForwardOutcome = 'ok' | 'no_path' | 'no_server' | 'error';

/** What the forwarder reports, for the router's Prometheus series (role.ts). */
export interface ForwardMetrics {
  /**
   * A forward() began; the stop runs as it ends, with the datacenter it was for (a name the router
   * knows, "unknown" for any other: a caller's typo never becomes a series) and its outcome.
   */
  startForward(): (datacenter: string, outcome: ForwardOutcome) => void;
}

export class Forwarder {
  private readonly offlineUntil = new Map<string, number>();
  private readonly inFlight = new Map<string, Set<{ cancel(): void }>>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly catalogGrpc: CatalogGrpcClients;
  private readonly tracer: Tracer;
  private nextCatalog = 0;
  private nextGrpcCatalog = 0;
  /** Watches of other datacenters this router carries now. */
  private watches = 0;
  /** Until then, forwarded HTTP requests use the catalogs' HTTP API (one had no ForwardedHttpService). */
  private httpOnlyUntil = 0;

  constructor(
    private readonly options: ForwarderOptions,
    private readonly federation: Federation,
    private readonly store: AreaStore,
    private readonly peers: PeerClients,
  ) {
    this.tracer = options.tracer ?? trace.getTracer('consulate-federation-router');
    this.catalogGrpc = new CatalogGrpcClients(this.tracer);
  }

  /** Watches of other datacenters this router carries now. */
  get watchesOpen(): number {
    return this.watches;
  }

  close(): void {
    this.agent.destroy();
    this.catalogGrpc.close();
  }

  /**
   * Serves `request` here if it is for this datacenter, or sends it on. `visited` are the
   * datacenters it has left (empty when it comes from our own catalog), `from` the datacenter of
   * the router that sent it, if any. Aborting `signal` (the caller went away) cancels the calls
   * it made, down the route.
   */
  async forward(request: ForwardRequest, deadlineMs: number, visited: readonly string[], from: string | undefined, signal?: Cancellation): Promise<ForwardResponse> {
    return ForwardResponse.decode(await this.forwardEncoded(readForwardRequest(ForwardRequest.encode(request).finish()), deadlineMs, visited, from, signal));
  }

  /**
   * forward() as the router's services call it: the request as it came (an encoded ForwardRequest,
   * its head read) and the answer an encoded ForwardResponse, passed on without being decoded
   * (forward-wire.ts).
   */
  async forwardEncoded(request: ForwardEnvelope, deadlineMs: number, visited: readonly string[], from: string | undefined, signal?: Cancellation): Promise<Uint8Array> {
    const done = this.options.metrics?.startForward();
    try {
      const answer = await this.forwardAlongRoute(request, deadlineMs, visited, from, signal);
      done?.(this.datacenterLabel(request.datacenter), 'ok');
      return answer;
    } catch (err) {
      done?.(this.datacenterLabel(request.datacenter), forwardOutcome(err));
      throw err;
    }
  }

  private async forwardAlongRoute(request: ForwardEnvelope, deadlineMs: number, visited: readonly string[], from: string | undefined, signal: Cancellation | undefined): Promise<Uint8Array> {
    const local = this.options.datacenter;
    // Refused wherever it arrives, so a request that will not be served never travels.
    const malformed = malformedRequest(request);
    if (malformed !== undefined) throw new ForwardError(malformed, GrpcStatus.INVALID_ARGUMENT);
    if (from !== undefined && !this.federation.adjacent(from)) await this.admitAfterCatchUp(request, from);
    const hops = this.hopsFor(request, visited, from);
    if (hops === 'here') {
      if (request.grpc !== undefined) return ForwardResponse.encode({ grpc: await this.serveGrpcLocally(request.grpc, deadlineMs, signal), path: [local] }).finish();
      return this.serveLocally(request, deadlineMs, signal);
    }
    const failures: string[] = [];
    const retriable = request.grpc !== undefined ? request.grpc.readOnly : SAFE_METHODS.has(request.http?.method ?? '');
    for (const hop of hops) {
      if (Date.now() >= deadlineMs) break;
      if (aborted(signal)) throw cancelledByCaller();
      try {
        const answer = await this.callRouter(hop, request, [...visited, local], deadlineMs, signal);
        this.offlineUntil.delete(hop.address);
        // ForwardResponse.path runs from the first remote datacenter: a transit one adds itself.
        return from === undefined ? answer : withPathFirst([local], answer);
      } catch (err) {
        const error = err as ServiceError;
        // Cancelled for our caller, not because of the router: it stays online.
        if (aborted(signal)) throw cancelledByCaller();
        if (isAnswer(error)) throw new ForwardError(error.details, error.code);
        const reason = error.details || error.message;
        failures.push(`${hop.name} (${hop.address}): ${reason}`);
        this.offlineUntil.set(hop.address, Date.now() + OFFLINE_MS);
        // A write that may have reached the router is not sent again: it could apply twice.
        if (!retriable && !neverSent(error)) {
          this.options.logger.warn({ datacenter: request.datacenter, router: hop.name, address: hop.address, code: error.code }, `router ${hop.name} of ${hop.datacenter} failed a forwarded ${request.grpc?.method ?? request.http?.method} after it was sent (${reason}); not retried`);
          throw new ForwardError(`rpc error: the request to ${hop.name} failed after it was sent and may or may not have been applied: ${reason}`, GrpcStatus.UNKNOWN);
        }
        this.options.logger.warn({ datacenter: request.datacenter, router: hop.name, address: hop.address, code: error.code }, `router ${hop.name} of ${hop.datacenter} failed a forwarded request (${reason}); trying the next`);
      }
    }
    throw this.noServer(request, failures.join('; ') || 'deadline passed');
  }

  /**
   * Where a request goes from here: 'here' when it is for this datacenter (and came from another
   * router: our own catalog serves its own), else the routers of the next datacenter on its route,
   * in the order to try them. Throws the refusals: no path, a transit the areas do not allow, a
   * loop, no router of the next datacenter alive.
   */
  private hopsFor(request: Pick<ForwardEnvelope, 'datacenter' | 'http' | 'grpc'>, visited: readonly string[], from: string | undefined): NextHop[] | 'here' {
    const local = this.options.datacenter;
    if (request.datacenter === local) {
      if (from === undefined) throw new ForwardError(`request is for this datacenter (${local}); serve it locally`, GrpcStatus.INVALID_ARGUMENT);
      return 'here';
    }
    const route = this.federation.route(request.datacenter);
    if (route === undefined) throw this.noPath(request, 'no route');
    if (from !== undefined) {
      // Passing through: only between two transit areas, never back, never in a circle.
      const inbound = this.store.areas().find((area) => area.peerDatacenter === from);
      const outbound = this.store.area(route.areaId);
      if (inbound === undefined || !inbound.transit) throw this.noPath(request, `the area with ${from} is not a transit area`);
      if (outbound === undefined || !outbound.transit) throw this.noPath(request, `the route leaves through ${route.areaId}, not a transit area`);
      if (visited.includes(local) || route.path.includes(from) || visited.length + route.path.length > MAX_HOPS) throw this.noPath(request, 'loop or hop limit');
    }
    const hops = this.tryOrder(route.nextHops);
    if (hops.length === 0) throw this.noServer(request, 'every router of the next datacenter is failed');
    return hops;
  }

  /**
   * Opens the watch `request.grpc` names in its datacenter, or passes it on, writing each of its
   * messages to `sink`; resolves with how the remote watch ended (the remote catalog's status, or
   * a router's refusal further on), rejects with a ForwardError when no router or catalog could
   * carry it (lib/watch-relay.ts). A router that cannot be reached is skipped, as for forward();
   * a watch that breaks after its first message is not opened again: its caller does that, from
   * the last index it saw. Aborting `signal` cancels it down the route.
   */
  async forwardWatch(request: ForwardRequest, visited: readonly string[], from: string | undefined, sink: WatchSink, signal?: Cancellation): Promise<WatchEnd> {
    const refused = request.grpc === undefined ? 'a forwarded watch needs a gRPC call' : refusedWatch(request.grpc.method);
    if (refused !== undefined) throw new ForwardError(refused, GrpcStatus.INVALID_ARGUMENT);
    if (this.watches >= MAX_FORWARDED_WATCHES) throw new ForwardError(`too many watches of other datacenters through this router (${MAX_FORWARDED_WATCHES}); close some, or retry later`, GrpcStatus.RESOURCE_EXHAUSTED);
    this.watches++;
    try {
      const head = { datacenter: request.datacenter, grpc: request.grpc };
      if (from !== undefined && !this.federation.adjacent(from)) await this.admitAfterCatchUp(head, from);
      const hops = this.hopsFor(head, visited, from);
      if (hops === 'here') return await this.watchLocally(request.grpc!, sink, signal);
      const failures: string[] = [];
      for (const hop of hops) {
        if (aborted(signal)) throw cancelledByCaller();
        const stream = this.peers.forwarding(hop.address, hop.datacenter).forwardWatch({ forward: request, visited: [...visited, this.options.datacenter] }, this.peers.metadata());
        const end = await this.tracked(hop.address, stream, relayWatch(stream, (message) => Buffer.from(message.message), sink, signal));
        if (aborted(signal)) throw cancelledByCaller();
        if (isRouterAnswer(end)) {
          this.offlineUntil.delete(hop.address);
          return end;
        }
        this.offlineUntil.set(hop.address, Date.now() + OFFLINE_MS);
        if (end.messages > 0) throw new ForwardError(`the watch through router ${hop.name} of ${hop.datacenter} broke (${end.details}): watch again from the last index`, GrpcStatus.UNAVAILABLE);
        failures.push(`${hop.name} (${hop.address}): ${end.details}`);
        this.options.logger.warn({ datacenter: request.datacenter, router: hop.name, address: hop.address, code: end.code }, `router ${hop.name} of ${hop.datacenter} did not open a forwarded watch (${end.details}); trying the next`);
      }
      throw this.noServer(request, failures.join('; '));
    } finally {
      this.watches--;
    }
  }

  /** Opens the watch on this datacenter's catalog (gRPC), the next catalog when one cannot be reached. */
  private async watchLocally(grpc: GrpcRequest, sink: WatchSink, signal: Cancellation | undefined): Promise<WatchEnd> {
    const addrs = this.options.catalogGrpcAddrs ?? [];
    if (addrs.length === 0) throw new ForwardError(`router has no catalog gRPC API to ask in ${this.options.datacenter} (-catalog-grpc-addr)`, GrpcStatus.UNAVAILABLE);
    const failures: string[] = [];
    for (let i = 0; i < addrs.length; i++) {
      if (aborted(signal)) throw cancelledByCaller();
      const address = addrs[(this.nextGrpcCatalog + i) % addrs.length];
      const end = await this.catalogGrpc.watch(address, grpc, sink, signal);
      if (aborted(signal)) throw cancelledByCaller();
      if (end.messages > 0 || !neverSent(end)) return end;
      failures.push(`${address}: ${end.details}`);
    }
    this.options.logger.warn({ failures, method: grpc.method }, `cannot reach a catalog's gRPC API of ${this.options.datacenter} for a forwarded watch`);
    throw new ForwardError(`${NO_SERVER}: no catalog of ${this.options.datacenter} answered (${failures.join('; ')})`, GrpcStatus.UNAVAILABLE);
  }

  /** `done`, with `call` among the calls in flight to `address` meanwhile (routerFailed cancels them). */
  private async tracked<T>(address: string, call: { cancel(): void }, done: Promise<T>): Promise<T> {
    const calls = this.inFlight.get(address) ?? new Set<{ cancel(): void }>();
    this.inFlight.set(address, calls);
    calls.add(call);
    try {
      return await done;
    } finally {
      calls.delete(call);
      if (calls.size === 0) this.inFlight.delete(address);
    }
  }

  /**
   * Cancels the requests in flight to a router the pool has just declared failed, so they move
   * on to the next one (or fail) now rather than at their deadline.
   */
  routerFailed(address: string): void {
    const calls = this.inFlight.get(address);
    if (calls === undefined) return;
    this.options.logger.info({ address, calls: calls.size }, `router ${address} failed: cancelling ${calls.size} request(s) in flight to it`);
    for (const call of calls) call.cancel();
  }

  /**
   * The living routers in their datacenter's rebalanced order, those recently unreachable after
   * the others (Consul's rotate-on-failure).
   */
  tryOrder(hops: readonly NextHop[]): NextHop[] {
    const now = Date.now();
    const alive = (this.options.rebalancer?.order(hops) ?? hops).filter((hop) => hop.alive);
    const online = alive.filter((hop) => (this.offlineUntil.get(hop.address) ?? 0) <= now);
    const offline = alive.filter((hop) => (this.offlineUntil.get(hop.address) ?? 0) > now);
    return [...online, ...offline];
  }

  /** Sends `request` to the router `hop`; resolves with its answer, an encoded ForwardResponse. */
  private callRouter(hop: NextHop, request: ForwardEnvelope, visited: string[], deadlineMs: number, signal: Cancellation | undefined): Promise<Uint8Array> {
    let call: { cancel(): void } = { cancel: () => undefined };
    const answer = new Promise<Uint8Array>((resolve, reject) => {
      const cancel = () => call.cancel();
      call = this.peers.forwarding(hop.address, hop.datacenter).forward(federationForward(request.bytes, visited), this.peers.metadata(), { deadline: deadlineMs }, (err, answer) => {
        signal?.removeEventListener('abort', cancel);
        if (err !== null) return reject(err);
        try {
          resolve(forwardOfFederationAnswer(answer));
        } catch (error) {
          // Thrown here it would take the process down (grpc-js calls back from its stream's
          // events); the router failed this call as if it had not answered.
          reject(malformedAnswer(hop, error as Error));
        }
      });
      signal?.addEventListener('abort', cancel, { once: true });
    });
    return this.tracked(hop.address, call, answer);
  }

  /**
   * Calls this datacenter's catalog's gRPC API, the next one when a call cannot connect. Whatever
   * status the catalog ends the call with is its answer; the call's deadline is ours, less a
   * margin for the answer's way back (GRPC_RETURN_MARGIN_MS).
   */
  private async serveGrpcLocally(grpc: Pick<GrpcRequest, 'method'> & { readonly message: Uint8Array }, deadlineMs: number, signal: Cancellation | undefined): Promise<GrpcResponse> {
    const addrs = this.options.catalogGrpcAddrs ?? [];
    if (addrs.length === 0) throw new ForwardError(`router has no catalog gRPC API to ask in ${this.options.datacenter} (-catalog-grpc-addr)`, GrpcStatus.UNAVAILABLE);
    const remainingMs = Math.max(0, deadlineMs - Date.now());
    const catalogDeadlineMs = deadlineMs - Math.min(GRPC_RETURN_MARGIN_MS, remainingMs / 10);
    const failures: string[] = [];
    for (let i = 0; i < addrs.length; i++) {
      const address = addrs[(this.nextGrpcCatalog + i) % addrs.length];
      try {
        const response = await this.catalogGrpc.call(address, grpc, catalogDeadlineMs, signal);
        this.nextGrpcCatalog = (this.nextGrpcCatalog + i) % addrs.length;
        return response;
      } catch (err) {
        if (!(err instanceof CatalogUnreachableError)) throw err;
        failures.push(`${address}: ${err.message}`);
      }
    }
    this.options.logger.warn({ failures, method: grpc.method }, `cannot reach a catalog's gRPC API of ${this.options.datacenter} for a forwarded call`);
    throw new ForwardError(`${NO_SERVER}: no catalog of ${this.options.datacenter} answered (${failures.join('; ')})`, GrpcStatus.UNAVAILABLE);
  }

  /**
   * Asks this datacenter's catalog: on its gRPC port (ForwardedHttpService, one Calls stream per
   * catalog), or on its HTTP API when it has no such service (an older version) or no gRPC address
   * is known. The next catalog is asked when one cannot be reached, and, for a read, when the
   * request was lost on the way; a write that may have been carried out is not sent again.
   * Resolves with the answer as an encoded ForwardResponse: on the gRPC port the catalog's
   * ServeResponse, passed on as it came (the catalog keeps the headers that travel).
   */
  private async serveLocally(request: ForwardEnvelope, deadlineMs: number, signal: Cancellation | undefined): Promise<Uint8Array> {
    const http = request.http;
    if (http === undefined) throw new ForwardError('a forwarded request needs an HTTP request', GrpcStatus.INVALID_ARGUMENT);
    const local = [this.options.datacenter];
    const overHttp = async (failures?: string[]): Promise<Uint8Array> => ForwardResponse.encode({ response: await this.serveOverHttp(decodedHttpRequest(http.bytes), deadlineMs, signal, failures), path: local }).finish();
    const grpcAddrs = Date.now() < this.httpOnlyUntil ? [] : (this.options.catalogGrpcAddrs ?? []);
    const failures: string[] = [];
    let reachedOne = false;
    for (let i = 0; i < grpcAddrs.length; i++) {
      const address = grpcAddrs[(this.nextGrpcCatalog + i) % grpcAddrs.length];
      if (aborted(signal)) throw cancelledByCaller();
      try {
        // The trace context travels in the call's metadata, not in a header.
        const response = await this.catalogGrpc.serveHttp(address, serveRequest(http.bytes), deadlineMs, signal);
        this.nextGrpcCatalog = (this.nextGrpcCatalog + i) % grpcAddrs.length;
        return withPathFirst(local, response);
      } catch (err) {
        if (aborted(signal)) throw cancelledByCaller();
        if (err instanceof NoForwardedHttpError) {
          this.httpOnlyUntil = Date.now() + HTTP_ONLY_MS;
          this.options.logger.warn({ address }, `the catalog at ${address} does not serve forwarded requests on its gRPC port (an older version?): using the catalogs' HTTP API for ${HTTP_ONLY_MS / 1000} s`);
          return overHttp();
        }
        const reason = (err as ServiceError).details || (err as Error).message;
        // The routers pass the HTTP request on undecoded: the catalog is the first to decode it
        // whole, and refuses one that does not decode before running anything. So does every other.
        if (undecodable(err)) throw new ForwardError(UNDECODABLE, GrpcStatus.INTERNAL);
        if (!(err instanceof CatalogUnreachableError)) {
          // It reached a catalog: not sent again unless it changes nothing, and never over HTTP.
          if (!SAFE_METHODS.has(http.method)) throw new ForwardError(`rpc error: the request to the catalog at ${address} failed after it was sent and may or may not have been applied: ${reason}`, GrpcStatus.UNKNOWN);
          reachedOne = true;
        }
        failures.push(`${address}: ${reason}`);
      }
    }
    // No gRPC port answered (a wrong -catalog-grpc-addr, say), and the request reached none: the
    // catalogs' HTTP API may still serve it, writes included.
    if (!reachedOne && (this.options.catalogAddrs.length > 0 || grpcAddrs.length === 0)) return overHttp(failures);
    this.options.logger.warn({ failures }, `cannot reach a catalog of ${this.options.datacenter} for a forwarded request`);
    throw new ForwardError(`${NO_SERVER}: no catalog of ${this.options.datacenter} answered (${failures.join('; ')})`, GrpcStatus.UNAVAILABLE);
  }

  /** Asks this datacenter's catalogs' HTTP API, the next one on a failure; `failures` are the attempts before. */
  private async serveOverHttp(http: HttpRequest, deadlineMs: number, signal: Cancellation | undefined, failures: string[] = []): Promise<HttpResponse> {
    const addrs = this.options.catalogAddrs;
    if (addrs.length === 0) throw new ForwardError(`router has no catalog to ask in ${this.options.datacenter} (-catalog-addr)`, GrpcStatus.UNAVAILABLE);
    for (let i = 0; i < addrs.length; i++) {
      const address = addrs[(this.nextCatalog + i) % addrs.length];
      try {
        if (aborted(signal)) throw cancelledByCaller();
        const response = await this.httpCall(address, http, deadlineMs, signal);
        this.nextCatalog = (this.nextCatalog + i) % addrs.length;
        return response;
      } catch (err) {
        failures.push(`${address}: ${(err as Error).message}`);
      }
    }
    this.options.logger.warn({ failures }, `cannot reach a catalog of ${this.options.datacenter} for a forwarded request`);
    throw new ForwardError(`${NO_SERVER}: no catalog of ${this.options.datacenter} answered (${failures.join('; ')})`, GrpcStatus.UNAVAILABLE);
  }

  private httpCall(address: string, http: HttpRequest, deadlineMs: number, signal: Cancellation | undefined): Promise<HttpResponse> {
    const headers = travellingHeaders(http.headers);
    if (tracing(this.tracer)) propagation.inject(otelContext.active(), headers);
    const [host, port] = address.split(/:(?=\d+$)/);
    const path = http.rawQuery === '' ? http.path : `${http.path}?${http.rawQuery}`;
    const abort = signal === undefined ? undefined : abortSignalOf(signal);
    const answer = new Promise<HttpResponse>((resolve, reject) => {
      const req = httpRequest({ host, port: Number(port), method: http.method, path, headers: Object.assign({}, headers, { 'content-length': String(http.body.length) }), agent: this.agent, timeout: Math.max(1, deadlineMs - Date.now()), signal: abort?.signal }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const out: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
          resolve({ status: res.statusCode ?? 500, headers: returningHeaders(out), body: Buffer.concat(chunks) });
        });
      });
      req.on('timeout', () => req.destroy(new Error('deadline passed')));
      req.on('error', reject);
      req.end(http.body);
    });
    return abort === undefined ? answer : answer.finally(abort.release);
  }

  /** The datacenter as a metric label: this one, one with a route or an area, else "unknown". */
  private datacenterLabel(datacenter: string): string {
    const known = datacenter === this.options.datacenter || this.federation.routes().has(datacenter) || this.store.areas().some((area) => area.peerDatacenter === datacenter);
    return known ? datacenter : 'unknown';
  }

  /**
   * A request from a router of `from`, a datacenter this one is not adjacent to as far as this
   * router knows: its mirror of the areas catches up with the store first (an area the peer
   * already routes through may not have reached it yet), then it is refused, PERMISSION_DENIED.
   */
  private async admitAfterCatchUp(request: Pick<ForwardEnvelope, 'datacenter'>, from: string): Promise<void> {
    await this.store.catchUp();
    if (!this.federation.adjacent(from)) throw this.notAdjacent(request, from);
  }

  private notAdjacent(request: Pick<ForwardEnvelope, 'datacenter'>, from: string): ForwardError {
    this.options.logger.warn({ datacenter: request.datacenter, from }, `refused a request from datacenter ${from}: it has no area with ${this.options.datacenter} and is not in its WAN pool`);
    return new ForwardError(`datacenter "${from}" is not adjacent to "${this.options.datacenter}": no area with it and not in the WAN pool`, GrpcStatus.PERMISSION_DENIED);
  }

  private noPath(request: Pick<ForwardEnvelope, 'datacenter' | 'http' | 'grpc'>, why: string): ForwardError {
    this.options.logger.warn({ datacenter: request.datacenter, path: pathOf(request), why }, `RPC request for DC is currently failing as no path was found (${request.datacenter}: ${why})`);
    return new ForwardError(NO_PATH, GrpcStatus.NOT_FOUND);
  }

  private noServer(request: Pick<ForwardEnvelope, 'datacenter' | 'http' | 'grpc'>, why: string): ForwardError {
    this.options.logger.warn({ datacenter: request.datacenter, path: pathOf(request), why }, `RPC request to DC is currently failing as no server can be reached (${request.datacenter}: ${why})`);
    return new ForwardError(NO_SERVER, GrpcStatus.UNAVAILABLE);
  }
}

/** grpc-js's text for a request it cannot decode; the routers' and the catalogs' answer to one. */
export const UNDECODABLE = 'Error deserializing request';

/** The server refused the call's request as undecodable (it ran nothing). */
function undecodable(err: unknown): boolean {
  const error = err as Partial<ServiceError>;
  return error.code === GrpcStatus.INTERNAL && error.details === UNDECODABLE;
}

/** A forwarded HTTP request's bytes, decoded; refused as grpc-js refuses what it cannot decode. */
function decodedHttpRequest(bytes: Uint8Array): HttpRequest {
  try {
    return HttpRequest.decode(bytes);
  } catch {
    throw new ForwardError(UNDECODABLE, GrpcStatus.INTERNAL);
  }
}

/** What is wrong with the request's shape, or undefined: one HTTP request or one allowed gRPC call. */
function malformedRequest(request: ForwardEnvelope): string | undefined {
  if (request.http === undefined && request.grpc === undefined) return 'a forwarded request needs an HTTP request or a gRPC call';
  if (request.http !== undefined && request.grpc !== undefined) return 'a forwarded request is an HTTP request or a gRPC call, not both';
  if (request.grpc !== undefined) return refusedMethod(request.grpc.method);
  return undefined;
}

/** The request in a log line: its HTTP path, or its gRPC method. */
function pathOf(request: Pick<ForwardEnvelope, 'http' | 'grpc'>): string | undefined {
  return request.grpc?.method ?? request.http?.path;
}

function forwardOutcome(err: unknown): ForwardOutcome {
  const message = (err as Error)?.message ?? '';
  if (message === NO_PATH) return 'no_path';
  if (message.startsWith(NO_SERVER)) return 'no_server';
  return 'error';
}

/** Whether the caller went away (a function, so a check after an await is not narrowed away). */
function aborted(signal: Cancellation | undefined): boolean {
  return signal?.aborted === true;
}

function cancelledByCaller(): ForwardError {
  return new ForwardError('the request was cancelled by its caller', GrpcStatus.CANCELLED);
}

/** When a call must be answered by: its gRPC deadline, or a minute from now when it has none. */
export function deadlineMsOf(call: { getDeadline(): Deadline }): number {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? Number(deadline) : Date.now() + 60_000;
}

/** The metadata that marks an error as the router's answer. */
export function answerMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set(ANSWER_TRAILER, '1');
  return metadata;
}


/** What a router's answer that is not a FederationServiceForwardResponse fails its call with. */
function malformedAnswer(hop: NextHop, error: Error): ServiceError {
  const details = `router ${hop.name} sent an answer that is not a FederationServiceForwardResponse (${error.message})`;
  return Object.assign(new Error(`${GrpcStatus.INTERNAL} INTERNAL: ${details}`), { code: GrpcStatus.INTERNAL, details, metadata: new Metadata() });
}

function isAnswer(err: ServiceError): boolean {
  return err.metadata !== undefined && err.metadata.get(ANSWER_TRAILER).length > 0;
}
