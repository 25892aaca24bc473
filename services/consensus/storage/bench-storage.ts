/**
 * A one-off measurement of the durable stores, not a test: what a save costs on this machine with
 * LmdbLogStore and WalLogStore, next to the raw cost of one fdatasync, for both commit modes. It
 * prints a table; README.md keeps the numbers of the run that chose the default.
 *
 *   make build && node dist/services/consensus/storage/bench-storage.js [directory]
 *
 * Workloads: 1,000 awaited single-entry saves, and 100 awaited saves of 100 entries, 256-byte
 * payloads, each save carrying the hard state too (as a follower's append does). Between saves
 * the loop turns once (a shell returns to it between Readys); "loop busy" is the event loop
 * utilization meanwhile (perf_hooks): the share of the time the main thread was not free to serve
 * the network and timers.
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { Entry } from '../raft/types';
import { LmdbLogStore } from './lmdb-log-store';
import { LogStore } from './log-store';
import { WalLogStore } from './wal-log-store';

const PAYLOAD = new Uint8Array(256).fill(0x61);

interface Result {
  readonly name: string;
  readonly saves: number;
  readonly entries: number;
  readonly totalMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Event loop utilization, 0..1. */
  readonly loopBusy: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function timed(name: string, saves: number, perSave: number, save: (i: number) => Promise<void>): Promise<Result> {
  const latencies: number[] = [];
  const loopBefore = performance.eventLoopUtilization();
  const start = process.hrtime.bigint();
  for (let i = 0; i < saves; i++) {
    const t = process.hrtime.bigint();
    await save(i);
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const totalMs = Number(process.hrtime.bigint() - start) / 1e6;
  const loop = performance.eventLoopUtilization(loopBefore);
  latencies.sort((a, b) => a - b);
  return {
    name,
    saves,
    entries: saves * perSave,
    totalMs,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    loopBusy: loop.utilization,
  };
}

/** The anchor: write 4 KiB and fdatasync it, 1,000 times. */
async function fdatasyncAnchor(dir: string): Promise<Result> {
  const fd = openSync(path.join(dir, 'anchor'), 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    return await timed('fdatasync 4 KiB (anchor)', 1000, 0, async (i) => {
      writeSync(fd, block, 0, block.length, (i % 16) * 4096);
      fdatasyncSync(fd);
    });
  } finally {
    closeSync(fd);
  }
}

type StoreKind = 'lmdb' | 'wal';

function openStore(kind: StoreKind, dataDir: string, commitMode: 'async' | 'sync'): LogStore {
  return kind === 'lmdb' ? new LmdbLogStore({ dataDir, commitMode }) : new WalLogStore({ dataDir, commitMode });
}

async function storeRuns(dir: string, kind: StoreKind, commitMode: 'async' | 'sync'): Promise<Result[]> {
  const dataDir = path.join(dir, `${kind}-${commitMode}`);
  const name = `${kind} ${commitMode}`;
  const store = openStore(kind, dataDir, commitMode);
  await store.load();
  let next = 1;
  const batch = (count: number): Entry[] =>
    Array.from({ length: count }, () => ({ index: next++, term: 1, kind: 'normal' as const, data: PAYLOAD }));
  const results = [
    await timed(`${name}: 1,000 saves x 1 entry`, 1000, 1, () =>
      store.save({ entries: batch(1), hardState: { term: 1, vote: 'server-1', commit: next - 2 } }),
    ),
    await timed(`${name}: 100 saves x 100 entries`, 100, 100, () =>
      store.save({ entries: batch(100), hardState: { term: 1, vote: 'server-1', commit: next - 101 } }),
    ),
  ];
  await store.close();
  const reopened = openStore(kind, dataDir, commitMode);
  const loadStart = process.hrtime.bigint();
  const loaded = await reopened.load();
  const loadMs = Number(process.hrtime.bigint() - loadStart) / 1e6;
  await reopened.close();
  results.push({ name: `${name}: load() of ${loaded.entries.length} entries`, saves: 1, entries: loaded.entries.length, totalMs: loadMs, p50Ms: loadMs, p99Ms: loadMs, loopBusy: NaN });
  return results;
}

async function main(): Promise<void> {
  const parent = process.argv[2] ?? os.tmpdir();
  const dir = mkdtempSync(path.join(parent, 'consulate-bench-storage-'));
  try {
    const results = [await fdatasyncAnchor(dir)];
    for (const kind of ['lmdb', 'wal'] as const) {
      for (const commitMode of ['async', 'sync'] as const) results.push(...(await storeRuns(dir, kind, commitMode)));
    }
    const rows = results.map((r) => [
      r.name,
      (r.totalMs / r.saves).toFixed(3),
      r.p50Ms.toFixed(3),
      r.p99Ms.toFixed(3),
      r.entries === 0 ? '' : Math.round((r.entries / r.totalMs) * 1000).toLocaleString('en-US'),
      Number.isNaN(r.loopBusy) ? '' : `${Math.round(r.loopBusy * 100)}%`,
    ]);
    const header = ['workload', 'ms/op mean', 'p50', 'p99', 'entries/s', 'loop busy'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
    console.log(`directory ${dir} (${os.cpus().length} cpus, node ${process.version})`);
    console.log(line(header));
    for (const row of rows) console.log(line(row));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
