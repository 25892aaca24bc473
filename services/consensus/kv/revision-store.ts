/**
 * The multi-version key store (etcd's mvcc package): each key's history of revisions, the store's
 * current and compact revisions, reads at any retained revision, and compaction.
 *
 * Revisions are etcd's: the empty store is at revision 1; each write that changes something takes
 * the next revision, however many keys it changes (a txn, a range delete, a lease revoke), and each
 * change within it takes the next sub-revision, which orders its watch events. A key's history is
 * an array, oldest first, of puts and tombstones; reading key k at revision r is a binary search
 * for k's last change at or before r (usually the last element: checked first).
 *
 * Writes go through `begin` / `put` / `delete` / `end`: the caller (kv-state-machine.ts) checks
 * that a command can succeed before it begins, so a write never stops half-way. Reads with
 * `LATEST` during a write see the write's own changes, as etcd's txn reads do.
 *
 * Revisions are numbers internally: safe to 2^53, a million writes a second for 285 years. The
 * store knows nothing of leases beyond the id a revision carries.
 */
import { KeyValue } from '../../gen/consulate/consensus/v1/kv';
import { Event, Event_EventType } from '../../gen/consulate/consensus/v1/watch';
import { KvError, invariant, kvErrors } from './errors';
import { KeyIndex } from './key-index';
import { KeyRange } from './key-range';

/** One change to a key: a put, or a delete (a tombstone: create revision, version and value zero). */
export interface KeyRevision {
  readonly modRevision: number;
  readonly subRevision: number;
  readonly createRevision: number;
  readonly version: number;
  readonly value: Buffer;
  readonly lease: bigint;
  readonly tombstone: boolean;
}

/** A key and its retained changes, oldest first, strictly increasing in mod revision. Never empty. */
export interface KeyHistory {
  readonly key: string;
  /** Replaced only by compaction, by a copy of the same bytes. */
  bytes: Buffer;
  revisions: KeyRevision[];
}

/** A key's change, with the key's live revision before it (none after a delete or at creation). */
export interface KeyChange {
  readonly history: KeyHistory;
  readonly next: KeyRevision;
  readonly previous: KeyRevision | undefined;
}

export interface RangeOptions {
  /** At most this many kvs; 0 or less for no limit. */
  readonly limit: number;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
}

export interface RangeResult {
  readonly kvs: KeyValue[];
  /** The keys in the range at the read revision, whatever the limit. */
  readonly count: number;
  readonly more: boolean;
}

/** Read at the newest revision, including an open write's changes. */
export const LATEST = Number.MAX_SAFE_INTEGER;

const EMPTY = Buffer.alloc(0);

export class RevisionStore {
  private readonly index = new KeyIndex<KeyHistory>();
  private current = 1;
  private compacted = 0;
  /** Every key's retained changes, summed: what compaction frees. */
  private retained = 0;
  /** The revision of the open write; 0 when none is open. */
  private writing = 0;
  private nextSub = 0;

  get currentRevision(): number {
    return this.current;
  }

  /** The last compacted revision: reads below it fail. 0 when never compacted. */
  get compactRevision(): number {
    return this.compacted;
  }

  /** Keys with a retained revision, deleted ones included. */
  get keyCount(): number {
    return this.index.size;
  }

  /** Changes retained, over every key (puts and tombstones): the history compaction frees. */
  get retainedRevisions(): number {
    return this.retained;
  }

  /** Why a read at `revision` (0 or less: the latest) cannot be answered; undefined when it can. */
  readError(revision: number): KvError | undefined {
    if (revision > this.current) return kvErrors.futureRevision(this.current);
    if (revision > 0 && revision < this.compacted) return kvErrors.compacted(this.compacted);
    return undefined;
  }

  /** The key's live revision as of `revision`, or undefined when it did not exist then. */
  get(key: string, revision: number = LATEST): KeyRevision | undefined {
    const history = this.index.get(key);
    return history === undefined ? undefined : liveAt(history, revision);
  }

  history(key: string): KeyHistory | undefined {
    return this.index.get(key);
  }

  /** The keys in `range` live as of `revision` (LATEST, or one `readError` accepts), in key order. */
  range(range: KeyRange, revision: number, options: RangeOptions): RangeResult {
    const kvs: KeyValue[] = [];
    let count = 0;
    const take = (history: KeyHistory): void => {
      const found = liveAt(history, revision);
      if (found === undefined) return;
      count++;
      if (!options.countOnly && (options.limit <= 0 || kvs.length < options.limit)) kvs.push(keyValueOf(history, found, options.keysOnly));
    };
    if (range.single) {
      const history = this.index.get(range.start);
      if (history !== undefined) take(history);
    } else {
      this.index.forEachInRange(range.start, range.end, take);
    }
    return { kvs, count, more: !options.countOnly && count > kvs.length };
  }

  /** The keys in `range` live now (including an open write's changes), in key order. */
  liveKeys(range: KeyRange): KeyHistory[] {
    const live: KeyHistory[] = [];
    const take = (history: KeyHistory): void => {
      if (!history.revisions[history.revisions.length - 1].tombstone) live.push(history);
    };
    if (range.single) {
      const history = this.index.get(range.start);
      if (history !== undefined) take(history);
    } else {
      this.index.forEachInRange(range.start, range.end, take);
    }
    return live;
  }

  /** Opens a write at the next revision; returns that revision. */
  begin(): number {
    invariant(this.writing === 0, () => `a write at revision ${this.writing} is already open`);
    this.writing = this.current + 1;
    this.nextSub = 0;
    return this.writing;
  }

  put(key: string, keyBytes: Uint8Array, value: Uint8Array, lease: bigint): KeyChange {
    invariant(this.writing !== 0, () => `put of ${JSON.stringify(key)} outside a write`);
    let history = this.index.get(key);
    if (history === undefined) {
      history = { key, bytes: Buffer.from(keyBytes), revisions: [] };
      this.index.insert(history);
    }
    const last = history.revisions[history.revisions.length - 1];
    invariant(last === undefined || last.modRevision < this.writing, () => `key ${JSON.stringify(key)} changed twice in revision ${this.writing}`);
    const previous = last === undefined || last.tombstone ? undefined : last;
    const next: KeyRevision = {
      modRevision: this.writing,
      subRevision: this.nextSub++,
      createRevision: previous === undefined ? this.writing : previous.createRevision,
      version: previous === undefined ? 1 : previous.version + 1,
      // The store owns its bytes: a caller's buffer may be reused after apply returns.
      value: Buffer.from(value),
      lease,
      tombstone: false,
    };
    history.revisions.push(next);
    this.retained++;
    return { history, next, previous };
  }

  /** Deletes a key that is live now. */
  delete(history: KeyHistory): KeyChange {
    invariant(this.writing !== 0, () => `delete of ${JSON.stringify(history.key)} outside a write`);
    const previous = history.revisions[history.revisions.length - 1];
    invariant(!previous.tombstone, () => `delete of ${JSON.stringify(history.key)}, which is not live`);
    invariant(previous.modRevision < this.writing, () => `key ${JSON.stringify(history.key)} changed twice in revision ${this.writing}`);
    const next: KeyRevision = {
      modRevision: this.writing,
      subRevision: this.nextSub++,
      createRevision: 0,
      version: 0,
      value: EMPTY,
      lease: 0n,
      tombstone: true,
    };
    history.revisions.push(next);
    this.retained++;
    return { history, next, previous };
  }

  /** Closes the open write; the store moves to its revision when it changed anything. */
  end(): boolean {
    invariant(this.writing === this.current + 1, () => `write at revision ${this.writing} closed at store revision ${this.current}`);
    const changed = this.nextSub > 0;
    if (changed) this.current = this.writing;
    this.writing = 0;
    return changed;
  }

  /**
   * Forgets the history at and before `revision` except each key's latest revision at it, when
   * that is a put (etcd's keyIndex.compact): reads at `revision` or later answer as before.
   * Returns how many changes it forgot. O(keys): compaction is rare, and etcd's walks every key too.
   *
   * What survives is copied out of Node's shared allocation pool: a small Buffer is a slice of an
   * 8 KiB slab, and one retained value keeps its whole slab (and every forgotten value in it)
   * alive. Each survivor is copied once; later compactions find it already alone.
   */
  compact(revision: number): number {
    invariant(this.writing === 0, () => 'compaction during a write');
    invariant(revision > this.compacted && revision <= this.current, () => `compaction to ${revision} with compact revision ${this.compacted} and current ${this.current}`);
    const survivors: KeyHistory[] = [];
    let dropped = 0;
    this.index.forEach((history) => {
      const at = lastAtOrBefore(history.revisions, revision);
      if (at >= 0) {
        const keepFrom = history.revisions[at].tombstone ? at + 1 : at;
        if (keepFrom > 0) {
          history.revisions = history.revisions.slice(keepFrom);
          dropped += keepFrom;
        }
        const oldest = history.revisions[0];
        if (oldest !== undefined && isPooled(oldest.value)) history.revisions[0] = Object.assign({}, oldest, { value: ownCopy(oldest.value) });
      }
      if (history.revisions.length === 0) return;
      if (isPooled(history.bytes)) history.bytes = ownCopy(history.bytes);
      survivors.push(history);
    });
    if (survivors.length !== this.index.size) this.index.reset(survivors);
    this.retained -= dropped;
    this.compacted = revision;
    return dropped;
  }

  /**
   * Every change to a key in `range` at `fromRevision` or later, in revision then sub-revision
   * order: a watcher's catch-up. O(keys in range + changes found).
   */
  changesSince(range: KeyRange, fromRevision: number): KeyChange[] {
    const changes: KeyChange[] = [];
    const collect = (history: KeyHistory): void => {
      const revisions = history.revisions;
      for (let i = lastAtOrBefore(revisions, fromRevision - 1) + 1; i < revisions.length; i++) {
        const before = i > 0 ? revisions[i - 1] : undefined;
        changes.push({ history, next: revisions[i], previous: before === undefined || before.tombstone ? undefined : before });
      }
    };
    if (range.single) {
      const history = this.index.get(range.start);
      if (history !== undefined) collect(history);
    } else {
      this.index.forEachInRange(range.start, range.end, collect);
    }
    return changes.sort((a, b) => a.next.modRevision - b.next.modRevision || a.next.subRevision - b.next.subRevision);
  }

  /** Every key's history, in key order. */
  forEachHistory(visit: (history: KeyHistory) => void): void {
    this.index.forEach(visit);
  }

  /** Replaces the whole store; snapshot.ts checks `histories` before it calls this. */
  load(histories: readonly KeyHistory[], currentRevision: number, compactRevision: number): void {
    invariant(this.writing === 0, () => 'restore during a write');
    invariant(currentRevision >= 1 && compactRevision >= 0 && compactRevision <= currentRevision, () => `restore to revision ${currentRevision} compacted at ${compactRevision}`);
    this.index.reset(histories);
    this.retained = histories.reduce((sum, history) => sum + history.revisions.length, 0);
    this.current = currentRevision;
    this.compacted = compactRevision;
  }
}

/** Whether `buffer` shares its ArrayBuffer (Node's pool slab, or a decoded message) with others. */
function isPooled(buffer: Buffer): boolean {
  return buffer.byteLength !== buffer.buffer.byteLength;
}

/** A copy in an ArrayBuffer of its own (Buffer.from and Buffer.copyBytesFrom use the pool). */
function ownCopy(buffer: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(buffer.byteLength);
  copy.set(buffer);
  return copy;
}

/** The key's live revision as of `revision`, or undefined. */
export function liveAt(history: KeyHistory, revision: number): KeyRevision | undefined {
  const revisions = history.revisions;
  const last = revisions[revisions.length - 1];
  const found = last.modRevision <= revision ? last : revisions[lastAtOrBefore(revisions, revision)];
  return found === undefined || found.tombstone ? undefined : found;
}

/** The position of the last revision at or before `revision`; -1 when there is none. */
function lastAtOrBefore(revisions: readonly KeyRevision[], revision: number): number {
  let lo = 0;
  let hi = revisions.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (revisions[mid].modRevision <= revision) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

export function keyValueOf(history: KeyHistory, revision: KeyRevision, keysOnly = false): KeyValue {
  return {
    key: history.bytes,
    createRevision: BigInt(revision.createRevision),
    modRevision: BigInt(revision.modRevision),
    version: BigInt(revision.version),
    value: keysOnly ? EMPTY : revision.value,
    lease: revision.lease,
  };
}

/** The watch event of a change; `prevKv` is the key's live value before it, when it had one. */
export function eventOf(change: KeyChange): Event {
  return {
    type: change.next.tombstone ? Event_EventType.EVENT_TYPE_DELETE : Event_EventType.EVENT_TYPE_PUT,
    kv: keyValueOf(change.history, change.next),
    prevKv: change.previous === undefined ? undefined : keyValueOf(change.history, change.previous),
  };
}
