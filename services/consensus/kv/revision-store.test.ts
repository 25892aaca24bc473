/**
 * What compaction frees in the multi-version store (etcd's keyIndex.compact): the changes it
 * forgets are counted and unreachable, what survives holds no shared allocation that would keep
 * forgotten bytes alive, and under steady rewrites with compaction the history stays bounded.
 * The read semantics of compaction are kv-state-machine.test.ts's.
 */
import { Command } from '../../gen/consulate/consensus/v1/command';
import { command } from './command-builders';
import { KvStateMachine } from './kv-state-machine';
import { KeyHistory, RevisionStore } from './revision-store';

function write(store: RevisionStore, changes: (store: RevisionStore) => void): number {
  const revision = store.begin();
  changes(store);
  store.end();
  return revision;
}

const put = (store: RevisionStore, key: string, value: string) => write(store, (s) => s.put(key, Buffer.from(key, 'latin1'), Buffer.from(value), 0n));

function histories(store: RevisionStore): KeyHistory[] {
  const all: KeyHistory[] = [];
  store.forEachHistory((history) => all.push(history));
  return all;
}

/** A Buffer that is alone in its ArrayBuffer: dropping every other reference frees its bytes. */
const ownsItsMemory = (buffer: Buffer) => buffer.byteLength === buffer.buffer.byteLength;

describe('compaction frees the history', () => {
  test('counts the changes it forgets; retained changes are counted through writes, compaction and load', () => {
    const store = new RevisionStore();
    put(store, 'a', '1'); // 2
    put(store, 'a', '2'); // 3
    put(store, 'b', '1'); // 4
    write(store, (s) => s.delete(s.history('b')!)); // 5
    put(store, 'a', '3'); // 6
    expect(store.retainedRevisions).toBe(5);
    // a@2 goes (a@3 is the live one at 5); b's put and tombstone go, and so does b.
    expect(store.compact(5)).toBe(3);
    expect(store.retainedRevisions).toBe(2);
    expect(histories(store).map((h) => [h.key, h.revisions.map((r) => r.modRevision)])).toEqual([['a', [3, 6]]]);
    expect(store.compact(6)).toBe(1);
    expect(store.retainedRevisions).toBe(1);

    const copy = new RevisionStore();
    copy.load(histories(store), store.currentRevision, store.compactRevision);
    expect(copy.retainedRevisions).toBe(1);
  });

  test('what survives owns its bytes: no survivor keeps a shared 8 KiB pool slab (and the forgotten values in it) alive', () => {
    const sm = new KvStateMachine();
    // Values decoded from a command, as applied entries are: small ones land in Node's pool.
    for (let i = 0; i < 2_000; i++) {
      const encoded = Command.encode(command.put(`k${i % 50}`, `value ${i}`)).finish();
      sm.apply(Command.decode(encoded));
    }
    const store = (sm as unknown as { store: RevisionStore }).store;
    const pooledBefore = histories(store).filter((h) => !ownsItsMemory(h.revisions[0].value) || !ownsItsMemory(h.bytes)).length;
    expect(pooledBefore).toBe(50);

    sm.apply(command.compact(Number(sm.revision) - 10));
    for (const history of histories(store)) {
      expect(ownsItsMemory(history.bytes)).toBe(true);
      expect(ownsItsMemory(history.revisions[0].value)).toBe(true);
    }
    // The bytes are the same, and a snapshot of the compacted store restores to the same state.
    expect(sm.range({ key: Buffer.from('k7'), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, keysOnly: false, countOnly: false, consistency: 0 })).toMatchObject({
      ok: true,
      response: { kvs: [{ key: Buffer.from('k7'), value: Buffer.from('value 1957') }] },
    });
    const restored = new KvStateMachine();
    restored.restore(sm.snapshot());
    expect(restored.hash()).toBe(sm.hash());
  });

  test('steady rewrites of the same keys, compacted as auto-compaction does: the history stops growing', () => {
    const sm = new KvStateMachine();
    const retained: number[] = [];
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 1_000; i++) sm.apply(command.put(`node/${i % 100}`, `status ${round}.${i}`));
      // Keep the last 1,000 revisions (revision mode, retention 1000).
      if (sm.revision > 1_000n) sm.apply(command.compact(Number(sm.revision) - 1_000));
      retained.push(sm.retainedRevisions);
    }
    expect(retained.slice(0, 2)).toEqual([1_000, 1_100]);
    // 100 keys' values as of the compact revision, plus the last 1,000 changes.
    expect(new Set(retained.slice(1))).toEqual(new Set([1_100]));
    expect(sm.lastCompaction).toEqual({ revision: 19_001, keyRevisionsDropped: 1_000 });
  });
});
