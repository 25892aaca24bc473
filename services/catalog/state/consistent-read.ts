/**
 * How every read is answered, whichever API asks (DESIGN.md data flow 2;
 * reference/consul-compat.md §4.4-4.5): the consistency mode fixes the revision the view must
 * reach first (default: the leader's lease read; `consistent`: ReadIndex, a quorum round;
 * `stale`: none), then the result is computed from the view, and a blocking query (a min index)
 * waits until the index of what it reads passes it, or its wait (plus up to wait/16 of jitter)
 * runs out. The HTTP API turns the outcome into Consul's headers (http/blocking.ts), the gRPC API
 * into a QueryMeta (grpc/query.ts).
 */
import { Consistency } from '../../gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../lib/consensus-client';
import { NoLeaderError, ViewBehindError } from './errors';
import { Table, keys, prefixEnd } from './keys';
import { RevisionBarrier } from './revision-barrier';
import { CatalogView } from './view';
import { ViewSync } from './view-sync';

export type ConsistencyMode = 'default' | 'consistent' | 'stale';

/** Consul's blocking limits (agent/consul/rpc.go): 5 min by default, 10 min at most, jitter up to wait/16. */
export const DEFAULT_WAIT_MS = 5 * 60_000;
export const MAX_WAIT_MS = 10 * 60_000;
export const JITTER_FRACTION = 16;

/** How long a read waits for the view to reach the leader's revision before giving up. */
export const CATCH_UP_TIMEOUT_MS = 5_000;
const REVISION_PROBE_TIMEOUT_MS = 5_000;

export interface ReadOptions {
  /** Block until the result's index passes this; 0 does not block. */
  readonly minIndex: number;
  /** How long to block at most, jitter not included. */
  readonly waitMs: number;
  readonly consistency: ConsistencyMode;
  /** A stale read may serve a view this far behind its last contact with consensus (0: any). */
  readonly maxStaleMs: number;
}

export interface ReadDeps {
  readonly view: CatalogView;
  readonly sync: Pick<ViewSync, 'lastContactMs'>;
  readonly consensus: Pick<ConsensusClient, 'kv'>;
  /** [0, 1): the jitter of blocking waits. */
  readonly random?: () => number;
}

export interface ReadOutcome<T> {
  readonly value: T;
  /** Never below 1 (Consul's setIndex). */
  readonly index: number;
  /** Whether a leader answered (X-Consul-KnownLeader). */
  readonly knownLeader: boolean;
  /** How long since the view heard from consensus, for stale reads; 0 otherwise (X-Consul-LastContact). */
  readonly lastContactMs: number;
}

/**
 * Reads `compute` from the view at the consistency `options` ask for, blocking while its index
 * is at most `options.minIndex`. `signal` ends a blocking wait early (a cancelled call).
 * Throws NoLeaderError and ViewBehindError (retry), TooManyWaitersError (retry later).
 */
export async function consistentRead<T>(deps: ReadDeps, options: ReadOptions, tables: readonly Table[], compute: () => { value: T; index: number }, signal?: AbortSignal): Promise<ReadOutcome<T>> {
  const knownLeader = await reachRevision(deps, options);
  // The tables' index as of each compute: a result's own index can stay below the tables' (a
  // key, a prefix), so the next wait is for a change past what the last compute saw, not past
  // minIndex, which the tables may already have passed (that wait would never block).
  let seen = deps.view.index(...tables);
  let result = compute();
  if (options.minIndex > 0 && result.index <= options.minIndex) {
    const jitter = Math.floor((deps.random ?? Math.random)() * (options.waitMs / JITTER_FRACTION));
    const deadline = Date.now() + options.waitMs + jitter;
    while (result.index <= options.minIndex && signal?.aborted !== true) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      await deps.view.waitForChange(tables, Math.max(options.minIndex, seen), remaining, signal);
      seen = deps.view.index(...tables);
      result = compute();
    }
  }
  const lastContactMs = options.consistency === 'stale' ? Math.max(0, Date.now() - deps.sync.lastContactMs) : 0;
  return { value: result.value, index: Math.max(1, result.index), knownLeader, lastContactMs };
}

interface Barriers {
  readonly lease: RevisionBarrier;
  readonly readIndex: RevisionBarrier;
}

/**
 * One pair of barriers per consensus client (so per catalog process): every read of the process
 * shares its probes, whichever API and endpoint asked.
 */
const barriers = new WeakMap<object, Barriers>();

function barriersOf(consensus: ReadDeps['consensus']): Barriers {
  let found = barriers.get(consensus);
  if (found === undefined) {
    const probe = (consistency: Consistency) => async () => {
      const response = await consensus.kv(
        'range',
        { key: Buffer.from(keys.system('')), rangeEnd: prefixEnd(keys.system('')), limit: 0n, revision: 0n, consistency, keysOnly: false, countOnly: true },
        { timeoutMs: REVISION_PROBE_TIMEOUT_MS, idempotent: true },
      );
      return Number(response.header?.revision ?? 0n);
    };
    found = { lease: new RevisionBarrier(probe(Consistency.CONSISTENCY_LEASE)), readIndex: new RevisionBarrier(probe(Consistency.CONSISTENCY_LINEARIZABLE)) };
    barriers.set(consensus, found);
  }
  return found;
}

/**
 * Waits until the view has what the consistency mode promises; returns whether a leader
 * answered. A stale read needs only a loaded view (and, with max_stale, a recent one).
 */
async function reachRevision(deps: ReadDeps, options: ReadOptions): Promise<boolean> {
  if (options.consistency === 'stale') {
    const age = Date.now() - deps.sync.lastContactMs;
    if (deps.view.isLoaded && (options.maxStaleMs === 0 || age <= options.maxStaleMs)) return deps.sync.lastContactMs > 0;
  }
  let revision: number;
  try {
    revision = await barriersOf(deps.consensus)[options.consistency === 'consistent' ? 'readIndex' : 'lease'].revision();
  } catch {
    throw new NoLeaderError();
  }
  if (!(await deps.view.waitForRevision(revision, CATCH_UP_TIMEOUT_MS))) {
    throw new ViewBehindError(options.consistency === 'consistent' ? 'Not ready to serve consistent reads' : `catalog view is behind the leader (at revision ${deps.view.revision}, leader at ${revision})`);
  }
  return true;
}
