import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Snapshot } from '../raft/types';
import { makeDirectoryDurably } from './durable-fs';
import {
  CHECKSUM_SLICE_BYTES,
  SNAPSHOT_HEADER_BYTES,
  decodeSnapshotFile,
  encodeSnapshotFile,
  encodeSnapshotFileInSlices,
  listSnapshotFiles,
  parseSnapshotFileName,
  readSnapshotFile,
  snapshotFileName,
  writeSnapshotFile,
} from './snapshot-file';

const snapshot: Snapshot = {
  meta: { index: 4096, term: 3, members: [{ id: 'server-1', address: '127.0.1.1:8310', learner: false }] },
  data: Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff),
};

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'consulate-snapshots-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('snapshot file names', () => {
  it('are <term>-<index>.snap in 16 hex digits, as etcd names them', () => {
    expect(snapshotFileName(3, 4096)).toBe('0000000000000003-0000000000001000.snap');
    expect(parseSnapshotFileName('0000000000000003-0000000000001000.snap')).toEqual({ name: '0000000000000003-0000000000001000.snap', term: 3, index: 4096 });
    expect(parseSnapshotFileName('0000000000000003-0000000000001000.snap.tmp')).toBeUndefined();
    expect(parseSnapshotFileName('0000000000000000-0000000000001000.snap')).toBeUndefined();
  });

  it('list newest first, with leftover temporary files apart', async () => {
    for (const [term, index] of [[1, 5], [2, 30], [1, 12]]) writeFileSync(path.join(dir, snapshotFileName(term, index)), '');
    writeFileSync(path.join(dir, `${snapshotFileName(2, 31)}.tmp`), '');
    writeFileSync(path.join(dir, 'notes.txt'), '');
    const listing = await listSnapshotFiles(dir);
    expect(listing.snapshots.map((f) => f.index)).toEqual([30, 12, 5]);
    expect(listing.temporary).toEqual([`${snapshotFileName(2, 31)}.tmp`]);
  });
});

describe('snapshot files', () => {
  it('round-trip through a durable write', async () => {
    const file = await writeSnapshotFile(dir, snapshot);
    expect(existsSync(path.join(dir, `${file.name}.tmp`))).toBe(false);
    expect(await readSnapshotFile(dir, file, 1 << 20)).toEqual({ ok: true, value: snapshot });
  });

  it('checksummed a slice at a time, with a turn between slices: the same bytes', async () => {
    const large: Snapshot = { meta: snapshot.meta, data: Uint8Array.from({ length: 2 * CHECKSUM_SLICE_BYTES + 5 }, (_, i) => (i * 7) & 0xff) };
    let turns = 0;
    const sliced = Buffer.concat(await encodeSnapshotFileInSlices(large, async () => void turns++));
    expect(turns).toBe(2);
    expect(sliced.equals(Buffer.concat(encodeSnapshotFile(large)))).toBe(true);
    expect(decodeSnapshotFile(sliced, large.meta)).toEqual({ ok: true, value: large });
  });

  it('start with the magic, the version and the lengths', () => {
    const header = Buffer.from(encodeSnapshotFile(snapshot)[0]);
    expect(header.length).toBe(SNAPSHOT_HEADER_BYTES);
    expect(header.toString('latin1', 0, 4)).toBe('CSNP');
    expect(header.readUInt16BE(4)).toBe(1);
    expect(header.readBigUInt64BE(12)).toBe(1000n);
  });

  it('fail verification on any flipped byte, header or body', () => {
    const whole = Buffer.concat(encodeSnapshotFile(snapshot));
    for (let offset = 0; offset < whole.length; offset += offset < 64 ? 1 : 97) {
      const damaged = Buffer.from(whole);
      damaged[offset] ^= 0x10;
      expect(decodeSnapshotFile(damaged, snapshot.meta)).toMatchObject({ ok: false });
    }
  });

  it('fail verification when truncated, or when the name does not match the content', () => {
    const whole = Buffer.concat(encodeSnapshotFile(snapshot));
    expect(decodeSnapshotFile(whole.subarray(0, whole.length - 1), snapshot.meta)).toEqual({
      ok: false,
      problem: expect.stringMatching(/truncated/),
    });
    expect(decodeSnapshotFile(whole.subarray(0, 10), snapshot.meta)).toEqual({ ok: false, problem: 'file of 10 bytes is shorter than its header' });
    expect(decodeSnapshotFile(whole, { term: 3, index: 4097 })).toEqual({ ok: false, problem: 'holds snapshot 3/4096, its name says 3/4097' });
  });

  it('over the size limit are refused before they are read', async () => {
    const file = await writeSnapshotFile(dir, { ...snapshot, data: new Uint8Array(3 << 20) });
    expect(await readSnapshotFile(dir, file, 1 << 20)).toEqual({ ok: false, problem: expect.stringMatching(/over the limit of 1048576 \(maxSnapshotBytes\)/) });
  });

  it('replace a file of the same name whole', async () => {
    const file = await writeSnapshotFile(dir, { ...snapshot, data: Uint8Array.of(1) });
    await writeSnapshotFile(dir, snapshot);
    expect(readFileSync(path.join(dir, file.name)).length).toBe(Buffer.concat(encodeSnapshotFile(snapshot)).length);
  });
});

describe('makeDirectoryDurably', () => {
  it('creates missing parents and is a no-op on an existing directory', async () => {
    const nested = path.join(dir, 'a', 'b', 'c');
    await makeDirectoryDurably(nested);
    expect(existsSync(nested)).toBe(true);
    await makeDirectoryDurably(nested);
  });
});
