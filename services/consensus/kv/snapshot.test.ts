/**
 * Snapshots (Raft §7: a snapshot replaces the log prefix it covers, so the state it carries must
 * be the whole state): restore gives the same hash and the same answers, and refuses what it
 * cannot trust.
 */
import { KVSnapshot } from '../../gen/consulate/consensus/v1/snapshot';
import { FROM_KEY, command, op, rangeRequest } from './command-builders';
import { KvStateMachine } from './kv-state-machine';
import { SNAPSHOT_FORMAT_VERSION, SnapshotError, encodeInSlices } from './snapshot';

function busyStore(): KvStateMachine {
  const sm = new KvStateMachine();
  const commands = [
    command.grant(30, 5),
    command.put('a', '1'),
    command.put('b', '1', { lease: 5n }),
    command.txn([], [op.put('a', '2'), op.put('c', '1'), op.delete('zz')]),
    command.delete('a'),
    command.put(Buffer.from([0xff, 0x00]), 'binary'),
    command.grant(60),
    command.compact(3),
    command.put('a', '3'),
    command.put('c', '2', { lease: 6n }),
  ];
  for (const c of commands) if (!sm.apply(c).ok) throw new Error('setup failed');
  return sm;
}

function readEverything(sm: KvStateMachine) {
  const answers = [];
  for (let revision = Number(sm.compactRevision); revision <= Number(sm.revision); revision++) {
    answers.push(sm.range(rangeRequest('\0', FROM_KEY, { revision })));
  }
  answers.push(sm.range(rangeRequest('\0', FROM_KEY, { revision: Number(sm.compactRevision) - 1 })));
  return answers;
}

describe('snapshot and restore', () => {
  test('a restored store has the same hash and the same answers at every retained revision', () => {
    const original = busyStore();
    const restored = new KvStateMachine();
    restored.restore(original.snapshot());
    expect(restored.hash()).toBe(original.hash());
    expect(restored.revision).toBe(original.revision);
    expect(restored.compactRevision).toBe(original.compactRevision);
    expect(readEverything(restored)).toEqual(readEverything(original));
    expect(restored.leases()).toEqual(original.leases());
  });

  test('a restored store goes on exactly as the original: same results, same events, same hash', () => {
    const original = busyStore();
    const restored = new KvStateMachine();
    restored.restore(original.snapshot());
    const next = [command.revoke(5), command.grant(10), command.put('b', '2', { lease: 7n, prevKv: true }), command.revoke(6), command.delete('\0', FROM_KEY, { prevKv: true })];
    for (const c of next) expect(restored.apply(c)).toEqual(original.apply(c));
    expect(restored.hash()).toBe(original.hash());
  });

  test('one state has one encoding: snapshot(restore(s)) is s', () => {
    const original = busyStore();
    const bytes = original.snapshot();
    const restored = new KvStateMachine();
    restored.restore(bytes);
    expect(Buffer.from(restored.snapshot()).equals(Buffer.from(bytes))).toBe(true);
  });

  test('the empty store round-trips', () => {
    const restored = new KvStateMachine();
    restored.restore(new KvStateMachine().snapshot());
    expect(restored.hash()).toBe(new KvStateMachine().hash());
    expect(restored.revision).toBe(1n);
  });

  test('an unknown format version is refused, naming both versions, and nothing changes', () => {
    const sm = busyStore();
    const hash = sm.hash();
    const snapshot = KVSnapshot.decode(new KvStateMachine().snapshot());
    const bytes = KVSnapshot.encode({ ...snapshot, formatVersion: SNAPSHOT_FORMAT_VERSION + 1 }).finish();
    expect(() => sm.restore(bytes)).toThrow(SnapshotError);
    expect(() => sm.restore(bytes)).toThrow(`format version ${SNAPSHOT_FORMAT_VERSION + 1}; this server reads version ${SNAPSHOT_FORMAT_VERSION}`);
    expect(sm.hash()).toBe(hash);
  });

  test.each([
    ['keys out of order', (s: KVSnapshot) => ({ ...s, keys: [...s.keys].reverse() }), 'out of order'],
    ['a key attached to a lease that is not granted', (s: KVSnapshot) => ({ ...s, leases: [] }), 'not granted'],
    ['a revision above the store revision', (s: KVSnapshot) => ({ ...s, revision: 2n }), 'outside'],
    ['a version that does not count up', (s: KVSnapshot) => ({ ...s, keys: s.keys.map((k) => ({ ...k, revisions: k.revisions.map((r) => ({ ...r, version: r.tombstone ? 0n : 9n })) })) }), 'version'],
    ['a repeated sub-revision', (s: KVSnapshot) => ({ ...s, keys: s.keys.map((k) => ({ ...k, revisions: k.revisions.map((r) => ({ ...r, modRevision: r.modRevision, subRevision: 0n })) })) }), 'sub-revision'],
  ])('a snapshot with %s is refused and changes nothing', (_name, corrupt, message) => {
    const sm = busyStore();
    const hash = sm.hash();
    const bytes = KVSnapshot.encode(corrupt(KVSnapshot.decode(busyStore().snapshot()))).finish();
    expect(() => sm.restore(bytes)).toThrow(message);
    expect(sm.hash()).toBe(hash);
  });

  test('bytes that are not a snapshot are refused', () => {
    expect(() => new KvStateMachine().restore(Buffer.from([0xff, 0xff, 0xff]))).toThrow(SnapshotError);
  });
});

describe('encoding in slices (the consensus node, off its loop)', () => {
  test('the bytes are encodeSnapshot\'s, whatever the slice; `between` runs between slices; later writes change nothing captured', async () => {
    const sm = new KvStateMachine();
    for (let i = 0; i < 250; i++) sm.apply(command.put(`k/${String(i).padStart(3, '0')}`, `v${i}`));
    sm.apply(command.put('k/000', 'again'));
    const whole = sm.snapshot();
    // 251 revisions: k/000 has two. A slice closes once it holds `slice` revisions.
    for (const [slice, slices] of [[1, 250], [2, 126], [7, 36], [100, 3], [1_000, 1]]) {
      const captured = sm.captureSnapshot();
      let turns = 0;
      const sliced = await encodeInSlices(captured, async () => void turns++, slice);
      expect({ slice, equal: Buffer.compare(Buffer.from(sliced), Buffer.from(whole)) === 0 }).toEqual({ slice, equal: true });
      expect({ slice, turns }).toEqual({ slice, turns: slices - 1 });
    }
    // Captured, then written to: the encoding is of the state when captured.
    const captured = sm.captureSnapshot();
    sm.apply(command.put('k/999', 'later'));
    sm.apply(command.put('k/001', 'changed'));
    expect(Buffer.compare(Buffer.from(await encodeInSlices(captured, async () => undefined, 10)), Buffer.from(whole))).toBe(0);
  });

  test('captured, then compacted, deleted and written to between slices: the encoding is of the state when captured', async () => {
    const sm = new KvStateMachine();
    for (let round = 0; round < 5; round++) for (let i = 0; i < 20; i++) sm.apply(command.put(`k/${String(i).padStart(2, '0')}`, `v${round}.${i}`));
    const whole = sm.snapshot();
    const captured = sm.captureSnapshot();
    const changes = [() => sm.apply(command.compact(60)), () => sm.apply(command.delete('k/05')), () => sm.apply(command.put('k/07', 'later')), () => sm.apply(command.put('k/99', 'new'))];
    const sliced = await encodeInSlices(captured, async () => void changes.shift()?.(), 10);
    expect(changes).toEqual([]);
    expect(Buffer.compare(Buffer.from(sliced), Buffer.from(whole))).toBe(0);
  });
});
