/**
 * The LogStore contract, run against every store: what the node shell may rely on whichever one it
 * is given. "Reopen" is a restart: for a durable store a new instance over the same directory after
 * close(), for memory a crash() (which loses nothing).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import fc from 'fast-check';

import { InvariantViolation } from '../../lib/invariant';
import { Entry, HardState } from '../raft/types';
import { indexes, normal, run, snapshotAt } from '../testing/log-entries';
import { LmdbLogStore } from './lmdb-log-store';
import { LogStore, StorageCorruptionError, StorageLimitError, StoredState } from './log-store';
import { MemoryLogStore } from './memory-log-store';
import { WalLogStore } from './wal-log-store';
import { snapshotFileName } from './snapshot-file';

interface Harness {
  /** A store over empty storage, not loaded yet. */
  fresh(): LogStore;
  /** The same storage after a restart, not loaded yet. */
  reopen(store: LogStore): Promise<LogStore>;
  cleanup(): void;
}

/** A store over a directory, as each durable kind is configured here. */
type DurableStoreFactory = (dataDir: string) => LogStore;

const durableStores: Array<[string, DurableStoreFactory]> = [
  ['LmdbLogStore', (dataDir) => new LmdbLogStore({ dataDir })],
  ['LmdbLogStore, commitMode sync', (dataDir) => new LmdbLogStore({ dataDir, commitMode: 'sync' })],
  ['WalLogStore', (dataDir) => new WalLogStore({ dataDir })],
  // Segments of 1 KiB (a dozen small frames): histories here begin new segments and remove old ones.
  ['WalLogStore, commitMode async, 1 KiB segments', (dataDir) => new WalLogStore({ dataDir, commitMode: 'async', segmentBytes: 1024, allocateBytes: 512 })],
];

const harnesses: Array<[string, () => Harness]> = [
  [
    'MemoryLogStore',
    () => ({
      fresh: () => new MemoryLogStore(),
      reopen: async (store) => (store as MemoryLogStore).crash(),
      cleanup: () => undefined,
    }),
  ],
  ...durableStores.map(([name, open]): [string, () => Harness] => [
    name,
    () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'consulate-log-store-'));
      return {
        fresh: () => open(dir),
        reopen: async (store) => {
          await store.close();
          return open(dir);
        },
        cleanup: () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  ]),
];


describe.each(harnesses)('%s: the LogStore contract', (_name, makeHarness) => {
  let harness: Harness;
  let store: LogStore;

  beforeEach(async () => {
    harness = makeHarness();
    store = harness.fresh();
  });

  afterEach(async () => {
    await store.close();
    harness.cleanup();
  });

  /** Restart and load: what a restarted server sees. */
  async function restart() {
    store = await harness.reopen(store);
    return store.load();
  }

  it('starts empty', async () => {
    expect(await store.load()).toEqual({ hardState: { term: 0, vote: '', commit: 0 }, snapshot: undefined, entries: [], warnings: [] });
  });

  it('keeps entries of every kind and the hard state across a restart (Figure 2: persistent state)', async () => {
    await store.load();
    const entries: Entry[] = [
      { index: 1, term: 1, kind: 'config', change: { kind: 'add-voter', member: { id: 'server-1', address: '127.0.1.1:8310', learner: false } } },
      { index: 2, term: 1, kind: 'noop' },
      normal(3, 1, 'put a=1'),
      { index: 4, term: 2, kind: 'normal', data: new Uint8Array(0) },
      { index: 5, term: 2, kind: 'config', change: { kind: 'add-learner', member: { id: 'server-4', address: '127.0.1.4:8310', learner: true } } },
    ];
    const hardState: HardState = { term: 2, vote: 'server-1', commit: 3 };
    await store.save({ entries, hardState });
    const loaded = await restart();
    expect(loaded.entries).toEqual(entries);
    expect(loaded.hardState).toEqual(hardState);
    expect(loaded.snapshot).toBeUndefined();
    expect(loaded.warnings).toEqual([]);
  });

  it('saves a hard state alone', async () => {
    await store.load();
    await store.save({ entries: [], hardState: { term: 5, vote: 'server-2', commit: 0 } });
    await store.save({ entries: [], hardState: { term: 6, vote: '', commit: 0 } });
    expect((await restart()).hardState).toEqual({ term: 6, vote: '', commit: 0 });
  });

  it('overwrites a conflicting suffix: everything from the first new index goes (§5.3)', async () => {
    await store.load();
    await store.save({ entries: run(1, 5, 1) });
    await store.save({ entries: [normal(3, 2, 'new 3'), normal(4, 2, 'new 4')] });
    const loaded = await restart();
    expect(indexes(loaded.entries)).toEqual([1, 2, 3, 4]);
    expect(loaded.entries.map((e) => e.term)).toEqual([1, 1, 2, 2]);
    expect(loaded.entries[2]).toEqual(normal(3, 2, 'new 3'));
  });

  it('appends after an overwrite and after a restart', async () => {
    await store.load();
    await store.save({ entries: run(1, 3, 1) });
    await store.save({ entries: run(2, 2, 2) });
    await store.save({ entries: run(3, 4, 2), hardState: { term: 2, vote: 'server-1', commit: 2 } });
    store = await harness.reopen(store);
    await store.load();
    await store.save({ entries: run(5, 6, 3) });
    expect(indexes((await restart()).entries)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('keeps the suffix after a local snapshot (keepSuffix: true, §7 log compaction)', async () => {
    await store.load();
    await store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: '', commit: 8 } });
    await store.saveSnapshot(snapshotAt(6, 1), { keepSuffix: true });
    const loaded = await restart();
    expect(loaded.snapshot).toEqual(snapshotAt(6, 1));
    expect(indexes(loaded.entries)).toEqual([7, 8, 9, 10]);
    expect(loaded.hardState.commit).toBe(8);
    await store.save({ entries: run(11, 11, 1) });
    expect(indexes((await restart()).entries)).toEqual([7, 8, 9, 10, 11]);
  });

  it('saves the log while a local snapshot is being saved (the node does not wait for it)', async () => {
    await store.load();
    await store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: '', commit: 10 } });
    const snapshotting = store.saveSnapshot(snapshotAt(8, 1), { keepSuffix: true });
    // Not awaited: appends and a new commit go on meanwhile, and are durable when they resolve.
    await store.save({ entries: run(11, 12, 1), hardState: { term: 1, vote: '', commit: 12 } });
    await store.save({ entries: run(13, 13, 1) });
    await snapshotting;
    const loaded = await restart();
    expect(loaded.snapshot).toEqual(snapshotAt(8, 1));
    expect(indexes(loaded.entries)).toEqual([9, 10, 11, 12, 13]);
    expect(loaded.hardState.commit).toBe(12);
  });

  it('compacts twice: the newest snapshot wins and only entries after it are returned', async () => {
    await store.load();
    await store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: '', commit: 10 } });
    await store.saveSnapshot(snapshotAt(4, 1), { keepSuffix: true });
    await store.saveSnapshot(snapshotAt(8, 1), { keepSuffix: true });
    const loaded = await restart();
    expect(loaded.snapshot?.meta.index).toBe(8);
    expect(indexes(loaded.entries)).toEqual([9, 10]);
  });

  it('replaces the whole log with a snapshot from the leader (keepSuffix: false, §7 InstallSnapshot)', async () => {
    await store.load();
    await store.save({ entries: run(1, 10, 1), hardState: { term: 2, vote: 'server-2', commit: 3 } });
    await store.saveSnapshot(snapshotAt(8, 2), { keepSuffix: false });
    await store.save({ entries: [], hardState: { term: 2, vote: 'server-2', commit: 8 } });
    let loaded = await restart();
    expect(loaded.snapshot).toEqual(snapshotAt(8, 2));
    expect(loaded.entries).toEqual([]);
    expect(loaded.hardState.commit).toBe(8);

    await store.save({ entries: run(9, 9, 2) });
    await store.saveSnapshot(snapshotAt(20, 3), { keepSuffix: false });
    loaded = await restart();
    expect(loaded.snapshot?.meta.index).toBe(20);
    expect(loaded.entries).toEqual([]);
    await store.save({ entries: run(21, 22, 3) });
    expect(indexes((await restart()).entries)).toEqual([21, 22]);
  });

  describe('refuses what would break the log, writing nothing', () => {
    beforeEach(async () => {
      await store.load();
      await store.save({ entries: run(1, 5, 2), hardState: { term: 3, vote: 'server-1', commit: 3 } });
    });

    afterEach(async () => {
      const loaded = await restart();
      expect(indexes(loaded.entries)).toEqual([1, 2, 3, 4, 5]);
      expect(loaded.hardState).toEqual({ term: 3, vote: 'server-1', commit: 3 });
    });

    const refusals: Array<[string, () => { entries: Entry[]; hardState?: HardState }]> = [
      ['a gap after the last entry', () => ({ entries: run(7, 7, 2) })],
      ['entries that are not contiguous', () => ({ entries: [normal(6, 2), normal(8, 2)] })],
      ['a term lower than the entry before', () => ({ entries: run(6, 6, 1) })],
      ['rewriting a committed entry with another term (§5.3)', () => ({ entries: run(3, 3, 3) })],
      ['cutting the log below the commit index', () => ({ entries: run(2, 2, 2) })],
      ['a term that decreases', () => ({ entries: [], hardState: { term: 2, vote: '', commit: 3 } })],
      ['a second vote in the same term (§5.2)', () => ({ entries: [], hardState: { term: 3, vote: 'server-2', commit: 3 } })],
      ['a commit index that decreases', () => ({ entries: [], hardState: { term: 3, vote: 'server-1', commit: 2 } })],
      ['a commit index past the log', () => ({ entries: [], hardState: { term: 3, vote: 'server-1', commit: 6 } })],
      ['index 0', () => ({ entries: [normal(0, 2)] })],
      ['a fractional index', () => ({ entries: [normal(5.5, 2)] })],
      ['term 0', () => ({ entries: [normal(6, 0)] })],
      ['an index past 2^53', () => ({ entries: [normal(2 ** 53, 2)] })],
    ];
    it.each(refusals)('%s', async (_what, batch) => {
      await expect(store.save(batch())).rejects.toBeInstanceOf(InvariantViolation);
    });

    it('a rewrite of committed entries with themselves is a retransmission, and allowed', async () => {
      await store.save({ entries: run(2, 5, 2) });
    });

    it('an entry over maxEntryBytes, with a clear error', async () => {
      const big: Entry = { index: 6, term: 2, kind: 'normal', data: new Uint8Array(8 * 1024 * 1024 + 1) };
      const refused = store.save({ entries: [big] });
      await expect(refused).rejects.toBeInstanceOf(StorageLimitError);
      await expect(refused).rejects.toThrow(/entry 6 carries 8388609 bytes, over the limit of 8388608 \(maxEntryBytes\)/);
    });

    it('a snapshot not newer than the stored one, or local past the log', async () => {
      await expect(store.saveSnapshot(snapshotAt(9, 2), { keepSuffix: true })).rejects.toBeInstanceOf(InvariantViolation);
      await expect(store.saveSnapshot(snapshotAt(4, 1), { keepSuffix: true })).rejects.toThrow(/has term 1 but the log's entry there has term 2/);
      await expect(store.saveSnapshot(snapshotAt(2, 2), { keepSuffix: false })).rejects.toThrow(/commit index 3 past the log/);
    });
  });

  it('refuses to overwrite entries inside the snapshot', async () => {
    await store.load();
    await store.save({ entries: run(1, 5, 1), hardState: { term: 1, vote: '', commit: 5 } });
    await store.saveSnapshot(snapshotAt(4, 1), { keepSuffix: true });
    await expect(store.save({ entries: run(4, 4, 1) })).rejects.toThrow(/inside the snapshot/);
    await expect(store.saveSnapshot(snapshotAt(4, 1), { keepSuffix: true })).rejects.toThrow(/not newer than the stored snapshot 4/);
  });

  it('is loaded exactly once, before any write', async () => {
    await expect(store.save({ entries: run(1, 1, 1) })).rejects.toThrow(/load\(\)/);
    await store.load();
    await expect(store.load()).rejects.toThrow(/load\(\) is called once/);
  });
});

/**
 * The two stores are one contract: random histories of saves, compactions, snapshots from the
 * leader and restarts leave both with the same loaded state. Each step is drawn as a few numbers
 * and made valid against the current state, so the history exercises the stores, not the checks.
 */
describe.each(durableStores.filter(([name]) => name !== 'LmdbLogStore, commitMode sync'))('MemoryLogStore and %s agree on random histories', (_name, open) => {
  type Step =
    | { op: 'append'; back: number; count: number; bump: boolean }
    | { op: 'hardState'; bump: boolean; vote: number; commitFraction: number }
    | { op: 'localSnapshot'; fraction: number }
    | { op: 'leaderSnapshot'; ahead: number; bump: boolean }
    | { op: 'restart' };

  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('append' as const), back: fc.nat(3), count: fc.integer({ min: 1, max: 4 }), bump: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('hardState' as const), bump: fc.boolean(), vote: fc.nat(2), commitFraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('localSnapshot' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('leaderSnapshot' as const), ahead: fc.nat(5), bump: fc.boolean() }) },
    { weight: 1, arbitrary: fc.constant({ op: 'restart' as const }) },
  );

  it('for 60 histories of up to 30 steps; then, with the newest snapshot file damaged, the store either refuses to start or rebuilds the same log', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 30 }), async (steps) => {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'consulate-log-store-model-'));
        let memory = new MemoryLogStore();
        let durable = open(dir);
        const both = async (action: (store: LogStore) => Promise<void>) => {
          await action(memory);
          await action(durable);
        };
        const restartBoth = async () => {
          memory = memory.crash();
          await durable.close();
          durable = open(dir);
          const [fromMemory, fromDisk] = [await memory.load(), await durable.load()];
          expect(fromDisk).toEqual(fromMemory);
        };
        try {
          await memory.load();
          await durable.load();
          let counter = 0;
          for (const s of steps) {
            const disk = memory.disk;
            const snapIndex = disk.snapshot?.meta.index ?? 0;
            const snapTerm = disk.snapshot?.meta.term ?? 0;
            const last = snapIndex + disk.entries.length;
            const termAt = (i: number) => (i === snapIndex ? snapTerm : disk.entries[i - snapIndex - 1].term);
            const hs = disk.hardState;
            switch (s.op) {
              case 'append': {
                const from = Math.max(snapIndex + 1, hs.commit + 1, last + 1 - s.back);
                const term = Math.max(1, termAt(from - 1)) + (s.bump ? 1 : 0);
                const entries = Array.from({ length: s.count }, (_, i) => normal(from + i, term, `history ${counter++}`));
                await both((store) => store.save({ entries }));
                break;
              }
              case 'hardState': {
                const term = hs.term + (s.bump ? 1 : 0);
                const vote = term === hs.term && hs.vote !== '' ? hs.vote : ['', 'server-1', 'server-2'][s.vote];
                const commit = hs.commit + Math.floor((last - hs.commit) * s.commitFraction);
                await both((store) => store.save({ entries: [], hardState: { term, vote, commit } }));
                break;
              }
              case 'localSnapshot': {
                if (last === snapIndex) break;
                const index = snapIndex + 1 + Math.floor((last - snapIndex - 1) * s.fraction);
                const snapshot = snapshotAt(index, termAt(index));
                await both((store) => store.saveSnapshot(snapshot, { keepSuffix: true }));
                break;
              }
              case 'leaderSnapshot': {
                const index = Math.max(last + s.ahead, snapIndex + 1);
                const term = Math.max(1, termAt(last)) + (s.bump ? 1 : 0);
                await both((store) => store.saveSnapshot(snapshotAt(index, term), { keepSuffix: false }));
                break;
              }
              case 'restart':
                await restartBoth();
                break;
            }
          }
          await restartBoth();

          // R7: a damaged newest snapshot never yields a different log.
          const expected = memory.disk;
          if (expected.snapshot !== undefined) {
            await durable.close();
            const { term, index } = expected.snapshot.meta;
            const file = path.join(dir, 'snapshots', snapshotFileName(term, index));
            const content = readFileSync(file);
            content[content.length - 1] ^= 0x01;
            writeFileSync(file, content);
            durable = open(dir);
            const loading = durable.load();
            const outcome = await loading.then(
              (state) => state,
              (error: unknown) => error,
            );
            if (outcome instanceof StorageCorruptionError) return;
            const state = outcome as StoredState;
            expect(state.snapshot === undefined || state.snapshot.meta.index < index).toBe(true);
            expect(state.hardState).toEqual(expected.hardState);
            expect(state.entries.filter((e) => e.index > index)).toEqual(expected.entries);
            expect(state.entries.at(-1)?.index ?? state.snapshot?.meta.index ?? 0).toBe(index + expected.entries.length);
            expect(state.warnings).toEqual([expect.stringMatching(/is unusable \(body checksum mismatch\)/)]);
          }
        } finally {
          await durable.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 60 },
    );
  }, 60_000);
});
