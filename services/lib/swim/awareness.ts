/**
 * Lifeguard's local health multiplier (memberlist `awareness.go`): missed acks and nacks, and
 * having to refute a suspicion, are evidence that *this* member is slow; the score scales the
 * probe interval and timeouts up, so a slow member stops accusing healthy ones.
 */
export class Awareness {
  private score = 0;

  /** @param max the multiplier ceiling (AwarenessMaxMultiplier); the score stays in [0, max − 1]. */
  constructor(private readonly max: number) {}

  applyDelta(delta: number): void {
    this.score = Math.min(this.max - 1, Math.max(0, this.score + delta));
  }

  /** 0 is healthy. */
  get healthScore(): number {
    return this.score;
  }

  scaleTimeout(timeoutMs: number): number {
    return timeoutMs * (this.score + 1);
  }
}
