/**
 * The client harness shared by both systems: closed-loop cells (put, linearizable and
 * serializable range), watch fan-out, and leader failover. Bounded in time and count everywhere.
 */
import { BenchCluster, KvClient, WatchHandle, sleep } from './types';

export const KEY_SPACE = 10_000;
export const VALUE = Buffer.alloc(256, 'v');

/** 8-byte big-endian keys, like etcd's op-guide benchmark and /work/shared/anchors/etcd-load.mjs. */
export function keyOf(i: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(i % KEY_SPACE));
  return b;
}

export type Op = 'put' | 'range-l' | 'range-s';

/** How the client called: a unary call per request, or frames on a Calls stream. */
export type CellApi = 'unary' | 'calls';

export interface CellResult {
  op: Op;
  conc: number;
  api?: CellApi;
  /** Set when the leader's disk was throttled to this many write operations a second (slow-disk.ts). */
  leader_disk_iops?: number;
  seconds: number;
  ok: number;
  errors: number;
  error_samples: string[];
  rps: number;
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
  mean_ms: number | null;
}

export const r2 = (x: number | null | undefined): number | null => (x == null || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);

export function pct(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function errText(e: unknown): string {
  const err = e as { code?: number; details?: string; message?: string };
  return String(err?.message ?? e).slice(0, 300);
}

export function doOp(c: KvClient, op: Op, seq: number): Promise<void> {
  const k = keyOf(seq);
  if (op === 'put') return c.put(k, VALUE);
  if (op === 'range-l') return c.rangeLinearizable(k);
  return c.rangeSerializable(k);
}

/** Writes every key of the key space once so reads hit existing keys. */
export async function prepopulate(c: KvClient): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (i < KEY_SPACE) await c.put(keyOf(i++), VALUE);
  }));
}

export interface CellOptions { durationS: number; warmupS: number; maxRequests: number }

export async function runCell(c: KvClient, op: Op, conc: number, o: CellOptions): Promise<CellResult> {
  let seq = Math.floor(Math.random() * KEY_SPACE);
  // warm-up, not recorded
  const warmEnd = performance.now() + o.warmupS * 1000;
  await Promise.all(Array.from({ length: conc }, async () => {
    for (let i = 0; i < 100_000 && performance.now() < warmEnd; i++) {
      try { await doOp(c, op, seq++); } catch { /* counted below only */ }
    }
  }));
  const lat: number[] = [];
  const samples = new Map<string, number>();
  let errors = 0;
  let n = 0;
  const t0 = performance.now();
  const end = t0 + o.durationS * 1000;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (performance.now() < end && n < o.maxRequests) {
      n++;
      const s = performance.now();
      try {
        await doOp(c, op, seq++);
        lat.push(performance.now() - s);
      } catch (e) {
        errors++;
        const t = errText(e);
        samples.set(t, (samples.get(t) ?? 0) + 1);
        if (errors > 1000 && lat.length === 0) break; // a broken system: do not spin
        await sleep(1);
      }
    }
  }));
  const el = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return {
    op, conc, seconds: r2(el)!, ok: lat.length, errors,
    error_samples: [...samples.entries()].slice(0, 5).map(([t, k]) => `${k}x ${t}`),
    rps: Math.round(lat.length / el),
    p50_ms: r2(pct(lat, 50)), p90_ms: r2(pct(lat, 90)), p99_ms: r2(pct(lat, 99)), max_ms: r2(lat[lat.length - 1]),
    mean_ms: r2(lat.reduce((a, b) => a + b, 0) / (lat.length || 1)),
  };
}

/** How the watchers reach their server: a stream each, or all of a server's on one stream (clientv3's multiplexing). */
export type WatchShape = 'stream-per-watcher' | 'shared-stream';

export interface WatchResult {
  watchers: number;
  shape: WatchShape;
  puts: number;
  complete_puts: number;
  deliveries: number;
  missing_deliveries: number;
  put_ack_p50_ms: number | null;
  /** Per delivery (watcher x put): time from just before the put is sent to that watcher's event. */
  delivery_p50_ms: number | null;
  delivery_p99_ms: number | null;
  /** Per put: time until the last watcher had it. */
  last_watcher_p50_ms: number | null;
  last_watcher_p99_ms: number | null;
  /** The same deliveries split by where the watcher's stream is: the leader applies first, followers once they learn the commit. */
  on_leader_p99_ms: number | null;
  on_followers_p99_ms: number | null;
  /** Each put in order: when it was sent (wall clock, to line up with the servers' logs), its ack, its first and last watcher. */
  per_put: { sent_at: string; ack_ms: number | null; first_ms: number | null; last_ms: number | null; delivered: number }[];
  open_ms: number;
  error?: string;
}

/**
 * Opens W watches on one key, spread round-robin over the three servers (a stream each, or each
 * server's on one stream), confirms every one with a warm-up put (not recorded), then does `puts`
 * sequential puts on the leader.
 */
export async function runWatch(clients: KvClient[], leader: KvClient, W: number, puts: number, shape: WatchShape = 'stream-per-watcher'): Promise<WatchResult> {
  const key = Buffer.from(`watch-bench-${W}-${Date.now()}`);
  const arrivals = new Map<string, { atMs: number; onLeader: boolean }[]>();
  const handles: WatchHandle[] = [];
  const res: WatchResult = { watchers: W, shape, puts, complete_puts: 0, deliveries: 0, missing_deliveries: 0, put_ack_p50_ms: null,
    delivery_p50_ms: null, delivery_p99_ms: null, last_watcher_p50_ms: null, last_watcher_p99_ms: null, on_leader_p99_ms: null, on_followers_p99_ms: null, per_put: [], open_ms: 0 };
  const onEventFrom = (client: KvClient) => (v: Buffer, atMs: number) => {
    const tag = v.subarray(0, 16).toString().trim();
    arrivals.get(tag)?.push({ atMs, onLeader: client === leader });
  };
  const valueFor = (tag: string) => { const b = Buffer.alloc(256, ' '); b.write(tag.padEnd(16, ' ')); return b; };
  const waitAll = async (tag: string, ms: number) => {
    const dl = performance.now() + ms;
    while (arrivals.get(tag)!.length < W && performance.now() < dl) await sleep(1);
    return arrivals.get(tag)!;
  };
  try {
    const o0 = performance.now();
    if (shape === 'shared-stream') {
      const onServer = (i: number) => Math.floor(W / clients.length) + (i < W % clients.length ? 1 : 0);
      const shared = clients.map((client, i) => (onServer(i) > 0 ? client.watchShared(key, onServer(i), onEventFrom(client)) : undefined));
      for (const handle of await Promise.all(shared)) if (handle !== undefined) handles.push(handle);
    } else {
      for (let i = 0; i < W; i += 50) {
        const batch = [];
        for (let j = i; j < Math.min(W, i + 50); j++) batch.push(clients[j % clients.length].watch(key, onEventFrom(clients[j % clients.length])));
        handles.push(...(await Promise.all(batch)));
      }
    }
    // warm-up put: confirms every stream is registered (Consulate's stream sends nothing on creation)
    for (let attempt = 0; attempt < 3; attempt++) {
      const tag = `warm${attempt}`;
      arrivals.set(tag, []);
      await leader.put(key, valueFor(tag));
      if ((await waitAll(tag, 10_000)).length >= W) break;
      if (attempt === 2) throw new Error(`only ${arrivals.get(tag)!.length}/${W} watchers saw the warm-up put`);
    }
    res.open_ms = Math.round(performance.now() - o0);
    await sleep(200);
    const ack: number[] = [];
    const all: number[] = [];
    const last: number[] = [];
    const byPlace = { leader: [] as number[], followers: [] as number[] };
    for (let p = 0; p < puts; p++) {
      const tag = `p${p}`;
      arrivals.set(tag, []);
      const sentAt = new Date().toISOString();
      const t0 = performance.now();
      await leader.put(key, valueFor(tag));
      const ackMs = performance.now() - t0;
      ack.push(ackMs);
      const a = await waitAll(tag, 10_000);
      const times = a.map((d) => d.atMs - t0);
      const lastMs = a.length > 0 ? Math.max(...times) : null;
      res.per_put.push({ sent_at: sentAt, ack_ms: r2(ackMs), first_ms: a.length > 0 ? r2(Math.min(...times)) : null, last_ms: r2(lastMs), delivered: a.length });
      a.forEach(({ onLeader }, i) => {
        all.push(times[i]);
        byPlace[onLeader ? 'leader' : 'followers'].push(times[i]);
      });
      res.deliveries += a.length;
      res.missing_deliveries += W - a.length;
      if (a.length === W && lastMs !== null) { res.complete_puts++; last.push(lastMs); }
      await sleep(50);
    }
    ack.sort((a, b) => a - b); all.sort((a, b) => a - b); last.sort((a, b) => a - b);
    res.put_ack_p50_ms = r2(pct(ack, 50));
    res.delivery_p50_ms = r2(pct(all, 50));
    res.delivery_p99_ms = r2(pct(all, 99));
    res.last_watcher_p50_ms = r2(pct(last, 50));
    res.last_watcher_p99_ms = r2(pct(last, 99));
    for (const place of Object.values(byPlace)) place.sort((a, b) => a - b);
    res.on_leader_p99_ms = r2(pct(byPlace.leader, 99));
    res.on_followers_p99_ms = r2(pct(byPlace.followers, 99));
  } catch (e) {
    res.error = errText(e);
  } finally {
    for (const h of handles) h.close();
  }
  return res;
}

export interface FailoverRound { round: number; killed: number; ok: boolean; tries: number; recovery_ms: number; new_leader?: number; errors: string[] }

/**
 * kill -9 the leader, then put (200 ms client deadline) to both survivors at once, every 5 ms,
 * until one commits; the time from the kill to that ack is the recovery time. Then restart the
 * killed server on its data dir and wait until the cluster is healthy again.
 */
export async function runFailover(cluster: BenchCluster, rounds: number, log: (s: string) => void): Promise<FailoverRound[]> {
  const out: FailoverRound[] = [];
  for (let r = 1; r <= rounds; r++) {
    await sleep(2000);
    const leader = await cluster.leader();
    const survivors = [0, 1, 2].filter((i) => i !== leader);
    const clients = survivors.map((i) => cluster.client(i));
    // connect the probe clients before the kill so channel setup is not measured
    await Promise.all(clients.map((c) => c.rangeSerializable(Buffer.from('failover')).catch(() => undefined)));
    const errs = new Map<string, number>();
    const t0 = performance.now();
    cluster.kill9(leader);
    let ok = false;
    let tries = 0;
    for (; tries < 4000 && performance.now() - t0 < 30_000 && !ok; tries++) {
      const results = await Promise.all(clients.map((c) => c.put(Buffer.from('failover'), Buffer.from(String(Date.now())), 200)
        .then(() => true, (e) => { const t = errText(e).slice(0, 120); errs.set(t, (errs.get(t) ?? 0) + 1); return false; })));
      if (results.some(Boolean)) { ok = true; break; }
      await sleep(5);
    }
    const recovery = Math.round(performance.now() - t0);
    let newLeader: number | undefined;
    try { newLeader = await cluster.leader(5000); } catch { /* reported as undefined */ }
    for (const c of clients) c.close();
    const round: FailoverRound = { round: r, killed: leader, ok, tries: tries + 1, recovery_ms: recovery, errors: [...errs.entries()].map(([t, k]) => `${k}x ${t}`).slice(0, 4) };
    if (newLeader !== undefined) round.new_leader = newLeader;
    log(`  failover round ${r}: killed server index ${leader}, ok=${ok}, recovery ${recovery} ms, new leader ${newLeader}`);
    out.push(round);
    await cluster.restart(leader);
    await cluster.waitHealthy(30_000);
  }
  return out;
}
