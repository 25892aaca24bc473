/**
 * Where a forwarded read spends its time, hop by hop: dc1 and dc2 (one router each) export their
 * spans to an in-process OTLP receiver; 500 sequential `GET /v1/catalog/service/web?dc=dc2&stale`
 * through dc1's catalog, each its own trace; then the median duration of every span kind on the
 * path. A span's time includes the spans below it: the difference between a span and its child is
 * that hop's own cost (its work plus the network and the wakeups between the two processes).
 *
 *   node dist/bench/federation/hops.js [requests]
 */
import { randomBytes } from 'node:crypto';
import { Agent, get } from 'node:http';

import { startDatacenter } from '../../test/harness/federation';
import { OtlpReceiver } from '../../test/harness/otlp-receiver';
import { eventually, stopAll } from '../../test/harness/processes';
import { makeRouterTls } from '../../test/harness/tls';

const WARMUP = 100;

async function main(): Promise<void> {
  const requests = Number(process.argv[2] ?? 500);
  const receiver = new OtlpReceiver();
  const endpoint = await receiver.start();
  const env = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '200' };
  const tls = makeRouterTls(['dc1', 'dc2']);
  try {
    const [dc1, dc2] = await Promise.all([startDatacenter('dc1', tls, { routers: 1, env, gossipProfile: 'lan' }), startDatacenter('dc2', tls, { routers: 1, env, gossipProfile: 'lan' })]);
    const call = async (base: string, path: string, method: string, body: unknown) => (await fetch(`${base}${path}`, { method, body: JSON.stringify(body) })).json() as Promise<{ ID: string }>;
    const area = await call(dc1.httpAddr, '/v1/operator/area', 'POST', { PeerDatacenter: 'dc2' });
    await call(dc2.httpAddr, '/v1/operator/area', 'POST', { PeerDatacenter: 'dc1' });
    await call(dc1.httpAddr, `/v1/operator/area/${area.ID}/join`, 'PUT', [dc2.routers[0].address]);
    await call(dc2.httpAddr, '/v1/catalog/register', 'PUT', { Node: 'web-1', Address: '10.0.0.1', Service: { Service: 'web', Port: 80 } });
    await eventually('dc1 to reach dc2', async () => (await fetch(`${dc1.httpAddr}/v1/catalog/service/web?dc=dc2`)).status === 200 || undefined, 30_000);

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const host = new URL(dc1.httpAddr).hostname;
    const traces: string[] = [];
    const clientMs: number[] = [];
    for (let i = 0; i < WARMUP + requests; i++) {
      const traceId = randomBytes(16).toString('hex');
      const started = process.hrtime.bigint();
      await new Promise<void>((resolve, reject) =>
        get({ host, port: 8500, path: '/v1/catalog/service/web?dc=dc2&stale', agent, headers: { traceparent: `00-${traceId}-${'1'.repeat(16)}-01` } }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        }).on('error', reject),
      );
      if (i >= WARMUP) {
        traces.push(traceId);
        clientMs.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const wanted = new Set(traces);
    const durations = new Map<string, number[]>();
    for (const span of receiver.spans) {
      if (!wanted.has(span.traceId)) continue;
      const key = `${span.resource.datacenter} ${span.serviceName.replace('consulate-', '')} ${span.kind === 2 ? 'server' : 'client'} ${span.name}`;
      const list = durations.get(key) ?? [];
      list.push(Number(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1e6);
      durations.set(key, list);
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    console.log(`${requests} forwarded ?stale reads, one at a time; the client saw p50 ${median(clientMs).toFixed(3)} ms`);
    for (const [key, values] of [...durations].sort((a, b) => median(b[1]) - median(a[1]))) console.log(`${median(values).toFixed(3).padStart(8)} ms  ${key}`);
  } finally {
    await stopAll();
    await receiver.stop();
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
