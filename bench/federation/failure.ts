/**
 * Failure detection of a remote router, as an operator sees it: SIGKILL of dc2's router-1 (the
 * router dc1 joined through) at t0, then, until dc1's `GET /v1/operator/area/<id>/members` lists it
 * `failed` (polled every POLL_MS) or the timeout passes:
 *  - forwarded reads `GET /v1/catalog/service/web?dc=dc2` through dc1, one every READ_INTERVAL_MS
 *    (concurrency 1): how many failed, when the first failed, when one first succeeded after a
 *    failure, and the slowest (the forwarder fails over to dc2's other router on an error);
 *  - from the routers' own logs (memberlist's lines): when the first survivor suspected it and
 *    when the first marked it failed, and with how many confirmations.
 * The reads go on for TAIL_MS after `failed` is seen, so a failure right at the end is counted.
 */
import { Agent } from 'node:http';

import { agentFrom, getOnce } from '../catalog/http-client';
import { logRecords } from '../../test/harness/processes';
import { CLIENT_IP, FederatedPair, SERVICE, areaMembers } from './federated-pair';

export const POLL_MS = 25;
const TAIL_MS = 1_000;

export interface DetectionOptions {
  readonly timeoutMs: number;
  readonly readIntervalMs: number;
}

export interface DetectionRun {
  profile: string;
  run: number;
  killed: string;
  /** t0 → dc1's members API lists the killed router `failed`; null when the timeout passed first. */
  listed_failed_ms: number | null;
  /** Each status dc1 listed for the killed router, with when it was first seen. */
  statuses_seen: Record<string, number>;
  /** From the survivors' logs: the first "Suspect <node> has failed" and "Marking <node> as failed". */
  first_suspect_ms: number | null;
  first_marked_failed_ms: number | null;
  marked_by: string | null;
  marked_confirmations: number | null;
  reads: number;
  read_errors: number;
  read_error_samples: string[];
  first_read_error_ms: number | null;
  /** The first successful read after the first failed one, from t0; null when none failed. */
  recovered_ms: number | null;
  slowest_read_ms: number | null;
  slowest_read_at_ms: number | null;
  members_poll_errors: number;
  error?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number) => Math.round(x);

/** Milliseconds from `t0Wall` (epoch ms) to the first log line of `processes` matching `pattern`. */
function firstLogLine(pair: FederatedPair, pattern: RegExp, t0Wall: number, killedPid: number): { ms: number; node: string; msg: string } | null {
  let best: { ms: number; node: string; msg: string } | null = null;
  for (const dc of [pair.dc1, pair.dc2]) {
    for (const router of dc.routers) {
      if (router.pid === killedPid) continue;
      for (const record of logRecords(router)) {
        const msg = String(record.msg ?? '');
        if (!pattern.test(msg)) continue;
        const at = Date.parse(String(record.time ?? ''));
        if (!Number.isFinite(at) || at < t0Wall - 5) continue;
        if (best === null || at - t0Wall < best.ms) best = { ms: at - t0Wall, node: `${String(record.node ?? router.address)}.${dc.name}`, msg };
      }
    }
  }
  return best;
}

export async function detectFailure(pair: FederatedPair, run: number, o: DetectionOptions, log: (line: string) => void): Promise<DetectionRun> {
  const victim = pair.dc2.routers[0];
  const name = `router-1.${pair.dc2.name}`;
  const result: DetectionRun = {
    profile: pair.profile, run, killed: `${name} (${victim.address}:8300, pid ${victim.pid})`, listed_failed_ms: null, statuses_seen: {},
    first_suspect_ms: null, first_marked_failed_ms: null, marked_by: null, marked_confirmations: null,
    reads: 0, read_errors: 0, read_error_samples: [], first_read_error_ms: null, recovered_ms: null, slowest_read_ms: null, slowest_read_at_ms: null, members_poll_errors: 0,
  };
  const reader: Agent = agentFrom(CLIENT_IP, 1);
  const path = `/v1/catalog/service/${SERVICE}?dc=${pair.dc2.name}`;
  // The forwarded path warm and in use before the kill, as in the latency phase.
  for (let i = 0; i < 20; i++) await getOnce(pair.dc1Http, reader, path);
  const before = await areaMembers(pair.dc1Http, pair.control, pair.dc1AreaId);
  if (before.find((m) => m.Name === name)?.Status !== 'alive') throw new Error(`${name} is not listed alive before the kill: ${JSON.stringify(before)}`);

  let done = false;
  let tailUntil = Infinity;
  const errors = new Map<string, number>();
  const t0Wall = Date.now();
  const t0 = performance.now();
  const since = () => performance.now() - t0;
  victim.child.kill('SIGKILL');

  const watch = (async () => {
    while (!done && since() < o.timeoutMs) {
      const tick = performance.now();
      try {
        const rows = await areaMembers(pair.dc1Http, pair.control, pair.dc1AreaId, 2_000);
        const status = rows.find((m) => m.Name === name)?.Status ?? '(not listed)';
        const at = round(since());
        if (!(status in result.statuses_seen)) result.statuses_seen[status] = at;
        if (status === 'failed') {
          result.listed_failed_ms = at;
          tailUntil = performance.now() + TAIL_MS;
          return;
        }
      } catch {
        result.members_poll_errors++;
      }
      await sleep(Math.max(0, POLL_MS - (performance.now() - tick)));
    }
  })();

  const reads = (async () => {
    while (!done && since() < o.timeoutMs && performance.now() < tailUntil) {
      const start = performance.now();
      const at = start - t0;
      try {
        await getOnce(pair.dc1Http, reader, path);
        if (result.first_read_error_ms !== null && result.recovered_ms === null) result.recovered_ms = round(since());
      } catch (e) {
        result.read_errors++;
        result.first_read_error_ms ??= round(at);
        const text = String((e as Error)?.message ?? e).slice(0, 200);
        errors.set(text, (errors.get(text) ?? 0) + 1);
      }
      result.reads++;
      const took = performance.now() - start;
      if (result.slowest_read_ms === null || took > result.slowest_read_ms) {
        result.slowest_read_ms = Math.round(took * 100) / 100;
        result.slowest_read_at_ms = round(at);
      }
      await sleep(Math.max(0, o.readIntervalMs - took));
    }
  })();

  try {
    await watch;
    if (result.listed_failed_ms === null) tailUntil = 0;
    await reads;
  } finally {
    done = true;
    reader.destroy();
  }
  await victim.exited;
  const escaped = name.replace(/\./g, '\\.');
  // swim-pool.ts prefixes the core's lines with `memberlist: `, as Consul's logs show them.
  const suspect = firstLogLine(pair, new RegExp(`^(memberlist: )?Suspect ${escaped} has failed`), t0Wall, victim.pid);
  const marked = firstLogLine(pair, new RegExp(`^(memberlist: )?Marking ${escaped} as failed`), t0Wall, victim.pid);
  result.first_suspect_ms = suspect?.ms ?? null;
  result.first_marked_failed_ms = marked?.ms ?? null;
  result.marked_by = marked?.node ?? null;
  result.marked_confirmations = marked ? Number(/\((\d+) peer confirmations\)/.exec(marked.msg)?.[1] ?? NaN) : null;
  result.read_error_samples = [...errors.entries()].slice(0, 5).map(([t, k]) => `${k}x ${t}`);
  log(`[${pair.profile}] run ${run}: ${name} listed failed after ${result.listed_failed_ms ?? `- (timeout ${o.timeoutMs / 1000} s)`} ms (first suspect ${result.first_suspect_ms ?? '-'} ms, first marked ${result.first_marked_failed_ms ?? '-'} ms by ${result.marked_by ?? '-'}); ` +
    `${result.read_errors}/${result.reads} forwarded reads failed${result.recovered_ms !== null ? `, recovered at ${result.recovered_ms} ms` : ''}; slowest read ${result.slowest_read_ms} ms at ${result.slowest_read_at_ms} ms`);
  return result;
}
