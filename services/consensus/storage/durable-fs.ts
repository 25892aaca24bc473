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
 * Writes `chunks` as `directory/name`, durably and atomically: to `name.tmp`, fsync, rename, fsync
 * the directory. A file of that name is replaced.
 */
export async function writeFileDurably(directory: string, name: string, chunks: readonly Uint8Array[]): Promise<void> {
  const finalPath = path.join(directory, name);
  const temporaryPath = finalPath + TEMPORARY_SUFFIX;
  const handle = await fs.open(temporaryPath, 'w');
  try {
    for (const chunk of chunks) {
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temporaryPath, finalPath);
  await fsyncDirectory(directory);
}
