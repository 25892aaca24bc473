/**
 * The catalog's watch-fed view of its consensus keys (DESIGN.md data flow 2): a full read at a
 * revision, then every change from the revision after it, so the view is always the store as of
 * one revision. Every read the catalog serves comes from here; the consistency mode only decides
 * which revision the view must have reached first (`waitForRevision`).
 *
 * Blocking queries (reference/consul-compat.md §4.4) wait on tables: each table remembers the
 * last revision that changed it, deletions included, and a waiter wakes when a table it reads
 * moves past the index it holds. Deleted KV keys leave a tombstone with their delete revision,
 * so a recursive read's index moves when a key below its prefix goes away (Consul's graveyard).
 */
import { invariant } from '../../lib/invariant';
import { TooManyWaitersError } from './errors';
import { Table, tableOf } from './keys';

export interface Row {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly lease: string;
}

export type Change = { readonly type: 'put'; readonly row: Row } | { readonly type: 'delete'; readonly key: string; readonly revision: number };

interface Waiter {
  readonly tables: readonly Table[];
  readonly index: number;
  readonly wake: () => void;
}

/** Tombstones kept for KV deletes; the oldest go first (Consul reaps its graveyard too). */
export const MAX_TOMBSTONES = 100_000;
/** Blocking queries one catalog holds at once; more are refused, never queued without bound. */
export const MAX_WAITERS = 50_000;
/** Blocking queries woken per turn of the event loop when a change wakes many (wakeTable). */
export const WAKE_BATCH = 64;

export class CatalogView {
  /** Rows by table, so a scan of one table never walks another (a node list never walks the KV). */
  private readonly tables = new Map<Table, Map<string, Row>>();
  private readonly tableIndex = new Map<Table, number>();
  private readonly tombstones = new Map<string, number>();
  private readonly waiters = new Map<Table, Set<Waiter>>();
  private waiterCount = 0;
  private readonly revisionWaiters: { revision: number; wake: () => void }[] = [];
  private appliedRevision = 0;
  private loaded = false;

  /** The revision the view reflects. */
  get revision(): number {
    return this.appliedRevision;
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  /** Replaces the view with a full read at `revision` (at start, and after a lost watch). */
  load(rows: readonly Row[], revision: number): void {
    this.tables.clear();
    for (const row of rows) this.table(row.key)?.set(row.key, row);
    // After a reload we cannot tell what changed: every table counts as changed now.
    for (const table of ['nodes', 'services', 'checks', 'kvs', 'sessions', 'system'] as Table[]) this.tableIndex.set(table, Math.max(this.tableIndex.get(table) ?? 0, revision));
    this.appliedRevision = revision;
    this.loaded = true;
    this.wakeAll();
  }

  /** Applies the changes of one or more revisions, in order, up to `revision`. */
  apply(changes: readonly Change[], revision: number): void {
    invariant(revision >= this.appliedRevision, () => `the view went back from revision ${this.appliedRevision} to ${revision}`);
    const touched = new Set<Table>();
    for (const change of changes) {
      const key = change.type === 'put' ? change.row.key : change.key;
      const table = tableOf(key);
      if (table === undefined) continue;
      const at = change.type === 'put' ? change.row.modRevision : change.revision;
      if (change.type === 'put') {
        this.table(key)!.set(key, change.row);
        this.tombstones.delete(key);
      } else {
        this.table(key)!.delete(key);
        // KV deletes move a recursive read's index; a session's delete revision tells which
        // releases were its end (the session reaper's lock-delay).
        if (table === 'kvs' || table === 'sessions') this.bury(key, at);
      }
      this.tableIndex.set(table, Math.max(this.tableIndex.get(table) ?? 0, at));
      touched.add(table);
    }
    this.appliedRevision = revision;
    // The writer waiting for its own revision first, and the blocking queries the write wakes on
    // the next turn of the event loop: the writer's reply must not queue behind thousands of
    // theirs (10,000 watchers held its acknowledgement for a second: bench/catalog).
    this.wakeRevisionWaiters();
    if (touched.size > 0) setImmediate(() => {
      for (const table of touched) this.wakeTable(table);
    });
  }

  get(key: string): Row | undefined {
    return this.table(key)?.get(key);
  }

  /** Rows whose key starts with `prefix` (within one table), in key order. */
  scan(prefix: string): Row[] {
    const out: Row[] = [];
    for (const [key, row] of this.table(prefix) ?? []) if (key.startsWith(prefix)) out.push(row);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The rows of the table `key` belongs to; undefined for keys the catalog does not own. */
  private table(key: string): Map<string, Row> | undefined {
    const table = tableOf(key);
    if (table === undefined) return undefined;
    let rows = this.tables.get(table);
    if (rows === undefined) this.tables.set(table, (rows = new Map()));
    return rows;
  }

  /** The last revision that changed any of `tables` (Consul's table index); never below 1. */
  index(...tables: Table[]): number {
    let index = 1;
    for (const table of tables) index = Math.max(index, this.tableIndex.get(table) ?? 0);
    return index;
  }

  /** The highest revision that deleted a KV key under `prefix` (Consul's graveyard index). */
  tombstoneIndex(prefix: string): number {
    let index = 0;
    for (const [key, revision] of this.tombstones) if (key.startsWith(prefix) && revision > index) index = revision;
    return index;
  }

  /**
   * Resolves when one of `tables` changes past `index`, or after `timeoutMs`, or when `signal`
   * aborts (whichever comes first), or at once when one already has. Rejects with
   * TooManyWaitersError when too many queries are waiting.
   */
  waitForChange(tables: readonly Table[], index: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.index(...tables) > index || signal?.aborted === true) return Promise.resolve();
    if (this.waiterCount >= MAX_WAITERS) return Promise.reject(new TooManyWaitersError(`too many blocking queries on this catalog (${MAX_WAITERS}); retry later`));
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        tables,
        index,
        wake: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', waiter.wake);
          this.removeWaiter(waiter);
          resolve();
        },
      };
      timer = setTimeout(waiter.wake, timeoutMs);
      // A cancelled call leaves at once rather than holding a waiter until its timeout.
      signal?.addEventListener('abort', waiter.wake, { once: true });
      for (const table of tables) {
        let set = this.waiters.get(table);
        if (set === undefined) this.waiters.set(table, (set = new Set()));
        set.add(waiter);
      }
      this.waiterCount++;
    });
  }

  /** Resolves true once the view has applied `revision`, false after `timeoutMs`. */
  waitForRevision(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.appliedRevision >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const entry = {
        revision,
        wake: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        const at = this.revisionWaiters.indexOf(entry);
        if (at >= 0) this.revisionWaiters.splice(at, 1);
        resolve(false);
      }, timeoutMs);
      this.revisionWaiters.push(entry);
    });
  }

  /** Blocking queries waiting now (for metrics). */
  get waiting(): number {
    return this.waiterCount;
  }

  private bury(key: string, revision: number): void {
    this.tombstones.set(key, revision);
    if (this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value!);
  }

  /**
   * Wakes the waiters `table` has passed, WAKE_BATCH per turn of the event loop: each batch's
   * answers are written before the next batch is computed, so the first go out at once and the
   * clients read them while the rest are computed, rather than all 1,000 answers stepping through
   * each `await` together and the first leaving only when the last is ready.
   */
  private wakeTable(table: Table): void {
    const set = this.waiters.get(table);
    if (set === undefined) return;
    const index = this.tableIndex.get(table) ?? 0;
    const due = [...set].filter((waiter) => index > waiter.index);
    const wakeFrom = (start: number): void => {
      for (const waiter of due.slice(start, start + WAKE_BATCH)) waiter.wake();
      if (start + WAKE_BATCH < due.length) setImmediate(() => wakeFrom(start + WAKE_BATCH));
    };
    wakeFrom(0);
  }

  private wakeAll(): void {
    for (const table of this.waiters.keys()) this.wakeTable(table);
    this.wakeRevisionWaiters();
  }

  private wakeRevisionWaiters(): void {
    for (let i = this.revisionWaiters.length - 1; i >= 0; i--) {
      const entry = this.revisionWaiters[i];
      if (this.appliedRevision >= entry.revision) {
        this.revisionWaiters.splice(i, 1);
        entry.wake();
      }
    }
  }

  private removeWaiter(waiter: Waiter): void {
    let removed = false;
    for (const table of waiter.tables) removed = this.waiters.get(table)?.delete(waiter) === true || removed;
    if (removed) this.waiterCount--;
  }
}
