/**
 * The KV state machine's errors, and its invariant check.
 *
 * A `KvError` is a request that fails as etcd's would: the message is etcd's exact gRPC text
 * (clientv3 recognises errors by that text), the `code` is the gRPC status the adapter answers
 * with, and `detail` says what was wrong with this request and what to do, for logs and for a
 * trailer. `apply` returns a KvError, it never throws one: a command that fails leaves the state
 * as it was, identically on every server.
 *
 * An `InvariantError` is the opposite: the store found itself in a state it must never reach
 * (a revision going backwards, a key's history out of order). It is thrown, and assertions stay
 * on in production (TigerBeetle): continuing would make this server's state differ from its peers'.
 */

/** The gRPC status the adapter maps each error to. */
export type KvErrorCode =
  | 'INVALID_ARGUMENT'
  | 'OUT_OF_RANGE'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'ALREADY_EXISTS'
  | 'RESOURCE_EXHAUSTED';

export class KvError extends Error {
  override readonly name = 'KvError';

  constructor(
    readonly code: KvErrorCode,
    /** etcd's text where etcd has one; send it as the status message unchanged. */
    message: string,
    /** What was wrong with this request and what to do about it. */
    readonly detail?: string,
    /** For a compacted revision: the store's compact revision, for a watcher to resume after. */
    readonly compactRevision?: bigint,
    /** For a watcher cancelled behind: the first revision it did not get, to watch again from. */
    readonly resumeRevision?: bigint,
  ) {
    super(message);
  }

  override toString(): string {
    return this.detail === undefined ? `${this.code}: ${this.message}` : `${this.code}: ${this.message} (${this.detail})`;
  }
}

/** etcd's messages (api/v3rpc/rpctypes), one constructor each so every caller spells them alike. */
export const kvErrors = {
  keyNotProvided: (detail?: string) => new KvError('INVALID_ARGUMENT', 'etcdserver: key is not provided', detail),
  requestTooLarge: (detail: string) => new KvError('INVALID_ARGUMENT', 'etcdserver: request is too large', detail),
  tooManyOps: (detail: string) => new KvError('INVALID_ARGUMENT', 'etcdserver: too many operations in txn request', detail),
  duplicateKey: (detail: string) => new KvError('INVALID_ARGUMENT', 'etcdserver: duplicate key given in txn request', detail),
  invalidRequest: (detail: string) => new KvError('INVALID_ARGUMENT', 'etcdserver: invalid request', detail),
  compacted: (compactRevision: number, detail?: string) =>
    new KvError(
      'OUT_OF_RANGE',
      'etcdserver: mvcc: required revision has been compacted',
      detail ?? `revisions up to ${compactRevision} were compacted; read at ${compactRevision} or later`,
      BigInt(compactRevision),
    ),
  futureRevision: (currentRevision: number) =>
    new KvError('OUT_OF_RANGE', 'etcdserver: mvcc: required revision is a future revision', `the store is at revision ${currentRevision}`),
  leaseNotFound: (id: bigint) => new KvError('NOT_FOUND', 'etcdserver: requested lease not found', `no lease ${id}; grant one first`),
  leaseExists: (id: bigint) => new KvError('ALREADY_EXISTS', 'etcdserver: lease already exists', `lease ${id} is granted; choose another ID or 0`),
  leaseTtlTooLarge: (ttl: bigint, max: number) => new KvError('OUT_OF_RANGE', 'etcdserver: too large lease TTL', `ttl ${ttl} s is over the limit of ${max} s`),
  leaseIdsExhausted: () =>
    new KvError('FAILED_PRECONDITION', 'etcdserver: no lease ID left to choose', 'a lease holds the largest int64 ID; grant with an explicit ID'),
  watchNotFound: (watchId: number) => new KvError('NOT_FOUND', 'etcdserver: watch not found', `watch ${watchId} was cancelled or never created`),
  tooManyWatchers: (limit: number) =>
    new KvError('RESOURCE_EXHAUSTED', 'etcdserver: too many watchers', `this server holds its limit of ${limit} watchers (maxWatchers); cancel some or watch through another server`),
  watcherTooSlow: (watchId: number, limit: number, resumeRevision: number) =>
    new KvError(
      'RESOURCE_EXHAUSTED',
      'etcdserver: watcher cancelled: it fell behind',
      `watch ${watchId} had more than ${limit} undelivered events (maxPendingEventsPerWatcher); watch again from revision ${resumeRevision}`,
      undefined,
      BigInt(resumeRevision),
    ),
} as const;

/** A broken invariant: thrown, never caught by the state machine; the process should stop. */

/** Broken invariants stop the process loudly, as everywhere else (lib/invariant.ts). */
export { invariant, InvariantViolation } from '../../lib/invariant';
