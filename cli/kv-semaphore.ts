/**
 * A semaphore of N slots under a KV prefix, as Consul's Go api package runs it (api/semaphore.go):
 * each contender holds `<prefix>/<session>` with its session (Behavior "delete", so the key goes
 * with the session), and the slots are the holders listed in `<prefix>/.lock`
 * (`{"Limit":N,"Holders":{"<session>":true}}`), changed only by check-and-set. A holder whose
 * contender key is gone is pruned; a slot is lost once our session is no longer a live holder.
 */
import { posix } from 'node:path';

import { GoMap, marshal } from './go-json';
import { Api, KvPair, errorText, isRetryable, kvAcquire, kvCas, kvDelete, kvDeleteCas, kvGet, kvList } from './kv-api';
import { DEFAULT_MONITOR_RETRY_MS, Held, LockLike } from './kv-lock';
import { LockSession, Timing, realTiming } from './lock-session';

/** api.SemaphoreFlagValue (0xe0f69a2baa414de0). */
export const SEMAPHORE_FLAG_VALUE = '16210313421097356768';
/** api.DefaultSemaphoreKey: the coordination key under the prefix, the lock's key too. */
export const DEFAULT_SEMAPHORE_KEY = '.lock';
export const DEFAULT_SEMAPHORE_SESSION_NAME = 'Consul API Semaphore';
export const DEFAULT_SEMAPHORE_SESSION_TTL = '15s';
export const DEFAULT_SEMAPHORE_WAIT_MS = 15_000;

export const ERR_SEMAPHORE_HELD = 'Semaphore already held';
export const ERR_SEMAPHORE_NOT_HELD = 'Semaphore not held';
export const ERR_SEMAPHORE_IN_USE = 'Semaphore in use';
export const ERR_SEMAPHORE_CONFLICT = 'Existing key does not match semaphore use';

export interface SemaphoreOptions {
  readonly prefix: string;
  readonly limit: number;
  readonly sessionName: string;
  readonly sessionTtl?: string;
  readonly monitorRetries?: number;
  readonly monitorRetryMs?: number;
  readonly waitMs?: number;
  readonly tryOnce?: boolean;
}

/** semaphoreLock: the value of `<prefix>/.lock`. */
interface SemaphoreLock {
  Limit: number;
  Holders: Record<string, boolean>;
}

export class Semaphore implements LockLike {
  readonly inUseError = ERR_SEMAPHORE_IN_USE;
  private held = false;
  private session: LockSession | undefined;
  private monitorStop: AbortController | undefined;
  private readonly lockKey: string;

  constructor(
    private readonly api: Api,
    private readonly options: SemaphoreOptions,
    private readonly timing: Timing = realTiming,
  ) {
    if (options.prefix === '') throw new Error('missing prefix');
    if (options.limit <= 0) throw new Error('semaphore limit must be positive');
    this.lockKey = posix.join(options.prefix, DEFAULT_SEMAPHORE_KEY);
  }

  async acquire(stop: AbortSignal): Promise<Held | undefined> {
    if (this.held) throw new Error(ERR_SEMAPHORE_HELD);
    let session: LockSession;
    try {
      session = await LockSession.create(this.api, { name: this.options.sessionName || DEFAULT_SEMAPHORE_SESSION_NAME, ttl: this.options.sessionTtl || DEFAULT_SEMAPHORE_SESSION_TTL, behavior: 'delete' }, this.timing);
    } catch (err) {
      throw new Error(`failed to create session: ${errorText(err)}`);
    }
    this.session = session;
    try {
      let made = false;
      let failure = '<nil>';
      try {
        made = await kvAcquire(this.api, { key: posix.join(this.options.prefix, session.id), flags: SEMAPHORE_FLAG_VALUE }, session.id);
      } catch (err) {
        failure = errorText(err);
      }
      if (!made) throw new Error(`failed to make contender entry: ${failure}`);
      if (await this.waitForSlot(session.id, stop)) {
        this.held = true;
        return { lost: this.monitor(session.id) };
      }
      return undefined;
    } finally {
      if (!this.held) {
        this.session = undefined;
        await session.end();
      }
    }
  }

  private async waitForSlot(session: string, stop: AbortSignal): Promise<boolean> {
    const total = this.options.waitMs || DEFAULT_SEMAPHORE_WAIT_MS;
    const start = this.timing.now();
    let attempts = 0;
    let index = 0;
    let waitMs = total;
    for (;;) {
      if (stop.aborted) return false;
      if (this.options.tryOnce && attempts > 0) {
        const elapsed = this.timing.now() - start;
        if (elapsed > total) return false;
        waitMs = total - elapsed;
      }
      attempts++;
      let read: { pairs: KvPair[] | null; index: number };
      try {
        read = await kvList(this.api, this.options.prefix, { index, waitMs, signal: stop });
      } catch (err) {
        if (stop.aborted) return false;
        throw new Error(`failed to read prefix: ${errorText(err)}`);
      }
      const lockPair = this.findLock(read.pairs);
      if (lockPair.Flags !== SEMAPHORE_FLAG_VALUE) throw new Error(ERR_SEMAPHORE_CONFLICT);
      const lock = this.decodeLock(lockPair);
      if (lock.Limit !== this.options.limit) throw new Error(`semaphore limit conflict (lock: ${lock.Limit}, local: ${this.options.limit})`);
      pruneDeadHolders(lock, read.pairs);
      if (Object.keys(lock.Holders).length >= lock.Limit) {
        index = read.index;
        continue;
      }
      lock.Holders[session] = true;
      let set: boolean;
      try {
        set = await kvCas(this.api, this.encodeLock(lock), lockPair.ModifyIndex);
      } catch (err) {
        throw new Error(`failed to update lock: ${errorText(err)}`);
      }
      // Refused: another contender changed `.lock` first; read it again.
      if (set) return true;
    }
  }

  private monitor(session: string): AbortSignal {
    const lost = new AbortController();
    const stop = new AbortController();
    this.monitorStop = stop;
    const retriesAllowed = this.options.monitorRetries ?? 0;
    void (async () => {
      let index = 0;
      let retries = retriesAllowed;
      for (;;) {
        let read: { pairs: KvPair[] | null; index: number };
        try {
          read = await kvList(this.api, this.options.prefix, { index, consistent: true, signal: stop.signal });
        } catch (err) {
          if (!stop.signal.aborted && retries > 0 && isRetryable(err)) {
            if (!(await this.timing.sleep(this.options.monitorRetryMs || DEFAULT_MONITOR_RETRY_MS, stop.signal))) break;
            retries--;
            index = 0;
            continue;
          }
          break;
        }
        let lock: SemaphoreLock;
        try {
          lock = this.decodeLock(this.findLock(read.pairs));
        } catch {
          break;
        }
        pruneDeadHolders(lock, read.pairs);
        if (lock.Holders[session] !== true) break;
        index = read.index;
        retries = retriesAllowed;
      }
      lost.abort();
    })();
    return lost.signal;
  }

  /** Release: our session out of the holders (CAS, re-read on a race), then our contender key deleted. */
  async release(): Promise<void> {
    if (!this.held) throw new Error(ERR_SEMAPHORE_NOT_HELD);
    this.held = false;
    const session = this.session!;
    this.session = undefined;
    try {
      for (;;) {
        const pair = (await kvGet(this.api, this.lockKey)).pair;
        const lock = this.decodeLock(pair ?? { Key: this.lockKey, CreateIndex: 0, ModifyIndex: 0, LockIndex: 0, Flags: '0', Value: null, Session: '' });
        if (lock.Holders[session.id] === undefined) break;
        delete lock.Holders[session.id];
        let set: boolean;
        try {
          set = await kvCas(this.api, this.encodeLock(lock), pair?.ModifyIndex ?? 0);
        } catch (err) {
          throw new Error(`failed to update lock: ${errorText(err)}`);
        }
        if (set) break;
      }
      await kvDelete(this.api, posix.join(this.options.prefix, session.id));
    } finally {
      this.monitorStop?.abort();
      await session.end();
    }
  }

  /** Destroy: deletes `.lock` once no live holder is left in it. */
  async destroy(): Promise<void> {
    if (this.held) throw new Error(ERR_SEMAPHORE_HELD);
    let pairs: KvPair[] | null;
    try {
      pairs = (await kvList(this.api, this.options.prefix)).pairs;
    } catch (err) {
      throw new Error(`failed to read prefix: ${errorText(err)}`);
    }
    const lockPair = this.findLock(pairs);
    if (lockPair.ModifyIndex === 0) return;
    if (lockPair.Flags !== SEMAPHORE_FLAG_VALUE) throw new Error(ERR_SEMAPHORE_CONFLICT);
    const lock = this.decodeLock(lockPair);
    pruneDeadHolders(lock, pairs);
    if (Object.keys(lock.Holders).length > 0) throw new Error(ERR_SEMAPHORE_IN_USE);
    let removed: boolean;
    try {
      removed = await kvDeleteCas(this.api, this.lockKey, lockPair.ModifyIndex);
    } catch (err) {
      throw new Error(`failed to remove semaphore: ${errorText(err)}`);
    }
    if (!removed) throw new Error(ERR_SEMAPHORE_IN_USE);
  }

  /** findLock: the `.lock` pair, or an empty one carrying the semaphore flag. */
  private findLock(pairs: readonly KvPair[] | null): KvPair {
    return (pairs ?? []).find((pair) => pair.Key === this.lockKey) ?? { Key: this.lockKey, CreateIndex: 0, ModifyIndex: 0, LockIndex: 0, Flags: SEMAPHORE_FLAG_VALUE, Value: null, Session: '' };
  }

  private decodeLock(pair: KvPair): SemaphoreLock {
    if (pair.Value === null) return { Limit: this.options.limit, Holders: {} };
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(pair.Value, 'base64').toString('utf8'));
    } catch (err) {
      throw new Error(`lock decoding failed: ${(err as Error).message}`);
    }
    const value = (decoded ?? {}) as { Limit?: unknown; Holders?: unknown };
    const holders: Record<string, boolean> = {};
    if (value.Holders !== null && typeof value.Holders === 'object') for (const [id, on] of Object.entries(value.Holders as Record<string, unknown>)) holders[id] = on === true;
    return { Limit: typeof value.Limit === 'number' ? value.Limit : 0, Holders: holders };
  }

  private encodeLock(lock: SemaphoreLock): { key: string; flags: string; value: Uint8Array } {
    return { key: this.lockKey, flags: SEMAPHORE_FLAG_VALUE, value: Buffer.from(marshal({ Limit: lock.Limit, Holders: new GoMap(lock.Holders) })) };
  }
}

/** pruneDeadHolders: a holder without a live contender key under the prefix is gone. */
function pruneDeadHolders(lock: SemaphoreLock, pairs: readonly KvPair[] | null): void {
  const alive = new Set((pairs ?? []).filter((pair) => pair.Session !== '').map((pair) => pair.Session));
  for (const holder of Object.keys(lock.Holders)) if (!alive.has(holder)) delete lock.Holders[holder];
}
