/**
 * Change-notification fan-out (performance.md C1), the same shape for both systems:
 *
 * - Consulate: N blocking KV GETs on one key (`/v1/kv/<key>?index=<X-Consul-Index>&wait=<W>`),
 *   each on its own keep-alive connection, spread over source addresses 127.0.17.x (at most
 *   `perAddress` each: the catalog admits 200 connections per client IP). They are parked in
 *   batches; "parked" = every request written to its socket and the catalog's CPU quiet again (it
 *   has no waiter metric to ask), then a short settle. One PUT of the key through the catalog
 *   wakes them. Re-parked at the new index for every round.
 * - etcd 3.4: N gRPC Watch streams on one key (one stream per watcher, round-robin over the 3
 *   members, each confirmed by its `created` answer, the adapter of bench/consensus/etcd.ts),
 *   woken by one Put on the leader. The streams stay open across rounds. The same through etcd's
 *   HTTP/JSON gateway: a connection per watcher, as per blocking query (`gatewayWatches`).
 * - node:http alone: the Consulate shape against plain-http.ts's blocking KV (the floor).
 *
 * Per delivery: the time from just before the write is sent ("from put", the definition of
 * /work/shared/anchors/etcd-watch.mjs) and from the write's acknowledgement ("from ack") to the
 * moment this client has the whole answer / event. Pooled over all rounds.
 */
import { Agent, IncomingMessage, request } from 'node:http';

import { EtcdClient } from '../consensus/etcd';
import { cpuMs, sleep } from '../children';
import { Endpoint, agentFrom, httpOk, pct, r2 } from './http-client';

export interface Distribution {
  readonly count: number;
  readonly p50_ms: number | null;
  readonly p90_ms: number | null;
  readonly p99_ms: number | null;
  readonly max_ms: number | null;
}

export interface FanoutRound {
  readonly round: number;
  /** Requests (streams) waiting when the write was sent. */
  readonly waiting: number;
  /** Time to park them (issue, flush, the catalog quiet, settle); etcd: 0 (streams stay open). */
  readonly park_ms: number;
  /** Answers or errors before the write: a blocking query that did not block. Goal 0. */
  readonly early: number;
  /** What the early answers and the missing ones were ("count x status body" / error). */
  readonly early_reasons: string[];
  readonly missing_reasons: string[];
  /** The index the queries blocked on (Consulate), and the Raft leader before the write and after the round. */
  readonly index: string | null;
  readonly leader_before: string | null;
  readonly leader_after: string | null;
  /** Whether the catalog and the servers went quiet before the write (Consulate). */
  readonly quiet: boolean | null;
  readonly woken: number;
  /** Errors, wrong answers, or no answer within the bound after the write. Goal 0. */
  readonly missing: number;
  readonly put_ack_ms: number;
  readonly first_from_put_ms: number | null;
  readonly last_from_put_ms: number | null;
  readonly last_from_ack_ms: number | null;
  /** CPU used from the write to the last delivery (or the bound): this client, and the catalog (Consulate). */
  readonly client_cpu_ms: number;
  readonly catalog_cpu_ms: number | null;
}

export interface FanoutResult {
  readonly system: 'consulate' | 'plain' | 'etcd' | 'etcd-gateway';
  readonly n: number;
  readonly rounds: FanoutRound[];
  readonly from_put: Distribution;
  readonly from_ack: Distribution;
  readonly put_ack_p50_ms: number | null;
  /** Per round, the last delivery from put: median and worst over rounds. */
  readonly last_from_put_median_ms: number | null;
  readonly last_from_put_max_ms: number | null;
  readonly errors: string[];
  error?: string;
}

export interface FanoutOptions {
  readonly n: number;
  readonly rounds: number;
  /** Rounds run first and not recorded: a fresh process's code paths compile in them (both systems alike). */
  readonly warmupRounds?: number;
  /** Bound on waiting for every delivery after a write. */
  readonly deliverTimeoutMs: number;
}

export interface HttpFanoutOptions extends FanoutOptions {
  readonly waitS: number;
  readonly perAddress: number;
  readonly batch: number;
  readonly settleMs: number;
  /** The blocking queries' consistency: Consul's default (a lease read on the leader first) or `?stale` (the view alone). */
  readonly consistency: 'default' | 'stale';
  readonly parkTimeoutMs: number;
}

const VALUE_BYTES = 256;
const valueFor = (tag: string) => { const b = Buffer.alloc(VALUE_BYTES, ' '); b.write(tag); return b; };

function distribution(values: number[]): Distribution {
  const s = [...values].sort((a, b) => a - b);
  return { count: s.length, p50_ms: r2(pct(s, 50)), p90_ms: r2(pct(s, 90)), p99_ms: r2(pct(s, 99)), max_ms: r2(s[s.length - 1]) };
}

/** Drops what a warm-up round added to the pooled samples. */
function forget(recorded: { fromPut: number; fromAck: number }, fromPut: number[], fromAck: number[]): void {
  fromPut.length = recorded.fromPut;
  fromAck.length = recorded.fromAck;
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function summarize(system: FanoutResult['system'], n: number, rounds: FanoutRound[], fromPut: number[], fromAck: number[], errors: Map<string, number>): FanoutResult {
  const lasts = rounds.map((r) => r.last_from_put_ms).filter((x): x is number => x !== null);
  return {
    system, n, rounds,
    from_put: distribution(fromPut), from_ack: distribution(fromAck),
    put_ack_p50_ms: r2(median(rounds.map((r) => r.put_ack_ms))),
    last_from_put_median_ms: r2(median(lasts)), last_from_put_max_ms: r2(lasts.length ? Math.max(...lasts) : null),
    errors: [...errors.entries()].slice(0, 8).map(([t, k]) => `${k}x ${t}`),
  };
}

const note = (errors: Map<string, number>, e: unknown) => { const t = String((e as Error)?.message ?? e).slice(0, 160); errors.set(t, (errors.get(t) ?? 0) + 1); };

/**
 * Waits until the processes `pids` together have used at most `maxFraction` of a core in three
 * 200 ms windows in a row (bounded): the catalog has answered or parked what it was sent, and
 * the servers have answered its reads. Not proof (a read stuck on an election is quiet too): the
 * round also records what answered early and the leader before and after.
 */
async function waitQuiet(pids: (number | undefined)[], timeoutMs: number, windowMs = 200, maxFraction = 0.3): Promise<boolean> {
  const total = () => pids.reduce<number | undefined>((sum, pid) => { const c = cpuMs(pid); return sum === undefined || c === undefined ? undefined : sum + c; }, 0);
  const deadline = performance.now() + timeoutMs;
  let quiet = 0;
  let before = total();
  while (performance.now() < deadline) {
    await sleep(windowMs);
    const now = total();
    if (now === undefined || before === undefined) return false;
    quiet = now - before <= windowMs * maxFraction ? quiet + 1 : 0;
    if (quiet >= 3) return true;
    before = now;
  }
  return false;
}

function reasons(counts: Map<string, number>): string[] {
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([t, k]) => `${k}x ${t}`);
}

interface Answer { at: number; status: number; index: string; body: Buffer }

/** N blocking GETs on one key through the catalog, woken by one PUT, `rounds` times. */
export interface DatacenterProbe {
  /** The catalog first, then the servers: their CPU tells when parking is done. */
  readonly pids: (number | undefined)[];
  readonly catalogPid: number | undefined;
  leader(): Promise<string | undefined>;
}

export async function httpBlockingFanout(catalog: Endpoint, dc: DatacenterProbe, controlIp: string, sourceIp: (i: number) => string, o: HttpFanoutOptions, log: (s: string) => void, label: 'consulate' | 'plain' = 'consulate'): Promise<FanoutResult> {
  const key = `bench/fanout-${o.n}`;
  const control = agentFrom(controlIp, 2);
  const addresses = Math.ceil(o.n / o.perAddress);
  const agents: Agent[] = Array.from({ length: addresses }, (_, a) => agentFrom(sourceIp(a), o.perAddress));
  const rounds: FanoutRound[] = [];
  const fromPut: number[] = [];
  const fromAck: number[] = [];
  const errors = new Map<string, number>();
  const live = new Set<ReturnType<typeof request>>();
  let result: FanoutResult | undefined;
  try {
    await httpOk(catalog, control, 'PUT', `/v1/kv/${key}`, valueFor('init'));
    let index = (await httpOk(catalog, control, 'GET', `/v1/kv/${key}`)).headers['x-consul-index'] as string;
    for (let round = 1 - (o.warmupRounds ?? 0); round <= o.rounds; round++) {
      const recorded = { fromPut: fromPut.length, fromAck: fromAck.length };
      const answers: (Answer | undefined)[] = new Array(o.n);
      const failed: (number | undefined)[] = new Array(o.n); // time of the error
      const failures: (string | undefined)[] = new Array(o.n);
      let flushed = 0;
      let settled = 0;
      let writeSentAt = Infinity;
      const path = `/v1/kv/${key}?index=${index}&wait=${o.waitS}s${o.consistency === 'stale' ? '&stale' : ''}`;
      const park = (i: number) => {
        const agent = agents[i % addresses];
        const req = request({ host: catalog.host, port: catalog.port, method: 'GET', path, agent }, (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            answers[i] = { at: performance.now(), status: res.statusCode ?? 0, index: String(res.headers['x-consul-index'] ?? ''), body: Buffer.concat(chunks) };
            settled++;
            live.delete(req);
          });
        });
        req.setTimeout(o.waitS * 1000 + 30_000, () => req.destroy(new Error('blocking GET: no answer within wait + 30 s')));
        req.on('finish', () => flushed++);
        req.on('error', (e) => { if (answers[i] === undefined && failed[i] === undefined) { failed[i] = performance.now(); failures[i] = String(e.message).slice(0, 100); settled++; } live.delete(req); });
        live.add(req);
        req.end();
      };
      const p0 = performance.now();
      for (let i = 0; i < o.n; i += o.batch) {
        const upTo = Math.min(o.n, i + o.batch);
        for (let j = i; j < upTo; j++) park(j);
        const batchDeadline = performance.now() + 15_000;
        while (flushed + settled < upTo && performance.now() < batchDeadline) await sleep(2);
        if (flushed + settled < upTo) throw new Error(`round ${round}: only ${flushed} of ${upTo} blocking GETs written within 15 s`);
      }
      const quiet = await waitQuiet(dc.pids, o.parkTimeoutMs);
      await sleep(o.settleMs);
      const parkMs = performance.now() - p0;
      if (!quiet) log(`  N=${o.n} round ${round}: the catalog and servers did not go quiet within ${o.parkTimeoutMs} ms; writing anyway`);
      const leaderBefore = await dc.leader();
      const early = settled;
      const catalogCpu0 = cpuMs(dc.catalogPid);
      const clientCpu0 = process.cpuUsage();
      writeSentAt = performance.now();
      const tag = `r${round}-${Date.now()}`;
      await httpOk(catalog, control, 'PUT', `/v1/kv/${key}`, valueFor(tag));
      const ackAt = performance.now();
      const deadline = ackAt + o.deliverTimeoutMs;
      while (settled < o.n && performance.now() < deadline) await sleep(2);
      const clientCpu = process.cpuUsage(clientCpu0);
      const catalogCpu1 = cpuMs(dc.catalogPid);
      const leaderAfter = await dc.leader();
      // Score the round: only answers after the write that carry the new value count.
      const expect = valueFor(tag).toString('base64');
      let woken = 0;
      let first = Infinity;
      let last = -Infinity;
      let newIndex = index;
      const earlyWhy = new Map<string, number>();
      const missingWhy = new Map<string, number>();
      const why = (m: Map<string, number>, t: string) => m.set(t, (m.get(t) ?? 0) + 1);
      for (let i = 0; i < o.n; i++) {
        const a = answers[i];
        if (a === undefined) {
          const t = failed[i];
          if (t !== undefined && t < writeSentAt) why(earlyWhy, `error ${failures[i]}`);
          else why(missingWhy, t !== undefined ? `error ${failures[i]}` : 'no answer');
          continue;
        }
        const text = `HTTP ${a.status} index ${a.index} ${a.body.toString().slice(0, 60)}`;
        if (a.at < writeSentAt) { why(earlyWhy, text); continue; }
        let ok = a.status === 200 && Number(a.index) > Number(index);
        if (ok) {
          try { ok = (JSON.parse(a.body.toString()) as { Value: string }[])[0]?.Value === expect; } catch { ok = false; }
        }
        if (!ok) { why(missingWhy, text); continue; }
        woken++;
        newIndex = a.index;
        fromPut.push(a.at - writeSentAt);
        fromAck.push(a.at - ackAt);
        first = Math.min(first, a.at - writeSentAt);
        last = Math.max(last, a.at - writeSentAt);
      }
      const r: FanoutRound = {
        round, waiting: o.n - early, park_ms: Math.round(parkMs), early, early_reasons: reasons(earlyWhy), missing_reasons: reasons(missingWhy), index, leader_before: leaderBefore ?? null, leader_after: leaderAfter ?? null, quiet,
        woken, missing: o.n - early - woken, put_ack_ms: r2(ackAt - writeSentAt)!,
        first_from_put_ms: woken ? r2(first) : null, last_from_put_ms: woken === o.n ? r2(last) : null, last_from_ack_ms: woken === o.n ? r2(last - (ackAt - writeSentAt)) : null,
        client_cpu_ms: Math.round((clientCpu.user + clientCpu.system) / 1000), catalog_cpu_ms: catalogCpu0 !== undefined && catalogCpu1 !== undefined ? catalogCpu1 - catalogCpu0 : null,
      };
      if (round <= 0) forget(recorded, fromPut, fromAck);
      else rounds.push(r);
      log(`  ${label} N=${o.n} ${round <= 0 ? 'warm-up ' : ''}round ${round}: parked in ${r.park_ms} ms, early ${r.early}, woken ${r.woken}, missing ${r.missing}; put ack ${r.put_ack_ms} ms, first ${r.first_from_put_ms} ms, last ${r.last_from_put_ms ?? '-'} ms from put; cpu catalog ${r.catalog_cpu_ms} ms, client ${r.client_cpu_ms} ms; leader ${leaderBefore} -> ${leaderAfter}`);
      if (r.early) log(`    early: ${r.early_reasons.join(' | ')}`);
      if (r.missing) log(`    missing: ${r.missing_reasons.join(' | ')}`);
      if (round > 0) for (const t of [...r.early_reasons, ...r.missing_reasons]) note(errors, `round ${round}: ${t}`);
      // Anything still open (a straggler) is cut before the next round.
      for (const req of live) req.destroy();
      live.clear();
      index = newIndex;
      await sleep(300);
    }
    result = summarize(label, o.n, rounds, fromPut, fromAck, errors);
  } catch (e) {
    result = summarize(label, o.n, rounds, fromPut, fromAck, errors);
    result.error = String((e as Error)?.message ?? e);
  } finally {
    for (const req of live) req.destroy();
    for (const a of agents) a.destroy();
    control.destroy();
  }
  return result;
}

/** Opens watcher `i` on `key`; `onEvent` gets each PUT event's value and its arrival time; resolves once the watch is created. */
export type OpenWatch = (i: number, key: Buffer, onEvent: (value: Buffer, atMs: number) => void) => Promise<{ close(): void }>;

/** etcd's gRPC Watch: one bidi stream per watcher, round-robin over the members (3 HTTP/2 connections). */
export const grpcWatches = (members: EtcdClient[]): OpenWatch => (i, key, onEvent) => members[i % members.length].watch(key, onEvent);

/**
 * etcd's HTTP/JSON gateway watch (POST /v3/watch, an answer that streams one JSON line per
 * message), one connection per watcher, round-robin over the members: the anchor of
 * performance.md §3b (anchors/etcd-watch.mjs), and the same shape as Consulate's blocking GETs:
 * a connection per waiter, this node:http client reading each answer.
 */
export const gatewayWatches = (endpoints: Endpoint[]): OpenWatch => (i, key, onEvent) =>
  new Promise((resolve, reject) => {
    const to = endpoints[i % endpoints.length];
    const body = Buffer.from(JSON.stringify({ create_request: { key: key.toString('base64') } }));
    let created = false;
    const req = request({ host: to.host, port: to.port, method: 'POST', path: '/v3/watch', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      let pending = '';
      res.on('data', (chunk: Buffer) => {
        const at = performance.now();
        pending += chunk.toString();
        for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line === '') continue;
          const message = (JSON.parse(line) as { result?: { created?: boolean; events?: { type?: string; kv?: { value?: string } }[] } }).result ?? {};
          if (message.created === true && !created) {
            created = true;
            clearTimeout(timer);
            resolve({ close: () => req.destroy() });
          }
          // The gateway leaves out a PUT event's type: it is the enum's zero value.
          for (const event of message.events ?? []) if ((event.type ?? 'PUT') === 'PUT' && event.kv) onEvent(Buffer.from(event.kv.value ?? '', 'base64'), at);
        }
      });
    });
    const timer = setTimeout(() => { if (!created) { req.destroy(); reject(new Error('etcd gateway watch: not created within 20 s')); } }, 20_000);
    req.on('error', (e) => { if (!created) { clearTimeout(timer); reject(e); } });
    req.end(body);
  });

/** N etcd watches on one key (`open`), woken by one Put on the leader, `rounds` times. */
export async function etcdWatchFanout(open: OpenWatch, leader: EtcdClient, o: FanoutOptions, log: (s: string) => void, label: 'etcd' | 'etcd-gateway' = 'etcd'): Promise<FanoutResult> {
  const key = Buffer.from(`bench/fanout-${o.n}-${Date.now()}`);
  const arrivals = new Map<string, number[]>();
  const handles: { close(): void }[] = [];
  const rounds: FanoutRound[] = [];
  const fromPut: number[] = [];
  const fromAck: number[] = [];
  const errors = new Map<string, number>();
  let result: FanoutResult | undefined;
  try {
    const o0 = performance.now();
    for (let i = 0; i < o.n; i += 100) {
      const batch = [];
      for (let j = i; j < Math.min(o.n, i + 100); j++) {
        batch.push(open(j, key, (value, at) => arrivals.get(value.subarray(0, 32).toString().trim())?.push(at)));
      }
      handles.push(...(await Promise.all(batch)));
    }
    log(`  ${label} N=${o.n}: ${handles.length} watches created in ${Math.round(performance.now() - o0)} ms`);
    await sleep(500);
    for (let round = 1 - (o.warmupRounds ?? 0); round <= o.rounds; round++) {
      const recorded = { fromPut: fromPut.length, fromAck: fromAck.length };
      const tag = `r${round}-${Date.now()}`;
      const got: number[] = [];
      arrivals.set(tag, got);
      const clientCpu0 = process.cpuUsage();
      const sentAt = performance.now();
      await leader.put(key, valueFor(tag));
      const ackAt = performance.now();
      const deadline = ackAt + o.deliverTimeoutMs;
      while (got.length < o.n && performance.now() < deadline) await sleep(2);
      const clientCpu = process.cpuUsage(clientCpu0);
      for (const t of got) { fromPut.push(t - sentAt); fromAck.push(t - ackAt); }
      const woken = got.length;
      const last = woken ? Math.max(...got) - sentAt : null;
      const r: FanoutRound = {
        round, waiting: o.n, park_ms: 0, early: 0, early_reasons: [], missing_reasons: woken < o.n ? [`${o.n - woken}x no event within ${o.deliverTimeoutMs} ms`] : [], index: null, leader_before: null, leader_after: null, quiet: null,
        woken, missing: o.n - woken, put_ack_ms: r2(ackAt - sentAt)!,
        first_from_put_ms: woken ? r2(Math.min(...got) - sentAt) : null, last_from_put_ms: woken === o.n ? r2(last) : null, last_from_ack_ms: woken === o.n ? r2(last! - (ackAt - sentAt)) : null,
        client_cpu_ms: Math.round((clientCpu.user + clientCpu.system) / 1000), catalog_cpu_ms: null,
      };
      if (round <= 0) forget(recorded, fromPut, fromAck);
      else rounds.push(r);
      log(`  ${label} N=${o.n} ${round <= 0 ? 'warm-up ' : ''}round ${round}: woken ${r.woken}, missing ${r.missing}; put ack ${r.put_ack_ms} ms, first ${r.first_from_put_ms} ms, last ${r.last_from_put_ms ?? '-'} ms from put; cpu client ${r.client_cpu_ms} ms`);
      arrivals.delete(tag);
      await sleep(300);
    }
    result = summarize(label, o.n, rounds, fromPut, fromAck, errors);
  } catch (e) {
    note(errors, e);
    result = summarize(label, o.n, rounds, fromPut, fromAck, errors);
    result.error = String((e as Error)?.message ?? e);
  } finally {
    for (const h of handles) h.close();
  }
  return result;
}
