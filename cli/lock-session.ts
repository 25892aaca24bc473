/**
 * The session a lock or semaphore holds its key with (api/lock.go createSession, api/session.go
 * RenewPeriodic): created with a TTL, renewed every TTL/2 (every second after a failed renewal,
 * until a whole TTL passed without one), destroyed when its holder lets go. A session the server
 * no longer knows is not renewed again; the lock's monitor then sees the lock lost.
 */
import { parseGoDuration } from '../services/lib/go-text';
import { Api, sessionCreate, sessionDestroy, sessionRenew } from './kv-api';

/** How a lock waits: real timers, or a test's. */
export interface Timing {
  now(): number;
  /** Resolves true after `ms`, false as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<boolean>;
}

export const realTiming: Timing = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve(false);
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/** After a failed renewal, the next try comes this soon (RenewPeriodic). */
const RENEW_RETRY_MS = 1_000;

export class LockSession {
  private readonly done = new AbortController();
  private readonly renewing: Promise<void>;

  private constructor(
    private readonly api: Api,
    readonly id: string,
    ttlMs: number,
    private readonly timing: Timing,
  ) {
    this.renewing = this.renewPeriodic(ttlMs);
  }

  /** Session.Create, then renewal in the background. */
  static async create(api: Api, entry: { name: string; ttl: string; behavior?: string }, timing: Timing = realTiming): Promise<LockSession> {
    const ttl = parseGoDuration(entry.ttl);
    if (ttl.error !== undefined) throw new Error(`invalid SessionTTL: ${ttl.error}`);
    const id = await sessionCreate(api, { Name: entry.name, TTL: entry.ttl, Behavior: entry.behavior });
    return new LockSession(api, id, ttl.ns / 1e6, timing);
  }

  /** Stops renewing and destroys the session (best effort, as Consul's doneCh does). */
  async end(): Promise<void> {
    this.done.abort();
    await this.renewing;
  }

  private async renewPeriodic(initialTtlMs: number): Promise<void> {
    let ttlMs = initialTtlMs;
    let waitMs = ttlMs / 2;
    let lastRenew = this.timing.now();
    for (;;) {
      if (this.timing.now() - lastRenew > ttlMs) return;
      if (!(await this.timing.sleep(waitMs, this.done.signal))) {
        await sessionDestroy(this.api, this.id).catch(() => undefined);
        return;
      }
      let entry;
      try {
        entry = await sessionRenew(this.api, this.id);
      } catch {
        waitMs = RENEW_RETRY_MS;
        continue;
      }
      // ErrSessionExpired: nothing left to renew or destroy.
      if (entry === undefined) return;
      const renewed = parseGoDuration(entry.TTL);
      if (renewed.error === undefined && renewed.ns > 0) ttlMs = renewed.ns / 1e6;
      waitMs = ttlMs / 2;
      lastRenew = this.timing.now();
    }
  }
}
