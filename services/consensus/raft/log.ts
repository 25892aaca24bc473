/**
 * The Raft log as the core sees it: the last snapshot's position, then the entries after it, in
 * memory. Which entries are durable (`stableIndex`), committed and applied is tracked here, with
 * the invariants of Figure 2 asserted on every change:
 *
 *   snapshotIndex <= applied <= commit <= lastIndex,   stableIndex <= writingIndex <= lastIndex,
 *   entries contiguous from snapshotIndex + 1, terms never decreasing along the log.
 *
 * Storage of the durable part is the shell's job (storage/); the core only says, through Ready,
 * which entries to write. A leader's write may still be in progress while the next Ready is cut
 * (thesis §10.2.1): `writingIndex` is how far entries were handed to storage, `stableIndex` how far
 * storage said they are on disk. On a follower, and on a leader whose shell waits, they are equal
 * after every Ready.
 */
import { invariant } from '../../lib/invariant';
import { Entry, Snapshot } from './types';

export class RaftLog {
  private entries: Entry[] = [];
  private snapIndex = 0;
  private snapTerm = 0;
  /** The newest snapshot this server has (taken locally or received), kept to send to laggards. */
  snapshot: Snapshot | undefined;
  /** Entries up to here are on disk. */
  stableIndex = 0;
  /** Entries up to here were handed to storage (in a Ready); those past stableIndex are being written. */
  writingIndex = 0;
  commit = 0;
  /** Entries up to here were handed to the state machine. */
  applied = 0;
  /** How many times a conflicting suffix was dropped; callers compare it to notice truncation. */
  truncations = 0;

  /** A log as loaded from storage at start: snapshot, entries after it (all durable), commit. */
  static restore(snapshot: Snapshot | undefined, entries: readonly Entry[], commit: number): RaftLog {
    const log = new RaftLog();
    if (snapshot !== undefined) {
      log.snapshot = snapshot;
      log.snapIndex = snapshot.meta.index;
      log.snapTerm = snapshot.meta.term;
    }
    log.entries = [...entries];
    log.stableIndex = log.lastIndex();
    log.writingIndex = log.stableIndex;
    log.applied = log.snapIndex;
    log.commit = Math.max(log.snapIndex, Math.min(commit, log.lastIndex()));
    log.checkShape();
    return log;
  }

  get snapshotIndex(): number {
    return this.snapIndex;
  }

  get snapshotTerm(): number {
    return this.snapTerm;
  }

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.snapIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.entries.length === 0 ? this.snapTerm : this.entries[this.entries.length - 1].term;
  }

  /** The term of entry `index`, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.snapIndex) return this.snapTerm;
    if (index < this.snapIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapIndex - 1].term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.snapIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapIndex - 1];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm() || (lastTerm === this.lastTerm() && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at most `maxCount` and about `maxBytes` (always at least one). */
  slice(lo: number, hi: number, maxCount = Infinity, maxBytes = Infinity): Entry[] {
    invariant(lo > this.snapIndex, () => `slice from ${lo} reaches into the snapshot (index ${this.snapIndex})`);
    invariant(hi <= this.lastIndex() + 1, () => `slice to ${hi} is past the last index ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let index = lo; index < hi && out.length < maxCount; index++) {
      const entry = this.entries[index - this.snapIndex - 1];
      bytes += entrySize(entry);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(entry);
    }
    return out;
  }

  /** The leader appends its own new entries. */
  append(entries: readonly Entry[]): void {
    for (const entry of entries) {
      invariant(entry.index === this.lastIndex() + 1, () => `appending index ${entry.index} after ${this.lastIndex()}`);
      invariant(entry.term >= this.lastTerm(), () => `appending term ${entry.term} after term ${this.lastTerm()}`);
      this.entries.push(entry);
    }
  }

  /**
   * A follower's side of AppendEntries (§5.3): if our entry at prevIndex has prevTerm, drop any
   * conflicting suffix, append what is new, and return the index of the last new entry.
   * Undefined when the log does not match at prevIndex.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    for (const entry of entries) {
      if (entry.index <= this.snapIndex) continue;
      const existing = this.term(entry.index);
      if (existing === entry.term) continue;
      if (existing !== undefined) this.truncateFrom(entry.index);
      this.append(entries.slice(entries.indexOf(entry)));
      break;
    }
    return lastNew;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (etcd's findConflictByTerm): where a
   * rejected append should be retried, skipping a whole term of conflicting entries at once.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.snapIndex; i--) {
      const t = this.term(i)!;
      if (t <= term) return { index: i, term: t };
    }
    return { index: this.snapIndex, term: this.snapTerm };
  }

  commitTo(index: number): void {
    if (index <= this.commit) return;
    invariant(index <= this.lastIndex(), () => `commit ${index} is past the last index ${this.lastIndex()}`);
    this.commit = index;
  }

  /**
   * Entries up to `index` with term `term` are on disk (after a Ready's save). A write that finishes
   * after its entries were replaced (a leader stepped down and a new leader's entries truncated
   * them) proves nothing about the ones now in the log: the term tells them apart.
   */
  stableTo(index: number, term: number): void {
    if (this.term(index) === term && index > this.stableIndex) {
      this.stableIndex = index;
      if (index > this.writingIndex) this.writingIndex = index;
    }
  }

  /** The entries from `entriesToWrite()` were handed to storage. */
  writingTo(index: number): void {
    invariant(index <= this.lastIndex(), () => `writing to ${index}, past the last index ${this.lastIndex()}`);
    if (index > this.writingIndex) this.writingIndex = index;
  }

  appliedTo(index: number): void {
    invariant(index <= this.commit, () => `applied ${index} past commit ${this.commit}`);
    invariant(index >= this.applied, () => `applied goes backwards: ${index} < ${this.applied}`);
    this.applied = index;
  }

  /** Entries neither on disk nor being written: the next Ready's. */
  entriesToWrite(): Entry[] {
    return this.writingIndex >= this.lastIndex() ? [] : this.entries.slice(this.writingIndex - this.snapIndex);
  }

  /** Committed entries not yet applied, at most `max`. */
  nextCommitted(max: number): Entry[] {
    const lo = Math.max(this.applied, this.snapIndex) + 1;
    const hi = Math.min(this.commit, lo + max - 1);
    return hi < lo ? [] : this.slice(lo, hi + 1);
  }

  /** A snapshot from the leader replaces the log (§7): everything up to it is covered. */
  restoreSnapshot(snapshot: Snapshot): void {
    invariant(snapshot.meta.index > this.commit, () => `restoring snapshot ${snapshot.meta.index} at or below commit ${this.commit}`);
    this.snapshot = snapshot;
    this.snapIndex = snapshot.meta.index;
    this.snapTerm = snapshot.meta.term;
    this.entries = [];
    this.commit = snapshot.meta.index;
    this.applied = snapshot.meta.index;
    this.stableIndex = snapshot.meta.index;
    this.writingIndex = snapshot.meta.index;
  }

  /** After a local snapshot at `snapshot.meta.index` (<= applied): drop the entries it covers. */
  compact(snapshot: Snapshot): void {
    const index = snapshot.meta.index;
    invariant(index <= this.applied, () => `compacting to ${index} beyond applied ${this.applied}`);
    // Entries still being written must stay: a crash before their fsync leaves only this copy.
    invariant(index <= this.stableIndex, () => `compacting to ${index} beyond what is on disk (${this.stableIndex})`);
    invariant(index > this.snapIndex, () => `compacting to ${index}, not past the snapshot at ${this.snapIndex}`);
    invariant(this.term(index) === snapshot.meta.term, () => `snapshot term ${snapshot.meta.term} differs from the log's ${this.term(index)} at ${index}`);
    this.entries = this.entries.slice(index - this.snapIndex);
    this.snapIndex = index;
    this.snapTerm = snapshot.meta.term;
    this.snapshot = snapshot;
  }

  private truncateFrom(index: number): void {
    invariant(index > this.commit, () => `truncating committed entries from ${index} (commit ${this.commit})`);
    this.entries = this.entries.slice(0, index - this.snapIndex - 1);
    if (this.stableIndex >= index) this.stableIndex = index - 1;
    if (this.writingIndex >= index) this.writingIndex = index - 1;
    this.truncations++;
  }

  private checkShape(): void {
    let previousTerm = this.snapTerm;
    this.entries.forEach((entry, i) => {
      invariant(entry.index === this.snapIndex + 1 + i, () => `log not contiguous at ${entry.index}`);
      invariant(entry.term >= previousTerm, () => `log term decreases at ${entry.index}`);
      previousTerm = entry.term;
    });
  }
}

/** About how many bytes an entry takes on the wire. */
export function entrySize(entry: Entry): number {
  return 24 + (entry.kind === 'normal' ? entry.data.length : entry.kind === 'config' ? 64 : 0);
}
