/**
 * Auto-compaction in the node shell (consensus-node.ts with auto-compaction.ts): three real
 * ConsensusNodes in this process on MemoryLogStores, their messages passed between them, time on a
 * ManualClock. The leader proposes a compaction once the retention has passed, through Raft, so
 * every server ends at the same compact revision with the same state; followers never propose,
 * also across a leadership change; a server with auto-compaction off never compacts.
 */
import { rangeRequest } from './kv/command-builders';
import { Cluster } from './testing/node-cluster';

let cluster: Cluster;

beforeEach(() => {
  cluster = new Cluster();
});

afterEach(async () => {
  await cluster.stop();
});

test('periodic: once the retention has passed, the leader compacts to the revision current then; every server ends at it with the same state', async () => {
  await cluster.start({ autoCompaction: { mode: 'periodic', retentionMs: 3_000 } });
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
  await cluster.start({ autoCompaction: { mode: 'revision', retentionRevisions: 10 } });
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
  await cluster.start({ autoCompaction: { mode: 'off' } });
  await cluster.write(50);
  await cluster.run(5_000);
  expect(cluster.compactions).toEqual([]);
  expect(await cluster.compactRevisions()).toEqual([0n, 0n, 0n]);
});
