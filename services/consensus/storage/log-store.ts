/**
 * What the Raft node shell needs from durable storage, and how storage fails. The shell is the
 * consumer, so the interface lives with the storage it describes only because several
 * implementations share it: `MemoryLogStore` (unit tests of the shell, the simulator), and for
 * servers `WalLogStore` (the default) and `LmdbLogStore` (`-raft-log-store=lmdb`).
 *
 * Raft's rule (§5.1, Figure 2): a server persists its term, its vote and its log entries before it
 * answers an RPC that depends on them. So every write here resolves only once it is on disk, and a
 * write is all or nothing: after a crash either the whole batch is there or none of it is.
 *
 * Order the shell follows with one Ready (as etcd's server does): `saveSnapshot` first, then
 * `save` with the entries and the hard state, then send messages; only then `advance()`.
 */
import { Entry, HardState, Snapshot } from '../raft/types';

export interface StoredState {
  hardState: HardState;
  /** The newest snapshot that verifies; `undefined` before the first one. */
  snapshot: Snapshot | undefined;
  /** Contiguous, all with index > snapshot index (from 1 without a snapshot). */
  entries: Entry[];
  /**
   * What load repaired or worked around, one sentence each (a torn last entry removed, an older
   * snapshot used): the shell logs them at warn level. Empty when the disk was clean.
   */
  warnings: string[];
}

export interface SaveBatch {
  hardState?: HardState;
  entries: readonly Entry[];
}

export interface SaveOptions {
  /**
   * Write and sync on libuv's pool, the event loop free meanwhile, whatever the store's commit
   * mode: a leader writing its log while it goes on serving (thesis §10.2.1).
   */
  readonly offThread?: boolean;
}

export interface SaveSnapshotOptions {
  /**
   * true for a snapshot of our own log (log compaction, §7): entries after it stay.
   * false for a snapshot received from the leader (InstallSnapshot): it replaces the whole log.
   */
  keepSuffix: boolean;
}

export interface LogStore {
  /** Reads and verifies everything stored; called once at start. */
  load(): Promise<StoredState>;
  /**
   * One durable batch, on disk (fsynced) before the promise resolves: first removes every stored
   * entry with index >= entries[0].index (a follower overwriting a conflicting suffix, §5.3), then
   * appends `entries` (contiguous), then sets the hard state if given. Either all of it is durable
   * or, after a crash, none of it.
   */
  save(batch: SaveBatch, options?: SaveOptions): Promise<void>;
  /**
   * Stores a snapshot durably; entries with index <= snapshot index are dropped; a stored suffix
   * after it is kept only when `keepSuffix` (a local snapshot of our own log), dropped otherwise (a
   * snapshot received from the leader replaces the log).
   */
  saveSnapshot(snapshot: Snapshot, options: SaveSnapshotOptions): Promise<void>;
  close(): Promise<void>;
}

/**
 * Something on disk failed its checksum or breaks the log's shape, and repairing it locally could
 * lose a committed entry. The server must not start: the message names the directory and the fix.
 */
export class StorageCorruptionError extends Error {
  override readonly name = 'StorageCorruptionError';
  constructor(
    message: string,
    /** The data directory holding the bad record. */
    readonly dataDir: string,
    /** The log index of the bad entry, when it is an entry. */
    readonly index?: number,
  ) {
    super(message);
  }

  /** A log entry that cannot be trusted, below the tail or already committed. */
  static entry(dataDir: string, index: number, problem: string): StorageCorruptionError {
    return new StorageCorruptionError(
      `this server's log is corrupt at index ${index} in ${dataDir} (${problem}): ` +
        `stop it, remove its data directory and let it rejoin from the leader's snapshot`,
      dataDir,
      index,
    );
  }

  /** A record that is not an entry: the hard state, the snapshot pointer, the format marker, a snapshot file. */
  static record(dataDir: string, what: string, problem: string): StorageCorruptionError {
    return new StorageCorruptionError(
      `this server's ${what} is corrupt in ${dataDir} (${problem}): ` +
        `stop it, remove its data directory and let it rejoin from the leader's snapshot`,
      dataDir,
    );
  }
}

/** A write over one of the limits in `StorageLimits`; nothing was written. */
export class StorageLimitError extends Error {
  override readonly name = 'StorageLimitError';
}

/**
 * A write reached the disk and failed (ENOSPC, EIO, a failed fsync). The store refuses every later
 * call: after a failed fsync the kernel may have dropped the dirty pages, so retrying could report
 * durable what is not (PostgreSQL's "fsyncgate", 2018). The server must stop and restart.
 */
export class StorageWriteError extends Error {
  override readonly name = 'StorageWriteError';
  constructor(
    message: string,
    override readonly cause: unknown,
  ) {
    super(message);
  }
}
