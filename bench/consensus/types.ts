/**
 * The small interface the shared load generator drives, implemented once for Consulate
 * (consulate.ts) and once for etcd 3.4 (etcd.ts), plus the process bookkeeping both use.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';

/** A client bound to one server. Every call rejects on error or after its deadline. */
export interface KvClient {
  put(key: Buffer, value: Buffer, timeoutMs?: number): Promise<void>;
  rangeLinearizable(key: Buffer): Promise<void>;
  rangeSerializable(key: Buffer): Promise<void>;
  /** Opens one watch stream on `key`; onEvent gets each PUT event's value and its arrival time. */
  watch(key: Buffer, onEvent: (value: Buffer, atMs: number) => void): Promise<WatchHandle>;
  /**
   * Opens `count` watches on `key`, all on one stream, as etcd's clientv3 multiplexes a client's
   * watches (Consulate's WatchMany); resolves once every one is created. onEvent gets each PUT
   * event once per watch that received it.
   */
  watchShared(key: Buffer, count: number, onEvent: (value: Buffer, atMs: number) => void): Promise<WatchHandle>;
  close(): void;
}

export interface WatchHandle {
  close(): void;
}

/** A 3-server cluster on loopback. Index 0..2. */
export interface BenchCluster {
  readonly system: 'consulate' | 'etcd';
  readonly version: string;
  /** Raft timings the servers were started with, for the report. */
  readonly timings: string;
  readonly addresses: readonly string[];
  start(): Promise<void>;
  /** Index of the current leader, waiting (bounded) until there is one. */
  leader(timeoutMs?: number): Promise<number>;
  client(index: number): KvClient;
  /**
   * A client whose puts and reads go as frames on one open stream (Consulate's KVService.Calls:
   * the calls started in one turn share a frame) instead of a unary call each; none for etcd,
   * whose API has no such method.
   */
  streamClient?(index: number): KvClient;
  /** The server's process id, while it runs. */
  pid(index: number): number | undefined;
  kill9(index: number): void;
  restart(index: number): Promise<void>;
  /** Waits (bounded) until all three servers answer and agree on a leader. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  logFiles(): string[];
}

/** Children started by this process, stopped by PID on exit, Ctrl-C or error. */
const children = new Set<ChildProcess>();
/** Children we stopped or killed on purpose; any other exit is a crash and is recorded. */
const expected = new WeakSet<ChildProcess>();
export const unexpectedExits: string[] = [];

export function markExpectedExit(child: ChildProcess | undefined): void {
  if (child) expected.add(child);
}

export function startProcess(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  children.add(child);
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (!expected.has(child)) unexpectedExits.push(`${new Date().toISOString()} ${cmd} ${args.slice(0, 3).join(' ')} (pid ${child.pid}) exited on its own: code ${code} signal ${signal}; log ${logFile}`);
  });
  return child;
}

export function isRunning(child: ChildProcess | undefined): boolean {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the child has exited. */
export async function stopProcess(child: ChildProcess | undefined, graceMs = 3000): Promise<void> {
  if (!child || !isRunning(child) || child.pid === undefined) return;
  markExpectedExit(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try { process.kill(child.pid, 'SIGTERM'); } catch { /* already gone */ }
  const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await exited;
  clearTimeout(timer);
}

/** Last resort (process 'exit' handler): SIGKILL every child still running, by PID. */
export function killAllChildrenSync(): void {
  for (const child of children) {
    if (child.pid !== undefined && isRunning(child)) {
      markExpectedExit(child);
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
