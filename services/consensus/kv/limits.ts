/**
 * The KV store's limits: a limit on everything a client can make the store hold (TigerBeetle).
 *
 * Request limits (key, value, txn and request sizes, lease TTLs) are checked by `validation.ts` on
 * the server that receives a request, BEFORE it is proposed, so bad input never reaches the log.
 * `apply` does not check them again: servers may run with different limits (a rolling config
 * change), and a log entry must mean the same on every server.
 *
 * Watch limits are each server's own business: watchers are not replicated.
 */

export interface KvLimits {
  /** Longest key, in bytes. Default 1536 (1.5 KiB). */
  readonly maxKeyBytes: number;
  /**
   * Longest value, in bytes. Default 525312: Consul's largest KV value (512 KiB) plus 1 KiB for the
   * catalog's envelope around it (Flags, LockIndex, Session; catalog/state/kv-codec.ts).
   */
  readonly maxValueBytes: number;
  /** Most compares, and most operations in each branch, of one txn. Default 128, etcd's --max-txn-ops. */
  readonly maxTxnOps: number;
  /**
   * Most bytes of keys, range ends and values in one request (a txn counts all of its
   * compares and both branches). Default 1.5 MiB, etcd's --max-request-bytes.
   */
  readonly maxRequestBytes: number;
  /**
   * Shortest lease TTL, in seconds; a grant asking less is raised to it, as etcd does with its
   * minimum TTL. Default 1; a real server sets it above its election timeout.
   */
  readonly minLeaseTtlSeconds: number;
  /** Most watchers one server holds at once. Default 100000. */
  readonly maxWatchers: number;
  /**
   * Most events a watcher may have waiting for its client. A watcher whose client falls further
   * behind is cancelled with RESOURCE_EXHAUSTED and the revision to watch again from, rather than
   * buffered without bound. A watcher with nothing waiting always takes the next revision whole,
   * however many events it has. Default 4096.
   */
  readonly maxPendingEventsPerWatcher: number;
  /** Most events one `pull` hands over (whole revisions: one large revision may exceed it). Default 1000. */
  readonly maxEventsPerPull: number;
}

/** etcd's MaxLeaseTTL: 9,000,000,000 s (about 285 years). Fixed, so `apply` may check it. */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;

/** The smallest lease TTL `apply` accepts; `validation.ts` raises shorter asks to `minLeaseTtlSeconds`. */
export const MIN_LEASE_TTL_SECONDS = 1;

export const DEFAULT_KV_LIMITS: KvLimits = Object.freeze({
  maxKeyBytes: 1536,
  maxValueBytes: 512 * 1024 + 1024,
  maxTxnOps: 128,
  maxRequestBytes: 1.5 * 1024 * 1024,
  minLeaseTtlSeconds: 1,
  maxWatchers: 100_000,
  maxPendingEventsPerWatcher: 4096,
  maxEventsPerPull: 1000,
});

/** The defaults with `overrides` applied, checked: a bad field throws naming the field and the fix. */
export function kvLimits(overrides: Partial<KvLimits> = {}): KvLimits {
  const limits: KvLimits = { ...DEFAULT_KV_LIMITS, ...overrides };
  for (const [field, value] of Object.entries(limits) as [keyof KvLimits, number][]) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new Error(`kv limits: ${field} is ${value}; set it to a whole number of at least 1 (default ${DEFAULT_KV_LIMITS[field]})`);
    }
  }
  if (limits.minLeaseTtlSeconds > MAX_LEASE_TTL_SECONDS) {
    throw new Error(`kv limits: minLeaseTtlSeconds is ${limits.minLeaseTtlSeconds}; set it to at most ${MAX_LEASE_TTL_SECONDS}`);
  }
  if (limits.maxKeyBytes > limits.maxRequestBytes || limits.maxValueBytes > limits.maxRequestBytes) {
    throw new Error('kv limits: maxKeyBytes and maxValueBytes must each be at most maxRequestBytes; raise maxRequestBytes');
  }
  return Object.freeze(limits);
}
