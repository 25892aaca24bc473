/**
 * What every durable LogStore must show beyond the contract (log-store.test.ts): acknowledged
 * batches survive a SIGKILLed writer whole, and load finds its way back from a damaged newest
 * snapshot (reliability.md P4, R7). Damage is done the way a disk would do it: by rewriting the
 * stored bytes behind the store's back.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { indexes, run, snapshotAt } from '../testing/log-entries';
import { LmdbLogStore } from './lmdb-log-store';
import { LogStore, StoredState } from './log-store';
import { SNAPSHOT_HEADER_BYTES, snapshotFileName, writeSnapshotFile } from './snapshot-file';
import { WalLogStore } from './wal-log-store';

const REPO_ROOT = path.resolve(__dirname, '../../..');


/** A durable store as a child process can build it too: its module, class and options. */
interface Kind {
  readonly file: string;
  readonly className: string;
  readonly options: Record<string, unknown>;
  readonly open: (dataDir: string) => LogStore;
}

const kinds: Array<[string, Kind]> = [
  ['LmdbLogStore', { file: 'lmdb-log-store.ts', className: 'LmdbLogStore', options: {}, open: (dataDir) => new LmdbLogStore({ dataDir }) }],
  [
    'WalLogStore, 4 KiB segments',
    {
      file: 'wal-log-store.ts',
      className: 'WalLogStore',
      options: { segmentBytes: 4096, allocateBytes: 1024 },
      open: (dataDir) => new WalLogStore({ dataDir, segmentBytes: 4096, allocateBytes: 1024 }),
    },
  ],
];

describe.each(kinds)('%s', (_name, kind) => {
  let dir: string;
  let stores: LogStore[] = [];

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'consulate-durable-store-'));
    stores = [];
  });

  afterEach(async () => {
    for (const store of stores) await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function newStore(): LogStore {
    const store = kind.open(dir);
    stores.push(store);
    return store;
  }

  /** Writes with a store, closes it: the state a restart finds. */
  async function prepare(write: (store: LogStore) => Promise<void>): Promise<void> {
    const store = newStore();
    await store.load();
    await write(store);
    await store.close();
  }

  async function restart(): Promise<StoredState> {
    return newStore().load();
  }

  it('keeps every acknowledged batch, whole, when the writing process is SIGKILLed (reliability.md P4)', async () => {
    // The child loads the TypeScript sources through @swc/core, as jest does.
    const child = `
      const fs = require('node:fs');
      const swc = require('@swc/core');
      require.extensions['.ts'] = (module, filename) => {
        const { code } = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
          filename, jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' },
        });
        module._compile(code, filename);
      };
      const { ${kind.className} } = require(${JSON.stringify(path.join(__dirname, kind.file))});
      (async () => {
        const store = new ${kind.className}({ dataDir: ${JSON.stringify(dir)}, ...${JSON.stringify(kind.options)} });
        const loaded = await store.load();
        let next = (loaded.entries.at(-1)?.index ?? 0) + 1;
        for (;;) {
          const entries = [0, 1, 2].map((i) => ({ index: next + i, term: 1, kind: 'normal', data: Buffer.from('command ' + (next + i)) }));
          await store.save({ entries, hardState: { term: 1, vote: 'server-1', commit: next - 1 } });
          process.stdout.write('acked ' + (next + 2) + '\\n');
          next += 3;
        }
      })();
    `;
    let acked = 0;
    for (let round = 0; round < 3; round++) {
      const lastAcked = await new Promise<number>((resolve, reject) => {
        const proc = spawn(process.execPath, ['-e', child], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        let seen = 0;
        let stderr = '';
        proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        proc.stdout.on('data', (chunk: Buffer) => {
          for (const match of chunk.toString().matchAll(/acked (\d+)/g)) seen = Math.max(seen, Number(match[1]));
          if (seen >= acked + 150 && proc.exitCode === null) proc.kill('SIGKILL');
        });
        proc.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve(seen) : reject(new Error(`child exited ${code}: ${stderr}`))));
      });
      const loaded = await restart();
      await stores.pop()!.close();
      const last = loaded.entries.at(-1)?.index ?? 0;
      // The one trace a SIGKILL may leave: a segment killed between creating it and renaming it
      // into place (WalLogStore). A torn frame or anything else would be a lost write.
      expect(loaded.warnings.filter((w) => !/^removed \S+\.wal\.tmp .*a segment that was being created/.test(w))).toEqual([]);
      expect(last).toBeGreaterThanOrEqual(lastAcked);
      expect(indexes(loaded.entries)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      expect(loaded.entries.every((e) => e.kind === 'normal' && Buffer.from(e.data).toString() === `command ${e.index}`)).toBe(true);
      // Batches of three with the hard state: all of a batch or none of it.
      expect(last % 3).toBe(0);
      expect(loaded.hardState.commit).toBe(last - 3);
      acked = last;
    }
  }, 30_000);


  describe('load: snapshots', () => {
    const snapshotsDir = () => path.join(dir, 'snapshots');
    const snapshotFiles = () => readdirSync(snapshotsDir()).sort();
    const damage = (term: number, index: number) => {
      const file = path.join(snapshotsDir(), snapshotFileName(term, index));
      const content = readFileSync(file);
      content[SNAPSHOT_HEADER_BYTES + 2] ^= 0x40;
      writeFileSync(file, content);
    };

    it('keeps the newest two snapshot files', async () => {
      await prepare(async (store) => {
        await store.save({ entries: run(1, 20, 1), hardState: { term: 1, vote: '', commit: 20 } });
        for (const index of [5, 10, 15, 20]) await store.saveSnapshot(snapshotAt(index, 1), { keepSuffix: true });
      });
      expect(snapshotFiles()).toEqual([snapshotFileName(1, 15), snapshotFileName(1, 20)]);
      expect((await restart()).snapshot?.meta.index).toBe(20);
    });

    it('falls back to the older snapshot when the newest is corrupt and the log covers the gap, with a warning', async () => {
      await prepare(async (store) => {
        await store.save({ entries: run(1, 12, 1), hardState: { term: 1, vote: '', commit: 12 } });
        await store.saveSnapshot(snapshotAt(4, 1), { keepSuffix: true });
        await store.saveSnapshot(snapshotAt(8, 1), { keepSuffix: true });
      });
      damage(1, 8);
      const loaded = await restart();
      expect(loaded.snapshot).toEqual(snapshotAt(4, 1));
      expect(indexes(loaded.entries)).toEqual([5, 6, 7, 8, 9, 10, 11, 12]);
      expect(loaded.warnings).toEqual([
        `snapshot ${snapshotFileName(1, 8)} in ${snapshotsDir()} is unusable (body checksum mismatch); started from the older snapshot ` +
          `${snapshotFileName(1, 4)} and the log after it; the bad file is kept as ${snapshotFileName(1, 8)}.corrupt`,
      ]);
      await stores.pop()!.close();
      const again = await restart();
      expect(again.warnings).toEqual([]);
      expect(again.snapshot?.meta.index).toBe(4);
      expect(snapshotFiles()).toContain(`${snapshotFileName(1, 8)}.corrupt`);
    });

    it('falls back to the start of the log when the first snapshot is corrupt and the log still starts at 1', async () => {
      await prepare(async (store) => {
        await store.save({ entries: run(1, 6, 1), hardState: { term: 1, vote: '', commit: 6 } });
        await store.saveSnapshot(snapshotAt(3, 1), { keepSuffix: true });
      });
      damage(1, 3);
      const loaded = await restart();
      expect(loaded.snapshot).toBeUndefined();
      expect(indexes(loaded.entries)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(loaded.warnings[0]).toMatch(/started from the start of the log/);
    });

    it('stops when the newest snapshot is corrupt and no older one joins the log (a snapshot from the leader)', async () => {
      await prepare(async (store) => {
        await store.save({ entries: run(1, 6, 1), hardState: { term: 1, vote: '', commit: 6 } });
        await store.saveSnapshot(snapshotAt(3, 1), { keepSuffix: true });
        await store.saveSnapshot(snapshotAt(50, 2), { keepSuffix: false });
      });
      damage(2, 50);
      await expect(restart()).rejects.toThrow(
        `this server's newest snapshot ${snapshotFileName(2, 50)} is corrupt in ${dir} (body checksum mismatch; no older snapshot that the stored log continues from): stop it`,
      );
    });

    it('removes what a crash in the middle of saveSnapshot left, and keeps the state from before it', async () => {
      await prepare(async (store) => {
        await store.save({ entries: run(1, 6, 1), hardState: { term: 1, vote: '', commit: 6 } });
      });
      // The file was written and renamed, the pointer commit never happened; another write was cut short.
      await writeSnapshotFile(snapshotsDir(), snapshotAt(5, 1));
      writeFileSync(path.join(snapshotsDir(), `${snapshotFileName(1, 6)}.tmp`), 'half a snapshot');
      const loaded = await restart();
      expect(loaded.snapshot).toBeUndefined();
      expect(indexes(loaded.entries)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(loaded.warnings).toHaveLength(2);
      expect(loaded.warnings.join('\n')).toMatch(/removed .*\.snap\.tmp .*a snapshot write that did not finish/);
      expect(snapshotFiles()).toEqual([]);
    });
  });
});
