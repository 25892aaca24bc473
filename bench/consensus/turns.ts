/**
 * The concurrency-1 cells again with both clusters up at once, taking turns: round after round,
 * each client (etcd, Consulate with a unary call per request, Consulate on its Calls stream) sends
 * a block of requests one at a time, the client that opens a round rotating. The cells run one
 * system after the other, minutes apart, and this shared 2-core VM drifts by 30 % and more within
 * minutes (etcd's own put p50 went from 1.08 to 2.24 ms between runs of one day), which is the
 * whole difference at c=1. Taking turns puts every system in the same minutes, so a slow moment
 * falls on all alike, as the federation benchmark's latency phase does for its two reads.
 *
 * Each block is timed per request; the result per variant is the p50/p99 over all its samples and
 * the median of its per-round p50s, and the ratio is taken of the pooled p50s.
 */
import { CellApi, KEY_SPACE, Op, doOp, pct, r2 } from './load';
import { BenchCluster, KvClient } from './types';

export interface TurnsOptions {
  /** Rounds; every variant runs one block per round. */
  readonly rounds: number;
  /** Requests per block. */
  readonly block: number;
  /** Unrecorded requests per variant before the first round. */
  readonly warmup: number;
}

export interface TurnsVariant {
  readonly system: 'etcd' | 'consulate';
  readonly api: CellApi;
  readonly op: Op;
  samples: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  /** The median of the rounds' own p50s, and their range. */
  round_p50_median_ms: number | null;
  round_p50_min_ms: number | null;
  round_p50_max_ms: number | null;
  /** Every round's p50, in order: a drift or a warm-up still going on shows here. */
  round_p50s_ms: (number | null)[];
}

interface Runner {
  readonly system: 'etcd' | 'consulate';
  readonly api: CellApi;
  readonly client: KvClient;
}

/**
 * Runs the turns for `ops` against the two clusters, both started and healthy, each client bound to
 * its cluster's leader; `log` gets a line per op.
 */
export async function runTurns(etcd: BenchCluster, consulate: BenchCluster, ops: readonly Op[], options: TurnsOptions, log: (line: string) => void): Promise<TurnsVariant[]> {
  const etcdLeader = await etcd.leader();
  const consulateLeader = await consulate.leader();
  const runners: Runner[] = [
    { system: 'etcd', api: 'unary', client: etcd.client(etcdLeader) },
    { system: 'consulate', api: 'unary', client: consulate.client(consulateLeader) },
  ];
  if (consulate.streamClient !== undefined) runners.push({ system: 'consulate', api: 'calls', client: consulate.streamClient(consulateLeader) });
  const results: TurnsVariant[] = [];
  try {
    let seq = Math.floor(Math.random() * KEY_SPACE);
    for (const op of ops) {
      for (const runner of runners) await timedBlock(runner.client, op, options.warmup, () => seq++);
      const samples = runners.map(() => [] as number[]);
      const roundP50s = runners.map(() => [] as number[]);
      const errors = runners.map(() => 0);
      for (let round = 0; round < options.rounds; round++) {
        for (let turn = 0; turn < runners.length; turn++) {
          const which = (round + turn) % runners.length;
          const block = await timedBlock(runners[which].client, op, options.block, () => seq++);
          errors[which] += block.errors;
          for (const ms of block.latencies) samples[which].push(ms);
          const sorted = [...block.latencies].sort((a, b) => a - b);
          const p50 = pct(sorted, 50);
          if (p50 !== null) roundP50s[which].push(p50);
        }
      }
      runners.forEach((runner, i) => {
        const sorted = samples[i].sort((a, b) => a - b);
        const rounds = [...roundP50s[i]].sort((a, b) => a - b);
        results.push({
          system: runner.system,
          api: runner.api,
          op,
          samples: sorted.length,
          errors: errors[i],
          p50_ms: r2(pct(sorted, 50)),
          p99_ms: r2(pct(sorted, 99)),
          round_p50_median_ms: r2(pct(rounds, 50)),
          round_p50_min_ms: r2(rounds[0]),
          round_p50_max_ms: r2(rounds[rounds.length - 1]),
          round_p50s_ms: roundP50s[i].map(r2),
        });
      });
      const line = results.filter((variant) => variant.op === op).map((variant) => `${variant.system}${variant.api === 'calls' ? ' (Calls)' : ''} p50 ${variant.p50_ms} ms [rounds ${variant.round_p50_min_ms}-${variant.round_p50_max_ms}]${variant.errors > 0 ? `, ${variant.errors} errors` : ''}`);
      log(`[turns] ${op} c1, ${options.rounds} rounds of ${options.block}: ${line.join('; ')}`);
    }
  } finally {
    for (const runner of runners) runner.client.close();
  }
  return results;
}

/** `count` requests one at a time; the latency of each that succeeded. Bounded: a block gives up after 100 errors. */
async function timedBlock(client: KvClient, op: Op, count: number, nextSeq: () => number): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  for (let i = 0; i < count && errors < 100; i++) {
    const start = performance.now();
    try {
      await doOp(client, op, nextSeq());
      latencies.push(performance.now() - start);
    } catch {
      errors++;
    }
  }
  return { latencies, errors };
}
