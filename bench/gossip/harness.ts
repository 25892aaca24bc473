/**
 * One run of the gossip benchmark against either system, with the definitions of
 * /work/shared/anchors/serf-bench.mjs (reference/performance.md §3a):
 *
 *   join_all    all N agents RPC-ready; at t0 agents 2..N are told at once to join agent 1; stops
 *               when every agent lists N alive (polled every 15 ms)
 *   event_all   a user event fired at agent 1 (Serf: Coalesce=false); stops when the last agent's
 *               event stream has it; the median of EVENTS events, 300 ms apart. An event not on
 *               every stream within 10 s is lost
 *   fail_all    kill -9 of agent N; stops when every survivor lists it failed (polled every 25 ms)
 *   late_join   a new agent (new name) on agent N's IP joins agent 1; stops when every survivor
 *               lists it alive (polled every 15 ms)
 *
 * One thing the anchor did not need: Consulate's WatchEvents stream sends nothing when it opens,
 * so before the measured events one warm-up event (not measured, not counted) is fired and every
 * stream must show it; it is fired for both systems, so both runs stay alike.
 *
 * Every wait is bounded (PHASE_TIMEOUT_MS, 10 s per event); every agent is killed by PID at the end
 * of the run, on error too, and the run's directory is removed.
 */
import { ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import { cpuMs, exited, isRunning, kill9, killAndWait, removeTempDir, trackTempDir } from '../children';
import { AgentClient, GossipSystem, MemberView } from './types';

export const PHASE_TIMEOUT_MS = 90_000;
export const EVENT_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 60_000;
const SETTLE_MS = 1_500;
const EVENT_GAP_MS = 300;
/**
 * A join slower than this waited for something other than gossip (a push/pull, a reconnect):
 * reference/performance.md G3 calls it an outlier. Such runs keep their logs and name the agent.
 */
export const SLOW_CONVERGENCE_MS = 2_000;

export interface RunOptions {
  readonly events: number;
  /** Where to copy the agents' logs when the run had a timeout, a lost event or an error; also always when keepLogs. */
  readonly logDir: string;
  readonly keepLogs: boolean;
  /**
   * Start agent i after a random delay in [0, staggerMs). 0 (the anchor's way) starts all at once,
   * which puts every Serf agent's gossip ticker in step (memberlist creates its tickers at start);
   * a stagger gives each agent its own phase, as agents started at different times have.
   */
  readonly staggerMs: number;
  readonly log: (line: string) => void;
}

export interface RunResult {
  system: string;
  N: number;
  run: number;
  /** The box's 1-minute load average when the run started: other work on the box shows here. */
  load_avg_1m: number;
  spawn_to_rpc_ready_ms: number | null;
  join_all_ms: number | null;
  join_median_agent_ms: number | null;
  join_errors: string[];
  /** Per agent (2..N): how long its join RPC took. */
  join_rpc_ms: (number | null)[];
  /** Per agent (1..N): when it first listed N alive, from t0. */
  join_agent_ms: (number | null)[];
  /** Agents that took longer than SLOW_CONVERGENCE_MS, with whom they were still missing. */
  join_slow_agents: string[];
  /**
   * CPU the N agents used from t0 until the join phase ended (all list N alive), in all: the joins,
   * the gossip they set off and the harness's polls every 15 ms (/proc, 10 ms per process).
   */
  join_cpu_ms: number | null;
  warmup_event_all_ms: number | null;
  event_all_ms_each: (number | null)[];
  event_all_ms_median: number | null;
  /** Per measured event, per agent (1..N): when its stream had the event, from the fire call. */
  event_agent_ms: (number | null)[][];
  events_lost: number;
  fail_first_ms: number | null;
  fail_all_ms: number | null;
  /** Per survivor: when it first listed the victim failed, from the kill. */
  fail_agent_ms: (number | null)[];
  late_join_all_ms: number | null;
  late_join_rpc_ms: number | null;
  /** Per survivor: when it first listed the late joiner alive, from the join call. */
  late_join_agent_ms: (number | null)[];
  error?: string;
  logs?: string;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const now = () => performance.now();
export const r1 = (x: number | null | undefined): number | null => (x == null || !Number.isFinite(x) ? null : Math.round(x * 10) / 10);

export function median(xs: readonly (number | null | undefined)[]): number | null {
  const s = xs.filter((x): x is number => x != null).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Polls `members()` until `pred` holds; the time it first held, or null at the deadline.
 * `onMiss` gets each list that did not satisfy it (the last one says what was still missing).
 */
async function pollUntil(client: AgentClient, pred: (members: MemberView[]) => boolean, intervalMs: number, deadline: number, onMiss?: (members: MemberView[]) => void): Promise<number | null> {
  for (let i = 0; i < 100_000 && now() < deadline; i++) {
    try {
      const members = await client.members();
      if (pred(members)) return now();
      onMiss?.(members);
    } catch {
      /* an agent busy or not up yet: poll again */
    }
    await sleep(intervalMs);
  }
  return null;
}

/** Waits until every stream has the event or the deadline passes; the last arrival, or null. */
async function allReceived(arrivals: (number | null)[], deadline: number): Promise<number | null> {
  for (let i = 0; i < 10_000 && now() < deadline && arrivals.includes(null); i++) await sleep(2);
  return arrivals.includes(null) ? null : Math.max(...(arrivals as number[]));
}

/** The CPU the agents have used, in all; undefined when one is gone. */
function agentsCpuMs(agents: readonly ChildProcess[]): number | undefined {
  let total = 0;
  for (const agent of agents) {
    const used = cpuMs(agent.pid);
    if (used === undefined) return undefined;
    total += used;
  }
  return total;
}

export async function runOnce(system: GossipSystem, N: number, run: number, opts: RunOptions): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), `gossipbench-${system.system}-${N}-`));
  trackTempDir(dir);
  const agents: ChildProcess[] = [];
  const clients: AgentClient[] = [];
  const res: RunResult = {
    system: system.system, N, run, load_avg_1m: Math.round(loadavg()[0] * 100) / 100, spawn_to_rpc_ready_ms: null, join_all_ms: null, join_median_agent_ms: null, join_errors: [], join_rpc_ms: [], join_agent_ms: [], join_slow_agents: [], join_cpu_ms: null,
    warmup_event_all_ms: null, event_all_ms_each: [], event_all_ms_median: null, event_agent_ms: [], events_lost: 0, fail_first_ms: null, fail_all_ms: null, fail_agent_ms: [], late_join_all_ms: null, late_join_rpc_ms: null, late_join_agent_ms: [],
  };
  const tag = `[${system.system} N=${N} run ${run}]`;
  try {
    const tSpawn = now();
    if (opts.staggerMs > 0) {
      const delays = Array.from({ length: N }, () => Math.floor(Math.random() * opts.staggerMs)).sort((a, b) => a - b);
      for (let i = 1; i <= N; i++) {
        await sleep(delays[i - 1] - (i > 1 ? delays[i - 2] : 0));
        agents.push(system.startAgent(i, `n${i}`, dir));
      }
    } else {
      for (let i = 1; i <= N; i++) agents.push(system.startAgent(i, `n${i}`, dir));
    }
    for (let i = 1; i <= N; i++) {
      if (!isRunning(agents[i - 1])) throw new Error(`agent n${i} exited at start; see its log`);
      clients.push(await system.connect(i, CONNECT_TIMEOUT_MS));
    }
    const cpuAtT0 = agentsCpuMs(agents);
    const t0 = now();
    res.spawn_to_rpc_ready_ms = r1(t0 - tSpawn);

    // A. concurrent bootstrap join
    const target = system.gossipAddress(1);
    res.join_rpc_ms = new Array(N - 1).fill(null);
    const joins = clients.slice(1).map((c, k) => c.join(target).then(
      () => { res.join_rpc_ms[k] = r1(now() - t0); },
      (e: Error) => { res.join_errors.push(`n${k + 2}: ${e.message}`); },
    ));
    const dlA = now() + PHASE_TIMEOUT_MS;
    const lastMiss: MemberView[][] = clients.map(() => []);
    const seen = await Promise.all(clients.map((c, k) => pollUntil(c, (m) => m.filter((x) => x.status === 'alive').length >= N, 15, dlA, (m) => { lastMiss[k] = m; })));
    await Promise.allSettled(joins);
    const cpuAfterJoin = agentsCpuMs(agents);
    res.join_cpu_ms = cpuAtT0 === undefined || cpuAfterJoin === undefined ? null : cpuAfterJoin - cpuAtT0;
    res.join_all_ms = seen.includes(null) ? null : r1(Math.max(...(seen as number[])) - t0);
    res.join_agent_ms = seen.map((t) => (t == null ? null : r1(t - t0)));
    res.join_median_agent_ms = r1(median(res.join_agent_ms));
    const slowest = res.join_agent_ms.indexOf(res.join_all_ms ?? null);
    if (res.join_all_ms === null || res.join_all_ms > SLOW_CONVERGENCE_MS) {
      for (const [k, t] of res.join_agent_ms.entries()) {
        if (t !== null && t <= SLOW_CONVERGENCE_MS && k !== slowest) continue;
        const alive = new Set(lastMiss[k].filter((x) => x.status === 'alive').map((x) => x.name));
        const missing = Array.from({ length: N }, (_, i) => `n${i + 1}`).filter((name) => !alive.has(name));
        res.join_slow_agents.push(`n${k + 1} (${t === null ? 'timed out' : `${t} ms`}): its last list before that lacked ${missing.join(', ') || '?'} (${lastMiss[k].map((x) => `${x.name}=${x.status}`).join(' ')})`);
      }
    }
    opts.log(`${tag} ready ${res.spawn_to_rpc_ready_ms} ms; join_all ${res.join_all_ms} ms${res.join_errors.length ? ` (join errors: ${res.join_errors.join('; ')})` : ''}${res.join_slow_agents.length ? `; slow: ${res.join_slow_agents.join('; ')}` : ''}`);
    await sleep(SETTLE_MS); // push/pull and gossip queues drain, as in the anchor

    // B. user events, pushed over each agent's event stream
    const arrivals = new Map<string, (number | null)[]>();
    await Promise.all(clients.map((c, idx) => c.watchEvents((name, at) => {
      const a = arrivals.get(name);
      if (a && a[idx] === null) a[idx] = at;
    })));
    const fire = async (name: string): Promise<{ all: number | null; each: (number | null)[] }> => {
      const a: (number | null)[] = new Array(N).fill(null);
      arrivals.set(name, a);
      const ts = now();
      await clients[0].fireEvent(name, Buffer.from('x'));
      const last = await allReceived(a, now() + EVENT_TIMEOUT_MS);
      return { all: last === null ? null : last - ts, each: a.map((t) => (t === null ? null : r1(t - ts))) };
    };
    res.warmup_event_all_ms = r1((await fire(`warmup-${run}`)).all);
    await sleep(EVENT_GAP_MS);
    for (let e = 0; e < opts.events; e++) {
      const { all, each } = await fire(`bench-${run}-${e}`);
      res.event_all_ms_each.push(r1(all));
      res.event_agent_ms.push(each);
      if (all === null) res.events_lost++;
      await sleep(EVENT_GAP_MS);
    }
    res.event_all_ms_median = r1(median(res.event_all_ms_each));
    opts.log(`${tag} event_all ${res.event_all_ms_median} ms (each ${res.event_all_ms_each.join(', ')}; warm-up ${res.warmup_event_all_ms}); lost ${res.events_lost}`);

    // C. failure detection of a kill -9'd member
    const victim = `n${N}`;
    const tKill = now();
    kill9(agents[N - 1]);
    clients[N - 1].close();
    const dlC = now() + PHASE_TIMEOUT_MS;
    const det = await Promise.all(clients.slice(0, N - 1).map((c) => pollUntil(c, (m) => m.some((x) => x.name === victim && x.status === 'failed'), 25, dlC)));
    res.fail_first_ms = det.includes(null) ? null : r1(Math.min(...(det as number[])) - tKill);
    res.fail_all_ms = det.includes(null) ? null : r1(Math.max(...(det as number[])) - tKill);
    res.fail_agent_ms = det.map((t) => (t == null ? null : r1(t - tKill)));
    opts.log(`${tag} fail_first ${res.fail_first_ms} ms, fail_all ${res.fail_all_ms} ms`);
    await exited(agents[N - 1], 3_000);

    // D. one late joiner (new name, the killed agent's IP)
    const lateName = `n${N}b`;
    agents[N - 1] = system.startAgent(N, lateName, dir);
    clients[N - 1] = await system.connect(N, CONNECT_TIMEOUT_MS);
    const tJ = now();
    await clients[N - 1].join(target);
    res.late_join_rpc_ms = r1(now() - tJ);
    const dlD = now() + PHASE_TIMEOUT_MS;
    const lj = await Promise.all(clients.slice(0, N - 1).map((c) => pollUntil(c, (m) => m.some((x) => x.name === lateName && x.status === 'alive'), 15, dlD)));
    res.late_join_all_ms = lj.includes(null) ? null : r1(Math.max(...(lj as number[])) - tJ);
    res.late_join_agent_ms = lj.map((t) => (t == null ? null : r1(t - tJ)));
    opts.log(`${tag} late_join_all ${res.late_join_all_ms} ms`);
  } catch (err) {
    res.error = String((err as Error).stack ?? err);
    opts.log(`${tag} ERROR ${res.error}`);
  } finally {
    for (const c of clients) c.close();
    await Promise.all(agents.map((a) => killAndWait(a)));
    const slow = [res.join_all_ms, res.late_join_all_ms].some((t) => t !== null && t > SLOW_CONVERGENCE_MS);
    const troubled = slow || res.error !== undefined || res.events_lost > 0 || [res.join_all_ms, res.fail_all_ms, res.late_join_all_ms].includes(null);
    if (troubled || opts.keepLogs) {
      const to = join(opts.logDir, `${system.system}-N${N}-run${run}`);
      mkdirSync(to, { recursive: true });
      cpSync(dir, to, { recursive: true, filter: (src) => src === dir || src.endsWith('.log') });
      res.logs = to;
    }
    removeTempDir(dir);
  }
  return res;
}
