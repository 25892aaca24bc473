/**
 * The one place that turns gossip events into catalog writes (STYLE.md: one adapter per crossing;
 * Consul's leader reconciliation, reference/consul-compat.md §4.7). Active on one catalog per
 * datacenter at a time (reconciler-election.ts); while active it
 *
 *   - watches the members of every segment on a server gossip agent (`WatchMembers("_all")`,
 *     failing over to the next agent when the stream breaks); each stream opens with a snapshot,
 *     which is reconciled in full (so becoming active, or changing agent, repairs everything);
 *   - reconciles each change as it comes, one member at a time, the newest state of a member
 *     replacing any older one still waiting;
 *   - every `fullReconcileIntervalMs` (60 s) lists every member (`Members("_all")`) and reconciles
 *     them all, deregistering the catalog's serfHealth nodes that are no longer members.
 *
 * Decisions are reconciler-decisions.ts (pure); writes are reconciler-store.ts (fenced by the
 * election's lease). A write that fails leaves the catalog as it was and asks for a full
 * reconcile after a backoff.
 */
import { SpanStatusCode, Tracer } from '@opentelemetry/api';

import { Member, MemberEvent, MemberEventType } from '../gen/consulate/gossip/v1/membership';
import { Clock, TimerHandle } from '../lib/clock';
import { Logger } from '../lib/log';
import { ALL_SEGMENTS, GossipClient, MemberWatch } from './gossip-client';
import { CatalogEntry, MemberIntent, ReconcileAction, decide, ignoreReason, intentOf, reapedNodes, segmentOf } from './reconciler-decisions';
import { ApplyOutcome, RECONCILER_LOCK_KEY, ReconcilerStore } from './reconciler-store';
import { CatalogWriteError } from './state/catalog-writes';
import { META_SEGMENT_KEY } from './state/model';

export interface ReconcilerConfig {
  readonly datacenter: string;
  /** Time between full reconciles while active. Consul's reconcile_interval: 60 s. */
  readonly fullReconcileIntervalMs: number;
  /** Wait after a failed write or listing before a full reconcile repairs it. Default 5 s. */
  readonly retryAfterFailureMs: number;
  /** Members with a change waiting, at most; past it the waiting changes give way to a full reconcile. */
  readonly maxPendingMembers: number;
}

export const RECONCILER_DEFAULTS = { fullReconcileIntervalMs: 60_000, retryAfterFailureMs: 5_000, maxPendingMembers: 100_000 } as const;

/** The election, as the reconciler sees it: the fence of its writes, and a way to say it lost. */
export interface Leadership {
  readonly fence: bigint | undefined;
  lost(reason: string): void;
}

interface PendingChange {
  readonly type: MemberEventType;
  readonly member: Member;
}

interface FullReconcile {
  readonly reason: string;
  /** The members to compare with; listed from the agent when absent. */
  readonly members?: readonly Member[];
}

export class Reconciler {
  private active = false;
  /** Bumped at every activation and step-down: work of an older generation stops writing. */
  private generation = 0;
  private watch: MemberWatch | undefined;
  private periodic: TimerHandle | undefined;
  private retry: TimerHandle | undefined;
  /** The snapshot of the stream being opened (CURRENT events until SYNCED). */
  private snapshot: Member[] | undefined = [];
  private readonly pending = new Map<string, PendingChange>();
  private full: FullReconcile | undefined;
  private draining: Promise<void> | undefined;

  constructor(
    private readonly config: ReconcilerConfig,
    private readonly gossip: Pick<GossipClient, 'members' | 'watchMembers'>,
    private readonly store: ReconcilerStore,
    private readonly leadership: Leadership,
    private readonly clock: Clock,
    private readonly tracer: Tracer,
    private readonly logger: Logger,
  ) {}

  get isActive(): boolean {
    return this.active;
  }

  /** The election made us the reconciler: watch the members, and reconcile from the snapshot. */
  activate(): void {
    if (this.active) return;
    this.active = true;
    this.generation++;
    this.snapshot = [];
    this.logger.info({ event: 'reconciler-active' }, 'reconciler: watching the members of every segment');
    this.watch = this.gossip.watchMembers(ALL_SEGMENTS, {
      onEvent: (event, agent) => this.onEvent(event, agent),
      onBroken: (agent, reason, next) => {
        this.snapshot = [];
        this.logger.warn({ agent, next, reason }, `reconciler: member stream from ${agent} broke (${reason}); watching ${next} next`);
      },
    });
    this.periodic = this.clock.setInterval(() => this.requestFull({ reason: 'periodic' }), this.config.fullReconcileIntervalMs);
  }

  /** We are not the reconciler any more: stop watching, drop what waits. */
  deactivate(): void {
    if (!this.active) return;
    this.active = false;
    this.generation++;
    this.watch?.cancel();
    this.watch = undefined;
    for (const timer of [this.periodic, this.retry]) if (timer !== undefined) this.clock.clear(timer);
    this.periodic = undefined;
    this.retry = undefined;
    this.pending.clear();
    this.full = undefined;
    this.logger.info({ event: 'reconciler-standby' }, 'reconciler: standing by');
  }

  /** Resolves once nothing is waiting (tests, and a clean stop). */
  async idle(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
  }

  private onEvent(event: MemberEvent, agent: string): void {
    if (!this.active) return;
    switch (event.type) {
      case MemberEventType.MEMBER_EVENT_TYPE_CURRENT:
        if (event.member !== undefined) this.snapshot?.push(event.member);
        return;
      case MemberEventType.MEMBER_EVENT_TYPE_SYNCED: {
        const members = this.snapshot ?? [];
        this.snapshot = undefined;
        this.requestFull({ reason: `member snapshot from ${agent}`, members });
        return;
      }
      default:
        if (event.member === undefined) return;
        this.enqueue({ type: event.type, member: event.member });
    }
  }

  private enqueue(change: PendingChange): void {
    const name = change.member.name.toLowerCase();
    this.pending.delete(name);
    if (this.pending.size >= this.config.maxPendingMembers) {
      this.logger.warn({ limit: this.config.maxPendingMembers }, `reconciler: more than ${this.config.maxPendingMembers} members with changes waiting; reconciling every member instead`);
      this.pending.clear();
      this.requestFull({ reason: 'too many changes waiting' });
      return;
    }
    this.pending.set(name, change);
    this.kick();
  }

  private requestFull(full: FullReconcile): void {
    if (!this.active) return;
    // A snapshot is newer than whatever was waiting; a listing will be too.
    this.pending.clear();
    this.full = full;
    this.kick();
  }

  private kick(): void {
    if (this.draining !== undefined) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      // Work that arrived for a newer generation while an older drain was finishing.
      if (this.active && (this.full !== undefined || this.pending.size > 0)) this.kick();
    });
  }

  private async drain(): Promise<void> {
    const generation = this.generation;
    while (this.active && this.generation === generation) {
      if (this.full !== undefined) {
        const full = this.full;
        this.full = undefined;
        await this.fullReconcile(full, generation);
        continue;
      }
      const next = this.pending.entries().next();
      if (next.done === true) return;
      const [name, change] = next.value;
      this.pending.delete(name);
      const intent = intentOf(change.type, change.member.status);
      if (intent === undefined) continue;
      await this.tracer.startActiveSpan('reconciler.member', { attributes: { 'consulate.node': change.member.name, 'consulate.intent': intent, 'consulate.segment': segmentOf(change.member) } }, async (span) => {
        try {
          const action = await this.reconcileMember(change.member, intent, generation);
          span.setAttribute('consulate.action', action);
        } catch (err) {
          span.recordException(err as Error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
          this.failed(`reconciling ${change.member.name}`, err);
        } finally {
          span.end();
        }
      });
    }
  }

  /** Consul's `reconcile`: every member, then the catalog's serfHealth nodes that are members no more. */
  private async fullReconcile(full: FullReconcile, generation: number): Promise<void> {
    await this.tracer.startActiveSpan('reconciler.reconcile', { attributes: { 'consulate.reason': full.reason } }, async (span) => {
      const counts: Record<string, number> = { register: 0, 'mark-critical': 0, deregister: 0, none: 0 };
      try {
        const members = full.members ?? (await this.gossip.members(ALL_SEGMENTS));
        await this.store.catchUp();
        for (const member of members) {
          if (!this.current(generation)) return;
          const intent = intentOf(MemberEventType.MEMBER_EVENT_TYPE_CURRENT, member.status);
          if (intent === undefined) continue;
          counts[await this.reconcileMember(member, intent, generation)]++;
        }
        // Consul's reconcileReaped; servers seen only in a segment's pool still count as members.
        for (const node of reapedNodes(members, this.store.serfHealthNodes())) {
          if (!this.current(generation)) return;
          counts[await this.reap(node, generation)]++;
        }
        span.setAttributes({ 'consulate.members': members.length, ...Object.fromEntries(Object.entries(counts).map(([k, v]) => [`consulate.actions.${k}`, v])) });
        this.logger.info(
          { event: 'reconcile', reason: full.reason, members: members.length, registered: counts.register, critical: counts['mark-critical'], deregistered: counts.deregister, unchanged: counts.none },
          `reconciler: full reconcile (${full.reason}): ${members.length} members; ${counts.register} registered, ${counts['mark-critical']} marked critical, ${counts.deregister} deregistered, ${counts.none} unchanged`,
        );
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        this.failed(`full reconcile (${full.reason})`, err);
      } finally {
        span.end();
      }
    });
  }

  private async reconcileMember(member: Member, intent: MemberIntent, generation: number): Promise<ReconcileAction['kind']> {
    const ignored = ignoreReason(member, this.config.datacenter);
    if (ignored !== undefined) {
      this.logger.debug({ member: member.name, reason: ignored }, `reconciler: ignoring ${member.name}: ${ignored}`);
      return 'none';
    }
    // Decided on the view first, so that a member the catalog already agrees with costs no RPC;
    // the write decides again on the rows its txn reads.
    const decideOn = (entry: CatalogEntry) => decide(member, intent, entry, this.config.datacenter);
    const quick = decideOn(this.store.entry(member.name));
    if (quick.kind === 'none') {
      this.logger.debug({ member: member.name, reason: quick.reason }, `reconciler: ${member.name}: nothing to do (${quick.reason})`);
      return 'none';
    }
    return this.write(member.name, decideOn, generation);
  }

  /** Consul's handleReapMember for a node no member has: deregister it, if still ours. */
  private async reap(node: string, generation: number): Promise<ReconcileAction['kind']> {
    return this.write(
      node,
      (entry) =>
        entry.node === undefined || entry.serfHealth === undefined
          ? { kind: 'none', node, reason: 'already gone' }
          : { kind: 'deregister', node: entry.node.Node, reason: 'no longer a gossip member (reaped)' },
      generation,
    );
  }

  private async write(node: string, decideOn: (entry: CatalogEntry) => ReconcileAction, generation: number): Promise<ReconcileAction['kind']> {
    const fence = this.leadership.fence;
    if (!this.current(generation) || fence === undefined) return 'none';
    let result: { outcome: ApplyOutcome; action: ReconcileAction };
    try {
      result = await this.store.apply(node, decideOn, fence);
    } catch (err) {
      // Consul's own rules refused it (a name held by another node ID): the same every time, so
      // logged, not retried before the next full reconcile.
      if (!(err instanceof CatalogWriteError)) throw err;
      this.logger.warn({ member: node, err }, `reconciler: the catalog refused the write for ${node}: ${err.message}`);
      return 'none';
    }
    const { outcome, action } = result;
    if (outcome === 'fenced') {
      this.leadership.lost(`a write found ${RECONCILER_LOCK_KEY} on another lease`);
      return 'none';
    }
    if (outcome === 'unchanged' || action.kind === 'none') {
      this.logger.debug({ member: node, reason: action.reason }, `reconciler: ${node}: nothing to do (${action.reason})`);
      return 'none';
    }
    switch (action.kind) {
      case 'register': {
        const segment = action.node.Meta[META_SEGMENT_KEY];
        this.logger.info(
          { event: 'reconcile-register', member: action.node.Node, address: action.node.Address, segment, server: action.service !== undefined, reason: action.reason },
          `reconciler: registered ${action.node.Node} (${action.node.Address}, segment "${segment}") with serfHealth passing${action.service !== undefined ? ' and service consul' : ''}: ${action.reason}`,
        );
        break;
      }
      case 'mark-critical':
        this.logger.info({ event: 'reconcile-critical', member: action.node, reason: action.reason }, `reconciler: marked serfHealth critical on ${action.node} (${action.check.Output}): ${action.reason}`);
        break;
      case 'deregister':
        this.logger.info({ event: 'reconcile-deregister', member: action.node, reason: action.reason }, `reconciler: deregistered ${action.node}: ${action.reason}`);
        break;
    }
    return action.kind;
  }

  private current(generation: number): boolean {
    return this.active && this.generation === generation;
  }

  /** A write or listing failed: the catalog is as it was; a full reconcile repairs it later. */
  private failed(what: string, err: unknown): void {
    if (!this.active) return;
    this.logger.warn({ err }, `reconciler: ${what} failed: ${(err as Error).message}; a full reconcile follows in ${this.config.retryAfterFailureMs} ms`);
    if (this.retry !== undefined) return;
    this.retry = this.clock.setTimeout(() => {
      this.retry = undefined;
      this.requestFull({ reason: 'retry after a failure' });
    }, this.config.retryAfterFailureMs);
  }
}
