/**
 * What the leader knows of each follower's log (etcd-io/raft `tracker.Progress`):
 *
 *   probe      we do not know where its log matches: send one append, wait for the answer
 *   replicate  it matches up to `match`: stream appends, at most maxInflight unacknowledged
 *   snapshot   it needs a snapshot; wait for it to be installed (or for the timeout, then retry)
 */
import { invariant } from '../../lib/invariant';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** The highest index known to match the leader's log. */
  match = 0;
  /** The next index to send. */
  next: number;
  state: ProgressState = 'probe';
  /** Probe state: an append is out and unanswered; wait before sending another. */
  probeSent = false;
  /** Snapshot state: the snapshot's index, and ticks since it was sent. */
  pendingSnapshot = 0;
  snapshotElapsed = 0;
  /** Leader ticks the pipeline has been full without an acknowledgement moving `match`. */
  stalledElapsed = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** The last index of each append in flight, oldest first. */
  private readonly inflight: number[] = [];

  constructor(
    next: number,
    private readonly maxInflight: number,
  ) {
    this.next = next;
  }

  /** Whether the leader should hold further appends back. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflight.length >= this.maxInflight;
      case 'snapshot':
        return true;
    }
  }

  becomeProbe(): void {
    // After a snapshot, resume from after it; otherwise from after what matches.
    const from = this.state === 'snapshot' ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1;
    this.reset('probe');
    this.next = from;
  }

  becomeReplicate(): void {
    this.reset('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.reset('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** An append ending at `lastIndex` was sent. */
  sentEntries(count: number, lastIndex: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflight.push(lastIndex);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /** The follower matches up to `index`; false when that is old news. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (index > this.match) {
      this.match = index;
      updated = true;
      this.probeSent = false;
      this.stalledElapsed = 0;
    }
    this.next = Math.max(this.next, index + 1);
    while (this.inflight.length > 0 && this.inflight[0] <= index) this.inflight.shift();
    return updated;
  }

  /**
   * The follower rejected the append at `rejected`; `retryAt` is where the logs may match
   * (from its hint). False when the rejection is stale (answers an append we no longer care about).
   */
  maybeDecreaseTo(rejected: number, retryAt: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    if (retryAt < this.match) {
      // A follower that matches up to `match` always hints at or above it (terms never decrease
      // along a log), so this one lost entries it had acknowledged: its disk failed it. Resend
      // them rather than probe the same index forever.
      this.match = retryAt;
    }
    this.next = Math.max(Math.min(rejected, retryAt + 1), this.match + 1);
    invariant(this.next >= 1, 'next index below 1');
    this.probeSent = false;
    return true;
  }

  private reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotElapsed = 0;
    this.stalledElapsed = 0;
    this.inflight.length = 0;
  }
}
