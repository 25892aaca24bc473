/**
 * Where a forwarded read's time goes, process by process and step by step, below what spans can
 * show (hops.ts): how long each process works on it, how long its send takes (Node queues the
 * bytes, the event loop reaches its check phase, the kernel takes them and wakes the reader), and
 * how long the bytes take to reach the next process's JavaScript.
 *
 * dc1 and dc2 federated (federated-pair.ts, one router each), every role started with
 * timeline-probe.js preloaded; after a warm-up, sequential `?stale` reads of `web` through dc1's
 * catalog, forwarded to dc2 and then served locally, with the probe recording in the four
 * processes on the path. A request counts when each process shows exactly the marks one request
 * makes (a gossip packet in the same window leaves it out).
 *
 *   node dist/bench/federation/timeline.js [--requests=3000] [--warmup=6000]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { agentFrom, httpCall } from '../catalog/http-client';
import { CLIENT_IP, REPO, SERVICE, killAllSync, startPair, stopPairs } from './federated-pair';

const FORWARDED = `/v1/catalog/service/${SERVICE}?dc=dc2&stale`;
const LOCAL = `/v1/catalog/service/${SERVICE}?stale`;

type Mark = [time: number, code: string];
type Window = [start: number, end: number];

/** The clock the probe marks with: microseconds of the monotonic clock, mod 10^5 s. */
function nowUs(): number {
  return Number(process.hrtime.bigint() % 100_000_000_000_000n) / 1_000;
}

/** The marks each process on the path makes for one request (timeline-probe.ts). */
const SHAPES = {
  forwarded: { cat1: /^Q(?:Ww)+SRE(?:Ww)*eS$/, r1: /^R(?:Ww)+SR(?:Ww)+S$/, r2: /^R(?:Ww)+SR(?:Ww)+S$/, cat2: /^R(?:Ww)+S$/ },
  local: { cat1: /^QE(?:Ww)*eS$/, r1: /^$/, r2: /^$/, cat2: /^$/ },
};
type Process = keyof (typeof SHAPES)['forwarded'];
const PROCESSES: Process[] = ['cat1', 'r1', 'r2', 'cat2'];

/** The moments of one request, named by process and mark: `r1.R2` is dc1's router reading the answer. */
type Points = Record<string, number>;

/** The time of the first mark `code` at or after `from`. */
function first(marks: Mark[], code: string, from = -Infinity): number {
  for (const [time, c] of marks) if (c === code && time >= from) return time;
  throw new Error(`no mark ${code} after ${from}`);
}

/** A router's two passes: the request read, written on and sent; then the answer. */
function routerPoints(name: string, marks: Mark[]): Points {
  const R1 = first(marks, 'R');
  const W1 = first(marks, 'W', R1);
  const S1 = first(marks, 'S', W1);
  const R2 = first(marks, 'R', S1);
  const W2 = first(marks, 'W', R2);
  return { [`${name}.R1`]: R1, [`${name}.W1`]: W1, [`${name}.S1`]: S1, [`${name}.R2`]: R2, [`${name}.W2`]: W2, [`${name}.S2`]: first(marks, 'S', W2) };
}

function forwardedPoints(m: Record<Process, Mark[]>, [t0, t1]: Window): Points {
  const Q = first(m.cat1, 'Q');
  const W = first(m.cat1, 'W', Q);
  const S1 = first(m.cat1, 'S', W);
  const R = first(m.cat1, 'R', S1);
  const E = first(m.cat1, 'E', R);
  const R2 = first(m.cat2, 'R');
  const W2 = first(m.cat2, 'W', R2);
  return {
    t0, t1, 'cat1.Q': Q, 'cat1.W': W, 'cat1.S1': S1, 'cat1.R': R, 'cat1.E': E, 'cat1.S2': first(m.cat1, 'S', E),
    ...routerPoints('r1', m.r1), ...routerPoints('r2', m.r2),
    'cat2.R': R2, 'cat2.W': W2, 'cat2.S': first(m.cat2, 'S', W2),
  };
}

function localPoints(m: Record<Process, Mark[]>, [t0, t1]: Window): Points {
  const Q = first(m.cat1, 'Q');
  const E = first(m.cat1, 'E', Q);
  return { t0, t1, 'cat1.Q': Q, 'cat1.E': E, 'cat1.S': first(m.cat1, 'S', E) };
}

/** One step of a request: from one point to the next, and what kind of time it is. */
interface Step {
  readonly name: string;
  readonly kind: 'client' | 'work' | 'send' | 'transit';
  readonly from: string;
  readonly to: string;
}

const stepFrom = (name: string, kind: Step['kind'], from: string, to: string): Step => ({ name, kind, from, to });

const FORWARDED_STEPS: Step[] = [
  stepFrom('client → dc1 catalog (request parsed)', 'client', 't0', 'cat1.Q'),
  stepFrom('dc1 catalog: request → call written', 'work', 'cat1.Q', 'cat1.W'),
  stepFrom('dc1 catalog: send', 'send', 'cat1.W', 'cat1.S1'),
  stepFrom('dc1 catalog → dc1 router', 'transit', 'cat1.S1', 'r1.R1'),
  stepFrom('dc1 router: request → call written', 'work', 'r1.R1', 'r1.W1'),
  stepFrom('dc1 router: send', 'send', 'r1.W1', 'r1.S1'),
  stepFrom('dc1 router → dc2 router (TLS, 8300)', 'transit', 'r1.S1', 'r2.R1'),
  stepFrom('dc2 router: request → call written', 'work', 'r2.R1', 'r2.W1'),
  stepFrom('dc2 router: send', 'send', 'r2.W1', 'r2.S1'),
  stepFrom('dc2 router → dc2 catalog', 'transit', 'r2.S1', 'cat2.R'),
  stepFrom('dc2 catalog: request → answer written', 'work', 'cat2.R', 'cat2.W'),
  stepFrom('dc2 catalog: send', 'send', 'cat2.W', 'cat2.S'),
  stepFrom('dc2 catalog → dc2 router', 'transit', 'cat2.S', 'r2.R2'),
  stepFrom('dc2 router: answer → answer written', 'work', 'r2.R2', 'r2.W2'),
  stepFrom('dc2 router: send', 'send', 'r2.W2', 'r2.S2'),
  stepFrom('dc2 router → dc1 router (TLS, 8300)', 'transit', 'r2.S2', 'r1.R2'),
  stepFrom('dc1 router: answer → answer written', 'work', 'r1.R2', 'r1.W2'),
  stepFrom('dc1 router: send', 'send', 'r1.W2', 'r1.S2'),
  stepFrom('dc1 router → dc1 catalog', 'transit', 'r1.S2', 'cat1.R'),
  stepFrom('dc1 catalog: answer → response end()', 'work', 'cat1.R', 'cat1.E'),
  stepFrom('dc1 catalog: send (end() and the check phase)', 'send', 'cat1.E', 'cat1.S2'),
  stepFrom('dc1 catalog → client (response read)', 'client', 'cat1.S2', 't1'),
];

const LOCAL_STEPS: Step[] = [
  stepFrom('client → dc1 catalog (request parsed)', 'client', 't0', 'cat1.Q'),
  stepFrom('dc1 catalog: request → response end()', 'work', 'cat1.Q', 'cat1.E'),
  stepFrom('dc1 catalog: send (end() and the check phase)', 'send', 'cat1.E', 'cat1.S'),
  stepFrom('dc1 catalog → client (response read)', 'client', 'cat1.S', 't1'),
];

function marksIn(marks: Mark[], [start, end]: Window): Mark[] {
  return marks.filter(([t]) => t >= start && t <= end);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

export interface StepResult {
  readonly name: string;
  readonly kind: Step['kind'];
  readonly p50Us: number;
  readonly p90Us: number;
}

export interface TimelineResult {
  readonly variant: 'forwarded' | 'local';
  readonly requests: number;
  /** Requests whose marks had the shape of one request alone. */
  readonly counted: number;
  readonly totalP50Us: number;
  readonly steps: StepResult[];
  /** Sum of the steps' medians by kind. */
  readonly byKind: Record<Step['kind'], number>;
}

function analyse(variant: 'forwarded' | 'local', windows: Window[], marks: Record<Process, Mark[]>): TimelineResult {
  const shapes = SHAPES[variant];
  const steps = variant === 'forwarded' ? FORWARDED_STEPS : LOCAL_STEPS;
  const lengths: number[][] = steps.map(() => []);
  const totals: number[] = [];
  for (const window of windows) {
    const own = Object.fromEntries(PROCESSES.map((p) => [p, marksIn(marks[p], window)])) as Record<Process, Mark[]>;
    if (!PROCESSES.every((p) => shapes[p].test(own[p].map(([, c]) => c).join('')))) continue;
    const points = variant === 'forwarded' ? forwardedPoints(own, window) : localPoints(own, window);
    steps.forEach((step, i) => lengths[i].push(points[step.to] - points[step.from]));
    totals.push(window[1] - window[0]);
  }
  if (totals.length === 0) throw new Error(`no ${variant} request had the marks of one request alone`);
  const results = steps.map((step, i) => ({ name: step.name, kind: step.kind, p50Us: round(percentile(lengths[i], 0.5)), p90Us: round(percentile(lengths[i], 0.9)) }));
  const byKind = { client: 0, work: 0, send: 0, transit: 0 };
  for (const step of results) byKind[step.kind] = round(byKind[step.kind] + step.p50Us);
  return { variant, requests: windows.length, counted: totals.length, totalP50Us: round(percentile(totals, 0.5)), steps: results, byKind };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function parseMarks(file: string): Mark[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [time, code] = line.split(' ');
    return [Number(time), code] as Mark;
  });
}

function arg(name: string, fallback: number): number {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = found === undefined ? fallback : Number(found.slice(name.length + 3));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  return value;
}

async function waitForFiles(files: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!files.every((f) => existsSync(f))) {
    if (Date.now() > deadline) throw new Error(`the probes did not write ${files.filter((f) => !existsSync(f)).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function print(result: TimelineResult): void {
  console.log(`\n${result.variant} ?stale read: p50 ${result.totalP50Us} µs (${result.counted} of ${result.requests} requests counted)`);
  for (const step of result.steps) console.log(`  ${step.name.padEnd(48)} ${String(step.p50Us).padStart(7)} µs   p90 ${String(step.p90Us).padStart(7)}`);
  const k = result.byKind;
  console.log(`  medians by kind: work in the processes ${k.work} µs, sends ${k.send} µs, between processes ${k.transit} µs, client legs ${k.client} µs`);
}

async function main(): Promise<void> {
  const requests = arg('requests', 3_000);
  const warmup = arg('warmup', 6_000);
  const dir = mkdtempSync(join(tmpdir(), 'consulate-timeline-'));
  const probe = join(__dirname, 'timeline-probe.js');
  const saved = { NODE_OPTIONS: process.env.NODE_OPTIONS, TIMELINE_DIR: process.env.TIMELINE_DIR };
  process.env.NODE_OPTIONS = `${saved.NODE_OPTIONS ?? ''} -r ${probe}`.trim();
  process.env.TIMELINE_DIR = dir;
  try {
    const pair = await startPair('local', 1, (line) => console.error(line)).finally(() => {
      for (const [name, value] of Object.entries(saved)) if (value === undefined) delete process.env[name]; else process.env[name] = value;
    });
    const path = { cat1: pair.dc1.catalog, r1: pair.dc1.routers[0], r2: pair.dc2.routers[0], cat2: pair.dc2.catalog };
    const agent = agentFrom(CLIENT_IP, 1);
    const get = (p: string) => httpCall(pair.dc1Http, agent, 'GET', p, undefined, 5_000);
    console.error(`warming up: ${warmup} forwarded and ${warmup / 4} local reads`);
    for (let i = 0; i < warmup; i++) {
      await get(FORWARDED);
      if (i % 4 === 0) await get(LOCAL);
    }
    const signal = () => { for (const p of Object.values(path)) process.kill(p.pid, 'SIGUSR2'); };
    signal();
    await new Promise((r) => setTimeout(r, 200));
    const windows: Record<'forwarded' | 'local', Window[]> = { forwarded: [], local: [] };
    for (const variant of ['forwarded', 'local'] as const) {
      for (let i = 0; i < requests; i++) {
        const start = nowUs();
        const answer = await get(variant === 'forwarded' ? FORWARDED : LOCAL);
        if (answer.status !== 200) throw new Error(`GET ${variant} answered ${answer.status}`);
        windows[variant].push([start, nowUs()]);
      }
    }
    signal();
    const files = Object.fromEntries(Object.entries(path).map(([name, p]) => [name, join(dir, `${p.pid}.txt`)])) as Record<Process, string>;
    await waitForFiles(Object.values(files), 10_000);
    const marks = Object.fromEntries(PROCESSES.map((p) => [p, parseMarks(files[p])])) as Record<Process, Mark[]>;
    const results = [analyse('forwarded', windows.forwarded, marks), analyse('local', windows.local, marks)];
    results.forEach(print);
    const out = join(REPO, 'bench', 'results');
    mkdirSync(out, { recursive: true });
    const file = join(out, `federation-timeline-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`);
    writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), requests, warmup, results }, null, 2) + '\n');
    console.log(`\nwritten: ${file}`);
  } finally {
    await stopPairs();
    rmSync(dir, { recursive: true, force: true });
  }
}

process.on('exit', killAllSync);
main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`bench-federation timeline failed: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
