/**
 * Lifeguard's dynamic suspicion timeout (memberlist `suspicion.go`; arXiv 1707.00788 §IV-B): a
 * suspicion starts at the max timeout and shrinks logarithmically toward the min as independent
 * members confirm it, so a member suspected by many is declared dead sooner, and one suspected by a
 * single slow observer gets the longest time to refute.
 */

/** memberlist `suspicionTimeout`: suspicionMult × max(1, log10 N) × probeInterval. */
export function suspicionTimeoutMs(suspicionMult: number, members: number, probeIntervalMs: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, members)));
  // memberlist truncates to milliseconds to avoid float noise in the timers.
  return Math.floor(suspicionMult * nodeScale * probeIntervalMs);
}

/** memberlist `remainingSuspicionTime`: the timeout after `confirmations` of `expected`, minus time already spent. */
export function remainingSuspicionMs(confirmations: number, expected: number, elapsedMs: number, minMs: number, maxMs: number): number {
  const fraction = Math.log(confirmations + 1) / Math.log(expected + 1);
  const raw = maxMs - fraction * (maxMs - minMs);
  const timeout = Math.max(Math.floor(raw), minMs);
  return timeout - elapsedMs;
}

export class Suspicion {
  private readonly confirmedBy = new Set<string>();
  private confirmations = 0;
  /** When this suspicion fires, on the core's clock. */
  deadlineMs: number;

  /**
   * @param expected confirmations that bring the timeout down to `minMs` (k = suspicionMult − 2;
   *   0 when the pool is too small to expect any, which makes the timeout `minMs` at once).
   */
  constructor(
    from: string,
    private readonly expected: number,
    private readonly minMs: number,
    private readonly maxMs: number,
    readonly startedMs: number,
  ) {
    this.confirmedBy.add(from);
    this.deadlineMs = startedMs + (expected < 1 ? minMs : maxMs);
  }

  /**
   * Counts an independent confirmation from `from`; true when it was new (and so worth
   * re-gossiping, memberlist's rule), false when already counted or no more are needed.
   */
  confirm(from: string, nowMs: number): boolean {
    if (this.confirmations >= this.expected) return false;
    if (this.confirmedBy.has(from)) return false;
    this.confirmedBy.add(from);
    this.confirmations++;
    const remaining = remainingSuspicionMs(this.confirmations, this.expected, nowMs - this.startedMs, this.minMs, this.maxMs);
    this.deadlineMs = nowMs + Math.max(0, remaining);
    return true;
  }

  get confirmationCount(): number {
    return this.confirmations;
  }
}
