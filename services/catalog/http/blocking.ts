/**
 * How every read is answered (DESIGN.md data flow 2; reference/consul-compat.md §4.4-4.5): the
 * consistency mode fixes the revision the view must reach first (default: the leader's lease
 * read; `consistent`: ReadIndex, a quorum round; `stale`: none), then the result is computed from
 * the view, and a blocking query (`?index=N`) waits until the index of what it reads passes N, or
 * its wait (plus up to wait/16 of jitter) runs out. Headers as Consul sets them (`setMeta`).
 */
import { Consistency } from '../../gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../lib/consensus-client';
import { Table, keys, prefixEnd } from '../state/keys';
import { CatalogView } from '../state/view';
import { ViewSync } from '../state/view-sync';
import { HttpError } from './http-errors';
import { JITTER_FRACTION, QueryOptions } from './query-options';

/** How long a read waits for the view to reach the leader's revision before giving up. */
export const CATCH_UP_TIMEOUT_MS = 5_000;
const REVISION_PROBE_TIMEOUT_MS = 5_000;

export interface ReadDeps {
  readonly view: CatalogView;
  readonly sync: Pick<ViewSync, 'lastContactMs'>;
  readonly consensus: Pick<ConsensusClient, 'kv'>;
  /** [0, 1): the jitter of blocking waits. */
  readonly random?: () => number;
}

export interface ReadResult<T> {
  readonly value: T;
  readonly index: number;
  readonly headers: Record<string, string>;
}

export async function blockingRead<T>(deps: ReadDeps, options: QueryOptions, tables: readonly Table[], compute: () => { value: T; index: number }): Promise<ReadResult<T>> {
  const knownLeader = await reachRevision(deps, options);
  // The tables' index as of each compute: a result's own index can stay below the tables' (a
  // key, a prefix), so the next wait is for a change past what the last compute saw, not past
  // minIndex, which the tables may already have passed (that wait would never block).
  let seen = deps.view.index(...tables);
  let result = compute();
  if (options.minIndex > 0 && result.index <= options.minIndex) {
    const jitter = Math.floor((deps.random ?? Math.random)() * (options.waitMs / JITTER_FRACTION));
    const deadline = Date.now() + options.waitMs + jitter;
    while (result.index <= options.minIndex) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      try {
        await deps.view.waitForChange(tables, Math.max(options.minIndex, seen), remaining);
      } catch (err) {
        throw new HttpError(429, (err as Error).message);
      }
      seen = deps.view.index(...tables);
      result = compute();
    }
  }
  const index = Math.max(1, result.index);
  const lastContact = options.consistency === 'stale' ? Math.max(0, Date.now() - deps.sync.lastContactMs) : 0;
  return {
    value: result.value,
    index,
    headers: {
      'X-Consul-Index': String(index),
      'X-Consul-KnownLeader': String(knownLeader),
      'X-Consul-LastContact': String(lastContact),
      'X-Consul-Effective-Consistency': options.consistency === 'default' ? 'leader' : options.consistency,
    },
  };
}

/**
 * Waits until the view has what the consistency mode promises; returns whether a leader
 * answered. A stale read needs only a loaded view (and, with max_stale, a recent one).
 */
async function reachRevision(deps: ReadDeps, options: QueryOptions): Promise<boolean> {
  if (options.consistency === 'stale') {
    const age = Date.now() - deps.sync.lastContactMs;
    if (deps.view.isLoaded && (options.maxStaleMs === 0 || age <= options.maxStaleMs)) return deps.sync.lastContactMs > 0;
  }
  let revision: number;
  try {
    const response = await deps.consensus.kv(
      'range',
      {
        key: Buffer.from(keys.system('')),
        rangeEnd: prefixEnd(keys.system('')),
        limit: 0n,
        revision: 0n,
        consistency: options.consistency === 'consistent' ? Consistency.CONSISTENCY_LINEARIZABLE : Consistency.CONSISTENCY_LEASE,
        keysOnly: false,
        countOnly: true,
      },
      { timeoutMs: REVISION_PROBE_TIMEOUT_MS, idempotent: true },
    );
    revision = Number(response.header?.revision ?? 0n);
  } catch {
    // Consul's text when no server leads (structs.ErrNoLeader).
    throw new Error('No cluster leader');
  }
  if (!(await deps.view.waitForRevision(revision, CATCH_UP_TIMEOUT_MS))) {
    throw new Error(options.consistency === 'consistent' ? 'Not ready to serve consistent reads' : `catalog view is behind the leader (at revision ${deps.view.revision}, leader at ${revision})`);
  }
  return true;
}
