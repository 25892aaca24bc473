/**
 * The agent processes a gossip benchmark starts: each one's output goes straight to its own log
 * file (no piping through this process, which is also measuring), each is stopped by its PID, and
 * whatever is still running when the benchmark exits, fails or is interrupted is SIGKILLed by PID.
 * An exit we did not cause (not a kill -9 of the benchmark's victim, not a stop) is recorded.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';

const children = new Set<ChildProcess>();
const expected = new WeakSet<ChildProcess>();
export const unexpectedExits: string[] = [];

export interface StartOptions {
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Keep the child's stdin as a pipe from us: a Consulate role started with
   * CONSULATE_SUPERVISED=1 stops when that pipe closes, so even a SIGKILL of the benchmark
   * leaves no orphan.
   */
  readonly stdinPipe?: boolean;
}

export function startChild(command: string, args: readonly string[], options: StartOptions): ChildProcess {
  const log = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { stdio: [options.stdinPipe ? 'pipe' : 'ignore', log, log], env: options.env ?? process.env });
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

/** kill -9 by PID: the benchmark's crash, and how every agent is stopped at the end of a run. */
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
 * Stops an agent by SIGKILL and waits (bounded) for its exit. Not SIGTERM: a Consulate client and
 * a Serf agent given SIGTERM may leave gracefully, which costs seconds and gossips to the others;
 * the run is over and nothing is kept, so both are simply killed, the same way.
 */
export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!isRunning(child)) return;
  kill9(child);
  await exited(child, 3_000);
}

const tempDirs = new Set<string>();

/** A run's temporary directory: removed by the run, or by `cleanupSync` if the run never ends. */
export function trackTempDir(dir: string): void {
  tempDirs.add(dir);
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/**
 * Last resort ('exit' handler, Ctrl-C, a fatal error): SIGKILL every child still running, by PID,
 * and remove the temporary directories still there.
 */
export function cleanupSync(): void {
  for (const child of children) kill9(child);
  for (const dir of tempDirs) if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

export function runningChildren(): number {
  let n = 0;
  for (const child of children) if (isRunning(child)) n++;
  return n;
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
