/**
 * Exactly one active reconciler per datacenter, however many catalogs run (DESIGN.md data flow 3;
 * Consul runs it on the Raft leader, we elect it): a catalog holds `/sys/reconciler` on a
 * consensus lease. To take it, a catalog grants itself a lease and puts the key in a txn that
 * succeeds only if the key is absent (create_revision == 0); while it holds it, it keeps the lease
 * alive every `renewIntervalMs`; when a catalog dies, its lease expires after `ttlSeconds`, the
 * consensus leader deletes the key, and a standby takes over at its next try.
 *
 * Stepping down is on time, not on news: the consensus leader cannot expire a lease earlier than
 * `ttl` after the last keepalive it granted, which it received after we sent it. So we act only
 * until (send time of the last granted keepalive + ttl − margin), and stop then whether or not we
 * heard anything. Every reconciler write also carries the lease as a fence (reconciler.ts), so a
 * stale holder's write fails even if its clock misbehaves.
 */
import { Compare_Result, Compare_Target, Consistency } from '../gen/consulate/consensus/v1/kv';
import { Clock, TimerHandle } from '../lib/clock';
import { ConsensusClient } from '../lib/consensus-client';
import { Logger } from '../lib/log';

/** What the election needs of the consensus store (its consumer's interface: a test fakes it). */
export interface LeaseStore {
  /** A new lease of `ttlSeconds`; its id. */
  grant(ttlSeconds: number): Promise<bigint>;
  /** Renews a lease; its TTL in seconds, 0 when the lease is gone. */
  keepAlive(lease: bigint): Promise<number>;
  revoke(lease: bigint): Promise<void>;
  /** Puts `key` = `value` on `lease` only if the key is absent; true when it did. */
  acquire(key: string, value: string, lease: bigint): Promise<boolean>;
  /** The key's value, undefined when it is absent. */
  holder(key: string): Promise<string | undefined>;
}

export interface ElectionConfig {
  /** The lock's key. */
  readonly key: string;
  /** Who we are, unique per process: what `holder` shows the others. */
  readonly candidate: string;
  /** The lease's TTL: how long a dead holder blocks the others. Default 5 s. */
  readonly ttlSeconds: number;
  /** Time between keepalives; ttl / 3 or less, so two can be lost. Default 1.5 s. */
  readonly renewIntervalMs: number;
  /** Time between tries while another holds the lock (or the store is unreachable). Default 1 s. */
  readonly retryIntervalMs: number;
  /** How long before the lease could expire we stop acting. Default 1 s. */
  readonly stepDownMarginMs: number;
}

export const ELECTION_DEFAULTS = { ttlSeconds: 5, renewIntervalMs: 1_500, retryIntervalMs: 1_000, stepDownMarginMs: 1_000 } as const;

export type ElectionListener = (active: boolean, lease: bigint | undefined) => void;

type State = 'stopped' | 'standby' | 'active';

export class ReconcilerElection {
  private state: State = 'stopped';
  private lease: bigint | undefined;
  /** We act as the holder until then (on the monotonic clock); after it, the lease may be gone. */
  private actUntilMs = 0;
  private timer: TimerHandle | undefined;
  private deadline: TimerHandle | undefined;
  private lastHolder: string | undefined;
  private lastError = '';

  constructor(
    private readonly config: ElectionConfig,
    private readonly store: LeaseStore,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly listener: ElectionListener,
  ) {
    const problem = electionConfigProblem(config);
    if (problem !== undefined) throw new RangeError(problem);
  }

  get active(): boolean {
    return this.state === 'active';
  }

  /** The lease we hold the lock with, while active. */
  get fence(): bigint | undefined {
    return this.state === 'active' ? this.lease : undefined;
  }

  start(): void {
    if (this.state !== 'stopped') return;
    this.state = 'standby';
    this.schedule(0, () => this.campaign());
  }

  /** The holder learnt it lost the lock (a fenced write failed): step down now. */
  lost(reason: string): void {
    this.stepDown(reason);
  }

  /** Stops; a holder revokes its lease so another catalog takes over at once. */
  async stop(): Promise<void> {
    const wasActive = this.state === 'active';
    const lease = this.lease;
    this.state = 'stopped';
    this.lease = undefined;
    this.clearTimers();
    if (wasActive) this.listener(false, undefined);
    if (lease !== undefined) {
      await this.store.revoke(lease).then(
        () => this.logger.info({ key: this.config.key }, `reconciler: released ${this.config.key}`),
        (err: Error) => this.logger.warn({ err }, `reconciler: could not revoke lease ${lease} (it expires in ${this.config.ttlSeconds} s): ${err.message}`),
      );
    }
  }

  private async campaign(): Promise<void> {
    if (this.state !== 'standby') return;
    let lease: bigint | undefined;
    try {
      const holder = await this.store.holder(this.config.key);
      if (this.state !== 'standby') return;
      if (holder !== undefined) {
        if (holder !== this.lastHolder) this.logger.info({ holder }, `reconciler: standby, ${holder} is the active reconciler`);
        this.lastHolder = holder;
        this.schedule(this.config.retryIntervalMs, () => this.campaign());
        return;
      }
      const sentAtMs = this.clock.monotonicMs();
      lease = await this.store.grant(this.config.ttlSeconds);
      const won = this.state === 'standby' && (await this.store.acquire(this.config.key, this.config.candidate, lease));
      if (!won || this.state !== 'standby') {
        void this.store.revoke(lease).catch(() => undefined);
        if (this.state === 'standby') this.schedule(this.config.retryIntervalMs, () => this.campaign());
        return;
      }
      this.lease = lease;
      this.state = 'active';
      this.lastHolder = this.config.candidate;
      this.lastError = '';
      this.extend(sentAtMs, this.config.ttlSeconds);
      this.logger.info({ key: this.config.key, lease: lease.toString(), ttl_s: this.config.ttlSeconds }, `reconciler: active (holding ${this.config.key} on lease ${lease}, TTL ${this.config.ttlSeconds} s)`);
      this.schedule(this.config.renewIntervalMs, () => this.renew());
      this.listener(true, lease);
    } catch (err) {
      // An unknown outcome may have put the key on our lease: revoking it undoes that.
      if (lease !== undefined) void this.store.revoke(lease).catch(() => undefined);
      const message = (err as Error).message;
      if (message !== this.lastError) this.logger.warn({ err }, `reconciler: cannot campaign for ${this.config.key}: ${message}; retrying every ${this.config.retryIntervalMs} ms`);
      this.lastError = message;
      if (this.state === 'standby') this.schedule(this.config.retryIntervalMs, () => this.campaign());
    }
  }

  private async renew(): Promise<void> {
    const lease = this.lease;
    if (this.state !== 'active' || lease === undefined) return;
    const sentAtMs = this.clock.monotonicMs();
    try {
      const ttl = await this.store.keepAlive(lease);
      if (this.state !== 'active' || this.lease !== lease) return;
      if (ttl <= 0) return this.stepDown(`lease ${lease} expired`);
      this.extend(sentAtMs, ttl);
    } catch (err) {
      if (this.state !== 'active' || this.lease !== lease) return;
      this.logger.warn({ err, act_until_ms: this.actUntilMs }, `reconciler: could not renew lease ${lease}: ${(err as Error).message}`);
    }
    this.schedule(this.config.renewIntervalMs, () => this.renew());
  }

  /** A keepalive sent at `sentAtMs` was granted: we may act until it could expire, less the margin. */
  private extend(sentAtMs: number, ttlSeconds: number): void {
    this.actUntilMs = sentAtMs + ttlSeconds * 1_000 - this.config.stepDownMarginMs;
    if (this.deadline !== undefined) this.clock.clear(this.deadline);
    this.deadline = this.clock.setTimeout(() => this.stepDown(`lease ${this.lease} not renewed in time`), Math.max(0, this.actUntilMs - this.clock.monotonicMs()));
  }

  private stepDown(reason: string): void {
    if (this.state !== 'active') return;
    const lease = this.lease;
    this.state = 'standby';
    this.lease = undefined;
    this.clearTimers();
    this.logger.warn({ key: this.config.key, reason }, `reconciler: stepping down (${reason})`);
    this.listener(false, undefined);
    if (lease !== undefined) void this.store.revoke(lease).catch(() => undefined);
    this.schedule(this.config.retryIntervalMs, () => this.campaign());
  }

  private schedule(delayMs: number, step: () => Promise<void>): void {
    if (this.timer !== undefined) this.clock.clear(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void step();
    }, delayMs);
  }

  private clearTimers(): void {
    if (this.timer !== undefined) this.clock.clear(this.timer);
    if (this.deadline !== undefined) this.clock.clear(this.deadline);
    this.timer = undefined;
    this.deadline = undefined;
  }
}

/** What is wrong with an election's timings, or undefined. */
export function electionConfigProblem(config: ElectionConfig): string | undefined {
  if (!(Number.isInteger(config.ttlSeconds) && config.ttlSeconds >= 2)) return `the reconciler's lease TTL must be a whole number of seconds, at least 2 (got ${config.ttlSeconds})`;
  if (!(config.stepDownMarginMs > 0 && config.stepDownMarginMs < config.ttlSeconds * 1_000)) return `the step-down margin must be between 0 and the TTL (got ${config.stepDownMarginMs} ms)`;
  if (!(config.renewIntervalMs > 0 && config.renewIntervalMs * 2 < config.ttlSeconds * 1_000 - config.stepDownMarginMs)) {
    return `the renew interval (${config.renewIntervalMs} ms) must leave room for two renewals before the lease could expire (TTL ${config.ttlSeconds} s less ${config.stepDownMarginMs} ms)`;
  }
  if (!(config.retryIntervalMs > 0)) return `the retry interval must be positive (got ${config.retryIntervalMs} ms)`;
  return undefined;
}

/** Every call of the election has this deadline; a keepalive must beat the margin. */
const CALL_TIMEOUT_MS = 1_000;

/** The LeaseStore on the datacenter's consensus servers. */
export function consensusLeaseStore(consensus: Pick<ConsensusClient, 'kv' | 'lease'>): LeaseStore {
  return {
    async grant(ttlSeconds) {
      return (await consensus.lease('leaseGrant', { ttl: BigInt(ttlSeconds), id: 0n }, { timeoutMs: CALL_TIMEOUT_MS, idempotent: false })).id;
    },
    async keepAlive(lease) {
      return Number((await consensus.lease('leaseKeepAlive', { id: lease }, { timeoutMs: CALL_TIMEOUT_MS, idempotent: true })).ttl);
    },
    async revoke(lease) {
      // Revoking twice is harmless: the second finds no lease.
      await consensus.lease('leaseRevoke', { id: lease }, { timeoutMs: CALL_TIMEOUT_MS, idempotent: true });
    },
    async acquire(key, value, lease) {
      const response = await consensus.kv(
        'txn',
        {
          compare: [{ result: Compare_Result.RESULT_EQUAL, target: Compare_Target.TARGET_CREATE, key: Buffer.from(key), targetUnion: { $case: 'createRevision', value: 0n } }],
          success: [{ request: { $case: 'requestPut', value: { key: Buffer.from(key), value: Buffer.from(value), lease, prevKv: false } } }],
          failure: [],
        },
        { timeoutMs: CALL_TIMEOUT_MS, idempotent: false },
      );
      return response.succeeded;
    },
    async holder(key) {
      const response = await consensus.kv(
        'range',
        { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 1n, revision: 0n, consistency: Consistency.CONSISTENCY_LEASE, keysOnly: false, countOnly: false },
        { timeoutMs: CALL_TIMEOUT_MS, idempotent: true },
      );
      return response.kvs.length === 0 ? undefined : response.kvs[0].value.toString('utf8');
    },
  };
}
