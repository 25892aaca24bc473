/**
 * The catalog's HTTP server on 8500: node:http with a small router, Consul's error mapping and
 * JSON conventions (Go field names, `?pretty`), a span per request carrying the caller's W3C
 * trace context, and limits on bodies and on connections per client (Consul's
 * `http_max_conns_per_client` = 200). Handlers are adapters: they parse, call the store, and
 * return a result or throw an HttpError. A request whose `?dc=` names another datacenter never
 * reaches its handler: it goes to that datacenter (remote-datacenter.ts), here, in one place.
 */
import { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { Socket } from 'node:net';

import { Context, INVALID_SPAN_CONTEXT, ROOT_CONTEXT, Span, SpanKind, SpanStatusCode, Tracer, context as otelContext, propagation, trace } from '@opentelemetry/api';

import { Cancellation, ResponseCancellation, abortSignalOf } from '../../lib/cancellation';
import { tracing } from '../../lib/grpc-tracing';
import { Logger } from '../../lib/log';
import { HttpError, badRequest, methodNotAllowed } from './http-errors';

/** Bodies larger than this are refused before they are read (the KV endpoint has its own, smaller, limit). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
export const MAX_CONNS_PER_CLIENT = 200;

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  /** The query string as it came, without the `?`. */
  readonly rawQuery: string;
  readonly headers: IncomingHttpHeaders;
  /** Route parameters: `:name` segments and the `*rest` tail. */
  readonly params: Readonly<Record<string, string>>;
  /**
   * Aborted when the client goes away before its answer (its connection closed, the router's call
   * cancelled). Made on first use: most requests never wait, and never ask.
   */
  signal(): AbortSignal;
  /** The same as signal(), lighter, for what takes a Cancellation (a forward's calls). */
  cancellation(): Cancellation;
  /** The body, read once, refused past `limit` bytes with `tooLarge(length)`'s error. */
  body(limit?: number, tooLarge?: (length: number) => HttpError): Promise<Buffer>;
}

export interface HttpResult {
  readonly status?: number;
  /** JSON-encoded unless a Buffer (raw bytes) or a string with a content type. */
  readonly body?: unknown;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export type HttpHandler = (request: HttpRequest) => Promise<HttpResult>;

interface Route {
  readonly pattern: string;
  readonly segments: readonly string[];
  /** Its second segment when that is a word ("catalog" in /v1/catalog/nodes); undefined for a parameter, a wildcard or none. */
  readonly area: string | undefined;
  readonly handlers: Map<string, HttpHandler>;
}

interface RouteMatch {
  readonly route: Route;
  readonly params: Record<string, string>;
}

/** The span of a request served with tracing off: records nothing. */
const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

export class HttpRouter {
  private readonly routes: Route[] = [];
  /**
   * The routes that can match a path, by its second segment ("catalog" in /v1/catalog/nodes), and
   * those for a segment no route names (the routes with a parameter there): each in the order added.
   */
  private index: { readonly byArea: Map<string, readonly Route[]>; readonly anyArea: readonly Route[] } | undefined;

  /** `pattern`: "/v1/catalog/service/:name", or "/v1/kv/*key" for the rest of the path. */
  on(methods: readonly string[], pattern: string, handler: HttpHandler): this {
    let route = this.routes.find((r) => r.pattern === pattern);
    if (route === undefined) {
      const segments = pattern.split('/').slice(1);
      route = { pattern, segments, area: segments.length > 1 && !/^[:*]/.test(segments[1]) ? segments[1] : undefined, handlers: new Map() };
      this.routes.push(route);
      this.index = undefined;
    }
    for (const method of methods) route.handlers.set(method, handler);
    return this;
  }

  match(path: string): RouteMatch | undefined {
    const parts = path.split('/').slice(1);
    for (const route of this.candidates(parts[1] ?? '')) {
      if (matches(route.segments, parts)) return { route, params: paramsOf(route.segments, parts) };
    }
    return undefined;
  }

  /** The first routes in order are the first that match: each list keeps it, with the routes any area fits. */
  private candidates(area: string): readonly Route[] {
    if (this.index === undefined) {
      const byArea = new Map<string, readonly Route[]>();
      for (const { area: named } of this.routes) {
        if (named !== undefined) byArea.set(named, this.routes.filter(({ area }) => area === undefined || area === named));
      }
      this.index = { byArea, anyArea: this.routes.filter(({ area }) => area === undefined) };
    }
    return this.index.byArea.get(area) ?? this.index.anyArea;
  }
}

/** Whether `parts` fit the route's segments: its words in place, a `:name` for each one part, a `*rest` for the rest. */
function matches(segments: readonly string[], parts: readonly string[]): boolean {
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (segment.startsWith('*')) return true;
    if (i >= parts.length) return false;
    if (!segment.startsWith(':') && segment !== parts[i]) return false;
  }
  return parts.length === segments.length;
}

function paramsOf(segments: readonly string[], parts: readonly string[]): Record<string, string> {
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (segment.startsWith('*')) {
      params[segment.slice(1)] = parts.slice(i).map(decode).join('/');
      break;
    }
    if (segment.startsWith(':')) params[segment.slice(1)] = decode(parts[i]);
  }
  return params;
}

/** Where requests for another datacenter go (remote-datacenter.ts). */
export interface RemoteDatacenters {
  /** The other datacenter a request on `route` asks for with `?dc=`; undefined to serve it here. */
  targetOf(route: string, query: URLSearchParams): string | undefined;
  /** The answer of `datacenter` to the request; failures are HttpErrors with Consul's texts. */
  forward(datacenter: string, request: HttpRequest): Promise<HttpResult>;
}

export interface HttpServerOptions {
  readonly router: HttpRouter;
  readonly logger: Logger;
  readonly tracer: Tracer;
  /** Without it every request is served here, whatever its `?dc=` (endpoint tests). */
  readonly remote?: RemoteDatacenters;
  /** Told of every answer: the route is the pattern that matched ("unknown" for none), never the path. */
  readonly metrics?: { requestServed(method: string, route: string, status: number): void };
}

export class CatalogHttpServer {
  private readonly server: Server;
  private readonly connsPerClient = new Map<string, number>();
  private readonly sockets = new Set<Socket>();

  constructor(private readonly options: HttpServerOptions) {
    this.server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 15 * 60_000 }, (req, res) => void this.handle(req, res));
    this.server.on('connection', (socket: Socket) => this.admit(socket));
  }

  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err) => reject(new Error(`cannot listen for HTTP on ${host}:${port}: ${err.message}`)));
      this.server.listen(port, host, () => {
        const address = this.server.address();
        resolve(typeof address === 'object' && address !== null ? `${host}:${address.port}` : `${host}:${port}`);
      });
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // Blocking queries would hold the close for minutes: cut them.
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private admit(socket: Socket): void {
    const client = socket.remoteAddress ?? '';
    const count = (this.connsPerClient.get(client) ?? 0) + 1;
    if (count > MAX_CONNS_PER_CLIENT) {
      this.options.logger.warn({ client }, `refusing an HTTP connection from ${client}: ${MAX_CONNS_PER_CLIENT} already open (http_max_conns_per_client)`);
      socket.destroy();
      return;
    }
    this.connsPerClient.set(client, count);
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      const left = (this.connsPerClient.get(client) ?? 1) - 1;
      if (left <= 0) this.connsPerClient.delete(client);
      else this.connsPerClient.set(client, left);
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A client that closes its connection before the answer ends the request's blocking wait (and
    // cancels a forward to another datacenter), as Go's request context does for Consul.
    let gone: ResponseCancellation | undefined;
    let signal: AbortSignal | undefined;
    const cancellation = () => (gone ??= new ResponseCancellation(res));
    const answer = await this.serve(
      { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: (limit, tooLarge) => readBody(req, limit, tooLarge), signal: () => (signal ??= abortSignalOf(cancellation()).signal), cancellation },
      ROOT_CONTEXT,
    );
    if (res.headersSent || res.destroyed) return;
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
  }

  /**
   * Serves one request, whether it came on 8500 or from a router (ForwardedHttpService): the
   * route, the span (under the caller's `traceparent` header, else under `caller`: a router's
   * request comes inside its gRPC call's span), the handler or the forward to another datacenter,
   * the metrics, and the answer as it goes on the wire. With tracing off (TRACING_OFF) there is no
   * span, and neither `traceparent` nor `caller` is read.
   */
  async serve(raw: RawRequest, caller: Context = otelContext.active()): Promise<EncodedAnswer> {
    // The URL parser resolves "..": /v1/kv/../agent/self would be served as /v1/agent/self.
    const traversal = traversalProblem(raw.url);
    if (traversal !== undefined) return encode(errorResult(badRequest(traversal), this.options.logger, raw.method, raw.url), false);
    const url = requestUrl(raw.url);
    const found = this.options.router.match(url.pathname);
    if (!tracing(this.options.tracer)) return this.answer(raw, url, found, NO_SPAN);
    const parent = propagation.extract(caller, raw.headers);
    const spanName = `HTTP ${raw.method} ${found?.route.pattern ?? 'unknown'}`;
    return this.options.tracer.startActiveSpan(spanName, { kind: SpanKind.SERVER, attributes: { 'http.request.method': raw.method, 'url.path': url.pathname } }, parent, (span) => this.answer(raw, url, found, span));
  }

  /** The route's handler (or the forward to another datacenter) run, its answer encoded and counted, `span` ended. */
  private async answer(raw: RawRequest, url: RequestUrl, found: RouteMatch | undefined, span: Span): Promise<EncodedAnswer> {
    const method = raw.method;
    let result: HttpResult;
    try {
      if (found === undefined) {
        // Consul's index handler: an unknown path is a 404 with an empty body.
        result = { status: 404, body: Buffer.alloc(0) };
      } else if (method === 'OPTIONS') {
        result = { status: 200, body: Buffer.alloc(0), headers: { Allow: ['OPTIONS', ...found.route.handlers.keys()].join(',') } };
      } else {
        const handler = found.route.handlers.get(method);
        if (handler === undefined) throw methodNotAllowed(method, [...found.route.handlers.keys()]);
        const incoming = request(raw, url, found.params);
        const remote = this.options.remote;
        const datacenter = remote?.targetOf(found.route.pattern, url.searchParams);
        if (datacenter !== undefined) span.setAttribute('datacenter', datacenter);
        // `?dc=` of another datacenter: that datacenter's catalog answers, not this handler.
        const serve = remote !== undefined && datacenter !== undefined ? () => remote.forward(datacenter, incoming) : () => handler(incoming);
        result = await otelContext.with(otelContext.active(), serve);
      }
    } catch (err) {
      result = errorResult(err, this.options.logger, method, url.pathname);
    }
    const status = result.status ?? 200;
    span.setAttribute('http.response.status_code', status);
    this.options.metrics?.requestServed(method, found?.route.pattern ?? 'unknown', status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: typeof result.body === 'string' ? result.body : undefined });
    span.end();
    return encode(result, url.searchParams.has('pretty'));
  }
}

/** A request as it arrived, before routing: from node:http, or from a router. */
export interface RawRequest {
  readonly method: string;
  /** The path and the query string. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Reads the body, refusing it past `limit` bytes with `tooLarge(length)`. */
  body(limit: number, tooLarge: (length: number) => HttpError): Promise<Buffer>;
  /** Aborted when the client goes away before its answer; made on first use. */
  signal(): AbortSignal;
  /** The same, lighter; without it, signal() serves. */
  cancellation?(): Cancellation;
}

/** An answer as it goes on the wire. */
export interface EncodedAnswer {
  readonly status: number;
  readonly headers: Record<string, string | number>;
  readonly body: Buffer;
}

/** What the server reads of a request's URL: its path, its query, and the query as it came (with its `?`). */
export interface RequestUrl {
  readonly pathname: string;
  readonly searchParams: URLSearchParams;
  readonly search: string;
}

/**
 * Characters a path and query may hold that the URL parser leaves as they are. With only these, no
 * `.` segment and no `%2e`, a request's URL is its path and query as they came, and is split
 * without the URL parser (about 0.5 µs a request, twice on a forwarded one); anything else goes
 * through it. request-url.test.ts holds the two to the same answers.
 */
const PLAIN_URL = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*(\?[A-Za-z0-9\-._~!$&()*+,;=:@/%?]*)?$/;

export function requestUrl(raw: string): RequestUrl {
  const query = raw.indexOf('?');
  const path = query < 0 ? raw : raw.slice(0, query);
  if (!PLAIN_URL.test(raw) || path.includes('/.') || /%2e/i.test(path)) return new URL(raw, 'http://catalog');
  if (query < 0) return { pathname: raw, searchParams: new URLSearchParams(), search: '' };
  const search = raw.length > query + 1 ? raw.slice(query) : '';
  return { pathname: path, searchParams: new URLSearchParams(search), search };
}

function request(raw: RawRequest, url: RequestUrl, params: Record<string, string>): HttpRequest {
  let read: Promise<Buffer> | undefined;
  return {
    method: raw.method,
    path: url.pathname,
    query: url.searchParams,
    rawQuery: url.search.slice(1),
    headers: raw.headers,
    params,
    signal: () => raw.signal(),
    cancellation: () => raw.cancellation?.() ?? raw.signal(),
    body(limit = MAX_BODY_BYTES, tooLarge = (length) => new HttpError(413, `Request body(${length} bytes) too large, max size: ${limit} bytes`)) {
      read ??= raw.body(limit, tooLarge);
      return read;
    },
  };
}

function readBody(req: IncomingMessage, limit: number, tooLarge: (length: number) => HttpError): Promise<Buffer> {
  // A request with neither header has no body (RFC 9112 §6.3): nothing to wait for. Node discards
  // what a handler leaves unread.
  if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return Promise.resolve(NO_BODY);
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(declared));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      length += chunk.length;
      if (length > limit) {
        failed = true;
        reject(tooLarge(length));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
    });
  });
}

const NO_BODY: Buffer = Buffer.alloc(0);

function errorResult(err: unknown, logger: Logger, method: string, path: string): HttpResult {
  if (err instanceof HttpError) return { status: err.status, body: err.message, contentType: 'text/plain; charset=utf-8', headers: err.headers };
  const message = (err as Error)?.message ?? String(err);
  logger.error({ err, method, path }, `request failed: ${method} ${path}: ${message}`);
  return { status: 500, body: message, contentType: 'text/plain; charset=utf-8' };
}

function encode(result: HttpResult, pretty: boolean): EncodedAnswer {
  let body: Buffer;
  let contentType = result.contentType;
  if (Buffer.isBuffer(result.body)) body = result.body;
  else if (typeof result.body === 'string' && contentType !== undefined) body = Buffer.from(result.body);
  else {
    body = Buffer.from(toJson(result.body ?? null, pretty));
    contentType ??= 'application/json';
  }
  // Object.assign, not a spread followed by more: that leaves V8's fast path, on every answer.
  const headers: Record<string, string | number> = Object.assign({}, result.headers, { 'Content-Length': body.length });
  if (contentType !== undefined && body.length > 0) headers['Content-Type'] = contentType;
  return { status: result.status ?? 200, headers, body };
}

const BIGINT_MARK = '\u0000bigint:';

/** JSON as Go writes it; 64-bit integers (KV Flags, an area member's RTT) as exact numbers; `?pretty` indents four spaces. */
export function toJson(value: unknown, pretty = false): string {
  const text = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${BIGINT_MARK}${v}` : v), pretty ? 4 : undefined);
  const exact = text.replace(/"\\u0000bigint:(-?\d+)"/g, '$1');
  return pretty ? `${exact}\n` : exact;
}

/**
 * Consul's 400 texts for a raw request path that would climb out of its route (agent/kvs_endpoint.go).
 * The encoded forms are every segment that decodes to "..": the URL parser takes ".%2E" as ".." too.
 */
function traversalProblem(rawUrl: string): string | undefined {
  const query = rawUrl.indexOf('?');
  const path = query < 0 ? rawUrl : rawUrl.slice(0, query);
  if (path.includes('../') || path.includes('..\\') || path.endsWith('/..')) return 'URL path contains invalid traversal sequence';
  // What is left is encoded; most paths have nothing encoded, and are not decoded here.
  if (!path.includes('%')) return undefined;
  const climbs = (segment: string) => {
    const decoded = decode(segment);
    return decoded === '..' || decoded.includes('../') || decoded.includes('..\\');
  };
  if (path.toLowerCase().includes('%252e%252e%252f') || path.split('/').some(climbs)) return 'URL path contains encoded traversal sequence';
  return undefined;
}

function decode(component: string): string {
  try {
    return decodeURIComponent(component);
  } catch {
    return component;
  }
}
