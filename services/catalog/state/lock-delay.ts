/**
 * Consul's lock-delay (agent/consul/state/delay.go, kvs_endpoint.go kvsPreApply): when a session
 * that held a lock ends, the key cannot be acquired again for the session's LockDelay (at most
 * 60 s), so a holder that was cut off has time to notice before someone else takes over.
 *
 * Held in memory, by wall time, as Consul holds it on its leader: each catalog keeps its own and
 * enforces it on the acquires it serves (a client that switches catalogs during the delay can
 * acquire early, as a Consul client can across a leader change).
 */
import { Clock, systemClock } from '../../lib/clock';

/** structs.MaxLockDelay. */
export const MAX_LOCK_DELAY_MS = 60_000;
/** Keys under delay at once; past it the delays ending soonest are dropped (never unbounded). */
export const MAX_DELAYED_KEYS = 100_000;

export class LockDelays {
  private readonly expiries = new Map<string, number>();

  constructor(private readonly clock: Pick<Clock, 'monotonicMs'> = systemClock) {}

  /** Starts (or extends) the delay of `key` by `delayMs` from now. */
  delay(key: string, delayMs: number): void {
    if (delayMs <= 0) return;
    const until = this.clock.monotonicMs() + Math.min(delayMs, MAX_LOCK_DELAY_MS);
    if (until > (this.expiries.get(key) ?? 0)) this.expiries.set(key, until);
    if (this.expiries.size > MAX_DELAYED_KEYS) this.prune();
  }

  /** Whether `key` is still under a lock-delay. */
  isDelayed(key: string): boolean {
    const until = this.expiries.get(key);
    if (until === undefined) return false;
    if (until > this.clock.monotonicMs()) return true;
    this.expiries.delete(key);
    return false;
  }

  get size(): number {
    return this.expiries.size;
  }

  private prune(): void {
    const now = this.clock.monotonicMs();
    for (const [key, until] of this.expiries) if (until <= now) this.expiries.delete(key);
    if (this.expiries.size <= MAX_DELAYED_KEYS) return;
    const soonest = [...this.expiries].sort((a, b) => a[1] - b[1]).slice(0, this.expiries.size - MAX_DELAYED_KEYS);
    for (const [key] of soonest) this.expiries.delete(key);
  }
}
