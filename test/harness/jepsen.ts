/**
 * A Jepsen-style run against real consensus processes (reference/reliability.md P1), shaped like
 * jepsen-io/etcd's defaults: three servers, clients doing reads, writes and compare-and-sets on
 * registers at about 200 operations a second, a nemesis that starts a fault, waits 5 s, heals it
 * and waits 5 s again, for the whole run; then everything healed, 10 s of quiet, a final read of
 * every register. The history goes to this repository's linearizability checker (WGL, one part per
 * key); a set workload beside it checks that no acknowledged write is lost; and no server may exit
 * or log an uncaught error on its own.
 *
 * The nemeses:
 *   kill       SIGKILL one, two or all three servers (the leader half the time); heal restarts them
 *              on their data
 *   pause      SIGSTOP one or two servers; heal sends SIGCONT
 *   partition  cut one server off from both others ("majority") or cut one pair only ("bridge");
 *              the rules are nftables drops on each server's user id (every server runs as its own
 *              uid), so loopback traffic between two processes can be told apart; the clients (this
 *              process, root) still reach every server, as Jepsen's control node does
 *   clock      move one or two servers' wall clock by up to ±120 s (libfaketime, the monotonic
 *              clock untouched, as settimeofday leaves it); heal sets it back
 *   member     remove a server from the cluster (the leader half the time), stop it and wipe its
 *              data; heal starts it empty and adds it back (a learner, promoted once caught up)
 *
 * Operation outcomes, as Jepsen records them: a read that failed did nothing and is dropped; a write
 * or compare-and-set that failed in any way may or may not have happened, and goes to the checker
 * as "unknown" (it may take effect at any point after it was called, or never).
 */
import { ServiceError, credentials } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ClusterServiceClient, StatusResponse } from '../../services/gen/consulate/consensus/v1/cluster';
import { Compare_Result, Compare_Target, Consistency, TxnRequest } from '../../services/gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../services/lib/consensus-client';
import { callUnary } from '../../services/lib/grpc-client';
import { CheckResult, KvInput, KvOutput, Operation, checkOperations, kvModel } from '../checkers/linearizability';
import { Prng } from '../sim/prng';
import { consensusStatus, selfDeclaredLeader } from './consensus-status';
import { run, runOrThrow } from './netns';
import { RoleProcess, freeLoopbackAddress, startRole } from './processes';

export const NEMESES = ['kill', 'pause', 'partition', 'clock', 'member'] as const;
export type Nemesis = (typeof NEMESES)[number];

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

export interface JepsenOptions {
  readonly nemesis: Nemesis;
  /** Length of the faulty phase (the nemesis cycles through it), before the heal and the quiet. */
  readonly seconds: number;
  readonly opsPerSecond: number;
  readonly seed: number;
  readonly log: (line: string) => void;
}

export interface JepsenReport {
  readonly options: Omit<JepsenOptions, 'log'>;
  /** Register operations in the history: completed, unknown (writes that failed), reads dropped. */
  readonly ok: number;
  readonly unknown: number;
  readonly droppedReads: number;
  readonly verdict: CheckResult<KvInput, KvOutput>;
  /** The set workload: writes acknowledged, and those of them the final read did not find. */
  readonly setAcknowledged: number;
  readonly setLost: readonly string[];
  /** What the nemesis did, with the time since the start. */
  readonly faults: readonly string[];
  /** Servers that exited by themselves or logged an uncaught error, with their last lines. */
  readonly crashes: readonly string[];
  /** Where the history was written when the run failed. */
  historyFile?: string;
}

/** Why this machine cannot run `nemesis`, or undefined when it can. */
export function jepsenUnavailableReason(nemesis: Nemesis): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs Linux and root (servers run as their own user ids)';
  if (nemesis === 'partition') {
    if (spawnSync('nft', ['--version']).status !== 0) return '`nft` is not available';
  }
  if (nemesis === 'clock' && !existsSync(LIBFAKETIME)) return `libfaketime is not installed (${LIBFAKETIME}; Debian package faketime)`;
  return undefined;
}

const CYCLE_MS = 5_000;
const QUIET_MS = 10_000;
const WORKERS = 5;
const OP_TIMEOUT_MS = 1_000;
/** Registers live 10 s each, three at a time: each key's history stays small for the checker. */
const KEY_LIFETIME_MS = 10_000;
const KEYS_AT_ONCE = 3;
const CHECK_TIMEOUT_MS = 120_000;
/** Every server's user id: its own, so firewall rules can name it. */
const UID_BASE = 62_000 + (process.pid % 1_000) * 3;

interface Server {
  readonly id: string;
  readonly address: string;
  readonly uid: number;
  readonly dataDir: string;
  readonly clockFile: string;
  proc: RoleProcess | undefined;
  /** Set before this harness signals or stops it, so its exit is not taken for a crash. */
  deliberate: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Three consensus servers as processes, each with its own uid, data and (for the clock nemesis) clock. */
class JepsenCluster {
  readonly servers: Server[];
  readonly crashes: string[] = [];
  private readonly root: string;
  private readonly table = `consulate_jepsen_${process.pid}`;

  constructor(private readonly fakeClocks: boolean) {
    this.root = join(tmpdir(), `consulate-jepsen-${process.pid}-${Date.now()}`);
    this.servers = [1, 2, 3].map((i) => ({
      id: `server-${i}`,
      address: freeLoopbackAddress(),
      uid: UID_BASE + i - 1,
      dataDir: join(this.root, `server-${i}`),
      clockFile: join(this.root, `server-${i}.clock`),
      proc: undefined,
      deliberate: false,
    }));
  }

  get addresses(): string[] {
    return this.servers.map((s) => `${s.address}:8310`);
  }

  async start(): Promise<void> {
    for (const server of this.servers) {
      mkdirSync(server.dataDir, { recursive: true });
      writeFileSync(server.clockFile, '+0');
    }
    for (const server of this.servers) await this.launch(server, true);
    for (const server of this.servers) await this.waitServing(server);
  }

  /** Starts `server` on its data directory; `bootstrap` gives it the initial peers (else it waits to be added). */
  async launch(server: Server, bootstrap: boolean): Promise<void> {
    const peers = bootstrap ? this.servers.map((s) => `-initial-peer=${s.id}=${s.address}:8310`) : [];
    const clock = this.fakeClocks
      ? { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: server.clockFile, FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_CACHE_DURATION: '1' }
      : {};
    server.deliberate = false;
    const proc = await startRole({ role: 'consensus', node: server.id, address: server.address, dataDir: server.dataDir, args: peers, uid: server.uid, env: clock, waitHealthy: false });
    server.proc = proc;
    void proc.exited.then((code) => {
      if (!server.deliberate && server.proc === proc) this.crashes.push(`${server.id} exited by itself (${code}):\n${proc.lines.slice(-20).join('\n')}`);
    });
  }

  async waitServing(server: Server, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await consensusStatus(`${server.address}:8310`).catch(() => undefined)) === undefined) {
      if (Date.now() > deadline) throw new Error(`${server.id} not serving after ${timeoutMs} ms:\n${server.proc?.lines.slice(-20).join('\n')}`);
      await sleep(100);
    }
  }

  /** The server the others follow, if one answers as leader within `timeoutMs`. */
  async leader(timeoutMs = 5_000): Promise<Server | undefined> {
    return (await this.leaderStatus(timeoutMs))?.server;
  }

  private async leaderStatus(timeoutMs: number): Promise<{ server: Server; status: StatusResponse } | undefined> {
    const deadline = Date.now() + timeoutMs;
    do {
      const found = await selfDeclaredLeader(this.addresses, 500);
      if (found !== undefined) return { server: this.servers[found.index], status: found.status };
      await sleep(100);
    } while (Date.now() < deadline);
    return undefined;
  }

  signal(server: Server, signal: NodeJS.Signals): void {
    server.deliberate = signal === 'SIGKILL' || signal === 'SIGTERM' || server.deliberate;
    server.proc?.child.kill(signal);
  }

  async installFirewall(): Promise<void> {
    await run(['nft', 'delete', 'table', 'inet', this.table]);
    await runOrThrow(['nft', 'add', 'table', 'inet', this.table]);
    await runOrThrow(['nft', 'add', 'chain', 'inet', this.table, 'out', '{ type filter hook output priority 0; policy accept; }']);
  }

  /** Nothing gets between `a` and `b` in either direction (each one's packets to the other are dropped). */
  async cut(a: Server, b: Server): Promise<void> {
    for (const [from, to] of [[a, b], [b, a]]) {
      await runOrThrow(['nft', 'add', 'rule', 'inet', this.table, 'out', 'meta', 'skuid', String(from.uid), 'ip', 'daddr', to.address, 'counter', 'drop']);
    }
  }

  /** Removes every cut; answers how many packets the cuts dropped (evidence that they cut anything). */
  async healNetwork(): Promise<number> {
    const rules = await runOrThrow(['nft', 'list', 'chain', 'inet', this.table, 'out']);
    await runOrThrow(['nft', 'flush', 'chain', 'inet', this.table, 'out']);
    return [...rules.matchAll(/counter packets (\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
  }

  setClockOffset(server: Server, seconds: number): void {
    writeFileSync(server.clockFile, seconds >= 0 ? `+${seconds}` : String(seconds));
  }

  /** Asks the leader to make a membership change, following it for up to `timeoutMs`. */
  async changeMembership(change: { remove: string } | { add: Server }, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const leader = await this.leader(2_000);
      if (leader !== undefined) {
        const admin = new ClusterServiceClient(`${leader.address}:8310`, credentials.createInsecure());
        try {
          if ('remove' in change) await callUnary(admin.memberRemove.bind(admin), { id: change.remove }, { timeoutMs: 5_000, idempotent: false });
          else await callUnary(admin.memberAdd.bind(admin), { member: { id: change.add.id, address: `${change.add.address}:8310`, learner: true } }, { timeoutMs: 30_000, idempotent: false });
          return;
        } catch (err) {
          last = (err as ServiceError).details ?? String(err);
          if ('remove' in change && /is not a member/.test(last)) return;
        } finally {
          admin.close();
        }
      }
      await sleep(200);
    }
    throw new Error(`membership change ${JSON.stringify('remove' in change ? change : { add: change.add.id })} did not go through: ${last}`);
  }

  async isMember(server: Server): Promise<boolean> {
    const leader = await this.leaderStatus(5_000);
    return leader?.status.members.some((m) => m.id === server.id) ?? true;
  }

  /** Lines where a server reported an uncaught error, whether or not it exited. */
  uncaughtErrors(): string[] {
    const bad = /uncaught|unhandled|"level":(60|"fatal")|panic/i;
    return this.servers.flatMap((s) => (s.proc?.lines ?? []).filter((line) => bad.test(line)).map((line) => `${s.id}: ${line}`));
  }

  async stop(): Promise<void> {
    for (const server of this.servers) {
      server.deliberate = true;
      server.proc?.child.kill('SIGCONT');
      await server.proc?.stop(5_000);
    }
    await run(['nft', 'delete', 'table', 'inet', this.table]);
    rmSync(this.root, { recursive: true, force: true });
  }
}

interface Fault {
  /** Starts a fault; says what it did. */
  start(): Promise<string>;
  /** Ends every fault this nemesis started; says what it did (empty when there was nothing to heal). */
  heal(): Promise<string>;
}

function makeNemesis(kind: Nemesis, cluster: JepsenCluster, rng: Prng): Fault {
  const servers = cluster.servers;
  const pick = <T>(from: readonly T[]): T => rng.pick(from);
  /** One server: the leader half the time (when one is known), any server otherwise. */
  const victim = async (): Promise<Server> => (rng.chance(0.5) ? ((await cluster.leader(1_000)) ?? pick(servers)) : pick(servers));
  /** One or two servers, the leader among them half the time. */
  const victims = async (): Promise<Server[]> => {
    const first = await victim();
    return rng.chance(0.4) ? [first, pick(servers.filter((s) => s !== first))] : [first];
  };
  const names = (list: readonly Server[]) => list.map((s) => s.id).join(', ');

  switch (kind) {
    case 'kill': {
      let killed: Server[] = [];
      return {
        async start() {
          killed = rng.chance(0.15) ? [...servers] : await victims();
          for (const server of killed) cluster.signal(server, 'SIGKILL');
          await Promise.all(killed.map((server) => server.proc?.exited));
          return `SIGKILL ${names(killed)}`;
        },
        async heal() {
          for (const server of killed) await cluster.launch(server, true);
          for (const server of killed) await cluster.waitServing(server);
          const done = killed.length === 0 ? '' : `restarted ${names(killed)}`;
          killed = [];
          return done;
        },
      };
    }
    case 'pause': {
      let paused: Server[] = [];
      return {
        async start() {
          paused = await victims();
          for (const server of paused) cluster.signal(server, 'SIGSTOP');
          return `SIGSTOP ${names(paused)}`;
        },
        async heal() {
          for (const server of paused) cluster.signal(server, 'SIGCONT');
          const done = paused.length === 0 ? '' : `SIGCONT ${names(paused)}`;
          paused = [];
          return done;
        },
      };
    }
    case 'partition': {
      let cut = false;
      return {
        async start() {
          const alone = await victim();
          const others = servers.filter((s) => s !== alone);
          cut = true;
          if (rng.chance(0.5)) {
            for (const other of others) await cluster.cut(alone, other);
            return `majority: ${alone.id} | ${names(others)}`;
          }
          const other = pick(others);
          await cluster.cut(alone, other);
          return `bridge: ${alone.id} x ${other.id} (${others.find((s) => s !== other)!.id} sees both)`;
        },
        async heal() {
          if (!cut) return '';
          const dropped = await cluster.healNetwork();
          cut = false;
          return `network healed (${dropped} packets dropped)`;
        },
      };
    }
    case 'clock': {
      let moved: Server[] = [];
      return {
        async start() {
          moved = await victims();
          const offsets = moved.map((server) => {
            const seconds = (rng.chance(0.5) ? 1 : -1) * rng.between(1, 120);
            cluster.setClockOffset(server, seconds);
            return `${server.id} ${seconds > 0 ? '+' : ''}${seconds} s`;
          });
          return `clock ${offsets.join(', ')}`;
        },
        async heal() {
          for (const server of moved) cluster.setClockOffset(server, 0);
          const done = moved.length === 0 ? '' : `clocks reset on ${names(moved)}`;
          moved = [];
          return done;
        },
      };
    }
    case 'member': {
      let removed: Server | undefined;
      return {
        async start() {
          const server = await victim();
          await cluster.changeMembership({ remove: server.id }, 10_000);
          if (await cluster.isMember(server)) return `remove ${server.id}: still a member, left running`;
          cluster.signal(server, 'SIGTERM');
          await server.proc?.exited;
          rmSync(server.dataDir, { recursive: true, force: true });
          mkdirSync(server.dataDir, { recursive: true });
          removed = server;
          return `removed ${server.id}, stopped, data wiped`;
        },
        async heal() {
          const server = removed;
          if (server === undefined) return '';
          removed = undefined;
          await cluster.launch(server, false);
          await cluster.waitServing(server);
          await cluster.changeMembership({ add: server }, 30_000);
          return `added ${server.id} back (empty, caught up, promoted)`;
        },
      };
    }
  }
}

type KvOperation = Operation<KvInput, KvOutput>;

/** The register and set clients: `WORKERS` of them, each with its own connections, sharing the op rate. */
class Workload {
  readonly history: KvOperation[] = [];
  readonly keys = new Set<string>();
  readonly setAcknowledged = new Set<string>();
  droppedReads = 0;
  /** For the final reads of the registers and the set; close() closes it with the workers' clients. */
  private readonly finalClient: ConsensusClient;
  private readonly clients: ConsensusClient[];
  private readonly t0 = performance.now();
  private stopped = false;

  constructor(
    private readonly addresses: readonly string[],
    private readonly prefix: string,
    private readonly rng: Prng,
  ) {
    this.finalClient = new ConsensusClient(addresses, trace.getTracer('jepsen'));
    this.clients = [this.finalClient];
  }

  /** Runs until stop(); resolves when every worker has finished its last operation. */
  async run(opsPerSecond: number): Promise<void> {
    const intervalMs = (1_000 * WORKERS) / opsPerSecond;
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, worker) => {
        const client = new ConsensusClient(this.addresses, trace.getTracer('jepsen'));
        this.clients.push(client);
        const rng = this.rng.fork();
        for (let seq = 0; !this.stopped; seq++) {
          const started = performance.now();
          // Worker 0 also feeds the set: every tenth of its turns is an add.
          if (worker === 0 && seq % 10 === 0) await this.addToSet(client, seq);
          else await this.registerOp(client, worker, seq, rng);
          await sleep(Math.max(0, intervalMs * (0.5 + rng.next()) - (performance.now() - started)));
        }
      }),
    );
  }

  stop(): void {
    this.stopped = true;
  }

  close(): void {
    for (const client of this.clients) client.close();
  }

  /** A final linearizable read of every register, retried until it answers (the cluster is healed by now). */
  async finalReads(timeoutMs: number): Promise<void> {
    for (const key of this.keys) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const call = this.now();
        try {
          const value = await this.read(this.finalClient, key);
          this.history.push({ clientId: -1, input: { kind: 'get', key }, output: { kind: 'get', value }, call, return: this.now() });
          break;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`the final read of ${key} never answered: ${(err as Error).message}`);
          await sleep(200);
        }
      }
    }
  }

  /** The acknowledged set adds the final read does not find. */
  async lostFromSet(): Promise<string[]> {
    const from = Buffer.from(`${this.prefix}/set/`);
    const to = Buffer.from(`${this.prefix}/set0`);
    const response = await this.finalClient.kv('range', { key: from, rangeEnd: to, limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LINEARIZABLE, keysOnly: true, countOnly: false }, { timeoutMs: 10_000, idempotent: true });
    const present = new Set(response.kvs.map((kv) => kv.key.toString()));
    return [...this.setAcknowledged].filter((key) => !present.has(key));
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  private async addToSet(client: ConsensusClient, seq: number): Promise<void> {
    const key = `${this.prefix}/set/${String(seq).padStart(7, '0')}`;
    try {
      await client.kv('put', { key: Buffer.from(key), value: Buffer.from('1'), lease: 0n, prevKv: false }, { timeoutMs: OP_TIMEOUT_MS, idempotent: false });
      this.setAcknowledged.add(key);
    } catch {
      // unknown: it may be there or not; only acknowledged adds must be
    }
  }

  private async registerOp(client: ConsensusClient, worker: number, seq: number, rng: Prng): Promise<void> {
    const key = `${this.prefix}/r/${Math.floor(this.now() / KEY_LIFETIME_MS)}-${rng.int(KEYS_AT_ONCE)}`;
    this.keys.add(key);
    const value = `${worker}.${seq}`;
    const roll = rng.next();
    // Compare-and-set against a value some worker may have written: this worker's recent ones, or
    // "absent".
    const expected = rng.chance(0.2) ? null : `${rng.int(WORKERS)}.${Math.max(0, seq - rng.int(20))}`;
    const input: KvInput = roll < 0.5 ? { kind: 'get', key } : roll < 0.8 ? { kind: 'put', key, value } : { kind: 'cas', key, expected, value };
    const call = this.now();
    try {
      const output = await this.apply(client, input);
      this.history.push({ clientId: worker, input, output, call, return: this.now() });
    } catch {
      if (input.kind === 'get') this.droppedReads++;
      else this.history.push({ clientId: worker, input, output: undefined, call, return: Infinity });
    }
  }

  private async apply(client: ConsensusClient, input: KvInput): Promise<KvOutput> {
    const key = Buffer.from(input.key);
    switch (input.kind) {
      case 'get':
        return { kind: 'get', value: await this.read(client, input.key) };
      case 'put':
        await client.kv('put', { key, value: Buffer.from(input.value), lease: 0n, prevKv: false }, { timeoutMs: OP_TIMEOUT_MS, idempotent: false });
        return { kind: 'put' };
      case 'cas': {
        const compare: TxnRequest['compare'][number] =
          input.expected === null
            ? { result: Compare_Result.RESULT_EQUAL, target: Compare_Target.TARGET_CREATE, key, targetUnion: { $case: 'createRevision', value: 0n } }
            : { result: Compare_Result.RESULT_EQUAL, target: Compare_Target.TARGET_VALUE, key, targetUnion: { $case: 'value', value: Buffer.from(input.expected) } };
        const put = { key, value: Buffer.from(input.value), lease: 0n, prevKv: false };
        const response = await client.kv('txn', { compare: [compare], success: [{ request: { $case: 'requestPut', value: put } }], failure: [] }, { timeoutMs: OP_TIMEOUT_MS, idempotent: false });
        return { kind: 'cas', ok: response.succeeded };
      }
      case 'delete':
        throw new Error('this workload does not delete');
    }
  }

  private async read(client: ConsensusClient, key: string): Promise<string | null> {
    const response = await client.kv('range', { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LINEARIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: OP_TIMEOUT_MS, idempotent: true });
    return response.kvs.length === 0 ? null : response.kvs[0].value.toString();
  }
}

/** One run: see the header. Never throws for what it finds; the report says it. */
export async function runJepsen(options: JepsenOptions): Promise<JepsenReport> {
  const { nemesis: kind, seconds, opsPerSecond, seed, log } = options;
  const rng = new Prng(seed);
  const cluster = new JepsenCluster(kind === 'clock');
  const faults: string[] = [];
  const t0 = Date.now();
  const note = (what: string) => {
    if (what === '') return;
    const line = `${((Date.now() - t0) / 1_000).toFixed(1)} s: ${what}`;
    faults.push(line);
    log(`nemesis ${line}`);
  };
  let workload: Workload | undefined;
  try {
    await cluster.start();
    if (kind === 'partition') await cluster.installFirewall();
    if ((await cluster.leader(10_000)) === undefined) throw new Error('no leader within 10 s of starting');
    workload = new Workload(cluster.addresses, `jepsen/${kind}/${seed}`, rng.fork());
    const running = workload.run(opsPerSecond);
    const nemesis = makeNemesis(kind, cluster, rng.fork());
    const end = Date.now() + seconds * 1_000;
    while (Date.now() + 2 * CYCLE_MS <= end) {
      await sleep(CYCLE_MS);
      note(await nemesis.start());
      await sleep(CYCLE_MS);
      note(await nemesis.heal());
    }
    await sleep(Math.max(0, end - Date.now()));
    note(await nemesis.heal());
    await sleep(QUIET_MS);
    workload.stop();
    await running;
    await workload.finalReads(30_000);
    const setLost = await workload.lostFromSet();
    const verdict = checkOperations(kvModel, workload.history, { timeoutMs: CHECK_TIMEOUT_MS });
    const unknown = workload.history.filter((op) => op.output === undefined).length;
    const crashes = [...cluster.crashes, ...cluster.uncaughtErrors()];
    const report: JepsenReport = {
      options: { nemesis: kind, seconds, opsPerSecond, seed },
      ok: workload.history.length - unknown,
      unknown,
      droppedReads: workload.droppedReads,
      verdict,
      setAcknowledged: workload.setAcknowledged.size,
      setLost,
      faults,
      crashes,
    };
    if (verdict.verdict !== 'ok' || setLost.length > 0 || crashes.length > 0) {
      report.historyFile = join(tmpdir(), `consulate-jepsen-${kind}-${seed}.json`);
      writeFileSync(report.historyFile, JSON.stringify({ report: { ...report, verdict: verdict.verdict }, history: workload.history }, (_, v) => (v === Infinity ? 'Infinity' : v), 1));
    }
    return report;
  } finally {
    workload?.close();
    await cluster.stop();
  }
}
