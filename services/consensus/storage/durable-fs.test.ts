/**
 * writeFileDurably: the whole file under its final name and no temporary left, and a large file
 * synced as it is written (every SYNC_EVERY_BYTES), not in one flush at the end that every other
 * fsync on the disk would wait behind.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { SYNC_EVERY_BYTES, writeFileDurably } from './durable-fs';

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'durable-fs-'))));
afterEach(() => {
  jest.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

/** Counts the datasync calls on every FileHandle (its class is not exported; its prototype is shared). */
async function countDatasyncs(): Promise<{ calls: () => number }> {
  const probe = await fs.open(path.join(dir, 'probe'), 'w');
  const prototype = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  await fs.rm(path.join(dir, 'probe'));
  const spy = jest.spyOn(prototype, 'datasync');
  return { calls: () => spy.mock.calls.length };
}

test('a 3.5 MiB file in uneven chunks is written whole, synced after each MiB', async () => {
  const datasyncs = await countDatasyncs();
  const bytes = Buffer.alloc(3.5 * SYNC_EVERY_BYTES);
  for (let i = 0; i < bytes.length; i += 4096) bytes.writeUInt32LE(i, i);
  const chunks = [bytes.subarray(0, 100), bytes.subarray(100, 2 * SYNC_EVERY_BYTES + 7), bytes.subarray(2 * SYNC_EVERY_BYTES + 7)];
  await writeFileDurably(dir, 'big.snap', chunks);
  expect(readFileSync(path.join(dir, 'big.snap')).equals(bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(['big.snap']);
  expect(datasyncs.calls()).toBe(3);
});

test('a small file is synced once, at the end', async () => {
  const datasyncs = await countDatasyncs();
  await writeFileDurably(dir, 'small', [Buffer.from('hello')]);
  expect(readFileSync(path.join(dir, 'small'), 'utf8')).toBe('hello');
  expect(datasyncs.calls()).toBe(0); // the final flush is handle.sync(), data and metadata
});
