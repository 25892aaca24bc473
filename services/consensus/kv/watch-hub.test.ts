/**
 * The watch hub against etcd's watch guarantees (etcd.io/docs/v3.5/learning/api_guarantees,
 * "Watch APIs"): ordered, reliable (no event lost or repeated in a watched range), atomic (a
 * revision's events never split), resumable from a revision, and refused below the compaction.
 */
import { Event_EventType } from '../../gen/consulate/consensus/v1/watch';
import { FROM_KEY, command, op, watchRequest } from './command-builders';
import { KvStateMachine } from './kv-state-machine';
import { kvLimits } from './limits';
import { RevisionEvents, WatchHub } from './watch-hub';

function describeGroups(groups: readonly RevisionEvents[]): string[] {
  return groups.map((g) => `${g.revision}:` + g.events.map((e) => `${e.type === Event_EventType.EVENT_TYPE_PUT ? '+' : '-'}${e.kv!.key}${e.prevKv ? `(${e.prevKv.value})` : ''}`).join(','));
}

function created(hub: WatchHub, ...args: Parameters<typeof watchRequest>) {
  const result = hub.watch(watchRequest(...args));
  if (!result.ok) throw new Error(result.error.toString());
  return result;
}

function drain(hub: WatchHub, id: number): string[] {
  const out: string[] = [];
  for (;;) {
    const pull = hub.pull(id);
    if (pull.kind === 'cancelled') throw new Error(pull.error.toString());
    out.push(...describeGroups(pull.groups));
    if (pull.caughtUp) return out;
  }
}

function storeWithHistory(): KvStateMachine {
  const sm = new KvStateMachine();
  // 2: a=1  3: b=1  4: a=2  5: txn(c=1, d=1)  6: del a
  for (const c of [command.put('a', '1'), command.put('b', '1'), command.put('a', '2'), command.txn([], [op.put('c', '1'), op.put('d', '1')]), command.delete('a')]) {
    if (!sm.apply(c).ok) throw new Error('setup failed');
  }
  return sm;
}

describe('watch from a start revision (etcd: watch from any retained revision)', () => {
  test('registration hands over the history from start_revision, grouped by revision, then live events follow', () => {
    const sm = storeWithHistory();
    const w = created(sm.watches, '\0', FROM_KEY, { startRevision: 3 });
    expect(describeGroups(w.groups)).toEqual(['3:+b', '4:+a', '5:+c,+d', '6:-a']);
    expect(w.caughtUp).toBe(true);
    const wake = sm.apply(command.put('e', '1'));
    expect(wake.ok && wake.wake.woken).toEqual([w.watchId]);
    expect(drain(sm.watches, w.watchId)).toEqual(['7:+e']);
  });

  test('start_revision 0 watches from the next revision only', () => {
    const sm = storeWithHistory();
    const w = created(sm.watches, 'a');
    expect(w.groups).toEqual([]);
    sm.apply(command.put('a', '3'));
    expect(drain(sm.watches, w.watchId)).toEqual(['7:+a']);
  });

  test('a future start_revision delivers from that revision on', () => {
    const sm = storeWithHistory();
    const w = created(sm.watches, 'k', '', { startRevision: 8 });
    sm.apply(command.put('k', '1')); // 7
    sm.apply(command.put('k', '2')); // 8
    expect(drain(sm.watches, w.watchId)).toEqual(['8:+k']);
  });

  test('prev_kv only when asked: a delete\'s previous value, a put\'s previous value', () => {
    const sm = storeWithHistory();
    expect(describeGroups(created(sm.watches, 'a', '', { startRevision: 2, prevKv: true }).groups)).toEqual(['2:+a', '4:+a(1)', '6:-a(2)']);
    expect(describeGroups(created(sm.watches, 'a', '', { startRevision: 2 }).groups)).toEqual(['2:+a', '4:+a', '6:-a']);
  });

  test('a watch over [key, range_end) sees only its keys', () => {
    const sm = storeWithHistory();
    expect(describeGroups(created(sm.watches, 'b', 'd', { startRevision: 2 }).groups)).toEqual(['3:+b', '5:+c']);
  });

  test('a start revision at or below the compaction fails OUT_OF_RANGE naming the compact revision', () => {
    const sm = storeWithHistory();
    sm.apply(command.compact(4));
    for (const startRevision of [2, 4]) {
      const result = sm.watches.watch(watchRequest('a', '', { startRevision }));
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect([result.error.code, result.error.message, result.error.compactRevision]).toEqual(['OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted', 4n]);
        expect(result.error.detail).toContain('compact revision 4');
      }
    }
    expect(describeGroups(created(sm.watches, '\0', FROM_KEY, { startRevision: 5 }).groups)).toEqual(['5:+c,+d', '6:-a']);
  });
});

describe('no event lost, repeated or split (etcd watch guarantees)', () => {
  test('a revision is never split across pulls, however small the batch', () => {
    const sm = storeWithHistory();
    const w = created(sm.watches, '\0', FROM_KEY);
    sm.apply(command.txn([], [op.put('x', '1'), op.put('y', '1'), op.put('z', '1')]));
    const pull = sm.watches.pull(w.watchId, 1);
    expect(pull.kind === 'events' && describeGroups(pull.groups)).toEqual(['7:+x,+y,+z']);
  });

  test('catch-up in small batches, with writes between pulls, gives each event once and in order', () => {
    const sm = storeWithHistory();
    const w = sm.watches.watch(watchRequest('\0', FROM_KEY, { startRevision: 2 }));
    expect(w.ok).toBe(true);
    if (!w.ok) return;
    const seen = describeGroups(w.groups);
    // The first batch is at most maxEventsPerPull (1000): here the whole history.
    sm.apply(command.put('f', '1')); // 7
    let i = 0;
    for (;;) {
      const pull = sm.watches.pull(w.watchId, 1);
      if (pull.kind !== 'events') throw new Error('cancelled');
      seen.push(...describeGroups(pull.groups));
      if (i++ % 2 === 0) sm.apply(command.put(`g${i}`, '1'));
      if (pull.caughtUp) break;
    }
    sm.apply(command.put('h', '1'));
    seen.push(...drain(sm.watches, w.watchId));
    const revisions = seen.map((s) => Number(s.split(':')[0]));
    expect(revisions).toEqual([...new Set(revisions)].sort((a, b) => a - b));
    expect(revisions).toEqual(Array.from({ length: Number(sm.revision) - 1 }, (_, k) => k + 2));
  });

  test('a catching-up watcher pulls whole revisions up to the batch size', () => {
    const sm = new KvStateMachine(kvLimits({ maxEventsPerPull: 3 }));
    for (let i = 0; i < 5; i++) sm.apply(command.txn([], [op.put(`a${i}`, '1'), op.put(`b${i}`, '1')]));
    const w = created(sm.watches, '\0', FROM_KEY, { startRevision: 2 });
    expect(w.groups.map((g) => g.revision)).toEqual([2n]); // 2 events; the next revision would make 4
    expect(w.caughtUp).toBe(false);
    expect(drain(sm.watches, w.watchId)).toHaveLength(4);
  });
});

describe('bounds (TigerBeetle: a limit on everything)', () => {
  test('a watcher whose client falls behind past maxPendingEventsPerWatcher is cancelled with the revision to resume from', () => {
    const sm = new KvStateMachine(kvLimits({ maxPendingEventsPerWatcher: 3 }));
    const slow = created(sm.watches, 'k');
    const fast = created(sm.watches, 'k');
    const cancellations = [];
    for (let i = 0; i < 5; i++) {
      const result = sm.apply(command.put('k', String(i)));
      if (result.ok) cancellations.push(...result.wake.cancelled);
      drain(sm.watches, fast.watchId);
    }
    expect(cancellations).toHaveLength(1);
    expect(cancellations[0].watchId).toBe(slow.watchId);
    expect(cancellations[0].error.code).toBe('RESOURCE_EXHAUSTED');
    expect(cancellations[0].error.detail).toContain('watch again from revision 2');
    const pull = sm.watches.pull(slow.watchId);
    expect(pull.kind === 'cancelled' && pull.error.code).toBe('NOT_FOUND');
  });

  test('a watcher with nothing waiting takes one revision larger than its limit whole', () => {
    const sm = new KvStateMachine(kvLimits({ maxPendingEventsPerWatcher: 2 }));
    const w = created(sm.watches, '\0', FROM_KEY);
    const result = sm.apply(command.txn([], [op.put('a', '1'), op.put('b', '1'), op.put('c', '1')]));
    expect(result.ok && result.wake).toEqual({ woken: [w.watchId], cancelled: [] });
    expect(drain(sm.watches, w.watchId)).toEqual(['2:+a,+b,+c']);
  });

  test('at most maxWatchers watchers', () => {
    const sm = new KvStateMachine(kvLimits({ maxWatchers: 2 }));
    created(sm.watches, 'a');
    const second = created(sm.watches, 'b');
    const third = sm.watches.watch(watchRequest('c'));
    expect(!third.ok && [third.error.code, third.error.detail]).toEqual(['RESOURCE_EXHAUSTED', expect.stringContaining('maxWatchers')]);
    sm.watches.cancel(second.watchId);
    expect(sm.watches.watch(watchRequest('c')).ok).toBe(true);
  });

  test('a catching-up watcher whose history is compacted away is cancelled, naming the compact revision', () => {
    const sm = new KvStateMachine(kvLimits({ maxEventsPerPull: 1 }));
    for (let i = 0; i < 5; i++) sm.apply(command.put('k', String(i))); // 2..6
    const w = created(sm.watches, 'k', '', { startRevision: 2 });
    expect(w.caughtUp).toBe(false);
    const result = sm.apply(command.compact(4));
    expect(result.ok && result.wake.cancelled.map((c) => [c.watchId, c.error.message, c.error.compactRevision])).toEqual([
      [w.watchId, 'etcdserver: mvcc: required revision has been compacted', 4n],
    ]);
  });
});

describe('waking', () => {
  test('1,000 watchers of one key all get its event; watchers of other keys and ranges are not woken', () => {
    const sm = new KvStateMachine();
    const same = Array.from({ length: 1000 }, () => created(sm.watches, 'hot').watchId);
    const prefix = Array.from({ length: 10 }, () => created(sm.watches, 'h', 'i').watchId);
    created(sm.watches, 'cold');
    created(sm.watches, 'i', FROM_KEY);
    const result = sm.apply(command.put('hot', '1'));
    expect(result.ok && [...result.wake.woken].sort((a, b) => a - b)).toEqual([...same, ...prefix]);
    for (const id of [...same, ...prefix]) expect(drain(sm.watches, id)).toEqual(['2:+hot']);
  });

  test('a cancelled watcher is forgotten', () => {
    const sm = new KvStateMachine();
    const w = created(sm.watches, 'a');
    expect(sm.watches.cancel(w.watchId)).toBe(true);
    expect(sm.watches.cancel(w.watchId)).toBe(false);
    const result = sm.apply(command.put('a', '1'));
    expect(result.ok && result.wake.woken).toEqual([]);
    expect(sm.watches.size).toBe(0);
  });
});

describe('restore (a follower installs the leader\'s snapshot)', () => {
  test('watchers catch up from the snapshot\'s history: the revisions they missed, once', () => {
    const leader = storeWithHistory();
    const follower = new KvStateMachine();
    follower.restore(leader.snapshot());
    const w = created(follower.watches, '\0', FROM_KEY);
    for (const c of [command.put('p', '1'), command.put('q', '1'), command.delete('p')]) leader.apply(c);
    follower.apply(command.put('p', '1')); // the follower applied one more entry before falling behind
    expect(drain(follower.watches, w.watchId)).toEqual(['7:+p']);
    const wake = follower.restore(leader.snapshot());
    expect(wake.woken).toEqual([w.watchId]);
    expect(drain(follower.watches, w.watchId)).toEqual(['8:+q', '9:-p']);
    follower.apply(command.put('r', '1'));
    expect(drain(follower.watches, w.watchId)).toEqual(['10:+r']);
  });

  test('a restore whose compaction passed a watcher\'s position cancels it', () => {
    const leader = storeWithHistory();
    const follower = new KvStateMachine();
    follower.restore(leader.snapshot());
    const w = created(follower.watches, 'a');
    leader.apply(command.put('a', '3')); // 7
    leader.apply(command.put('a', '4')); // 8
    leader.apply(command.compact(8));
    const wake = follower.restore(leader.snapshot());
    expect(wake.cancelled.map((c) => [c.watchId, c.error.compactRevision])).toEqual([[w.watchId, 8n]]);
  });
});
