/**
 * A lock on one KV key, as Consul's Go api package takes it (api/lock.go; the leader-election
 * recipe): a session with a TTL, then a blocking read of the key until no session holds it, then
 * `?acquire=<session>`; lost when the key's session is no longer ours, which a monitor learns
 * through consistent blocking reads. The key carries Consul's lock flag, so a semaphore on the
 * same prefix is refused ("Existing key does not match lock use") rather than shared.
 */
import { Api, KvPair, errorText, isRetryable, kvAcquire, kvDeleteCas, kvGet, kvRelease } from './kv-api';
import { LockSession, Timing, realTiming } from './lock-session';

/** api.LockFlagValue (0x2ddccbc058a50c18). */
export const LOCK_FLAG_VALUE = '3304740253564472344';
/** api.DefaultLockSessionName. */
export const DEFAULT_LOCK_SESSION_NAME = 'Consul API Lock';
/** api.DefaultLockSessionTTL. */
export const DEFAULT_LOCK_SESSION_TTL = '15s';
/** api.DefaultLockWaitTime: one blocking read's wait. */
export const DEFAULT_LOCK_WAIT_MS = 15_000;
/** api.DefaultLockRetryTime: the pause after a refused acquire under a lock-delay. */
export const DEFAULT_LOCK_RETRY_MS = 5_000;
/** api.DefaultMonitorRetryTime. */
export const DEFAULT_MONITOR_RETRY_MS = 2_000;

export const ERR_LOCK_HELD = 'Lock already held';
export const ERR_LOCK_NOT_HELD = 'Lock not held';
export const ERR_LOCK_IN_USE = 'Lock in use';
export const ERR_LOCK_CONFLICT = 'Existing key does not match lock use';

export interface LockOptions {
  readonly key: string;
  readonly sessionName: string;
  readonly sessionTtl?: string;
  /** How many failed monitor reads (unreachable, or a 500) are ridden out before the lock counts as lost. */
  readonly monitorRetries?: number;
  readonly monitorRetryMs?: number;
  /** The wait of each blocking read; with `lockTryOnce`, the whole time allowed to acquire. */
  readonly lockWaitMs?: number;
  readonly lockTryOnce?: boolean;
}

/** What `Lock.lock` and `Semaphore.acquire` hand back: aborted when the lock or slot is lost. */
export interface Held {
  readonly lost: AbortSignal;
}

/** The common shape of a lock and a semaphore, for `consulate lock`. */
export interface LockLike {
  /** Held, or undefined when `stop` aborted or a one-shot wait ran out; throws on an error. */
  acquire(stop: AbortSignal): Promise<Held | undefined>;
  release(): Promise<void>;
  /** Removes the coordination key when nobody uses it; throws `inUseError` when somebody does. */
  destroy(): Promise<void>;
  readonly inUseError: string;
}

export class Lock implements LockLike {
  readonly inUseError = ERR_LOCK_IN_USE;
  private held = false;
  private session: LockSession | undefined;
  private monitorStop: AbortController | undefined;
  private readonly options: Required<LockOptions>;

  constructor(
    private readonly api: Api,
    options: LockOptions,
    private readonly timing: Timing = realTiming,
  ) {
    if (options.key === '') throw new Error('missing key');
    this.options = {
      key: options.key,
      sessionName: options.sessionName || DEFAULT_LOCK_SESSION_NAME,
      sessionTtl: options.sessionTtl || DEFAULT_LOCK_SESSION_TTL,
      monitorRetries: options.monitorRetries ?? 0,
      monitorRetryMs: options.monitorRetryMs || DEFAULT_MONITOR_RETRY_MS,
      lockWaitMs: options.lockWaitMs || DEFAULT_LOCK_WAIT_MS,
      lockTryOnce: options.lockTryOnce === true,
    };
  }

  async acquire(stop: AbortSignal): Promise<Held | undefined> {
    if (this.held) throw new Error(ERR_LOCK_HELD);
    let session: LockSession;
    try {
      session = await LockSession.create(this.api, { name: this.options.sessionName, ttl: this.options.sessionTtl }, this.timing);
    } catch (err) {
      throw new Error(`failed to create session: ${errorText(err)}`);
    }
    this.session = session;
    try {
      const held = await this.waitAndAcquire(session.id, stop);
      if (held) {
        this.held = true;
        return { lost: this.monitor(session.id) };
      }
      return undefined;
    } finally {
      // Not held: the session goes (Lock's deferred close of sessionRenew).
      if (!this.held) {
        this.session = undefined;
        await session.end();
      }
    }
  }

  /** Lock's WAIT loop: true once our session holds the key, false when told to stop or out of time. */
  private async waitAndAcquire(session: string, stop: AbortSignal): Promise<boolean> {
    const { key, lockWaitMs, lockTryOnce } = this.options;
    const start = this.timing.now();
    let attempts = 0;
    let index = 0;
    let waitMs = lockWaitMs;
    for (;;) {
      if (stop.aborted) return false;
      if (lockTryOnce && attempts > 0) {
        const elapsed = this.timing.now() - start;
        if (elapsed > lockWaitMs) return false;
        waitMs = lockWaitMs - elapsed;
      }
      attempts++;
      let read: { pair?: KvPair; index: number };
      try {
        read = await kvGet(this.api, key, { index, waitMs, signal: stop });
      } catch (err) {
        if (stop.aborted) return false;
        throw new Error(`failed to read lock: ${errorText(err)}`);
      }
      const pair = read.pair;
      if (pair !== undefined && pair.Flags !== LOCK_FLAG_VALUE) throw new Error(ERR_LOCK_CONFLICT);
      if (pair !== undefined && pair.Session === session) return true;
      if (pair !== undefined && pair.Session !== '') {
        index = read.index;
        continue;
      }
      let locked: boolean;
      try {
        locked = await kvAcquire(this.api, { key, flags: LOCK_FLAG_VALUE }, session);
      } catch (err) {
        throw new Error(`failed to acquire lock: ${errorText(err)}`);
      }
      if (locked) return true;
      // Why not: another holder (then block on the key), or a lock-delay (then wait a while).
      const why = await kvGet(this.api, key, { waitMs }).catch((err: unknown) => {
        throw new Error(errorText(err));
      });
      if (why.pair !== undefined && why.pair.Session !== '') {
        index = why.index;
        continue;
      }
      index = 0;
      if (!(await this.timing.sleep(DEFAULT_LOCK_RETRY_MS, stop))) return false;
    }
  }

  /** monitorLock: aborts the returned signal once the key's session is not ours. */
  private monitor(session: string): AbortSignal {
    const lost = new AbortController();
    const stop = new AbortController();
    this.monitorStop = stop;
    const { key, monitorRetries, monitorRetryMs } = this.options;
    void (async () => {
      let index = 0;
      let retries = monitorRetries;
      for (;;) {
        let read: { pair?: KvPair; index: number };
        try {
          read = await kvGet(this.api, key, { index, consistent: true, signal: stop.signal });
        } catch (err) {
          // Ride out a brief unavailability, with non-blocking retries.
          if (!stop.signal.aborted && retries > 0 && isRetryable(err)) {
            if (!(await this.timing.sleep(monitorRetryMs, stop.signal))) break;
            retries--;
            index = 0;
            continue;
          }
          break;
        }
        if (read.pair === undefined || read.pair.Session !== session) break;
        index = read.index;
        retries = monitorRetries;
      }
      lost.abort();
    })();
    return lost.signal;
  }

  /** Unlock: releases the key, stops the monitor and ends the session. */
  async release(): Promise<void> {
    if (!this.held) throw new Error(ERR_LOCK_NOT_HELD);
    this.held = false;
    const session = this.session!;
    this.session = undefined;
    try {
      await kvRelease(this.api, { key: this.options.key, flags: LOCK_FLAG_VALUE }, session.id);
    } catch (err) {
      throw new Error(`failed to release lock: ${errorText(err)}`);
    } finally {
      this.monitorStop?.abort();
      await session.end();
    }
  }

  /** Destroy: deletes the key when nobody holds it. */
  async destroy(): Promise<void> {
    if (this.held) throw new Error(ERR_LOCK_HELD);
    let pair: KvPair | undefined;
    try {
      pair = (await kvGet(this.api, this.options.key)).pair;
    } catch (err) {
      throw new Error(`failed to read lock: ${errorText(err)}`);
    }
    if (pair === undefined) return;
    if (pair.Flags !== LOCK_FLAG_VALUE) throw new Error(ERR_LOCK_CONFLICT);
    if (pair.Session !== '') throw new Error(ERR_LOCK_IN_USE);
    let removed: boolean;
    try {
      removed = await kvDeleteCas(this.api, this.options.key, pair.ModifyIndex);
    } catch (err) {
      throw new Error(`failed to remove lock: ${errorText(err)}`);
    }
    if (!removed) throw new Error(ERR_LOCK_IN_USE);
  }
}
