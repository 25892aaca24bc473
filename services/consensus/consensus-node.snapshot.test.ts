/**
 * Local snapshots in the node shell: taken off the loop (captured at once, encoded in slices,
 * saved in the background), so writes go on committing while a server's snapshot is saved, on a
 * follower and on the leader alike; afterwards every server has compacted its log, all hold the
 * same state, and a restarted server's store holds its snapshot and the entries after it.
 */
import { Snapshot } from './raft/types';
import { SaveSnapshotOptions } from './storage/log-store';
import { MemoryLogStore } from './storage/memory-log-store';
import { Cluster, IDS } from './testing/node-cluster';

/** A MemoryLogStore whose snapshot saves wait until the test lets them finish. */
class HeldSnapshotStore extends MemoryLogStore {
  held: Array<() => void> = [];
  hold = false;
  saved: number[] = [];

  override async saveSnapshot(snapshot: Snapshot, options: SaveSnapshotOptions): Promise<void> {
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    await super.saveSnapshot(snapshot, options);
    this.saved.push(snapshot.meta.index);
  }

  release(): void {
    this.hold = false;
    for (const resolve of this.held.splice(0)) resolve();
  }
}

const SNAPSHOT_ENTRIES = 40;
let cluster: Cluster;
let stores: Map<string, HeldSnapshotStore>;

beforeEach(async () => {
  cluster = new Cluster();
  stores = new Map(IDS.map((id) => [id, new HeldSnapshotStore()]));
  await cluster.start({ snapshotEntries: SNAPSHOT_ENTRIES, storeFor: (id) => stores.get(id)! });
});

afterEach(async () => {
  for (const store of stores.values()) store.release();
  await cluster.stop();
});

test.each(['leader', 'follower'] as const)('writes go on committing while the %s saves a snapshot; then every server has one and the same state', async (whose) => {
  const leader = cluster.leader()!;
  const leaderId = cluster.idOf(leader);
  const slowId = whose === 'leader' ? leaderId : IDS.find((id) => id !== leaderId)!;
  const slow = stores.get(slowId)!;
  slow.hold = true;

  // Past the threshold: every server starts a snapshot; the slow one's save waits.
  await cluster.write(SNAPSHOT_ENTRIES + 5);
  await cluster.runUntil(() => slow.held.length === 1, `${slowId}'s snapshot save starts`);
  // Its loop is not waiting on it: three times as many writes commit meanwhile.
  await cluster.write(3 * SNAPSHOT_ENTRIES, 'node/2');
  expect(slow.held).toHaveLength(1);
  expect(slow.saved).toEqual([]);
  expect(cluster.leader()).toBe(leader);

  slow.release();
  await cluster.runUntil(() => slow.saved.length > 0, `${slowId}'s snapshot is saved`);
  await cluster.write(1, 'node/3');
  const applied = leader.status().appliedIndex;
  await cluster.runUntil(() => [...cluster.nodes.values()].every((node) => node.status().appliedIndex >= applied), 'every server applies the leader log');
  for (const [id, store] of stores) expect({ id, snapshots: store.saved.length > 0 }).toEqual({ id, snapshots: true });
  expect(new Set([...cluster.nodes.values()].map((node) => node.kv.hash())).size).toBe(1);
  expect(cluster.logs.filter((line) => line.event === 'snapshot').length).toBeGreaterThanOrEqual(3);
});

test("after a restart, a server's store holds its snapshot and only the entries after it", async () => {
  await cluster.write(2 * SNAPSHOT_ENTRIES + 3);
  const leader = cluster.leader()!;
  const applied = leader.status().appliedIndex;
  await cluster.runUntil(() => [...stores.values()].every((store) => store.saved.length > 0) && [...cluster.nodes.values()].every((node) => node.status().appliedIndex >= applied), 'every server snapshots and applies');
  const follower = IDS.find((id) => id !== cluster.idOf(leader))!;
  await cluster.stop();
  const stored = await stores.get(follower)!.crash().load();
  expect(stored.snapshot?.meta.index).toBeGreaterThanOrEqual(SNAPSHOT_ENTRIES);
  // What a restart would restore: the snapshot's state plus the entries after it.
  expect(stored.entries.every((entry) => entry.index > stored.snapshot!.meta.index)).toBe(true);
});

test('with a spread, the servers snapshot at different indexes (not all encoding at once)', async () => {
  await cluster.stop();
  cluster = new Cluster();
  stores = new Map(IDS.map((id) => [id, new HeldSnapshotStore()]));
  // server-1 draws no extra entries, server-2 half the spread, server-3 nearly all of it.
  const draws: Record<string, number> = { 'server-1': 0, 'server-2': 0.5, 'server-3': 0.99 };
  await cluster.start({ snapshotEntries: SNAPSHOT_ENTRIES, storeFor: (id) => stores.get(id)!, snapshotSpread: { fraction: 0.5, random: (id) => draws[id] } });
  await cluster.write(SNAPSHOT_ENTRIES * 1.5 + 5);
  const applied = cluster.leader()!.status().appliedIndex;
  await cluster.runUntil(() => [...stores.values()].every((store) => store.saved.length > 0) && [...cluster.nodes.values()].every((node) => node.status().appliedIndex >= applied), 'every server snapshots');
  const first = IDS.map((id) => stores.get(id)!.saved[0]);
  // Each at its own threshold past the last snapshot (0): 40, 50 and 59 applied entries or just after.
  expect(first[0]).toBeLessThan(first[1]);
  expect(first[1]).toBeLessThan(first[2]);
  expect(first[2]).toBeGreaterThanOrEqual(SNAPSHOT_ENTRIES + Math.floor(SNAPSHOT_ENTRIES * 0.5 * 0.99));
});
