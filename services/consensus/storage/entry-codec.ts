/**
 * Raft values to and from the generated protobuf messages of raft.proto (ts-proto, uint64 as
 * bigint): `Entry` and the snapshot's metadata. The bytes on disk are the same bytes as on the
 * wire, so a log record can be read with any protobuf tool and the format's evolution follows
 * proto's compatibility rules (`buf breaking`).
 *
 * Decoding is strict, since its input may be a corrupt record that passed no checksum yet: an
 * unknown entry type, a missing membership change or an index past 2^53 is an error, never a
 * default value.
 */
import { BinaryWriter } from '@bufbuild/protobuf/wire';

import {
  ConfChange_Kind,
  Entry as EntryMessage,
  Entry_EntryType,
  Member as MemberMessage,
  SnapshotMetadata as SnapshotMetadataMessage,
} from '../../gen/consulate/consensus/v1/raft';
import { ConfChange, Entry, Member, SnapshotMeta } from '../raft/types';

const KIND_TO_PROTO: Record<ConfChange['kind'], ConfChange_Kind> = {
  'add-voter': ConfChange_Kind.KIND_ADD_VOTER,
  'add-learner': ConfChange_Kind.KIND_ADD_LEARNER,
  promote: ConfChange_Kind.KIND_PROMOTE,
  remove: ConfChange_Kind.KIND_REMOVE,
};

function kindFromProto(kind: ConfChange_Kind): ConfChange['kind'] {
  switch (kind) {
    case ConfChange_Kind.KIND_ADD_VOTER:
      return 'add-voter';
    case ConfChange_Kind.KIND_ADD_LEARNER:
      return 'add-learner';
    case ConfChange_Kind.KIND_PROMOTE:
      return 'promote';
    case ConfChange_Kind.KIND_REMOVE:
      return 'remove';
    default:
      throw new Error(`unknown membership change kind ${kind}`);
  }
}

/** A uint64 field as a number; past 2^53 it cannot be one of ours. */
function safeNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${field} ${value} is past 2^53`);
  return Number(value);
}

/** A view of the same bytes as a Buffer, which the generated code types its bytes fields as. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function memberToProto(member: Member): MemberMessage {
  return { id: member.id, address: member.address, learner: member.learner };
}

function memberFromProto(member: MemberMessage): Member {
  if (member.id === '') throw new Error('member without an id');
  return { id: member.id, address: member.address, learner: member.learner };
}

/** Field by field, not `{ ...base, type, ... }`: an object spread with more properties is slow in V8 (test/checkers/hot-path-spread.test.ts). */
export function entryToProto(entry: Entry): EntryMessage {
  const index = BigInt(entry.index);
  const term = BigInt(entry.term);
  switch (entry.kind) {
    case 'normal':
      return { index, term, type: Entry_EntryType.ENTRY_TYPE_NORMAL, data: asBuffer(entry.data), change: undefined };
    case 'config':
      return {
        index,
        term,
        type: Entry_EntryType.ENTRY_TYPE_CONFIG,
        data: Buffer.alloc(0),
        change: { kind: KIND_TO_PROTO[entry.change.kind], member: memberToProto(entry.change.member) },
      };
    case 'noop':
      return { index, term, type: Entry_EntryType.ENTRY_TYPE_NOOP, data: Buffer.alloc(0), change: undefined };
  }
}

export function entryFromProto(message: EntryMessage): Entry {
  const index = safeNumber(message.index, 'entry index');
  const term = safeNumber(message.term, 'entry term');
  switch (message.type) {
    case Entry_EntryType.ENTRY_TYPE_NORMAL:
      // A copy the entry owns, not a view into a larger decode buffer.
      return { index, term, kind: 'normal', data: new Uint8Array(message.data) };
    case Entry_EntryType.ENTRY_TYPE_CONFIG: {
      const change = message.change;
      if (change === undefined || change.member === undefined) throw new Error(`config entry ${index} without a membership change`);
      return { index, term, kind: 'config', change: { kind: kindFromProto(change.kind), member: memberFromProto(change.member) } };
    }
    case Entry_EntryType.ENTRY_TYPE_NOOP:
      return { index, term, kind: 'noop' };
    default:
      throw new Error(`entry ${index} has unknown type ${message.type}`);
  }
}

/**
 * One writer for every encode: `finish()` hands back the bytes and empties it, and a fresh writer
 * per entry cost 3x the encoding itself (3.2 µs against 0.9 µs for a 256-byte entry). A writer an
 * encode failed in may hold half a message, so it is replaced.
 */
let writer = new BinaryWriter();

function encodeWith<T>(encode: (message: T, writer: BinaryWriter) => BinaryWriter, message: T): Uint8Array {
  try {
    return encode(message, writer).finish();
  } catch (error) {
    writer = new BinaryWriter();
    throw error;
  }
}

export function encodeEntry(entry: Entry): Uint8Array {
  return encodeWith(EntryMessage.encode, entryToProto(entry));
}

/** Throws on bytes that are not an entry of ours. */
export function decodeEntry(bytes: Uint8Array): Entry {
  return entryFromProto(EntryMessage.decode(bytes));
}

export function snapshotMetaToProto(meta: SnapshotMeta): SnapshotMetadataMessage {
  return { index: BigInt(meta.index), term: BigInt(meta.term), members: meta.members.map(memberToProto) };
}

/** Throws on metadata that is not ours (no member id, index past 2^53). */
export function snapshotMetaFromProto(message: SnapshotMetadataMessage): SnapshotMeta {
  return {
    index: safeNumber(message.index, 'snapshot index'),
    term: safeNumber(message.term, 'snapshot term'),
    members: message.members.map(memberFromProto),
  };
}

export function encodeSnapshotMeta(meta: SnapshotMeta): Uint8Array {
  return encodeWith(SnapshotMetadataMessage.encode, snapshotMetaToProto(meta));
}

/** Throws on bytes that are not snapshot metadata of ours. */
export function decodeSnapshotMeta(bytes: Uint8Array): SnapshotMeta {
  return snapshotMetaFromProto(SnapshotMetadataMessage.decode(bytes));
}
