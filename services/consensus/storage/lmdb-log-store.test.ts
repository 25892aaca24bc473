/**
 * What only the lmdb store can show: one transaction per save,
 * and load's answers to damaged records (reliability.md R7: a torn tail is truncated and the server
 * recovers; corruption anywhere else stops the server with the fix in the message). Damage is done
 * the way a disk would do it: by rewriting the stored bytes behind the store's back.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Database, open } from 'lmdb';

import { Snapshot } from '../raft/types';
import { indexes, normal, run, snapshotAt } from '../testing/log-entries';
import { LmdbLogStore } from './lmdb-log-store';
import { StorageCorruptionError, StorageWriteError, StoredState } from './log-store';
import { encodeFormatRecord, entryKey } from './record-codec';


let dir: string;
let stores: LmdbLogStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'consulate-lmdb-store-'));
  stores = [];
});

afterEach(async () => {
  for (const store of stores) await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function newStore(options: Partial<ConstructorParameters<typeof LmdbLogStore>[0]> = {}): LmdbLogStore {
  const store = new LmdbLogStore({ dataDir: dir, ...options });
  stores.push(store);
  return store;
}

/** Writes with a store, closes it: the state a restart finds. */
async function prepare(write: (store: LmdbLogStore) => Promise<void>): Promise<void> {
  const store = newStore();
  await store.load();
  await write(store);
  await store.close();
}

async function restart(): Promise<StoredState> {
  return newStore().load();
}

/** Changes the stored bytes directly, in lmdb's own transaction, with the store closed. */
async function tamper(change: (entries: Database<Buffer, Buffer>, meta: Database<Buffer, string>) => void): Promise<void> {
  const env = open({ path: path.join(dir, 'log'), maxDbs: 4, overlappingSync: false, encoding: 'binary' });
  const entries = env.openDB<Buffer, Buffer>({ name: 'entries', keyEncoding: 'binary', encoding: 'binary' });
  const meta = env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' });
  env.transactionSync(() => change(entries, meta));
  await env.close();
}

interface Rewritable<K> {
  getBinary(key: K): Buffer | undefined;
  putSync(key: K, value: Buffer): void;
}

function flipLastByte<K>(db: Rewritable<K>, key: K): void {
  const value = Buffer.from(db.getBinary(key)!);
  value[value.length - 1] ^= 0x01;
  db.putSync(key, value);
}

const flipEntry = (index: number) => tamper((entries) => flipLastByte(entries, entryKey(index)));

describe('LmdbLogStore durability', () => {
  it('commits a save in one lmdb transaction, entries and hard state together (one sync point per batch)', async () => {
    const store = newStore();
    await store.load();
    const env = (store as unknown as { env: { batch: (fn: () => void) => Promise<unknown> } }).env;
    const transaction = jest.spyOn(env, 'batch');
    await store.save({ entries: run(1, 100, 1), hardState: { term: 1, vote: 'server-1', commit: 0 } });
    await store.save({ entries: run(101, 101, 1), hardState: { term: 1, vote: 'server-1', commit: 100 } });
    expect(transaction).toHaveBeenCalledTimes(2);
  });

  it('commits on the main thread with commitMode sync, with the same result', async () => {
    const store = newStore({ commitMode: 'sync' });
    await store.load();
    await store.save({ entries: run(1, 5, 1), hardState: { term: 1, vote: '', commit: 2 } });
    await store.saveSnapshot(snapshotAt(2, 1), { keepSuffix: true });
    await store.close();
    const loaded = await restart();
    expect(indexes(loaded.entries)).toEqual([3, 4, 5]);
    expect(loaded.snapshot?.meta.index).toBe(2);
  });

  it('saves the log while a snapshot file is written: only the pointer waits its turn', async () => {
    const store = newStore({ commitMode: 'sync' });
    await store.load();
    await store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: '', commit: 10 } });
    // 32 MiB: its file takes several turns of the event loop to write and fsync.
    const big: Snapshot = { ...snapshotAt(8, 1), data: new Uint8Array(32 * 1024 * 1024).fill(7) };
    const order: string[] = [];
    const snapshotting = store.saveSnapshot(big, { keepSuffix: true }).then(() => order.push('snapshot'));
    await store.save({ entries: run(11, 11, 1) }).then(() => order.push('save'));
    await snapshotting;
    expect(order).toEqual(['save', 'snapshot']);
    await expect(store.saveSnapshot(snapshotAt(9, 1), { keepSuffix: true })).resolves.toBeUndefined();
    await store.close();
    const loaded = await restart();
    expect([loaded.snapshot?.meta.index, indexes(loaded.entries)]).toEqual([9, [10, 11]]);
  });

  it('one snapshot at a time: a second while one is being saved is refused', async () => {
    const store = newStore();
    await store.load();
    await store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: '', commit: 10 } });
    const first = store.saveSnapshot(snapshotAt(4, 1), { keepSuffix: true });
    await expect(store.saveSnapshot(snapshotAt(8, 1), { keepSuffix: true })).rejects.toThrow(/one at a time/);
    await first;
  });

  it('refuses every call after a failed write (fsyncgate: a failed sync is not retried)', async () => {
    const store = newStore();
    await store.load();
    const env = (store as unknown as { env: { batch: () => Promise<unknown> } }).env;
    jest.spyOn(env, 'batch').mockRejectedValueOnce(new Error('EIO: i/o error, fdatasync'));
    const failed = store.save({ entries: run(1, 1, 1) });
    await expect(failed).rejects.toBeInstanceOf(StorageWriteError);
    await expect(failed).rejects.toThrow(/could not commit to the Raft log in .*: EIO: i\/o error, fdatasync; stop this server/);
    await expect(store.save({ entries: run(1, 1, 1) })).rejects.toBeInstanceOf(StorageWriteError);
  });
});

describe('LmdbLogStore load: damaged entries', () => {
  beforeEach(async () => {
    await prepare((store) => store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: 'server-1', commit: 6 } }));
  });

  it('removes a torn last entry (bad checksum) with a warning, and carries on (R7)', async () => {
    await flipEntry(10);
    const loaded = await restart();
    expect(indexes(loaded.entries)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(loaded.warnings).toEqual([
      expect.stringMatching(new RegExp(`^removed the torn last entry 10 of the log in ${dir} \\(checksum mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\)`)),
    ]);
    const store = stores[stores.length - 1];
    await store.save({ entries: [normal(10, 2)] });
    await store.close();
    const again = await restart();
    expect(again.warnings).toEqual([]);
    expect(again.entries.at(-1)).toEqual(normal(10, 2));
  });

  it('removes a torn last entry cut short', async () => {
    await tamper((entries) => entries.putSync(entryKey(10), Buffer.from([1, 2, 3])));
    const loaded = await restart();
    expect(indexes(loaded.entries)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(loaded.warnings[0]).toMatch(/torn last entry 10 .*record of 3 bytes is truncated/);
  });

  it('stops on a bad entry in the middle of the log, naming the index, the directory and the fix', async () => {
    await flipEntry(8);
    const loading = restart();
    await expect(loading).rejects.toBeInstanceOf(StorageCorruptionError);
    await expect(loading).rejects.toThrow(
      `this server's log is corrupt at index 8 in ${dir} (checksum mismatch`,
    );
    await expect(loading).rejects.toThrow(/: stop it, remove its data directory and let it rejoin from the leader's snapshot$/);
    await expect(loading).rejects.toMatchObject({ index: 8, dataDir: dir });
  });

  it('stops on a bad last entry that is committed: truncating it could lose a committed write', async () => {
    await prepare(async (store) => store.save({ entries: [], hardState: { term: 1, vote: 'server-1', commit: 10 } }));
    await flipEntry(10);
    await expect(restart()).rejects.toThrow(/corrupt at index 10 .*the entry is committed \(commit index 10\)/);
  });

  it('stops on a missing entry', async () => {
    await tamper((entries) => entries.removeSync(entryKey(4)));
    await expect(restart()).rejects.toThrow(/corrupt at index 4 in .* \(missing: the log jumps from 3 to 5\)/);
  });

  it('stops on a record stored under the wrong key (a misdirected write)', async () => {
    await tamper((entries) => entries.putSync(entryKey(5), entries.getBinary(entryKey(6))!));
    await expect(restart()).rejects.toThrow(/corrupt at index 5 .*checksum mismatch/);
  });

  it('stops on a damaged hard state', async () => {
    await tamper((_entries, meta) => flipLastByte(meta, 'hardState'));
    await expect(restart()).rejects.toThrow(
      new RegExp(`^this server's hard state \\(term, vote, commit\\) is corrupt in ${dir} \\(checksum mismatch.*\\): stop it, remove its data directory`),
    );
  });

  it('stops when the format marker is missing, or says which format it found', async () => {
    await tamper((_entries, meta) => meta.putSync('format', encodeFormatRecord(2)));
    await expect(restart()).rejects.toThrow(/storage format 2; this build reads format 1: run the version that wrote it/);
    await tamper((_entries, meta) => meta.removeSync('format'));
    await expect(restart()).rejects.toThrow(/format marker is corrupt .*missing from a log that holds data/);
  });
});

describe('LmdbLogStore load: snapshots', () => {
  it('drops a damaged spare entry under the snapshot with a warning: the snapshot covers it', async () => {
    await prepare(async (store) => {
      await store.save({ entries: run(1, 10, 1), hardState: { term: 1, vote: '', commit: 10 } });
      await store.saveSnapshot(snapshotAt(6, 1), { keepSuffix: true });
    });
    await flipEntry(3);
    const loaded = await restart();
    expect(loaded.snapshot?.meta.index).toBe(6);
    expect(indexes(loaded.entries)).toEqual([7, 8, 9, 10]);
    expect(loaded.warnings).toEqual([expect.stringMatching(/dropped stored entries up to 3 .*entry 3 is corrupt, and the snapshot at 6 covers it/)]);
  });

  it('stops on a damaged snapshot pointer', async () => {
    await prepare(async (store) => {
      await store.save({ entries: run(1, 4, 1), hardState: { term: 1, vote: '', commit: 4 } });
      await store.saveSnapshot(snapshotAt(2, 1), { keepSuffix: true });
    });
    await tamper((_entries, meta) => flipLastByte(meta, 'snapshot'));
    await expect(restart()).rejects.toThrow(/snapshot pointer is corrupt in .*checksum mismatch/);
  });

  it('creates its directories in a data directory that does not exist yet', async () => {
    const nested = path.join(dir, 'a', 'b');
    const store = new LmdbLogStore({ dataDir: nested });
    stores.push(store);
    await store.load();
    expect(existsSync(path.join(nested, 'log', 'data.mdb'))).toBe(true);
    expect(existsSync(path.join(nested, 'snapshots'))).toBe(true);
  });
});
