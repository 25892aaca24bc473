/**
 * Auto-compaction in the node shell (consensus-node.ts with auto-compaction.ts): three real
 * ConsensusNodes in this process on MemoryLogStores, their messages passed between them, time on a
 * ManualClock. The leader proposes a compaction once the retention has passed, through Raft, so
 * every server ends at the same compact revision with the same state; followers never propose,
 * also across a leadership change; a server with auto-compaction off never compacts.
 */
import { Command } from '../gen/consulate/consensus/v1/command';
import { ManualClock } from '../lib/clock';
import { createLogger } from '../lib/log';
import { AutoCompactionPolicy, AutoCompactionSettings } from './auto-compaction';
import { ConsensusNode } from './consensus-node';
import { command, rangeRequest } from './kv/command-builders';
import { raftConfig } from './raft/config';
import { Member } from './raft/types';
import { MemoryLogStore } from './storage/memory-log-store';

const TICK_MS = 10;
const IDS = ['server-1', 'server-2', 'server-3'];
const MEMBERS: Member[] = IDS.map((id) => ({ id, address: `${id}:8310`, learner: false }));

interface LogLine {
  readonly node: string;
  readonly event?: string;
  readonly msg: string;
  readonly revision?: number;
  readonly previous?: number;
  readonly keyRevisionsDropped?: number;
}

/** A compaction proposed through `propose`, with the role the proposing node believed it had. */
interface CompactProposal {
  readonly node: string;
  readonly role: string;
  readonly revision: bigint;
}

class Cluster {
  readonly clock = new ManualClock(1_700_000_000_000);
  readonly nodes = new Map<string, ConsensusNode>();
  /** Each node's role as the node itself last saw it (onRoleChange). */
  readonly roles = new Map<string, string>();
  readonly compactions: CompactProposal[] = [];
  readonly logs: LogLine[] = [];
  readonly autoCompacted = new Map<string, number>();

  async start(settings: AutoCompactionSettings): Promise<void> {
    let seed = 7;
    for (const id of IDS) {
      const node = await ConsensusNode.open({
        raft: raftConfig({ id, random: () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648), electionTicks: 10, heartbeatTicks: 1 }),
        tickMs: TICK_MS,
        store: new MemoryLogStore(),
        sender: {
          setMembers: () => undefined,
          // Delivered on a later turn, as over a network; never inside the sender's own loop.
          send: (messages) => {
            for (const message of messages) setImmediate(() => this.nodes.get(message.to)?.receive(message));
          },
        },
        clock: this.clock,
        logger: createLogger({ role: 'consensus', datacenter: 'dc1', node: id, level: 'info', destination: { write: (line: string) => void this.logs.push(JSON.parse(line) as LogLine) } }),
        initialMembers: MEMBERS,
        snapshotEntries: 10_000,
        maxPending: 1_000,
        metrics: { startCommitTimer: () => () => undefined, startSyncTimer: () => () => undefined, leaderChanged: () => undefined, autoCompacted: () => this.autoCompacted.set(id, (this.autoCompacted.get(id) ?? 0) + 1) },
        autoCompaction: new AutoCompactionPolicy(settings),
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

let cluster: Cluster;

beforeEach(() => {
  cluster = new Cluster();
});

afterEach(async () => {
  await cluster.stop();
});

test('periodic: once the retention has passed, the leader compacts to the revision current then; every server ends at it with the same state', async () => {
  await cluster.start({ mode: 'periodic', retentionMs: 3_000 });
  const leader = cluster.leader()!;
  await cluster.write(20); // revisions 2-21, at the start
  const oldRevision = leader.kv.revision;
  await cluster.run(1_000);
  await cluster.write(20); // 22-41, a second later

  // Less than the retention since the first writes: nothing compacted, nothing proposed.
  await cluster.run(1_500);
  expect(cluster.compactions).toEqual([]);
  expect(await cluster.compactRevisions()).toEqual([0n, 0n, 0n]);

  await cluster.runUntil(() => leader.kv.compactRevision > 0n, 'the leader compacts', 5_000);
  const compacted = leader.kv.compactRevision;
  // The revision sampled `retention` ago: the first burst's end (the second is younger than 3 s).
  expect(compacted).toBe(oldRevision);
  expect(await cluster.compactRevisions()).toEqual([compacted, compacted, compacted]);
  const hashes = new Set([...cluster.nodes.values()].map((node) => node.kv.hash()));
  expect(hashes.size).toBe(1);

  // Only the leader proposed; its info line says what went.
  const leaderId = cluster.idOf(leader);
  expect(cluster.compactions).toEqual([{ node: leaderId, role: 'leader', revision: compacted }]);
  expect(cluster.autoCompacted).toEqual(new Map([[leaderId, 1]]));
  expect(cluster.logs.filter((line) => line.event === 'auto-compaction')).toEqual([
    expect.objectContaining({ node: leaderId, revision: Number(compacted), previous: 0, keyRevisionsDropped: 19, msg: `auto-compaction: history compacted to revision ${compacted} (from 0), 19 key revisions dropped` }),
  ]);

  // On every server: reads below it fail compacted, a watch from revision 1 is refused, the
  // current value is intact.
  for (const node of cluster.nodes.values()) {
    const old = node.kv.range(rangeRequest('node/1', '', { revision: 5 }));
    expect(!old.ok && old.error.message).toBe('etcdserver: mvcc: required revision has been compacted');
    const watch = node.kv.watches.watch({ key: Buffer.from('node/1'), rangeEnd: Buffer.alloc(0), startRevision: 1n, prevKv: false });
    expect(!watch.ok && [watch.error.code, watch.error.compactRevision]).toEqual(['OUT_OF_RANGE', compacted]);
    const now = node.kv.range(rangeRequest('node/1'));
    expect(now.ok && now.response.kvs.map((kv) => [kv.value.toString(), kv.version])).toEqual([['status 19', 40n]]);
  }
});

test('revision: across a leadership change only the leader of the moment proposes, and all servers follow its compactions', async () => {
  await cluster.start({ mode: 'revision', retentionRevisions: 10 });
  const first = cluster.leader()!;
  await cluster.write(30);
  await cluster.runUntil(() => first.kv.compactRevision > 0n, 'the first leader compacts', 5_000);
  expect(await cluster.compactRevisions()).toEqual(Array(3).fill(first.kv.compactRevision));

  // Hand leadership to another server; the old leader is now a follower and must stay quiet.
  const next = [...cluster.nodes.values()].find((node) => node !== first)!;
  await cluster.leader()!.transferLeadership(cluster.idOf(next));
  await cluster.runUntil(() => cluster.leader() === next, 'the transfer completes');
  const proposedBefore = cluster.compactions.length;
  await cluster.write(30);
  await cluster.runUntil(() => next.kv.compactRevision >= next.kv.revision - 11n, 'the new leader compacts', 5_000);
  await cluster.run(2_000);

  const revisions = await cluster.compactRevisions();
  expect(new Set(revisions).size).toBe(1);
  expect(revisions[0]).toBeGreaterThan(first.kv.compactRevision - 1n);
  expect(new Set([...cluster.nodes.values()].map((node) => node.kv.hash())).size).toBe(1);
  // Every compaction was proposed by a node that believed it led; after the transfer, only the new leader.
  expect(cluster.compactions.every((proposal) => proposal.role === 'leader')).toBe(true);
  expect(new Set(cluster.compactions.slice(0, proposedBefore).map((proposal) => proposal.node))).toEqual(new Set([cluster.idOf(first)]));
  expect(new Set(cluster.compactions.slice(proposedBefore).map((proposal) => proposal.node))).toEqual(new Set([cluster.idOf(next)]));
  // Never below an earlier one, never at or past the store's revision then: strictly increasing.
  const targets = cluster.compactions.map((proposal) => proposal.revision);
  expect(targets).toEqual([...targets].sort((a, b) => (a < b ? -1 : 1)));
  expect(new Set(targets).size).toBe(targets.length);
  expect(cluster.logs.filter((line) => line.event === 'auto-compaction-failed')).toEqual([]);
});

test('off (-auto-compaction-retention=0): nothing is ever compacted', async () => {
  await cluster.start({ mode: 'off' });
  await cluster.write(50);
  await cluster.run(5_000);
  expect(cluster.compactions).toEqual([]);
  expect(await cluster.compactRevisions()).toEqual([0n, 0n, 0n]);
});
