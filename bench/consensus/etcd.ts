/** etcd 3.4 (Debian etcd-server) 3-member cluster on 127.0.13.1-3:2379/2380 and its gRPC adapter. */
import { ChildProcess, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';

import { BenchCluster, KvClient, WatchHandle, isRunning, markExpectedExit, sleep, startProcess, stopProcess } from './types';

const IPS = ['127.0.13.1', '127.0.13.2', '127.0.13.3'];
const CLUSTER = IPS.map((ip, i) => `m${i + 1}=http://${ip}:2380`).join(',');
const DEADLINE_MS = 10_000;

function protoPath(): string {
  // Compiled to dist/bench/consensus/; the .proto stays in bench/consensus/.
  const candidates = [join(__dirname, 'etcd-api.proto'), resolve(__dirname, '..', '..', '..', 'bench', 'consensus', 'etcd-api.proto')];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`etcd-api.proto not found in ${candidates.join(', ')}`);
  return found;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyClient = any;
let ctors: { KV: AnyClient; Watch: AnyClient; Maintenance: AnyClient } | undefined;
function services() {
  if (!ctors) {
    const def = loader.loadSync(protoPath(), { keepCase: true, longs: String, defaults: true, enums: String });
    const pkg = grpc.loadPackageDefinition(def).etcdserverpb as AnyClient;
    ctors = { KV: pkg.KV, Watch: pkg.Watch, Maintenance: pkg.Maintenance };
  }
  return ctors;
}

export interface EtcdStatus {
  header: { member_id: string };
  leader: string;
  raftIndex: string;
  version: string;
}

export class EtcdClient implements KvClient {
  private readonly kv: AnyClient;
  private readonly w: AnyClient;
  private readonly m: AnyClient;

  constructor(readonly address: string) {
    const s = services();
    this.kv = new s.KV(address, grpc.credentials.createInsecure());
    this.w = new s.Watch(address, grpc.credentials.createInsecure());
    this.m = new s.Maintenance(address, grpc.credentials.createInsecure());
  }

  private unary<T>(client: AnyClient, method: string, req: object, timeoutMs = DEADLINE_MS): Promise<T> {
    return new Promise<T>((res, rej) => {
      client[method](req, { deadline: Date.now() + timeoutMs }, (err: Error | null, r: T) => (err ? rej(err) : res(r)));
    });
  }

  async put(key: Buffer, value: Buffer, timeoutMs?: number): Promise<void> {
    await this.unary(this.kv, 'Put', { key, value }, timeoutMs);
  }

  async rangeLinearizable(key: Buffer): Promise<void> {
    await this.unary(this.kv, 'Range', { key, serializable: false });
  }

  async rangeSerializable(key: Buffer): Promise<void> {
    await this.unary(this.kv, 'Range', { key, serializable: true });
  }

  status(timeoutMs = 1000): Promise<EtcdStatus> {
    return this.unary<EtcdStatus>(this.m, 'Status', {}, timeoutMs);
  }

  /** One bidi Watch stream per watcher (like Consulate's one server stream per watcher); resolves on `created`. */
  watch(key: Buffer, onEvent: (value: Buffer, atMs: number) => void): Promise<WatchHandle> {
    return new Promise<WatchHandle>((res, rej) => {
      const call = this.w.Watch();
      let created = false;
      const timer = setTimeout(() => { if (!created) { call.cancel(); rej(new Error('etcd watch create timeout')); } }, 20_000);
      call.on('data', (msg: { created: boolean; canceled: boolean; cancel_reason: string; events: { type: string; kv?: { value: Buffer } }[] }) => {
        const t = performance.now();
        if (msg.created && !created) {
          created = true;
          clearTimeout(timer);
          res({ close: () => call.cancel() });
        }
        for (const ev of msg.events ?? []) if (ev.type === 'PUT' && ev.kv) onEvent(ev.kv.value, t);
      });
      call.on('error', (e: Error) => { if (!created) { clearTimeout(timer); rej(e); } });
      call.write({ create_request: { key } });
    });
  }

  /** One bidi Watch stream with `count` create requests, as clientv3 multiplexes them; resolves once all are `created`. */
  watchShared(key: Buffer, count: number, onEvent: (value: Buffer, atMs: number) => void): Promise<WatchHandle> {
    return new Promise<WatchHandle>((res, rej) => {
      const call = this.w.Watch();
      let created = 0;
      const timer = setTimeout(() => { if (created < count) { call.cancel(); rej(new Error(`etcd: ${created}/${count} watches created in 20 s`)); } }, 20_000);
      call.on('data', (msg: { created: boolean; canceled: boolean; events: { type: string; kv?: { value: Buffer } }[] }) => {
        const t = performance.now();
        if (msg.created && ++created === count) {
          clearTimeout(timer);
          res({ close: () => call.cancel() });
        }
        for (const ev of msg.events ?? []) if (ev.type === 'PUT' && ev.kv) onEvent(ev.kv.value, t);
      });
      call.on('error', (e: Error) => { if (created < count) { clearTimeout(timer); rej(e); } });
      for (let i = 0; i < count; i++) call.write({ create_request: { key } });
    });
  }

  close(): void {
    this.kv.close();
    this.w.close();
    this.m.close();
  }
}

export function etcdVersion(): string {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n')[0]?.trim() || 'etcd (version unknown)';
}

export class EtcdCluster implements BenchCluster {
  readonly system = 'etcd' as const;
  readonly version = etcdVersion();
  readonly timings = 'defaults: --heartbeat-interval=100ms, --election-timeout=1000ms (randomized 1000-2000 ms)';
  readonly addresses = IPS.map((ip) => `${ip}:2379`);
  private readonly procs: (ChildProcess | undefined)[] = [undefined, undefined, undefined];
  private readonly probes = this.addresses.map((a) => new EtcdClient(a));

  constructor(private readonly dir: string) {}

  private spawn(i: number, state: 'new' | 'existing'): void {
    const ip = IPS[i];
    const args = [`--name=m${i + 1}`, `--data-dir=${join(this.dir, `m${i + 1}`)}`, '--logger=zap', '--log-level=warn',
      `--listen-client-urls=http://${ip}:2379`, `--advertise-client-urls=http://${ip}:2379`,
      `--listen-peer-urls=http://${ip}:2380`, `--initial-advertise-peer-urls=http://${ip}:2380`,
      // no metrics/pprof listeners beyond the client URL; keep everything on loopback
      `--initial-cluster=${CLUSTER}`, `--initial-cluster-state=${state}`, '--initial-cluster-token=consulate-bench'];
    this.procs[i] = startProcess('etcd', args, join(this.dir, `m${i + 1}.log`));
  }

  async start(): Promise<void> {
    for (let i = 0; i < 3; i++) this.spawn(i, 'new');
    await this.waitHealthy(30_000);
  }

  async leader(timeoutMs = 10_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      for (let i = 0; i < 3; i++) {
        if (!isRunning(this.procs[i])) continue;
        try {
          const s = await this.probes[i].status(500);
          if (s.leader !== '0' && s.header.member_id === s.leader) return i;
        } catch { /* not up */ }
      }
      await sleep(50);
    }
    throw new Error('etcd: no leader within ' + timeoutMs + ' ms');
  }

  client(index: number): KvClient {
    return new EtcdClient(this.addresses[index]);
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
    this.spawn(index, 'existing');
  }

  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < end) {
      try {
        const st = await Promise.all(this.probes.map((p) => p.status(500)));
        const leaders = new Set(st.map((s) => s.leader));
        const idx = st.map((s) => BigInt(s.raftIndex));
        const max = idx.reduce((a, b) => (a > b ? a : b), 0n);
        if (leaders.size === 1 && !leaders.has('0') && idx.every((x) => x + 5n >= max)) {
          // and a write actually commits
          const lead = st.findIndex((s) => s.header.member_id === s.leader);
          if (lead >= 0) { await this.probes[lead].put(Buffer.from('health'), Buffer.from('ok'), 1000); return; }
        }
        last = JSON.stringify(st.map((s) => ({ leader: s.leader, idx: s.raftIndex })));
      } catch (e) {
        last = String((e as Error).message);
      }
      await sleep(100);
    }
    throw new Error(`etcd cluster not healthy within ${timeoutMs} ms: ${last}`);
  }

  async stop(): Promise<void> {
    for (const p of this.probes) p.close();
    await Promise.all(this.procs.map((p) => stopProcess(p)));
  }

  logFiles(): string[] {
    return [0, 1, 2].map((i) => join(this.dir, `m${i + 1}.log`));
  }
}
