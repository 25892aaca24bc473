/**
 * `make up`: runs datacenters dc1..dcN on this machine as DESIGN.md's local topology, every host
 * on its own loopback address with the standard ports, every role a real process.
 *
 *   node dist/deploy/up.js [--dcs=2] [--detach] [--subnet=127.0] [--state-dir=.consulate]
 *   node dist/deploy/up.js --down
 *
 * It starts every process, streams their logs prefixed by datacenter, host and role (and keeps
 * each process's raw JSON log under <state>/up/logs/), waits until every process answers gRPC
 * health SERVING, prints the endpoints and writes them to <state>/topology.json. On Ctrl-C,
 * SIGTERM or SIGHUP it stops every process it started: SIGTERM, then SIGKILL after a grace
 * period. Children hold a pipe from us on stdin and stop when it closes, so even a SIGKILLed
 * supervisor leaves no orphans. With --detach the supervisor runs in the background and the
 * command returns once everything is healthy; --down stops it.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, createWriteStream, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, WriteStream } from 'node:fs';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';

import { checkHealth } from '../services/lib/health-probe';
import { PACKAGE_ROOT } from '../services/lib/version';
import { ProcessSpec, datacenterName, loopbackAddress, renderFlags, tlsFileName, topology } from './topology';

/** How long every process has to become healthy before `make up` gives up. */
const HEALTHY_TIMEOUT_MS = 60_000;
const HEALTH_POLL_MS = 200;
/** How long processes have to stop after SIGTERM before they are killed. */
const STOP_GRACE_MS = 10_000;

interface Options {
  readonly datacenters: number;
  readonly detach: boolean;
  readonly down: boolean;
  /** The first two octets of every address: "127.0" gives DESIGN.md's 127.0.N.x. */
  readonly subnet: string;
  readonly stateDir: string;
}

interface Running {
  readonly spec: ProcessSpec;
  readonly name: string;
  readonly address: string;
  readonly grpc: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly recentLines: string[];
}

export interface TopologyFile {
  readonly supervisorPid: number;
  readonly startedAt: string;
  readonly healthy: boolean;
  readonly datacenters: string[];
  readonly processes: { datacenter: string; host: string; role: string; address: string; pid: number; endpoints: Record<string, string>; logFile: string }[];
}

function parseOptions(argv: readonly string[]): Options {
  const get = (name: string) => argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  const datacenters = Number(get('dcs') ?? '2');
  const subnet = get('subnet') ?? '127.0';
  if (!/^127\.\d{1,3}$/.test(subnet) || Number(subnet.split('.')[1]) > 255) throw new Error(`--subnet must look like 127.0 (the first two octets of a loopback address), got "${subnet}"`);
  for (const arg of argv) {
    if (!/^--(dcs|subnet|state-dir)=/.test(arg) && !['--detach', '--down', '--supervise'].includes(arg)) throw new Error(`unknown argument ${arg}`);
  }
  return { datacenters, detach: argv.includes('--detach'), down: argv.includes('--down'), subnet, stateDir: get('state-dir') ?? join(PACKAGE_ROOT, '.consulate') };
}

function paths(options: Options) {
  const upDir = join(options.stateDir, 'up');
  return {
    upDir,
    logDir: join(upDir, 'logs'),
    dataDir: join(upDir, 'data'),
    // Outside up/: the CA and certificates outlive a cluster, as compose's `tls` volume does.
    tlsDir: join(options.stateDir, 'tls'),
    pidFile: join(upDir, 'supervisor.pid'),
    supervisorLog: join(upDir, 'supervisor.log'),
    topologyFile: join(options.stateDir, 'topology.json'),
  };
}

function processName(spec: ProcessSpec): string {
  return `${spec.datacenter}/${spec.host}/${spec.role}`;
}

/** Whether a process with this PID exists (signal 0 tests without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when `pid` is a supervisor of ours (not some other process that reused the PID). */
function isOurSupervisor(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((arg) => arg.endsWith(join('deploy', 'up.js')));
  } catch {
    return false;
  }
}

function readPid(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) && isOurSupervisor(pid) ? pid : undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Supervisor {
  private readonly running: Running[] = [];
  private readonly files: ReturnType<typeof paths>;
  private readonly logStreams: WriteStream[] = [];
  private stopping = false;
  private readonly startedAt = new Date();
  private readonly color = process.stdout.isTTY === true;

  constructor(private readonly options: Options) {
    this.files = paths(options);
  }

  async run(): Promise<number> {
    const existing = readPid(this.files.pidFile);
    if (existing !== undefined) {
      process.stderr.write(`A cluster is already running under supervisor pid ${existing}; run 'make down' first.\n`);
      return 1;
    }
    // A fresh cluster every time: the last run's logs and data go (the supervisor log stays,
    // `make up DETACH=1` is writing it).
    rmSync(this.files.logDir, { recursive: true, force: true });
    rmSync(this.files.dataDir, { recursive: true, force: true });
    mkdirSync(this.files.logDir, { recursive: true });
    writeFileSync(this.files.pidFile, `${process.pid}\n`);
    rmSync(this.files.topologyFile, { force: true });

    let signalled: string | undefined;
    const onSignal = (signal: string) => {
      if (signalled !== undefined) return;
      signalled = signal;
      this.say(`\n${signal}: stopping every process`);
      void this.stopAll().then(() => process.exit(0));
    };
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => onSignal(signal));

    const certs = this.makeCertificates();
    if (certs !== undefined) {
      this.say(`\nmake up failed: ${certs}`);
      await this.stopAll();
      return 1;
    }
    const specs = topology(this.options.datacenters);
    this.say(`Starting ${specs.length} processes in ${this.options.datacenters} datacenter(s)...`);
    for (const spec of specs) this.start(spec);

    const healthy = await this.waitHealthy();
    if (!healthy.ok) {
      this.say(`\nmake up failed: ${healthy.reason}`);
      await this.stopAll();
      return 1;
    }
    this.writeTopology(true);
    this.printEndpoints();
    // From here the supervisor lives until a signal; child exits are reported as they happen.
    return new Promise<number>(() => undefined);
  }

  /**
   * The routers' mutual-TLS material, made by the same script as compose's `certs` service: kept
   * when present and valid, so areas made against one run still verify in the next. Undefined when
   * done, or what went wrong.
   */
  private makeCertificates(): string | undefined {
    const datacenters = Array.from({ length: this.options.datacenters }, (_, i) => datacenterName(i + 1));
    const script = join(PACKAGE_ROOT, 'deploy', 'tls', 'make-certs.sh');
    const result = spawnSync('bash', [script, this.files.tlsDir, ...datacenters], { encoding: 'utf8' });
    if (result.status === 0) {
      this.say(`TLS material for ${datacenters.join(', ')} in ${relative(process.cwd(), this.files.tlsDir) || '.'}`);
      return undefined;
    }
    return `cannot make the TLS material in ${this.files.tlsDir} (${result.error?.message ?? `exit ${result.status}`}): ${(result.stderr ?? '').trim()}`;
  }

  private start(spec: ProcessSpec): void {
    const address = loopbackAddress(spec.datacenter, spec.host, this.options.subnet);
    const name = processName(spec);
    const dataDir = join(this.files.dataDir, spec.datacenter, spec.host, spec.role);
    const args = [
      join(PACKAGE_ROOT, 'bin', 'consulate'),
      spec.role,
      `-datacenter=${spec.datacenter}`,
      `-node=${spec.host}`,
      `-bind=${address}`,
      `-data-dir=${dataDir}`,
      `-grpc-port=${spec.grpcPort}`,
      ...renderFlags(
        spec.flags,
        (host) => loopbackAddress(spec.datacenter, host, this.options.subnet),
        (file) => join(this.files.tlsDir, tlsFileName(file, spec.datacenter)),
      ),
    ];
    const child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, env: { ...process.env, CONSULATE_SUPERVISED: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    const logFile = join(this.files.logDir, `${spec.datacenter}-${spec.host}-${spec.role}.log`);
    const log = createWriteStream(logFile, { flags: 'a' });
    this.logStreams.push(log);
    const entry: Running = { spec, name, address, grpc: `${address}:${spec.grpcPort}`, logFile, child, exited: undefined, recentLines: [] };
    this.running.push(entry);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        log.write(`${line}\n`);
        entry.recentLines.push(line);
        if (entry.recentLines.length > 20) entry.recentLines.shift();
        this.say(`${this.prefix(entry)} ${formatLine(line)}`);
      });
    }
    child.on('error', (err) => this.say(`${this.prefix(entry)} cannot start: ${err.message}`));
    child.on('exit', (code, signal) => {
      entry.exited = { code, signal };
      if (!this.stopping) this.say(`${this.prefix(entry)} EXITED (${signal ?? `code ${code}`}); the rest keep running. Its log: ${relative(process.cwd(), logFile)}`);
    });
  }

  private async waitHealthy(): Promise<{ ok: true } | { ok: false; reason: string }> {
    const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
    const pending = new Set(this.running);
    while (pending.size > 0) {
      for (const entry of pending) {
        if (entry.exited !== undefined) {
          return { ok: false, reason: `${entry.name} exited while starting (${entry.exited.signal ?? `code ${entry.exited.code}`}). Last lines:\n${entry.recentLines.slice(-5).map((line) => `    ${line}`).join('\n')}` };
        }
      }
      const answers = await Promise.all([...pending].map(async (entry) => [entry, await checkHealth(entry.grpc, 1_000)] as const));
      for (const [entry, health] of answers) if (health.answer === 'SERVING') pending.delete(entry);
      if (pending.size === 0) break;
      if (Date.now() > deadline) return { ok: false, reason: `not healthy after ${HEALTHY_TIMEOUT_MS / 1000} s: ${[...pending].map((entry) => entry.name).join(', ')}` };
      await sleep(HEALTH_POLL_MS);
    }
    return { ok: true };
  }

  private writeTopology(healthy: boolean): void {
    const file: TopologyFile = {
      supervisorPid: process.pid,
      startedAt: this.startedAt.toISOString(),
      healthy,
      datacenters: [...new Set(this.running.map((entry) => entry.spec.datacenter))],
      processes: this.running.map((entry) => ({
        datacenter: entry.spec.datacenter,
        host: entry.spec.host,
        role: entry.spec.role,
        address: entry.address,
        pid: entry.child.pid ?? -1,
        endpoints: { grpc: entry.grpc },
        logFile: entry.logFile,
      })),
    };
    writeFileSync(`${this.files.topologyFile}.tmp`, `${JSON.stringify(file, null, 2)}\n`);
    // Rename is atomic: a reader (make up --detach, tests) sees the old file or the whole new one.
    renameSync(`${this.files.topologyFile}.tmp`, this.files.topologyFile);
  }

  private printEndpoints(): void {
    const seconds = ((Date.now() - this.startedAt.getTime()) / 1000).toFixed(1);
    const rows = [['DC', 'HOST', 'ADDRESS', 'ROLE', 'ENDPOINTS'], ...this.running.map((entry) => [entry.spec.datacenter, entry.spec.host, entry.address, entry.spec.role, `grpc ${entry.grpc}`])];
    const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
    const table = rows.map((row) => `  ${row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()}`).join('\n');
    this.say(
      [
        '',
        `Consulate is up: ${this.running.length} processes in ${this.options.datacenters} datacenter(s) healthy after ${seconds} s.`,
        '',
        table,
        '',
        `Topology: ${relative(process.cwd(), this.files.topologyFile)}   Logs: ${relative(process.cwd(), this.files.logDir)}/`,
        this.options.detach ? "Stop it with 'make down'." : 'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
  }

  async stopAll(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const live = () => this.running.filter((entry) => entry.exited === undefined && entry.child.pid !== undefined);
    for (const entry of live()) entry.child.kill('SIGTERM');
    const deadline = Date.now() + STOP_GRACE_MS;
    while (live().length > 0 && Date.now() < deadline) await sleep(50);
    for (const entry of live()) {
      this.say(`${this.prefix(entry)} did not stop within ${STOP_GRACE_MS / 1000} s; killing it`);
      entry.child.kill('SIGKILL');
    }
    while (live().length > 0) await sleep(20);
    await Promise.all(this.logStreams.map((stream) => new Promise<void>((resolve) => stream.end(resolve))));
    rmSync(this.files.pidFile, { force: true });
    rmSync(this.files.topologyFile, { force: true });
    this.say(`Stopped ${this.running.length} processes.`);
  }

  private prefix(entry: Running): string {
    const label = `${entry.spec.datacenter} ${entry.spec.host.padEnd(12)} ${entry.spec.role.padEnd(17)} |`;
    if (!this.color) return label;
    const palette = [36, 33, 35, 32, 34, 31];
    return `\x1b[${palette[(Number(entry.spec.datacenter.slice(2)) - 1) % palette.length]}m${label}\x1b[0m`;
  }

  private say(text: string): void {
    process.stdout.write(`${text}\n`);
  }
}

/** A JSON log line as "level message" for the terminal; anything else as it came. */
function formatLine(line: string): string {
  try {
    const record = JSON.parse(line) as { level?: string; msg?: string; err?: { message?: string } };
    if (typeof record.msg !== 'string') return line;
    const error = record.err?.message !== undefined && !record.msg.includes(record.err.message) ? ` (${record.err.message})` : '';
    return `${(record.level ?? '').padEnd(5)} ${record.msg}${error}`;
  } catch {
    return line;
  }
}

async function detach(options: Options): Promise<number> {
  const files = paths(options);
  const existing = readPid(files.pidFile);
  if (existing !== undefined) {
    process.stderr.write(`A cluster is already running under supervisor pid ${existing}; run 'make down' first.\n`);
    return 1;
  }
  mkdirSync(files.upDir, { recursive: true });
  rmSync(files.topologyFile, { force: true });
  const out = openSync(files.supervisorLog, 'w');
  const args = [__filename, `--dcs=${options.datacenters}`, `--subnet=${options.subnet}`, `--state-dir=${options.stateDir}`, '--detach', '--supervise'];
  const child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, detached: true, stdio: ['ignore', out, out], env: process.env });
  closeSync(out);
  child.unref();
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  process.stdout.write(`Starting in the background (supervisor pid ${child.pid}, log ${relative(process.cwd(), files.supervisorLog)})...\n`);
  const readLog = () => (existsSync(files.supervisorLog) ? readFileSync(files.supervisorLog, 'utf8') : '');
  try {
    const deadline = Date.now() + HEALTHY_TIMEOUT_MS + 5_000;
    while (Date.now() < deadline && exited === undefined) {
      if (existsSync(files.topologyFile) && (JSON.parse(readFileSync(files.topologyFile, 'utf8')) as TopologyFile).healthy) {
        const log = readLog();
        process.stdout.write(log.slice(log.indexOf('Consulate is up')));
        return 0;
      }
      await sleep(200);
    }
    process.stderr.write(`make up failed; the supervisor's log:\n${readLog().split('\n').slice(-30).join('\n')}\n`);
  } catch (err) {
    process.stderr.write(`make up failed: ${(err as Error).message}\n`);
  }
  // Whatever went wrong, leave nothing running in the background.
  if (exited === undefined && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
  return 1;
}

async function down(options: Options): Promise<number> {
  const files = paths(options);
  const pid = readPid(files.pidFile);
  if (pid === undefined) {
    process.stdout.write('No cluster is running.\n');
    return 0;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS + 5_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) {
    process.stderr.write(`supervisor ${pid} did not stop; killing it (its processes stop when their stdin closes)\n`);
    process.kill(pid, 'SIGKILL');
  }
  process.stdout.write(`Stopped the cluster (supervisor pid ${pid}).\n`);
  return 0;
}

export async function main(argv: readonly string[]): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(argv);
    topology(options.datacenters);
  } catch (err) {
    process.stderr.write(`make up: ${(err as Error).message}\n`);
    return 2;
  }
  if (options.down) return down(options);
  if (options.detach && !argv.includes('--supervise')) return detach(options);
  return new Supervisor(options).run();
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`make up: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
