/**
 * Every role's `GET /metrics` with real processes (DESIGN.md Observability): the Prometheus text
 * format 0.0.4 on the role's own metrics port of its -bind address, so roles sharing a host (a
 * server runs consensus and gossip) never collide.
 *
 *   server-1   consensus (metrics :9310), gossip server agent (:9320)
 *   catalog    catalog (HTTP :8500, metrics :9502), a gossip client agent with -metrics-port=0
 *   router     federation-router (metrics :9330)
 *
 * A KV write shows in the Raft commit histogram; a blocking read shows as one blocking query, then
 * none once a write wakes it (Consul's rpc.queries_blocking); a `?dc=` nobody knows shows as a
 * no_path forward under "unknown", never under the name asked for.
 */
import { DEFAULT_METRICS_PORTS } from '../../services/lib/role-process';
import { PROMETHEUS_CONTENT_TYPE } from '../../services/lib/metrics';
import { ParsedExposition, parseExposition, sampleValue } from '../../services/lib/prometheus-text';
import { Answer, send } from '../../services/catalog/testing/http-harness';
import { RoleProcess, eventually, freeLoopbackAddress, logRecords, startRole, stopAll } from '../harness/processes';
import { makeRouterTls } from '../harness/tls';

const PROFILE = '-gossip-profile=local';
const serverHost = freeLoopbackAddress();
const catalogHost = freeLoopbackAddress();
const routerHost = freeLoopbackAddress();

let consensus: RoleProcess;
let serverGossip: RoleProcess;
let clientGossip: RoleProcess;
let router: RoleProcess;
let catalog: RoleProcess;

function http(method: string, path: string, body?: unknown): Promise<Answer> {
  return send(`${catalogHost}:8500`, method, path, body);
}

async function scrape(proc: RoleProcess): Promise<ParsedExposition> {
  const response = await fetch(`http://${proc.address}:${DEFAULT_METRICS_PORTS[proc.role]}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE);
  return parseExposition(await response.text());
}

function listenersOf(proc: RoleProcess): Record<string, string> {
  const started = logRecords(proc).find((record) => record.event === 'started');
  return (started?.listeners ?? {}) as Record<string, string>;
}

beforeAll(async () => {
  const tls = makeRouterTls(['dc1']);
  [consensus, serverGossip] = await Promise.all([
    startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] }),
    startRole({ role: 'gossip', node: 'server-1', address: serverHost, args: ['-server', PROFILE] }),
  ]);
  [clientGossip, router, catalog] = await Promise.all([
    startRole({ role: 'gossip', node: 'catalog', address: catalogHost, args: [`-join=${serverHost}:8301`, PROFILE, '-metrics-port=0'] }),
    startRole({ role: 'federation-router', node: 'router-1', address: routerHost, args: [`-consensus-addr=${consensus.grpc}`, `-catalog-addr=${catalogHost}:8500`, ...tls.args('dc1')] }),
    startRole({ role: 'catalog', node: 'catalog', address: catalogHost, args: [`-consensus-addr=${consensus.grpc}`, `-gossip-addr=${serverGossip.grpc}`, `-router-addr=${routerHost}:8330`] }),
  ]);
  await eventually('the catalog to answer a KV write', async () => (await http('PUT', '/v1/kv/metrics/probe', 'x')).status === 200 || undefined, 20_000);
});

afterAll(stopAll);

test("each role lists its metrics listener on its own port; -metrics-port=0 has none", () => {
  expect(listenersOf(consensus).metrics).toBe(`${serverHost}:9310`);
  expect(listenersOf(serverGossip).metrics).toBe(`${serverHost}:9320`);
  expect(listenersOf(router).metrics).toBe(`${routerHost}:9330`);
  expect(listenersOf(catalog).metrics).toBe(`${catalogHost}:9502`);
  expect(listenersOf(clientGossip)).not.toHaveProperty('metrics');
});

test('consensus: a write is in the commit histogram; the one server leads', async () => {
  const before = (await scrape(consensus)).samples;
  const countBefore = before.find((s) => s.name === 'consulate_raft_commit_duration_seconds_count')?.value ?? 0;
  expect((await http('PUT', '/v1/kv/metrics/written', 'hello')).status).toBe(200);

  const metrics = await scrape(consensus);
  expect(sampleValue(metrics, 'consulate_raft_commit_duration_seconds_count')).toBeGreaterThanOrEqual(Math.max(1, countBefore + 1));
  expect(sampleValue(metrics, 'consulate_raft_commit_duration_seconds_sum')).toBeGreaterThan(0);
  expect(sampleValue(metrics, 'consulate_raft_commit_duration_seconds_bucket', { le: '+Inf' })).toBe(sampleValue(metrics, 'consulate_raft_commit_duration_seconds_count'));
  expect(sampleValue(metrics, 'consulate_raft_fsync_duration_seconds_count')).toBeGreaterThanOrEqual(1);
  expect(sampleValue(metrics, 'consulate_raft_is_leader')).toBe(1);
  expect(sampleValue(metrics, 'consulate_raft_term')).toBeGreaterThanOrEqual(1);
  expect(sampleValue(metrics, 'consulate_raft_leader_changes_total')).toBeGreaterThanOrEqual(1);
  expect(sampleValue(metrics, 'consulate_raft_applied_index')).toBeGreaterThanOrEqual(1);
  expect(sampleValue(metrics, 'consulate_build_info', { role: 'consensus', datacenter: 'dc1', node: 'server-1' })).toBe(1);
  for (const name of ['process_cpu_seconds_total', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) expect(metrics.samples.some((s) => s.name === name)).toBe(true);
});

test('gossip: the server agent counts itself and the client alive, none failed', async () => {
  const metrics = await eventually('both agents alive in the default pool', async () => {
    const scraped = await scrape(serverGossip);
    return (sampleValue(scraped, 'consulate_gossip_members', { segment: '', status: 'alive' }) ?? 0) >= 2 ? scraped : undefined;
  });
  expect(sampleValue(metrics, 'consulate_gossip_members', { segment: '', status: 'failed' })).toBe(0);
  expect(sampleValue(metrics, 'consulate_gossip_members', { segment: '', status: 'left' })).toBe(0);
  expect(sampleValue(metrics, 'consulate_build_info', { role: 'gossip' })).toBe(1);
});

test('catalog: a blocking read counts as one blocking query until a write wakes it', async () => {
  const first = await http('GET', '/v1/kv/metrics/blocking-key');
  const index = Number(first.headers['x-consul-index']);
  expect(index).toBeGreaterThanOrEqual(1);
  const waiting = async () => sampleValue(await scrape(catalog), 'consulate_catalog_blocking_queries_waiting');
  expect(await waiting()).toBe(0);

  const blocked = http('GET', `/v1/kv/metrics/blocking-key?index=${index}&wait=30s`);
  await eventually('one blocking query waiting', async () => (await waiting()) === 1 || undefined);
  expect((await http('PUT', '/v1/kv/metrics/blocking-key', 'wake')).status).toBe(200);
  expect((await blocked).status).toBe(200);
  await eventually('no blocking query waiting', async () => (await waiting()) === 0 || undefined);

  const metrics = await scrape(catalog);
  expect(sampleValue(metrics, 'consulate_http_requests_total', { method: 'PUT', route: '/v1/kv/*key', code: '200' })).toBeGreaterThanOrEqual(2);
  expect(sampleValue(metrics, 'consulate_http_requests_total', { method: 'GET', route: '/v1/kv/*key', code: '200' })).toBeGreaterThanOrEqual(1);
  // Paths never become labels.
  expect(metrics.samples.filter((s) => s.name === 'consulate_http_requests_total').every((s) => !s.labels.route.includes('metrics/'))).toBe(true);
});

test("catalog: Consul's /v1/agent/metrics?format=prometheus serves the same registry on 8500", async () => {
  const answer = await http('GET', '/v1/agent/metrics?format=prometheus');
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toBe(PROMETHEUS_CONTENT_TYPE);
  const metrics = parseExposition(answer.text);
  expect(sampleValue(metrics, 'consulate_build_info', { role: 'catalog', node: 'catalog' })).toBe(1);
  expect(sampleValue(metrics, 'consulate_catalog_blocking_queries_waiting')).toBe(0);
  // The idle-time scavenger runs in every catalog (-idle-gc, on by default).
  expect(sampleValue(metrics, 'consulate_idle_gc_total')).toBeGreaterThanOrEqual(0);
  expect(sampleValue(metrics, 'consulate_idle_gc_seconds_total')).toBeGreaterThanOrEqual(0);
});

test('router: a ?dc= nobody knows is a no_path forward under "unknown"; the WAN pool has this router', async () => {
  const answer = await http('GET', '/v1/catalog/nodes?dc=dc-nowhere');
  expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: 'No path to datacenter' });
  const metrics = await scrape(router);
  expect(sampleValue(metrics, 'consulate_router_forwarded_requests_total', { datacenter: 'unknown', outcome: 'no_path' })).toBeGreaterThanOrEqual(1);
  expect(metrics.samples.some((s) => s.labels.datacenter === 'dc-nowhere')).toBe(false);
  expect(sampleValue(metrics, 'consulate_router_forward_duration_seconds_count', { datacenter: 'unknown' })).toBeGreaterThanOrEqual(1);
  expect(sampleValue(metrics, 'consulate_router_area_members', { area: 'wan', status: 'alive' })).toBe(1);
});
