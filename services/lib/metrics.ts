/**
 * Prometheus metrics for a role process (DESIGN.md Observability): one registry per process with
 * Node's process metrics (prom-client's defaults: CPU, memory, heap, event-loop lag, GC),
 * `consulate_build_info`, and the role's own series, served in the text exposition format 0.0.4
 * on `GET /metrics` of the role's metrics port (`-metrics-port`; role-process.ts starts it).
 *
 * Names follow Consul's and etcd's where they have one, with the `consulate_` prefix. Labels never
 * carry a per-request value: a route is its pattern, not its path; a datacenter is one the router
 * knows; a segment or area is one the process is configured with. Series that describe state
 * (members by status, Raft role) are computed at scrape time by a gauge's `collect`, so they are
 * never stale and cost nothing between scrapes.
 */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';

import { invariant } from './invariant';
import { Logger } from './log';

export const METRIC_PREFIX = 'consulate_';
/** What a scrape answers with: the Prometheus text format, version 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
export const METRICS_PATH = '/metrics';

/** Latencies from 0.5 ms to about 8 s, doubling (etcd's disk and proposal histograms span the same). */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = exponentialBuckets(0.0005, 2, 15);

/**
 * How often the event-loop lag histogram (`nodejs_eventloop_lag_p99_seconds` and the rest) takes a
 * sample. prom-client's default, 10 ms, is a timer that wakes every role process 100 times a second
 * with nothing else to do: 8-10 ms of CPU a second per process on this project's 2-core VM, more
 * than an idle gossip agent spends on gossip. Sampled every 100 ms, a stall of 100 ms or more
 * always shows, a shorter one in proportion to its length.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** Limits of the metrics listener: scrapes are small, few and from a handful of scrapers. */
export const METRICS_SERVER_LIMITS = { maxConnections: 32, requestTimeoutMs: 30_000, headersTimeoutMs: 10_000 };

export interface MetricsIdentity {
  readonly role: string;
  readonly datacenter: string;
  readonly node: string;
  readonly version: string;
}

export interface MetricsOptions {
  /** Node's process metrics (CPU, memory, heap, event-loop lag, GC); on unless a test turns them off. */
  readonly processMetrics?: boolean;
}

interface MetricSpec<L extends string> {
  /** With the `consulate_` prefix; `_total` ends a counter, `_seconds` a duration (Prometheus naming). */
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

/** The metrics of one role process: what roles register their series on and what a scrape reads. */
export class RoleMetrics {
  readonly registry = new Registry();

  constructor(
    readonly identity: MetricsIdentity,
    options: MetricsOptions = {},
  ) {
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    const buildInfo = this.gauge({
      name: 'consulate_build_info',
      help: 'Always 1; the labels say which role, datacenter, node and version this process is.',
      labelNames: ['role', 'datacenter', 'node', 'version'],
    });
    buildInfo.set({ role: identity.role, datacenter: identity.datacenter, node: identity.node, version: identity.version }, 1);
  }

  counter<L extends string = never>(spec: MetricSpec<L>): Counter<L> {
    checkName(spec.name);
    invariant(spec.name.endsWith('_total'), () => `counter ${spec.name} must end in _total`);
    return new Counter<L>({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [this.registry] });
  }

  /** `collect` runs at each scrape, before the value is read: for state computed from the role's own objects. */
  gauge<L extends string = never>(spec: MetricSpec<L> & { readonly collect?: (gauge: Gauge<L>) => void }): Gauge<L> {
    checkName(spec.name);
    const collect = spec.collect;
    return new Gauge<L>({
      name: spec.name,
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      registers: [this.registry],
      ...(collect === undefined
        ? {}
        : {
            collect(this: Gauge<L>) {
              collect(this);
            },
          }),
    });
  }

  histogram<L extends string = never>(spec: MetricSpec<L> & { readonly buckets?: readonly number[] }): Histogram<L> {
    checkName(spec.name);
    return new Histogram<L>({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], buckets: [...(spec.buckets ?? LATENCY_BUCKETS_SECONDS)], registers: [this.registry] });
  }

  /** Every series in the Prometheus text format (PROMETHEUS_CONTENT_TYPE). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

function checkName(name: string): void {
  invariant(name.startsWith(METRIC_PREFIX) && /^[a-z_][a-z0-9_]*$/.test(name), () => `metric name ${name} must be snake_case and start with ${METRIC_PREFIX}`);
}

/**
 * Sets one gauge series per (labels, status) for every status in `statuses`, zeros included, from
 * the members listed now: a status nobody is in reads 0 rather than vanishing from the scrape.
 */
export function setCountsByStatus<L extends string>(gauge: Gauge<L | 'status'>, labels: Partial<Record<L, string>>, statuses: readonly string[], memberStatuses: Iterable<string>): void {
  const counts = new Map(statuses.map((status) => [status, 0]));
  for (const status of memberStatuses) counts.set(status, (counts.get(status) ?? 0) + 1);
  for (const [status, count] of counts) gauge.set({ ...labels, status } as Partial<Record<L | 'status', string>>, count);
}

/** `GET /metrics` of one role on its metrics port; nothing else is served there. */
export class MetricsServer {
  private readonly server: Server;

  constructor(
    private readonly metrics: RoleMetrics,
    private readonly logger: Logger,
  ) {
    this.server = createServer({ requestTimeout: METRICS_SERVER_LIMITS.requestTimeoutMs, headersTimeout: METRICS_SERVER_LIMITS.headersTimeoutMs }, (req, res) => void this.handle(req, res));
    this.server.maxConnections = METRICS_SERVER_LIMITS.maxConnections;
  }

  /** Resolves with host:port once listening; rejects with the address in the message when it cannot. */
  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err) => reject(new Error(`cannot listen for metrics on ${host}:${port}: ${err.message} (set -metrics-port, or 0 for no metrics listener)`)));
      this.server.listen(port, host, () => {
        const address = this.server.address();
        resolve(typeof address === 'object' && address !== null ? `${host}:${address.port}` : `${host}:${port}`);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (path !== METRICS_PATH) return reply(res, 404, `${path} not found: the metrics are at ${METRICS_PATH}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, `method ${req.method} not allowed: use GET\n`, { Allow: 'GET, HEAD' });
    let text: string;
    try {
      text = await this.metrics.text();
    } catch (err) {
      this.logger.error({ err }, `cannot collect metrics: ${(err as Error).message}`);
      return reply(res, 500, `cannot collect metrics: ${(err as Error).message}\n`);
    }
    reply(res, 200, text, { 'Content-Type': PROMETHEUS_CONTENT_TYPE }, req.method === 'HEAD');
  }
}

function reply(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}, headOnly = false): void {
  const bytes = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers, 'Content-Length': bytes.length });
  res.end(headOnly ? undefined : bytes);
}
