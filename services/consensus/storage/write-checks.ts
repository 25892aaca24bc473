/**
 * The checks every LogStore runs before it writes anything: the limits (TigerBeetle's "a limit on
 * everything") and the log invariants of the Raft paper that a storage layer can see. Every store
 * runs the same code, so a shell bug a server's store would catch is caught by `MemoryLogStore` in
 * unit tests first. A limit is a `StorageLimitError` (a too-large command, the caller's to refuse); a
 * broken invariant is an `InvariantViolation` (a bug; the process must stop). Nothing is written
 * when a check fails.
 */
import { invariant } from '../../lib/invariant';
import { Entry, HardState, Snapshot } from '../raft/types';
import { SaveBatch, StorageLimitError } from './log-store';

export interface StorageLimits {
  /** The most payload bytes one entry may carry (a command's data). Default 8 MiB. */
  readonly maxEntryBytes: number;
  /** The most entries one `save` may carry. Default 10,000. */
  readonly maxBatchEntries: number;
  /** The most payload bytes one `save` may carry, all entries together. Default 64 MiB. */
  readonly maxBatchBytes: number;
  /** The largest snapshot, state machine data included. Default 1 GiB (a file read whole at start). */
  readonly maxSnapshotBytes: number;
  /** The longest vote (a node id), in UTF-8 bytes. Default 256. */
  readonly maxNodeIdBytes: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_STORAGE_LIMITS: StorageLimits = {
  maxEntryBytes: 8 * MiB,
  maxBatchEntries: 10_000,
  maxBatchBytes: 64 * MiB,
  maxSnapshotBytes: 1024 * MiB,
  maxNodeIdBytes: 256,
};

/** What the checks need to know about the stored log, whichever store holds it. */
export interface StoredLogView {
  readonly hardState: HardState;
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  /** The last index of the log: the last entry's, or the snapshot's when no entry follows it. */
  readonly lastIndex: number;
  /** The term of the entry at `index`, for snapshotIndex <= index <= lastIndex. */
  termAt(index: number): number;
}

export function withDefaultLimits(limits: Partial<StorageLimits> | undefined): StorageLimits {
  const merged = { ...DEFAULT_STORAGE_LIMITS, ...limits };
  for (const [name, value] of Object.entries(merged)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`storage limit ${name} must be a positive integer, got ${String(value)}`);
    }
  }
  return merged;
}

export function isPositiveIndex(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0;
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

export function payloadBytes(entry: Entry): number {
  switch (entry.kind) {
    case 'normal':
      return entry.data.byteLength;
    case 'config':
      return Buffer.byteLength(entry.change.member.id) + Buffer.byteLength(entry.change.member.address);
    case 'noop':
      return 0;
  }
}

/** An entry's own shape: index and term positive safe integers, a known kind, payload under the limit. */
export function checkEntry(entry: Entry, limits: StorageLimits): void {
  invariant(isPositiveIndex(entry.index), () => `entry index must be a positive safe integer, got ${entry.index}`);
  invariant(isPositiveIndex(entry.term), () => `entry ${entry.index}: term must be a positive safe integer, got ${entry.term}`);
  invariant(
    entry.kind === 'normal' || entry.kind === 'config' || entry.kind === 'noop',
    () => `entry ${entry.index}: unknown kind ${String((entry as { kind: unknown }).kind)}`,
  );
  const bytes = payloadBytes(entry);
  if (bytes > limits.maxEntryBytes) {
    throw new StorageLimitError(
      `entry ${entry.index} carries ${bytes} bytes, over the limit of ${limits.maxEntryBytes} (maxEntryBytes): ` +
        `refuse the command before proposing it, or raise the limit`,
    );
  }
}

function checkHardStateShape(hardState: HardState, limits: StorageLimits): void {
  invariant(isCount(hardState.term), () => `hard state term must be a non-negative safe integer, got ${hardState.term}`);
  invariant(isCount(hardState.commit), () => `hard state commit must be a non-negative safe integer, got ${hardState.commit}`);
  invariant(typeof hardState.vote === 'string', 'hard state vote must be a string');
  const voteBytes = Buffer.byteLength(hardState.vote);
  if (voteBytes > limits.maxNodeIdBytes) {
    throw new StorageLimitError(
      `hard state vote "${hardState.vote.slice(0, 40)}…" is ${voteBytes} bytes, over the limit of ${limits.maxNodeIdBytes} (maxNodeIdBytes)`,
    );
  }
}

/**
 * Figure 2's persistent state only moves forward: the term never decreases, a vote once cast in a
 * term is never changed (§5.2: at most one vote per term), and the commit index never decreases.
 * The commit index never passes the log (`lastIndexAfter`): a committed entry is on disk here.
 */
export function checkHardStateChange(before: HardState, after: HardState, lastIndexAfter: number, limits: StorageLimits): void {
  checkHardStateShape(after, limits);
  invariant(after.term >= before.term, () => `term must never decrease: stored ${before.term}, new ${after.term}`);
  invariant(
    after.term > before.term || before.vote === '' || after.vote === before.vote,
    () => `a vote is never changed within a term (§5.2): term ${after.term} voted "${before.vote}", new vote "${after.vote}"`,
  );
  invariant(after.commit >= before.commit, () => `commit index must never decrease: stored ${before.commit}, new ${after.commit}`);
  invariant(
    after.commit <= lastIndexAfter,
    () => `commit index ${after.commit} is past the last log index ${lastIndexAfter}: save the snapshot or entries first`,
  );
}

/**
 * A batch: entries contiguous with non-decreasing terms, starting inside or right after the log
 * (never inside the snapshot, never leaving a gap), not rewriting committed entries (§5.3: Log
 * Matching; committed entries are never overwritten), within the limits.
 */
export function checkSaveBatch(log: StoredLogView, batch: SaveBatch, limits: StorageLimits): void {
  const { entries } = batch;
  if (entries.length > limits.maxBatchEntries) {
    throw new StorageLimitError(
      `a save of ${entries.length} entries is over the limit of ${limits.maxBatchEntries} (maxBatchEntries): split it`,
    );
  }
  let batchBytes = 0;
  entries.forEach((entry, i) => {
    checkEntry(entry, limits);
    batchBytes += payloadBytes(entry);
    if (i > 0) {
      const previous = entries[i - 1];
      invariant(entry.index === previous.index + 1, () => `entries must be contiguous: ${previous.index} then ${entry.index}`);
      invariant(entry.term >= previous.term, () => `terms never decrease along the log: entry ${previous.index} term ${previous.term}, entry ${entry.index} term ${entry.term}`);
    }
  });
  if (batchBytes > limits.maxBatchBytes) {
    throw new StorageLimitError(
      `a save of ${batchBytes} bytes is over the limit of ${limits.maxBatchBytes} (maxBatchBytes): split it`,
    );
  }

  let lastIndexAfter = log.lastIndex;
  if (entries.length > 0) {
    const first = entries[0];
    invariant(
      first.index > log.snapshotIndex,
      () => `entry ${first.index} is inside the snapshot (index ${log.snapshotIndex}): compacted entries are committed and never rewritten`,
    );
    invariant(
      first.index <= log.lastIndex + 1,
      () => `entry ${first.index} would leave a gap after the last index ${log.lastIndex}`,
    );
    const termBefore = log.termAt(first.index - 1);
    invariant(
      first.term >= termBefore,
      () => `terms never decrease along the log: entry ${first.index - 1} term ${termBefore}, entry ${first.index} term ${first.term}`,
    );
    // Rewriting a committed entry is allowed only with itself (a retransmission).
    const lastCommittedRewritten = Math.min(log.hardState.commit, log.lastIndex, entries[entries.length - 1].index);
    for (let index = first.index; index <= lastCommittedRewritten; index++) {
      const stored = log.termAt(index);
      const rewritten = entries[index - first.index].term;
      invariant(
        stored === rewritten,
        () => `entry ${index} is committed (commit ${log.hardState.commit}) with term ${stored}; it must never be overwritten (term ${rewritten})`,
      );
    }
    lastIndexAfter = entries[entries.length - 1].index;
    invariant(
      lastIndexAfter >= log.hardState.commit,
      () => `the batch would cut the log to ${lastIndexAfter}, dropping committed entries up to ${log.hardState.commit}`,
    );
  }
  if (batch.hardState !== undefined) checkHardStateChange(log.hardState, batch.hardState, lastIndexAfter, limits);
}

/**
 * A snapshot: newer than the current one; a local one (`keepSuffix`) covers an entry we hold with
 * the same term; one from the leader may be anywhere ahead, and the commit index must not pass it
 * once it replaces the log.
 */
export function checkSnapshot(log: StoredLogView, snapshot: Snapshot, keepSuffix: boolean, limits: StorageLimits): void {
  const { index, term, members } = snapshot.meta;
  invariant(isPositiveIndex(index), () => `snapshot index must be a positive safe integer, got ${index}`);
  invariant(isPositiveIndex(term), () => `snapshot ${index}: term must be a positive safe integer, got ${term}`);
  invariant(Array.isArray(members), () => `snapshot ${index}: members must be an array`);
  invariant(
    index > log.snapshotIndex,
    () => `snapshot ${index} is not newer than the stored snapshot ${log.snapshotIndex}`,
  );
  invariant(term >= log.snapshotTerm, () => `snapshot ${index} has term ${term}, older than the stored snapshot's ${log.snapshotTerm}`);
  const bytes = snapshot.data.byteLength;
  if (bytes > limits.maxSnapshotBytes) {
    throw new StorageLimitError(
      `snapshot ${index} is ${bytes} bytes, over the limit of ${limits.maxSnapshotBytes} (maxSnapshotBytes): raise the limit`,
    );
  }
  for (const member of members) {
    if (Buffer.byteLength(member.id) > limits.maxNodeIdBytes) {
      throw new StorageLimitError(`snapshot ${index}: member id "${member.id.slice(0, 40)}…" is over ${limits.maxNodeIdBytes} bytes (maxNodeIdBytes)`);
    }
  }
  if (keepSuffix) {
    invariant(
      index <= log.lastIndex,
      () => `a local snapshot (keepSuffix) at ${index} must cover an entry of the log, which ends at ${log.lastIndex}`,
    );
    const stored = log.termAt(index);
    invariant(stored === term, () => `a local snapshot at ${index} has term ${term} but the log's entry there has term ${stored}`);
  } else {
    invariant(
      log.hardState.commit <= index,
      () => `a snapshot from the leader at ${index} would leave the commit index ${log.hardState.commit} past the log`,
    );
  }
}
