/**
 * Sequential latency (concurrency 1) of several reads taking turns in blocks: block b of every
 * variant runs before block b + 1 of any, and the variant that starts a turn rotates, so a busy
 * moment on the box (2 shared cores) falls on every variant alike. A warm-up of each variant
 * runs first, in the same turns, kept apart: V8 compiles the code on the path as it runs, and a
 * forwarded read crosses four processes that each must get there (2026-12-03: forwarded `?stale`
 * p50 4.6 ms over the first 500 reads, 1.6 ms from about the 5,000th on). Its block medians are in
 * the result, so the transient stays visible. Bounded by a request count and a wall-clock limit.
 */
import { Agent } from 'node:http';

import { Endpoint, getOnce, pct, r2 } from '../catalog/http-client';

export interface LatencyVariant {
  readonly label: string;
  readonly to: Endpoint;
  readonly agent: Agent;
  readonly path: string;
}

export interface LatencySummary {
  readonly label: string;
  readonly path: string;
  readonly ok: number;
  readonly errors: number;
  readonly error_samples: string[];
  readonly p50_ms: number | null;
  readonly p90_ms: number | null;
  readonly p99_ms: number | null;
  readonly max_ms: number | null;
  readonly mean_ms: number | null;
  /** Each block's median, in order: the drift of the box over the phase. */
  readonly block_p50_ms: (number | null)[];
  /** The same for the warm-up's blocks (not in the percentiles above). */
  readonly warmup_block_p50_ms: (number | null)[];
  /** With LatencyOptions.cpu: µs of CPU per answered request over the measured blocks, by group. */
  readonly cpu_us_per_request?: Record<string, number>;
}

export interface LatencyOptions {
  readonly requests: number;
  readonly warmup: number;
  readonly block: number;
  /** The phase stops here, whatever is left, and says so. */
  readonly wallLimitMs: number;
  /**
   * CPU used so far, ms by group (processes, the client): read around each measured block, so each
   * variant's requests are charged what every process spent while they ran.
   */
  readonly cpu?: () => Record<string, number>;
}

export interface LatencyResult {
  readonly variants: LatencySummary[];
  readonly seconds: number;
  readonly stopped_by_wall_limit: boolean;
}

async function blockOf(v: LatencyVariant, n: number, into: number[] | undefined, errors: Map<string, number>): Promise<number> {
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    try {
      await getOnce(v.to, v.agent, v.path);
      into?.push(performance.now() - s);
    } catch (e) {
      failed++;
      const text = String((e as Error)?.message ?? e).slice(0, 200);
      errors.set(text, (errors.get(text) ?? 0) + 1);
    }
  }
  return failed;
}

/** A block's median, ms to two places (null for a block with no answers); `xs` is left as it was. */
function medianOf(xs: readonly number[]): number | null {
  return r2(pct([...xs].sort((a, b) => a - b), 50));
}

export async function alternatedLatency(variants: readonly LatencyVariant[], o: LatencyOptions, log: (line: string) => void): Promise<LatencyResult> {
  const t0 = performance.now();
  const deadline = t0 + o.wallLimitMs;
  const lat = variants.map(() => [] as number[]);
  const blocks = variants.map(() => [] as (number | null)[]);
  const errors = variants.map(() => new Map<string, number>());
  const failed = variants.map(() => 0);
  const block = Math.max(1, Math.min(o.block, o.requests || 1));
  const warmupBlocks = variants.map(() => [] as (number | null)[]);
  const cpuMs = variants.map(() => ({}) as Record<string, number>);
  // Warm-up: the same turns, only block medians kept; errors there only count toward giving up.
  for (let done = 0, turn = 0; done < o.warmup && performance.now() < deadline; done += block, turn++) {
    for (let j = 0; j < variants.length; j++) {
      const i = (turn + j) % variants.length;
      const n = Math.min(block, o.warmup - done);
      const into: number[] = [];
      if ((await blockOf(variants[i], n, into, new Map())) === n) throw new Error(`warm-up: every request of a block of ${variants[i].label} (${variants[i].path}) failed`);
      warmupBlocks[i].push(medianOf(into));
    }
  }
  let stopped = false;
  for (let done = 0, turn = 0; done < o.requests; done += block, turn++) {
    if (performance.now() >= deadline) {
      stopped = true;
      log(`latency: wall limit of ${o.wallLimitMs / 1000} s reached after ${done} requests per variant`);
      break;
    }
    for (let j = 0; j < variants.length; j++) {
      const i = (turn + j) % variants.length;
      const into: number[] = [];
      const before = o.cpu?.();
      failed[i] += await blockOf(variants[i], Math.min(block, o.requests - done), into, errors[i]);
      if (before !== undefined) for (const [group, ms] of Object.entries(o.cpu!())) cpuMs[i][group] = (cpuMs[i][group] ?? 0) + ms - before[group];
      lat[i].push(...into);
      blocks[i].push(medianOf(into));
      if (failed[i] > 100 && lat[i].length === 0) throw new Error(`${variants[i].label}: ${failed[i]} requests failed and none answered: ${[...errors[i].keys()][0]}`);
    }
  }
  const variantsOut = variants.map((v, i) => {
    const xs = lat[i].sort((a, b) => a - b);
    return {
      label: v.label, path: v.path, ok: xs.length, errors: failed[i],
      error_samples: [...errors[i].entries()].slice(0, 5).map(([t, k]) => `${k}x ${t}`),
      p50_ms: r2(pct(xs, 50)), p90_ms: r2(pct(xs, 90)), p99_ms: r2(pct(xs, 99)), max_ms: r2(xs[xs.length - 1]),
      mean_ms: xs.length ? r2(xs.reduce((a, b) => a + b, 0) / xs.length) : null,
      block_p50_ms: blocks[i],
      warmup_block_p50_ms: warmupBlocks[i],
      cpu_us_per_request: o.cpu === undefined || xs.length === 0 ? undefined : Object.fromEntries(Object.entries(cpuMs[i]).map(([group, ms]) => [group, Math.round((ms * 1000) / xs.length)])),
    };
  });
  return { variants: variantsOut, seconds: r2((performance.now() - t0) / 1000)!, stopped_by_wall_limit: stopped };
}
