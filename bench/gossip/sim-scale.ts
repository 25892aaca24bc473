/**
 * Gossip at scale, simulated (reference/performance.md G4): the real SWIM core for every member on
 * a healthy simulated LAN with LAN timings (scale.ts, swim-sim.ts). Two kinds of row:
 *
 *   converged   (BENCH_GOSSIP_SIZES, default 1000,10000) the pool starts converged, every table
 *               full and every queue empty: steady-state bytes/member/s, then a late joiner's
 *               rounds until all see it (one broadcast: SWIM's O(log N) case) against log2 N
 *   mass join   (BENCH_GOSSIP_MASS_JOIN_SIZES, default 1000) N members join one within 1 s:
 *               rounds to converge (bandwidth-bound, so past log N), then the same two figures
 *
 *   make bench-gossip-sim        (about 12 min: 10,000 converged takes 4, the 1,000 mass join 5)
 *
 * It writes everything to bench/results/gossip-sim-<timestamp>.json. Environment besides the two
 * size lists: BENCH_GOSSIP_WALL_S (wall-clock budget per row: 360 s up to 2,000 members, 600 above),
 * BENCH_GOSSIP_HEAP_MB (heap budget, 12000: 10,000 tables of 10,000 members take 8 to 10 GB),
 * BENCH_GOSSIP_SEED (1). The script runs itself again with a V8 heap limit above the budget when
 * Node's is lower.
 *
 * One process holds all N cores, each with a table of N members, so the run grows as N² in memory
 * and time; a row that runs out of budget reports how far it got instead of its figures.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { getHeapStatistics } from 'node:v8';

import { lanDefaults } from '../../services/lib/swim/config';
import { measureScale, ScaleResult } from './scale';
import { scaleSeed, seededRng } from './rng';

const env = (key: string, fallback: string) => process.env[key] ?? fallback;
const sizes = (key: string, fallback: string) => env(key, fallback).split(',').map(Number).filter((n) => n > 0);
const CONVERGED_SIZES = sizes('BENCH_GOSSIP_SIZES', '1000,10000');
const MASS_JOIN_SIZES = sizes('BENCH_GOSSIP_MASS_JOIN_SIZES', '1000');
const wallBudgetS = (members: number) => Number(env('BENCH_GOSSIP_WALL_S', members <= 2_000 ? '360' : '600'));
const HEAP_MB = Number(env('BENCH_GOSSIP_HEAP_MB', '12000'));
const SEED = Number(env('BENCH_GOSSIP_SEED', '1'));
/** Room above the budget for what the budget check does not see between its reads. */
const HEAP_HEADROOM_MB = 2_000;

const REPO = resolve(__dirname, '..', '..', '..');
const RESULTS = join(REPO, 'bench', 'results');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

const fixed = (value: number | undefined, digits = 1) => (value === undefined ? '-' : value.toFixed(digits));

function row(r: ScaleResult): string[] {
  const bytes = r.bytesPerMemberPerSecond;
  const converge =
    r.start === 'converged'
      ? '(started converged)'
      : r.converged
        ? fixed(r.roundsToConverge)
        : `not converged (${r.stoppedBy}): ${(r.knownFraction * 100).toFixed(1)} % of pairs known after ${fixed(r.virtualMs / 1000)} s virtual`;
  return [
    String(r.members),
    r.start === 'converged' ? 'converged' : 'mass join',
    converge,
    fixed(r.log2N, 2),
    fixed(r.lateJoinerRounds),
    bytes === undefined ? '-' : `${bytes.total.toFixed(0)} (${bytes.datagrams.toFixed(0)} + ${bytes.streams.toFixed(0)})`,
    `${r.memberFailedEvents} / ${r.suspectEvents}`,
    fixed(r.wallMs / 1000, 0),
    String(r.heapUsedMb),
  ];
}

function main(): void {
  const timings = lanDefaults();
  const plan = [...MASS_JOIN_SIZES.map((members) => ({ members, start: 'mass-join' as const })), ...CONVERGED_SIZES.map((members) => ({ members, start: 'converged' as const }))];
  log(`gossip scale simulation: ${plan.map((p) => `${p.members} (${p.start})`).join(', ')}; LAN timings, ${HEAP_MB} MB heap budget, seed ${SEED}`);
  const results: ScaleResult[] = [];
  for (const { members, start } of plan) {
    log(`N=${members}: ${start === 'mass-join' ? `${members} members join one member within 1 s` : 'a converged pool'}, ${wallBudgetS(members)} s wall budget`);
    results.push(
      measureScale({
        members,
        start,
        rng: seededRng(scaleSeed(SEED, members)),
        timings,
        wallLimitMs: wallBudgetS(members) * 1000,
        heapLimitBytes: HEAP_MB * 1e6,
        progress: log,
      }),
    );
  }

  const header = ['N', 'start', 'rounds to converge (after last join)', 'log2 N', 'late joiner rounds', 'bytes/member/s (datagrams + push/pull)', 'failed / suspect events', 'wall s', 'heap MB'];
  const rows = [header, ...results.map(row)];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write([line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n') + '\n');
  process.stdout.write(
    'rounds = gossip intervals of 200 ms. Bytes are protobuf payloads (wire-codec messageSize / pushPullFrameSize), no UDP/TCP/IP headers,\n' +
      'measured once every broadcast queue had drained: over one push/pull interval after a mass join, over at most 60 s from a converged start.\n',
  );

  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `gossip-sim-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ bench: 'gossip-sim-scale', stamp, seed: SEED, timings, wallBudgetS: Object.fromEntries(plan.map((p) => [p.members, wallBudgetS(p.members)])), heapBudgetMb: HEAP_MB, node: process.version, results }, null, 2) + '\n');
  log(`wrote ${file}`);
}

/** Runs this script again with a V8 heap limit above the budget, when Node's own is lower (once: a Node that caps it runs as it is). */
function withHeapForBudget(): boolean {
  const neededMb = HEAP_MB + HEAP_HEADROOM_MB;
  if (process.env.BENCH_GOSSIP_RESPAWNED === '1' || getHeapStatistics().heap_size_limit / 2 ** 20 >= neededMb) return false;
  const run = spawnSync(process.execPath, [...process.execArgv, `--max-old-space-size=${neededMb}`, __filename], { stdio: 'inherit', env: { ...process.env, BENCH_GOSSIP_RESPAWNED: '1' } });
  process.exitCode = run.status ?? 1;
  return true;
}

if (!withHeapForBudget()) main();
