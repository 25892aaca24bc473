/**
 * Ends what sessions leave behind, from the view's changes (Consul does it inside the state store:
 * state/session.go deleteSessionTxn, and the check and node deletes that invalidate sessions):
 *
 * - a session whose node was deregistered, or one of whose checks is gone or critical, is
 *   destroyed: its row and its locks in one Txn (sessions.ts destroySession);
 * - a lock whose session no longer exists (its TTL lease expired and the consensus store deleted
 *   the row; or a catalog died between the two) is released, or its key deleted, by the
 *   session's Behavior, in one Txn per session;
 * - keys a session held when it ended get its lock-delay, on every catalog that sees the end,
 *   whichever catalog wrote the release.
 *
 * A session's Behavior and LockDelay are remembered while it lives; for a session this catalog
 * never saw alive (it started after the session expired) they are read from the store's history,
 * at the revision of the lock; if that is compacted, the lock is released with no delay.
 *
 * Every catalog runs one; two releasing the same lock conflict harmlessly (the Txn compares).
 */
import { Consistency } from '../../gen/consulate/consensus/v1/kv';
import { Logger } from '../../lib/log';
import { keys } from './keys';
import { kvOf } from './kv-reads';
import { LockDelays } from './lock-delay';
import { SessionDeps, SessionRecord, destroySession, endSessionLocks, invalidationOf, lockDelayNsOf, sessionOf } from './sessions';
import { commitPlan } from './write-plan';

export interface SessionReaperOptions {
  /** The longest between two passes when nothing changes (a retry after a failed release). Default 10 s. */
  readonly idlePassMs?: number;
}

interface Remembered {
  readonly behavior: string;
  readonly lockDelayMs: number;
}

/** Sessions remembered at once (their Behavior and LockDelay); the oldest are forgotten first. */
export const MAX_REMEMBERED_SESSIONS = 100_000;
const HISTORY_TIMEOUT_MS = 5_000;

export class SessionReaper {
  private readonly remembered = new Map<string, Remembered>();
  /** The keys each session held at the last pass, to delay them when the session ends. */
  private heldBy = new Map<string, string[]>();
  private stopped = true;

  constructor(
    private readonly deps: SessionDeps & { readonly lockDelays: LockDelays; readonly logger: Logger },
    private readonly options: SessionReaperOptions = {},
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.loop();
  }

  /** Stops after the pass in progress, if any; a wait for changes ends by itself. */
  stop(): void {
    this.stopped = true;
  }

  /** One pass over the view; what the loop runs after every change of sessions, checks or nodes. */
  async reconcile(): Promise<void> {
    const { view, logger } = this.deps;
    if (!view.isLoaded) return;
    const alive = new Map<string, SessionRecord>();
    for (const row of view.scan(keys.prefix('sessions'))) {
      const record = sessionOf(row);
      if (record === undefined) continue;
      alive.set(record.ID.toLowerCase(), record);
      this.remember(record);
    }

    for (const record of alive.values()) {
      const reason = invalidationOf(view, record);
      if (reason === undefined) continue;
      logger.info({ session: record.ID, node: record.Node, reason }, `session ${record.ID} invalidated: ${reason}`);
      await destroySession(this.deps, record.ID);
      alive.delete(record.ID.toLowerCase());
    }

    const held = new Map<string, string[]>();
    for (const row of view.scan(keys.prefix('kvs'))) {
      const session = kvOf(row.value).Session.toLowerCase();
      if (session === '') continue;
      const list = held.get(session) ?? [];
      list.push(row.key.slice(keys.prefix('kvs').length));
      held.set(session, list);
    }

    // Sessions that ended since the last pass: the keys they still held when they ended are
    // delayed, whoever released them. A key the session released on its own before (a release
    // PUT) changed at an earlier revision than the session's delete, and is not (Consul delays
    // only what the session held at its end: state/session.go deleteSessionTxn).
    for (const [session, keysHeld] of this.heldBy) {
      if (alive.has(session) || held.has(session)) continue;
      const remembered = this.remembered.get(session);
      if (remembered === undefined) continue;
      const endedAt = view.tombstoneIndex(keys.session(session));
      for (const key of keysHeld) {
        const row = view.get(keys.kv(key));
        const releasedByTheEnd = endedAt === 0 || row === undefined || row.modRevision >= endedAt;
        if (releasedByTheEnd) this.deps.lockDelays.delay(key, remembered.lockDelayMs);
      }
    }

    for (const [session, keysHeld] of held) {
      if (alive.has(session)) continue;
      const remembered = this.remembered.get(session) ?? (await this.fromHistory(session, keysHeld[0]));
      const behavior = remembered?.behavior ?? 'release';
      await commitPlan(this.deps, (plan) => {
        if (plan.get(keys.session(session)) !== undefined) return { value: [], commit: false };
        return { value: endSessionLocks(plan, session, behavior), commit: true };
      });
      for (const key of keysHeld) this.deps.lockDelays.delay(key, remembered?.lockDelayMs ?? 0);
      logger.info({ session, behavior, keys: keysHeld.length }, `session ${session} ended: ${behavior === 'delete' ? 'deleted' : 'released'} the ${keysHeld.length} key(s) it held`);
    }

    this.heldBy = new Map([...held].filter(([session]) => alive.has(session)));
    for (const session of [...this.remembered.keys()]) if (!alive.has(session) && !held.has(session)) this.remembered.delete(session);
  }

  private remember(record: SessionRecord): void {
    const id = record.ID.toLowerCase();
    if (this.remembered.has(id)) return;
    this.remembered.set(id, { behavior: record.Behavior, lockDelayMs: lockDelayNsOf(record) / 1e6 });
    if (this.remembered.size > MAX_REMEMBERED_SESSIONS) this.remembered.delete(this.remembered.keys().next().value!);
  }

  /** The session as it was when it took `key`'s lock, from the store's history. */
  private async fromHistory(session: string, key: string): Promise<Remembered | undefined> {
    const row = this.deps.view.get(keys.kv(key));
    if (row === undefined) return undefined;
    try {
      const response = await this.deps.consensus.kv(
        'range',
        { key: Buffer.from(keys.session(session)), rangeEnd: Buffer.alloc(0), limit: 1n, revision: BigInt(row.modRevision), consistency: Consistency.CONSISTENCY_SERIALIZABLE, keysOnly: false, countOnly: false },
        { timeoutMs: HISTORY_TIMEOUT_MS, idempotent: true },
      );
      const kv = response.kvs[0];
      const record = kv === undefined ? undefined : sessionOf({ value: kv.value });
      return record === undefined ? undefined : { behavior: record.Behavior, lockDelayMs: lockDelayNsOf(record) / 1e6 };
    } catch {
      // Compacted, or unreachable: release, with no delay.
      return undefined;
    }
  }

  private async loop(): Promise<void> {
    const { view, logger } = this.deps;
    const idlePassMs = this.options.idlePassMs ?? 10_000;
    while (!this.stopped) {
      const index = view.index('sessions', 'checks', 'nodes');
      try {
        await this.reconcile();
      } catch (err) {
        logger.warn({ err }, `session reaper: a pass failed (${(err as Error).message}); retrying`);
      }
      if (this.stopped) return;
      try {
        await view.waitForChange(['sessions', 'checks', 'nodes'], index, idlePassMs);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 1_000).unref());
      }
    }
  }
}
