/**
 * The metrics registry and its endpoint (metrics.ts), read back with the text-format parser
 * (prometheus-text.ts): Prometheus text exposition format 0.0.4, as Prometheus scrapes it
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).
 */
import { request } from 'node:http';

import { ConfigError, loadConfig } from './config';
import { createLogger } from './log';
import { LATENCY_BUCKETS_SECONDS, METRICS_PATH, MetricsServer, PROMETHEUS_CONTENT_TYPE, RoleMetrics, setCountsByStatus } from './metrics';
import { parseExposition, sampleValue } from './prometheus-text';
import { DEFAULT_METRICS_PORTS, commonFields } from './role-process';

const identity = { role: 'consensus', datacenter: 'dc1', node: 'server-1', version: '0.1.0' };
const logger = createLogger({ role: 'consensus', datacenter: 'dc1', node: 'server-1', level: 'silent' });

describe('RoleMetrics', () => {
  test('every line of a scrape parses; build info names the process; process metrics are in', async () => {
    const metrics = new RoleMetrics(identity);
    const scrape = parseExposition(await metrics.text());
    expect(sampleValue(scrape, 'consulate_build_info', { role: 'consensus', datacenter: 'dc1', node: 'server-1', version: '0.1.0' })).toBe(1);
    expect(scrape.types.get('consulate_build_info')).toBe('gauge');
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(scrape.samples.some((sample) => sample.name === name)).toBe(true);
    }
    expect(sampleValue(scrape, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  test('counters, histograms and gauges computed at scrape time', async () => {
    const metrics = new RoleMetrics(identity, { processMetrics: false });
    const requests = metrics.counter({ name: 'consulate_test_requests_total', help: 'Requests.', labelNames: ['route', 'code'] });
    const latency = metrics.histogram({ name: 'consulate_test_duration_seconds', help: 'Latency.' });
    let members = ['alive', 'alive', 'suspect'];
    metrics.gauge({
      name: 'consulate_test_members',
      help: 'Members by status.',
      labelNames: ['segment', 'status'],
      collect: (gauge) => {
        gauge.reset();
        setCountsByStatus(gauge, { segment: '' }, ['alive', 'suspect', 'failed', 'left'], members);
      },
    });
    requests.inc({ route: '/v1/kv/*key', code: '200' });
    requests.inc({ route: '/v1/kv/*key', code: '200' });
    latency.observe(0.003);
    latency.observe(20);

    let scrape = parseExposition(await metrics.text());
    expect(scrape.types.get('consulate_test_requests_total')).toBe('counter');
    expect(sampleValue(scrape, 'consulate_test_requests_total', { route: '/v1/kv/*key', code: '200' })).toBe(2);
    expect(scrape.types.get('consulate_test_duration_seconds')).toBe('histogram');
    expect(sampleValue(scrape, 'consulate_test_duration_seconds_count')).toBe(2);
    expect(sampleValue(scrape, 'consulate_test_duration_seconds_sum')).toBeCloseTo(20.003);
    expect(sampleValue(scrape, 'consulate_test_duration_seconds_bucket', { le: '0.004' })).toBe(1);
    expect(sampleValue(scrape, 'consulate_test_duration_seconds_bucket', { le: '+Inf' })).toBe(2);
    // A status nobody is in reads 0 rather than vanishing.
    expect(sampleValue(scrape, 'consulate_test_members', { segment: '', status: 'alive' })).toBe(2);
    expect(sampleValue(scrape, 'consulate_test_members', { segment: '', status: 'suspect' })).toBe(1);
    expect(sampleValue(scrape, 'consulate_test_members', { segment: '', status: 'failed' })).toBe(0);

    members = ['alive', 'failed', 'failed'];
    scrape = parseExposition(await metrics.text());
    expect(sampleValue(scrape, 'consulate_test_members', { status: 'suspect' })).toBe(0);
    expect(sampleValue(scrape, 'consulate_test_members', { status: 'failed' })).toBe(2);
  });

  test('latency buckets double from 0.5 ms to about 8 s', () => {
    expect(LATENCY_BUCKETS_SECONDS[0]).toBe(0.0005);
    expect(LATENCY_BUCKETS_SECONDS.at(-1)).toBeCloseTo(8.192);
  });

  test('names must carry the prefix, and a counter must end in _total', () => {
    const metrics = new RoleMetrics(identity, { processMetrics: false });
    expect(() => metrics.gauge({ name: 'raft_term', help: 'x' })).toThrow(/start with consulate_/);
    expect(() => metrics.counter({ name: 'consulate_requests', help: 'x' })).toThrow(/must end in _total/);
  });
});

describe('parseExposition', () => {
  test('label values with escapes, and lines it cannot read', () => {
    const parsed = parseExposition(['# HELP a_total A.', '# TYPE a_total counter', 'a_total{path="C:\\\\x",q="say \\"hi\\"",n="a\\nb"} 3', 'b 1.5e3 1700000000'].join('\n'));
    expect(parsed.samples).toEqual([
      { name: 'a_total', labels: { path: 'C:\\x', q: 'say "hi"', n: 'a\nb' }, value: 3 },
      { name: 'b', labels: {}, value: 1500 },
    ]);
    expect(() => parseExposition('not a metric line!')).toThrow(/not a sample line/);
  });
});

describe('MetricsServer', () => {
  let metrics: RoleMetrics;
  let server: MetricsServer;
  let address: string;

  beforeAll(async () => {
    metrics = new RoleMetrics(identity, { processMetrics: false });
    server = new MetricsServer(metrics, logger);
    address = await server.listen('127.0.0.1', 0);
  });
  afterAll(() => server.close());

  function get(path: string, method = 'GET'): Promise<{ status: number; type: string; body: string; allow?: string }> {
    const [host, port] = address.split(':');
    return new Promise((resolve, reject) => {
      const req = request({ host, port: Number(port), path, method }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', body: Buffer.concat(chunks).toString(), allow: res.headers.allow }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  test('GET /metrics answers the text format 0.0.4', async () => {
    const answer = await get(METRICS_PATH);
    expect(answer.status).toBe(200);
    expect(answer.type).toBe(PROMETHEUS_CONTENT_TYPE);
    expect(answer.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sampleValue(parseExposition(answer.body), 'consulate_build_info', { node: 'server-1' })).toBe(1);
  });

  test('HEAD has no body; other methods and paths are refused', async () => {
    expect(await get(METRICS_PATH, 'HEAD')).toMatchObject({ status: 200, body: '' });
    expect(await get(METRICS_PATH, 'POST')).toMatchObject({ status: 405, allow: 'GET, HEAD' });
    expect(await get('/v1/agent/metrics')).toMatchObject({ status: 404, body: '/v1/agent/metrics not found: the metrics are at /metrics\n' });
  });

  test('a port already taken is an error naming the address and the flag', async () => {
    const other = new MetricsServer(metrics, logger);
    await expect(other.listen('127.0.0.1', Number(address.split(':')[1]))).rejects.toThrow(/cannot listen for metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE.*-metrics-port/);
  });
});

describe('-metrics-port', () => {
  test('each role has its own default; 0 turns the listener off; out of range says so', () => {
    const load = (role: string, args: string[]) => loadConfig(commonFields(role), { args, env: {} }).config.metricsPort;
    expect(DEFAULT_METRICS_PORTS).toEqual({ consensus: 9310, gossip: 9320, 'federation-router': 9330, catalog: 9502 });
    for (const [role, port] of Object.entries(DEFAULT_METRICS_PORTS)) expect(load(role, [])).toBe(port);
    expect(load('catalog', ['-metrics-port=0'])).toBe(0);
    expect(load('gossip', ['-metrics-port=19320'])).toBe(19320);
    expect(() => load('gossip', ['-metrics-port=70000'])).toThrow(ConfigError);
    expect(() => load('gossip', ['-metrics-port=70000'])).toThrow(/-metrics-port \("ports.metrics"\): port 70000 is out of range: use 1-65535, or 0 for no metrics listener/);
  });
});
