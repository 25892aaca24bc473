/**
 * Gossip at scale, simulated (reference/performance.md G4): the real SWIM core, N members joining
 * one member on a healthy simulated LAN with LAN timings (scale.ts, swim-sim.ts). For each N it
 * prints a row (rounds to converge against log2 N, a late joiner's rounds, steady-state
 * bytes/member/s) and writes everything to bench/results/gossip-sim-<timestamp>.json.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/gossip/sim-scale.js
 *
 * Environment: BENCH_GOSSIP_SIZES (1000,10000), BENCH_GOSSIP_WALL_S (wall-clock budget per size:
 * 360 up to 2,000 members, which is what N = 1,000 needs for every figure on 2 shared cores, and
 * 170 above), BENCH_GOSSIP_HEAP_MB (heap budget, 3000), BENCH_GOSSIP_SEED (1).
 *
 * One process holds all N cores, each with a table of N members, so the run grows as N² in memory
 * and time; a size that runs out of budget reports how far it got (the fraction of the N² member
 * pairs known) instead of its convergence figures.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { lanDefaults } from '../../services/lib/swim/config';
import { measureScale, ScaleResult } from './scale';
import { scaleSeed, seededRng } from './rng';

const env = (key: string, fallback: string) => process.env[key] ?? fallback;
const SIZES = env('BENCH_GOSSIP_SIZES', '1000,10000').split(',').map(Number).filter((n) => n > 0);
const wallBudgetS = (members: number) => Number(env('BENCH_GOSSIP_WALL_S', members <= 2_000 ? '360' : '170'));
const HEAP_MB = Number(env('BENCH_GOSSIP_HEAP_MB', '3000'));
const SEED = Number(env('BENCH_GOSSIP_SEED', '1'));

const REPO = resolve(__dirname, '..', '..', '..');
const RESULTS = join(REPO, 'bench', 'results');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

const fixed = (value: number | undefined, digits = 1) => (value === undefined ? '-' : value.toFixed(digits));

function row(r: ScaleResult): string[] {
  const bytes = r.bytesPerMemberPerSecond;
  return [
    String(r.members),
    r.converged ? fixed(r.roundsToConverge) : `not converged (${r.stoppedBy}): ${(r.knownFraction * 100).toFixed(1)} % of pairs known after ${fixed(r.virtualMs / 1000)} s virtual`,
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
  log(`gossip scale simulation: sizes ${SIZES.join(', ')}, LAN timings, budget ${SIZES.map((n) => `${wallBudgetS(n)} s`).join(' / ')} wall and ${HEAP_MB} MB heap per size, seed ${SEED}`);
  const results: ScaleResult[] = [];
  for (const members of SIZES) {
    log(`N=${members}: ${members} members join one member within 1 s`);
    results.push(
      measureScale({
        members,
        rng: seededRng(scaleSeed(SEED, members)),
        timings,
        wallLimitMs: wallBudgetS(members) * 1000,
        heapLimitBytes: HEAP_MB * 1e6,
        progress: log,
      }),
    );
  }

  const header = ['N', 'rounds to converge (after last join)', 'log2 N', 'late joiner rounds', 'bytes/member/s (datagrams + push/pull)', 'failed / suspect events', 'wall s', 'heap MB'];
  const rows = [header, ...results.map(row)];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write([line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n') + '\n');
  process.stdout.write(
    'rounds = gossip intervals of 200 ms. Bytes are protobuf payloads (wire-codec messageSize / encodeStreamFrame), no UDP/TCP/IP headers,\n' +
      'measured over one push/pull interval once every broadcast queue had drained.\n',
  );

  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `gossip-sim-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ bench: 'gossip-sim-scale', stamp, seed: SEED, timings, wallBudgetS: Object.fromEntries(SIZES.map((n) => [n, wallBudgetS(n)])), heapBudgetMb: HEAP_MB, node: process.version, results }, null, 2) + '\n');
  log(`wrote ${file}`);
}

main();
