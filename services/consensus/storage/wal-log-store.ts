/**
 * The LogStore of a real server, kept the way etcd's wal package and hashicorp/raft-wal keep a Raft
 * log: append-only segment files, one frame per save, one fdatasync per save.
 *
 *   <dataDir>/wal/<seq>.wal        segments (seq as 16 hex digits), frames as in wal-record.ts
 *   <dataDir>/snapshots/*.snap     the newest two snapshots (snapshot-file.ts), as LmdbLogStore
 *
 * Why not lmdb. A Raft write costs its number of syncs. lmdb commits with two (the data pages,
 * then the meta page), 0.33 ms or more here against 0.13 ms for one fdatasync of a write into
 * space the file already has. So a segment's space is written with zeros ahead of the frames
 * (`allocateBytes` at a time): the fdatasync after a frame then has no file size or block map to
 * update, only the data (ext4; etcd preallocates its segments for the same reason). Once a frame
 * would take a segment past `segmentBytes`, the next segment begins (written as `.tmp`, synced,
 * renamed, directory synced), with a header frame holding the state the log had at that point.
 *
 * Durability. `save` is one frame: entries and hard state together. It resolves after the frame
 * and its fdatasync, so after a crash a save is all there or (torn) not at all. `commitMode`
 * 'sync' writes and syncs on the main thread (0.13 ms blocked per save here); 'async' on libuv's
 * pool, through a descriptor opened O_DSYNC (one job writes and syncs), the event loop free
 * meanwhile and a thread hand-off each way slower. A save asked `offThread` (a leader's, written
 * while it goes on serving) takes the pool whatever the mode.
 *
 * Replay. `load` reads every segment from the oldest: the first header sets the state, every later
 * header must agree with the state replay reached (an assertion on the files), and frames apply in
 * order: a batch overwrites the log from its first index (a follower's conflicting suffix, §5.3),
 * a snapshot frame moves the pointer (and, from the leader, empties the log). Every frame carries a
 * CRC-32C over its segment's number and body. A bad frame at the end of the newest segment with
 * only zeros after it (or with its length field still zero) and no good frame after it is a torn
 * write (wal-record.ts `scanSegment`): zeroed, with a warning, never acknowledged; its bytes are
 * kept beside the segment (`<seq>.wal.torn-<offset>`) for a post-mortem. Any other bad
 * frame, a missing segment or a header that disagrees is a `StorageCorruptionError`: the server
 * does not start rather than serve or vote from a damaged log. What load read is synced before it
 * returns (a process killed between a write and its sync leaves it in the page cache only).
 *
 * A batch may overwrite entries below the oldest segment's start (uncommitted entries a new leader
 * replaced, §5.3, once the segments holding them are gone): the stored log then starts at it.
 *
 * Snapshots. As in LmdbLogStore the file is written durably first, outside the queue; the snapshot
 * frame is the commit point; the log keeps its entries back to the previous snapshot, so the older
 * file plus the log still rebuild the state if the newest file goes bad. A segment is removed once
 * every entry it holds is at or below the previous snapshot: the next segment's header then starts
 * replay. A snapshot from the leader replaces the log, so a new segment begins at it and every
 * older one goes.
 *
 * Calls run one at a time in call order. After a write fails the store refuses every later call
 * (`StorageWriteError`): the server must stop.
 */
import { constants as fsConstants, fdatasyncSync, promises as fs, writeSync } from 'node:fs';
import * as path from 'node:path';

import { invariant } from '../../lib/invariant';
import { EMPTY_HARD_STATE, Entry, HardState, Snapshot } from '../raft/types';
import { fsyncDirectory, makeDirectoryDurably, writeFileDurably } from './durable-fs';
import { LogStore, SaveBatch, SaveOptions, SaveSnapshotOptions, StorageCorruptionError, StoredState } from './log-store';
import { SnapshotPointer } from './record-codec';
import { CORRUPT_SUFFIX, chooseSnapshot } from './snapshot-choice';
import { StoreCalls } from './store-calls';
import { FRAME_HEADER_BYTES, SegmentStart, WAL_FORMAT_VERSION, WalRecord, encodeBatch, encodeHeader, encodeSnapshotRecord, frame, scanSegment } from './wal-record';
import { StorageLimits, StoredLogView, checkSaveBatch, checkSnapshot, withDefaultLimits } from './write-checks';

export interface WalLogStoreConfig {
  /** The directory this server's Raft state lives in (the role's `-data-dir`/raft); created if missing. */
  readonly dataDir: string;
  /** Overrides of `DEFAULT_STORAGE_LIMITS` (write-checks.ts). */
  readonly limits?: Partial<StorageLimits>;
  /** Where a save writes and syncs, durable either way before it resolves: 'sync' (default) on the main thread, 'async' on libuv's pool. */
  readonly commitMode?: 'async' | 'sync';
  /** A segment ends once a frame would take it past this size (a larger frame gets a segment of its own). Default 64 MiB. */
  readonly segmentBytes?: number;
  /** Zeros written ahead of the frames, this many bytes at a time. Default 1 MiB. */
  readonly allocateBytes?: number;
}

const MiB = 1024 * 1024;
const SEGMENT_PATTERN = /^([0-9a-f]{16})\.wal$/;
const TEMPORARY_SUFFIX = '.tmp';

export function segmentFileName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`;
}

/** Where the bytes of a torn write are kept once load has zeroed them in the segment (load ignores the file). */
export function tornFileName(seq: number, offset: number): string {
  return `${segmentFileName(seq)}.torn-${offset}`;
}

interface Segment {
  readonly seq: number;
  /** The log's last index when the segment began: every entry above it was written in this segment or a later one. */
  readonly lastStoredAtStart: number;
}

/** The newest segment as load found it: where frames go next, and a torn write to zero first. */
interface SegmentTail {
  readonly seq: number;
  readonly end: number;
  readonly headerEnd: number;
  readonly size: number;
  /** A torn write to zero first: where it starts and ends, and its bytes (kept aside for a post-mortem). */
  readonly torn?: { readonly offset: number; readonly dirtyEnd: number; readonly bytes: Buffer };
}

/** The log as replay rebuilds it, segment by segment. */
interface Replay {
  hardState: HardState;
  pointer: SnapshotPointer | undefined;
  /** Entries from `from` to `lastStored`; those below `from` are gone with older segments. */
  entries: Entry[];
  from: number;
  /** The term of entry `from - 1` (the snapshot's, or the last one before the oldest segment). */
  fromTerm: number;
  lastStored: number;
  lastStoredTerm: number;
}

function samePointer(a: SnapshotPointer | undefined, b: SnapshotPointer | undefined): boolean {
  return a?.index === b?.index && a?.term === b?.term;
}

export class WalLogStore implements LogStore {
  readonly dataDir: string;
  private readonly walDir: string;
  private readonly snapshotsDir: string;
  private readonly limits: StorageLimits;
  private readonly commitMode: 'async' | 'sync';
  private readonly segmentBytes: number;
  private readonly zeros: Buffer;

  private readonly calls: StoreCalls;

  // The segment frames are appended to.
  private segments: Segment[] = [];
  private handle: fs.FileHandle | undefined;
  /**
   * The same segment opened O_DSYNC, for saves made off the main thread: a write through it is on
   * disk when it returns, so a frame is one job on libuv's pool (write and sync together) instead of
   * two, and the main thread never writes to the file: behind a slow disk even a buffered write
   * may wait (for the file system's journal, for writeback), and a leader's loop must not.
   */
  private syncingHandle: fs.FileHandle | undefined;
  /** Where the next frame goes; `headerEnd` is where the current segment's first frame after its header would. */
  private offset = 0;
  private headerEnd = 0;
  /** The file's zero-filled size: frames below it overwrite zeros. */
  private allocated = 0;

  // The stored state, mirrored in memory: the hard state, the pointer, and the terms of the stored
  // entries [termsFrom, lastStored] (the log above the snapshot and back to the previous one).
  private hardState: HardState = EMPTY_HARD_STATE;
  private pointer: SnapshotPointer | undefined;
  private terms: number[] = [];
  private termsFrom = 1;
  private lastStored = 0;
  private lastStoredTerm = 0;

  constructor(config: WalLogStoreConfig) {
    if (typeof config.dataDir !== 'string' || config.dataDir === '') {
      throw new Error("WalLogStore: dataDir is required: the directory for this server's Raft log");
    }
    if (config.commitMode !== undefined && config.commitMode !== 'async' && config.commitMode !== 'sync') {
      throw new Error(`WalLogStore: commitMode must be 'async' or 'sync', got ${String(config.commitMode)}`);
    }
    const segmentBytes = config.segmentBytes ?? 64 * MiB;
    const allocateBytes = config.allocateBytes ?? MiB;
    if (!Number.isSafeInteger(segmentBytes) || !Number.isSafeInteger(allocateBytes) || allocateBytes < 512 || segmentBytes < allocateBytes) {
      throw new Error(`WalLogStore: allocateBytes (${allocateBytes}) must be at least 512 and segmentBytes (${segmentBytes}) at least allocateBytes`);
    }
    this.dataDir = path.resolve(config.dataDir);
    this.walDir = path.join(this.dataDir, 'wal');
    this.snapshotsDir = path.join(this.dataDir, 'snapshots');
    this.limits = withDefaultLimits(config.limits);
    this.commitMode = config.commitMode ?? 'sync';
    this.segmentBytes = segmentBytes;
    this.zeros = Buffer.alloc(allocateBytes);
    this.calls = new StoreCalls(this.dataDir, this.snapshotsDir, () => this.closeSegment());
  }

  load(): Promise<StoredState> {
    return this.calls.load(() => this.loadFromDisk());
  }

  save(batch: SaveBatch, options?: SaveOptions): Promise<void> {
    return this.calls.openCall('save', async () => {
      checkSaveBatch(this.view(), batch, this.limits);
      const { entries, hardState } = batch;
      if (entries.length === 0 && hardState === undefined) return;
      await this.append(encodeBatch(hardState, entries), options?.offThread === true ? 'async' : this.commitMode);

      if (entries.length > 0) {
        const first = entries[0].index;
        this.terms.length = first - this.termsFrom;
        for (const entry of entries) this.terms.push(entry.term);
        const last = entries[entries.length - 1];
        this.lastStored = last.index;
        this.lastStoredTerm = last.term;
      }
      if (hardState !== undefined) this.hardState = { ...hardState };
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

  /** The commit point of a snapshot whose file is written: its frame, then what it lets go. */
  private async commitSnapshot(snapshot: Snapshot, options: SaveSnapshotOptions): Promise<SnapshotPointer | undefined> {
    const { index, term } = snapshot.meta;
    const previous = this.pointer;
    await this.append(encodeSnapshotRecord(options.keepSuffix ? 'keep' : 'replace', { index, term }));

    this.pointer = { index, term };
    if (options.keepSuffix) {
      // The log keeps its entries back to the previous snapshot, so either snapshot can start the server.
      const keepFrom = Math.max(this.termsFrom, (previous?.index ?? 0) + 1);
      this.terms.splice(0, keepFrom - this.termsFrom);
      this.termsFrom = keepFrom;
    } else {
      // Nothing stored: the log is the snapshot.
      this.terms = [];
      this.termsFrom = index + 1;
      this.lastStored = index;
      this.lastStoredTerm = term;
    }
    this.assertShape();
    if (options.keepSuffix) {
      // Segments whose every entry is at or below the previous snapshot hold nothing kept.
      let kept = this.segments.length - 1;
      while (kept > 0 && this.segments[kept].lastStoredAtStart > (previous?.index ?? 0)) kept--;
      await this.removeSegmentsBefore(kept);
    } else {
      await this.beginSegment();
      await this.removeSegmentsBefore(this.segments.length - 1);
    }
    return previous;
  }

  // ---- loading ---------------------------------------------------------------------------------

  private async loadFromDisk(): Promise<StoredState> {
    const warnings: string[] = [];
    await makeDirectoryDurably(this.walDir);
    await makeDirectoryDurably(this.snapshotsDir);

    const names = await fs.readdir(this.walDir);
    for (const name of names.filter((n) => n.endsWith(TEMPORARY_SUFFIX))) {
      await fs.rm(path.join(this.walDir, name), { force: true });
      warnings.push(`removed ${name} from ${this.walDir}: a segment that was being created when the server stopped`);
    }
    const seqs = names
      .map((name) => SEGMENT_PATTERN.exec(name))
      .filter((match) => match !== null)
      .map((match) => parseInt(match[1], 16))
      .sort((a, b) => a - b);
    seqs.forEach((seq, i) => {
      if (i > 0 && seq !== seqs[i - 1] + 1) {
        throw StorageCorruptionError.record(this.dataDir, 'write-ahead log', `segment ${segmentFileName(seqs[i - 1] + 1)} is missing between ${segmentFileName(seqs[i - 1])} and ${segmentFileName(seq)}`);
      }
    });

    const replay: Replay = { hardState: EMPTY_HARD_STATE, pointer: undefined, entries: [], from: 1, fromTerm: 0, lastStored: 0, lastStoredTerm: 0 };
    let tail: SegmentTail | undefined;
    for (const [i, seq] of seqs.entries()) {
      const name = segmentFileName(seq);
      const bytes = await fs.readFile(path.join(this.walDir, name));
      const scan = scanSegment(seq, bytes);
      const isLast = i === seqs.length - 1;
      if (scan.bad !== undefined && !(isLast && scan.bad.torn)) {
        throw StorageCorruptionError.record(this.dataDir, `write-ahead log segment ${name}`, `bad frame at byte ${scan.bad.offset}: ${scan.bad.problem}`);
      }
      const [header, ...records] = scan.records;
      this.startReplay(name, seq, header, replay, i === 0);
      for (const record of records) this.replayRecord(name, record, replay);
      this.segments.push({ seq, lastStoredAtStart: header.kind === 'header' ? header.lastStored : 0 });
      if (isLast) {
        const torn = scan.bad && { offset: scan.bad.offset, dirtyEnd: scan.bad.dirtyEnd, bytes: bytes.subarray(scan.bad.offset, scan.bad.dirtyEnd) };
        tail = { seq, end: scan.end, headerEnd: scan.headerEnd, size: bytes.byteLength, torn };
      }
      if (scan.bad !== undefined) {
        warnings.push(
          `removed a torn write at the end of the write-ahead log in ${this.walDir} (segment ${name}, byte ${scan.bad.offset}: ${scan.bad.problem}): ` +
            `it was never acknowledged; the leader sends its entries again if they were committed; its bytes are kept in ${tornFileName(seq, scan.bad.offset)}`,
        );
      }
    }

    const inWindow = (index: number) => index >= replay.from && index <= replay.lastStored;
    const chosen = await chooseSnapshot({
      dataDir: this.dataDir,
      snapshotsDir: this.snapshotsDir,
      pointer: replay.pointer,
      storedTermAt: (index) => (inWindow(index) ? replay.entries[index - replay.from].term : undefined),
      maxSnapshotBytes: this.limits.maxSnapshotBytes,
      warnings,
    });
    const base = { index: chosen.snapshot?.meta.index ?? 0, term: chosen.snapshot?.meta.term ?? 0 };
    if (replay.lastStored < base.index) {
      throw StorageCorruptionError.record(this.dataDir, 'write-ahead log', `the log ends at ${replay.lastStored}, before the snapshot at ${base.index}`);
    }
    if (replay.lastStored > base.index && !inWindow(base.index + 1)) {
      throw StorageCorruptionError.entry(this.dataDir, base.index + 1, `missing: the stored log resumes at ${replay.from} after the snapshot at ${base.index}`);
    }
    const entries = replay.entries.slice(Math.max(0, base.index + 1 - replay.from));
    if (entries.length > 0 && entries[0].term < base.term) {
      throw StorageCorruptionError.entry(this.dataDir, entries[0].index, `term ${entries[0].term} is older than the snapshot's term ${base.term}`);
    }
    if (replay.hardState.commit > replay.lastStored) {
      throw StorageCorruptionError.record(
        this.dataDir,
        'hard state',
        `commit index ${replay.hardState.commit} is past the last log index ${replay.lastStored}: committed entries are missing`,
      );
    }

    this.hardState = replay.hardState;
    // The pointer the segments hold until the fallback's frame is durable: a segment begun for
    // that frame must start from the state replay reaches.
    this.pointer = replay.pointer;
    this.termsFrom = Math.max(replay.from, base.index + 1);
    this.terms = entries.map((entry) => entry.term);
    this.lastStored = replay.lastStored;
    this.lastStoredTerm = replay.lastStoredTerm;

    if (tail === undefined) {
      await this.beginSegment();
    } else {
      await this.openSegment(tail);
    }
    // Repairs: the pointer after a fallback (a frame: the log records its own history), then the bad file's name.
    if (chosen.fellBack) {
      const pointer = chosen.snapshot === undefined ? undefined : base;
      await this.append(encodeSnapshotRecord(pointer === undefined ? 'none' : 'keep', pointer));
      this.pointer = pointer;
    }
    if (chosen.corruptFile !== undefined) {
      await fs.rename(path.join(this.snapshotsDir, chosen.corruptFile), path.join(this.snapshotsDir, chosen.corruptFile + CORRUPT_SUFFIX));
      await fsyncDirectory(this.snapshotsDir);
    }
    this.assertShape();
    return { hardState: { ...this.hardState }, snapshot: chosen.snapshot, entries, warnings };
  }

  /** A segment's first frame: its header, which starts the replay or must agree with it. */
  private startReplay(name: string, seq: number, header: WalRecord | undefined, replay: Replay, first: boolean): void {
    const corrupt = (problem: string) => StorageCorruptionError.record(this.dataDir, `write-ahead log segment ${name}`, problem);
    if (header?.kind !== 'header') throw corrupt('it does not begin with a segment header');
    if (header.version !== WAL_FORMAT_VERSION) {
      throw new Error(`the Raft log in ${this.dataDir} has write-ahead log format ${header.version}; this build reads format ${WAL_FORMAT_VERSION}: run the version that wrote it`);
    }
    if (header.seq !== seq) throw corrupt(`its header names segment ${header.seq}`);
    if (first) {
      replay.hardState = header.hardState;
      replay.pointer = header.pointer;
      replay.entries = [];
      replay.from = header.lastStored + 1;
      replay.fromTerm = header.lastStoredTerm;
      replay.lastStored = header.lastStored;
      replay.lastStoredTerm = header.lastStoredTerm;
      return;
    }
    const agrees =
      header.lastStored === replay.lastStored &&
      header.lastStoredTerm === replay.lastStoredTerm &&
      samePointer(header.pointer, replay.pointer) &&
      header.hardState.term === replay.hardState.term &&
      header.hardState.vote === replay.hardState.vote &&
      header.hardState.commit === replay.hardState.commit;
    if (!agrees) {
      const state = (at: { lastStored: number; lastStoredTerm: number; hardState: HardState; pointer: SnapshotPointer | undefined }) =>
        `log index ${at.lastStored} (term ${at.lastStoredTerm}), hard state ${JSON.stringify(at.hardState)}, snapshot ${at.pointer === undefined ? 'none' : `${at.pointer.index} (term ${at.pointer.term})`}`;
      throw corrupt(`it begins at ${state(header)}, where the segments before it end at ${state(replay)}`);
    }
  }

  private replayRecord(name: string, record: WalRecord, replay: Replay): void {
    const corrupt = (problem: string) => StorageCorruptionError.record(this.dataDir, `write-ahead log segment ${name}`, problem);
    switch (record.kind) {
      case 'header':
        throw corrupt('a segment header in the middle of the segment');
      case 'batch': {
        const { entries } = record;
        if (entries.length > 0) {
          const first = entries[0].index;
          if (first > replay.lastStored + 1) throw StorageCorruptionError.entry(this.dataDir, replay.lastStored + 1, `missing: the log jumps from ${replay.lastStored} to ${first}`);
          if (first <= (replay.pointer?.index ?? 0)) throw corrupt(`a batch rewrites entry ${first}, inside the snapshot at ${replay.pointer?.index}`);
          entries.forEach((entry, i) => {
            if (i > 0 && entry.index !== entries[i - 1].index + 1) throw corrupt(`a batch jumps from entry ${entries[i - 1].index} to ${entry.index}`);
            if (entry.term <= 0) throw StorageCorruptionError.entry(this.dataDir, entry.index, `entry has term ${entry.term}`);
          });
          if (first < replay.from) {
            // It overwrites entries the removed segments held (uncommitted ones a new leader
            // replaced, §5.3): the stored log now starts at it, the term before it unknown.
            replay.entries = [];
            replay.from = first;
            replay.fromTerm = 0;
          }
          const termBefore = first > replay.from ? replay.entries[first - 1 - replay.from].term : replay.fromTerm;
          if (entries[0].term < termBefore) {
            throw StorageCorruptionError.entry(this.dataDir, first, `term ${entries[0].term} after term ${termBefore}: terms never decrease along a log`);
          }
          replay.entries.length = first - replay.from;
          replay.entries.push(...entries);
          const last = entries[entries.length - 1];
          replay.lastStored = last.index;
          replay.lastStoredTerm = last.term;
        }
        if (record.hardState !== undefined) replay.hardState = record.hardState;
        return;
      }
      case 'snapshot':
        replay.pointer = record.pointer;
        if (record.mode === 'replace') {
          const { index, term } = record.pointer!;
          replay.entries = [];
          replay.from = index + 1;
          replay.fromTerm = term;
          replay.lastStored = index;
          replay.lastStoredTerm = term;
        }
        return;
    }
  }

  // ---- segments --------------------------------------------------------------------------------

  /** Opens the newest segment to append after its last good frame, zeroing a torn write first. */
  private async openSegment(tail: SegmentTail): Promise<void> {
    const file = this.segmentPath(tail.seq);
    this.handle = await fs.open(file, 'r+');
    this.offset = tail.end;
    this.headerEnd = tail.headerEnd;
    this.allocated = tail.size;
    if (tail.torn !== undefined) {
      const { offset, dirtyEnd, bytes } = tail.torn;
      await writeFileDurably(this.walDir, tornFileName(tail.seq, offset), [bytes]);
      await this.handle.write(Buffer.alloc(dirtyEnd - offset), 0, dirtyEnd - offset, offset);
    }
    // What load read may still be only in the page cache (a process killed between a frame's write
    // and its sync): it is on disk before the server acts on it.
    await this.handle.datasync();
  }

  /**
   * Begins the next segment with a header of the state now: written as `.tmp` with its first zeros,
   * synced, renamed, the directory synced; then appends go there.
   */
  private async beginSegment(): Promise<void> {
    const seq = (this.segments.at(-1)?.seq ?? 0) + 1;
    const start: SegmentStart = { seq, hardState: this.hardState, pointer: this.pointer, lastStored: this.lastStored, lastStoredTerm: this.lastStoredTerm };
    const header = frame(seq, encodeHeader(start));
    const file = this.segmentPath(seq);
    await this.calls.durably('begin a write-ahead log segment', async () => {
      const handle = await fs.open(file + TEMPORARY_SUFFIX, 'w');
      try {
        await handle.write(this.zeros, 0, this.zeros.byteLength, 0);
        await handle.write(header, 0, header.byteLength, 0);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await fs.rename(file + TEMPORARY_SUFFIX, file);
      await fsyncDirectory(this.walDir);
      await this.closeSegment();
      this.handle = await fs.open(file, 'r+');
    });
    this.segments.push({ seq, lastStoredAtStart: this.lastStored });
    this.offset = this.headerEnd = header.byteLength;
    this.allocated = Math.max(this.zeros.byteLength, header.byteLength);
  }

  /** Removes the segments before `segments[keep]`, oldest first, so a crash leaves a contiguous run. */
  private async removeSegmentsBefore(keep: number): Promise<void> {
    if (keep <= 0) return;
    const gone = this.segments.slice(0, keep);
    await this.calls.durably('remove old write-ahead log segments', async () => {
      for (const segment of gone) {
        await fs.rm(this.segmentPath(segment.seq), { force: true });
        await fsyncDirectory(this.walDir);
      }
    });
    this.segments = this.segments.slice(keep);
  }

  private segmentPath(seq: number): string {
    return path.join(this.walDir, segmentFileName(seq));
  }

  private async closeSegment(): Promise<void> {
    const handles = [this.handle, this.syncingHandle];
    this.handle = this.syncingHandle = undefined;
    for (const handle of handles) if (handle !== undefined) await handle.close();
  }

  /** One frame, durable before this resolves: in the current segment, or a new one if it would overflow. */
  private async append(body: Buffer, mode: 'sync' | 'async' = this.commitMode): Promise<void> {
    if (this.offset + FRAME_HEADER_BYTES + body.byteLength > this.segmentBytes && this.offset > this.headerEnd) await this.beginSegment();
    const framed = frame(this.segments.at(-1)!.seq, body);
    const at = this.offset;
    await this.calls.durably('append to the write-ahead log', async () => {
      if (mode === 'sync') {
        this.allocateSync(at + framed.byteLength);
        writeFullySync(this.handle!.fd, framed, at);
        fdatasyncSync(this.handle!.fd);
      } else {
        const handle = (this.syncingHandle ??= await fs.open(this.segmentPath(this.segments.at(-1)!.seq), fsConstants.O_WRONLY | fsConstants.O_DSYNC));
        await this.allocateAsync(handle, at + framed.byteLength);
        await writeFully(handle, framed, at);
      }
    });
    this.offset = at + framed.byteLength;
  }

  /** Zeros from the allocated end up to past `end`, so the frame's sync has no size to update but this once. */
  private allocateSync(end: number): void {
    while (this.allocated < end) {
      writeFullySync(this.handle!.fd, this.zeros, this.allocated);
      this.allocated += this.zeros.byteLength;
    }
  }

  private async allocateAsync(handle: fs.FileHandle, end: number): Promise<void> {
    while (this.allocated < end) {
      await writeFully(handle, this.zeros, this.allocated);
      this.allocated += this.zeros.byteLength;
    }
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
        invariant(index >= this.termsFrom && index <= this.lastStored, () => `entry ${index} is outside the stored log [${this.termsFrom}, ${this.lastStored}]`);
        return this.terms[index - this.termsFrom];
      },
    };
  }

  /** The mirror is one log: the terms run to the last stored index, and the snapshot sits inside or right below them. */
  private assertShape(): void {
    const snapshotIndex = this.pointer?.index ?? 0;
    invariant(this.termsFrom + this.terms.length - 1 === this.lastStored, () => `stored terms [${this.termsFrom}, +${this.terms.length}) do not end at the last stored index ${this.lastStored}`);
    invariant(
      this.termsFrom <= snapshotIndex + 1 && snapshotIndex <= this.lastStored,
      () => `stored log [${this.termsFrom}, ${this.lastStored}] does not continue the snapshot at ${snapshotIndex}`,
    );
    invariant(this.lastStored === snapshotIndex || this.terms.at(-1) === this.lastStoredTerm, () => `the last stored term ${this.lastStoredTerm} is not entry ${this.lastStored}'s`);
  }
}

function writeFullySync(fd: number, bytes: Buffer, position: number): void {
  for (let written = 0; written < bytes.byteLength; ) {
    written += writeSync(fd, bytes, written, bytes.byteLength - written, position + written);
  }
}

async function writeFully(handle: fs.FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let written = 0; written < bytes.byteLength; ) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written, position + written);
    written += bytesWritten;
  }
}
