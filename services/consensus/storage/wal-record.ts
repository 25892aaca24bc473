/**
 * The records of `WalLogStore`'s segment files, byte for byte. A segment is a run of frames, then
 * zeros to its allocated end:
 *
 *   frame   [length u32][crc32c u32][body: length bytes]     crc over segment seq (u64) ++ body
 *
 * A zero length with a zero crc is where the written part ends. The crc covers the segment's
 * sequence number, so a frame copied into another segment (a misdirected write) fails it. Bodies,
 * each tagged by its first byte (all integers big-endian):
 *
 *   'H' header    [version u32][seq u64][lastStored u64][lastStoredTerm u64]
 *                 [hard state: u16 length, record][pointer: u16 length (0: none), record]
 *                 the first frame of every segment: the state the log had when the segment began,
 *                 so replay can start at any segment once the ones before it are gone
 *   'B' batch     [hard state: u16 length (0: none), record][count u32]([u32 length][proto Entry])*
 *                 one `save`: all of it or, torn, none of it
 *   'S' snapshot  [mode u8: 0 keep the log, 1 replace it, 2 no snapshot][pointer: u16 length, record]
 *                 the commit point of a snapshot (or of a fallback to an older one at load)
 *
 * The hard state and the snapshot pointer inside are record-codec.ts records, with their own crcs.
 * Writes are pair-asserted: a body is decoded back right after it is encoded and must read as meant.
 */
import { invariant } from '../../lib/invariant';
import { Entry, HardState } from '../raft/types';
import { crc32c } from './crc32c';
import { decodeEntry, encodeEntry } from './entry-codec';
import { SnapshotPointer, Verified, decodeHardStateRecord, decodeSnapshotPointer, encodeHardStateRecord, encodeSnapshotPointer } from './record-codec';

export const FRAME_HEADER_BYTES = 8;
/** The on-disk format of segments; a store refuses a directory written by a newer one. */
export const WAL_FORMAT_VERSION = 1;

/** Where the log stood when a segment began. */
export interface SegmentStart {
  readonly seq: number;
  readonly hardState: HardState;
  readonly pointer: SnapshotPointer | undefined;
  /** The log's last index (an entry's, or the snapshot's) and its term. */
  readonly lastStored: number;
  readonly lastStoredTerm: number;
}

export type SnapshotMode = 'keep' | 'replace' | 'none';

export type WalRecord =
  | ({ readonly kind: 'header'; readonly version: number } & SegmentStart)
  | { readonly kind: 'batch'; readonly hardState: HardState | undefined; readonly entries: Entry[] }
  | { readonly kind: 'snapshot'; readonly mode: SnapshotMode; readonly pointer: SnapshotPointer | undefined };

const MODES: readonly SnapshotMode[] = ['keep', 'replace', 'none'];

function seqSeed(seq: number): number {
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeBigUInt64BE(BigInt(seq));
  return crc32c(bytes);
}

/** A frame around `body`, ready to write into segment `seq`. */
export function frame(seq: number, body: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.byteLength);
  framed.writeUInt32BE(body.byteLength, 0);
  framed.writeUInt32BE(crc32c(body, seqSeed(seq)), 4);
  body.copy(framed, FRAME_HEADER_BYTES);
  return framed;
}

/** A growable big-endian writer for one body. */
class BodyWriter {
  private readonly parts: Buffer[] = [];

  u8(value: number): this {
    this.parts.push(Buffer.of(value));
    return this;
  }

  u32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value);
    this.parts.push(b);
    return this;
  }

  u64(value: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(value));
    this.parts.push(b);
    return this;
  }

  /** A u16-length-prefixed record; an absent one is length 0. */
  short(record: Uint8Array | undefined): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(record?.byteLength ?? 0);
    this.parts.push(b);
    if (record !== undefined) this.parts.push(Buffer.from(record.buffer, record.byteOffset, record.byteLength));
    return this;
  }

  long(bytes: Uint8Array): this {
    this.u32(bytes.byteLength);
    this.parts.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return this;
  }

  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads a body; any read past its end throws, which `decodeBody` reports as the problem. */
class BodyReader {
  private offset = 0;
  constructor(private readonly body: Buffer) {}

  u8(): number {
    return this.body.readUInt8(this.take(1));
  }

  u32(): number {
    return this.body.readUInt32BE(this.take(4));
  }

  u64(): number {
    const value = this.body.readBigUInt64BE(this.take(8));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`an integer past 2^53 at byte ${this.offset - 8}`);
    return Number(value);
  }

  short(): Buffer | undefined {
    const length = this.body.readUInt16BE(this.take(2));
    return length === 0 ? undefined : this.bytes(length);
  }

  long(): Buffer {
    return this.bytes(this.u32());
  }

  end(): void {
    if (this.offset !== this.body.byteLength) throw new Error(`${this.body.byteLength - this.offset} bytes after the record`);
  }

  private bytes(length: number): Buffer {
    const start = this.take(length);
    return this.body.subarray(start, start + length);
  }

  private take(length: number): number {
    const start = this.offset;
    if (start + length > this.body.byteLength) throw new Error(`the record ends at byte ${this.body.byteLength}, short of ${start + length}`);
    this.offset += length;
    return start;
  }
}

function opened<T>(what: string, verified: Verified<T>): T {
  if (!verified.ok) throw new Error(`${what}: ${verified.problem}`);
  return verified.value;
}

export function encodeHeader(start: SegmentStart): Buffer {
  const body = new BodyWriter()
    .u8(0x48) // 'H'
    .u32(WAL_FORMAT_VERSION)
    .u64(start.seq)
    .u64(start.lastStored)
    .u64(start.lastStoredTerm)
    .short(encodeHardStateRecord(start.hardState))
    .short(start.pointer === undefined ? undefined : encodeSnapshotPointer(start.pointer))
    .done();
  const back = decodeBody(body);
  invariant(back.ok && back.value.kind === 'header' && back.value.seq === start.seq && back.value.lastStored === start.lastStored, () => `segment header ${start.seq} does not read back as written`);
  return body;
}

export function encodeBatch(hardState: HardState | undefined, entries: readonly Entry[]): Buffer {
  const writer = new BodyWriter()
    .u8(0x42) // 'B'
    .short(hardState === undefined ? undefined : encodeHardStateRecord(hardState))
    .u32(entries.length);
  for (const entry of entries) writer.long(encodeEntry(entry));
  const body = writer.done();
  const back = decodeBody(body);
  invariant(
    back.ok &&
      back.value.kind === 'batch' &&
      back.value.entries.length === entries.length &&
      back.value.entries.every((e, i) => e.index === entries[i].index && e.term === entries[i].term && e.kind === entries[i].kind) &&
      (back.value.hardState === undefined) === (hardState === undefined),
    () => `a batch of ${entries.length} entries does not read back as written: ${back.ok ? 'different content' : back.problem}`,
  );
  return body;
}

export function encodeSnapshotRecord(mode: SnapshotMode, pointer: SnapshotPointer | undefined): Buffer {
  invariant((mode === 'none') === (pointer === undefined), () => `a snapshot record in mode ${mode} ${pointer === undefined ? 'without' : 'with'} a pointer`);
  const body = new BodyWriter()
    .u8(0x53) // 'S'
    .u8(MODES.indexOf(mode))
    .short(pointer === undefined ? undefined : encodeSnapshotPointer(pointer))
    .done();
  const back = decodeBody(body);
  invariant(back.ok && back.value.kind === 'snapshot' && back.value.mode === mode && back.value.pointer?.index === pointer?.index, () => 'a snapshot record does not read back as written');
  return body;
}

export function decodeBody(body: Buffer): Verified<WalRecord> {
  const reader = new BodyReader(body);
  try {
    const tag = reader.u8();
    let record: WalRecord;
    if (tag === 0x48) {
      const version = reader.u32();
      const seq = reader.u64();
      const lastStored = reader.u64();
      const lastStoredTerm = reader.u64();
      const hardStateBytes = reader.short();
      if (hardStateBytes === undefined) throw new Error('a header without a hard state');
      const pointerBytes = reader.short();
      record = {
        kind: 'header',
        version,
        seq,
        lastStored,
        lastStoredTerm,
        hardState: opened('hard state', decodeHardStateRecord(hardStateBytes)),
        pointer: pointerBytes === undefined ? undefined : opened('snapshot pointer', decodeSnapshotPointer(pointerBytes)),
      };
    } else if (tag === 0x42) {
      const hardStateBytes = reader.short();
      const count = reader.u32();
      const entries: Entry[] = [];
      for (let i = 0; i < count; i++) entries.push(decodeEntry(reader.long()));
      record = { kind: 'batch', hardState: hardStateBytes === undefined ? undefined : opened('hard state', decodeHardStateRecord(hardStateBytes)), entries };
    } else if (tag === 0x53) {
      const mode = MODES[reader.u8()];
      if (mode === undefined) throw new Error('an unknown snapshot mode');
      const pointerBytes = reader.short();
      const pointer = pointerBytes === undefined ? undefined : opened('snapshot pointer', decodeSnapshotPointer(pointerBytes));
      if ((mode === 'none') !== (pointer === undefined)) throw new Error(`snapshot mode ${mode} ${pointer === undefined ? 'without' : 'with'} a pointer`);
      record = { kind: 'snapshot', mode, pointer };
    } else {
      throw new Error(`unknown record tag 0x${tag.toString(16)}`);
    }
    reader.end();
    return { ok: true, value: record };
  } catch (error) {
    return { ok: false, problem: `the record does not decode: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** What a scan of one segment's bytes found. */
export interface SegmentScan {
  readonly records: WalRecord[];
  /** Where the good frames end: the next frame is written here. */
  readonly end: number;
  /** Where the first frame (the segment's header) ends; 0 when there is none. */
  readonly headerEnd: number;
  /**
   * The first bad frame, if any: where it starts, what is wrong, where the non-zero bytes from it
   * end, and whether it looks like the last write cut short by a crash (`torn`, see `scanSegment`).
   */
  readonly bad?: { readonly offset: number; readonly problem: string; readonly torn: boolean; readonly dirtyEnd: number };
}

const ZEROS = Buffer.alloc(64 * 1024);

/** The end of the last non-zero byte in bytes[from..], or `from` when all are zero. */
export function nonZeroEnd(bytes: Buffer, from: number): number {
  let end = from;
  for (let offset = from; offset < bytes.byteLength; offset += ZEROS.byteLength) {
    const chunk = bytes.subarray(offset, Math.min(bytes.byteLength, offset + ZEROS.byteLength));
    if (chunk.equals(ZEROS.subarray(0, chunk.byteLength))) continue;
    let last = chunk.byteLength - 1;
    while (chunk[last] === 0) last--;
    end = offset + last + 1;
  }
  return end;
}

/** How far past a bad frame `scanSegment` looks for a good one. */
const GOOD_FRAME_SEARCH_BYTES = 4 * 1024 * 1024;
const TAGS = new Set([0x48, 0x42, 0x53]);

/**
 * Whether a good frame starts anywhere in bytes(from, dirtyEnd), within the search window: one
 * whose length fits the file, whose body starts with a record tag, whose crc verifies and whose
 * body decodes.
 */
function goodFrameAfter(bytes: Buffer, seed: number, from: number, dirtyEnd: number): boolean {
  const last = Math.min(dirtyEnd, from + GOOD_FRAME_SEARCH_BYTES, bytes.byteLength - FRAME_HEADER_BYTES - 1);
  for (let at = from + 1; at <= last; at++) {
    const length = bytes.readUInt32BE(at);
    if (length === 0 || !TAGS.has(bytes[at + FRAME_HEADER_BYTES])) continue;
    const bodyEnd = at + FRAME_HEADER_BYTES + length;
    // A good frame's body ends within the written bytes, give or take trailing zeros of its own.
    if (bodyEnd > bytes.byteLength || bodyEnd > dirtyEnd + 64 * 1024) continue;
    const body = bytes.subarray(at + FRAME_HEADER_BYTES, bodyEnd);
    if (crc32c(body, seed) === bytes.readUInt32BE(at + 4) && decodeBody(body).ok) return true;
  }
  return false;
}

/** Disks write whole 512-byte sectors (4 KiB ones are whole 512-byte ones too). */
const SECTOR_BYTES = 512;

/**
 * Part of the length field at `offset` is in a sector that never reached the disk, so the length
 * read is not the one written: the field's bytes in its first sector are all zero (what comes
 * before them there was synced with earlier frames), or a sector boundary cuts the field and the
 * whole sector after it is zero (a frame over 64 KiB has nonzero high bytes before the boundary).
 */
function lengthFieldLost(bytes: Buffer, offset: number): boolean {
  if (offset + 4 > bytes.byteLength) return false;
  const boundary = (Math.floor(offset / SECTOR_BYTES) + 1) * SECTOR_BYTES;
  if (allZero(bytes, offset, Math.min(offset + 4, boundary))) return true;
  return boundary < offset + 4 && allZero(bytes, boundary, Math.min(boundary + SECTOR_BYTES, bytes.byteLength));
}

function allZero(bytes: Buffer, from: number, to: number): boolean {
  for (let at = from; at < to; at++) if (bytes[at] !== 0) return false;
  return true;
}

/**
 * Reads the frames of segment `seq` in order, stopping at the written end or the first bad frame.
 *
 * A bad frame is `torn` (the last write, cut short by a crash) when both hold:
 * - nothing is written past the bytes it claims, or its length field was lost (a sector holding
 *   part of it never reached the disk while later sectors of the frame did; a frame starts
 *   anywhere in a sector, so a boundary can cut the field: lengthFieldLost);
 * - no good frame follows it: each save is synced before the next is written, so a good frame
 *   after a bad one means the disk damaged an acknowledged write, not that a write was cut short.
 */
export function scanSegment(seq: number, bytes: Buffer): SegmentScan {
  const seed = seqSeed(seq);
  const records: WalRecord[] = [];
  let offset = 0;
  let headerEnd = 0;
  const stop = (problem: string, claimedEnd: number): SegmentScan => {
    const dirtyEnd = nonZeroEnd(bytes, offset);
    const lengthLost = lengthFieldLost(bytes, offset);
    const confined = lengthLost || dirtyEnd <= claimedEnd;
    const torn = confined && !goodFrameAfter(bytes, seed, offset, dirtyEnd);
    return { records, end: offset, headerEnd, bad: { offset, problem, torn, dirtyEnd } };
  };
  while (offset + FRAME_HEADER_BYTES <= bytes.byteLength) {
    const length = bytes.readUInt32BE(offset);
    const crc = bytes.readUInt32BE(offset + 4);
    if (length === 0 && crc === 0) {
      if (nonZeroEnd(bytes, offset) > offset) return stop('data after the end of the written frames', offset + FRAME_HEADER_BYTES);
      return { records, end: offset, headerEnd };
    }
    const bodyEnd = offset + FRAME_HEADER_BYTES + length;
    if (bodyEnd > bytes.byteLength) return stop(`a frame of ${length} bytes runs past the end of the file`, bytes.byteLength);
    const body = bytes.subarray(offset + FRAME_HEADER_BYTES, bodyEnd);
    const computed = crc32c(body, seed);
    if (computed !== crc) return stop(`checksum mismatch: stored 0x${crc.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')}`, bodyEnd);
    const decoded = decodeBody(body);
    if (!decoded.ok) return stop(decoded.problem, bodyEnd);
    records.push(decoded.value);
    if (records.length === 1) headerEnd = bodyEnd;
    offset = bodyEnd;
  }
  if (offset < bytes.byteLength && nonZeroEnd(bytes, offset) > offset) return stop('a frame cut short at the end of the file', bytes.byteLength);
  return { records, end: offset, headerEnd };
}
