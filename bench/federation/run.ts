/**
 * `make bench-federation`: the federation router, with the real processes of
 * test/harness/federation.ts (dc1 and dc2 on loopback, each one consensus server, one catalog and
 * two routers; areas created and joined over HTTP as an operator would):
 *
 * 1. Latency (c1): the same read served locally by dc2's catalog,
 *    `GET /v1/catalog/service/web`, and through dc1, `GET /v1/catalog/service/web?dc=dc2` (dc1's
 *    catalog → a dc1 router → a dc2 router over mutual TLS → dc2's catalog, and back), taking
 *    turns in blocks; default consistency and `?stale` (answered from the catalog's view, no
 *    consensus round trip, so the difference is the forwarding alone). Goal: forwarded p50 at
 *    most 1 ms above local.
 * 2. Throughput: the same reads in a closed loop at c16 and c64 for DURATION seconds each, local
 *    and forwarded one after the other; req/s and the ratio.
 * 3. Failure detection: SIGKILL of one of dc2's routers until dc1's area members list it
 *    `failed` (forwarded reads going on meanwhile), RUNS fresh pairs per timing profile (`lan`,
 *    the one `make up` runs, and `local`); beside it memberlist's prediction for the same pool,
 *    and for Consul's `wan` profile, computed only (swim-expectation.ts).
 *
 * Prints the tables and writes bench/results/federation-<timestamp>.json with every raw value,
 * as the other benchmarks do; the roles' logs go to bench/results/federation-<timestamp>-logs/
 * when a phase failed, a role exited on its own or a forwarded read failed (--keep-logs: always).
 *
 * Options (flags, or BENCH_<NAME> / <NAME> in the environment; make passes REQUESTS, DURATION,
 * RUNS, PROFILES, PHASES):
 *   --requests=2000 (sequential reads per variant)  --warmup=3000  --block=50
 *   --duration=10 (s per throughput cell)  --warmup-s=1  --concs=16,64  --modes=default,stale
 *   --runs=3 (failure detection runs per profile)  --profiles=lan,local
 *   --detect-timeout-s=90  --read-interval-ms=20  --profile=lan (latency and throughput pair)
 *   --phases=latency,throughput,failure  --keep-logs  --results-dir=bench/results
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';

import { TRACING_NOTE, preciseCpuMs } from '../children';
import { CellResult, agentFrom, closedLoop, getOnce, httpOk } from '../catalog/http-client';
import { VERSION } from '../../services/lib/version';
import { DetectionRun, POLL_MS, detectFailure } from './failure';
import { CLIENT_IP, FederatedPair, REPO, SERVICE, killAllSync, processesOf, roleLogs, startPair, stopPairs } from './federated-pair';
import { LatencyResult, LatencySummary, alternatedLatency } from './latency';
import { Expectation, MEMBERLIST_PROFILES, expectedDetection } from './swim-expectation';

const flags = new Map<string, string>();
for (const arg of process.argv.slice(2)) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
  if (!m) throw new Error(`unknown argument ${arg}: use --requests=2000 --warmup=3000 --block=50 --duration=10 --warmup-s=1 --concs=16,64 --modes=default,stale --runs=3 --profiles=lan,local --detect-timeout-s=90 --read-interval-ms=20 --profile=lan --phases=latency,throughput,failure --keep-logs --results-dir=DIR`);
  flags.set(m[1], m[2] ?? '1');
}
const opt = (flag: string, fallback: string) => {
  const env = flag.toUpperCase().replace(/-/g, '_');
  return flags.get(flag) ?? process.env[`BENCH_${env}`] ?? process.env[env] ?? fallback;
};
const int = (flag: string, fallback: number, min: number, max: number) => {
  const v = Number(opt(flag, String(fallback)));
  if (!(Number.isInteger(v) && v >= min && v <= max)) throw new Error(`--${flag} must be a whole number in ${min}..${max}, got ${opt(flag, '')}`);
  return v;
};
const list = (flag: string, fallback: string) => opt(flag, fallback).split(',').map((s) => s.trim()).filter(Boolean);

const REQUESTS = int('requests', 2_000, 1, 100_000);
const WARMUP = int('warmup', 3_000, 0, 100_000);
const BLOCK = int('block', 50, 1, 10_000);
const DURATION_S = int('duration', 10, 1, 300);
const WARMUP_S = int('warmup-s', 1, 0, 60);
const CONCS = list('concs', '16,64').map(Number);
const MODES = list('modes', 'default,stale');
const RUNS = int('runs', 3, 1, 20);
const PROFILES = list('profiles', 'lan,local');
const DETECT_TIMEOUT_S = int('detect-timeout-s', 90, 5, 600);
const READ_INTERVAL_MS = int('read-interval-ms', 20, 1, 10_000);
const PAIR_PROFILE = opt('profile', 'lan');
const PHASES = new Set(list('phases', 'latency,throughput,failure'));
const KEEP_LOGS = opt('keep-logs', '0') === '1';
const RESULTS = resolve(opt('results-dir', join(REPO, 'bench', 'results')));
/** Routers per datacenter; the area pool then holds twice as many. */
const ROUTERS = 2;
/** The sequential phase stops here, whatever is left. */
const LATENCY_WALL_LIMIT_MS = 600_000;

if (CONCS.length === 0 || CONCS.some((c) => !(Number.isInteger(c) && c >= 1 && c <= 190))) throw new Error(`--concs must be whole numbers in 1..190 (the catalogs admit 200 connections per client IP), got ${CONCS.join(',')}`);
if (MODES.some((m) => m !== 'default' && m !== 'stale')) throw new Error(`--modes takes default and/or stale, got ${MODES.join(',')}`);
for (const p of [...PROFILES, PAIR_PROFILE]) if (!['lan', 'local', 'wan'].includes(p)) throw new Error(`profiles are lan, local or wan, got ${p}`);
for (const p of PHASES) if (!['latency', 'throughput', 'failure'].includes(p)) throw new Error(`--phases takes latency, throughput, failure; got ${p}`);

const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const LOG_DIR = join(RESULTS, `federation-${stamp}-logs`);
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const load = () => loadavg().map((x) => Math.round(x * 100) / 100);

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping every role`);
    void stopPairs().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// The phases.

const LOCAL_PATH = `/v1/catalog/service/${SERVICE}`;
const pathOf = (mode: string, forwarded: boolean) => {
  const q = [...(forwarded ? ['dc=dc2'] : []), ...(mode === 'stale' ? ['stale'] : [])];
  return q.length ? `${LOCAL_PATH}?${q.join('&')}` : LOCAL_PATH;
};

interface Crash { phase: string; process: string; exit: string }

/** Roles of the pair that exited although nobody stopped them (the killed router excepted). */
function crashesOf(pair: FederatedPair, phase: string, except?: number): Crash[] {
  return [pair.dc1, pair.dc2].flatMap((dc) => processesOf(dc).filter((p) => p.pid !== except && (p.child.exitCode !== null || p.child.signalCode !== null))
    .map((p) => ({ phase, process: `${dc.name} ${p.role} ${p.address} (pid ${p.pid})`, exit: String(p.child.exitCode ?? p.child.signalCode) })));
}

function keepLogs(phase: string, pair: FederatedPair | undefined): string | undefined {
  if (pair === undefined) return undefined;
  const dir = join(LOG_DIR, phase);
  mkdirSync(dir, { recursive: true });
  for (const { name, text } of roleLogs(pair)) writeFileSync(join(dir, name), text);
  return dir;
}

/** CPU used during one throughput cell (warm-up included), by role group, from /proc (each thread's schedstat). */
interface CellCpu {
  label: string;
  conc: number;
  rps: number;
  /** ms of CPU per wall second (1000 = one core busy). */
  cpu_ms_per_s: Record<string, number>;
  /** Microseconds of CPU per answered request, by group. */
  us_per_request: Record<string, number | null>;
}

const CPU_GROUPS = ['client', 'dc1 catalog', 'dc1 routers', 'dc2 routers', 'dc2 catalog', 'consensus x2'] as const;

function cpuSnapshot(pair: FederatedPair): Record<string, number> {
  const sum = (pids: number[]) => pids.reduce((s, pid) => s + (preciseCpuMs(pid) ?? 0), 0);
  const usage = process.cpuUsage();
  return {
    client: (usage.user + usage.system) / 1000,
    'dc1 catalog': sum([pair.dc1.catalog.pid]),
    'dc1 routers': sum(pair.dc1.routers.map((r) => r.pid)),
    'dc2 routers': sum(pair.dc2.routers.map((r) => r.pid)),
    'dc2 catalog': sum([pair.dc2.catalog.pid]),
    'consensus x2': sum([pair.dc1.consensus.pid, pair.dc2.consensus.pid]),
  };
}

function cellCpu(cell: CellResult, before: Record<string, number>, after: Record<string, number>, wallS: number): CellCpu {
  const perS: Record<string, number> = {};
  const perReq: Record<string, number | null> = {};
  for (const g of CPU_GROUPS) {
    perS[g] = Math.round((after[g] - before[g]) / wallS);
    perReq[g] = cell.rps > 0 ? Math.round((perS[g] / cell.rps) * 1000) : null;
  }
  perS.total = CPU_GROUPS.reduce((s, g) => s + perS[g], 0);
  perReq.total = cell.rps > 0 ? Math.round((perS.total / cell.rps) * 1000) : null;
  return { label: cell.label, conc: cell.conc, rps: cell.rps, cpu_ms_per_s: perS, us_per_request: perReq };
}

interface PairPhase {
  profile: string;
  load_at_start: number[];
  setup_ms: number | null;
  body_bytes: number | null;
  latency?: LatencyResult;
  throughput: CellResult[];
  throughput_cpu: CellCpu[];
  crashes: Crash[];
  logs?: string;
  error?: string;
}

async function latencyAndThroughput(): Promise<PairPhase> {
  const phase: PairPhase = { profile: PAIR_PROFILE, load_at_start: load(), setup_ms: null, body_bytes: null, throughput: [], throughput_cpu: [], crashes: [] };
  let pair: FederatedPair | undefined;
  try {
    pair = await startPair(PAIR_PROFILE, ROUTERS, log);
    phase.setup_ms = pair.setupMs;
    const p = pair;
    // The same answer both ways (the forwarded one is dc2's, unchanged), or the comparison is void.
    const local = (await httpOk(p.dc2Http, p.control, 'GET', LOCAL_PATH)).body.toString();
    const forwarded = (await httpOk(p.dc1Http, p.control, 'GET', pathOf('default', true))).body.toString();
    if (local !== forwarded) throw new Error(`the forwarded answer differs from the local one:\n local ${local.slice(0, 300)}\n forwarded ${forwarded.slice(0, 300)}`);
    phase.body_bytes = Buffer.byteLength(local);
    if (PHASES.has('latency')) {
      const agents = { local: agentFrom(CLIENT_IP, 1), forwarded: agentFrom(CLIENT_IP, 1) };
      const variants = MODES.flatMap((mode) => [
        { label: `local ${mode}`, to: p.dc2Http, agent: agents.local, path: pathOf(mode, false) },
        { label: `forwarded ${mode}`, to: p.dc1Http, agent: agents.forwarded, path: pathOf(mode, true) },
      ]);
      log(`[latency] ${variants.length} variants, ${WARMUP} warm-up + ${REQUESTS} requests each, c1, in turns of ${BLOCK}`);
      phase.latency = await alternatedLatency(variants, { requests: REQUESTS, warmup: WARMUP, block: BLOCK, wallLimitMs: LATENCY_WALL_LIMIT_MS, cpu: () => cpuSnapshot(p) }, log);
      for (const v of phase.latency.variants) log(`[latency] ${v.label}: p50 ${v.p50_ms} p90 ${v.p90_ms} p99 ${v.p99_ms} max ${v.max_ms} ms, ${v.errors} errors`);
      agents.local.destroy();
      agents.forwarded.destroy();
    }
    if (PHASES.has('throughput')) {
      for (const mode of MODES) {
        for (const conc of CONCS) {
          // Local first on even cells, forwarded first on odd ones: neither always follows the other.
          const order = (phase.throughput.length / 2) % 2 === 0 ? [false, true] : [true, false];
          for (const fwd of order) {
            const to = fwd ? p.dc1Http : p.dc2Http;
            const path = pathOf(mode, fwd);
            const agent = agentFrom(CLIENT_IP, conc);
            const before = cpuSnapshot(p);
            const wall0 = performance.now();
            const cell = await closedLoop(`${fwd ? 'forwarded' : 'local'} ${mode}`, conc, { durationS: DURATION_S, warmupS: WARMUP_S, maxRequests: 5_000_000 }, () => getOnce(to, agent, path));
            const cpu = cellCpu(cell, before, cpuSnapshot(p), (performance.now() - wall0) / 1000);
            agent.destroy();
            log(`[throughput] ${cell.label} c${conc}: ${cell.rps}/s p50 ${cell.p50_ms} ms p99 ${cell.p99_ms} ms errors ${cell.errors}${cell.error_samples.length ? ' ' + cell.error_samples[0] : ''}; CPU ${cpu.cpu_ms_per_s.total} ms/s, ${cpu.us_per_request.total} us/request`);
            phase.throughput.push(cell);
            phase.throughput_cpu.push(cpu);
          }
        }
      }
    }
  } catch (e) {
    phase.error = String((e as Error)?.stack ?? e);
    log(`[${PAIR_PROFILE}] ERROR ${phase.error}`);
  } finally {
    if (pair) phase.crashes = crashesOf(pair, 'latency/throughput');
    const troubled = phase.error !== undefined || phase.crashes.length > 0 || phase.throughput.some((c) => c.errors > 0) || (phase.latency?.variants.some((v) => v.errors > 0) ?? false);
    if (troubled || KEEP_LOGS) phase.logs = keepLogs('latency-throughput', pair);
    log(`[${PAIR_PROFILE}] stopping`);
    await stopPairs();
  }
  return phase;
}

interface DetectionPhase { runs: DetectionRun[]; setups: { profile: string; run: number; setup_ms: number | null; load_at_start: number[]; logs?: string; error?: string }[]; crashes: Crash[] }

async function failureDetection(): Promise<DetectionPhase> {
  const out: DetectionPhase = { runs: [], setups: [], crashes: [] };
  for (let run = 1; run <= RUNS; run++) {
    // Alternate which profile goes first, as bench-gossip alternates its systems.
    const order = run % 2 === 1 ? PROFILES : [...PROFILES].reverse();
    for (const profile of order) {
      const setup: DetectionPhase['setups'][number] = { profile, run, setup_ms: null, load_at_start: load() };
      out.setups.push(setup);
      let pair: FederatedPair | undefined;
      let victimPid: number | undefined;
      let r: DetectionRun | undefined;
      try {
        pair = await startPair(profile, ROUTERS, log);
        setup.setup_ms = pair.setupMs;
        victimPid = pair.dc2.routers[0].pid;
        r = await detectFailure(pair, run, { timeoutMs: DETECT_TIMEOUT_S * 1000, readIntervalMs: READ_INTERVAL_MS }, log);
        out.runs.push(r);
      } catch (e) {
        setup.error = String((e as Error)?.stack ?? e);
        log(`[${profile}] run ${run} ERROR ${setup.error}`);
      } finally {
        const crashes = pair ? crashesOf(pair, `failure ${profile} run ${run}`, victimPid) : [];
        out.crashes.push(...crashes);
        const troubled = setup.error !== undefined || crashes.length > 0 || r?.listed_failed_ms == null || (r?.read_errors ?? 0) > 0;
        if (troubled || KEEP_LOGS) setup.logs = keepLogs(`failure-${profile}-run${run}`, pair);
        await stopPairs();
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The tables.

const fmt = (x: number | null | undefined, digits = 2) => (x == null ? '-' : Number.isInteger(x) ? x.toLocaleString('en-US') : x.toFixed(digits));
const median = (xs: number[]) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sec = (ms: number | null | undefined) => (ms == null ? '-' : `${(ms / 1000).toFixed(2)} s`);

function render(hdr: string[], body: string[][], leftColumns: number[]): string {
  const w = hdr.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (c: string[]) => `| ${c.map((x, i) => (leftColumns.includes(i) ? x.padEnd(w[i]) : x.padStart(w[i]))).join(' | ')} |`;
  return [line(hdr), `|${w.map((n, i) => (leftColumns.includes(i) ? `:${'-'.repeat(n + 1)}` : `${'-'.repeat(n + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n');
}

interface Row { metric: string; local: number | null; forwarded: number | null; difference: number | null; ratio: number | null; goal: string; met: boolean | null }

function pairRows(phase: PairPhase): Row[] {
  const rows: Row[] = [];
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const add = (metric: string, local: number | null | undefined, forwarded: number | null | undefined, goal = '', test?: (difference: number) => boolean) => {
    const l = local ?? null;
    const f = forwarded ?? null;
    const difference = l != null && f != null ? r2(f - l) : null;
    rows.push({ metric, local: l, forwarded: f, difference, ratio: l != null && f != null && l > 0 ? r2(f / l) : null, goal, met: test === undefined ? null : difference != null && test(difference) });
  };
  const v = (label: string): LatencySummary | undefined => phase.latency?.variants.find((x) => x.label === label);
  for (const mode of MODES) {
    const l = v(`local ${mode}`);
    const f = v(`forwarded ${mode}`);
    if (!l && !f) continue;
    const q = mode === 'stale' ? '?stale ' : '';
    add(`GET ${q}c1 p50 (ms)`, l?.p50_ms, f?.p50_ms, '<= +1 ms', (d) => d <= 1);
    add(`GET ${q}c1 p90 (ms)`, l?.p90_ms, f?.p90_ms);
    add(`GET ${q}c1 p99 (ms)`, l?.p99_ms, f?.p99_ms);
    add(`GET ${q}c1 max (ms)`, l?.max_ms, f?.max_ms);
  }
  for (const mode of MODES) {
    for (const conc of CONCS) {
      const cell = (fwd: boolean) => phase.throughput.find((c) => c.label === `${fwd ? 'forwarded' : 'local'} ${mode}` && c.conc === conc);
      if (!cell(false) && !cell(true)) continue;
      const q = mode === 'stale' ? '?stale ' : '';
      add(`GET ${q}c${conc} (req/s)`, cell(false)?.rps, cell(true)?.rps);
      add(`GET ${q}c${conc} p50 (ms)`, cell(false)?.p50_ms, cell(true)?.p50_ms);
      add(`GET ${q}c${conc} p99 (ms)`, cell(false)?.p99_ms, cell(true)?.p99_ms);
    }
  }
  return rows;
}

function pairTable(rows: Row[]): string {
  const body = rows.map((r) => [r.metric, fmt(r.local), fmt(r.forwarded), r.difference == null ? '-' : `${r.difference > 0 ? '+' : ''}${fmt(r.difference)}`, fmt(r.ratio), r.goal || '', r.met == null ? '' : r.met ? 'yes' : 'NO']);
  return render(['read of /v1/catalog/service/web', 'local (dc2)', 'forwarded (dc1 -> dc2)', 'forwarded - local', 'ratio f/l', 'goal', 'met'], body, [0, 5, 6]);
}

/**
 * What each role process spent per c=1 request of each latency variant: what a forwarded read adds,
 * and where. The client is left out: the CPU readings themselves run in it.
 */
function latencyCpuTable(variants: LatencySummary[]): string {
  const groups = CPU_GROUPS.filter((g) => g !== 'client');
  const total = (v: LatencySummary) => groups.reduce((s, g) => s + (v.cpu_us_per_request?.[g] ?? 0), 0);
  const body = variants.map((v) => [`${v.label} c1`, fmt(v.p50_ms), ...groups.map((g) => fmt(v.cpu_us_per_request?.[g])), fmt(total(v))]);
  return render(['latency: CPU per request (us)', 'p50 (ms)', ...groups, 'roles total'], body, [0]);
}

function cpuTable(cells: CellCpu[]): string {
  const cols = [...CPU_GROUPS, 'total'];
  const body = cells.map((c) => [`${c.label} c${c.conc}`, fmt(c.rps), ...cols.map((g) => fmt(c.us_per_request[g])), fmt(c.cpu_ms_per_s.total)]);
  return render(['throughput cell: CPU per request (us)', 'req/s', ...cols, 'CPU ms/s (2 cores = 2000)'], body, [0]);
}

interface DetectionRow {
  profile: string;
  runs: number;
  timed_out: number;
  listed_failed_ms: { median: number | null; min: number | null; max: number | null };
  first_marked_failed_ms_median: number | null;
  first_suspect_ms_median: number | null;
  model: Expectation;
  read_errors: number;
  reads: number;
  recovered_ms_median: number | null;
  slowest_read_ms_median: number | null;
  met: boolean | null;
}

function detectionRows(phase: DetectionPhase | undefined, expectations: Map<string, Expectation>): DetectionRow[] {
  const rows: DetectionRow[] = [];
  for (const profile of [...new Set([...PROFILES, 'wan'])]) {
    const runs = phase?.runs.filter((r) => r.profile === profile) ?? [];
    const attempted = phase?.setups.filter((s) => s.profile === profile).length ?? 0;
    const values = runs.map((r) => r.listed_failed_ms).filter((x): x is number => x != null);
    const nums = (f: (r: DetectionRun) => number | null) => runs.map(f).filter((x): x is number => x != null);
    const model = expectations.get(profile)!;
    const m = median(values);
    rows.push({
      profile, runs: attempted, timed_out: attempted - values.length,
      listed_failed_ms: { median: m, min: values.length ? Math.min(...values) : null, max: values.length ? Math.max(...values) : null },
      first_marked_failed_ms_median: median(nums((r) => r.first_marked_failed_ms)),
      first_suspect_ms_median: median(nums((r) => r.first_suspect_ms)),
      model,
      read_errors: runs.reduce((s, r) => s + r.read_errors, 0),
      reads: runs.reduce((s, r) => s + r.reads, 0),
      recovered_ms_median: median(nums((r) => r.recovered_ms)),
      slowest_read_ms_median: median(nums((r) => r.slowest_read_ms)),
      // Goal: the timers set the figure, not the implementation: the median within memberlist's p90.
      met: attempted === 0 ? null : m != null && values.length === attempted && m <= model.p90Ms,
    });
  }
  return rows;
}

function detectionTable(rows: DetectionRow[]): string {
  const body = rows.map((r) => {
    const measured = r.runs === 0 ? 'not run (computed only)' : r.listed_failed_ms.median == null ? `- (${r.timed_out} of ${r.runs} timed out)` : `${sec(r.listed_failed_ms.median)}${r.runs > 1 ? ` [${sec(r.listed_failed_ms.min)}-${sec(r.listed_failed_ms.max)}]` : ''}${r.timed_out ? ` (${r.timed_out} timed out)` : ''}`;
    const model = `${sec(r.model.medianMs)} [${sec(r.model.p10Ms)}-${sec(r.model.p90Ms)}], floor ${sec(r.model.floorMs)}`;
    return [
      r.profile, String(r.runs), measured, r.runs ? sec(r.first_suspect_ms_median) : '-', r.runs ? sec(r.first_marked_failed_ms_median) : '-', model,
      r.runs ? `${r.read_errors} of ${r.reads}` : '-', r.runs ? (r.recovered_ms_median == null ? '-' : sec(r.recovered_ms_median)) : '-', r.runs ? (r.slowest_read_ms_median == null ? '-' : `${fmt(r.slowest_read_ms_median)} ms`) : '-',
      r.met == null ? '' : r.met ? 'yes' : 'NO',
    ];
  });
  return render(['profile', 'runs', 'kill -9 -> dc1 lists it failed, median [min-max]', 'first suspect (logs)', 'first marked failed (logs)', 'memberlist model, median [p10-p90]', 'forwarded reads failed', 'recovered', 'slowest forwarded read', '<= model p90'], body, [0]);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  mkdirSync(RESULTS, { recursive: true });
  log(`${cpus().length} CPUs, load ${load().join(' ')}; phases ${[...PHASES].join(',')}; latency ${REQUESTS} requests per variant (+${WARMUP} warm-up); throughput ${DURATION_S} s per cell at c${CONCS.join(',c')}; failure detection ${RUNS} run(s) per profile ${PROFILES.join(',')}`);

  const members = 2 * ROUTERS;
  const expectations = new Map([...new Set([...PROFILES, 'wan'])].map((p) => [p, expectedDetection(p, members)] as const));

  let pairPhase: PairPhase | undefined;
  if (PHASES.has('latency') || PHASES.has('throughput')) pairPhase = await latencyAndThroughput();
  let detection: DetectionPhase | undefined;
  if (PHASES.has('failure')) detection = await failureDetection();

  const rows = pairPhase ? pairRows(pairPhase) : [];
  const dRows = detectionRows(detection, expectations);
  const lat = pairPhase?.latency;
  const profileText = (p: string) => { const t = MEMBERLIST_PROFILES[p]; return `${p}: probe ${t.probeIntervalMs / 1000} s / timeout ${t.probeTimeoutMs} ms, SuspicionMult ${t.suspicionMult}`; };
  const notes = [
    `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}, consulate ${VERSION}; dc1 and dc2 (each 1 consensus server, 1 catalog, ${ROUTERS} routers) and this client on one box, loopback, one address per role (test/harness/federation.ts)`,
    TRACING_NOTE,
    pairPhase ? `latency/throughput pair: -gossip-profile=${pairPhase.profile}, federated in ${pairPhase.setup_ms ?? '-'} ms; answer ${pairPhase.body_bytes ?? '-'} bytes, the same both ways; load average at start ${pairPhase.load_at_start.join(' ')}` : 'latency/throughput: not run',
    lat ? `latency: concurrency 1, one keep-alive connection per side, ${REQUESTS} requests per variant after ${WARMUP} warm-up (V8 compiling the path in four processes; warm-up block p50 first -> last: ${lat.variants.map((v) => `${v.label} ${v.warmup_block_p50_ms[0] ?? '-'} -> ${v.warmup_block_p50_ms[v.warmup_block_p50_ms.length - 1] ?? '-'} ms`).join(', ')}), variants taking turns in blocks of ${BLOCK} (the first of each turn rotating); ${lat.seconds} s${lat.stopped_by_wall_limit ? ', STOPPED by the wall limit' : ''}. "local" = GET ${LOCAL_PATH} on dc2's catalog; "forwarded" = GET ${LOCAL_PATH}?dc=dc2 on dc1's catalog (catalog -> router :8330 -> dc2 router :8300 mutual TLS -> dc2 catalog :8502, each hop on an open Calls stream)` : '',
    pairPhase?.throughput.length ? `throughput: closed loop, ${DURATION_S} s per cell after ${WARMUP_S} s warm-up, local and forwarded back to back (order alternating); a forwarded read uses 4 processes' CPU (dc1 catalog, two routers, dc2 catalog) and a local one 1, on the same 2 cores` : '',
    detection ? `failure detection: per profile and run a fresh pair; SIGKILL of router-1.dc2 (the router dc1 joined through); dc1's GET /v1/operator/area/<id>/members polled every ${POLL_MS} ms; forwarded reads every ${READ_INTERVAL_MS} ms meanwhile; bounded at ${DETECT_TIMEOUT_S} s. "first suspect / first marked failed" come from the surviving routers' log lines (memberlist's texts), any datacenter` : '',
    `memberlist model (swim-expectation.ts, ${expectations.get('wan')!.samples.toLocaleString('en-US')} samples, N = ${members} in the area): ${[...expectations.values()].map((e) => `${profileText(e.profile)} -> k = ${e.k}, suspicion ${sec(e.minSuspicionMs)}..${sec(e.maxSuspicionMs)}`).join('; ')}. wan is Consul's WAN profile, computed only (not run: a sample takes about a minute); the routers' own default -gossip-profile is wan, make up runs lan`,
    `reference: node:http keep-alive GET c1 0.158 ms p50, grpc-js unary c1 0.35 ms, with TLS 0.47 ms (performance.md P2/P3); F1: WAN failure detection within the same floors; Serf lan kill -9 -> all failed at N = 5: 7.30 s [5.11-7.32] (§3a)`,
  ].filter(Boolean);

  const latencyCpu = lat?.variants.some((v) => v.cpu_us_per_request !== undefined) ? `${latencyCpuTable(lat.variants)}\n\n` : '';
  const cpu = `${latencyCpu}${pairPhase?.throughput_cpu.length ? `${cpuTable(pairPhase.throughput_cpu)}\n\n` : ''}`;
  process.stdout.write(`\n${rows.length ? pairTable(rows) + '\n\n' : ''}${cpu}${detectionTable(dRows)}\n\n${notes.join('\n')}\n`);
  const problems: string[] = [];
  if (pairPhase?.error) problems.push(`latency/throughput ERROR: ${pairPhase.error.split('\n')[0]}`);
  for (const v of lat?.variants ?? []) if (v.errors) problems.push(`latency ${v.label}: ${v.errors} errors: ${v.error_samples.join(' | ')}`);
  for (const c of pairPhase?.throughput ?? []) if (c.errors) problems.push(`throughput ${c.label} c${c.conc}: ${c.errors} errors: ${c.error_samples.join(' | ')}`);
  for (const s of detection?.setups ?? []) if (s.error) problems.push(`failure ${s.profile} run ${s.run} ERROR: ${s.error.split('\n')[0]}`);
  for (const r of detection?.runs ?? []) if (r.read_errors) problems.push(`failure ${r.profile} run ${r.run}: ${r.read_errors} forwarded reads failed: ${r.read_error_samples.join(' | ')}`);
  for (const c of [...(pairPhase?.crashes ?? []), ...(detection?.crashes ?? [])]) problems.push(`CRASH (${c.phase}): ${c.process} exited ${c.exit}`);
  for (const dir of [pairPhase?.logs, ...(detection?.setups.map((s) => s.logs) ?? [])]) if (dir) problems.push(`role logs: ${dir}`);
  if (problems.length) process.stdout.write(`\n${problems.join('\n')}\n`);

  const file = join(RESULTS, `federation-${stamp}.json`);
  writeFileSync(file, JSON.stringify({
    timestamp: new Date().toISOString(), notes,
    options: { requests: REQUESTS, warmup: WARMUP, block: BLOCK, durationS: DURATION_S, warmupS: WARMUP_S, concs: CONCS, modes: MODES, runs: RUNS, profiles: PROFILES, pairProfile: PAIR_PROFILE, detectTimeoutS: DETECT_TIMEOUT_S, readIntervalMs: READ_INTERVAL_MS, phases: [...PHASES], routersPerDatacenter: ROUTERS },
    table: rows, detection_table: dRows, latency_throughput: pairPhase, failure_detection: detection, memberlist_model: [...expectations.values()],
  }, null, 2));
  process.stdout.write(`\nresults: ${file}\n`);
}

main().then(() => process.exit(0), async (e) => {
  log(`fatal: ${(e as Error)?.stack ?? e}`);
  await stopPairs().catch(() => undefined);
  process.exit(1);
});
