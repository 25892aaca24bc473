// What ending a session does to its locks, when the end comes from outside a request: a TTL lease
// that expires, a check that goes critical, a node that goes away (Consul: state/session.go
// deleteSessionTxn, invalidated by check and node deletes; reference/consul-compat.md §4.3).
import pino from 'pino';

import { LeasedFakeConsensus, registerNode } from '../testing/kv-fake';
import { keys } from './keys';
import { kvOf } from './kv-reads';
import { kvLock } from './kv-writes';
import { LockDelays } from './lock-delay';
import { StoredCheck } from './model';
import { SessionReaper } from './session-reaper';
import { SessionCreate, createSession } from './sessions';
import { commitPlan } from './write-plan';

const logger = pino({ level: 'silent' });
let consensus: LeasedFakeConsensus;
let now: number;
let lockDelays: LockDelays;
let reaper: SessionReaper;

const session = (overrides: Partial<SessionCreate> = {}): SessionCreate => ({ Name: '', Node: 'web-1', LockDelayNs: 15e9, Behavior: 'release', TTL: '', NodeChecks: ['serfHealth'], ServiceChecks: [], Checks: [], ...overrides });

async function acquire(key: string, id: string): Promise<boolean> {
  const { value } = await commitPlan({ view: consensus.view, consensus }, (plan) => {
    const step = kvLock(plan, { key, flags: 0n, value: Buffer.from('held'), session: id, lockIndex: 0 });
    return { value: step.done, commit: step.done };
  });
  return value;
}

function stored(key: string) {
  const row = consensus.view.get(keys.kv(key));
  return row === undefined ? undefined : kvOf(row.value);
}

beforeEach(() => {
  consensus = new LeasedFakeConsensus();
  now = 1_000_000;
  lockDelays = new LockDelays({ monotonicMs: () => now });
  reaper = new SessionReaper({ view: consensus.view, consensus, lockDelays, logger });
  registerNode(consensus, 'web-1');
});

test('a TTL session whose lease expires: its locks are released (LockIndex kept) and delayed', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ TTL: '10s' }));
  await reaper.reconcile(); // sees the session alive: remembers its Behavior and LockDelay
  expect(await acquire('leader', id)).toBe(true);
  const [lease] = [...consensus.leases.keys()];

  consensus.expire(lease);
  expect(consensus.view.get(keys.session(id))).toBeUndefined();
  expect(stored('leader')?.Session).toBe(id); // the store deleted the session, not its locks

  await reaper.reconcile();
  expect(stored('leader')).toMatchObject({ Session: '', LockIndex: 1 });
  expect(lockDelays.isDelayed('leader')).toBe(true);
  now += 15_001;
  expect(lockDelays.isDelayed('leader')).toBe(false);
});

test('Behavior=delete: an expired session\'s keys are deleted', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ TTL: '10s', Behavior: 'delete' }));
  await reaper.reconcile();
  await acquire('ephemeral', id);
  consensus.expire([...consensus.leases.keys()][0]);
  await reaper.reconcile();
  expect(stored('ephemeral')).toBeUndefined();
});

test('a check going critical invalidates the session: row, locks and lease go in one Txn', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ TTL: '10s' }));
  await acquire('leader', id);
  const check: StoredCheck = { Node: 'web-1', CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'critical', Notes: '', Output: 'Agent not live or unreachable', ServiceID: '', ServiceName: '', ServiceTags: [], Type: '' };
  consensus.fake.put(keys.check('web-1', 'serfHealth'), JSON.stringify(check));
  const txnsBefore = consensus.fake.txns.length;

  await reaper.reconcile();
  expect(consensus.view.get(keys.session(id))).toBeUndefined();
  expect(stored('leader')).toMatchObject({ Session: '', LockIndex: 1 });
  expect(consensus.fake.txns.length - txnsBefore).toBe(1);
  expect(consensus.leases.size).toBe(0);
  expect(lockDelays.isDelayed('leader')).toBe(true);
});

test('a deregistered node invalidates its sessions', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ NodeChecks: [] }));
  await acquire('leader', id);
  consensus.fake.delete(keys.node('web-1'));
  await reaper.reconcile();
  expect(consensus.view.get(keys.session(id))).toBeUndefined();
  expect(stored('leader')?.Session).toBe('');
});

test('a lock left by a session this catalog never saw (it started later) is released, with no delay', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ TTL: '10s' }));
  await acquire('leader', id);
  consensus.expire([...consensus.leases.keys()][0]);
  const fresh = new SessionReaper({ view: consensus.view, consensus, lockDelays, logger });
  await fresh.reconcile();
  expect(stored('leader')?.Session).toBe('');
  expect(lockDelays.isDelayed('leader')).toBe(false);
});

test('when another catalog releases first, this one still delays the keys the session held', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ TTL: '10s' }));
  await acquire('leader', id);
  await reaper.reconcile(); // remembers what the session holds
  consensus.expire([...consensus.leases.keys()][0]);
  const otherCatalog = new SessionReaper({ view: consensus.view, consensus, lockDelays: new LockDelays({ monotonicMs: () => now }), logger });
  await otherCatalog.reconcile();
  expect(stored('leader')?.Session).toBe('');

  await reaper.reconcile();
  expect(lockDelays.isDelayed('leader')).toBe(true);
});

test('running, it reacts to the view\'s changes by itself', async () => {
  const id = await createSession({ view: consensus.view, consensus }, session({ TTL: '10s' }));
  await acquire('leader', id);
  reaper.start();
  try {
    consensus.expire([...consensus.leases.keys()][0]);
    const deadline = Date.now() + 3_000;
    while (stored('leader')?.Session !== '' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stored('leader')?.Session).toBe('');
  } finally {
    reaper.stop();
    // Let the loop's pending wait end (it wakes on the next change of its tables).
    consensus.fake.put(keys.node('web-2'), '{}');
  }
});
