/**
 * The leader lease in the node shell (reliability.md P3; etcd #20418): a leader whose process was
 * stopped, or whose loop was blocked, must not trust its lease for the time it did not see. Its
 * timers fire once when it runs again, however long it was gone; the ticks it steps are counted
 * from the clock, so a read that waited in a socket meanwhile is not served from a lease that ran
 * out while a new leader took writes.
 */
import { NotLeaderError } from './consensus-node';
import { command } from './kv/command-builders';
import { Cluster, IDS, TICK_MS } from './testing/node-cluster';

let cluster: Cluster;

beforeEach(async () => {
  cluster = new Cluster();
  await cluster.start();
});

afterEach(async () => {
  await cluster.stop();
});

function valueOf(id: string, key: string): string | undefined {
  const outcome = cluster.nodes.get(id)!.kv.range({ key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, keysOnly: false, countOnly: false, consistency: 0 });
  return outcome.ok ? outcome.response.kvs[0]?.value.toString() : undefined;
}

test('a leader stopped for 5 s and cut off serves no lease read on resuming: it has stepped down, while a new leader took a write', async () => {
  const old = cluster.leader()!;
  const oldId = cluster.idOf(old);
  expect((await old.propose(command.put('p3', 'before'), 5_000)).ok).toBe(true);
  // The lease works: a read is served at once, with no round to the followers.
  let served = false;
  void old.linearizableRead('lease', 1_000).then(() => (served = true));
  await cluster.settle();
  expect(served).toBe(true);

  // SIGSTOP, and the others stop hearing from it: they elect a leader and write.
  cluster.setPaused(oldId, true);
  cluster.partitioned.add(oldId);
  const others = IDS.filter((id) => id !== oldId).map((id) => cluster.nodes.get(id)!);
  await cluster.runUntil(() => others.some((node) => node.status().role === 'leader'), 'the others elect a leader');
  const next = others.find((node) => node.status().role === 'leader')!;
  expect((await next.propose(command.put('p3', 'after'), 5_000)).ok).toBe(true);
  await cluster.run(5_000);

  // SIGCONT, still cut off. A read that waited meanwhile runs before any of its timers does.
  cluster.setPaused(oldId, false);
  const outcome = await Promise.race([
    old.linearizableRead('lease', 1_000).then(
      () => `served ${valueOf(oldId, 'p3')}`,
      (err: Error) => err,
    ),
    cluster.settle().then(() => 'still waiting'),
  ]);
  expect(outcome).toBeInstanceOf(NotLeaderError);
  expect(old.status().role).toBe('follower');
  expect(valueOf(cluster.idOf(next), 'p3')).toBe('after');
});

test('after a 60 s stall the first timer callback steps a cut-off leader down: it counts the ticks it missed, not one', async () => {
  const leader = cluster.leader()!;
  const id = cluster.idOf(leader);
  const termBefore = leader.status().term;
  cluster.setPaused(id, true);
  cluster.partitioned.add(id);
  await cluster.run(60_000);
  cluster.setPaused(id, false);
  expect(leader.status().role).toBe('leader'); // nothing has run on it yet
  await cluster.run(TICK_MS);
  // CheckQuorum over the missed ticks; its own election, cut off, goes no further than PreVote.
  expect(leader.status().role).not.toBe('leader');
  expect(leader.status().term).toBe(termBefore);
  // 60 s of ticks for the two others: under a second alone, past jest's 5 s default on a slow,
  // busy CI machine (2026-12-02).
}, 30_000);
