/**
 * Real role processes for integration tests: each gets its own loopback address (so it keeps its
 * standard port, as under `make up`), runs from dist/ through bin/consulate, and is waited on
 * until it answers gRPC health SERVING. Every process started here is stopped by its PID.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { checkHealth } from '../../services/lib/health-probe';
import { PACKAGE_ROOT } from '../../services/lib/version';

/** The repository, found from package.json: the same whether this runs from test/ or compiled into dist/ (the benchmarks). */
export const REPO_ROOT = PACKAGE_ROOT;
export const CONSULATE_BIN = join(REPO_ROOT, 'bin', 'consulate');
const HEALTHCHECK_SCRIPT = join(REPO_ROOT, 'dist', 'deploy', 'healthcheck.js');

const STANDARD_GRPC_PORTS: Record<string, number> = { consensus: 8310, gossip: 8320, catalog: 8502, 'federation-router': 8330 };

let nextHost = 1;

/**
 * A loopback address no other test process of this run uses: 127.<100 + pid % 100>.<n / 250>.<n % 250 + 1>.
 * Tests in parallel jest workers have different PIDs; `make up` uses 127.0.x.x.
 */
export function freeLoopbackAddress(): string {
  const n = nextHost++;
  return `127.${100 + (process.pid % 100)}.${Math.floor(n / 250)}.${(n % 250) + 1}`;
}

export interface StartOptions {
  readonly role: 'consensus' | 'gossip' | 'catalog' | 'federation-router';
  readonly datacenter?: string;
  readonly node?: string;
  readonly address?: string;
  /** Reuse a data directory (a restart); a fresh temporary one otherwise. */
  readonly dataDir?: string;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Wait for SERVING (default); false returns as soon as the process is spawned. */
  readonly waitHealthy?: boolean;
  /** A command the process runs under, e.g. ['ip', 'netns', 'exec', 'dc1']. */
  readonly wrap?: readonly string[];
  /**
   * Run the health probe under this prefix (`node dist/deploy/healthcheck.js`), for a process this
   * one cannot reach, e.g. the `wrap` of a network namespace with its own loopback; the probe
   * runs in this process otherwise.
   */
  readonly probeVia?: readonly string[];
  /** Run as this user (and group) id, e.g. to tell processes apart in firewall rules; the data directory is given to it. */
  readonly uid?: number;
}

export interface RoleProcess {
  readonly role: string;
  readonly address: string;
  readonly dataDir: string;
  readonly grpc: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Every line the process wrote, stdout and stderr, in order. */
  readonly lines: string[];
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** SIGTERM and wait; SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | string>;
}

const running = new Set<RoleProcess>();

export async function startRole(options: StartOptions): Promise<RoleProcess> {
  const address = options.address ?? freeLoopbackAddress();
  const port = STANDARD_GRPC_PORTS[options.role];
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `consulate-${options.role}-`));
  const args = [CONSULATE_BIN, options.role, `-datacenter=${options.datacenter ?? 'dc1'}`, `-node=${options.node ?? `${options.role}-${address}`}`, `-bind=${address}`, `-data-dir=${dataDir}`, ...(options.args ?? [])];
  const command = [...(options.wrap ?? []), process.execPath, ...args];
  const user = options.uid === undefined ? {} : { uid: options.uid, gid: options.uid };
  if (options.uid !== undefined) chownSync(dataDir, options.uid, options.uid);
  const child = spawn(command[0], command.slice(1), { cwd: REPO_ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'], ...user });
  const lines: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', (line) => lines.push(line));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const proc: RoleProcess = {
    role: options.role,
    address,
    dataDir,
    grpc: `${address}:${port}`,
    pid: child.pid!,
    child,
    lines,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      running.delete(proc);
      return exited;
    },
  };
  running.add(proc);
  if (options.waitHealthy !== false) await waitHealthy(proc, 20_000, options.probeVia);
  return proc;
}

export async function waitHealthy(proc: RoleProcess, timeoutMs = 20_000, probeVia?: readonly string[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitedEarly: number | string | undefined;
  void proc.exited.then((code) => (exitedEarly = code));
  for (;;) {
    if (exitedEarly !== undefined) throw new Error(`${proc.role} at ${proc.grpc} exited (${exitedEarly}) before it was healthy:\n${proc.lines.join('\n')}`);
    const health = probeVia === undefined ? await checkHealth(proc.grpc, 1_000) : await checkHealthVia(probeVia, proc.grpc);
    if (health.answer === 'SERVING') return;
    if (Date.now() > deadline) throw new Error(`${proc.role} at ${proc.grpc} not healthy after ${timeoutMs} ms (${health.answer} ${health.detail}):\n${proc.lines.join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The container HEALTHCHECK's probe, run under `prefix`: its answer line is checkHealth's answer. */
function checkHealthVia(prefix: readonly string[], address: string): Promise<{ answer: string; detail: string }> {
  const command = [...prefix, process.execPath, HEALTHCHECK_SCRIPT, address];
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (err) => resolve({ answer: 'UNREACHABLE', detail: err.message }));
    child.on('exit', () => {
      const match = /^(\S+)(?: \((.*)\))?$/m.exec(output.trim());
      resolve({ answer: match?.[1] ?? 'UNREACHABLE', detail: match?.[2] ?? output.trim() });
    });
  });
}

/** Stops every process this harness started that is still running; call in afterAll. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((proc) => proc.stop()));
}

/** Parsed JSON log lines of a process (non-JSON lines skipped). */
export function logRecords(proc: RoleProcess): Record<string, unknown>[] {
  return proc.lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** Polls `predicate` until it holds or `timeoutMs` passes. */
export async function eventually<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A process's resident memory now (VmRSS) or at its peak (VmHWM), in KiB, from /proc. */
export function vmKib(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}
