/**
 * A LogStore in memory, for unit tests of the node shell and for the simulator: the same contract
 * and the same checks (`write-checks.ts`) as `LmdbLogStore`, no disk.
 *
 * Its "disk" is a `MemoryDisk` object that outlives the store: `crash()` stops this store and
 * returns a new one over the same disk, as a restarted process would open the same directory. It
 * loses nothing: a write is "fsynced" the moment its call is made, so whatever was saved, even
 * with the promise not yet resolved, is there after the crash. That is the behaviour of a disk
 * that keeps its promises; torn writes and lost unsynced bytes belong to a fault-injecting store,
 * not to this one.
 */
import { invariant } from '../../lib/invariant';
import { EMPTY_HARD_STATE, Entry, HardState, Snapshot } from '../raft/types';
import { LogStore, SaveBatch, SaveSnapshotOptions, StoredState } from './log-store';
import { StorageLimits, StoredLogView, checkSaveBatch, checkSnapshot, withDefaultLimits } from './write-checks';

/** What survives a crash. */
export interface MemoryDisk {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  /** Contiguous, from snapshot index + 1. */
  entries: Entry[];
}

export function emptyMemoryDisk(): MemoryDisk {
  return { hardState: EMPTY_HARD_STATE, snapshot: undefined, entries: [] };
}

/** A copy the caller cannot change behind the store's back, as bytes on a disk would be. */
function copyEntry(entry: Entry): Entry {
  return entry.kind === 'normal' ? { ...entry, data: entry.data.slice() } : { ...entry };
}

function copySnapshot(snapshot: Snapshot): Snapshot {
  return { meta: { ...snapshot.meta, members: snapshot.meta.members.map((m) => ({ ...m })) }, data: snapshot.data.slice() };
}

export class MemoryLogStore implements LogStore {
  private readonly limits: StorageLimits;
  private state: 'new' | 'open' | 'closed' | 'crashed' = 'new';

  constructor(
    /** Pass the disk of a crashed store to reopen it; a new, empty one by default. */
    readonly disk: MemoryDisk = emptyMemoryDisk(),
    limits?: Partial<StorageLimits>,
  ) {
    this.limits = withDefaultLimits(limits);
  }

  async load(): Promise<StoredState> {
    invariant(this.state === 'new', () => `load() is called once, at start; this store is ${this.state}`);
    this.state = 'open';
    return {
      hardState: { ...this.disk.hardState },
      snapshot: this.disk.snapshot === undefined ? undefined : copySnapshot(this.disk.snapshot),
      entries: this.disk.entries.map(copyEntry),
      warnings: [],
    };
  }

  async save(batch: SaveBatch): Promise<void> {
    this.assertOpen('save');
    checkSaveBatch(this.view(), batch, this.limits);
    const disk = this.disk;
    if (batch.entries.length > 0) {
      const keep = batch.entries[0].index - this.snapshotIndex() - 1;
      disk.entries = disk.entries.slice(0, keep).concat(batch.entries.map(copyEntry));
    }
    if (batch.hardState !== undefined) disk.hardState = { ...batch.hardState };
  }

  async saveSnapshot(snapshot: Snapshot, options: SaveSnapshotOptions): Promise<void> {
    this.assertOpen('saveSnapshot');
    checkSnapshot(this.view(), snapshot, options.keepSuffix, this.limits);
    const disk = this.disk;
    disk.entries = options.keepSuffix ? disk.entries.filter((entry) => entry.index > snapshot.meta.index) : [];
    disk.snapshot = copySnapshot(snapshot);
  }

  async close(): Promise<void> {
    if (this.state !== 'crashed') this.state = 'closed';
  }

  /**
   * The process dies: this store refuses every later call, and the returned store, over the same
   * disk, is the restarted process's (call its `load()`). Nothing saved is lost (see the header).
   */
  crash(): MemoryLogStore {
    this.state = 'crashed';
    return new MemoryLogStore(this.disk, this.limits);
  }

  private assertOpen(call: string): void {
    invariant(this.state === 'open', () => `${call}() on a store that is ${this.state}${this.state === 'new' ? ': call load() first' : ''}`);
  }

  private snapshotIndex(): number {
    return this.disk.snapshot?.meta.index ?? 0;
  }

  private view(): StoredLogView {
    const disk = this.disk;
    const snapshotIndex = this.snapshotIndex();
    const snapshotTerm = disk.snapshot?.meta.term ?? 0;
    return {
      hardState: disk.hardState,
      snapshotIndex,
      snapshotTerm,
      lastIndex: snapshotIndex + disk.entries.length,
      termAt: (index) => (index === snapshotIndex ? snapshotTerm : disk.entries[index - snapshotIndex - 1].term),
    };
  }
}
