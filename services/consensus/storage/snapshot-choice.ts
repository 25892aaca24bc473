/**
 * Which snapshot a log continues from at start, for every store that keeps snapshots as files
 * (snapshot-file.ts) beside a log: the one its pointer names if the file verifies; else the newest
 * older one (or none) that the stored entries continue from up to the pointer (reliability.md R7:
 * a damaged newest snapshot never yields a different log). Files newer than the pointer are what a
 * crash left in the middle of a snapshot save: removed.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { Snapshot } from '../raft/types';
import { StorageCorruptionError } from './log-store';
import { SnapshotPointer } from './record-codec';
import { SnapshotFileName, listSnapshotFiles, readSnapshotFile, snapshotFileName } from './snapshot-file';

/** A snapshot file that failed verification keeps its bytes under this suffix, for a post-mortem. */
export const CORRUPT_SUFFIX = '.corrupt';

export interface ChosenSnapshot {
  readonly snapshot: Snapshot | undefined;
  /** The pointer named a snapshot that is unusable: the store must record the one chosen instead. */
  readonly fellBack: boolean;
  /** The unusable file, to rename with `CORRUPT_SUFFIX` once the pointer has moved off it. */
  readonly corruptFile?: string;
}

export interface SnapshotChoiceInput {
  readonly dataDir: string;
  readonly snapshotsDir: string;
  readonly pointer: SnapshotPointer | undefined;
  /** The term of the stored entry at `index`; `undefined` when it is missing or damaged. */
  readonly storedTermAt: (index: number) => number | undefined;
  readonly maxSnapshotBytes: number;
  /** Where to say what was repaired or worked around. */
  readonly warnings: string[];
}

export async function chooseSnapshot(input: SnapshotChoiceInput): Promise<ChosenSnapshot> {
  const { dataDir, snapshotsDir, pointer, storedTermAt, maxSnapshotBytes, warnings } = input;
  const listing = await listSnapshotFiles(snapshotsDir);
  const stray = [
    ...listing.temporary,
    ...listing.snapshots
      .filter((file) => pointer === undefined || file.index > pointer.index || (file.index === pointer.index && file.term !== pointer.term))
      .map((file) => file.name),
  ];
  for (const name of stray) {
    await fs.rm(path.join(snapshotsDir, name), { force: true });
    warnings.push(`removed ${name} from ${snapshotsDir}: a snapshot write that did not finish before a crash`);
  }
  if (pointer === undefined) return { snapshot: undefined, fellBack: false };

  const newestName = snapshotFileName(pointer.term, pointer.index);
  const newest = listing.snapshots.find((file) => file.name === newestName);
  const read = newest === undefined ? { ok: false as const, problem: 'the file is missing' } : await readSnapshotFile(snapshotsDir, newest, maxSnapshotBytes);
  if (read.ok) return { snapshot: read.value, fellBack: false };

  // The entries after `base` up to the pointer must all be stored and good.
  const continuesFrom = (base: { index: number; term: number }): boolean => {
    for (let index = base.index + 1; index <= pointer.index; index++) {
      if (storedTermAt(index) === undefined) return false;
    }
    const atBase = storedTermAt(base.index);
    return atBase === undefined || atBase === base.term;
  };
  const older: Array<SnapshotFileName | undefined> = [...listing.snapshots.filter((file) => file.index < pointer.index), undefined];
  for (const candidate of older) {
    const base = candidate ?? { index: 0, term: 0 };
    if (!continuesFrom(base)) continue;
    let snapshot: Snapshot | undefined;
    if (candidate !== undefined) {
      const candidateRead = await readSnapshotFile(snapshotsDir, candidate, maxSnapshotBytes);
      if (!candidateRead.ok) {
        warnings.push(`snapshot ${candidate.name} in ${snapshotsDir} is corrupt too (${candidateRead.problem})`);
        continue;
      }
      snapshot = candidateRead.value;
    }
    warnings.push(
      `snapshot ${newestName} in ${snapshotsDir} is unusable (${read.problem}); started from ` +
        `${candidate === undefined ? 'the start of the log' : `the older snapshot ${candidate.name}`} and the log after it` +
        (newest === undefined ? '' : `; the bad file is kept as ${newestName}${CORRUPT_SUFFIX}`),
    );
    return { snapshot, fellBack: true, corruptFile: newest?.name };
  }
  throw StorageCorruptionError.record(dataDir, `newest snapshot ${newestName}`, `${read.problem}; no older snapshot that the stored log continues from`);
}
