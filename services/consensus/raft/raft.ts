/**
 * A pure Raft core, in the shape of etcd-io/raft's RawNode: it owns no socket, file, timer or
 * clock. The shell feeds it `tick()` (time), `step(message)` (the network) and proposals, then
 * takes a `Ready`, and must, in this order:
 *
 *   1. persist `hardState`, `snapshot` and `entries` durably (fsync);
 *   2. send `messages` (only now: a vote or an acknowledgement promises what is on disk);
 *   3. apply `snapshot`, then `committed`, to the state machine; serve `readStates` once applied;
 *   4. call `advance(ready)`.
 *
 * No other call may come between `ready()` and `advance()`. A leader may instead hand its entries
 * to the disk, send, apply and call `advanceWhileWriting(ready)`, then `persisted(index, term)`
 * when the write is done (§10.2.1); see there. What it implements, with the section
 * of Ongaro's thesis ("Consensus: Bridging Theory and Practice", 2014) each part follows:
 *
 *   elections with randomized timeouts (§3.4), PreVote (§9.6) and CheckQuorum (§6.2);
 *   log replication with fast backup (§3.5) and a bounded pipeline of appends (§10.2);
 *   commitment only by counting replicas of current-term entries (§3.6.2, paper §5.4.2);
 *   snapshots and InstallSnapshot (§5); single-server membership changes (§4.1), learners that
 *   catch up before promotion (§4.2.1); leadership transfer (§3.10);
 *   ReadIndex and leader-lease reads (§6.4, §6.4.1).
 */
import { invariant } from '../../lib/invariant';
import { RaftConfig } from './config';
import { RaftLog } from './log';
import { Membership, quorumMatch } from './membership';
import { Message, MessageType, message } from './messages';
import { Progress } from './progress';
import { ConfChange, Entry, HardState, Member, NodeId, Snapshot } from './types';

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly role: Role;
  /** The leader this server follows (itself when leading); '' when none is known. */
  readonly leader: NodeId;
}

/** A read that may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly id: string;
  /** undefined: not served, because this server stopped leading before the read was confirmed. */
  readonly index: number | undefined;
}

export interface Ready {
  readonly softState: SoftState | undefined;
  readonly hardState: HardState | undefined;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | undefined;
  readonly committed: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
}

export type ProposalRefusal = 'not-leader' | 'transferring' | 'too-many-uncommitted' | 'config-pending' | 'config-refused' | 'learner-behind';

/** A proposal the core will not take; `leader` says where to go instead when known. */
export class ProposalError extends Error {
  override readonly name = 'ProposalError';
  constructor(
    readonly reason: ProposalRefusal,
    message: string,
    readonly leader: NodeId,
  ) {
    super(message);
  }
}

export interface RaftStart {
  readonly config: RaftConfig;
  readonly hardState: HardState;
  readonly snapshot: Snapshot | undefined;
  /** Every stored entry after the snapshot, contiguous. */
  readonly entries: readonly Entry[];
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  readonly members: Member[];
  /** Leader only: each peer's match index. */
  readonly matches: Readonly<Record<NodeId, number>>;
}

/** The entries every server of a new cluster writes identically before starting (etcd does the same). */
export function bootstrapEntries(members: readonly Member[]): Entry[] {
  invariant(members.length > 0, 'a cluster needs at least one member');
  return [...members]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((member, i) => ({ index: i + 1, term: 1, kind: 'config' as const, change: { kind: 'add-voter' as const, member: { id: member.id, address: member.address, learner: false } } }));
}

interface PendingRead {
  readonly id: string;
  readonly index: number;
  readonly round: number;
}

export class Raft {
  readonly id: NodeId;
  private readonly config: RaftConfig;
  private readonly log: RaftLog;

  private term: number;
  private vote: NodeId;
  private role: Role = 'follower';
  private leader: NodeId = '';

  private membership: Membership;
  /** Bumped whenever the membership may have changed, so the shell can notice cheaply. */
  membershipEpoch = 0;
  /** Config entries in the in-memory log, oldest first; the membership is the snapshot's plus these. */
  private configEntries: { index: number; change: ConfChange }[] = [];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since this server started, for the lease. */
  private now = 0;

  private votes = new Map<NodeId, boolean>();
  private progress = new Map<NodeId, Progress>();
  private leadTransferee: NodeId = '';

  private heartbeatRound = 0;
  private roundSentAt = new Map<number, number>();
  private roundAcks = new Map<number, Set<NodeId>>();
  private pendingReads: PendingRead[] = [];
  /** Reads waiting for the next heartbeat round; one round is sent per Ready for all of them. */
  private readsAwaitingRound: { id: string; index: number }[] = [];
  /** Reads asked for before this leader committed an entry of its term; served once it has. */
  private readsAwaitingCommit: string[] = [];
  private leaseUntil = 0;

  private messages: Message[] = [];
  /**
   * Appends owed to every follower, sent when the next Ready is cut rather than one per proposal:
   * the proposals stepped between two Readies leave as one append per follower ('entries'), and
   * 'commit' also tells a follower with nothing new the advanced commit index.
   */
  private broadcastOwed: 'none' | 'entries' | 'commit' = 'none';
  private readStates: ReadState[] = [];
  private pendingSnapshot: Snapshot | undefined;
  private lastHardState: HardState;
  private lastSoftState: SoftState;

  constructor(start: RaftStart) {
    this.config = start.config;
    this.id = start.config.id;
    this.log = RaftLog.restore(start.snapshot, start.entries, start.hardState.commit);
    this.term = start.hardState.term;
    this.vote = start.hardState.vote;
    this.membership = new Membership(start.snapshot?.meta.members ?? []);
    this.configEntries = [];
    for (const entry of start.entries) if (entry.kind === 'config') this.configEntries.push({ index: entry.index, change: entry.change });
    this.recomputeMembership();
    this.lastHardState = this.hardState();
    this.lastSoftState = this.softState();
    this.resetElectionTimeout();
  }

  // ---- inputs -------------------------------------------------------------------------------

  tick(): void {
    // A tick that ticksUntilDue says does nothing must do nothing: a shell sleeps through those.
    const quiet = this.ticksUntilDue() > 1 && !this.hasReady();
    this.now++;
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
    if (quiet) invariant(!this.hasReady(), () => `${this.id} (${this.role}): a tick before the due one made a Ready`);
  }

  /**
   * How many ticks until one that can do anything: a heartbeat, a CheckQuorum round or a transfer
   * that times out, a lost snapshot or a stalled pipeline probed again, an election. The ticks
   * before it only count, so a shell may sleep through them and step them all when it wakes, as
   * long as it steps every tick due before any other input (ConsensusNode.catchUpTicks). At least 1;
   * Infinity for a server that never campaigns (a learner) and does not lead.
   */
  ticksUntilDue(): number {
    if (this.role !== 'leader') return this.membership.isVoter(this.id) ? Math.max(1, this.randomizedElectionTimeout - this.electionElapsed) : Infinity;
    let due = Math.min(this.config.heartbeatTicks - this.heartbeatElapsed, this.config.electionTicks - this.electionElapsed);
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      if (progress.state === 'snapshot') due = Math.min(due, this.config.electionTicks - progress.snapshotElapsed);
      else if (progress.state === 'replicate' && progress.isPaused()) due = Math.min(due, Math.ceil(stalledTicks(this.config) - progress.stalledElapsed));
    }
    return Math.max(1, due);
  }

  step(m: Message): void {
    invariant(m.to === this.id, () => `${this.id} got a message for ${m.to}`);
    if (!this.stepTerm(m)) return;
    switch (m.type) {
      case 'pre-vote':
      case 'vote':
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        return;
      case 'pre-candidate':
      case 'candidate':
        this.stepCandidate(m);
        return;
      case 'follower':
        this.stepFollower(m);
        return;
    }
  }

  /** Appends a command; returns its position. Leaders only. */
  propose(data: Uint8Array): { index: number; term: number } {
    this.checkCanPropose();
    return this.appendNew({ kind: 'normal', data });
  }

  /** Appends a membership change; one may be pending at a time. Leaders only. */
  proposeConfChange(change: ConfChange): { index: number; term: number } {
    this.checkCanPropose();
    if (change.kind === 'add-voter') throw new ProposalError('config-refused', 'servers join as learners and are promoted once caught up', this.leader);
    if (this.configEntries.some((entry) => entry.index > this.log.commit)) {
      throw new ProposalError('config-pending', 'a membership change is still being committed; retry when it is', this.leader);
    }
    const refusal = this.membership.refuse(change);
    if (refusal !== undefined) throw new ProposalError('config-refused', refusal, this.leader);
    if (change.kind === 'promote') {
      // Caught up (§4.2.1): it holds the entry that added it, and is close to our commit index.
      const match = this.progress.get(change.member.id)?.match ?? 0;
      const added = this.configEntries.find((entry) => entry.change.kind === 'add-learner' && entry.change.member.id === change.member.id)?.index ?? this.log.snapshotIndex;
      const behind = this.log.commit - match;
      if (match < added || behind > this.config.promotionLagEntries) {
        throw new ProposalError('learner-behind', `${change.member.id} has entries up to ${match} of ${this.log.commit}; it may be promoted once it holds ${added} and is within ${this.config.promotionLagEntries}`, this.leader);
      }
    }
    return this.appendNew({ kind: 'config', change });
  }

  /**
   * Asks for a linearizable read (§6.4): once a quorum confirms this server still leads, a
   * ReadState says which index the state machine must reach before the read is served. 'lease'
   * skips the quorum round while the leader lease holds (§6.4.1).
   */
  readIndex(id: string, mode: 'read-index' | 'lease'): void {
    if (this.role !== 'leader') {
      this.readStates.push({ id, index: undefined });
      return;
    }
    if (!this.committedInTerm()) {
      this.readsAwaitingCommit.push(id);
      return;
    }
    if (this.membership.voters().length === 1 || (mode === 'lease' && this.leaseValid())) {
      this.readStates.push({ id, index: this.log.commit });
      return;
    }
    this.readsAwaitingRound.push({ id, index: this.log.commit });
  }

  /** Hands leadership to `to` (§3.10): catch it up, then tell it to campaign at once. */
  transferLeadership(to: NodeId): void {
    if (this.role !== 'leader') throw new ProposalError('not-leader', 'only the leader can transfer leadership', this.leader);
    if (to === this.id) return;
    if (!this.membership.isVoter(to)) throw new ProposalError('config-refused', `${to} is not a voter`, this.leader);
    this.leadTransferee = to;
    // The new leader will win without waiting out our followers' stickiness: no more lease reads.
    this.leaseUntil = 0;
    const progress = this.progress.get(to)!;
    if (progress.match === this.log.lastIndex()) this.send(message({ type: 'timeout-now', from: this.id, to, term: this.term }));
    else this.sendAppend(to, true);
  }

  /** Starts an election now (tests, and the transfer target). */
  campaign(transfer = false): void {
    if (!this.membership.isVoter(this.id)) return;
    if (this.config.preVote && !transfer) this.becomePreCandidate();
    else this.becomeCandidate(transfer);
  }

  /** A local snapshot of the state machine at `index` (<= applied): compacts the log up to it. */
  compact(index: number, data: Uint8Array): Snapshot {
    const term = this.log.term(index);
    invariant(term !== undefined, () => `no entry at ${index} to snapshot`);
    const snapshot: Snapshot = { meta: { index, term, members: this.membershipAt(index).list() }, data };
    this.log.compact(snapshot);
    this.configEntries = this.configEntries.filter((entry) => entry.index > index);
    return snapshot;
  }

  // ---- outputs ------------------------------------------------------------------------------

  hasReady(): boolean {
    return (
      this.messages.length > 0 ||
      this.broadcastOwed !== 'none' ||
      this.readsAwaitingRound.length > 0 ||
      this.readStates.length > 0 ||
      this.pendingSnapshot !== undefined ||
      this.log.entriesToWrite().length > 0 ||
      this.log.commit > this.log.applied ||
      !sameHardState(this.hardState(), this.lastHardState) ||
      !sameSoftState(this.softState(), this.lastSoftState)
    );
  }

  ready(): Ready {
    this.payBroadcast();
    if (this.readsAwaitingRound.length > 0) {
      // Every read asked for since the last Ready shares one quorum round (batched ReadIndex).
      const round = this.broadcastHeartbeat();
      for (const read of this.readsAwaitingRound) this.pendingReads.push({ id: read.id, index: read.index, round });
      this.readsAwaitingRound = [];
    }
    const hardState = this.hardState();
    const softState = this.softState();
    const entries = this.log.entriesToWrite();
    if (entries.length > 0) this.log.writingTo(entries[entries.length - 1].index);
    const rd: Ready = {
      softState: sameSoftState(softState, this.lastSoftState) ? undefined : softState,
      hardState: sameHardState(hardState, this.lastHardState) ? undefined : hardState,
      entries,
      snapshot: this.pendingSnapshot,
      committed: this.pendingSnapshot === undefined ? this.log.nextCommitted(this.config.maxCommittedPerReady) : [],
      messages: this.messages,
      readStates: this.readStates,
    };
    this.messages = [];
    this.readStates = [];
    return rd;
  }

  /** Everything `rd` asked for is done: its entries and hard state are on disk. */
  advance(rd: Ready): void {
    this.finishReady(rd);
    const last = rd.entries[rd.entries.length - 1];
    if (last !== undefined) this.log.stableTo(last.index, last.term);
    this.countOwnCopy();
  }

  /** Whether `rd`, just cut, may be written in the background: advanceWhileWriting. */
  writableInBackground(rd: Ready): boolean {
    return (
      this.role === 'leader' &&
      rd.entries.length > 0 &&
      rd.snapshot === undefined &&
      (rd.hardState === undefined || (rd.hardState.term === this.lastHardState.term && rd.hardState.vote === this.lastHardState.vote))
    );
  }

  /**
   * A leader's Ready is done except that its entries (and the commit index with them) are still
   * being written (thesis §10.2.1: the leader writes its log in parallel with the followers, and
   * an entry commits once a quorum has it on disk, which need not include the leader). The shell
   * calls `persisted` when the write ends. Only for a leader, with no snapshot and no new term or
   * vote in `rd`: those promise something to others, so they are written before anything is sent.
   * Steps may come in between; the next Ready holds only entries appended since.
   */
  advanceWhileWriting(rd: Ready): void {
    invariant(this.writableInBackground(rd), () => `${this.id} (${this.role}): only a leader's entries, with no snapshot and no new term or vote, may be written in the background`);
    this.finishReady(rd);
  }

  private finishReady(rd: Ready): void {
    if (rd.hardState !== undefined) this.lastHardState = rd.hardState;
    if (rd.softState !== undefined) this.lastSoftState = rd.softState;
    if (rd.snapshot !== undefined) {
      invariant(this.pendingSnapshot === rd.snapshot, 'advance with a snapshot that is no longer pending');
      this.pendingSnapshot = undefined;
    }
    if (rd.committed.length > 0) this.log.appliedTo(rd.committed[rd.committed.length - 1].index);
  }

  /** Storage has written the log up to `index`, an entry of `term`: it counts toward commit now. */
  persisted(index: number, term: number): void {
    this.log.stableTo(index, term);
    this.countOwnCopy();
  }

  /** A leader's own entries count toward commit only once they are on its disk. */
  private countOwnCopy(): void {
    if (this.role !== 'leader') return;
    this.progress.get(this.id)?.maybeUpdate(this.log.stableIndex);
    if (this.maybeCommit()) this.owe('commit');
  }

  status(): RaftStatus {
    const matches: Record<NodeId, number> = {};
    for (const [id, progress] of this.progress) matches[id] = progress.match;
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commit: this.log.commit,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      snapshotIndex: this.log.snapshotIndex,
      members: this.membership.list(),
      matches,
    };
  }

  /** The log's entries in [lo, hi), for checkers and transcripts. */
  entries(lo: number, hi: number): Entry[] {
    return this.log.slice(Math.max(lo, this.log.firstIndex()), Math.min(hi, this.log.lastIndex() + 1));
  }

  get snapshotIndex(): number {
    return this.log.snapshotIndex;
  }

  /** How far the log is known to be on disk (a leader's write may be in progress past it). */
  get stableIndex(): number {
    return this.log.stableIndex;
  }

  /** The current term, without building a whole status (response headers need only this). */
  get currentTerm(): number {
    return this.term;
  }

  // ---- terms and roles ----------------------------------------------------------------------

  /** The term rules every message passes first (etcd raft.go Step). False: drop the message. */
  private stepTerm(m: Message): boolean {
    if (m.term > this.term) {
      if ((m.type === 'pre-vote' || m.type === 'vote') && !m.transfer && this.inLease()) {
        // Leader stickiness (§4.2.3, CheckQuorum): we heard from a leader within the election
        // timeout, so this candidate is disruptive; ignore it without raising our term.
        return false;
      }
      if (m.type === 'pre-vote' || (m.type === 'pre-vote-response' && m.success)) {
        // A pre-vote asks about term + 1 without anyone moving to it.
        return true;
      }
      const leader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot' ? m.from : '';
      this.becomeFollower(m.term, leader);
      return true;
    }
    if (m.term < this.term) {
      if (m.type === 'append' || m.type === 'heartbeat') {
        // A stale leader: tell it our term so it steps down (needed with CheckQuorum/PreVote,
        // where a partitioned node does not bump its term to get attention).
        this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term }));
      } else if (m.type === 'pre-vote') {
        this.send(message({ type: 'pre-vote-response', from: this.id, to: m.from, term: this.term, success: false }));
      }
      return false;
    }
    return true;
  }

  private inLease(): boolean {
    return this.config.checkQuorum && this.leader !== '' && this.electionElapsed < this.config.electionTicks;
  }

  private becomeFollower(term: number, leader: NodeId): void {
    const wasLeader = this.role === 'leader';
    this.reset(term);
    this.role = 'follower';
    this.leader = leader;
    if (wasLeader) this.dropReads();
  }

  private becomePreCandidate(): void {
    invariant(this.role !== 'leader', 'a leader cannot become a pre-candidate');
    // Not reset(): a pre-candidate keeps its term and vote.
    this.role = 'pre-candidate';
    this.leader = '';
    this.votes = new Map();
    this.electionElapsed = 0;
    this.resetElectionTimeout();
    this.requestVotes('pre-vote', this.term + 1, false);
  }

  private becomeCandidate(transfer: boolean): void {
    invariant(this.role !== 'leader', 'a leader cannot become a candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.requestVotes('vote', this.term, transfer);
  }

  private requestVotes(type: 'pre-vote' | 'vote', term: number, transfer: boolean): void {
    this.votes.set(this.id, true);
    if (this.tallyWon()) {
      if (type === 'pre-vote') this.becomeCandidate(false);
      else this.becomeLeader();
      return;
    }
    for (const voter of this.membership.voters()) {
      if (voter === this.id) continue;
      this.send(message({ type, from: this.id, to: voter, term, logIndex: this.log.lastIndex(), logTerm: this.log.lastTerm(), transfer }));
    }
  }

  private becomeLeader(): void {
    invariant(this.role === 'candidate', () => `${this.id} becomes leader from ${this.role}`);
    this.reset(this.term);
    this.role = 'leader';
    this.leader = this.id;
    for (const id of this.membership.ids()) this.progress.set(id, new Progress(this.log.lastIndex() + 1, this.config.maxInflightAppends));
    const self = this.progress.get(this.id);
    if (self !== undefined) {
      self.match = this.log.stableIndex;
      self.becomeReplicate();
    }
    // An entry of our own term, so earlier entries can commit (§5.4.2) and ReadIndex can start.
    this.appendNew({ kind: 'noop' });
  }

  /** Everything that resets with a new term or role. */
  private reset(term: number): void {
    invariant(term >= this.term, () => `term goes backwards: ${term} < ${this.term}`);
    if (term !== this.term) {
      this.term = term;
      this.vote = '';
    }
    this.leader = '';
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetElectionTimeout();
    this.votes = new Map();
    this.progress = new Map();
    this.leadTransferee = '';
    this.leaseUntil = 0;
    this.roundSentAt.clear();
    this.roundAcks.clear();
    this.broadcastOwed = 'none';
  }

  private resetElectionTimeout(): void {
    this.randomizedElectionTimeout = this.config.electionTicks + Math.floor(this.config.random() * this.config.electionTicks);
  }

  // ---- ticks --------------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    if (this.membership.isVoter(this.id) && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign();
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, '');
        return;
      }
      if (this.leadTransferee !== '') {
        // The transfer did not finish within an election timeout: give up, keep leading.
        this.leadTransferee = '';
      }
    }
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      if (progress.state === 'snapshot' && ++progress.snapshotElapsed >= this.config.electionTicks) {
        // The snapshot or its answer was lost: probe again, which sends it again if still needed.
        progress.becomeProbe();
        this.sendAppend(id);
      } else if (progress.state === 'replicate' && progress.isPaused() && ++progress.stalledElapsed >= stalledTicks(this.config)) {
        // A full pipeline that stopped moving: the appends or their answers were lost. The
        // transport does not always tell us (a silent network never does), so fall back to
        // probing from what is known to match.
        progress.becomeProbe();
        this.sendAppend(id, true);
      }
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  /** CheckQuorum (§6.2): a quorum of voters was heard from since the last check. */
  private quorumActive(): boolean {
    let active = 0;
    for (const voter of this.membership.voters()) {
      const progress = this.progress.get(voter);
      if (voter === this.id || progress?.recentActive) active++;
      if (progress !== undefined) progress.recentActive = false;
    }
    return active >= this.membership.quorum();
  }

  // ---- votes --------------------------------------------------------------------------------

  private handleVoteRequest(m: Message): void {
    const responseType: MessageType = m.type === 'pre-vote' ? 'pre-vote-response' : 'vote-response';
    // A vote may go to whoever we already voted for, or to anyone if we have not voted this
    // term and know no leader; a pre-vote may go to anyone for a future term (§9.6).
    const canVote = this.vote === m.from || (this.vote === '' && this.leader === '') || (m.type === 'pre-vote' && m.term > this.term);
    const grant = canVote && this.log.isUpToDate(m.logIndex, m.logTerm);
    if (grant && m.type === 'vote') {
      // Record the vote now; it reaches the disk (hardState in Ready) before the response leaves.
      this.electionElapsed = 0;
      this.vote = m.from;
    }
    // A granted pre-vote answers with the term asked about, a refusal with ours (etcd).
    const term = grant && m.type === 'pre-vote' ? m.term : this.term;
    this.send(message({ type: responseType, from: this.id, to: m.from, term, success: grant }));
  }

  private stepCandidate(m: Message): void {
    const expected = this.role === 'pre-candidate' ? 'pre-vote-response' : 'vote-response';
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // A leader of our term exists (§3.4): follow it.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case 'pre-vote-response':
      case 'vote-response': {
        if (m.type !== expected) return;
        if (!this.membership.isVoter(m.from)) return;
        this.votes.set(m.from, m.success);
        if (this.tallyWon()) {
          if (this.role === 'pre-candidate') this.becomeCandidate(false);
          else this.becomeLeader();
        } else if (this.tallyLost()) {
          this.becomeFollower(this.term, '');
        }
        return;
      }
      default:
        return;
    }
  }

  private tallyWon(): boolean {
    let granted = 0;
    for (const [id, yes] of this.votes) if (yes && this.membership.isVoter(id)) granted++;
    return granted >= this.membership.quorum();
  }

  private tallyLost(): boolean {
    let rejected = 0;
    for (const [id, yes] of this.votes) if (!yes && this.membership.isVoter(id)) rejected++;
    return rejected > this.membership.voters().length - this.membership.quorum();
  }

  // ---- follower -----------------------------------------------------------------------------

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'append':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
        this.send(message({ type: 'heartbeat-response', from: this.id, to: m.from, term: this.term, round: m.round }));
        return;
      case 'snapshot':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        return;
      case 'timeout-now':
        // Our leader hands over (§3.10): campaign at once, without pre-vote, disturbing its lease.
        this.campaign(true);
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Message): void {
    if (m.logIndex < this.log.commit) {
      // Already committed here; tell the leader where we are.
      this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term, success: true, matchIndex: this.log.commit }));
      return;
    }
    const hadConfig = m.entries.some((entry) => entry.kind === 'config');
    const truncationsBefore = this.log.truncations;
    const lastNew = this.log.maybeAppend(m.logIndex, m.logTerm, m.entries);
    if (lastNew === undefined) {
      const hint = this.log.findConflictByTerm(Math.min(m.logIndex, this.log.lastIndex()), m.logTerm);
      this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term, logIndex: m.logIndex, matchIndex: hint.index, rejectTerm: hint.term }));
      return;
    }
    if (hadConfig || this.log.truncations !== truncationsBefore) this.rebuildConfigEntries();
    this.log.commitTo(Math.min(m.commit, lastNew));
    this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term, success: true, matchIndex: lastNew }));
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    invariant(snapshot !== undefined, 'snapshot message without a snapshot');
    const { index, term } = snapshot.meta;
    if (index <= this.log.commit) {
      this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term, success: true, matchIndex: this.log.commit }));
      return;
    }
    if (this.log.matchTerm(index, term)) {
      // We have the snapshot's last entry: the entries up to it are committed, keep the rest.
      this.log.commitTo(index);
      this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term, success: true, matchIndex: this.log.lastIndex() }));
      return;
    }
    this.log.restoreSnapshot(snapshot);
    this.pendingSnapshot = snapshot;
    this.membership = new Membership(snapshot.meta.members);
    this.membershipEpoch++;
    this.configEntries = [];
    this.send(message({ type: 'append-response', from: this.id, to: m.from, term: this.term, success: true, matchIndex: index }));
  }

  // ---- leader -------------------------------------------------------------------------------

  private stepLeader(m: Message): void {
    const progress = this.progress.get(m.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    switch (m.type) {
      case 'append-response':
        this.handleAppendResponse(m, progress);
        return;
      case 'heartbeat-response':
        this.handleHeartbeatResponse(m, progress);
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, progress: Progress): void {
    if (!m.success) {
      // Fast backup (§3.5): the follower's hint lets us skip a whole conflicting term at once.
      const retry = this.log.findConflictByTerm(m.matchIndex, m.rejectTerm);
      if (progress.maybeDecreaseTo(m.logIndex, retry.index)) {
        if (progress.state === 'replicate') progress.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = progress.isPaused();
    if (!progress.maybeUpdate(m.matchIndex)) {
      if (wasPaused && !progress.isPaused()) this.sendAppend(m.from);
      return;
    }
    if (progress.state === 'probe') progress.becomeReplicate();
    else if (progress.state === 'snapshot' && progress.match >= progress.pendingSnapshot) {
      progress.becomeProbe();
      progress.becomeReplicate();
    }
    if (this.maybeCommit()) this.owe('commit');
    else if (wasPaused) this.sendAppend(m.from);
    // Keep streaming what is left.
    while (!progress.isPaused() && progress.next <= this.log.lastIndex()) if (!this.sendAppend(m.from)) break;
    if (m.from === this.leadTransferee && progress.match === this.log.lastIndex()) {
      // The transferee campaigns at once: it hears of the commit its acknowledgement made first.
      this.payBroadcast();
      this.send(message({ type: 'timeout-now', from: this.id, to: m.from, term: this.term }));
    }
  }

  private handleHeartbeatResponse(m: Message, progress: Progress): void {
    if (progress.state === 'probe') progress.probeSent = false;
    // A follower behind us gets an append even if we think its entries are in flight: if they
    // were lost, the (possibly empty) append is rejected and we back up to where it is.
    if (progress.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    if (!this.membership.isVoter(m.from)) return;
    const acks = this.roundAcks.get(m.round);
    if (acks === undefined) return;
    acks.add(m.from);
    if (acks.size >= this.membership.quorum()) this.roundConfirmed(m.round);
  }

  /** A quorum acknowledged heartbeat round `round`: leadership is confirmed as of its sending. */
  private roundConfirmed(round: number): void {
    const sentAt = this.roundSentAt.get(round);
    if (sentAt === undefined) return;
    if (this.leadTransferee === '') this.leaseUntil = Math.max(this.leaseUntil, sentAt + this.config.leaseTicks);
    for (const [r] of this.roundSentAt) {
      if (r <= round) {
        this.roundSentAt.delete(r);
        this.roundAcks.delete(r);
      }
    }
    const released = this.pendingReads.filter((read) => read.round <= round);
    this.pendingReads = this.pendingReads.filter((read) => read.round > round);
    for (const read of released) this.readStates.push({ id: read.id, index: read.index });
  }

  private leaseValid(): boolean {
    return this.config.leaseTicks > 0 && this.leadTransferee === '' && this.now < this.leaseUntil;
  }

  private committedInTerm(): boolean {
    return this.log.term(this.log.commit) === this.term;
  }

  private checkCanPropose(): void {
    if (this.role !== 'leader') throw new ProposalError('not-leader', this.leader === '' ? 'no leader is known' : `${this.leader} is the leader`, this.leader);
    if (this.leadTransferee !== '') throw new ProposalError('transferring', `leadership is moving to ${this.leadTransferee}`, this.leader);
    if (this.log.lastIndex() - this.log.commit >= this.config.maxUncommittedEntries) {
      throw new ProposalError('too-many-uncommitted', `${this.config.maxUncommittedEntries} entries are waiting to commit; retry shortly`, this.leader);
    }
  }

  private appendNew(body: { kind: 'normal'; data: Uint8Array } | { kind: 'config'; change: ConfChange } | { kind: 'noop' }): { index: number; term: number } {
    const index = this.log.lastIndex() + 1;
    const entry: Entry =
      body.kind === 'normal'
        ? { kind: 'normal', data: body.data, index, term: this.term }
        : body.kind === 'config'
          ? { kind: 'config', change: body.change, index, term: this.term }
          : { kind: 'noop', index, term: this.term };
    this.log.append([entry]);
    if (entry.kind === 'config') {
      this.configEntries.push({ index, change: entry.change });
      this.recomputeMembership();
    }
    this.owe('entries');
    return { index, term: this.term };
  }

  /** Commits the highest index a quorum has on disk, if it is of our term (§5.4.2). */
  private maybeCommit(): boolean {
    const matches = this.membership.voters().map((id) => this.progress.get(id)?.match ?? 0);
    const candidate = quorumMatch(matches, this.membership.quorum());
    if (candidate <= this.log.commit || this.log.term(candidate) !== this.term) return false;
    this.log.commitTo(candidate);
    if (this.readsAwaitingCommit.length > 0 && this.committedInTerm()) {
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const id of waiting) this.readIndex(id, 'read-index');
    }
    if (!this.membership.has(this.id) && !this.configEntries.some((entry) => entry.index > this.log.commit)) {
      // Our own removal is committed: step down so the others elect a leader (§4.2.2).
      this.becomeFollower(this.term, '');
    }
    return true;
  }

  private owe(what: 'entries' | 'commit'): void {
    if (this.role !== 'leader') return; // stepped down (our removal committed): nothing to send
    if (this.broadcastOwed !== 'commit') this.broadcastOwed = what;
  }

  /** Sends the appends owed (owe) now: when a Ready is cut, or before a message that must follow them. */
  private payBroadcast(): void {
    if (this.broadcastOwed === 'none') return;
    const sendIfEmpty = this.broadcastOwed === 'commit';
    this.broadcastOwed = 'none';
    if (this.role === 'leader') this.broadcastAppend(sendIfEmpty);
  }

  /** Sends new entries to every follower; `sendIfEmpty` also tells them a new commit index. */
  private broadcastAppend(sendIfEmpty = false): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, sendIfEmpty);
  }

  private broadcastHeartbeat(): number {
    const round = ++this.heartbeatRound;
    this.roundSentAt.set(round, this.now);
    this.roundAcks.set(round, new Set([this.id]));
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      this.send(message({ type: 'heartbeat', from: this.id, to: id, term: this.term, commit: Math.min(progress.match, this.log.commit), round }));
    }
    if (this.membership.quorum() <= 1) this.roundConfirmed(round);
    return round;
  }

  /** Sends what `to` needs next: entries, or the snapshot when they are compacted. False if paused. */
  private sendAppend(to: NodeId, sendIfEmpty = false): boolean {
    const progress = this.progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      const snapshot = this.log.snapshot;
      invariant(snapshot !== undefined, () => `${to} needs entries before ${this.log.firstIndex()} and there is no snapshot`);
      progress.becomeSnapshot(snapshot.meta.index);
      this.send(message({ type: 'snapshot', from: this.id, to, term: this.term, snapshot }));
      return true;
    }
    const entries = this.log.slice(progress.next, this.log.lastIndex() + 1, this.config.maxEntriesPerAppend, this.config.maxBytesPerAppend);
    if (entries.length === 0 && progress.state === 'replicate' && !sendIfEmpty) return false;
    this.send(message({ type: 'append', from: this.id, to, term: this.term, logIndex: prevIndex, logTerm: prevTerm, entries, commit: this.log.commit }));
    progress.sentEntries(entries.length, prevIndex + entries.length);
    return true;
  }

  private dropReads(): void {
    for (const read of [...this.pendingReads, ...this.readsAwaitingRound]) this.readStates.push({ id: read.id, index: undefined });
    for (const id of this.readsAwaitingCommit) this.readStates.push({ id, index: undefined });
    this.pendingReads = [];
    this.readsAwaitingRound = [];
    this.readsAwaitingCommit = [];
  }

  // ---- membership ---------------------------------------------------------------------------

  private rebuildConfigEntries(): void {
    this.configEntries = [];
    const entries = this.log.slice(this.log.firstIndex(), this.log.lastIndex() + 1);
    for (const entry of entries) if (entry.kind === 'config') this.configEntries.push({ index: entry.index, change: entry.change });
    this.recomputeMembership();
  }

  private recomputeMembership(): void {
    this.membershipEpoch++;
    this.membership = this.membershipAt(Infinity);
    if (this.role === 'leader') {
      for (const id of this.membership.ids()) {
        if (!this.progress.has(id)) this.progress.set(id, new Progress(this.log.lastIndex() + 1, this.config.maxInflightAppends));
      }
      for (const id of [...this.progress.keys()]) if (!this.membership.has(id)) this.progress.delete(id);
    }
  }

  private membershipAt(index: number): Membership {
    let membership = new Membership(this.log.snapshot?.meta.members ?? []);
    for (const entry of this.configEntries) {
      if (entry.index > index) break;
      const refusal = membership.refuse(entry.change);
      invariant(refusal === undefined, () => `config entry ${entry.index} cannot apply: ${refusal}`);
      membership = membership.apply(entry.change);
    }
    return membership;
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.commit };
  }

  private softState(): SoftState {
    return { role: this.role, leader: this.leader };
  }

  private send(m: Message): void {
    this.messages.push(m);
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.role === b.role && a.leader === b.leader;
}

/** Ticks a full pipeline may stand still before the leader probes its follower again. */
function stalledTicks(config: RaftConfig): number {
  return Math.max(2, config.electionTicks / 2);
}
