/**
 * The processes a benchmark starts (Consulate roles, Serf agents, the plain node:http server):
 * each one's output goes straight to its own log file (no piping through this process, which is
 * also measuring), each is stopped by its PID, and whatever is still running when the benchmark
 * exits, fails or is interrupted is SIGKILLed by PID. Consulate roles run with
 * CONSULATE_SUPERVISED=1 and a stdin pipe from us, so even a SIGKILL of the benchmark leaves no
 * orphan. An exit we did not cause (not a kill -9 of a benchmark's victim, not a stop) is recorded.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';

const children = new Set<ChildProcess>();
const expected = new WeakSet<ChildProcess>();
export const unexpectedExits: string[] = [];

/**
 * Tracing in the Consulate roles a benchmark starts: off (OTEL_SDK_DISABLED=true: no spans, no
 * trace context, no AsyncLocalStorage hook on every promise), as etcd 3.4 and Serf have none;
 * BENCH_TRACING=on keeps a role's default (trace context carried, nothing exported), which costs
 * a consensus server 5-8 % of its CPU per put.
 */
export function tracingEnv(): NodeJS.ProcessEnv {
  return process.env.BENCH_TRACING === 'on' ? {} : { OTEL_SDK_DISABLED: 'true' };
}

/** For a benchmark's notes. */
export const TRACING_NOTE = `Consulate roles with tracing ${process.env.BENCH_TRACING === 'on' ? 'on (trace context carried, no export; BENCH_TRACING=on)' : 'off (OTEL_SDK_DISABLED=true; BENCH_TRACING=on keeps it)'}`;

export interface StartOptions {
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Keep the child's stdin as a pipe from us (CONSULATE_SUPERVISED=1 stops when it closes). */
  readonly stdinPipe?: boolean;
  /** Add an IPC channel (a forked node:http server tells us when it listens). */
  readonly ipc?: boolean;
}

export function startChild(command: string, args: readonly string[], options: StartOptions): ChildProcess {
  const log = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    const stdio: ('pipe' | 'ignore' | 'ipc' | number)[] = [options.stdinPipe ? 'pipe' : 'ignore', log, log];
    if (options.ipc) stdio.push('ipc');
    child = spawn(command, args, { stdio, env: options.env ?? process.env });
  } finally {
    closeSync(log);
  }
  if (child.pid === undefined) throw new Error(`could not start ${command}: is it installed?`);
  children.add(child);
  child.stdin?.on('error', () => { /* the child is gone */ });
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (!expected.has(child)) {
      unexpectedExits.push(`${new Date().toISOString()} ${command} ${args.slice(0, 3).join(' ')} (pid ${child.pid}) exited on its own: code ${code} signal ${signal}; log ${options.logFile}`);
    }
  });
  return child;
}

export function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** SIGTERM by PID, then SIGKILL after `graceMs`; resolves when the child has exited (bounded). */
export async function stopChild(child: ChildProcess | undefined, graceMs = 3_000): Promise<void> {
  if (!isRunning(child) || child.pid === undefined) return;
  expected.add(child);
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  const kill = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, graceMs + 2_000))]);
  clearTimeout(kill);
}

/** Resolves when the child has exited, or after `timeoutMs` (then false). */
export function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** kill -9 by PID: a benchmark's crash, and how gossip agents are stopped at the end of a run. */
export function kill9(child: ChildProcess | undefined): void {
  if (!isRunning(child) || child.pid === undefined) return;
  expected.add(child);
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/**
 * SIGKILL and wait (bounded) for the exit. Not SIGTERM: a Consulate client and a Serf agent given
 * SIGTERM may leave gracefully, which costs seconds and gossips to the others; when the run is over
 * and nothing is kept, both are simply killed, the same way.
 */
export async function killAndWait(child: ChildProcess | undefined): Promise<void> {
  if (!isRunning(child)) return;
  kill9(child);
  await exited(child, 3_000);
}

export function runningChildren(): number {
  let n = 0;
  for (const child of children) if (isRunning(child)) n++;
  return n;
}

const tempDirs = new Set<string>();

/** A temporary directory removed by `removeTempDir`, or by `cleanupSync` if the run never gets there. */
export function trackTempDir(dir: string): void {
  tempDirs.add(dir);
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Last resort ('exit' handler, Ctrl-C, a fatal error): SIGKILL every child by PID, remove temp dirs. */
export function cleanupSync(): void {
  for (const child of children) kill9(child);
  for (const dir of tempDirs) if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/**
 * CPU time a process has used, in ms to the nanosecond, from the schedstat of each of its threads
 * (/proc/<pid>/task/<tid>/schedstat: time on a CPU, in ns); undefined when gone. /proc/<pid>/stat
 * counts in 10 ms ticks, too coarse to split a c=1 run of a few seconds between processes. Threads
 * that ended before the call are not counted (V8's and libuv's live as long as the process).
 */
export function preciseCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The thread ended between the listing and the read.
      }
    }
    return ns / 1e6;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc/<pid>/stat; undefined when gone. */
export function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ") "; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** Resident memory of a process in MiB, from /proc/<pid>/status; undefined when gone. */
export function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round(Number(match[1]) / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
