/**
 * One snapshot, one file: `<term>-<index>.snap` in the snapshots directory, both as 16 hex digits
 * (etcd's naming, so `ls` sorts them by term and then index). A 28-byte header, then the body:
 *
 *   offset  0  magic "CSNP"
 *           4  format version u16 (1), reserved u16 (0)
 *           8  metadata length u32
 *          12  data length u64
 *          20  crc32c of the body (metadata ++ data)
 *          24  crc32c of bytes 0..23
 *          28  metadata (proto SnapshotMetadata), then data (the KV store's encoding)
 *
 * (big-endian). A file verifies when its header checksum, lengths, body checksum and name all
 * agree; anything else is a problem string, never an exception, so the store can fall back to an
 * older snapshot. Files are written with `writeFileDurably`: temp, fsync, rename, fsync directory.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';

import { Snapshot } from '../raft/types';
import { crc32c } from './crc32c';
import { TEMPORARY_SUFFIX, writeFileDurably } from './durable-fs';
import { decodeSnapshotMeta, encodeSnapshotMeta } from './entry-codec';
import { Verified } from './record-codec';

const MAGIC = Buffer.from('CSNP', 'latin1');
const FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 28;
/** Metadata is a membership list: a few KiB. More is not ours. */
const MAX_METADATA_BYTES = 1024 * 1024;
const NAME_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

export interface SnapshotFileName {
  readonly name: string;
  readonly term: number;
  readonly index: number;
}

export function snapshotFileName(term: number, index: number): string {
  return `${term.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}.snap`;
}

export function parseSnapshotFileName(name: string): SnapshotFileName | undefined {
  const match = NAME_PATTERN.exec(name);
  if (match === null) return undefined;
  const term = parseInt(match[1], 16);
  const index = parseInt(match[2], 16);
  if (!Number.isSafeInteger(term) || !Number.isSafeInteger(index) || term <= 0 || index <= 0) return undefined;
  return { name, term, index };
}

/** The header and body of a snapshot file, ready to write. */
export function encodeSnapshotFile(snapshot: Snapshot): Uint8Array[] {
  const metadata = encodeSnapshotMeta(snapshot.meta);
  return snapshotFileParts(snapshot, metadata, crc32c(snapshot.data, crc32c(metadata)));
}

/** The body's checksum is taken this much at a time by writeSnapshotFile (about 3 ms of CPU). */
export const CHECKSUM_SLICE_BYTES = 1 << 20;

/**
 * encodeSnapshotFile's bytes, the body's checksum taken a slice at a time with a turn of the
 * event loop between slices: a server's heartbeats and appends go on while it checksums a large
 * snapshot (a few MB took 15-22 ms in one piece, on every server at the same index).
 */
export async function encodeSnapshotFileInSlices(snapshot: Snapshot, between: () => Promise<void> = () => nextTurn()): Promise<Uint8Array[]> {
  const metadata = encodeSnapshotMeta(snapshot.meta);
  let crc = crc32c(metadata);
  for (let at = 0; at < snapshot.data.byteLength; at += CHECKSUM_SLICE_BYTES) {
    if (at > 0) await between();
    crc = crc32c(snapshot.data.subarray(at, at + CHECKSUM_SLICE_BYTES), crc);
  }
  return snapshotFileParts(snapshot, metadata, crc);
}

function snapshotFileParts(snapshot: Snapshot, metadata: Uint8Array, bodyChecksum: number): Uint8Array[] {
  const header = Buffer.alloc(SNAPSHOT_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt16BE(FORMAT_VERSION, 4);
  header.writeUInt32BE(metadata.byteLength, 8);
  header.writeBigUInt64BE(BigInt(snapshot.data.byteLength), 12);
  header.writeUInt32BE(bodyChecksum, 20);
  header.writeUInt32BE(crc32c(header.subarray(0, 24)), 24);
  return [header, metadata, snapshot.data];
}

/** Verifies a whole snapshot file's bytes; `expected` is what its name says it holds. */
export function decodeSnapshotFile(bytes: Buffer, expected: { term: number; index: number }): Verified<Snapshot> {
  if (bytes.byteLength < SNAPSHOT_HEADER_BYTES) return { ok: false, problem: `file of ${bytes.byteLength} bytes is shorter than its header` };
  if (!bytes.subarray(0, 4).equals(MAGIC)) return { ok: false, problem: 'not a snapshot file (bad magic)' };
  if (bytes.readUInt32BE(24) !== crc32c(bytes.subarray(0, 24))) return { ok: false, problem: 'header checksum mismatch' };
  const version = bytes.readUInt16BE(4);
  if (version !== FORMAT_VERSION) return { ok: false, problem: `format version ${version}, this build reads ${FORMAT_VERSION}` };
  const metadataBytes = bytes.readUInt32BE(8);
  const dataBytes = bytes.readBigUInt64BE(12);
  if (metadataBytes > MAX_METADATA_BYTES) return { ok: false, problem: `metadata of ${metadataBytes} bytes` };
  if (BigInt(bytes.byteLength) !== BigInt(SNAPSHOT_HEADER_BYTES + metadataBytes) + dataBytes) {
    return { ok: false, problem: `file is ${bytes.byteLength} bytes, header says ${SNAPSHOT_HEADER_BYTES} + ${metadataBytes} + ${dataBytes} (truncated?)` };
  }
  const body = bytes.subarray(SNAPSHOT_HEADER_BYTES);
  if (bytes.readUInt32BE(20) !== crc32c(body)) return { ok: false, problem: 'body checksum mismatch' };
  let meta: Snapshot['meta'];
  try {
    meta = decodeSnapshotMeta(body.subarray(0, metadataBytes));
  } catch (error) {
    return { ok: false, problem: `metadata does not decode: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (meta.index !== expected.index || meta.term !== expected.term) {
    return { ok: false, problem: `holds snapshot ${meta.term}/${meta.index}, its name says ${expected.term}/${expected.index}` };
  }
  return { ok: true, value: { meta, data: new Uint8Array(body.buffer, body.byteOffset + metadataBytes, body.byteLength - metadataBytes) } };
}

export async function writeSnapshotFile(directory: string, snapshot: Snapshot): Promise<SnapshotFileName> {
  const name = snapshotFileName(snapshot.meta.term, snapshot.meta.index);
  await writeFileDurably(directory, name, await encodeSnapshotFileInSlices(snapshot));
  return { name, term: snapshot.meta.term, index: snapshot.meta.index };
}

/** Reads and verifies one snapshot file; a file over `maxBytes` is a problem, not a read. */
export async function readSnapshotFile(directory: string, file: SnapshotFileName, maxBytes: number): Promise<Verified<Snapshot>> {
  const filePath = path.join(directory, file.name);
  let bytes: Buffer;
  try {
    const { size } = await fs.stat(filePath);
    if (size > maxBytes + SNAPSHOT_HEADER_BYTES + MAX_METADATA_BYTES) {
      return { ok: false, problem: `file of ${size} bytes is over the limit of ${maxBytes} (maxSnapshotBytes)` };
    }
    bytes = await fs.readFile(filePath);
  } catch (error) {
    return { ok: false, problem: `cannot be read: ${error instanceof Error ? error.message : String(error)}` };
  }
  return decodeSnapshotFile(bytes, file);
}

export interface SnapshotDirectoryListing {
  /** Snapshot files by name, newest (highest index, then term) first. Not yet verified. */
  readonly snapshots: SnapshotFileName[];
  /** Leftovers of a write a crash interrupted. */
  readonly temporary: string[];
}

export async function listSnapshotFiles(directory: string): Promise<SnapshotDirectoryListing> {
  const names = await fs.readdir(directory);
  const snapshots = names.flatMap((name) => parseSnapshotFileName(name) ?? []);
  snapshots.sort((a, b) => b.index - a.index || b.term - a.term);
  return { snapshots, temporary: names.filter((name) => name.endsWith(TEMPORARY_SUFFIX)) };
}
