// What the catalog's HTTP API tells its metrics: blocking queries in progress (Consul's
// rpc.queries_blocking, blocking.ts), every answer by route pattern (http-server.ts), and
// `/v1/agent/metrics?format=prometheus` (Consul's AgentMetrics, agent-endpoint.ts) from the
// catalog's registry. Over the real HTTP server and a fake consensus store.
import { trace } from '@opentelemetry/api';

import { createLogger } from '../../lib/log';
import { PROMETHEUS_CONTENT_TYPE, RoleMetrics } from '../../lib/metrics';
import { parseExposition, sampleValue } from '../../lib/prometheus-text';
import { LeasedFakeConsensus, kvTestDeps } from '../testing/kv-fake';
import { AgentDeps, ONLY_PROMETHEUS, PROMETHEUS_OFF, registerAgentEndpoints } from './agent-endpoint';
import { BlockingQueries } from './blocking';
import { CatalogHttpServer, HttpRouter } from './http-server';
import { registerKvEndpoints } from './kv-endpoint';

const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' });
const gossip = {} as AgentDeps['gossip'];
const AGENT = { datacenter: 'dc1', node: 'catalog-1', nodeId: '11111111-2222-4333-8444-555555555555', address: '127.0.0.1', gossip };

let consensus: LeasedFakeConsensus;
let blockingQueries: BlockingQueries;
let served: { method: string; route: string; status: number }[];
let server: CatalogHttpServer;
let base: string;
const metrics = new RoleMetrics({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', version: 'test' }, { processMetrics: false });

beforeEach(async () => {
  consensus = new LeasedFakeConsensus();
  blockingQueries = new BlockingQueries();
  served = [];
  const router = new HttpRouter();
  const deps = { ...kvTestDeps(consensus), blockingQueries };
  registerKvEndpoints(router, deps);
  registerAgentEndpoints(router, { ...AGENT, metrics });
  server = new CatalogHttpServer({ router, logger, tracer: trace.getTracer('test'), metrics: { requestServed: (method, route, status) => served.push({ method, route, status }) } });
  base = `http://${await server.listen('127.0.0.1', 0)}`;
});

afterEach(() => server.close());

async function call(method: string, path: string, body?: string): Promise<{ status: number; text: string; type: string | null }> {
  const response = await fetch(`${base}${path}`, { method, body });
  return { status: response.status, text: await response.text(), type: response.headers.get('content-type') };
}

async function eventually(what: string, holds: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !holds(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!holds()) throw new Error(`never: ${what}`);
}

describe('blocking queries in progress', () => {
  test('a read with ?index= counts from arrival to answer; a plain read never counts', async () => {
    await call('PUT', '/v1/kv/web', 'one');
    const index = consensus.fake.revision;
    await call('GET', '/v1/kv/web');
    expect(blockingQueries.waiting).toBe(0);

    const parked = call('GET', `/v1/kv/web?index=${index}&wait=10s`);
    await eventually('the blocking read is parked', () => blockingQueries.waiting === 1);
    await call('PUT', '/v1/kv/web', 'two');
    const answer = await parked;
    expect(answer.status).toBe(200);
    expect(blockingQueries.waiting).toBe(0);
  });

  test('a blocking read that fails stops counting too', async () => {
    await expect(blockingQueries.around(() => Promise.reject(new Error('no leader')))).rejects.toThrow('no leader');
    expect(blockingQueries.waiting).toBe(0);
  });
});

describe('requests by route', () => {
  test('the route is the pattern that matched, never the path; no match is "unknown"', async () => {
    await call('PUT', '/v1/kv/a/b/c', 'x');
    await call('GET', '/v1/kv/a/b/c');
    await call('GET', '/v1/nope/at/all');
    expect(served).toEqual([
      { method: 'PUT', route: '/v1/kv/*key', status: 200 },
      { method: 'GET', route: '/v1/kv/*key', status: 200 },
      { method: 'GET', route: 'unknown', status: 404 },
    ]);
  });
});

describe('/v1/agent/metrics', () => {
  test('?format=prometheus is the catalog registry in the text format 0.0.4', async () => {
    const answer = await call('GET', '/v1/agent/metrics?format=prometheus');
    expect(answer.status).toBe(200);
    expect(answer.type).toBe(PROMETHEUS_CONTENT_TYPE);
    expect(sampleValue(parseExposition(answer.text), 'consulate_build_info', { role: 'catalog', node: 'catalog-1' })).toBe(1);
  });

  test("without it, or without a registry, Consul's 415 says what to ask for", async () => {
    expect(await call('GET', '/v1/agent/metrics')).toMatchObject({ status: 415, text: ONLY_PROMETHEUS });
    const router = new HttpRouter();
    registerAgentEndpoints(router, AGENT);
    const bare = new CatalogHttpServer({ router, logger, tracer: trace.getTracer('test') });
    const address = await bare.listen('127.0.0.1', 0);
    try {
      const response = await fetch(`http://${address}/v1/agent/metrics?format=prometheus`);
      expect({ status: response.status, text: await response.text() }).toEqual({ status: 415, text: PROMETHEUS_OFF });
    } finally {
      await bare.close();
    }
  });
});
