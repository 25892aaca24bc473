/**
 * How the catalog turns one Consul write (a KV PUT, a /v1/txn, a session create or destroy) into
 * one consensus transaction that is all-or-nothing and exactly as fresh as Consul's:
 *
 * 1. The view is brought up to the leader (catch-up.ts).
 * 2. The write is planned against the view: every row it reads is remembered with the revision
 *    it had (0 for "absent"); what it changes is staged in an overlay, so later steps of the same
 *    write see earlier ones (Consul's txn ops run in order inside one state-store transaction).
 * 3. The staged changes go to consensus as one Txn whose compares say "every row I read still has
 *    the revision I read" (etcd's optimistic concurrency). Its success branch is the change.
 * 4. A compare that fails means another writer got there first: wait for the view to reach the
 *    revision the failed Txn reported, and plan again, a bounded number of times.
 *
 * Rows this write creates or changes get the Txn's own revision, unknown until it commits: the
 * plan marks them PENDING and callers resolve them with the committed revision.
 */
import { Compare, Compare_Result, Compare_Target, RequestOp, TxnRequest } from '../../gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../lib/consensus-client';
import { invariant } from '../../lib/invariant';
import { CATCH_UP_TIMEOUT_MS, catchUpWithLeader } from './catch-up';
import { WriteConflictError } from './errors';
import { prefixEnd } from './keys';
import { CatalogView } from './view';

/** The revision of a row this write creates or changes: the Txn's, known once it commits. */
export const PENDING = -1;

/** The consensus store's limits on one Txn (consensus/kv/limits.ts: maxTxnOps). */
export const MAX_TXN_COMPARES = 128;
export const MAX_TXN_OPS = 128;
/** Plans retried after a conflicting writer, before the write gives up. */
export const MAX_WRITE_ATTEMPTS = 10;
const WRITE_TIMEOUT_MS = 10_000;

export interface PlannedRow {
  readonly value: Uint8Array;
  /** PENDING when this write creates the row. */
  readonly createRevision: number;
  /** PENDING when this write changes the row. */
  readonly modRevision: number;
  /** The consensus lease the row lives on, "0" for none. */
  readonly lease: string;
}

export class WritePlan {
  /** Rows this write puts (a PlannedRow) or deletes (null), by stored key. */
  private readonly staged = new Map<string, PlannedRow | null>();
  /** Prefixes deleted whole (a DeleteRange, so rows written meanwhile by others go too). */
  private readonly deletedPrefixes: string[] = [];
  /** Every base row the plan depended on, with the mod revision it had (0: absent). */
  private readonly observed = new Map<string, number>();

  constructor(private readonly view: CatalogView) {}

  /** The row as this write sees it: its own change if it made one, else the view's (remembered). */
  get(key: string): PlannedRow | undefined {
    if (this.staged.has(key)) return this.staged.get(key) ?? undefined;
    if (this.deletedPrefixes.some((prefix) => key.startsWith(prefix))) return undefined;
    const row = this.view.get(key);
    if (!this.observed.has(key)) this.observed.set(key, row?.modRevision ?? 0);
    return row;
  }

  /**
   * Rows under `prefix` in key order, as this write sees them. `track: false` leaves out the
   * compares (a delete of a whole prefix does not depend on what is under it).
   */
  scan(prefix: string, options: { track: boolean } = { track: true }): [string, PlannedRow][] {
    const out = new Map<string, PlannedRow>();
    if (!this.deletedPrefixes.some((deleted) => prefix.startsWith(deleted))) {
      for (const row of this.view.scan(prefix)) {
        if (this.staged.has(row.key) || this.deletedPrefixes.some((deleted) => row.key.startsWith(deleted))) continue;
        if (options.track && !this.observed.has(row.key)) this.observed.set(row.key, row.modRevision);
        out.set(row.key, row);
      }
    }
    for (const [key, row] of this.staged) if (row !== null && key.startsWith(prefix)) out.set(key, row);
    return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  put(key: string, value: Uint8Array, lease = '0'): PlannedRow {
    const existing = this.get(key);
    const row: PlannedRow = { value, createRevision: existing?.createRevision ?? PENDING, modRevision: PENDING, lease };
    this.staged.set(key, row);
    return row;
  }

  /** Deletes the row if it is there; a delete depends on nothing (it succeeds whatever the row holds). */
  delete(key: string): void {
    if (!this.staged.has(key) && (this.view.get(key) === undefined || this.deletedPrefixes.some((prefix) => key.startsWith(prefix)))) return;
    this.staged.set(key, null);
  }

  deletePrefix(prefix: string): void {
    for (const [key] of this.scan(prefix, { track: false })) this.staged.set(key, null);
    this.deletedPrefixes.push(prefix);
  }

  /** Whether committing would change anything. */
  get hasWrites(): boolean {
    return this.deletedPrefixes.length > 0 || [...this.staged.entries()].some(([key, row]) => row !== null || this.view.get(key) !== undefined);
  }

  /** The one consensus Txn: compares on everything read, the staged changes as its success branch. */
  toTxn(): TxnRequest {
    const compare: Compare[] = [...this.observed].map(([key, modRevision]) => ({
      result: Compare_Result.RESULT_EQUAL,
      target: Compare_Target.TARGET_MOD,
      key: Buffer.from(key),
      targetUnion: { $case: 'modRevision', value: BigInt(modRevision) },
    }));
    const success: RequestOp[] = [];
    // A deleted prefix is a DeleteRange unless this write also puts a row under it (etcd refuses
    // a Txn that puts a key inside a range it deletes): then its rows are deleted one by one.
    const rangeDeletes = this.deletedPrefixes.filter((prefix) => ![...this.staged].some(([key, row]) => row !== null && key.startsWith(prefix)));
    for (const prefix of new Set(rangeDeletes)) {
      success.push({ request: { $case: 'requestDeleteRange', value: { key: Buffer.from(prefix), rangeEnd: prefixEnd(prefix), prevKv: false } } });
    }
    for (const [key, row] of this.staged) {
      if (row === null) {
        if (rangeDeletes.some((prefix) => key.startsWith(prefix)) || this.view.get(key) === undefined) continue;
        success.push({ request: { $case: 'requestDeleteRange', value: { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), prevKv: false } } });
      } else {
        success.push({ request: { $case: 'requestPut', value: { key: Buffer.from(key), value: Buffer.from(row.value), lease: BigInt(row.lease), prevKv: false } } });
      }
    }
    if (compare.length > MAX_TXN_COMPARES) throw new Error(`this write depends on ${compare.length} keys; one consensus transaction can check at most ${MAX_TXN_COMPARES}: split it`);
    if (success.length > MAX_TXN_OPS) throw new Error(`this write changes ${success.length} keys one by one; one consensus transaction can make at most ${MAX_TXN_OPS} changes: split it`);
    return { compare, success, failure: [] };
  }
}

export interface WriteDeps {
  readonly view: CatalogView;
  readonly consensus: Pick<ConsensusClient, 'kv'>;
}

export interface Planned<T> {
  readonly value: T;
  /** false: the write's outcome needs no change (a failed CAS, a txn with errors); nothing is sent. */
  readonly commit: boolean;
}

export interface Committed<T> {
  readonly value: T;
  /** The revision the write committed at, or the view's revision when it changed nothing. */
  readonly revision: number;
}

/**
 * Plans `build` against a fresh view and commits it as one Txn, planning again after a conflict.
 * `build` must be a pure function of the plan: it runs again on every attempt.
 */
export async function commitPlan<T>(deps: WriteDeps, build: (plan: WritePlan) => Planned<T>): Promise<Committed<T>> {
  await catchUpWithLeader(deps.view, deps.consensus);
  for (let attempt = 1; ; attempt++) {
    const plan = new WritePlan(deps.view);
    const planned = build(plan);
    if (!planned.commit || !plan.hasWrites) return { value: planned.value, revision: deps.view.revision };
    const response = await deps.consensus.kv('txn', plan.toTxn(), { timeoutMs: WRITE_TIMEOUT_MS, idempotent: false });
    const revision = Number(response.header?.revision ?? 0n);
    invariant(revision > 0, 'a consensus Txn answered without a revision');
    // Reads through this catalog see the write as soon as it is acknowledged (and the session
    // reaper sees it before anything that follows).
    await deps.view.waitForRevision(revision, CATCH_UP_TIMEOUT_MS);
    if (response.succeeded) return { value: planned.value, revision };
    if (attempt >= MAX_WRITE_ATTEMPTS) throw new WriteConflictError(`the keys this write reads kept changing under it (${attempt} attempts); retry`);
  }
}
