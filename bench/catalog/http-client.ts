/**
 * The benchmark's HTTP client: keep-alive agents, one per source loopback address (the catalog
 * admits at most 200 connections per client IP, Consul's http_max_conns_per_client), a bounded
 * request helper, and the closed-loop cell used for every throughput figure (Consulate and the
 * plain node:http ceiling alike).
 */
import { Agent, IncomingHttpHeaders, request } from 'node:http';

import { sleep } from '../children';

export const REQUEST_TIMEOUT_MS = 10_000;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A keep-alive agent whose sockets all leave from `localAddress`. */
export function agentFrom(localAddress: string, maxSockets: number): Agent {
  return new Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxSockets, maxFreeSockets: maxSockets, scheduling: 'fifo', localAddress } as ConstructorParameters<typeof Agent>[0]);
}

export function httpCall(to: Endpoint, agent: Agent, method: string, path: string, body?: Buffer, timeoutMs = REQUEST_TIMEOUT_MS): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = body ? { 'content-length': body.length } : {};
    const req = request({ host: to.host, port: to.port, method, path, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Like httpCall but fails on a non-2xx answer, with its body in the message. */
export async function httpOk(to: Endpoint, agent: Agent, method: string, path: string, body?: Buffer, timeoutMs?: number): Promise<HttpAnswer> {
  const answer = await httpCall(to, agent, method, path, body, timeoutMs);
  if (answer.status < 200 || answer.status > 299) throw new Error(`${method} ${path}: HTTP ${answer.status} ${answer.body.toString().slice(0, 200)}`);
  return answer;
}

export const r2 = (x: number | null | undefined): number | null => (x == null || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);

/** Nearest-rank percentile of an ascending array. */
export function pct(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export interface CellResult {
  readonly label: string;
  readonly conc: number;
  readonly seconds: number;
  readonly ok: number;
  readonly errors: number;
  readonly error_samples: string[];
  readonly rps: number;
  readonly p50_ms: number | null;
  readonly p99_ms: number | null;
  readonly max_ms: number | null;
}

export interface CellOptions {
  readonly durationS: number;
  readonly warmupS: number;
  readonly maxRequests: number;
}

/**
 * `conc` workers, each issuing `one(seq)` back to back for `durationS` seconds after a warm-up of
 * `warmupS` (not recorded), or until `maxRequests`; an error is counted and followed by a 1 ms pause.
 */
export async function closedLoop(label: string, conc: number, o: CellOptions, one: (seq: number) => Promise<void>): Promise<CellResult> {
  let seq = 0;
  const warmEnd = performance.now() + o.warmupS * 1000;
  await Promise.all(Array.from({ length: conc }, async () => {
    for (let i = 0; i < 1_000_000 && performance.now() < warmEnd; i++) {
      try { await one(seq++); } catch { await sleep(1); }
    }
  }));
  const lat: number[] = [];
  const samples = new Map<string, number>();
  let errors = 0;
  let started = 0;
  const t0 = performance.now();
  const end = t0 + o.durationS * 1000;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (performance.now() < end && started < o.maxRequests) {
      started++;
      const s = performance.now();
      try {
        await one(seq++);
        lat.push(performance.now() - s);
      } catch (e) {
        errors++;
        const text = String((e as Error)?.message ?? e).slice(0, 200);
        samples.set(text, (samples.get(text) ?? 0) + 1);
        if (errors > 1000 && lat.length === 0) break; // a broken server: do not spin
        await sleep(1);
      }
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return {
    label, conc, seconds: r2(seconds)!, ok: lat.length, errors,
    error_samples: [...samples.entries()].slice(0, 5).map(([t, k]) => `${k}x ${t}`),
    rps: Math.round(lat.length / seconds),
    p50_ms: r2(pct(lat, 50)), p99_ms: r2(pct(lat, 99)), max_ms: r2(lat[lat.length - 1]),
  };
}

/** One GET, body read and dropped; rejects on anything but 200. The closed loop's unit of work. */
export function getOnce(to: Endpoint, agent: Agent, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: to.host, port: to.port, method: 'GET', path, agent }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET ${path}: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`GET ${path}: no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}
