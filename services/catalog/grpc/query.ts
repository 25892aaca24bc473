/**
 * The gRPC side of every read: QueryOptions in (consistency, min_index, max_stale, datacenter),
 * state/consistent-read.ts in the middle, QueryMeta out. A blocking read (min_index > 0) waits
 * until a little before the call's deadline, at most Consul's 10 minutes (5 without a deadline),
 * with no jitter: the client chose the deadline; and it stops waiting when the client cancels.
 */
import { ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';

import { Consistency, QueryMeta, QueryOptions } from '../../gen/consulate/catalog/v1/query';
import { ConsistencyMode, DEFAULT_WAIT_MS, MAX_WAIT_MS, ReadDeps, ReadOptions, consistentRead } from '../state/consistent-read';
import { refuseOtherDatacenter } from '../state/errors';
import { Table } from '../state/keys';
import { durationOfMs, msOfDuration } from './proto-shapes';
import { invalidArgument } from './status';

/** Time kept back from the call's deadline so a blocking read answers before it, at most. */
const DEADLINE_MARGIN_MS = 1_000;

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

const MODES: Record<Consistency, ConsistencyMode | undefined> = {
  [Consistency.CONSISTENCY_UNSPECIFIED]: 'default',
  [Consistency.CONSISTENCY_DEFAULT]: 'default',
  [Consistency.CONSISTENCY_CONSISTENT]: 'consistent',
  [Consistency.CONSISTENCY_STALE]: 'stale',
  [Consistency.UNRECOGNIZED]: undefined,
};

/** QueryOptions as state/consistent-read.ts takes them; INVALID_ARGUMENT or NOT_FOUND (datacenter) when they cannot be. */
export function readOptionsOf(query: QueryOptions | undefined, call: AnyCall, localDatacenter: string): ReadOptions {
  refuseOtherDatacenter(query?.datacenter, localDatacenter);
  const consistency = MODES[query?.consistency ?? Consistency.CONSISTENCY_UNSPECIFIED];
  if (consistency === undefined) throw invalidArgument(`unknown consistency ${query?.consistency}: use CONSISTENCY_DEFAULT, CONSISTENCY_CONSISTENT or CONSISTENCY_STALE`);
  const maxStaleMs = query?.maxStale === undefined ? 0 : msOfDuration(query.maxStale);
  if (maxStaleMs < 0) throw invalidArgument(`Invalid max_stale value "${maxStaleMs}ms"`);
  if (maxStaleMs > 0 && consistency !== 'stale') throw invalidArgument('max_stale applies to CONSISTENCY_STALE reads only: set consistency to CONSISTENCY_STALE or leave max_stale unset');
  const minIndex = Number(query?.minIndex ?? 0n);
  if (!Number.isSafeInteger(minIndex)) throw invalidArgument('Invalid index');
  return { consistency, maxStaleMs, minIndex, waitMs: waitMsOf(call) };
}

/** How long a blocking read may wait: until shortly before the call's deadline. */
function waitMsOf(call: AnyCall): number {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return DEFAULT_WAIT_MS;
  const remaining = at - Date.now();
  return Math.max(0, Math.min(MAX_WAIT_MS, remaining - Math.min(DEADLINE_MARGIN_MS, remaining / 10)));
}

export function queryMeta(read: { index: number; knownLeader: boolean; lastContactMs: number }, options: ReadOptions): QueryMeta {
  const consistency = { default: Consistency.CONSISTENCY_DEFAULT, consistent: Consistency.CONSISTENCY_CONSISTENT, stale: Consistency.CONSISTENCY_STALE }[options.consistency];
  return { index: BigInt(read.index), knownLeader: read.knownLeader, lastContact: durationOfMs(read.lastContactMs), consistency };
}

/** An AbortSignal that fires when the client cancels `call`. */
export function cancelledSignal(call: AnyCall): AbortSignal {
  const controller = new AbortController();
  if (call.cancelled) controller.abort();
  else call.once('cancelled', () => controller.abort());
  return controller.signal;
}

/**
 * One read: `compute` on the view at the query's consistency, blocking on `tables` as min_index
 * asks; its value and QueryMeta.
 */
export async function queryRead<T>(deps: ReadDeps & { readonly datacenter: string }, call: AnyCall, query: QueryOptions | undefined, tables: readonly Table[], compute: () => { value: T; index: number }): Promise<{ value: T; meta: QueryMeta }> {
  const options = readOptionsOf(query, call, deps.datacenter);
  const read = await consistentRead({ view: deps.view, sync: deps.sync, consensus: deps.consensus, random: () => 0 }, options, tables, compute, cancelledSignal(call));
  return { value: read.value, meta: queryMeta(read, options) };
}
