/**
 * `make bench-consensus`: the same 3-server loopback shape and the same client harness (load.ts)
 * against etcd 3.4 (Debian) and Consulate, one after the other (never at the same time). Prints
 * a table with the ratio Consulate / etcd per row and writes bench/results/consensus-<ts>.json.
 *
 * Environment knobs: BENCH_DURATION_S (4), BENCH_WARMUP_S (1), BENCH_CONCS (1,16,64),
 * BENCH_MAX_REQUESTS (200000), BENCH_WATCHERS (1,100,1000), BENCH_WATCH_SHAPES (stream-per-watcher,shared-stream), BENCH_WATCH_PUTS (100),
 * BENCH_FAILOVER_ROUNDS (3), BENCH_SYSTEMS (etcd,consulate), BENCH_STREAM_CELLS (1: Consulate's cells
 * again through its KVService.Calls stream, beside etcd's unary ones), BENCH_CONSULATE_ARGS (more
 * Consulate server flags, space-separated, for an A/B of a setting), BENCH_SLOW_LEADER_IOPS (50;
 * 0 skips: the put cells again with the leader's disk throttled to this many writes a second,
 * slow-disk.ts, where root and cgroup v1 blkio allow), BENCH_TURNS_ROUNDS (10; 0 skips: the c=1 cells
 * again with both clusters up, taking turns, turns.ts), BENCH_TURNS_BLOCK (200), BENCH_TURNS_WARMUP
 * (3,000 unrecorded requests per client and op first: V8 optimizes the servers' path only after some
 * thousands of calls; etcd gets the same).
 */
import { execSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';

import { TRACING_NOTE } from '../children';
import { ConsulateCluster } from './consulate';
import { SlowDisk } from './slow-disk';
import { TurnsOptions, TurnsVariant, runTurns } from './turns';
import { EtcdCluster } from './etcd';
import { CellApi, CellOptions, CellResult, FailoverRound, Op, WatchResult, prepopulate, runCell, runFailover, runWatch, WatchShape } from './load';
import { BenchCluster, killAllChildrenSync, tail, unexpectedExits } from './types';

const env = (k: string, d: string) => process.env[k] ?? d;
const num = (k: string, d: number) => Number(env(k, String(d)));
const list = (k: string, d: string) => env(k, d).split(',').map((s) => s.trim()).filter(Boolean);

const OPTS: CellOptions = { durationS: Math.min(num('BENCH_DURATION_S', 4), 30), warmupS: num('BENCH_WARMUP_S', 1), maxRequests: num('BENCH_MAX_REQUESTS', 200_000) };
const CONCS = list('BENCH_CONCS', '1,16,64').map(Number);
const OPS: Op[] = ['put', 'range-l', 'range-s'];
const WATCHERS = list('BENCH_WATCHERS', '1,100,1000').map(Number);
const WATCH_SHAPES = list('BENCH_WATCH_SHAPES', 'stream-per-watcher,shared-stream') as WatchShape[];
const WATCH_PUTS = Math.min(num('BENCH_WATCH_PUTS', 100), 200);
const FAILOVER_ROUNDS = Math.min(num('BENCH_FAILOVER_ROUNDS', 3), 10);
const SYSTEMS = list('BENCH_SYSTEMS', 'etcd,consulate') as ('etcd' | 'consulate')[];
/** Also run every cell through Consulate's KVService.Calls stream (BENCH_STREAM_CELLS=0: unary only). */
const STREAM_CELLS = env('BENCH_STREAM_CELLS', '1') !== '0';
/** The put cells again with the leader's disk at this many write operations a second; 0: not run. */
const SLOW_LEADER_IOPS = num('BENCH_SLOW_LEADER_IOPS', 50);
const SLOW_LEADER_CONCS = CONCS.filter((conc) => conc === 1 || conc === 64);
/** The c=1 cells with both systems up, taking turns (turns.ts); 0 rounds: not run. */
const TURNS: TurnsOptions = { rounds: Math.min(num('BENCH_TURNS_ROUNDS', 10), 50), block: Math.min(num('BENCH_TURNS_BLOCK', 200), 2_000), warmup: Math.min(num('BENCH_TURNS_WARMUP', 3_000), 20_000) };

const REPO = resolve(__dirname, '..', '..', '..');
const RESULTS = join(REPO, 'bench', 'results');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

interface SystemResult {
  system: string;
  version: string;
  raft_timings: string;
  addresses: readonly string[];
  cells: CellResult[];
  watch: WatchResult[];
  failover: FailoverRound[];
  failover_median_ms: number | null;
  crashed: string[];
  error?: string;
}

let tmp: string | undefined;
const live = new Set<BenchCluster>();

function cleanupSync(): void {
  killAllChildrenSync();
  if (tmp && existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping servers`);
    void Promise.race([Promise.all([...live].map((c) => c.stop())), new Promise((r) => setTimeout(r, 4000))]).finally(() => process.exit(130));
  });
}

function ensureEtcd(): void {
  if (spawnSync('sh', ['-c', 'command -v etcd']).status === 0) return;
  log('etcd not found: installing Debian etcd-server etcd-client');
  try {
    execSync('apt-get install -y etcd-server etcd-client', { stdio: 'inherit' });
  } catch {
    execSync('apt-get update && apt-get install -y etcd-server etcd-client', { stdio: 'inherit' });
  }
}

const median = (xs: number[]) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function crashes(cluster: BenchCluster): string[] {
  // a server that died on its own (not one we killed) shows up as an error in its log
  // error-level lines in a server's log (etcd zap: "level":"error"; Consulate pino: "level":50/60)
  const bad = /"level":\s*("(error|fatal|panic|dpanic)"|50|60)\b|^panic:|uncaught/i;
  return cluster.logFiles().map((f) => ({ f, lines: tail(f, 100000).split('\n').filter((l) => bad.test(l)) }))
    .filter(({ lines }) => lines.length > 0).map(({ f, lines }) => `${basename(f)}: ${lines.length} error lines, last: ${lines.slice(-3).join('\n')}`);
}

async function benchSystem(cluster: BenchCluster): Promise<SystemResult> {
  const res: SystemResult = { system: cluster.system, version: cluster.version, raft_timings: cluster.timings, addresses: cluster.addresses, cells: [], watch: [], failover: [], failover_median_ms: null, crashed: [] };
  live.add(cluster);
  try {
    log(`[${cluster.system}] starting 3 servers on ${cluster.addresses.join(', ')} (${cluster.version})`);
    await cluster.start();
    let leader = await cluster.leader();
    log(`[${cluster.system}] leader: ${cluster.addresses[leader]}; pre-populating ${10_000} keys`);
    let lc = cluster.client(leader);
    await prepopulate(lc);
    // Each cell with a unary call per request, then again through a Calls stream where the system
    // has one (Consulate's KVService.Calls).
    const apis: CellApi[] = cluster.streamClient !== undefined && STREAM_CELLS ? ['unary', 'calls'] : ['unary'];
    for (const api of apis) {
      for (const op of OPS) {
        for (const conc of CONCS) {
          const cur = await cluster.leader();
          if (cur !== leader) { log(`[${cluster.system}] leader changed to ${cluster.addresses[cur]} during the run`); lc.close(); leader = cur; lc = cluster.client(leader); }
          const client = api === 'calls' ? cluster.streamClient!(leader) : lc;
          const cell = { ...(await runCell(client, op, conc, OPTS)), api };
          if (client !== lc) client.close();
          log(`[${cluster.system}] ${op} c${conc}${api === 'calls' ? ' (Calls stream)' : ''}: ${cell.rps}/s p50 ${cell.p50_ms} ms p99 ${cell.p99_ms} ms errors ${cell.errors}${cell.error_samples.length ? ' ' + cell.error_samples[0] : ''}`);
          res.cells.push(cell);
        }
      }
    }
    lc.close();
    const clients = [0, 1, 2].map((i) => cluster.client(i));
    for (const shape of WATCH_SHAPES) for (const W of WATCHERS) {
      const cur = await cluster.leader();
      if (cur !== leader) { log(`[${cluster.system}] leader changed to ${cluster.addresses[cur]} during the run`); leader = cur; }
      const w = await runWatch(clients, clients[leader], W, WATCH_PUTS, shape);
      log(`[${cluster.system}] watch W=${W}, ${shape}: delivery p50 ${w.delivery_p50_ms} ms p99 ${w.delivery_p99_ms} ms, last watcher p50 ${w.last_watcher_p50_ms} ms, p99 on the leader ${w.on_leader_p99_ms} ms and on followers ${w.on_followers_p99_ms} ms, missing ${w.missing_deliveries}${w.error ? ' ERROR ' + w.error : ''}`);
      res.watch.push(w);
    }
    for (const c of clients) c.close();
    if (SLOW_LEADER_IOPS > 0) await slowLeaderCells(cluster, res, apis);
    res.failover = await runFailover(cluster, FAILOVER_ROUNDS, (s) => log(`[${cluster.system}]${s}`));
    res.failover_median_ms = median(res.failover.filter((r) => r.ok).map((r) => r.recovery_ms));
  } catch (e) {
    res.error = String((e as Error).stack ?? e);
    log(`[${cluster.system}] ERROR ${res.error}`);
  } finally {
    res.crashed = crashes(cluster);
    const logDir = join(RESULTS, `consensus-${stamp}-logs`);
    mkdirSync(logDir, { recursive: true });
    for (const f of cluster.logFiles()) if (existsSync(f)) copyFileSync(f, join(logDir, `${cluster.system}-${basename(f)}`));
    log(`[${cluster.system}] stopping servers`);
    await cluster.stop();
    live.delete(cluster);
  }
  return res;
}

/**
 * The put cells with the leader's disk throttled: a leader that waits for its own fsync before a
 * write commits (etcd 3.4; Consulate with -raft-pipeline-leader-writes=false) goes at the slow
 * disk's pace, one that writes in the background (Raft thesis §10.2.1) at its followers'.
 */
async function slowLeaderCells(cluster: BenchCluster, res: SystemResult, apis: CellApi[]): Promise<void> {
  const disk = SlowDisk.create(`consulate-bench-${process.pid}-${cluster.system}`, tmp!);
  if (typeof disk === 'string') {
    log(`[${cluster.system}] slow leader disk: skipped (${disk})`);
    return;
  }
  try {
    for (const api of apis) {
      for (const conc of SLOW_LEADER_CONCS) {
        const leader = await cluster.leader();
        const pid = cluster.pid(leader)!;
        disk.throttle(pid, SLOW_LEADER_IOPS);
        const client = api === 'calls' ? cluster.streamClient!(leader) : cluster.client(leader);
        try {
          const cell = { ...(await runCell(client, 'put', conc, OPTS)), api, leader_disk_iops: SLOW_LEADER_IOPS };
          log(`[${cluster.system}] put c${conc}${api === 'calls' ? ' (Calls stream)' : ''}, leader's disk at ${SLOW_LEADER_IOPS} write IOPS: ${cell.rps}/s p50 ${cell.p50_ms} ms p99 ${cell.p99_ms} ms errors ${cell.errors}`);
          res.cells.push(cell);
        } finally {
          client.close();
          disk.release(pid);
        }
      }
    }
  } finally {
    disk.remove();
  }
}

/**
 * Both clusters started afresh side by side for the c=1 cells taking turns (turns.ts), then
 * stopped; an error is logged and leaves the rows empty.
 */
async function turnsPhase(): Promise<TurnsVariant[]> {
  const dirs = ['etcd-turns', 'consulate-turns'].map((name) => join(tmp!, name));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  const etcd = new EtcdCluster(dirs[0]);
  const consulate = new ConsulateCluster(dirs[1]);
  live.add(etcd);
  live.add(consulate);
  try {
    log(`[turns] starting both clusters side by side`);
    await Promise.all([etcd.start(), consulate.start()]);
    for (const cluster of [etcd, consulate]) {
      const client = cluster.client(await cluster.leader());
      await prepopulate(client);
      client.close();
    }
    return await runTurns(etcd, consulate, OPS, TURNS, log);
  } catch (e) {
    log(`[turns] ERROR ${String((e as Error).stack ?? e)}`);
    return [];
  } finally {
    await Promise.all([etcd.stop(), consulate.stop()]);
    live.delete(etcd);
    live.delete(consulate);
  }
}

interface Row { metric: string; better: 'higher' | 'lower'; etcd: number | null; consulate: number | null; ratio: number | null }

function rows(by: Partial<Record<'etcd' | 'consulate', SystemResult>>, turns: TurnsVariant[]): Row[] {
  const out: Row[] = [];
  /** `fc` reads Consulate's figure when it differs from etcd's (`f`): its Calls stream against etcd's unary calls. */
  const add = (metric: string, better: Row['better'], f: (r: SystemResult) => number | null | undefined, fc = f) => {
    const e = by.etcd ? f(by.etcd) ?? null : null;
    const c = by.consulate ? fc(by.consulate) ?? null : null;
    out.push({ metric, better, etcd: e, consulate: c, ratio: e && c != null ? Math.round((c / e) * 100) / 100 : null });
  };
  const name: Record<Op, string> = { put: 'put', 'range-l': 'linearizable read', 'range-s': 'serializable read' };
  /** A system's cell; `slowDisk`: one of the cells run with the leader's disk throttled. */
  const find = (r: SystemResult, op: Op, conc: number, api: CellApi, slowDisk: boolean) =>
    r.cells.find((x) => x.op === op && x.conc === conc && (x.api ?? 'unary') === api && (x.leader_disk_iops !== undefined) === slowDisk);
  for (const api of ['unary', 'calls'] as CellApi[]) {
    if (api === 'calls' && !by.consulate?.cells.some((x) => x.api === 'calls')) continue;
    const label = api === 'calls' ? ' [Consulate: Calls stream]' : '';
    for (const op of OPS) {
      for (const conc of CONCS) {
        const cell = (r: SystemResult, which = api) => find(r, op, conc, which, false);
        const etcdCell = (r: SystemResult) => cell(r, 'unary');
        add(`${name[op]} c${conc} throughput (req/s)${label}`, 'higher', (r) => etcdCell(r)?.rps, (r) => cell(r)?.rps);
        add(`${name[op]} c${conc} p50 (ms)${label}`, 'lower', (r) => etcdCell(r)?.p50_ms, (r) => cell(r)?.p50_ms);
        add(`${name[op]} c${conc} p99 (ms)${label}`, 'lower', (r) => etcdCell(r)?.p99_ms, (r) => cell(r)?.p99_ms);
      }
    }
  }
  for (const shape of WATCH_SHAPES) for (const W of WATCHERS) {
    const w = (r: SystemResult) => r.watch.find((x) => x.watchers === W && x.shape === shape);
    const label = shape === 'shared-stream' ? ', one stream per server' : '';
    add(`watch ${W} watchers${label}: delivery p50 (ms)`, 'lower', (r) => w(r)?.delivery_p50_ms);
    add(`watch ${W} watchers${label}: delivery p99 (ms)`, 'lower', (r) => w(r)?.delivery_p99_ms);
    add(`watch ${W} watchers${label}: last watcher p50 (ms)`, 'lower', (r) => w(r)?.last_watcher_p50_ms);
  }
  if (SLOW_LEADER_IOPS > 0) {
    for (const api of ['unary', 'calls'] as CellApi[]) {
      const label = api === 'calls' ? ' [Consulate: Calls stream]' : '';
      for (const conc of SLOW_LEADER_CONCS) {
        const cell = (r: SystemResult, which = api) => find(r, 'put', conc, which, true);
        if (!by.consulate?.cells.some((x) => x.leader_disk_iops !== undefined && x.api === api)) continue;
        const disk = `, leader's disk at ${SLOW_LEADER_IOPS} write IOPS`;
        add(`put c${conc} throughput (req/s)${disk}${label}`, 'higher', (r) => cell(r, 'unary')?.rps, (r) => cell(r)?.rps);
        add(`put c${conc} p50 (ms)${disk}${label}`, 'lower', (r) => cell(r, 'unary')?.p50_ms, (r) => cell(r)?.p50_ms);
      }
    }
  }
  add(`failover kill -9 leader -> put commits, median of ${FAILOVER_ROUNDS} (ms)`, 'lower', (r) => r.failover_median_ms);
  for (const api of ['unary', 'calls'] as CellApi[]) {
    const label = api === 'calls' ? ' [Consulate: Calls stream]' : '';
    for (const op of OPS) {
      const etcd = turns.find((v) => v.system === 'etcd' && v.op === op)?.p50_ms ?? null;
      const consulate = turns.find((v) => v.system === 'consulate' && v.api === api && v.op === op)?.p50_ms ?? null;
      if (etcd === null && consulate === null) continue;
      out.push({ metric: `${name[op]} c1 p50 (ms), taking turns${label}`, better: 'lower', etcd, consulate, ratio: etcd && consulate != null ? Math.round((consulate / etcd) * 100) / 100 : null });
    }
  }
  return out;
}

function table(rs: Row[]): string {
  const fmt = (x: number | null) => (x == null ? '-' : String(x));
  const hdr = ['metric', 'etcd', 'consulate', 'ratio c/e', 'better'];
  const body = rs.map((r) => [r.metric, fmt(r.etcd), fmt(r.consulate), fmt(r.ratio), r.better === 'higher' ? 'ratio > 1' : 'ratio < 1']);
  const w = hdr.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(w[i]) : x.padStart(w[i]))).join(' | ');
  return [line(hdr), w.map((n) => '-'.repeat(n)).join('-|-'), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  ensureEtcd();
  tmp = mkdtempSync(join(tmpdir(), 'consensus-bench-'));
  mkdirSync(RESULTS, { recursive: true });
  log(`temp dir ${tmp}; ${cpus().length} CPUs; cells ${OPTS.durationS} s (+${OPTS.warmupS} s warm-up), max ${OPTS.maxRequests} req`);
  const by: Partial<Record<'etcd' | 'consulate', SystemResult>> = {};
  for (const sys of SYSTEMS) {
    const dir = join(tmp, sys);
    mkdirSync(dir, { recursive: true });
    const cluster: BenchCluster = sys === 'etcd' ? new EtcdCluster(dir) : new ConsulateCluster(dir);
    by[sys] = await benchSystem(cluster);
  }
  const turns = SYSTEMS.includes('etcd') && SYSTEMS.includes('consulate') && TURNS.rounds > 0 && CONCS.includes(1) ? await turnsPhase() : [];
  const rs = rows(by, turns);
  const t = table(rs);
  const notes = [
    `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}; 3 servers + this client on one box, loopback`,
    TRACING_NOTE,
    `client: @grpc/grpc-js, one channel per server, closed loop, all ops to the leader; 10,000 8-byte keys, 256-byte values; ${OPTS.durationS} s per cell after ${OPTS.warmupS} s warm-up`,
    `rows marked [Consulate: Calls stream]: Consulate's same cells with each request a frame on one KVService.Calls stream (the calls started in one turn share a frame), against etcd's unary calls (etcd has no such method)`,
    `taking turns: both clusters up at once (fresh, 10,000 keys each), concurrency 1, ${TURNS.rounds} rounds of ${TURNS.block} requests per client after ${TURNS.warmup} unrecorded, the client opening a round rotating (etcd unary, Consulate unary, Consulate Calls stream); p50 over all of a client's samples`,
    `watch: W watchers of one key spread round-robin over the 3 servers, ${WATCH_PUTS} sequential puts on the leader; latency from just before the put is sent to each watcher's event. A stream per watcher; or "one stream per server": each server's watchers on one stream, as etcd's clientv3 multiplexes a client's watches (etcd: one Watch stream with a create request per watcher, an event message per watcher; Consulate: WatchMany, one update per revision naming every watcher that got it)`,
    ...SYSTEMS.map((s) => `${s}: ${by[s]?.version}; raft ${by[s]?.raft_timings}`),
  ];
  const file = join(RESULTS, `consensus-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ timestamp: new Date().toISOString(), notes, options: { ...OPTS, concs: CONCS, turns: TURNS, watchers: WATCHERS, watchShapes: WATCH_SHAPES, watchPuts: WATCH_PUTS, failoverRounds: FAILOVER_ROUNDS }, table: rs, systems: by, turns, unexpected_exits: unexpectedExits }, null, 2));
  process.stdout.write(`\n${t}\n\n${notes.join('\n')}\n`);
  for (const s of SYSTEMS) {
    const r = by[s];
    if (!r) continue;
    if (r.error) process.stdout.write(`\n${s} ERROR: ${r.error}\n`);
    for (const c of r.cells) if (c.errors) process.stdout.write(`${s} ${c.op} c${c.conc}: ${c.errors} errors: ${c.error_samples.join(' | ')}\n`);
    for (const w of r.watch) if (w.error || w.missing_deliveries) process.stdout.write(`${s} watch W=${w.watchers}: missing ${w.missing_deliveries} ${w.error ?? ''}\n`);
    for (const f of r.failover) if (!f.ok) process.stdout.write(`${s} failover round ${f.round} did not recover: ${f.errors.join(' | ')}\n`);
    if (r.crashed.length) process.stdout.write(`${s} server logs with errors:\n${r.crashed.join('\n')}\n`);
  }
  for (const x of unexpectedExits) process.stdout.write(`CRASH: ${x}\n`);
  process.stdout.write(`\nresults: ${file}\nserver logs: ${join(RESULTS, `consensus-${stamp}-logs`)}\n`);
}

main().then(() => process.exit(0), (e) => { log(`fatal: ${(e as Error).stack ?? e}`); process.exit(1); });
