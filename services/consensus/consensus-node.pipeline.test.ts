/**
 * A leader's own writes in the background (Raft thesis §10.2.1, ConsensusNode's
 * pipelineLeaderWrites): with the leader's disk held, a put still commits on the two followers'
 * disks and is answered; the leader's copy counts, and its log is compacted past it, only once
 * its write is done; entries cut meanwhile gather into one next write. With the option off, the
 * leader waits for its own disk as before.
 */
import { command } from './kv/command-builders';
import { ApplyResult } from './kv/kv-state-machine';
import { SaveBatch, SaveOptions } from './storage/log-store';
import { MemoryLogStore } from './storage/memory-log-store';
import { Cluster, IDS } from './testing/node-cluster';

/** A MemoryLogStore whose saves, while held, wait (in call order, as a real store runs them). */
class HeldStore extends MemoryLogStore {
  private gate: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** The highest entry index saved, and whether each save was asked off the event loop. */
  lastSaved = 0;
  readonly offThread: boolean[] = [];

  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  open(): void {
    this.release?.();
    this.gate = Promise.resolve();
  }

  override save(batch: SaveBatch, options?: SaveOptions): Promise<void> {
    this.offThread.push(options?.offThread === true);
    const done = this.queue
      .then(() => this.gate)
      .then(async () => {
        await super.save(batch);
        if (batch.entries.length > 0) this.lastSaved = batch.entries[batch.entries.length - 1].index;
      });
    this.queue = done.catch(() => undefined);
    return done;
  }
}

let cluster: Cluster;
let stores: Map<string, HeldStore>;

async function start(options: { pipelineLeaderWrites?: boolean; snapshotEntries?: number } = {}): Promise<void> {
  cluster = new Cluster();
  stores = new Map(IDS.map((id) => [id, new HeldStore()]));
  await cluster.start({ ...options, storeFor: (id) => stores.get(id)! });
  await cluster.write(1); // the leader's first entry of its term is committed: a steady state
}

/** Proposes a put on the leader and reports when it is answered. */
function put(key: string): { answered: () => boolean; result: Promise<ApplyResult> } {
  let answered = false;
  const result = cluster.leader()!.propose(command.put(key, 'v'), 5_000);
  void result.finally(() => (answered = true));
  return { answered: () => answered, result };
}

afterEach(async () => {
  for (const store of stores.values()) store.open();
  await cluster.stop();
});

test("a put commits on the followers' disks while the leader's own write is held, and is answered", async () => {
  await start();
  const leader = cluster.leader()!;
  const store = stores.get(cluster.idOf(leader))!;
  store.hold();
  const write = put('pipelined');
  await cluster.runUntil(write.answered, 'the put is answered');
  expect((await write.result).ok).toBe(true);
  const index = leader.status().appliedIndex;
  // Applied and answered, while the leader's copy is not on its disk: the quorum was the followers.
  expect(store.lastSaved).toBeLessThan(index);
  expect(leader.status().commit).toBeGreaterThanOrEqual(index);
  store.open();
  await cluster.runUntil(() => store.lastSaved >= index, "the leader's write completes");
  expect(store.offThread.some((offThread) => offThread)).toBe(true);
  // Followers never write in the background.
  for (const [id, other] of stores) if (id !== cluster.idOf(leader)) expect(other.offThread.every((offThread) => !offThread)).toBe(true);
});

test('the leader waits for its own disk when pipelineLeaderWrites is off', async () => {
  await start({ pipelineLeaderWrites: false });
  const store = stores.get(cluster.idOf(cluster.leader()!))!;
  store.hold();
  const write = put('waits');
  // Shorter than an election timeout: a leader blocked on its disk sends no heartbeats meanwhile.
  await cluster.run(50);
  expect(write.answered()).toBe(false);
  store.open();
  await cluster.runUntil(write.answered, 'the put is answered once the leader has written it');
  expect((await write.result).ok).toBe(true);
  expect(store.offThread.every((offThread) => !offThread)).toBe(true);
});

test('a leader compacts its log past entries it is still writing only once they are on its disk', async () => {
  await start({ snapshotEntries: 10 });
  const leader = cluster.leader()!;
  const store = stores.get(cluster.idOf(leader))!;
  store.hold();
  const savesBefore = store.offThread.length;
  const writes: ReturnType<typeof put>[] = [];
  for (let i = 0; i < 30; i++) {
    writes.push(put(`k${i}`)); // each in a Ready of its own
    await cluster.settle();
  }
  await cluster.runUntil(() => writes.every((write) => write.answered()), 'all 30 puts are answered');
  await cluster.run(200);
  // One write in flight; the entries of every later Ready gather for the next one.
  expect(store.offThread.length - savesBefore).toBe(1);
  // Applied well past the snapshot threshold, but nothing new is on the leader's disk: no compaction.
  expect(leader.status().appliedIndex).toBeGreaterThan(store.lastSaved + 10);
  expect(leader.status().snapshotIndex).toBeLessThanOrEqual(store.lastSaved);
  store.open();
  await cluster.runUntil(() => leader.status().snapshotIndex > 0 && store.lastSaved >= leader.status().appliedIndex, 'the leader snapshots once its writes are done');
  expect(store.offThread.length - savesBefore).toBe(2);
  expect(leader.status().snapshotIndex).toBeLessThanOrEqual(store.lastSaved);
});
