/**
 * Shares one consensus revision probe among the reads that wait for it. A default or consistent
 * read must see every write acknowledged before it began, so it may only use a probe *sent after
 * it arrived*: one already in flight could have been answered before that write. So a read that
 * arrives while a probe is in flight waits for the next one, which is sent when the current one
 * settles, and every read that arrived meanwhile shares it (etcd's ReadIndex batching, one level
 * up). At most one probe in flight and one queued, however many reads wait: under load, reads
 * cost two probes' round trips at most, not one RPC each.
 */
export class RevisionBarrier {
  private inFlight: Promise<number> | undefined;
  private queued: Promise<number> | undefined;

  constructor(private readonly probe: () => Promise<number>) {}

  /** A revision from a probe sent after this call began. */
  revision(): Promise<number> {
    if (this.inFlight === undefined) return this.send();
    this.queued ??= this.inFlight.then(
      () => this.sendQueued(),
      () => this.sendQueued(),
    );
    return this.queued;
  }

  private sendQueued(): Promise<number> {
    this.queued = undefined;
    return this.send();
  }

  private send(): Promise<number> {
    const probe = this.probe();
    this.inFlight = probe;
    const settle = () => {
      if (this.inFlight === probe) this.inFlight = undefined;
    };
    probe.then(settle, settle);
    return probe;
  }
}
