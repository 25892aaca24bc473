/**
 * `make bench-catalog`: the catalog role against its anchors, on this machine, one system at a
 * time (never two at once):
 *
 * 1. Blocking fan-out (performance.md C1): N = 1,000 and 10,000 blocking KV GETs woken by one
 *    PUT (fanout.ts), beside etcd 3.4's gRPC Watch with N streams woken by one Put, etcd's
 *    HTTP-gateway watch with N connections (performance.md §3b's anchor), and node:http alone
 *    parking the same GETs (plain-http.ts: the floor of any Node server read over N connections).
 * 2. HTTP read throughput: closed-loop GETs of one KV key (default consistency and `?stale`) at
 *    concurrency 1, 16, 64, against plain node:http answering the same bytes (plain-http.ts).
 * 3. Reads after a write burst (C2): `?stale` (and default) reads at c16 on a fresh datacenter,
 *    then BURST_S seconds of closed-loop PUTs of distinct keys at c16, then the same reads.
 *
 * Prints `metric | consulate | anchor | ratio | goal met` and writes
 * bench/results/catalog-<timestamp>.json with every raw value. Knobs: see bench/README.md.
 */
import { ChildProcess, execSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';

import { EtcdClient, EtcdCluster } from '../consensus/etcd';
import { killAllChildrenSync as killEtcdSync, unexpectedExits as etcdExits } from '../consensus/types';
import { TRACING_NOTE, cleanupSync, removeTempDir, rssMiB, sleep, startChild, stopChild, tail, trackTempDir, unexpectedExits } from '../children';
import { CATALOG_HTTP, CONTROL_IP, ConsulateDatacenter } from './consulate';
import { FanoutResult, HttpFanoutOptions, etcdWatchFanout, gatewayWatches, grpcWatches, httpBlockingFanout } from './fanout';
import { CellOptions, CellResult, Endpoint, agentFrom, closedLoop, getOnce, httpCall, httpOk } from './http-client';

const env = (k: string, d: string) => process.env[`BENCH_${k}`] ?? process.env[k] ?? d;
const num = (k: string, d: number, max: number) => {
  const v = Number(env(k, String(d)));
  if (!Number.isFinite(v) || v < 0) throw new Error(`${k}=${env(k, '')} is not a number >= 0`);
  return Math.min(v, max);
};
const list = (k: string, d: string) => env(k, d).split(',').map((s) => s.trim()).filter(Boolean);

const FANOUT_SIZES = list('FANOUT_SIZES', '1000,10000').map(Number).filter((n) => n > 0 && n <= 20_000);
const FANOUT_ROUNDS = num('FANOUT_ROUNDS', 5, 50);
/** Unrecorded rounds first, for both systems: a fresh catalog compiles its 1,000-answer path in them. */
const FANOUT_WARMUP_ROUNDS = num('FANOUT_WARMUP_ROUNDS', 2, 10);
const FANOUT_WAIT_S = num('FANOUT_WAIT_S', 60, 300);
const PER_ADDRESS = num('FANOUT_PER_ADDRESS', 150, 200);
/** Also measure etcd's HTTP-gateway watch (a connection per watcher; ETCD_GATEWAY=0 skips it). */
const ETCD_GATEWAY = env('ETCD_GATEWAY', '1') !== '0';
const FANOUT_CONSISTENCY = env('FANOUT_CONSISTENCY', 'default') === 'stale' ? 'stale' : 'default';
const CELL: CellOptions = { durationS: num('DURATION_S', 5, 60), warmupS: num('WARMUP_S', 1, 10), maxRequests: num('MAX_REQUESTS', 500_000, 5_000_000) };
const CONCS = list('CONCS', '1,16,64').map(Number).filter((c) => c >= 1 && c <= 190);
const BURST_S = num('BURST_S', 60, 600);
const BURST_CONC = num('BURST_CONC', 16, 190);
const AFTER_CONC = num('AFTER_CONC', 16, 190);
/** Stale-read cells before and after the burst (median taken): one cell swings ±50 % on a busy box. */
const READ_REPEATS = Math.max(1, num('READ_REPEATS', 3, 10));
const FRESH_WARMUP_S = num('FRESH_WARMUP_S', 5, 60);
const PHASES = new Set(list('PHASES', 'fanout,throughput,burst'));
const SYSTEMS = new Set(list('SYSTEMS', 'consulate,etcd,plain'));
const KEEP_LOGS = env('KEEP_LOGS', '0') === '1';

const REPO = resolve(__dirname, '..', '..', '..');
const RESULTS = join(REPO, 'bench', 'results');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const PLAIN: Endpoint = { host: '127.0.16.20', port: 8500 };
/** Source addresses of the blocking GETs: 127.0.17.1 ... (each at most PER_ADDRESS connections). */
const sourceIp = (i: number) => `127.0.17.${i + 1}`;
const READ_KEY = 'bench/read';
const READ_VALUE = Buffer.alloc(256, 'r');
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

// ---------------------------------------------------------------------------------------------
// Open files: the client and the catalog each hold about N sockets at N = 10,000.

function openFileLimit(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files')) ?? '';
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/).map((x) => (x === 'unlimited' ? Infinity : Number(x)));
  return { soft, hard };
}

/** Re-runs this process once under `ulimit -n <hard>` when the soft limit is too low and the hard one allows more. */
function ensureOpenFiles(needed: number): string {
  const { soft, hard } = openFileLimit();
  if (soft >= needed) return `ulimit -n ${soft} (hard ${hard}): enough (about ${needed} needed by the client and by the catalog each)`;
  if (process.env.BENCH_CATALOG_REEXEC !== '1' && hard >= needed) {
    log(`ulimit -n is ${soft}, ${needed} needed: re-running under ulimit -n ${hard === Infinity ? needed : hard}`);
    const r = spawnSync('bash', ['-c', `ulimit -n ${hard === Infinity ? needed : hard} && exec "$0" "$@"`, process.execPath, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, BENCH_CATALOG_REEXEC: '1' } });
    process.exit(r.status ?? 1);
  }
  return `ulimit -n ${soft} (hard ${hard}) LIMITS this run: about ${needed} open files are needed for N = ${Math.max(...FANOUT_SIZES, 0)}; raise it (ulimit -n ${needed}) or lower BENCH_FANOUT_SIZES`;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: every child by PID on exit, error and Ctrl-C; the temp dir removed.

const liveClusters = new Set<{ stop(): Promise<void> }>();
process.on('exit', () => { cleanupSync(); killEtcdSync(); });
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping everything`);
    void Promise.race([Promise.all([...liveClusters].map((c) => c.stop().catch(() => undefined))), sleep(5_000)]).finally(() => process.exit(130));
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

function etcdVersion(): string {
  return (spawnSync('etcd', ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0]?.trim() || 'etcd (version unknown)';
}

const load = () => loadavg().map((x) => Math.round(x * 100) / 100);

function dirBytes(dir: string): number {
  let total = 0;
  const walk = (d: string, depth: number) => {
    if (depth > 6) return;
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const s = statSync(p);
      if (s.isDirectory()) walk(p, depth + 1);
      else total += s.size;
    }
  };
  try { walk(dir, 0); } catch { /* gone */ }
  return total;
}

/** Error-level lines in the role logs (pino levels 50/60, "fatal"), for the report. */
function logErrors(files: string[]): string[] {
  const bad = /"level":\s*("(error|fatal|panic)"|50|60)\b|uncaught/i;
  return files.map((f) => ({ f, lines: tail(f, 200_000).split('\n').filter((l) => bad.test(l)) }))
    .filter(({ lines }) => lines.length > 0).map(({ f, lines }) => `${basename(f)}: ${lines.length} error lines, last: ${lines.slice(-2).join(' | ').slice(0, 600)}`);
}

function keepLogs(prefix: string, files: string[]): string {
  const dir = join(RESULTS, `catalog-${stamp}-logs`);
  mkdirSync(dir, { recursive: true });
  for (const f of files) if (existsSync(f)) copyFileSync(f, join(dir, `${prefix}-${basename(f)}`));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The phases.

interface ConsulateFanoutPhase {
  load_at_start: number[];
  leader: { at_start: string | undefined; at_end: string | undefined };
  fanout: FanoutResult[];
  throughput: CellResult[];
  read_body_bytes: number;
  catalog_rss_mib: { before: number | undefined; after_fanout: number | undefined };
  log_errors: string[];
  error?: string;
}

/** Set by a phase that saw something odd (a query that did not block, one never woken): its logs are kept. */
let troubled = false;

async function withDatacenter<T>(name: string, dir: string, body: (dc: ConsulateDatacenter) => Promise<T>, onError: (e: unknown, dc: ConsulateDatacenter) => T): Promise<{ value: T; logErrors: string[] }> {
  mkdirSync(dir, { recursive: true });
  const dc = new ConsulateDatacenter(dir, name);
  liveClusters.add(dc);
  let value: T;
  let failed = false;
  troubled = false;
  const exitsBefore = unexpectedExits.length;
  try {
    log(`[${name}] starting consensus x3 (127.0.16.1-3:8310) and the catalog (127.0.16.10:8500)`);
    await dc.start();
    value = await body(dc);
  } catch (e) {
    failed = true;
    log(`[${name}] ERROR ${(e as Error)?.stack ?? e}`);
    value = onError(e, dc);
  } finally {
    log(`[${name}] stopping`);
    await dc.stop();
    liveClusters.delete(dc);
  }
  const errs = logErrors(dc.logFiles());
  if (errs.length || failed || troubled || unexpectedExits.length > exitsBefore || KEEP_LOGS) log(`[${name}] logs kept in ${keepLogs(name, dc.logFiles())}`);
  return { value, logErrors: errs };
}

function readPath(mode: 'default' | 'stale'): string {
  return `/v1/kv/${READ_KEY}${mode === 'stale' ? '?stale' : ''}`;
}

async function readCells(to: Endpoint, label: string, modes: ('default' | 'stale' | 'plain')[], concs: number[]): Promise<CellResult[]> {
  const out: CellResult[] = [];
  for (const mode of modes) {
    for (const c of concs) {
      const agent = agentFrom(CONTROL_IP, c);
      const path = mode === 'plain' ? `/v1/kv/${READ_KEY}` : readPath(mode);
      const cell = await closedLoop(`${label} ${mode}`, c, CELL, () => getOnce(to, agent, path));
      agent.destroy();
      log(`[${label}] GET ${mode} c${c}: ${cell.rps}/s p50 ${cell.p50_ms} ms p99 ${cell.p99_ms} ms errors ${cell.errors}${cell.error_samples.length ? ' ' + cell.error_samples[0] : ''}`);
      out.push(cell);
    }
  }
  return out;
}

function fanoutOptions(n: number): HttpFanoutOptions {
  return { n, rounds: FANOUT_ROUNDS, warmupRounds: FANOUT_WARMUP_ROUNDS, deliverTimeoutMs: 30_000, waitS: FANOUT_WAIT_S, perAddress: PER_ADDRESS, batch: 250, settleMs: 300, parkTimeoutMs: 60_000, consistency: FANOUT_CONSISTENCY };
}

async function consulateFanoutAndThroughput(tmp: string): Promise<{ phase: ConsulateFanoutPhase; body: Buffer | undefined }> {
  let body: Buffer | undefined;
  const phase: ConsulateFanoutPhase = { load_at_start: load(), leader: { at_start: undefined, at_end: undefined }, fanout: [], throughput: [], read_body_bytes: 0, catalog_rss_mib: { before: undefined, after_fanout: undefined }, log_errors: [] };
  const { logErrors: errs } = await withDatacenter('consulate-1', join(tmp, 'consulate-1'), async (dc) => {
    const control = agentFrom(CONTROL_IP, 2);
    await httpOk(CATALOG_HTTP, control, 'PUT', `/v1/kv/${READ_KEY}`, READ_VALUE);
    body = (await httpOk(CATALOG_HTTP, control, 'GET', `/v1/kv/${READ_KEY}`)).body;
    control.destroy();
    phase.read_body_bytes = body.length;
    phase.catalog_rss_mib.before = rssMiB(dc.catalogPid);
    phase.leader.at_start = await dc.leader();
    if (PHASES.has('throughput')) phase.throughput = await readCells(CATALOG_HTTP, 'consulate', ['default', 'stale'], CONCS);
    if (PHASES.has('fanout')) {
      for (const n of FANOUT_SIZES) {
        log(`[consulate-1] blocking fan-out N=${n}, ${FANOUT_ROUNDS} rounds, from ${Math.ceil(n / PER_ADDRESS)} source addresses`);
        const r = await httpBlockingFanout(CATALOG_HTTP, { pids: [dc.catalogPid, ...dc.serverPids], catalogPid: dc.catalogPid, leader: () => dc.leader() }, CONTROL_IP, sourceIp, fanoutOptions(n), log);
        if (r.error) log(`[consulate-1] fan-out N=${n} ERROR ${r.error}`);
        if (r.error || r.rounds.some((x) => x.early || x.missing)) troubled = true;
        phase.fanout.push(r);
        await sleep(1_000);
      }
      phase.catalog_rss_mib.after_fanout = rssMiB(dc.catalogPid);
    }
    phase.leader.at_end = await dc.leader();
  }, (e) => { phase.error = String((e as Error)?.message ?? e); });
  phase.log_errors = errs;
  return { phase, body };
}

interface EtcdPhase {
  version: string;
  load_at_start: number[];
  /** gRPC Watch streams, and the same through the HTTP/JSON gateway (a connection per watcher). */
  fanout: FanoutResult[];
  gateway_fanout: FanoutResult[];
  error?: string;
  log_errors: string[];
}

async function etcdFanout(tmp: string): Promise<EtcdPhase> {
  ensureEtcd();
  const phase: EtcdPhase = { version: etcdVersion(), load_at_start: load(), fanout: [], gateway_fanout: [], log_errors: [] };
  const dir = join(tmp, 'etcd');
  mkdirSync(dir, { recursive: true });
  const cluster = new EtcdCluster(dir);
  liveClusters.add(cluster);
  const members: EtcdClient[] = [];
  try {
    log(`[etcd] starting 3 members on ${cluster.addresses.join(', ')} (${phase.version})`);
    await cluster.start();
    const leader = await cluster.leader();
    for (let i = 0; i < 3; i++) members.push(cluster.client(i) as EtcdClient);
    for (const n of FANOUT_SIZES) {
      log(`[etcd] watch fan-out N=${n}, ${FANOUT_ROUNDS} rounds`);
      const options = { n, rounds: FANOUT_ROUNDS, warmupRounds: FANOUT_WARMUP_ROUNDS, deliverTimeoutMs: 30_000 };
      const r = await etcdWatchFanout(grpcWatches(members), members[leader], options, log);
      if (r.error) log(`[etcd] fan-out N=${n} ERROR ${r.error}`);
      phase.fanout.push(r);
      await sleep(1_000);
      if (!ETCD_GATEWAY) continue;
      log(`[etcd] HTTP gateway watch fan-out N=${n}, ${FANOUT_ROUNDS} rounds`);
      const endpoints = cluster.addresses.map((address): Endpoint => ({ host: address.split(':')[0], port: Number(address.split(':')[1]) }));
      const g = await etcdWatchFanout(gatewayWatches(endpoints), members[leader], options, log, 'etcd-gateway');
      if (g.error) log(`[etcd] gateway fan-out N=${n} ERROR ${g.error}`);
      phase.gateway_fanout.push(g);
      await sleep(1_000);
    }
  } catch (e) {
    phase.error = String((e as Error)?.stack ?? e);
    log(`[etcd] ERROR ${phase.error}`);
  } finally {
    for (const m of members) m.close();
    log('[etcd] stopping');
    await cluster.stop();
    liveClusters.delete(cluster);
  }
  phase.log_errors = logErrors(cluster.logFiles());
  if (phase.log_errors.length || phase.error || KEEP_LOGS) log(`[etcd] logs kept in ${keepLogs('etcd', cluster.logFiles())}`);
  return phase;
}

interface PlainPhase {
  load_at_start: number[];
  body_bytes: number;
  throughput: CellResult[];
  /** The same blocking fan-out against node:http's minimal blocking KV (plain-http.ts): the floor on this machine. */
  fanout: FanoutResult[];
  error?: string;
}

async function plainHttp(tmp: string, body: Buffer): Promise<PlainPhase> {
  const phase: PlainPhase = { load_at_start: load(), body_bytes: body.length, throughput: [], fanout: [] };
  const bodyFile = join(tmp, 'plain-body.json');
  writeFileSync(bodyFile, body);
  let child: ChildProcess | undefined;
  const stopper = { stop: () => stopChild(child) };
  liveClusters.add(stopper);
  try {
    child = startChild(process.execPath, [join(__dirname, 'plain-http.js'), PLAIN.host, String(PLAIN.port), bodyFile], { logFile: join(tmp, 'plain-http.log'), ipc: true });
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`plain node:http did not listen within 10 s: ${tail(join(tmp, 'plain-http.log'))}`)), 10_000);
      child!.once('message', () => { clearTimeout(timer); res(); });
      child!.once('exit', () => { clearTimeout(timer); rej(new Error(`plain node:http exited: ${tail(join(tmp, 'plain-http.log'))}`)); });
    });
    log(`[plain] node:http on ${PLAIN.host}:${PLAIN.port} answering a fixed ${body.length}-byte JSON body`);
    if (PHASES.has('throughput')) phase.throughput = await readCells(PLAIN, 'plain', ['plain'], CONCS);
    if (PHASES.has('fanout')) {
      const pid = child.pid;
      for (const n of FANOUT_SIZES) {
        log(`[plain] blocking fan-out N=${n}, ${FANOUT_ROUNDS} rounds, against node:http's minimal blocking KV`);
        const r = await httpBlockingFanout(PLAIN, { pids: [pid], catalogPid: pid, leader: async () => 'none' }, CONTROL_IP, sourceIp, fanoutOptions(n), log, 'plain');
        if (r.error) log(`[plain] fan-out N=${n} ERROR ${r.error}`);
        phase.fanout.push(r);
        await sleep(1_000);
      }
    }
  } catch (e) {
    phase.error = String((e as Error)?.message ?? e);
    log(`[plain] ERROR ${phase.error}`);
  } finally {
    await stopChild(child);
    liveClusters.delete(stopper);
  }
  return phase;
}

interface BurstPhase {
  load_at_start: number[];
  leader: string | undefined;
  burst_s: number;
  fresh: CellResult[];
  burst: CellResult | undefined;
  after: CellResult[];
  rss_mib_before: (number | undefined)[];
  rss_mib_after: (number | undefined)[];
  data_bytes_after: number;
  keys_written: number;
  error?: string;
  log_errors: string[];
}

/** READ_REPEATS stale cells, then one default cell, at AFTER_CONC. */
async function burstReads(label: string): Promise<CellResult[]> {
  const cells: CellResult[] = [];
  for (let k = 1; k <= READ_REPEATS; k++) cells.push(...(await readCells(CATALOG_HTTP, `${label} #${k}`, ['stale'], [AFTER_CONC])));
  cells.push(...(await readCells(CATALOG_HTTP, label, ['default'], [AFTER_CONC])));
  return cells;
}

/** The median of `pick` over the cells whose label ends with `mode`. */
function medianOf(cells: CellResult[], mode: string, pick: (c: CellResult) => number | null): number | null {
  const xs = cells.filter((c) => c.label.endsWith(mode)).map(pick).filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  return xs.length % 2 ? xs[(xs.length - 1) / 2] : Math.round(((xs[xs.length / 2 - 1] + xs[xs.length / 2]) / 2) * 100) / 100;
}

async function burstPhase(tmp: string): Promise<BurstPhase> {
  const phase: BurstPhase = { load_at_start: load(), leader: undefined, burst_s: BURST_S, fresh: [], burst: undefined, after: [], rss_mib_before: [], rss_mib_after: [], data_bytes_after: 0, keys_written: 0, log_errors: [] };
  const dir = join(tmp, 'consulate-2');
  const { logErrors: errs } = await withDatacenter('consulate-2', dir, async (dc) => {
    const control = agentFrom(CONTROL_IP, 2);
    await httpOk(CATALOG_HTTP, control, 'PUT', `/v1/kv/${READ_KEY}`, READ_VALUE);
    control.destroy();
    const pids = [dc.catalogPid, ...dc.serverPids];
    phase.leader = await dc.leader();
    phase.rss_mib_before = pids.map(rssMiB);
    // A just-started catalog is still cold (JIT): warm it with the same reads, unrecorded, so
    // "fresh" means no writes yet, not a cold process.
    const warm = agentFrom(CONTROL_IP, AFTER_CONC);
    for (const path of [readPath('stale'), readPath('default')]) {
      await closedLoop('warm-up', AFTER_CONC, { durationS: 0, warmupS: FRESH_WARMUP_S, maxRequests: 0 }, () => getOnce(CATALOG_HTTP, warm, path));
    }
    warm.destroy();
    phase.fresh = await burstReads('fresh');
    log(`[consulate-2] write burst: ${BURST_S} s of PUTs of distinct keys at c${BURST_CONC}`);
    const writer = agentFrom(CONTROL_IP, BURST_CONC);
    const value = Buffer.alloc(256, 'w');
    let written = 0;
    phase.burst = await closedLoop('burst PUT', BURST_CONC, { durationS: BURST_S, warmupS: 0, maxRequests: 10_000_000 }, async (seq) => {
      const a = await httpCall(CATALOG_HTTP, writer, 'PUT', `/v1/kv/burst/${seq.toString(36).padStart(6, '0')}`, value);
      if (a.status !== 200 || a.body.toString() !== 'true') throw new Error(`PUT: HTTP ${a.status} ${a.body.toString().slice(0, 120)}`);
      written++;
    });
    writer.destroy();
    phase.keys_written = written;
    log(`[consulate-2] burst: ${phase.burst.rps}/s p50 ${phase.burst.p50_ms} ms p99 ${phase.burst.p99_ms} ms, ${written} keys, errors ${phase.burst.errors}${phase.burst.error_samples.length ? ' ' + phase.burst.error_samples[0] : ''}`);
    phase.after = await burstReads('after burst');
    phase.rss_mib_after = pids.map(rssMiB);
    phase.data_bytes_after = dirBytes(dir);
  }, (e) => { phase.error = String((e as Error)?.message ?? e); });
  phase.log_errors = errs;
  return phase;
}

// ---------------------------------------------------------------------------------------------
// The table.

interface Row { metric: string; consulate: number | null; anchor: number | null; ratio: number | null; goal: string; met: string }

function buildRows(c1: ConsulateFanoutPhase | undefined, etcd: EtcdPhase | undefined, plain: PlainPhase | undefined, burst: BurstPhase | undefined): Row[] {
  const rows: Row[] = [];
  // No ratio for a negative figure: "from PUT ack" is negative when every query woke before the ack.
  const ratio = (c: number | null | undefined, a: number | null | undefined) => (c != null && a != null && c >= 0 && a > 0 ? Math.round((c / a) * 100) / 100 : null);
  const add = (metric: string, c: number | null | undefined, a: number | null | undefined, goal = '', test?: (c: number) => boolean) => {
    const cv = c ?? null;
    rows.push({ metric, consulate: cv, anchor: a ?? null, ratio: ratio(c, a), goal, met: test === undefined ? '' : cv === null ? 'NO (no value)' : test(cv) ? 'yes' : 'NO' });
  };
  for (const n of FANOUT_SIZES) {
    const c = c1?.fanout.find((f) => f.n === n);
    const e = etcd?.fanout.find((f) => f.n === n);
    const N = n.toLocaleString('en-US');
    add(`fan-out ${N}: wake p50 from PUT sent (ms) [etcd watch]`, c?.from_put.p50_ms, e?.from_put.p50_ms);
    add(`fan-out ${N}: wake p99 from PUT sent (ms) [etcd watch]`, c?.from_put.p99_ms, e?.from_put.p99_ms, n === 1000 ? '<= 30 ms' : '', n === 1000 ? (v) => v <= 30 : undefined);
    add(`fan-out ${N}: wake p99 from PUT ack (ms) [etcd watch]`, c?.from_ack.p99_ms, e?.from_ack.p99_ms);
    add(`fan-out ${N}: last woken, median round (ms) [etcd watch]`, c?.last_from_put_median_ms, e?.last_from_put_median_ms);
    add(`fan-out ${N}: last woken, worst round (ms) [etcd watch]`, c?.last_from_put_max_ms, e?.last_from_put_max_ms, n === 10000 ? '<= 1000 ms' : '', n === 10000 ? (v) => v <= 1000 : undefined);
    add(`fan-out ${N}: write ack p50 (ms) [etcd put]`, c?.put_ack_p50_ms, e?.put_ack_p50_ms);
    const lost = (f: FanoutResult | undefined) => (f ? f.rounds.reduce((s, r) => s + r.early + r.missing, 0) + (f.rounds.length < FANOUT_ROUNDS ? (FANOUT_ROUNDS - f.rounds.length) * n : 0) : null);
    add(`fan-out ${N}: early or not woken, all rounds [etcd watch]`, lost(c), lost(e), '0', (v) => v === 0);
    // The reference's own anchor (performance.md §3b): a connection per watcher, as per blocking query.
    const g = etcd?.gateway_fanout.find((f) => f.n === n);
    const p = plain?.fanout.find((f) => f.n === n);
    if (g !== undefined) {
      add(`fan-out ${N}: wake p50 from PUT sent (ms) [etcd gateway watch]`, c?.from_put.p50_ms, g.from_put.p50_ms);
      add(`fan-out ${N}: wake p99 from PUT sent (ms) [etcd gateway watch]`, c?.from_put.p99_ms, g.from_put.p99_ms);
      add(`fan-out ${N}: last woken, median round (ms) [etcd gateway watch]`, c?.last_from_put_median_ms, g.last_from_put_median_ms);
      add(`fan-out ${N}: early or not woken, all rounds [etcd gateway watch]`, lost(c), lost(g), '0', (v) => v === 0);
    }
    // The floor: node:http alone, parking and answering the same blocking GETs.
    if (p !== undefined) {
      add(`fan-out ${N}: wake p50 from PUT sent (ms) [node:http blocking KV]`, c?.from_put.p50_ms, p.from_put.p50_ms);
      add(`fan-out ${N}: wake p99 from PUT sent (ms) [node:http blocking KV]`, c?.from_put.p99_ms, p.from_put.p99_ms);
      add(`fan-out ${N}: last woken, median round (ms) [node:http blocking KV]`, c?.last_from_put_median_ms, p.last_from_put_median_ms);
    }
  }
  const plainCell = (conc: number) => plain?.throughput.find((x) => x.conc === conc);
  for (const mode of ['default', 'stale'] as const) {
    for (const conc of CONCS) {
      const cell = c1?.throughput.find((x) => x.label.endsWith(mode) && x.conc === conc);
      const r6 = mode === 'stale' && conc === 16;
      add(`GET kv ${mode} c${conc} (req/s) [node:http]`, cell?.rps, plainCell(conc)?.rps, r6 ? '>= 10,000/s (R6)' : '', r6 ? (v) => v >= 10_000 : undefined);
      add(`GET kv ${mode} c${conc} p50 (ms) [node:http]`, cell?.p50_ms, plainCell(conc)?.p50_ms);
    }
  }
  if (burst) {
    const staleFresh = medianOf(burst.fresh, 'stale', (c) => c.rps);
    const m = READ_REPEATS > 1 ? `, median of ${READ_REPEATS}` : '';
    add(`after ${burst.burst_s} s burst: GET stale c${AFTER_CONC}${m} (req/s) [fresh]`, medianOf(burst.after, 'stale', (c) => c.rps), staleFresh, '>= 0.8 x fresh', (v) => staleFresh != null && staleFresh > 0 && v / staleFresh >= 0.8);
    add(`after ${burst.burst_s} s burst: GET stale c${AFTER_CONC} p99${m} (ms) [fresh]`, medianOf(burst.after, 'stale', (c) => c.p99_ms), medianOf(burst.fresh, 'stale', (c) => c.p99_ms));
    add(`after ${burst.burst_s} s burst: GET default c${AFTER_CONC} (req/s) [fresh]`, medianOf(burst.after, 'default', (c) => c.rps), medianOf(burst.fresh, 'default', (c) => c.rps));
    add(`write burst: PUT distinct keys c${BURST_CONC} (req/s)`, burst.burst?.rps, null);
    add(`write burst: PUT p99 (ms)`, burst.burst?.p99_ms, null);
  }
  return rows;
}

function table(rows: Row[]): string {
  const fmt = (x: number | null) => (x == null ? '-' : String(x));
  const hdr = ['metric [anchor]', 'consulate', 'anchor', 'ratio', 'goal met'];
  const body = rows.map((r) => [r.metric, fmt(r.consulate), fmt(r.anchor), fmt(r.ratio), r.met ? `${r.met} (${r.goal})` : '']);
  const w = hdr.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 || i === 4 ? x.padEnd(w[i]) : x.padStart(w[i]))).join(' | ').trimEnd();
  return [line(hdr), w.map((n) => '-'.repeat(n)).join('-|-'), ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const needed = Math.max(...FANOUT_SIZES, 0) + 1_000;
  const limitNote = ensureOpenFiles(needed);
  log(limitNote);
  const tmp = mkdtempSync(join(tmpdir(), 'catalog-bench-'));
  trackTempDir(tmp);
  mkdirSync(RESULTS, { recursive: true });
  log(`temp dir ${tmp}; ${cpus().length} CPUs; load ${load().join(' ')}; cells ${CELL.durationS} s (+${CELL.warmupS} s warm-up); fan-out N=${FANOUT_SIZES.join(',')} x ${FANOUT_ROUNDS} rounds; burst ${BURST_S} s`);
  if (!existsSync(join(__dirname, 'plain-http.js'))) throw new Error(`${join(__dirname, 'plain-http.js')} is missing: run make build`);

  let c1: ConsulateFanoutPhase | undefined;
  let body: Buffer | undefined;
  if (SYSTEMS.has('consulate') && (PHASES.has('fanout') || PHASES.has('throughput'))) ({ phase: c1, body } = await consulateFanoutAndThroughput(tmp));
  let plain: PlainPhase | undefined;
  if (SYSTEMS.has('plain') && (PHASES.has('throughput') || PHASES.has('fanout'))) {
    // Without a Consulate run, the catalog's usual answer for this key is about this size.
    plain = await plainHttp(tmp, body ?? Buffer.from(JSON.stringify([{ LockIndex: 0, Key: READ_KEY, Flags: 0, Value: READ_VALUE.toString('base64'), CreateIndex: 12, ModifyIndex: 12 }])));
  }
  let etcd: EtcdPhase | undefined;
  if (SYSTEMS.has('etcd') && PHASES.has('fanout')) etcd = await etcdFanout(tmp);
  let burst: BurstPhase | undefined;
  if (SYSTEMS.has('consulate') && PHASES.has('burst')) burst = await burstPhase(tmp);

  const rows = buildRows(c1, etcd, plain, burst);
  const { soft, hard } = openFileLimit();
  const notes = [
    `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}; everything (3 servers, the catalog or node:http, this client) on one box, loopback; one system at a time`,
    TRACING_NOTE,
    `open files: ${limitNote}; now soft ${soft} / hard ${hard}`,
    `fan-out: Consulate = N blocking GET /v1/kv/<key>?index=..&wait=${FANOUT_WAIT_S}s (${FANOUT_CONSISTENCY === 'stale' ? '?stale' : 'default consistency'}), one keep-alive connection each, <= ${PER_ADDRESS} per source address 127.0.17.x, parked until written and the catalog + servers quiet (3 x 200 ms under 30 % of a core) + 300 ms, woken by one PUT through the catalog; etcd = N gRPC Watch streams (round-robin over 3 members, 3 HTTP/2 connections), woken by one Put on the leader${ETCD_GATEWAY ? ', then N HTTP-gateway watches (POST /v3/watch, a connection each)' : ''}; node:http = the same GETs parked in plain-http.ts's map, answered with one body encoded once. ${FANOUT_ROUNDS} rounds each after ${FANOUT_WARMUP_ROUNDS} unrecorded warm-up rounds (a fresh process compiles its answer path in them); 256-byte values; latency to this client having the whole answer/event, pooled over rounds`,
    `throughput: closed loop, ${CELL.durationS} s after ${CELL.warmupS} s warm-up, one key (256-byte value, ${c1?.read_body_bytes ?? plain?.body_bytes ?? '?'}-byte JSON answer); node:http answers the same bytes with Content-Type/Length only (the catalog adds 4 X-Consul-* headers and a span per request)`,
    `burst: fresh datacenter warmed with ${FRESH_WARMUP_S} s of each read (unrecorded), ${AFTER_CONC}-way reads (stale: median of ${READ_REPEATS} cells), ${BURST_S} s of c${BURST_CONC} PUTs of distinct keys (${burst?.keys_written ?? '-'} keys), the same reads; data dirs after: ${burst ? Math.round(burst.data_bytes_after / 1048576) : '-'} MiB; RSS MiB catalog,server-1..3 before ${burst?.rss_mib_before.join('/') ?? '-'} after ${burst?.rss_mib_after.join('/') ?? '-'}`,
    `load average at phase starts: consulate-1 ${c1?.load_at_start.join(' ') ?? '-'}; plain ${plain?.load_at_start.join(' ') ?? '-'}; etcd ${etcd?.load_at_start.join(' ') ?? '-'}; consulate-2 ${burst?.load_at_start.join(' ') ?? '-'}`,
    `reference (performance.md §3b, HTTP gateway watch, last watcher): etcd 1,000 watchers 41-65 ms p50 / 53-77 ms p99; node:http c1 5,888/s, c64 19,504/s`,
    `etcd: ${etcd?.version ?? '-'}; consulate: ${new ConsulateDatacenter(tmp, '').version}; Raft leader: phase 1 ${c1?.leader.at_start ?? '-'} (end ${c1?.leader.at_end ?? '-'}), burst ${burst?.leader ?? '-'}; the catalog's view watches server-1 (its first -consensus-addr)`,
  ];
  const file = join(RESULTS, `catalog-${stamp}.json`);
  writeFileSync(file, JSON.stringify({
    timestamp: new Date().toISOString(), notes,
    options: { fanoutConsistency: FANOUT_CONSISTENCY, readRepeats: READ_REPEATS, freshWarmupS: FRESH_WARMUP_S, fanoutSizes: FANOUT_SIZES, fanoutRounds: FANOUT_ROUNDS, fanoutWarmupRounds: FANOUT_WARMUP_ROUNDS, fanoutWaitS: FANOUT_WAIT_S, perAddress: PER_ADDRESS, cell: CELL, concs: CONCS, burstS: BURST_S, burstConc: BURST_CONC, afterConc: AFTER_CONC, phases: [...PHASES], systems: [...SYSTEMS] },
    table: rows, consulate_fanout_throughput: c1, plain_http: plain, etcd, burst, unexpected_exits: [...unexpectedExits, ...etcdExits],
  }, null, 2));
  process.stdout.write(`\n${table(rows)}\n\n${notes.join('\n')}\n`);
  const problems: string[] = [];
  for (const [name, p] of [['consulate-1', c1], ['plain', plain], ['etcd', etcd], ['consulate-2', burst]] as const) {
    if (p?.error) problems.push(`${name} ERROR: ${p.error}`);
    if (p && 'log_errors' in p) for (const l of p.log_errors) problems.push(`${name} log: ${l}`);
  }
  for (const f of [...(c1?.fanout ?? []), ...(plain?.fanout ?? []), ...(etcd?.fanout ?? []), ...(etcd?.gateway_fanout ?? [])]) {
    if (f.error) problems.push(`${f.system} fan-out N=${f.n}: ${f.error}`);
    if (f.errors.length) problems.push(`${f.system} fan-out N=${f.n} errors: ${f.errors.join(' | ')}`);
  }
  for (const c of [...(c1?.throughput ?? []), ...(plain?.throughput ?? []), ...(burst?.fresh ?? []), ...(burst?.after ?? []), ...(burst?.burst ? [burst.burst] : [])]) {
    if (c.errors) problems.push(`${c.label} c${c.conc}: ${c.errors} errors: ${c.error_samples.join(' | ')}`);
  }
  for (const x of [...unexpectedExits, ...etcdExits]) problems.push(`CRASH: ${x}`);
  if (problems.length) process.stdout.write(`\n${problems.join('\n')}\n`);
  process.stdout.write(`\nresults: ${file}\n`);
  removeTempDir(tmp);
}

main().then(() => process.exit(0), (e) => { log(`fatal: ${(e as Error)?.stack ?? e}`); process.exit(1); });
