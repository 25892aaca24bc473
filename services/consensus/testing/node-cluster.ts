/**
 * Three real ConsensusNodes in one process for tests of the node shell: messages passed between
 * them on later turns of the event loop (as over a network), time on a ManualClock, stores in
 * memory unless a test gives its own, every log line kept.
 */
import { expect } from '@jest/globals';

import { Command } from '../../gen/consulate/consensus/v1/command';
import { Clock, ManualClock, TimerHandle } from '../../lib/clock';
import { createLogger } from '../../lib/log';
import { AutoCompactionPolicy, AutoCompactionSettings } from '../auto-compaction';
import { ConsensusNode } from '../consensus-node';
import { command } from '../kv/command-builders';
import { raftConfig } from '../raft/config';
import { Member } from '../raft/types';
import { LogStore } from '../storage/log-store';
import { MemoryLogStore } from '../storage/memory-log-store';

export interface ClusterOptions {
  readonly autoCompaction?: AutoCompactionSettings;
  /** Applied entries between local snapshots. Default 10,000. */
  readonly snapshotEntries?: number;
  /** Each server's store. Default a MemoryLogStore. */
  readonly storeFor?: (id: string) => LogStore;
  /** ConsensusNodeOptions.pipelineLeaderWrites; default true, as in a server. */
  readonly pipelineLeaderWrites?: boolean;
  /** ConsensusNodeOptions.snapshotSpread and each server's random draw for it. Default none. */
  readonly snapshotSpread?: { readonly fraction: number; readonly random: (id: string) => number };
}

export const TICK_MS = 10;
export const IDS = ['server-1', 'server-2', 'server-3'];
const MEMBERS: Member[] = IDS.map((id) => ({ id, address: `${id}:8310`, learner: false }));

export interface LogLine {
  readonly node: string;
  readonly event?: string;
  readonly msg: string;
  readonly revision?: number;
  readonly previous?: number;
  readonly keyRevisionsDropped?: number;
}

/** A compaction proposed through `propose`, with the role the proposing node believed it had. */
export interface CompactProposal {
  readonly node: string;
  readonly role: string;
  readonly revision: bigint;
}

/**
 * One server's view of the shared clock: time passes for everyone, but while the server is paused
 * (a stopped process, a blocked loop) its timers do not run. They run again on resume, as Node's
 * do once a stalled loop moves on: an interval at its next due time, a timeout that came due
 * meanwhile at once (once, however late).
 */
class PausableClock implements Clock {
  private paused = false;
  /** Timeouts that came due while paused, by handle: they run on resume unless cleared first. */
  private readonly overdue = new Map<number, () => void>();
  /** An overdue timeout's handle → the timer that runs it after a resume (clear() must reach it). */
  private readonly rescheduled = new Map<number, TimerHandle>();

  constructor(private readonly shared: ManualClock) {}

  setPaused(paused: boolean): void {
    this.paused = paused;
    if (paused) return;
    const overdue = [...this.overdue];
    this.overdue.clear();
    for (const [id, fn] of overdue) {
      const timer = this.shared.setTimeout(() => {
        this.rescheduled.delete(id);
        if (this.paused) this.overdue.set(id, fn);
        else fn();
      }, 0);
      this.rescheduled.set(id, timer);
    }
  }

  nowMs(): number {
    return this.shared.nowMs();
  }

  monotonicMs(): number {
    return this.shared.monotonicMs();
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const handle: TimerHandle = this.shared.setTimeout(() => (this.paused ? this.overdue.set(handle.id, fn) : fn()), delayMs);
    return handle;
  }

  setInterval(fn: () => void, periodMs: number): TimerHandle {
    return this.shared.setInterval(() => this.paused || fn(), periodMs);
  }

  clear(handle: TimerHandle): void {
    this.overdue.delete(handle.id);
    const rescheduled = this.rescheduled.get(handle.id);
    if (rescheduled !== undefined) this.shared.clear(rescheduled);
    this.rescheduled.delete(handle.id);
    this.shared.clear(handle);
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, delayMs));
  }
}

export class Cluster {
  readonly clock = new ManualClock(1_700_000_000_000);
  /** Servers cut off from the others: their messages, both ways, are lost. */
  readonly partitioned = new Set<string>();
  private readonly clocks = new Map<string, PausableClock>();
  readonly nodes = new Map<string, ConsensusNode>();
  /** Each node's role as the node itself last saw it (onRoleChange). */
  readonly roles = new Map<string, string>();
  readonly compactions: CompactProposal[] = [];
  readonly logs: LogLine[] = [];
  readonly autoCompacted = new Map<string, number>();

  async start(options: ClusterOptions = {}): Promise<void> {
    let seed = 7;
    for (const id of IDS) {
      const clock = new PausableClock(this.clock);
      this.clocks.set(id, clock);
      const node = await ConsensusNode.open({
        raft: raftConfig({ id, random: () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648), electionTicks: 10, heartbeatTicks: 1 }),
        tickMs: TICK_MS,
        store: options.storeFor?.(id) ?? new MemoryLogStore(),
        sender: {
          setMembers: () => undefined,
          // Delivered on a later turn, as over a network; never inside the sender's own loop.
          send: (messages) => {
            for (const message of messages) {
              if (this.partitioned.has(id) || this.partitioned.has(message.to)) continue;
              setImmediate(() => this.nodes.get(message.to)?.receive(message));
            }
          },
        },
        clock,
        logger: createLogger({ role: 'consensus', datacenter: 'dc1', node: id, level: 'info', destination: { write: (line: string) => void this.logs.push(JSON.parse(line) as LogLine) } }),
        initialMembers: MEMBERS,
        snapshotEntries: options.snapshotEntries ?? 10_000,
        maxPending: 1_000,
        metrics: { startCommitTimer: () => () => undefined, startSyncTimer: () => () => undefined, leaderChanged: () => undefined, autoCompacted: () => this.autoCompacted.set(id, (this.autoCompacted.get(id) ?? 0) + 1) },
        autoCompaction: options.autoCompaction === undefined ? undefined : new AutoCompactionPolicy(options.autoCompaction),
        pipelineLeaderWrites: options.pipelineLeaderWrites,
        snapshotSpread: options.snapshotSpread?.fraction,
        random: options.snapshotSpread === undefined ? undefined : () => options.snapshotSpread!.random(id),
      });
      const propose = node.propose.bind(node);
      node.propose = (cmd: Command, timeoutMs: number) => {
        if (cmd.op?.$case === 'compact') this.compactions.push({ node: id, role: this.roles.get(id) ?? 'follower', revision: cmd.op.value.revision });
        return propose(cmd, timeoutMs);
      };
      node.onRoleChange(() => this.roles.set(id, node.status().role));
      this.nodes.set(id, node);
    }
    for (const node of this.nodes.values()) node.start();
    await this.runUntil(() => this.leader() !== undefined, 'a leader is elected');
  }

  /** Stops (or restarts) a server's timers while time goes on for the others: SIGSTOP, SIGCONT. */
  setPaused(id: string, paused: boolean): void {
    this.clocks.get(id)!.setPaused(paused);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => node.stop()));
  }

  leader(): ConsensusNode | undefined {
    const leaders = [...this.nodes.values()].filter((node) => node.status().role === 'leader');
    return leaders.length === 1 ? leaders[0] : undefined;
  }

  idOf(node: ConsensusNode): string {
    return [...this.nodes].find(([, n]) => n === node)![0];
  }

  /** Lets every node's loop, store and deliveries run until nothing is left to do this instant. */
  async settle(): Promise<void> {
    for (let i = 0; i < 12; i++) await new Promise((resolve) => setImmediate(resolve));
  }

  /** Moves time on a tick at a time for `ms`. */
  async run(ms: number): Promise<void> {
    for (let t = 0; t < ms; t += TICK_MS) {
      this.clock.advance(TICK_MS);
      await this.settle();
    }
  }

  async runUntil(condition: () => boolean, what: string, maxMs = 30_000): Promise<void> {
    for (let t = 0; !condition(); t += TICK_MS) {
      if (t > maxMs) throw new Error(`${what}: not within ${maxMs} ms of virtual time`);
      this.clock.advance(TICK_MS);
      await this.settle();
    }
  }

  /** Puts on the leader, each applied there before the next. */
  async write(count: number, key = 'node/1'): Promise<void> {
    for (let i = 0; i < count; i++) {
      const result = await this.leader()!.propose(command.put(key, `status ${i}`), 5_000);
      expect(result.ok).toBe(true);
    }
  }

  /** Every server's compact revision, once all have applied what the leader has. */
  async compactRevisions(): Promise<bigint[]> {
    const applied = this.leader()!.status().appliedIndex;
    await this.runUntil(() => [...this.nodes.values()].every((node) => node.status().appliedIndex >= applied), 'every server applies the leader log');
    return [...this.nodes.values()].map((node) => node.kv.compactRevision);
  }
}
