/**
 * The records `LmdbLogStore` keeps, byte for byte, each with a CRC-32C written with it and checked
 * whenever it is read (Lessons → requirements 3: checksum every log and snapshot record):
 *
 *   entry key         index as 8 bytes, big-endian, so lmdb's byte order is log order
 *   entry value       [crc32c u32 BE][proto Entry]              crc over key ++ proto bytes
 *   hard state        [crc32c u32 BE]['H'][term u64][commit u64][vote UTF-8]
 *   snapshot pointer  [crc32c u32 BE]['S'][index u64][term u64]
 *   format marker     [crc32c u32 BE]['F'][version u32]
 *
 * (all integers big-endian; a meta record's crc covers everything after it). The entry's crc
 * covers its key, so a record written under the wrong key (a misdirected write) fails too; the
 * tag byte of meta records does the same between meta keys.
 *
 * Writes are pair-asserted (TigerBeetle): a record is decoded back right after it is encoded, and
 * must verify as what was meant, before it goes to disk.
 */
import { invariant } from '../../lib/invariant';
import { Entry, HardState } from '../raft/types';
import { crc32c } from './crc32c';
import { decodeEntry, encodeEntry } from './entry-codec';

/** A record read back: its value, or what is wrong with it. */
export type Verified<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

const CRC_BYTES = 4;
const KEY_BYTES = 8;

/** The on-disk format `LmdbLogStore` writes; a store refuses a directory written by a newer one. */
export const STORAGE_FORMAT_VERSION = 1;

export function entryKey(index: number): Buffer {
  const key = Buffer.alloc(KEY_BYTES);
  key.writeBigUInt64BE(BigInt(index));
  return key;
}

/** The index an entry key holds; `undefined` when the key is not one. */
export function indexOfKey(key: Uint8Array): number | undefined {
  if (key.byteLength !== KEY_BYTES) return undefined;
  const index = Buffer.from(key.buffer, key.byteOffset, KEY_BYTES).readBigUInt64BE();
  return index > 0n && index <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(index) : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function decodeEntryRecord(key: Uint8Array, value: Uint8Array): Verified<Entry> {
  const index = indexOfKey(key);
  if (index === undefined) return { ok: false, problem: `key of ${key.byteLength} bytes is not an entry index` };
  if (value.byteLength <= CRC_BYTES) return { ok: false, problem: `record of ${value.byteLength} bytes is truncated` };
  const stored = Buffer.from(value.buffer, value.byteOffset, CRC_BYTES).readUInt32BE();
  const body = value.subarray(CRC_BYTES);
  const computed = crc32c(body, crc32c(key));
  if (stored !== computed) {
    return { ok: false, problem: `checksum mismatch: stored ${hex(stored)}, computed ${hex(computed)}` };
  }
  let entry: Entry;
  try {
    entry = decodeEntry(body);
  } catch (error) {
    return { ok: false, problem: `checksum matches but the entry does not decode: ${messageOf(error)}` };
  }
  if (entry.index !== index) return { ok: false, problem: `record holds entry ${entry.index} under key ${index}` };
  if (entry.term <= 0) return { ok: false, problem: `entry has term ${entry.term}` };
  return { ok: true, value: entry };
}

export function encodeEntryRecord(entry: Entry): { key: Buffer; value: Buffer } {
  const key = entryKey(entry.index);
  const body = encodeEntry(entry);
  const value = Buffer.allocUnsafe(CRC_BYTES + body.byteLength);
  value.writeUInt32BE(crc32c(body, crc32c(key)), 0);
  value.set(body, CRC_BYTES);
  const back = decodeEntryRecord(key, value);
  invariant(
    back.ok && back.value.index === entry.index && back.value.term === entry.term && back.value.kind === entry.kind,
    () => `entry ${entry.index} does not read back as written: ${back.ok ? 'different entry' : back.problem}`,
  );
  return { key, value };
}

function hex(crc: number): string {
  return `0x${crc.toString(16).padStart(8, '0')}`;
}

/** A meta record: [crc][tag][body], crc over tag ++ body. */
function sealMeta(tag: string, body: Buffer): Buffer {
  const record = Buffer.allocUnsafe(CRC_BYTES + 1 + body.byteLength);
  record.write(tag, CRC_BYTES, 'latin1');
  body.copy(record, CRC_BYTES + 1);
  record.writeUInt32BE(crc32c(record.subarray(CRC_BYTES)), 0);
  return record;
}

/** The body of a meta record after its crc and tag check out, or the problem. */
function openMeta(tag: string, record: Uint8Array, bodyBytes: { min: number; max: number }): Verified<Buffer> {
  const buffer = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  if (buffer.byteLength < CRC_BYTES + 1 + bodyBytes.min) return { ok: false, problem: `record of ${buffer.byteLength} bytes is truncated` };
  if (buffer.byteLength > CRC_BYTES + 1 + bodyBytes.max) return { ok: false, problem: `record of ${buffer.byteLength} bytes is too long` };
  const stored = buffer.readUInt32BE(0);
  const computed = crc32c(buffer.subarray(CRC_BYTES));
  if (stored !== computed) return { ok: false, problem: `checksum mismatch: stored ${hex(stored)}, computed ${hex(computed)}` };
  const found = buffer.toString('latin1', CRC_BYTES, CRC_BYTES + 1);
  if (found !== tag) return { ok: false, problem: `record tagged "${found}" where "${tag}" belongs` };
  return { ok: true, value: buffer.subarray(CRC_BYTES + 1) };
}

function readSafe(body: Buffer, offset: number): number | undefined {
  const value = body.readBigUInt64BE(offset);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

/** The longest vote a hard state record may hold; `StorageLimits.maxNodeIdBytes` is checked first. */
const MAX_VOTE_BYTES = 4096;

export function encodeHardStateRecord(hardState: HardState): Buffer {
  const vote = Buffer.from(hardState.vote, 'utf8');
  invariant(vote.byteLength <= MAX_VOTE_BYTES, () => `vote of ${vote.byteLength} bytes`);
  const body = Buffer.allocUnsafe(16 + vote.byteLength);
  body.writeBigUInt64BE(BigInt(hardState.term), 0);
  body.writeBigUInt64BE(BigInt(hardState.commit), 8);
  vote.copy(body, 16);
  const record = sealMeta('H', body);
  const back = decodeHardStateRecord(record);
  invariant(
    back.ok && back.value.term === hardState.term && back.value.commit === hardState.commit && back.value.vote === hardState.vote,
    () => `hard state does not read back as written: ${back.ok ? JSON.stringify(back.value) : back.problem}`,
  );
  return record;
}

export function decodeHardStateRecord(record: Uint8Array): Verified<HardState> {
  const body = openMeta('H', record, { min: 16, max: 16 + MAX_VOTE_BYTES });
  if (!body.ok) return body;
  const term = readSafe(body.value, 0);
  const commit = readSafe(body.value, 8);
  if (term === undefined || commit === undefined) return { ok: false, problem: 'term or commit past 2^53' };
  const voteBytes = body.value.subarray(16);
  const vote = voteBytes.toString('utf8');
  if (!Buffer.from(vote, 'utf8').equals(voteBytes)) return { ok: false, problem: 'vote is not UTF-8' };
  return { ok: true, value: { term, vote, commit } };
}

/** Which snapshot the log continues from: the commit point of `saveSnapshot`. */
export interface SnapshotPointer {
  readonly index: number;
  readonly term: number;
}

export function encodeSnapshotPointer(pointer: SnapshotPointer): Buffer {
  const body = Buffer.allocUnsafe(16);
  body.writeBigUInt64BE(BigInt(pointer.index), 0);
  body.writeBigUInt64BE(BigInt(pointer.term), 8);
  const record = sealMeta('S', body);
  const back = decodeSnapshotPointer(record);
  invariant(
    back.ok && back.value.index === pointer.index && back.value.term === pointer.term,
    () => `snapshot pointer does not read back as written: ${back.ok ? JSON.stringify(back.value) : back.problem}`,
  );
  return record;
}

export function decodeSnapshotPointer(record: Uint8Array): Verified<SnapshotPointer> {
  const body = openMeta('S', record, { min: 16, max: 16 });
  if (!body.ok) return body;
  const index = readSafe(body.value, 0);
  const term = readSafe(body.value, 8);
  if (index === undefined || term === undefined || index <= 0 || term <= 0) {
    return { ok: false, problem: 'index or term out of range' };
  }
  return { ok: true, value: { index, term } };
}

export function encodeFormatRecord(version: number): Buffer {
  const body = Buffer.allocUnsafe(4);
  body.writeUInt32BE(version, 0);
  return sealMeta('F', body);
}

export function decodeFormatRecord(record: Uint8Array): Verified<number> {
  const body = openMeta('F', record, { min: 4, max: 4 });
  if (!body.ok) return body;
  return { ok: true, value: body.value.readUInt32BE(0) };
}
