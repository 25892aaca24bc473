/**
 * The LogStore of a real server: the Raft log and hard state in an lmdb environment, snapshots as
 * files beside it.
 *
 *   <dataDir>/log/data.mdb        lmdb: sub-database "entries" (8-byte big-endian index → record)
 *                                 and "meta" (format marker, hard state, snapshot pointer)
 *   <dataDir>/snapshots/*.snap    the newest two snapshots (snapshot-file.ts)
 *
 * Durability. Every `save` is one lmdb write transaction with lmdb's synchronous commit (no
 * `noSync`, no `noMetaSync`, no `overlappingSync`): the promise resolves after lmdb has
 * fdatasync'ed the data pages and written its meta page through an O_DSYNC descriptor. Entries and
 * hard state go in the same transaction, never one each: the lesson hashicorp/raft-wal drew from
 * BoltDB is that the price of a Raft write is its number of syncs. lmdb's two-step commit (data,
 * then meta page) is its floor; no store here adds to it. The transaction runs on lmdb's write
 * thread (`commitMode: 'async'`, the default), so the event loop keeps serving while the disk
 * syncs; `'sync'` commits on the main thread, a little faster per save and blocking (see README
 * for the measurements).
 *
 * Calls run one at a time in call order. After a write fails the store refuses every later call
 * (`StorageWriteError`): the server must stop.
 *
 * Snapshots. `saveSnapshot` writes the file durably first, then commits, in one transaction, the
 * snapshot pointer (meta "snapshot": which snapshot the log continues from) and the removal of the
 * entries it covers. The pointer is the commit point: a crash before it leaves the old state and a
 * stray file, which `load` deletes. The log keeps its entries back to the previous snapshot (a
 * local snapshot drops only what the previous one covers), so if the newest snapshot file goes bad
 * the older one plus the log still rebuild the state; `load` hides those entries otherwise.
 *
 * Verification (reliability.md R7). `load` checks every record's CRC-32C. A bad last entry above the
 * commit index is a torn tail: removed, with a warning. Any other bad entry, a gap, a bad hard state
 * or pointer, or a bad newest snapshot without a usable older one is a `StorageCorruptionError`:
 * the server does not start rather than serve or vote from a damaged log.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { Database, RootDatabase, open } from 'lmdb';

import { invariant } from '../../lib/invariant';
import { EMPTY_HARD_STATE, Entry, HardState, Snapshot } from '../raft/types';
import { fsyncDirectory, makeDirectoryDurably } from './durable-fs';
import { LogStore, SaveBatch, SaveOptions, SaveSnapshotOptions, StorageCorruptionError, StoredState } from './log-store';
import {
  STORAGE_FORMAT_VERSION,
  SnapshotPointer,
  decodeEntryRecord,
  decodeFormatRecord,
  decodeHardStateRecord,
  decodeSnapshotPointer,
  encodeEntryRecord,
  encodeFormatRecord,
  encodeHardStateRecord,
  encodeSnapshotPointer,
  entryKey,
  indexOfKey,
} from './record-codec';
import { CORRUPT_SUFFIX, chooseSnapshot } from './snapshot-choice';
import { StoreCalls } from './store-calls';
import { StorageLimits, StoredLogView, checkSaveBatch, checkSnapshot, withDefaultLimits } from './write-checks';

export interface LmdbLogStoreConfig {
  /** The directory this server's Raft state lives in (the role's `-data-dir`/raft); created if missing. */
  readonly dataDir: string;
  /** Overrides of `DEFAULT_STORAGE_LIMITS` (write-checks.ts). */
  readonly limits?: Partial<StorageLimits>;
  /**
   * How a transaction commits, durable either way before the promise resolves. 'async' (default):
   * on lmdb's write thread, the event loop free during the sync. 'sync': on the main thread.
   */
  readonly commitMode?: 'async' | 'sync';
}

const META_FORMAT = 'format';
const META_HARD_STATE = 'hardState';
const META_SNAPSHOT = 'snapshot';

/** One stored entry as `load` found it. */
type GoodRecord = { readonly index: number; readonly entry: Entry };
type BadRecord = { readonly index: number; readonly problem: string };
type ScannedRecord = GoodRecord | BadRecord;

function isGood(record: ScannedRecord): record is GoodRecord {
  return 'entry' in record;
}

/** The writes of one transaction. */
interface WriteSet {
  putEntry(key: Buffer, value: Buffer): void;
  removeEntry(key: Buffer): void;
  putMeta(key: string, value: Buffer): void;
  removeMeta(key: string): void;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class LmdbLogStore implements LogStore {
  readonly dataDir: string;
  private readonly logDir: string;
  private readonly snapshotsDir: string;
  private readonly limits: StorageLimits;
  private readonly commitMode: 'async' | 'sync';

  private readonly calls: StoreCalls;

  private env: RootDatabase | undefined;
  private entriesDb: Database<Buffer, Buffer> | undefined;
  private metaDb: Database<Buffer, string> | undefined;

  // The stored state, mirrored in memory. Physically the log holds [firstStored, lastStored]
  // (empty when lastStored < firstStored); the part above the snapshot is the Raft log.
  private hardState: HardState = EMPTY_HARD_STATE;
  private pointer: SnapshotPointer | undefined;
  private firstStored = 1;
  private lastStored = 0;
  private lastStoredTerm = 0;

  constructor(config: LmdbLogStoreConfig) {
    if (typeof config.dataDir !== 'string' || config.dataDir === '') {
      throw new Error('LmdbLogStore: dataDir is required: the directory for this server\'s Raft log');
    }
    if (config.commitMode !== undefined && config.commitMode !== 'async' && config.commitMode !== 'sync') {
      throw new Error(`LmdbLogStore: commitMode must be 'async' or 'sync', got ${String(config.commitMode)}`);
    }
    this.dataDir = path.resolve(config.dataDir);
    this.logDir = path.join(this.dataDir, 'log');
    this.snapshotsDir = path.join(this.dataDir, 'snapshots');
    this.limits = withDefaultLimits(config.limits);
    this.commitMode = config.commitMode ?? 'async';
    this.calls = new StoreCalls(this.dataDir, this.snapshotsDir, async () => {
      const env = this.env;
      this.env = this.entriesDb = this.metaDb = undefined;
      if (env !== undefined) await env.close();
    });
  }

  load(): Promise<StoredState> {
    return this.calls.load(() => this.loadFromDisk());
  }

  save(batch: SaveBatch, options?: SaveOptions): Promise<void> {
    return this.calls.openCall('save', async () => {
      checkSaveBatch(this.view(), batch, this.limits);
      const records = batch.entries.map(encodeEntryRecord);
      const hardStateRecord = batch.hardState === undefined ? undefined : encodeHardStateRecord(batch.hardState);
      if (records.length === 0 && hardStateRecord === undefined) return;

      const last = batch.entries[batch.entries.length - 1];
      // Keys the batch puts are overwritten in place; a conflicting suffix past it goes.
      const removeFrom = last === undefined ? Infinity : last.index + 1;
      const removeThrough = this.lastStored;
      await this.commit(options?.offThread === true ? 'async' : this.commitMode, (txn) => {
        for (let index = removeFrom; index <= removeThrough; index++) txn.removeEntry(entryKey(index));
        for (const record of records) txn.putEntry(record.key, record.value);
        if (hardStateRecord !== undefined) txn.putMeta(META_HARD_STATE, hardStateRecord);
      });

      if (last !== undefined) {
        this.lastStored = last.index;
        this.lastStoredTerm = last.term;
      }
      if (batch.hardState !== undefined) this.hardState = { ...batch.hardState };
      this.assertShape();
    });
  }

  saveSnapshot(snapshot: Snapshot, options: SaveSnapshotOptions): Promise<void> {
    return this.calls.saveSnapshot(
      snapshot,
      () => checkSnapshot(this.view(), snapshot, options.keepSuffix, this.limits),
      () => this.commitSnapshot(snapshot, options),
    );
  }

  close(): Promise<void> {
    return this.calls.close();
  }

  /** The commit point of a snapshot whose file is written: its pointer, and the entries it covers gone. */
  private async commitSnapshot(snapshot: Snapshot, options: SaveSnapshotOptions): Promise<SnapshotPointer | undefined> {
    const { index, term } = snapshot.meta;
    const previous = this.pointer;

    // A local snapshot keeps the entries after the previous one, so either can start the server;
    // one from the leader replaces the log.
    const dropThrough = options.keepSuffix ? (previous?.index ?? 0) : this.lastStored;
    const dropFrom = this.firstStored;
    const pointerRecord = encodeSnapshotPointer({ index, term });
    await this.commit(this.commitMode, (txn) => {
      for (let i = dropFrom; i <= dropThrough; i++) txn.removeEntry(entryKey(i));
      txn.putMeta(META_SNAPSHOT, pointerRecord);
    });

    this.pointer = { index, term };
    if (options.keepSuffix) {
      this.firstStored = Math.max(this.firstStored, dropThrough + 1);
    } else {
      // Nothing stored: the log is the snapshot.
      this.firstStored = index + 1;
      this.lastStored = index;
      this.lastStoredTerm = term;
    }
    this.assertShape();
    return previous;
  }

  // ---- loading ---------------------------------------------------------------------------------

  private async loadFromDisk(): Promise<StoredState> {
    const warnings: string[] = [];
    await makeDirectoryDurably(this.logDir);
    await makeDirectoryDurably(this.snapshotsDir);
    this.openEnvironment();
    await fsyncDirectory(this.logDir); // lmdb's data.mdb and lock.mdb, if it just created them

    const scanned = this.scanEntries();
    const meta = this.readMeta(scanned.length > 0);
    if (meta.fresh) await this.commit(this.commitMode, (txn) => txn.putMeta(META_FORMAT, encodeFormatRecord(STORAGE_FORMAT_VERSION)));
    const hardState = meta.hardState;

    const byIndex = new Map(scanned.map((record) => [record.index, record]));
    const chosen = await chooseSnapshot({
      dataDir: this.dataDir,
      snapshotsDir: this.snapshotsDir,
      pointer: meta.pointer,
      storedTermAt: (index) => {
        const record = byIndex.get(index);
        return record !== undefined && isGood(record) ? record.entry.term : undefined;
      },
      maxSnapshotBytes: this.limits.maxSnapshotBytes,
      warnings,
    });
    const base = { index: chosen.snapshot?.meta.index ?? 0, term: chosen.snapshot?.meta.term ?? 0 };

    // Entries the snapshot covers are only a spare for an older snapshot. A bad one is dropped,
    // with everything below it, so the stored range stays contiguous.
    let dropBelow = 0;
    for (const record of scanned) {
      if (record.index <= base.index && !isGood(record)) dropBelow = record.index;
    }
    if (dropBelow > 0) {
      warnings.push(`dropped stored entries up to ${dropBelow} in ${this.dataDir}: entry ${dropBelow} is corrupt, and the snapshot at ${base.index} covers it`);
    }
    const lastScanned = scanned.length > 0 ? scanned[scanned.length - 1].index : 0;
    if (lastScanned < base.index && lastScanned > dropBelow) {
      // Entries that stop short of the snapshot continue nothing.
      dropBelow = lastScanned;
      warnings.push(`dropped stored entries up to ${dropBelow} in ${this.dataDir}: they end before the snapshot at ${base.index}`);
    }

    // Above the snapshot every entry must be good, except a torn last one that was never committed.
    const live = scanned.filter((record) => record.index > base.index);
    let tornTail: number | undefined;
    live.forEach((record, i) => {
      if (isGood(record)) return;
      const isLast = i === live.length - 1;
      if (!isLast) throw StorageCorruptionError.entry(this.dataDir, record.index, record.problem);
      if (record.index <= hardState.commit) {
        throw StorageCorruptionError.entry(this.dataDir, record.index, `${record.problem}; the entry is committed (commit index ${hardState.commit})`);
      }
      tornTail = record.index;
      warnings.push(
        `removed the torn last entry ${record.index} of the log in ${this.dataDir} (${record.problem}): ` +
          `it was not committed here; the leader sends it again if it was`,
      );
    });
    const entries = live.filter(isGood).map((record) => record.entry);

    if (entries.length > 0) {
      if (entries[0].index !== base.index + 1) {
        throw StorageCorruptionError.entry(this.dataDir, base.index + 1, `missing: the log resumes at ${entries[0].index} after the snapshot at ${base.index}`);
      }
      if (entries[0].term < base.term) {
        throw StorageCorruptionError.entry(this.dataDir, entries[0].index, `term ${entries[0].term} is older than the snapshot's term ${base.term}`);
      }
    }
    const lastIndex = entries.length > 0 ? entries[entries.length - 1].index : base.index;
    if (hardState.commit > lastIndex) {
      throw StorageCorruptionError.record(
        this.dataDir,
        'hard state',
        `commit index ${hardState.commit} is past the last log index ${lastIndex}: committed entries are missing`,
      );
    }

    // Repairs, in one transaction: the torn tail, the bad spare entries, the pointer after a fallback.
    const removals = scanned.filter((r) => r.index <= dropBelow || r.index === tornTail).map((r) => r.index);
    const pointerChanged = chosen.fellBack;
    if (removals.length > 0 || pointerChanged) {
      await this.commit(this.commitMode, (txn) => {
        for (const index of removals) txn.removeEntry(entryKey(index));
        if (pointerChanged) {
          if (chosen.snapshot === undefined) txn.removeMeta(META_SNAPSHOT);
          else txn.putMeta(META_SNAPSHOT, encodeSnapshotPointer({ index: base.index, term: base.term }));
        }
      });
    }
    // Renamed only once the pointer has moved off it, so a load that stops leaves the two agreeing.
    if (chosen.corruptFile !== undefined) {
      await fs.rename(path.join(this.snapshotsDir, chosen.corruptFile), path.join(this.snapshotsDir, chosen.corruptFile + CORRUPT_SUFFIX));
      await fsyncDirectory(this.snapshotsDir);
    }

    const remaining = scanned.filter((r) => r.index > dropBelow && r.index !== tornTail);
    this.hardState = hardState;
    this.pointer = chosen.snapshot === undefined ? undefined : base;
    const lastRemaining = remaining[remaining.length - 1];
    if (lastRemaining === undefined) {
      this.firstStored = base.index + 1;
      this.lastStored = base.index;
      this.lastStoredTerm = base.term;
    } else {
      invariant(isGood(lastRemaining), () => `stored entry ${lastRemaining.index} left in place although corrupt`);
      this.firstStored = remaining[0].index;
      this.lastStored = lastRemaining.index;
      this.lastStoredTerm = lastRemaining.entry.term;
    }
    invariant(this.lastStored === lastIndex, () => `load: last stored ${this.lastStored}, last index ${lastIndex}`);
    this.assertShape();
    return { hardState: { ...hardState }, snapshot: chosen.snapshot, entries, warnings };
  }

  private openEnvironment(): void {
    try {
      // Durable commits: these are lmdb's defaults on Linux except overlappingSync, which would
      // resolve a commit before its sync (README "Overlapping Sync Options").
      this.env = open({ path: this.logDir, maxDbs: 4, noSync: false, noMetaSync: false, overlappingSync: false, encoding: 'binary' });
      this.entriesDb = this.env.openDB<Buffer, Buffer>({ name: 'entries', keyEncoding: 'binary', encoding: 'binary' });
      this.metaDb = this.env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' });
    } catch (error) {
      throw new Error(`cannot open the Raft log in ${this.logDir}: ${messageOf(error)}`, { cause: error });
    }
  }

  /** Every stored entry in index order, each verified; a gap or a foreign key stops the load. */
  private scanEntries(): ScannedRecord[] {
    const scanned: ScannedRecord[] = [];
    let previousTerm = 0;
    for (const { key, value } of this.entriesDb!.getRange({})) {
      const index = indexOfKey(key);
      if (index === undefined) {
        throw StorageCorruptionError.record(this.dataDir, 'log', `a key of ${key.byteLength} bytes that is not an entry index`);
      }
      const previous = scanned[scanned.length - 1];
      if (previous !== undefined && index !== previous.index + 1) {
        throw StorageCorruptionError.entry(this.dataDir, previous.index + 1, `missing: the log jumps from ${previous.index} to ${index}`);
      }
      const verified = decodeEntryRecord(key, value);
      if (verified.ok) {
        if (verified.value.term < previousTerm) {
          throw StorageCorruptionError.entry(this.dataDir, index, `term ${verified.value.term} after term ${previousTerm}: terms never decrease along a log`);
        }
        previousTerm = verified.value.term;
        scanned.push({ index, entry: verified.value });
      } else {
        scanned.push({ index, problem: verified.problem });
      }
    }
    return scanned;
  }

  private readMeta(hasEntries: boolean): { fresh: boolean; hardState: HardState; pointer: SnapshotPointer | undefined } {
    const metaDb = this.metaDb!;
    const format = metaDb.getBinary(META_FORMAT);
    const hardStateBytes = metaDb.getBinary(META_HARD_STATE);
    const pointerBytes = metaDb.getBinary(META_SNAPSHOT);
    if (format === undefined) {
      if (hasEntries || hardStateBytes !== undefined || pointerBytes !== undefined) {
        throw StorageCorruptionError.record(this.dataDir, 'format marker', 'missing from a log that holds data');
      }
      return { fresh: true, hardState: EMPTY_HARD_STATE, pointer: undefined };
    }
    const version = decodeFormatRecord(format);
    if (!version.ok) throw StorageCorruptionError.record(this.dataDir, 'format marker', version.problem);
    if (version.value !== STORAGE_FORMAT_VERSION) {
      throw new Error(
        `the Raft log in ${this.dataDir} has storage format ${version.value}; this build reads format ${STORAGE_FORMAT_VERSION}: run the version that wrote it`,
      );
    }
    let hardState = EMPTY_HARD_STATE;
    if (hardStateBytes !== undefined) {
      const decoded = decodeHardStateRecord(hardStateBytes);
      if (!decoded.ok) throw StorageCorruptionError.record(this.dataDir, 'hard state (term, vote, commit)', decoded.problem);
      hardState = decoded.value;
    }
    let pointer: SnapshotPointer | undefined;
    if (pointerBytes !== undefined) {
      const decoded = decodeSnapshotPointer(pointerBytes);
      if (!decoded.ok) throw StorageCorruptionError.record(this.dataDir, 'snapshot pointer', decoded.problem);
      pointer = decoded.value;
    }
    return { fresh: false, hardState, pointer };
  }

  // ---- plumbing --------------------------------------------------------------------------------

  private view(): StoredLogView {
    const snapshotIndex = this.pointer?.index ?? 0;
    const snapshotTerm = this.pointer?.term ?? 0;
    return {
      hardState: this.hardState,
      snapshotIndex,
      snapshotTerm,
      lastIndex: this.lastStored,
      termAt: (index) => {
        if (index === snapshotIndex) return snapshotTerm;
        if (index === this.lastStored) return this.lastStoredTerm;
        return this.readEntry(index).term;
      },
    };
  }

  /**
   * The mirror matches the disk: the stored keys run from firstStored to lastStored (read back from
   * lmdb, two cursor steps), and the snapshot sits inside or right below them.
   */
  private assertShape(): void {
    const snapshotIndex = this.pointer?.index ?? 0;
    invariant(
      this.firstStored <= snapshotIndex + 1 && snapshotIndex <= this.lastStored,
      () => `stored log [${this.firstStored}, ${this.lastStored}] does not continue the snapshot at ${snapshotIndex}`,
    );
    const entriesDb = this.entriesDb!;
    const [first] = entriesDb.getKeys({ limit: 1 });
    const [last] = entriesDb.getKeys({ limit: 1, reverse: true });
    const empty = this.lastStored < this.firstStored;
    invariant(
      empty ? first === undefined : first !== undefined && indexOfKey(first) === this.firstStored && last !== undefined && indexOfKey(last) === this.lastStored,
      () => `stored keys run ${first === undefined ? 'nowhere' : `from ${indexOfKey(first)} to ${last === undefined ? '?' : indexOfKey(last)}`}, the store expects [${this.firstStored}, ${this.lastStored}]`,
    );
  }

  private readEntry(index: number): Entry {
    invariant(index >= this.firstStored && index <= this.lastStored, () => `entry ${index} is outside the stored log [${this.firstStored}, ${this.lastStored}]`);
    const key = entryKey(index);
    const value = this.entriesDb!.getBinary(key);
    if (value === undefined) throw StorageCorruptionError.entry(this.dataDir, index, 'missing');
    const verified = decodeEntryRecord(key, value);
    if (!verified.ok) throw StorageCorruptionError.entry(this.dataDir, index, verified.problem);
    return verified.value;
  }

  /**
   * One durable lmdb write transaction. 'async': `batch` queues the puts and removes for lmdb's write
   * thread, which applies them in one transaction and commits (no callback back to the main
   * thread); 'sync': `transactionSync` does it all here. Either way the promise resolves after the
   * synced commit.
   */
  private commit(mode: 'async' | 'sync', writes: (txn: WriteSet) => void): Promise<void> {
    const entriesDb = this.entriesDb!;
    const metaDb = this.metaDb!;
    const env = this.env!;
    return this.calls.durably('commit to the Raft log', async () => {
      if (mode === 'sync') {
        env.transactionSync(() =>
          writes({
            putEntry: (key, value) => entriesDb.putSync(key, value),
            removeEntry: (key) => void entriesDb.removeSync(key),
            putMeta: (key, value) => metaDb.putSync(key, value),
            removeMeta: (key) => void metaDb.removeSync(key),
          }),
        );
      } else {
        // Inside a batch the single operations return no promises of their own; the batch's covers them.
        await env.batch(() =>
          writes({
            putEntry: (key, value) => void entriesDb.put(key, value),
            removeEntry: (key) => void entriesDb.remove(key),
            putMeta: (key, value) => void metaDb.put(key, value),
            removeMeta: (key) => void metaDb.remove(key),
          }),
        );
      }
    });
  }

}
