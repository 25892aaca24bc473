/**
 * How a durable LogStore takes its calls, the same for every store that keeps snapshots as files:
 *
 * - One call at a time, in call order (a queue of promises).
 * - After a write fails the store refuses every later call (`StorageWriteError`): after a failed
 *   fsync the kernel may have dropped the dirty pages, so a retry could report durable what is not.
 * - `load` once, before anything else; a store that failed to load is closed.
 * - A snapshot's file is written outside the queue (saves go on meanwhile, for the 100 ms or more a
 *   large one takes), and only its commit takes a turn. One snapshot at a time; `close` waits for it.
 *   The newest two snapshot files are kept.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { invariant } from '../../lib/invariant';
import { Snapshot } from '../raft/types';
import { StorageWriteError } from './log-store';
import { SnapshotPointer } from './record-codec';
import { listSnapshotFiles, snapshotFileName, writeSnapshotFile } from './snapshot-file';

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class StoreCalls {
  private state: 'new' | 'loading' | 'open' | 'closed' = 'new';
  private failure: StorageWriteError | undefined;
  /** The tail of the call queue: every call starts after the previous one settled. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Snapshot files being written beside the queue: no cleanup removes them. */
  private readonly writing = new Set<string>();
  /** The snapshot being saved (its file, then its commit in turn). */
  private snapshotSaving: Promise<void> | undefined;

  constructor(
    private readonly dataDir: string,
    private readonly snapshotsDir: string,
    /** Releases what the store holds open (its files, its environment); called once, at close or after a failed load. */
    private readonly release: () => Promise<void>,
  ) {}

  async load<T>(loadFromDisk: () => Promise<T>): Promise<T> {
    invariant(this.state === 'new', () => `load() is called once, at start; the store in ${this.dataDir} is ${this.state}`);
    this.state = 'loading';
    return this.serialized('load', async () => {
      try {
        const loaded = await loadFromDisk();
        this.state = 'open';
        return loaded;
      } catch (error) {
        // A server that cannot load does not start; leave nothing open behind it.
        this.state = 'closed';
        await this.release();
        throw error;
      }
    });
  }

  /** A call that needs the store loaded: in turn, refused once a write has failed. */
  openCall<T>(call: string, operation: () => Promise<T>): Promise<T> {
    return this.serialized(call, () => {
      invariant(this.state === 'open', () => `${call}() on the log store in ${this.dataDir} while it is ${this.state}: call load() first`);
      return operation();
    });
  }

  /**
   * Saves a snapshot: `check` now, the file written beside the queue, then in turn `check` again
   * (the log may have moved meanwhile) and `commit`, which returns the snapshot the log continued
   * from before. The newest two snapshot files stay (the older one plus the log can still rebuild
   * the state if the newest goes bad), with any being written; older ones go.
   */
  saveSnapshot(snapshot: Snapshot, check: () => void, commit: (file: { name: string }) => Promise<SnapshotPointer | undefined>): Promise<void> {
    // Not open (closed, or not loaded yet) or failed: refused in turn, as every other call is.
    if (this.state !== 'open' || this.failure !== undefined) return this.openCall('saveSnapshot', async () => undefined);
    try {
      invariant(this.snapshotSaving === undefined, () => 'saveSnapshot() while another snapshot is being saved: one at a time');
      check();
    } catch (err) {
      return Promise.reject(err);
    }
    // No other write touches the file (its name is its term and index), and until its commit names
    // it, `load` deletes it as a stray.
    const name = snapshotFileName(snapshot.meta.term, snapshot.meta.index);
    this.writing.add(name);
    const saving = this.durably('write a snapshot file', () => writeSnapshotFile(this.snapshotsDir, snapshot)).then((file) =>
      this.openCall('saveSnapshot', async () => {
        check();
        const previous = await commit(file);
        const keep = new Set([file.name, ...this.writing]);
        if (previous !== undefined) keep.add(snapshotFileName(previous.term, previous.index));
        await this.durably('remove old snapshot files', () => removeSnapshotFilesExcept(this.snapshotsDir, keep));
      }),
    );
    this.snapshotSaving = saving.finally(() => {
      this.writing.delete(name);
      this.snapshotSaving = undefined;
    });
    return this.snapshotSaving;
  }

  close(): Promise<void> {
    // A snapshot whose file is being written commits (or fails) first: its commit is not queued yet.
    return (this.snapshotSaving ?? Promise.resolve()).catch(() => undefined).then(() => {
      const closing = this.queue.then(async () => {
        if (this.state === 'closed') return;
        this.state = 'closed';
        await this.release();
      });
      this.queue = closing.catch(() => undefined);
      return closing;
    });
  }

  /** Runs a write; if it fails, the store is failed for good. */
  async durably<T>(what: string, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      this.failure = new StorageWriteError(
        `could not ${what} in ${this.dataDir}: ${messageOf(error)}; stop this server and check the disk ` +
          `(a failed write is not retried: the kernel may have dropped the unsynced pages)`,
        error,
      );
      throw this.failure;
    }
  }

  private serialized<T>(call: string, operation: () => Promise<T>): Promise<T> {
    const run = (): Promise<T> => {
      if (this.failure !== undefined) return Promise.reject(this.failure);
      if (this.state === 'closed') return Promise.reject(new Error(`${call}() on the closed log store in ${this.dataDir}`));
      return operation();
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

/** Removes every snapshot file in `snapshotsDir` not named in `keep`. */
async function removeSnapshotFilesExcept(snapshotsDir: string, keep: ReadonlySet<string>): Promise<void> {
  const listing = await listSnapshotFiles(snapshotsDir);
  for (const file of listing.snapshots) {
    if (!keep.has(file.name)) await fs.rm(path.join(snapshotsDir, file.name), { force: true });
  }
}
