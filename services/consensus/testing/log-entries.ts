/** Log entries and snapshots for the storage tests: small, readable, and each one different. */
import { Entry, Snapshot } from '../raft/types';

export const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));

export function normal(index: number, term: number, text = `command ${index}`): Entry {
  return { index, term, kind: 'normal', data: bytes(text) };
}

/** Entries `from` to `to`, all of `term`. */
export function run(from: number, to: number, term: number): Entry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => normal(from + i, term));
}

export function snapshotAt(index: number, term: number, text = `state at ${index}`): Snapshot {
  return {
    meta: { index, term, members: [{ id: 'server-1', address: '127.0.1.1:8310', learner: false }] },
    data: bytes(text),
  };
}

export const indexes = (entries: readonly Entry[]): number[] => entries.map((e) => e.index);
