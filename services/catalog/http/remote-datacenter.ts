/**
 * `?dc=` naming another datacenter (reference/consul-compat.md §3.9): before any handler runs, the
 * HTTP server hands such a request to the datacenter's federation routers (ForwardService.Forward),
 * which carry it to that datacenter's catalog, where it is served as a local request; its answer
 * (status, headers such as X-Consul-Index, body) comes back unchanged. Writes go too, as Consul
 * forwards KV puts and registrations.
 *
 * The request crosses as it came: method, path, the query without `dc`, the headers the remote
 * catalog reads (token, content type), the body (bounded by what one gRPC message holds). A
 * blocking query's deadline covers its wait, as Consul's blockingQuery measures it. When no path
 * exists the answer is Consul's 500 (§3.7): `No path to datacenter` (no route, or no router
 * configured), `Remote DC has no server currently reachable` (a route, but nothing answers behind
 * it); each failed forward is logged with Consul's log text.
 */
import { IncomingHttpHeaders } from 'node:http';

import { status as GrpcStatus } from '@grpc/grpc-js';

import { Cancellation } from '../../lib/cancellation';
import { returningHeaders } from '../../lib/forwarded-headers';
import { GRPC_SERVER_DEFAULTS } from '../../lib/grpc-server';
import { Logger } from '../../lib/log';
import { FORWARD_TIMEOUT_MS, ForwardSlots, NO_SERVER_REACHABLE, RouterAnswerError, RouterCallOptions, RouterClient, blockingTimeoutMs } from '../router-client';
import { NoPathToDatacenterError } from '../state/errors';
import { HttpError } from './http-errors';
import { HttpRequest, HttpResult, MAX_BODY_BYTES, RemoteDatacenters } from './http-server';
import { QueryOptions, parseQueryOptions } from './query-options';

export { FORWARD_TIMEOUT_MS, MAX_FORWARDS_IN_FLIGHT } from '../router-client';

/** A body, with room left in the gRPC message for the path, query and headers. */
export const MAX_FORWARDED_BODY_BYTES = Math.min(MAX_BODY_BYTES, GRPC_SERVER_DEFAULTS.maxMessageBytes - 64 * 1024);


/**
 * Routes Consul answers from the agent itself, whatever `dc` says: the agent's own endpoints and
 * its list of user events (EventList parses no datacenter), and the two lists that already span
 * every datacenter (Catalog.ListDatacenters, Coordinate.ListDatacenters take no datacenter).
 */
const LOCAL_ROUTES: readonly RegExp[] = [/^\/v1\/agent\//, /^\/v1\/catalog\/datacenters$/, /^\/v1\/coordinate\/datacenters$/, /^\/v1\/event\/list$/];

/** Request headers the remote catalog reads; hop-by-hop and trace headers stay (the trace travels in gRPC metadata). */
const FORWARDED_REQUEST_HEADERS = ['content-type', 'accept', 'authorization', 'x-consul-token', 'x-consul-namespace', 'x-consul-partition', 'user-agent'];


const NO_PATH_TO_DATACENTER = new NoPathToDatacenterError().message;

export interface DatacenterForwardingDeps {
  /** This catalog's datacenter: `?dc=` naming it is served here. */
  readonly datacenter: string;
  readonly routers: Pick<RouterClient, 'configured' | 'forward'>;
  readonly logger: Logger;
  /**
   * Forwards in flight, shared with the gRPC API (role.ts); past the limit, a 429 to retry later.
   * Default: slots of this API's own, `maxInFlight` of them (MAX_FORWARDS_IN_FLIGHT).
   */
  readonly slots?: ForwardSlots;
  readonly maxInFlight?: number;
}

export class DatacenterForwarding implements RemoteDatacenters {
  private readonly slots: ForwardSlots;

  constructor(private readonly deps: DatacenterForwardingDeps) {
    this.slots = deps.slots ?? new ForwardSlots(deps.maxInFlight);
  }

  targetOf(route: string, query: URLSearchParams): string | undefined {
    // Consul's parseDC: the first `dc`; empty means the agent's own.
    const datacenter = query.get('dc') ?? '';
    if (datacenter === '' || datacenter === this.deps.datacenter) return undefined;
    if (LOCAL_ROUTES.some((local) => local.test(route))) return undefined;
    return datacenter;
  }

  async forward(datacenter: string, request: HttpRequest): Promise<HttpResult> {
    if (!this.deps.routers.configured) throw this.noPath(datacenter, request, 'no federation router is configured (-router-addr)');
    if (this.slots.inFlight >= this.slots.limit) throw this.tooMany();
    const body = await request.body(MAX_FORWARDED_BODY_BYTES);
    const forwarded = { method: request.method, path: request.path, rawQuery: withoutDatacenter(request.rawQuery), headers: forwardedHeaders(request.headers), body };
    if (!this.slots.tryTake()) throw this.tooMany();
    let answer;
    try {
      answer = await this.deps.routers.forward({ datacenter, request: forwarded }, forwardPolicy(request));
    } catch (err) {
      // Nobody is waiting for the answer: nothing to log or to say.
      if (request.cancellation().aborted) throw new HttpError(499, 'the client closed the request');
      throw this.failed(datacenter, request, err);
    } finally {
      this.slots.release();
    }
    const response = answer.response;
    if (response === undefined || response.status < 100 || response.status > 599) {
      throw this.failed(datacenter, request, new Error(`the router answered without a valid HTTP status (${response?.status ?? 'no response'})`));
    }
    // Only the remote catalog's own headers, whichever version served it (a catalog filters them
    // too, lib/forwarded-headers.ts; the routers pass them on unread).
    return { status: response.status, headers: returningHeaders(response.headers), body: response.body };
  }

  private tooMany(): HttpError {
    return new HttpError(429, `too many requests forwarded to other datacenters at once (${this.slots.limit}); retry later`);
  }

  /** Logs a failed forward (Consul's lines, §3.7) and gives its HTTP answer: always a 500, as Consul's. */
  private failed(datacenter: string, request: HttpRequest, err: unknown): HttpError {
    const reason = (err as Error)?.message ?? String(err);
    if (err instanceof RouterAnswerError && err.code === GrpcStatus.NOT_FOUND) return this.noPath(datacenter, request, reason);
    const fields = { datacenter, method: request.method, path: request.path, reason };
    if (err instanceof RouterAnswerError && err.code === GrpcStatus.UNAVAILABLE) {
      this.deps.logger.warn(fields, 'RPC request to DC is currently failing as no server can be reached');
      return new HttpError(500, NO_SERVER_REACHABLE);
    }
    this.deps.logger.warn(fields, `cannot forward ${request.method} ${request.path} to datacenter ${datacenter}: ${reason}`);
    return new HttpError(500, reason);
  }

  private noPath(datacenter: string, request: HttpRequest, reason: string): HttpError {
    this.deps.logger.warn({ datacenter, method: request.method, path: request.path, reason }, 'RPC request for DC is currently failing as no path was found');
    return new HttpError(500, NO_PATH_TO_DATACENTER);
  }
}

/**
 * How long a forward may take and whether it may go to a second router: a blocking query for its
 * wait (and never twice: the first may still be waiting), a plain read for FORWARD_TIMEOUT_MS, a
 * write only once. Query options the remote catalog would refuse still travel: it answers the 400.
 */
export function forwardPolicy(request: Pick<HttpRequest, 'method' | 'query'> & { readonly cancellation?: () => Cancellation }): RouterCallOptions {
  let options: QueryOptions | undefined;
  try {
    options = parseQueryOptions(request.query, '');
  } catch {
    options = undefined;
  }
  // The client gone, the call down the route is cancelled (a blocking read there stops waiting).
  const signal = request.cancellation?.();
  if (options !== undefined && options.minIndex > 0) return { timeoutMs: blockingTimeoutMs(options.waitMs, FORWARD_TIMEOUT_MS), repeatable: false, readOnly: request.method === 'GET', signal };
  return { timeoutMs: FORWARD_TIMEOUT_MS, repeatable: request.method === 'GET', signal };
}

/** The query as it came, every `dc` parameter left out (HttpRequest.raw_query has none). */
export function withoutDatacenter(rawQuery: string): string {
  return rawQuery
    .split('&')
    .filter((part) => part !== '' && queryKey(part) !== 'dc')
    .join('&');
}

function queryKey(part: string): string {
  const key = part.split('=', 1)[0].replace(/\+/g, ' ');
  try {
    return decodeURIComponent(key);
  } catch {
    return key;
  }
}

function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = headers[name];
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}
