import {
  ConfChange_Kind,
  Entry as EntryMessage,
  Entry_EntryType,
  SnapshotMetadata as SnapshotMetadataMessage,
} from '../../gen/consulate/consensus/v1/raft';
import { Entry, SnapshotMeta } from '../raft/types';
import { decodeEntry, decodeSnapshotMeta, encodeEntry, encodeSnapshotMeta } from './entry-codec';

const member = { id: 'server-2', address: '127.0.1.2:8310', learner: false };

describe('entry codec', () => {
  const entries: Entry[] = [
    { index: 1, term: 1, kind: 'normal', data: Uint8Array.of(0, 1, 2, 255) },
    { index: 2, term: 1, kind: 'normal', data: new Uint8Array(0) },
    { index: 3, term: 2, kind: 'noop' },
    ...(['add-voter', 'add-learner', 'promote', 'remove'] as const).map(
      (kind, i): Entry => ({ index: 4 + i, term: 2, kind: 'config', change: { kind, member: { ...member, learner: kind === 'add-learner' } } }),
    ),
    { index: Number.MAX_SAFE_INTEGER, term: Number.MAX_SAFE_INTEGER, kind: 'noop' },
  ];

  it.each(entries.map((e) => [`${e.kind} ${e.index}`, e]))('round-trips %s', (_name, entry) => {
    expect(decodeEntry(encodeEntry(entry))).toEqual(entry);
  });

  it('writes raft.proto Entry messages', () => {
    const message = EntryMessage.decode(encodeEntry(entries[3]));
    expect(message).toMatchObject({ index: 4n, term: 2n, type: Entry_EntryType.ENTRY_TYPE_CONFIG, change: { kind: ConfChange_Kind.KIND_ADD_VOTER, member } });
  });

  it('refuses what is not an entry of ours rather than guessing', () => {
    const encode = (message: Partial<EntryMessage>) =>
      EntryMessage.encode({ index: 1n, term: 1n, type: Entry_EntryType.ENTRY_TYPE_NORMAL, data: Buffer.alloc(0), ...message }).finish();
    expect(() => decodeEntry(encode({ type: Entry_EntryType.ENTRY_TYPE_UNSPECIFIED }))).toThrow(/unknown type 0/);
    expect(() => decodeEntry(encode({ type: Entry_EntryType.ENTRY_TYPE_CONFIG }))).toThrow(/without a membership change/);
    expect(() => decodeEntry(encode({ index: 2n ** 60n }))).toThrow(/past 2\^53/);
    expect(() =>
      decodeEntry(encode({ type: Entry_EntryType.ENTRY_TYPE_CONFIG, change: { kind: ConfChange_Kind.KIND_UNSPECIFIED, member } })),
    ).toThrow(/unknown membership change kind/);
  });
});

describe('snapshot metadata codec', () => {
  it('round-trips through raft.proto SnapshotMetadata', () => {
    const meta: SnapshotMeta = { index: 1000, term: 3, members: [member, { id: 'server-4', address: '127.0.1.4:8310', learner: true }] };
    const encoded = encodeSnapshotMeta(meta);
    expect(SnapshotMetadataMessage.decode(encoded).index).toBe(1000n);
    expect(decodeSnapshotMeta(encoded)).toEqual(meta);
  });
});
