/** Consulate's 3-server consensus cluster on 127.0.12.1-3:8310 and its client adapter. */
import { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { credentials, Metadata, ServiceError } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { ClusterServiceClient, RaftRole, StatusResponse } from '../../services/gen/consulate/consensus/v1/cluster';
import { Consistency, KVServiceClient, KVServiceService } from '../../services/gen/consulate/consensus/v1/kv';
import { CallStreamClient } from '../../services/lib/call-stream';
import { WatchManyResponse, WatchServiceClient, WatchResponse } from '../../services/gen/consulate/consensus/v1/watch';
import { tracingEnv } from '../children';
import { BenchCluster, KvClient, WatchHandle, isRunning, markExpectedExit, sleep, startProcess, stopProcess } from './types';

const REPO = resolve(__dirname, '..', '..', '..');
const BIN = join(REPO, 'bin', 'consulate');
const IPS = ['127.0.12.1', '127.0.12.2', '127.0.12.3'];
const PORT = 8310;
/** BENCH_CONSULATE_ARGS: more server flags, space-separated, for an A/B of a setting (e.g. -raft-tick-ms=10). */
export const EXTRA_ARGS = (process.env.BENCH_CONSULATE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
const EMPTY = Buffer.alloc(0);
const DEADLINE_MS = 10_000;

type Cb<T> = (err: ServiceError | null, res: T) => void;

export class ConsulateClient implements KvClient {
  protected readonly kv: KVServiceClient;
  private readonly watchClient: WatchServiceClient;
  private readonly cluster: ClusterServiceClient;

  constructor(readonly address: string) {
    this.kv = new KVServiceClient(address, credentials.createInsecure());
    this.methods = this.kv;
    this.watchClient = new WatchServiceClient(address, credentials.createInsecure());
    this.cluster = new ClusterServiceClient(address, credentials.createInsecure());
  }

  private unary<T>(fn: (md: Metadata, opts: { deadline: number }, cb: Cb<T>) => unknown, timeoutMs = DEADLINE_MS): Promise<T> {
    return new Promise<T>((res, rej) => {
      fn(new Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) => (err ? rej(err) : res(r)));
    });
  }

  /** The unary methods this client calls: the generated client's own here, carried on a stream in StreamClient. */
  protected readonly methods: Pick<KVServiceClient, 'put' | 'range'>;

  async put(key: Buffer, value: Buffer, timeoutMs?: number): Promise<void> {
    await this.unary((md, o, cb) => this.methods.put({ key, value, lease: 0n, prevKv: false }, md, o, cb), timeoutMs);
  }

  private async range(key: Buffer, consistency: Consistency): Promise<void> {
    await this.unary((md, o, cb) =>
      this.methods.range({ key, rangeEnd: EMPTY, limit: 0n, revision: 0n, consistency, keysOnly: false, countOnly: false }, md, o, cb));
  }

  rangeLinearizable(key: Buffer): Promise<void> {
    return this.range(key, Consistency.CONSISTENCY_LINEARIZABLE);
  }

  rangeSerializable(key: Buffer): Promise<void> {
    return this.range(key, Consistency.CONSISTENCY_SERIALIZABLE);
  }

  status(timeoutMs = 1000): Promise<StatusResponse> {
    return this.unary((md, o, cb) => this.cluster.status({}, md, o, cb), timeoutMs);
  }

  /** Consulate's watch stream sends nothing on creation; the caller confirms it with a put. */
  async watch(key: Buffer, onEvent: (value: Buffer, atMs: number) => void): Promise<WatchHandle> {
    const call = this.watchClient.watch({ key, rangeEnd: EMPTY, startRevision: 0n, prevKv: false });
    call.on('data', (msg: WatchResponse) => {
      const t = performance.now();
      for (const ev of msg.events) if (ev.kv) onEvent(ev.kv.value, t);
    });
    call.on('error', () => { /* cancelled on close, or the server went away */ });
    return { close: () => call.cancel() };
  }

  /** One WatchMany stream with `count` watches (ids 1..count); resolves once all are created. */
  watchShared(key: Buffer, count: number, onEvent: (value: Buffer, atMs: number) => void): Promise<WatchHandle> {
    return new Promise<WatchHandle>((res, rej) => {
      const call = this.watchClient.watchMany();
      let created = 0;
      const timer = setTimeout(() => { if (created < count) { call.cancel(); rej(new Error(`consulate: ${created}/${count} watches created in 20 s`)); } }, 20_000);
      call.on('data', (msg: WatchManyResponse) => {
        const t = performance.now();
        for (const update of msg.updates) {
          if (update.ended) { clearTimeout(timer); call.cancel(); rej(new Error(`consulate: watch ended: ${update.ended.message}`)); return; }
          if (update.created && (created += update.watchIds.length) === count) {
            clearTimeout(timer);
            res({ close: () => call.cancel() });
          }
          for (let i = 0; i < update.watchIds.length; i++) for (const ev of update.events) if (ev.kv) onEvent(ev.kv.value, t);
        }
      });
      call.on('error', (e: Error) => { if (created < count) { clearTimeout(timer); rej(e); } });
      for (let id = 1; id <= count; id++) call.write({ action: { $case: 'create', value: { watchId: BigInt(id), request: { key, rangeEnd: EMPTY, startRevision: 0n, prevKv: false } } } });
    });
  }

  close(): void {
    this.kv.close();
    this.watchClient.close();
    this.cluster.close();
  }
}

/** Puts and reads as frames on one KVService.Calls stream (services/lib/call-stream.ts), untraced like the unary client. */
export class ConsulateStreamClient extends ConsulateClient {
  private readonly stream: CallStreamClient;
  protected override readonly methods: Pick<KVServiceClient, 'put' | 'range'>;

  constructor(address: string) {
    super(address);
    this.stream = new CallStreamClient({ client: this.kv, tracer: trace.getTracer('bench'), peer: address, traced: false });
    const put = this.stream.method(KVServiceService.put, this.kv.put.bind(this.kv));
    const range = this.stream.method(KVServiceService.range, this.kv.range.bind(this.kv));
    this.methods = { put, range } as unknown as Pick<KVServiceClient, 'put' | 'range'>;
  }

  override close(): void {
    this.stream.close();
    super.close();
  }
}

export class ConsulateCluster implements BenchCluster {
  readonly system = 'consulate' as const;
  readonly version = 'consulate 0.1.0 (dist/, this checkout)';
  readonly timings = (EXTRA_ARGS.length > 0 ? `with ${EXTRA_ARGS.join(' ')}; ` : '') + 'defaults: -raft-tick-ms=25, -raft-election-ticks=6 (randomized 150-300 ms), -raft-heartbeat-ticks=2 (50 ms); write-ahead log store (-raft-log-store=wal), followers sync on the main thread, the leader in the background (-raft-pipeline-leader-writes)';
  readonly addresses = IPS.map((ip) => `${ip}:${PORT}`);
  private readonly procs: (ChildProcess | undefined)[] = [undefined, undefined, undefined];
  private readonly probes = this.addresses.map((a) => new ConsulateClient(a));

  constructor(private readonly dir: string) {}

  private spawn(i: number): void {
    const name = `server-${i + 1}`;
    const dataDir = join(this.dir, name);
    mkdirSync(dataDir, { recursive: true });
    const args = [BIN, 'consensus', `-node=${name}`, `-bind=${IPS[i]}`, `-data-dir=${dataDir}`,
      ...IPS.map((ip, j) => `-initial-peer=server-${j + 1}=${ip}:${PORT}`), '-log-level=warn', ...EXTRA_ARGS];
    this.procs[i] = startProcess(process.execPath, args, join(this.dir, `${name}.log`), { ...process.env, ...tracingEnv() });
  }

  async start(): Promise<void> {
    for (let i = 0; i < 3; i++) this.spawn(i);
    await this.waitHealthy(30_000);
  }

  async leader(timeoutMs = 10_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      for (let i = 0; i < 3; i++) {
        if (!isRunning(this.procs[i])) continue;
        try {
          const s = await this.probes[i].status(500);
          if (s.role === RaftRole.RAFT_ROLE_LEADER) return i;
        } catch { /* not up yet */ }
      }
      await sleep(50);
    }
    throw new Error('consulate: no leader within ' + timeoutMs + ' ms');
  }

  client(index: number): KvClient {
    return new ConsulateClient(this.addresses[index]);
  }

  streamClient(index: number): KvClient {
    return new ConsulateStreamClient(this.addresses[index]);
  }

  pid(index: number): number | undefined {
    const p = this.procs[index];
    return isRunning(p) ? p?.pid : undefined;
  }

  kill9(index: number): void {
    const p = this.procs[index];
    markExpectedExit(p);
    if (p?.pid !== undefined) process.kill(p.pid, 'SIGKILL');
  }

  async restart(index: number): Promise<void> {
    const p = this.procs[index];
    if (p && isRunning(p)) await new Promise<void>((r) => p.once('exit', () => r()));
    this.spawn(index);
  }

  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < end) {
      try {
        const st = await Promise.all(this.probes.map((p) => p.status(500)));
        const leaders = new Set(st.map((s) => s.leader));
        const hasLeader = st.some((s) => s.role === RaftRole.RAFT_ROLE_LEADER);
        const applied = st.map((s) => s.appliedIndex);
        const maxApplied = applied.reduce((a, b) => (a > b ? a : b), 0n);
        if (hasLeader && leaders.size === 1 && !leaders.has('') && applied.every((a) => a + 5n >= maxApplied)) {
          // and a write actually commits
          const lead = st.findIndex((s) => s.role === RaftRole.RAFT_ROLE_LEADER);
          await this.probes[lead].put(Buffer.from('health'), Buffer.from('ok'), 1000);
          return;
        }
        last = JSON.stringify(st.map((s) => ({ role: s.role, leader: s.leader, applied: String(s.appliedIndex) })));
      } catch (e) {
        last = String((e as Error).message);
      }
      await sleep(100);
    }
    throw new Error(`consulate cluster not healthy within ${timeoutMs} ms: ${last}`);
  }

  async stop(): Promise<void> {
    for (const p of this.probes) p.close();
    await Promise.all(this.procs.map((p) => stopProcess(p)));
  }

  logFiles(): string[] {
    return [0, 1, 2].map((i) => join(this.dir, `server-${i + 1}.log`));
  }
}
