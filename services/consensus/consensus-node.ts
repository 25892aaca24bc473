/**
 * The shell around the Raft core on a real server: the only place where the core meets time,
 * disk and network. One loop drives it, in the order the core's Ready demands:
 *
 *   inputs (ticks, messages, proposals, reads) are queued and stepped in between Readies;
 *   a leader's appends leave at once (thesis §10.2.1), then the snapshot and the entries and hard
 *   state are fsynced (one write-ahead log frame: one fdatasync per batch), then the other
 *   messages go (votes and acknowledgements promise what is on disk), then committed entries are
 *   applied to the KV state machine, reads waiting on them are released, and the core is advanced.
 *
 * A leader need not wait for its own disk (§10.2.1, `pipelineLeaderWrites`): its entries are
 * written on libuv's pool while the loop goes on, and they commit once a quorum has them on disk,
 * the leader's own copy counting only when its write is done (Raft.persisted). A slow fsync on
 * the leader then delays no write that two followers have; the event loop is free meanwhile.
 * Anything a follower or candidate writes, and a leader's new term or vote, still waits.
 *
 * While a batch is being written, new proposals queue up and all go into the next batch: that is
 * where batching comes from. A write on a follower is refused with the leader's address
 * (NotLeaderError); the consensus client retries there. KV leases expire by the leader's clock:
 * it proposes the revoke, so every server deletes the same keys at the same index.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

import { Command } from '../gen/consulate/consensus/v1/command';
import { Clock, TimerHandle } from '../lib/clock';
import { invariant } from '../lib/invariant';
import { Logger } from '../lib/log';
import { AutoCompactionPolicy } from './auto-compaction';
import { KvError } from './kv/errors';
import { ApplyResult, KvStateMachine } from './kv/kv-state-machine';
import { encodeInSlices } from './kv/snapshot';
import { WatchWake } from './kv/watch-hub';
import { RaftConfig } from './raft/config';
import { Message, sendableBeforePersist } from './raft/messages';
import { ProposalError, Raft, RaftStatus, Ready, bootstrapEntries } from './raft/raft';
import { ConfChange, Entry, HardState, Member, NodeId } from './raft/types';
import { LogStore } from './storage/log-store';

/**
 * What the node reports as it runs, for the role's Prometheus series (role.ts). A timer starts
 * when its event begins and the function it returns is called when it ends: the node itself reads
 * no clock for metrics.
 */
export interface ConsensusNodeMetrics {
  /** A proposal (a write or a membership change) was made here; the stop runs once it is applied here. */
  startCommitTimer(): () => void;
  /** Entries and hard state are being written (one write-ahead log frame, one fdatasync); the stop runs once on disk. */
  startSyncTimer(): () => void;
  /** This server learned of a new leader (etcd's leader_changes_seen_total). */
  leaderChanged(leader: NodeId): void;
  /** This leader's auto-compaction was applied here. */
  autoCompacted?(): void;
}

/** Where messages go: the transport (transport.ts) in a server, something else in tests. */
export interface MessageSender {
  setMembers(members: readonly Member[]): void;
  send(messages: readonly Message[]): void;
}

export interface ConsensusNodeOptions {
  readonly raft: RaftConfig;
  /** Milliseconds per Raft tick. */
  readonly tickMs: number;
  readonly store: LogStore;
  readonly sender: MessageSender;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The members of a new cluster; used only when the store is empty. Empty: join an existing one. */
  readonly initialMembers: readonly Member[];
  /** Applied entries between two snapshots of the state machine. */
  readonly snapshotEntries: number;
  /**
   * Each snapshot waits for snapshotEntries plus a random share of up to this fraction more (default
   * 0): every server applies the same entries, and without it all of them encode at the same index
   * at once, on the same cores in a test or bench, each loop stalled meanwhile.
   */
  readonly snapshotSpread?: number;
  /** [0, 1), for snapshotSpread; default Math.random. */
  readonly random?: () => number;
  /** Proposals and reads waiting at once before new ones are refused. */
  readonly maxPending: number;
  readonly metrics?: ConsensusNodeMetrics;
  /** When to compact the KV history on its own (auto-compaction.ts); none: only KV.Compact does. */
  readonly autoCompaction?: AutoCompactionPolicy;
  /** A leader writes its log in the background (see the top of this file); default true. */
  readonly pipelineLeaderWrites?: boolean;
}

/** A watcher's stream, as the watch service registers it. */
export interface WatchStream {
  woken(): void;
  cancelled(error: KvError): void;
}

/** Refused because this server does not lead; `leader` and `leaderAddress` say who does, if known. */
export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
  constructor(
    message: string,
    readonly leader: NodeId,
    readonly leaderAddress: string,
  ) {
    super(message);
  }
}

/** The outcome of a proposal is unknown: it may or may not be applied (leadership changed, timed out). */
export class OutcomeUnknownError extends Error {
  override readonly name = 'OutcomeUnknownError';
}

/** Too much is waiting already; retry shortly. */
export class OverloadedError extends Error {
  override readonly name = 'OverloadedError';
}

interface PendingProposal {
  readonly term: number;
  /** Stops the commit-latency timer; called only for a proposal that was applied. */
  readonly applied?: () => void;
  readonly resolve: (result: ApplyResult | undefined) => void;
  readonly reject: (error: Error) => void;
}

const LEASE_CHECK_MS = 250;
const AUTO_COMPACTION_TIMEOUT_MS = 10_000;
/** Ticks stepped at once after a stall, in election timeouts (catchUpTicks). */
const MAX_CATCH_UP_ELECTIONS = 2;
/** The longest a server sleeps when no tick has work (a learner): its clock is stepped then anyway. */
const MAX_TICK_SLEEP_MS = 1_000;

export class ConsensusNode {
  readonly kv = new KvStateMachine();
  private readonly raft: Raft;
  private readonly inputs: (() => void)[] = [];
  private wake: (() => void) | undefined;
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly timers: TimerHandle[] = [];
  /** The wake-up for the next tick with work (armTicks), and when it is due on the monotonic clock. */
  private tickTimer: TimerHandle | undefined;
  private tickTimerAt = Infinity;

  private applied = 0;
  private readonly proposals = new Map<number, PendingProposal>();
  private readonly reads = new Map<string, { resolve: () => void; reject: (error: Error) => void }>();
  private readonly appliedWaiters: { index: number; resolve: () => void }[] = [];
  private readSeq = 0;
  private role: RaftStatus['role'] = 'follower';
  private leaderId: NodeId = '';
  /** When each KV lease expires, on the monotonic clock (a stepped wall clock must not end one early). */
  private leaseExpiry = new Map<bigint, number>();
  private readonly leasesRevoking = new Set<bigint>();
  /** An auto-compaction proposed and not yet applied (one at a time). */
  private autoCompacting = false;
  /** One watch stream per watch id; a wake touches only the streams it names. */
  private readonly watchStreams = new Map<number, WatchStream>();
  /** Streams with events to write at the next turn of the loop (notifyWake). */
  private readonly wokenStreams = new Set<number>();
  private readonly roleListeners = new Set<() => void>();
  private membersSeen = -1;
  /** The hard state as last written to disk. */
  private synced: HardState = { term: 0, vote: '', commit: 0 };
  /** How far the core's ticks have come, on the monotonic clock (catchUpTicks). */
  private tickedToMs = 0;
  /**
   * A local snapshot off the loop: captured at once, encoded in slices between turns of the event
   * loop ('encoding'), the log compacted by the loop at its top ('encoded'), then saved while the
   * loop goes on ('saving'). Taken in one piece on the loop, 60,000 keys held it for 130 ms plus a
   * 17 MB fsync, long enough for the followers (which snapshot at the same index) to miss the
   * leader's heartbeats, or the leader its quorum, and a write burst lost its leader.
   */
  private snapshotting: Promise<void> | undefined;
  private encodedSnapshot: { index: number; data: Uint8Array } | undefined;
  /** Applied entries past the last snapshot that start the next one (snapshotEntries and its spread). */
  private snapshotAfter: number | undefined;
  /** A background snapshot's failure: the loop rethrows it (the server stops, as on any storage error). */
  private snapshotError: Error | undefined;
  /** A leader's background write's failure: the loop rethrows it, as snapshotError. */
  private writeError: Error | undefined;
  /** A leader's background writes handed to the store and not yet done. */
  private backgroundWrites = 0;
  /** A leader's entries cut while a background write was in flight: the next write, one frame for all of them. */
  private nextBackgroundWrite: { hardState: HardState | undefined; entries: Entry[] } | undefined;

  private constructor(
    private readonly options: ConsensusNodeOptions,
    raft: Raft,
  ) {
    this.raft = raft;
  }

  /** Loads (or bootstraps) the stored state and restores the state machine from its snapshot. */
  static async open(options: ConsensusNodeOptions): Promise<ConsensusNode> {
    let stored = await options.store.load();
    for (const warning of stored.warnings) options.logger.warn({ event: 'storage-warning' }, warning);
    const empty = stored.snapshot === undefined && stored.entries.length === 0 && stored.hardState.term === 0;
    if (empty && options.initialMembers.length > 0) {
      const entries = bootstrapEntries(options.initialMembers);
      const hardState = { term: 1, vote: '', commit: entries.length };
      await options.store.save({ hardState, entries });
      stored = { hardState, snapshot: undefined, entries, warnings: [] };
      options.logger.info({ event: 'bootstrap', members: options.initialMembers }, `bootstrapped a new cluster of ${options.initialMembers.length} servers`);
    } else if (empty) {
      options.logger.info({ event: 'joining' }, 'no Raft state and no initial peers: waiting to be added to a cluster (ClusterService.MemberAdd on its leader)');
    }
    const raft = new Raft({ config: options.raft, hardState: stored.hardState, snapshot: stored.snapshot, entries: stored.entries });
    const node = new ConsensusNode(options, raft);
    node.synced = stored.hardState;
    if (stored.snapshot !== undefined) {
      node.kv.restore(stored.snapshot.data);
      node.applied = stored.snapshot.meta.index;
    }
    options.sender.setMembers(raft.status().members);
    return node;
  }

  start(): void {
    this.tickedToMs = this.options.clock.monotonicMs();
    this.timers.push(this.options.clock.setInterval(() => this.expireLeases(), LEASE_CHECK_MS));
    const compaction = this.options.autoCompaction;
    if (compaction?.enabled) this.timers.push(this.options.clock.setInterval(() => this.autoCompact(compaction), compaction.checkIntervalMs));
    this.loopDone = this.loop().catch((err: unknown) => {
      // Storage failed or an invariant broke: this server can no longer be trusted to answer.
      this.options.logger.fatal({ err, event: 'consensus-loop-failed' }, `the consensus loop stopped: ${(err as Error).message}`);
      throw err;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) this.options.clock.clear(timer);
    if (this.tickTimer !== undefined) this.options.clock.clear(this.tickTimer);
    this.wake?.();
    this.wokenStreams.clear();
    await this.loopDone.catch(() => undefined);
    // A snapshot being saved finishes first: the store closes after it.
    await this.snapshotting;
    this.failPending(new OutcomeUnknownError('the server is shutting down; the write may or may not be applied'));
    await this.options.store.close();
  }

  /** Every failure of the loop, for the role to exit on. */
  get done(): Promise<void> {
    return this.loopDone;
  }

  // ---- what the gRPC services call ----------------------------------------------------------

  receive(message: Message): void {
    this.enqueue(() => this.raft.step(message));
  }

  /** Proposes a command and resolves with its result once applied here. Leaders only. */
  propose(command: Command, timeoutMs: number): Promise<ApplyResult> {
    return this.proposeEntry((raft) => raft.propose(Command.encode(command).finish()), timeoutMs) as Promise<ApplyResult>;
  }

  /** Proposes a membership change and resolves once it is applied here. */
  async changeMembership(change: ConfChange, timeoutMs: number): Promise<void> {
    await this.proposeEntry((raft) => raft.proposeConfChange(change), timeoutMs);
  }

  /**
   * Resolves when a read may be served linearizably from `kv`: leadership confirmed by a quorum
   * round (or the lease) and the state machine caught up with the commit index of that moment.
   */
  linearizableRead(mode: 'read-index' | 'lease', timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.role !== 'leader') return reject(this.notLeader());
      if (this.reads.size >= this.options.maxPending) return reject(new OverloadedError(`${this.options.maxPending} reads are waiting; retry shortly`));
      const id = String(++this.readSeq);
      const timer = this.options.clock.setTimeout(() => {
        if (this.reads.delete(id)) reject(new OutcomeUnknownError(`leadership was not confirmed within ${timeoutMs} ms`));
      }, timeoutMs);
      this.reads.set(id, {
        resolve: () => {
          this.options.clock.clear(timer);
          resolve();
        },
        reject: (error) => {
          this.options.clock.clear(timer);
          reject(error);
        },
      });
      this.enqueue(() => this.raft.readIndex(id, mode));
    });
  }

  /** Starts handing leadership to `to`; rejects with ProposalError when the core refuses. */
  transferLeadership(to: NodeId): Promise<void> {
    return this.onCore((raft) => raft.transferLeadership(to));
  }

  /** Resolves once this server's state machine has applied `index`. */
  waitApplied(index: number): Promise<void> {
    if (this.applied >= index) return Promise.resolve();
    return new Promise((resolve) => this.appliedWaiters.push({ index, resolve }));
  }

  status(): RaftStatus & { appliedIndex: number } {
    return Object.assign(this.raft.status(), { appliedIndex: this.applied });
  }

  leaderAddress(): string {
    return this.raft.status().members.find((member) => member.id === this.leaderId)?.address ?? '';
  }

  /** Keeps a KV lease alive; leaders only. Returns the TTL in seconds, or undefined for no such lease. */
  keepLeaseAlive(id: bigint): bigint | undefined {
    if (this.role !== 'leader') throw this.notLeader();
    const lease = this.kv.lease(id);
    if (lease === undefined) return undefined;
    this.leaseExpiry.set(id, this.options.clock.monotonicMs() + Number(lease.ttl) * 1000);
    return lease.ttl;
  }

  /** Seconds a lease has left by the leader's clock; leaders only. */
  leaseRemainingSeconds(id: bigint): bigint | undefined {
    if (this.role !== 'leader') throw this.notLeader();
    const expiry = this.leaseExpiry.get(id);
    if (expiry === undefined) return undefined;
    return BigInt(Math.max(0, Math.ceil((expiry - this.options.clock.monotonicMs()) / 1000)));
  }

  /** Registers the stream of watcher `watchId`; returns its unregistration. */
  attachWatchStream(watchId: number, stream: WatchStream): () => void {
    this.watchStreams.set(watchId, stream);
    return () => this.watchStreams.delete(watchId);
  }

  /** What a response header needs: the term and this server's id, cheaply. */
  headerInfo(): { term: number; id: NodeId } {
    return { term: this.raft.currentTerm, id: this.raft.id };
  }

  onRoleChange(listener: () => void): () => void {
    this.roleListeners.add(listener);
    return () => this.roleListeners.delete(listener);
  }

  notLeader(): NotLeaderError {
    const address = this.leaderAddress();
    const text = this.leaderId === '' ? 'no leader is known (an election may be under way); retry shortly' : `this server does not lead; the leader is ${this.leaderId} at ${address}`;
    return new NotLeaderError(text, this.leaderId, address);
  }

  // ---- the loop -----------------------------------------------------------------------------

  /**
   * Steps the core one tick for each tickMs that has passed, not one per timer callback. A process
   * that was stopped (SIGSTOP, a paused VM) or whose loop was blocked gets one late callback for
   * all that time; a leader that counted one tick would go on trusting a lease its followers
   * stopped honouring long ago, and serve stale reads (etcd #20418). At most twice the election
   * timeout at once: enough for the lease to lapse, CheckQuorum to run and an election to start.
   */
  private catchUpTicks(): void {
    const now = this.options.clock.monotonicMs();
    const due = Math.floor((now - this.tickedToMs) / this.options.tickMs);
    if (due <= 0) return;
    const steps = Math.min(due, MAX_CATCH_UP_ELECTIONS * this.options.raft.electionTicks);
    for (let i = 0; i < steps; i++) this.raft.tick();
    this.tickedToMs = steps < due ? now : this.tickedToMs + due * this.options.tickMs;
  }

  /**
   * Sets the one timer of the core's time for the next tick that has work (Raft.ticksUntilDue): a
   * heartbeat, an election, a probe. The ticks before it only count, and catchUpTicks steps them
   * with it, or before any input that comes first. A follower that hears its leader every
   * heartbeat never reaches its election tick, so it wakes for the heartbeats alone, not every
   * tick; a leader wakes for its heartbeats. (With a timer every tick, 40 wake-ups a second.)
   */
  private armTicks(): void {
    const ticks = this.raft.ticksUntilDue();
    const at = ticks === Infinity ? this.tickedToMs + MAX_TICK_SLEEP_MS : this.tickedToMs + ticks * this.options.tickMs;
    if (this.tickTimer !== undefined && this.tickTimerAt === at) return;
    if (this.tickTimer !== undefined) this.options.clock.clear(this.tickTimer);
    this.tickTimerAt = at;
    const timer = this.options.clock.setTimeout(() => {
      if (this.tickTimer === timer) this.tickTimer = undefined;
      this.enqueue(() => this.catchUpTicks());
    }, Math.max(0, at - this.options.clock.monotonicMs()) + 1); // +1: libuv's millisecond clock may fire it a fraction early
    this.tickTimer = timer;
  }

  private enqueue(fn: () => void): void {
    if (this.stopped) return;
    this.inputs.push(fn);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Runs `fn` on the core between two Readies and settles with what it returns or throws. */
  private onCore<T>(fn: (raft: Raft) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new OutcomeUnknownError('the server is shutting down'));
      this.enqueue(() => {
        try {
          resolve(fn(this.raft));
        } catch (err) {
          reject(err as Error);
        }
      });
    });
  }

  private proposeEntry(propose: (raft: Raft) => { index: number; term: number }, timeoutMs: number): Promise<ApplyResult | undefined> {
    return new Promise((resolve, reject) => {
      if (this.role !== 'leader') return reject(this.notLeader());
      if (this.proposals.size >= this.options.maxPending) return reject(new OverloadedError(`${this.options.maxPending} writes are waiting to commit; retry shortly`));
      const applied = this.options.metrics?.startCommitTimer();
      this.enqueue(() => {
        let position: { index: number; term: number };
        try {
          position = propose(this.raft);
        } catch (err) {
          if (err instanceof ProposalError) return reject(err.reason === 'not-leader' ? this.notLeader() : err);
          return reject(err as Error);
        }
        const timer = this.options.clock.setTimeout(() => {
          if (this.proposals.get(position.index)?.resolve === settle) {
            this.proposals.delete(position.index);
            reject(new OutcomeUnknownError(`not committed within ${timeoutMs} ms; the write may or may not be applied`));
          }
        }, timeoutMs);
        const settle = (result: ApplyResult | undefined) => {
          this.options.clock.clear(timer);
          resolve(result);
        };
        this.proposals.set(position.index, {
          term: position.term,
          applied,
          resolve: settle,
          reject: (error) => {
            this.options.clock.clear(timer);
            reject(error);
          },
        });
      });
    });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      // Let every request that has already arrived reach the queue before the next batch is cut:
      // a resolved await continues as a microtask, right after the one callback that woke us,
      // which would make a batch (and an fsync) of every single request.
      await nextTurn();
      // Time first: a read that waited in a socket while we were stopped must see it (catchUpTicks).
      this.catchUpTicks();
      while (this.inputs.length > 0) this.inputs.shift()!();
      // stop() may have come between the setImmediate and here, when there was no wake to call.
      if (this.stopped) break;
      if (this.snapshotError !== undefined) throw this.snapshotError;
      if (this.writeError !== undefined) throw this.writeError;
      // Between Readies: the only place the core's log is compacted.
      this.compactEncodedSnapshot();
      if (!this.raft.hasReady()) {
        this.armTicks();
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      const rd = this.raft.ready();
      const early = rd.messages.filter(sendableBeforePersist);
      this.options.sender.send(early);
      if (this.options.pipelineLeaderWrites !== false && this.raft.writableInBackground(rd)) {
        this.writeInBackground(rd);
        this.options.sender.send(rd.messages.filter((m) => !sendableBeforePersist(m)));
        this.applyReady(rd);
        this.raft.advanceWhileWriting(rd);
        this.afterReady(rd);
        continue;
      }
      // A write here must not overtake a leader's entries still waiting for their background write.
      if (rd.snapshot !== undefined || this.mustSync(rd)) this.flushBackgroundWrite();
      // grpc-js hands a stream's data to the socket on the next turn of the event loop, and our
      // save's fsync blocks this one: the followers would get these appends only once our own copy
      // is on disk, one fsync after another. Let them leave first, so the disks write together.
      if (early.length > 0 && this.mustSync(rd)) await nextTurn();
      if (rd.snapshot !== undefined) {
        // The leader's snapshot replaces the log: a local one still being saved goes first.
        await this.snapshotting;
        if (this.snapshotError !== undefined) throw this.snapshotError;
        await this.options.store.saveSnapshot(rd.snapshot, { keepSuffix: false });
      }
      if (this.mustSync(rd)) {
        const synced = this.options.metrics?.startSyncTimer();
        await this.options.store.save({ hardState: rd.hardState, entries: rd.entries });
        synced?.();
        if (rd.hardState !== undefined) this.synced = rd.hardState;
      }
      this.options.sender.send(rd.messages.filter((m) => !sendableBeforePersist(m)));
      this.applyReady(rd);
      this.raft.advance(rd);
      this.afterReady(rd);
    }
  }

  private afterReady(rd: Ready): void {
    if (rd.softState !== undefined) this.roleChanged();
    this.syncMembers();
    this.maybeSnapshot();
  }

  /**
   * A leader's entries (and commit index) go to the store off the event loop; when they are on
   * disk the core hears it as an input. While one such write is in flight, the entries of later
   * Readies gather and go as the next write, one frame and one fdatasync for all, as a waiting
   * leader batches them. The store runs saves in call order, so a later save (a follower's, after
   * this leader stepped down) completes after these, and its acknowledgement promises them too.
   */
  private writeInBackground(rd: Ready): void {
    if (this.backgroundWrites === 0) return this.startBackgroundWrite(rd.hardState, rd.entries);
    const next = (this.nextBackgroundWrite ??= { hardState: undefined, entries: [] });
    const last = next.entries[next.entries.length - 1];
    invariant(last === undefined || rd.entries[0].index === last.index + 1, () => `background write of ${rd.entries[0].index} after ${last.index}`);
    for (const entry of rd.entries) next.entries.push(entry);
    if (rd.hardState !== undefined) next.hardState = rd.hardState;
  }

  /** The gathered entries go to the store now, behind the write in flight. */
  private flushBackgroundWrite(): void {
    const next = this.nextBackgroundWrite;
    this.nextBackgroundWrite = undefined;
    if (next !== undefined) this.startBackgroundWrite(next.hardState, next.entries);
  }

  private startBackgroundWrite(hardState: HardState | undefined, entries: readonly Entry[]): void {
    const last = entries[entries.length - 1];
    const synced = this.options.metrics?.startSyncTimer();
    this.backgroundWrites++;
    this.options.store.save({ hardState, entries }, { offThread: true }).then(
      () => {
        synced?.();
        this.backgroundWrites--;
        if (this.backgroundWrites === 0) this.flushBackgroundWrite();
        this.enqueue(() => this.raft.persisted(last.index, last.term));
      },
      (err: Error) => {
        this.writeError ??= err;
        this.wake?.();
      },
    );
  }

  /**
   * etcd's MustSync: new entries, or a new term or vote, must be on disk before anything depends on
   * them. A Ready whose only change is the commit index need not wait for an fsync: the commit
   * index is volatile state (Figure 2); after a restart the leader tells us again. It reaches the
   * disk with the next write that must sync.
   */
  private mustSync(rd: Ready): boolean {
    if (rd.entries.length > 0) return true;
    const hard = rd.hardState;
    return hard !== undefined && (hard.term !== this.synced.term || hard.vote !== this.synced.vote);
  }

  private applyReady(rd: Ready): void {
    if (rd.snapshot !== undefined) {
      this.notifyWake(this.kv.restore(rd.snapshot.data));
      this.applied = rd.snapshot.meta.index;
      this.options.logger.info({ event: 'snapshot-installed', index: rd.snapshot.meta.index }, `installed a snapshot from the leader at index ${rd.snapshot.meta.index}`);
    }
    for (const entry of rd.committed) this.applyEntry(entry);
    for (const read of rd.readStates) {
      const pending = this.reads.get(read.id);
      if (pending === undefined) continue;
      this.reads.delete(read.id);
      if (read.index === undefined) pending.reject(this.notLeader());
      else void this.waitApplied(read.index).then(pending.resolve);
    }
    while (this.appliedWaiters.length > 0) {
      const next = this.appliedWaiters.findIndex((waiter) => waiter.index <= this.applied);
      if (next < 0) break;
      this.appliedWaiters.splice(next, 1)[0].resolve();
    }
  }

  private applyEntry(entry: Entry): void {
    invariant(entry.index === this.applied + 1, () => `applying entry ${entry.index} after ${this.applied}`);
    let result: ApplyResult | undefined;
    if (entry.kind === 'normal') {
      result = this.kv.apply(Command.decode(entry.data));
      if (result.ok) {
        this.notifyWake(result.wake);
        this.trackLeaseChange(result);
      }
    } else if (entry.kind === 'config') {
      this.options.logger.info({ event: 'membership', change: entry.change }, `membership: ${entry.change.kind} ${entry.change.member.id} (${entry.change.member.address})`);
    }
    this.applied = entry.index;
    const proposal = this.proposals.get(entry.index);
    if (proposal !== undefined) {
      this.proposals.delete(entry.index);
      // Another leader's entry took this index: ours was never committed and never will be.
      if (proposal.term === entry.term) {
        proposal.applied?.();
        proposal.resolve(result);
      } else proposal.reject(new NotLeaderError('leadership changed and the write was not committed; it was not applied', this.leaderId, this.leaderAddress()));
    }
  }

  private roleChanged(): void {
    const status = this.raft.status();
    const wasLeader = this.role === 'leader';
    this.role = status.role;
    if (status.leader !== this.leaderId && status.leader !== '') this.options.metrics?.leaderChanged(status.leader);
    this.leaderId = status.leader;
    this.options.logger.info({ event: 'raft-role', role: status.role, term: status.term, leader: status.leader }, `raft: ${status.role} in term ${status.term}${status.leader === '' ? '' : `, leader ${status.leader}`}`);
    if (wasLeader && this.role !== 'leader') {
      this.failPending(new OutcomeUnknownError('leadership was lost before the write committed; it may or may not be applied'));
      this.leaseExpiry.clear();
    }
    if (!wasLeader && this.role === 'leader') {
      // A new leader does not know when leases were last renewed: it gives each a full TTL (etcd).
      const now = this.options.clock.monotonicMs();
      this.leaseExpiry = new Map(this.kv.leases().map((lease) => [lease.id, now + Number(lease.ttl) * 1000]));
    }
    for (const listener of this.roleListeners) listener();
  }

  /** A membership takes effect when appended (§4.1), so the transport learns addresses then. */
  private syncMembers(): void {
    if (this.raft.membershipEpoch === this.membersSeen) return;
    this.membersSeen = this.raft.membershipEpoch;
    this.options.sender.setMembers(this.raft.status().members);
  }

  private failPending(error: Error): void {
    for (const proposal of this.proposals.values()) proposal.reject(error);
    this.proposals.clear();
    for (const read of this.reads.values()) read.reject(error);
    this.reads.clear();
  }

  /** Starts a local snapshot every `snapshotEntries` (and a spread) applied entries, one at a time, off the loop. */
  private maybeSnapshot(): void {
    if (this.snapshotting !== undefined || this.encodedSnapshot !== undefined) return;
    this.snapshotAfter ??= this.options.snapshotEntries + Math.floor(this.options.snapshotEntries * (this.options.snapshotSpread ?? 0) * (this.options.random ?? Math.random)());
    if (this.applied - this.raft.snapshotIndex < this.snapshotAfter) return;
    this.snapshotAfter = undefined;
    const index = this.applied;
    const captured = this.kv.captureSnapshot();
    const done = encodeInSlices(captured, () => nextTurn()).then((data) => {
      this.encodedSnapshot = { index, data };
      this.snapshotting = undefined;
      this.wake?.();
    });
    this.snapshotting = done.catch((err: Error) => this.snapshotFailed(err));
  }

  /** An encoded snapshot: the log is compacted to it now (between Readies) and the store saves it in the background. */
  private compactEncodedSnapshot(): void {
    const encoded = this.encodedSnapshot;
    if (encoded === undefined) return;
    // A snapshot from the leader installed meanwhile already covers it.
    if (this.raft.snapshotIndex >= encoded.index) {
      this.encodedSnapshot = undefined;
      return;
    }
    // Entries a leader is still writing stay in memory until they are on disk: at a later turn.
    if (encoded.index > this.raft.stableIndex) return;
    this.encodedSnapshot = undefined;
    const snapshot = this.raft.compact(encoded.index, encoded.data);
    const done = this.options.store.saveSnapshot(snapshot, { keepSuffix: true }).then(() => {
      this.snapshotting = undefined;
      this.options.logger.info({ event: 'snapshot', index: snapshot.meta.index, bytes: snapshot.data.length }, `snapshot at index ${snapshot.meta.index} (${snapshot.data.length} bytes); log compacted`);
    });
    this.snapshotting = done.catch((err: Error) => this.snapshotFailed(err));
  }

  private snapshotFailed(err: Error): void {
    this.snapshotting = undefined;
    this.snapshotError = err;
    this.wake?.();
  }

  /**
   * Cancellations go at once; woken streams are written on the next turn of the event loop, once
   * the proposals this Ready applied have been answered (their promises settle first): a write's
   * answer does not wait behind its own watch fan-out (with 1,000 watchers, 28 ms of it).
   */
  private notifyWake(wake: WatchWake): void {
    for (const cancellation of wake.cancelled) this.watchStreams.get(cancellation.watchId)?.cancelled(cancellation.error);
    if (wake.woken.length === 0) return;
    // An empty set has no flush scheduled yet; a non-empty one is written by the one already due.
    if (this.wokenStreams.size === 0) setImmediate(() => this.writeWokenStreams());
    for (const watchId of wake.woken) this.wokenStreams.add(watchId);
  }

  private writeWokenStreams(): void {
    const woken = [...this.wokenStreams];
    this.wokenStreams.clear();
    for (const watchId of woken) this.watchStreams.get(watchId)?.woken();
  }

  private trackLeaseChange(result: Extract<ApplyResult, { ok: true }>): void {
    if (this.role !== 'leader') return;
    const response = result.response;
    if (response.$case === 'leaseGrant') {
      this.leaseExpiry.set(response.value.id, this.options.clock.monotonicMs() + Number(response.value.ttl) * 1000);
    }
    // Revoked leases drop out at the next check, when the store no longer has them.
  }

  /** The leader proposes the revoke of every lease past its expiry (one proposal in flight each). */
  private expireLeases(): void {
    if (this.role !== 'leader') return;
    const now = this.options.clock.monotonicMs();
    for (const [id, expiry] of this.leaseExpiry) {
      if (this.kv.lease(id) === undefined) {
        this.leaseExpiry.delete(id);
        continue;
      }
      if (expiry > now || this.leasesRevoking.has(id)) continue;
      this.leasesRevoking.add(id);
      this.propose({ op: { $case: 'leaseRevoke', value: { id } } }, 5_000)
        .then(
          () => this.options.logger.info({ event: 'lease-expired', lease: id.toString() }, `lease ${id} expired; its keys were deleted`),
          (err: Error) => this.options.logger.warn({ event: 'lease-revoke-failed', lease: id.toString(), err }, `could not revoke expired lease ${id}: ${err.message}`),
        )
        .finally(() => this.leasesRevoking.delete(id));
    }
  }

  /**
   * etcd's auto-compaction: every server lets the policy sample; the leader proposes the
   * compaction it is given, as KV.Compact would, so every server compacts at the same index.
   * One in flight at a time; a lost leadership fails it and the next leader decides anew.
   */
  private autoCompact(policy: AutoCompactionPolicy): void {
    const before = Number(this.kv.compactRevision);
    const target = policy.decide({ nowMs: this.options.clock.nowMs(), currentRevision: Number(this.kv.revision), compactRevision: before, leader: this.role === 'leader' });
    if (target === undefined || this.autoCompacting) return;
    this.autoCompacting = true;
    this.propose({ op: { $case: 'compact', value: { revision: BigInt(target) } } }, AUTO_COMPACTION_TIMEOUT_MS)
      .then(
        (result) => {
          if (!result.ok) return this.options.logger.info({ event: 'auto-compaction-skipped', revision: target, reason: result.error.message }, `auto-compaction to revision ${target} not applied: ${result.error.message}`);
          this.options.metrics?.autoCompacted?.();
          const dropped = this.kv.lastCompaction?.revision === target ? this.kv.lastCompaction.keyRevisionsDropped : undefined;
          this.options.logger.info(
            { event: 'auto-compaction', revision: target, previous: before, keyRevisionsDropped: dropped, keyRevisionsRetained: this.kv.retainedRevisions },
            `auto-compaction: history compacted to revision ${target} (from ${before})${dropped === undefined ? '' : `, ${dropped} key revisions dropped`}`,
          );
        },
        (err: Error) => this.options.logger.warn({ event: 'auto-compaction-failed', revision: target, err }, `auto-compaction to revision ${target} failed: ${err.message}; the next check tries again`),
      )
      .finally(() => (this.autoCompacting = false));
  }
}
