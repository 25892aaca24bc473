import { Entry as EntryMessage } from '../../gen/consulate/consensus/v1/raft';
import { Entry } from '../raft/types';
import {
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

const entry: Entry = { index: 300, term: 7, kind: 'normal', data: new Uint8Array(Buffer.from('put /kv/a 1')) };

/** Every copy of `record` with one bit flipped. */
function* bitFlips(record: Buffer): Generator<Buffer> {
  for (let bit = 0; bit < record.length * 8; bit++) {
    const flipped = Buffer.from(record);
    flipped[bit >> 3] ^= 1 << (bit & 7);
    yield flipped;
  }
}

describe('entry keys', () => {
  it('are 8 bytes big-endian, so byte order is index order', () => {
    expect(entryKey(1).toString('hex')).toBe('0000000000000001');
    expect(entryKey(2 ** 40 + 5).toString('hex')).toBe('0000010000000005');
    expect(Buffer.compare(entryKey(255), entryKey(256))).toBe(-1);
    expect(indexOfKey(entryKey(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('refuse what is not an index', () => {
    expect(indexOfKey(Buffer.alloc(7))).toBeUndefined();
    expect(indexOfKey(Buffer.alloc(8))).toBeUndefined(); // index 0
    expect(indexOfKey(Buffer.alloc(8, 0xff))).toBeUndefined(); // past 2^53
  });
});

describe('entry records', () => {
  it('hold a crc32c then the proto Entry, which any protobuf reader can decode', () => {
    const { key, value } = encodeEntryRecord(entry);
    expect(key).toEqual(entryKey(300));
    const message = EntryMessage.decode(value.subarray(4));
    expect(message.index).toBe(300n);
    expect(message.term).toBe(7n);
    expect(decodeEntryRecord(key, value)).toEqual({ ok: true, value: entry });
  });

  it('detect every single-bit flip, in the checksum or the body', () => {
    const { key, value } = encodeEntryRecord(entry);
    for (const flipped of bitFlips(value)) expect(decodeEntryRecord(key, flipped).ok).toBe(false);
  });

  it('detect a record under another key (the checksum covers the key)', () => {
    const { value } = encodeEntryRecord(entry);
    expect(decodeEntryRecord(entryKey(301), value)).toEqual({ ok: false, problem: expect.stringMatching(/^checksum mismatch/) });
  });

  it('detect a truncated record', () => {
    const { key, value } = encodeEntryRecord(entry);
    expect(decodeEntryRecord(key, value.subarray(0, 4))).toEqual({ ok: false, problem: 'record of 4 bytes is truncated' });
    expect(decodeEntryRecord(key, value.subarray(0, value.length - 1)).ok).toBe(false);
  });
});

describe('meta records', () => {
  it('round-trip the hard state, with a non-ASCII vote', () => {
    const hardState = { term: 2 ** 40, vote: 'sérveur-1', commit: 12 };
    expect(decodeHardStateRecord(encodeHardStateRecord(hardState))).toEqual({ ok: true, value: hardState });
    expect(decodeHardStateRecord(encodeHardStateRecord({ term: 0, vote: '', commit: 0 }))).toEqual({
      ok: true,
      value: { term: 0, vote: '', commit: 0 },
    });
  });

  it('detect every single-bit flip of the hard state and the snapshot pointer', () => {
    for (const flipped of bitFlips(encodeHardStateRecord({ term: 3, vote: 'server-2', commit: 9 }))) {
      expect(decodeHardStateRecord(flipped).ok).toBe(false);
    }
    for (const flipped of bitFlips(encodeSnapshotPointer({ index: 100, term: 4 }))) {
      expect(decodeSnapshotPointer(flipped).ok).toBe(false);
    }
  });

  it('tell one kind of record from another by its tag', () => {
    const pointer = encodeSnapshotPointer({ index: 100, term: 4 });
    expect(decodeSnapshotPointer(pointer)).toEqual({ ok: true, value: { index: 100, term: 4 } });
    expect(decodeHardStateRecord(pointer)).toEqual({ ok: false, problem: 'record tagged "S" where "H" belongs' });
    expect(decodeFormatRecord(encodeFormatRecord(1))).toEqual({ ok: true, value: 1 });
  });
});
