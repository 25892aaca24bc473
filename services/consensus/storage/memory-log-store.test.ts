import { InvariantViolation } from '../../lib/invariant';
import { Entry } from '../raft/types';
import { MemoryLogStore } from './memory-log-store';

const normal = (index: number, term: number): Entry => ({ index, term, kind: 'normal', data: Uint8Array.of(index) });

describe('MemoryLogStore.crash', () => {
  it('loses nothing: every call made before the crash is "fsynced", even with its promise unresolved', async () => {
    const store = new MemoryLogStore();
    await store.load();
    await store.save({ entries: [normal(1, 1), normal(2, 1)], hardState: { term: 1, vote: 'server-1', commit: 1 } });
    void store.save({ entries: [normal(3, 1)] }); // not awaited: the process dies before it would resolve
    const restarted = store.crash();
    const loaded = await restarted.load();
    expect(loaded.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(loaded.hardState).toEqual({ term: 1, vote: 'server-1', commit: 1 });
  });

  it('stops the crashed store: later calls are refused', async () => {
    const store = new MemoryLogStore();
    await store.load();
    store.crash();
    await expect(store.save({ entries: [normal(1, 1)] })).rejects.toBeInstanceOf(InvariantViolation);
    await expect(store.save({ entries: [normal(1, 1)] })).rejects.toThrow(/crashed/);
  });

  it('keeps its own copy of the bytes, as a disk would', async () => {
    const store = new MemoryLogStore();
    await store.load();
    const entry = normal(1, 1);
    await store.save({ entries: [entry] });
    if (entry.kind === 'normal') (entry.data as Uint8Array)[0] = 99;
    const loaded = await store.crash().load();
    expect(loaded.entries[0]).toEqual(normal(1, 1));
  });

  it('applies the same limits as the disk store', async () => {
    const store = new MemoryLogStore(undefined, { maxEntryBytes: 4 });
    await store.load();
    await expect(store.save({ entries: [{ index: 1, term: 1, kind: 'normal', data: new Uint8Array(5) }] })).rejects.toThrow(
      /over the limit of 4 \(maxEntryBytes\)/,
    );
  });
});
