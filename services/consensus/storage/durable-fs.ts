/**
 * Making a file or a directory entry survive power loss on Linux. A file's data is durable after
 * fsync of the file; its name is durable only after fsync of the directory holding it (a created
 * or renamed file can vanish otherwise: ext4 with data=ordered, and the ALICE study, Pillai et al.,
 * OSDI 2014). A complete file appears under its final name only by rename after fsync, so a crash
 * leaves either the old state or the whole new file, plus at worst a `.tmp` file to delete.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** fsync a directory, so the names created, renamed or removed in it are durable. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await fs.open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Creates `directory` (and missing parents), making each created name durable. */
export async function makeDirectoryDurably(directory: string): Promise<void> {
  const absolute = path.resolve(directory);
  const firstCreated = await fs.mkdir(absolute, { recursive: true });
  if (firstCreated === undefined) return;
  // Every directory from the first one created down to `absolute` is new: fsync its parent.
  for (let created = absolute; ; created = path.dirname(created)) {
    await fsyncDirectory(path.dirname(created));
    if (created === path.resolve(firstCreated)) break;
  }
}

export const TEMPORARY_SUFFIX = '.tmp';

/**
 * A large file is synced as it is written, every this many bytes (RocksDB's bytes_per_sync): one
 * fsync at the end would put all of it in the disk's queue at once, and every other fsync on that
 * disk (a server's write-ahead log's, on its main thread) waits behind it. This alone did not stop
 * a 3-server cluster under writes losing its leader when all three wrote a 27 MB snapshot at once;
 * spreading the servers' snapshots did (ConsensusNodeOptions.snapshotSpread).
 */
export const SYNC_EVERY_BYTES = 1024 * 1024;

/**
 * Writes `chunks` as `directory/name`, durably and atomically: to `name.tmp`, fsync, rename, fsync
 * the directory. A file of that name is replaced.
 */
export async function writeFileDurably(directory: string, name: string, chunks: readonly Uint8Array[]): Promise<void> {
  const finalPath = path.join(directory, name);
  const temporaryPath = finalPath + TEMPORARY_SUFFIX;
  const handle = await fs.open(temporaryPath, 'w');
  try {
    let unsynced = 0;
    for (const chunk of chunks) {
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, written, Math.min(chunk.byteLength - written, SYNC_EVERY_BYTES - unsynced));
        written += bytesWritten;
        unsynced += bytesWritten;
        if (unsynced >= SYNC_EVERY_BYTES) {
          await handle.datasync();
          unsynced = 0;
        }
      }
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temporaryPath, finalPath);
  await fsyncDirectory(directory);
}
