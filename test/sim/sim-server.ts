/**
 * One consensus server inside the simulator: the real Raft core, driven the way the real shell
 * drives it (ready → persist → send → apply → advance; a leader's entries written in the
 * background, advanceWhileWriting then persisted), with a simulated disk that takes one write at a
 * time, in order, each durable only when its fsync completes, a small KV state machine, and the
 * client-facing handling of writes and linearizable reads. Canary bugs can be switched on to prove
 * the checkers catch them.
 */
import { raftConfig } from '../../services/consensus/raft/config';
import { Message, sendableBeforePersist } from '../../services/consensus/raft/messages';
import { ProposalError, Raft, Ready, ReadState, bootstrapEntries } from '../../services/consensus/raft/raft';
import { Entry, HardState, Member, Snapshot } from '../../services/consensus/raft/types';
import { Prng } from './prng';

/** Bugs that must be caught (reference/reliability.md R5). */
export interface Canaries {
  /** Send acknowledgements (append and vote responses) before the write under them is fsynced. */
  readonly ackBeforeFsync?: boolean;
  /** Send vote responses before the term and vote are fsynced. */
  readonly voteBeforePersist?: boolean;
  /** A server that believes it leads answers reads from its own state, without ReadIndex. */
  readonly readWithoutReadIndex?: boolean;
  /** A leader counts its own entries toward commit when its background write starts, not when it is done. */
  readonly leaderCountsUnwrittenEntries?: boolean;
}

const ELECTION_TICKS = 10;

export type KvCommand =
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  | { readonly op: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string }
  | { readonly op: 'delete'; readonly key: string };

export type KvResult = { readonly op: 'put' } | { readonly op: 'cas'; readonly ok: boolean } | { readonly op: 'delete'; readonly existed: boolean };

/** What the disk holds after fsync. */
export interface DurableState {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  entries: Entry[];
}

export interface ServerEnv {
  readonly now: () => number;
  readonly schedule: (delayMs: number, run: () => void) => void;
  readonly send: (message: Message) => void;
  readonly prng: Prng;
  readonly canaries: Canaries;
  /** Checkers: every entry this server applies, in order. */
  readonly onApply: (server: string, entry: Entry) => void;
  readonly onLeader: (server: string, term: number) => void;
  /** Entries applied before a snapshot is taken and the log compacted. */
  readonly snapshotEvery: number;
  readonly fsyncMs: () => number;
  /** A write was handed to the disk and will be durable in `fsyncMs`; the nemesis may cut power in between. */
  readonly onWriteStarted: (server: SimServer, fsyncMs: number) => void;
  /** A leader writes its entries in the background, as the real shell does by default (pipelineLeaderWrites). */
  readonly pipelineLeaderWrites: boolean;
}

type Pending = (result: { ok: true; value: unknown } | { ok: false; definite: boolean; reason: string }) => void;

export class SimServer {
  raft: Raft;
  up = true;
  paused = false;
  disk: DurableState;
  /** The state machine: key → value, rebuilt from the snapshot and the log at every start. */
  kv = new Map<string, string>();
  private appliedIndex = 0;
  /** A Ready is being written and nothing may be stepped until it is done (all but a leader's background writes). */
  private busy = false;
  /**
   * Writes in call order, as the store runs them: the first is on its way to the disk (a crash may
   * leave part of it there), the others wait their turn; `done` runs once one is durable.
   */
  private writes: { rd: Pick<Ready, 'hardState' | 'entries' | 'snapshot'>; done: () => void; background: boolean }[] = [];
  private readyScheduled = false;
  private inbox: (() => void)[] = [];
  /** Ticks that fell due while paused: stepped first on resume, as the shell does (ConsensusNode.catchUpTicks). */
  private ticksMissed = 0;
  /** Bumped at every crash: callbacks of an earlier life must not touch this one. */
  private life = 0;
  private readonly proposals = new Map<number, { term: number; done: Pending }>();
  private readonly reads = new Map<string, { key: string; done: Pending }>();
  private readonly waitingApply: { index: number; run: () => void }[] = [];
  private readSeq = 0;

  constructor(
    readonly id: string,
    private readonly env: ServerEnv,
    initialMembers: readonly Member[] | undefined,
  ) {
    const boot = initialMembers === undefined ? [] : bootstrapEntries(initialMembers);
    this.disk = { hardState: { term: boot.length > 0 ? 1 : 0, vote: '', commit: boot.length }, snapshot: undefined, entries: boot };
    this.raft = this.startRaft();
  }

  // ---- lifecycle (the nemesis calls these) ---------------------------------------------------

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.life++;
    this.tearWrite();
    this.busy = false;
    this.readyScheduled = false;
    this.inbox = [];
    for (const { done } of this.proposals.values()) done({ ok: false, definite: false, reason: 'server crashed' });
    for (const { done } of this.reads.values()) done({ ok: false, definite: true, reason: 'server crashed' });
    this.proposals.clear();
    this.reads.clear();
    this.waitingApply.length = 0;
  }

  restart(): void {
    if (this.up) return;
    this.up = true;
    this.paused = false;
    this.ticksMissed = 0;
    this.raft = this.startRaft();
    this.kick();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const missed = Math.min(this.ticksMissed, 2 * ELECTION_TICKS);
    this.ticksMissed = 0;
    this.inbox.unshift(...Array.from({ length: missed }, () => () => this.raft.tick()));
    this.kick();
  }

  // ---- inputs -------------------------------------------------------------------------------

  tick(): void {
    if (!this.up) return;
    if (this.paused) {
      this.ticksMissed++; // a frozen process's timers do not run; its clock does
      return;
    }
    this.input(() => this.raft.tick());
  }

  receive(message: Message): void {
    if (!this.up) return;
    this.input(() => this.raft.step(message));
  }

  /** A client write; `done` is called once with the outcome. */
  write(command: KvCommand, done: Pending): void {
    if (!this.up) return done({ ok: false, definite: true, reason: 'down' });
    this.input(() => {
      try {
        const { index, term } = this.raft.propose(Buffer.from(JSON.stringify(command)));
        this.proposals.set(index, { term, done });
      } catch (err) {
        if (!(err instanceof ProposalError)) throw err;
        done({ ok: false, definite: true, reason: err.reason });
      }
    });
  }

  /** A client linearizable read. */
  read(key: string, mode: 'read-index' | 'lease', done: Pending): void {
    if (!this.up) return done({ ok: false, definite: true, reason: 'down' });
    this.input(() => {
      if (this.env.canaries.readWithoutReadIndex) {
        if (this.raft.status().role !== 'leader') return done({ ok: false, definite: true, reason: 'not-leader' });
        return done({ ok: true, value: this.kv.get(key) ?? null });
      }
      const id = `${this.id}/${this.life}/${++this.readSeq}`;
      this.reads.set(id, { key, done });
      this.raft.readIndex(id, mode);
    });
  }

  // ---- the Ready loop -----------------------------------------------------------------------

  /** Runs `fn` against the core now, or after the Ready being persisted is done. */
  private input(fn: () => void): void {
    if (this.busy || this.paused) {
      if (this.inbox.length < 10_000) this.inbox.push(fn);
      return;
    }
    fn();
    this.kick();
  }

  private kick(): void {
    if (this.readyScheduled || this.busy || this.paused || !this.up) return;
    this.readyScheduled = true;
    const life = this.life;
    this.env.schedule(0, () => {
      if (life !== this.life) return;
      this.readyScheduled = false;
      this.handleReady();
    });
  }

  private handleReady(): void {
    if (!this.up || this.paused || this.busy) return;
    while (this.inbox.length > 0) this.inbox.shift()!();
    if (!this.raft.hasReady()) return;
    const rd = this.raft.ready();
    if (rd.softState?.role === 'leader') this.env.onLeader(this.id, this.raft.status().term);
    const needsWrite = rd.hardState !== undefined || rd.entries.length > 0 || rd.snapshot !== undefined;
    const early = rd.messages.filter((m) => this.sendsEarly(m));
    for (const m of early) this.env.send(m);
    const late = rd.messages.filter((m) => !this.sendsEarly(m));
    if (!needsWrite) {
      this.finishReady(rd, late);
      return;
    }
    if (this.env.pipelineLeaderWrites && this.raft.writableInBackground(rd)) {
      const last = rd.entries[rd.entries.length - 1];
      const persisted = () => this.input(() => this.raft.persisted(last.index, last.term));
      this.writeToDisk(rd, this.env.canaries.leaderCountsUnwrittenEntries ? () => undefined : persisted, true);
      this.finishReady(rd, late, 'while-writing');
      if (this.env.canaries.leaderCountsUnwrittenEntries) persisted();
      return;
    }
    this.busy = true;
    this.writeToDisk(rd, () => {
      this.busy = false;
      this.finishReady(rd, late);
    });
  }

  /** A background write behind another gathers into the one waiting, one write for both (as the shell's). */
  private writeToDisk(rd: Ready, done: () => void, background = false): void {
    const waiting = this.writes.length > 1 ? this.writes[this.writes.length - 1] : undefined;
    if (background && waiting?.background === true) {
      waiting.rd = { hardState: rd.hardState ?? waiting.rd.hardState, entries: [...waiting.rd.entries, ...rd.entries], snapshot: undefined };
      waiting.done = done;
      return;
    }
    this.writes.push({ rd, done, background });
    if (this.writes.length === 1) this.startWrite();
  }

  private startWrite(): void {
    const head = this.writes[0];
    const life = this.life;
    const fsyncMs = this.env.fsyncMs();
    this.env.onWriteStarted(this, fsyncMs);
    this.env.schedule(fsyncMs, () => {
      if (life !== this.life) return; // crashed before the fsync completed: see tearWrite
      this.writes.shift();
      this.persist(head.rd);
      head.done();
      if (this.writes.length > 0) this.startWrite();
    });
  }

  /** As the real shell: a leader's appends go out while its own write is in progress (§10.2.1). */
  private sendsEarly(m: Message): boolean {
    if (sendableBeforePersist(m)) return true;
    const c = this.env.canaries;
    if (c.ackBeforeFsync && (m.type === 'append-response' || m.type === 'vote-response')) return true;
    return c.voteBeforePersist === true && m.type === 'vote-response';
  }

  private finishReady(rd: Ready, messages: readonly Message[], written: 'written' | 'while-writing' = 'written'): void {
    for (const m of messages) this.env.send(m);
    if (rd.snapshot !== undefined) this.restoreStateMachine(rd.snapshot);
    for (const entry of rd.committed) this.apply(entry);
    for (const read of rd.readStates) this.serveRead(read);
    if (written === 'written') this.raft.advance(rd);
    else this.raft.advanceWhileWriting(rd);
    this.maybeSnapshot();
    this.kick();
  }

  /**
   * A crash during a write: nothing of it may have reached the disk, or a prefix of its entries
   * (a torn tail, which storage/ cuts back to the last whole record). Never the hard state alone:
   * it is written last, after the entries, in the same fsync. The writes queued behind it never
   * started.
   */
  private tearWrite(): void {
    const rd = this.writes[0]?.rd;
    this.writes = [];
    if (rd === undefined || rd.entries.length === 0 || !this.env.prng.chance(0.5)) return;
    const kept = rd.entries.slice(0, this.env.prng.between(1, rd.entries.length));
    const first = kept[0].index;
    this.disk.entries = [...this.disk.entries.filter((entry) => entry.index < first), ...kept];
  }

  private persist(rd: Pick<Ready, 'hardState' | 'entries' | 'snapshot'>): void {
    if (rd.snapshot !== undefined) {
      // A snapshot from the leader replaces the whole log, as storage's saveSnapshot with
      // keepSuffix false: entries we stored after its index may be stale ones of an older term.
      this.disk.snapshot = rd.snapshot;
      this.disk.entries = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      this.disk.entries = [...this.disk.entries.filter((entry) => entry.index < first), ...rd.entries];
    }
    if (rd.hardState !== undefined) this.disk.hardState = rd.hardState;
  }

  private apply(entry: Entry): void {
    this.env.onApply(this.id, entry);
    this.appliedIndex = entry.index;
    let result: KvResult | undefined;
    if (entry.kind === 'normal') result = applyCommand(this.kv, JSON.parse(Buffer.from(entry.data).toString('utf8')) as KvCommand);
    const proposal = this.proposals.get(entry.index);
    if (proposal !== undefined) {
      this.proposals.delete(entry.index);
      // Another leader's entry took the slot: ours was never committed and never will be.
      if (proposal.term === entry.term) proposal.done({ ok: true, value: result });
      else proposal.done({ ok: false, definite: true, reason: 'overwritten' });
    }
    while (this.waitingApply.length > 0 && this.waitingApply[0].index <= this.appliedIndex) this.waitingApply.shift()!.run();
  }

  private serveRead(state: ReadState): void {
    const read = this.reads.get(state.id);
    if (read === undefined) return;
    this.reads.delete(state.id);
    if (state.index === undefined) return read.done({ ok: false, definite: true, reason: 'not-leader' });
    const answer = () => read.done({ ok: true, value: this.kv.get(read.key) ?? null });
    if (this.appliedIndex >= state.index) answer();
    else this.waitingApply.push({ index: state.index, run: answer });
  }

  private maybeSnapshot(): void {
    if (this.appliedIndex - this.raft.snapshotIndex < this.env.snapshotEvery) return;
    // A leader may have applied entries it is still writing: they stay in its log until on disk.
    if (this.appliedIndex > this.raft.stableIndex) return;
    const snapshot = this.raft.compact(this.appliedIndex, Buffer.from(JSON.stringify([...this.kv])));
    // The snapshot file is written and fsynced before the log is cut (as storage/ does).
    this.disk.snapshot = snapshot;
    this.disk.entries = this.disk.entries.filter((entry) => entry.index > snapshot.meta.index);
  }

  private restoreStateMachine(snapshot: Snapshot): void {
    this.kv = new Map(JSON.parse(Buffer.from(snapshot.data).toString('utf8')) as [string, string][]);
    this.appliedIndex = snapshot.meta.index;
    while (this.waitingApply.length > 0 && this.waitingApply[0].index <= this.appliedIndex) this.waitingApply.shift()!.run();
  }

  private startRaft(): Raft {
    const prng = this.env.prng;
    const raft = new Raft({
      config: raftConfig({ id: this.id, random: () => prng.next(), electionTicks: ELECTION_TICKS, heartbeatTicks: 1, maxInflightAppends: 8, maxEntriesPerAppend: 16 }),
      hardState: this.disk.hardState,
      snapshot: this.disk.snapshot,
      entries: this.disk.entries,
    });
    this.kv = new Map();
    this.appliedIndex = 0;
    if (this.disk.snapshot !== undefined) this.restoreStateMachine(this.disk.snapshot);
    return raft;
  }

  /** The state machine's content, for "equal state machines". */
  stateHash(): string {
    return JSON.stringify([...this.kv].sort(([a], [b]) => a.localeCompare(b)));
  }

  get applied(): number {
    return this.appliedIndex;
  }
}

export function applyCommand(kv: Map<string, string>, command: KvCommand): KvResult {
  switch (command.op) {
    case 'put':
      kv.set(command.key, command.value);
      return { op: 'put' };
    case 'cas': {
      const current = kv.get(command.key) ?? null;
      if (current !== command.expected) return { op: 'cas', ok: false };
      kv.set(command.key, command.value);
      return { op: 'cas', ok: true };
    }
    case 'delete':
      return { op: 'delete', existed: kv.delete(command.key) };
  }
}
