// One Consul write = one consensus Txn (DESIGN.md data flow 1): compares on every row read, the
// staged changes as the success branch, planned again after a conflicting writer.
import { Compare_Target } from '../../gen/consulate/consensus/v1/kv';
import { FakeConsensus } from '../testing/fake-consensus';
import { keys } from './keys';
import { MAX_WRITE_ATTEMPTS, PENDING, WritePlan, commitPlan } from './write-plan';

let consensus: FakeConsensus;

beforeEach(() => {
  consensus = new FakeConsensus();
});

test('reads become compares on their mod revision (0 for absent); writes the success branch', () => {
  consensus.put('/kv/a', 'one');
  const seen = consensus.revision;
  const plan = new WritePlan(consensus.view);
  expect(plan.get('/kv/a')?.modRevision).toBe(seen);
  expect(plan.get('/kv/b')).toBeUndefined();
  const row = plan.put('/kv/b', Buffer.from('two'));
  expect(row).toMatchObject({ createRevision: PENDING, modRevision: PENDING });
  const txn = plan.toTxn();
  expect(txn.compare.map((c) => [c.key.toString(), c.target, c.targetUnion])).toEqual([
    ['/kv/a', Compare_Target.TARGET_MOD, { $case: 'modRevision', value: BigInt(seen) }],
    ['/kv/b', Compare_Target.TARGET_MOD, { $case: 'modRevision', value: 0n }],
  ]);
  expect(txn.success.map((op) => op.request?.$case)).toEqual(['requestPut']);
});

test('later steps see earlier ones; a row put then read adds no compare', () => {
  const plan = new WritePlan(consensus.view);
  plan.put('/kv/x', Buffer.from('1'));
  expect(Buffer.from(plan.get('/kv/x')!.value).toString()).toBe('1');
  plan.delete('/kv/x');
  expect(plan.get('/kv/x')).toBeUndefined();
  expect(plan.hasWrites).toBe(false);
  expect(plan.toTxn().compare).toHaveLength(1);
});

test('a deleted prefix is one DeleteRange, unless the same write puts under it: then one delete per row', () => {
  for (const key of ['/kv/p/1', '/kv/p/2', '/kv/q']) consensus.put(key, 'x');
  const whole = new WritePlan(consensus.view);
  whole.deletePrefix('/kv/p/');
  expect(whole.toTxn()).toMatchObject({ compare: [], success: [{ request: { $case: 'requestDeleteRange', value: { key: Buffer.from('/kv/p/'), rangeEnd: Buffer.from('/kv/p0') } } }] });

  const mixed = new WritePlan(consensus.view);
  mixed.deletePrefix('/kv/p/');
  mixed.put('/kv/p/3', Buffer.from('new'));
  expect(mixed.scan('/kv/p/').map(([key]) => key)).toEqual(['/kv/p/3']);
  const ops = mixed.toTxn().success.map((op) => `${op.request?.$case} ${op.request?.value.key.toString()}`);
  expect(ops.sort()).toEqual(['requestDeleteRange /kv/p/1', 'requestDeleteRange /kv/p/2', 'requestPut /kv/p/3']);
});

test('commitPlan: a writer slipping in between plan and commit makes it plan again, on the new state', async () => {
  consensus.put(keys.kv('n'), '1');
  let slipped = 0;
  consensus.beforeTxn = () => {
    if (slipped++ === 0) consensus.put(keys.kv('n'), '5');
  };
  const { value, revision } = await commitPlan({ view: consensus.view, consensus }, (plan) => {
    const current = Number(Buffer.from(plan.get(keys.kv('n'))!.value).toString());
    plan.put(keys.kv('n'), Buffer.from(String(current + 1)));
    return { value: current, commit: true };
  });
  expect(value).toBe(5);
  expect(consensus.json(keys.kv('n'))).toBe(6);
  expect(revision).toBe(consensus.revision);
  expect(consensus.txns).toHaveLength(2);
});

test('commitPlan gives up after MAX_WRITE_ATTEMPTS conflicts, saying so', async () => {
  consensus.put(keys.kv('hot'), '0');
  let n = 0;
  consensus.beforeTxn = () => void consensus.put(keys.kv('hot'), String(++n));
  await expect(
    commitPlan({ view: consensus.view, consensus }, (plan) => {
      plan.put(keys.kv('hot'), Buffer.from(`${Buffer.from(plan.get(keys.kv('hot'))!.value).toString()}!`));
      return { value: undefined, commit: true };
    }),
  ).rejects.toThrow(`kept changing under it (${MAX_WRITE_ATTEMPTS} attempts)`);
});

test('a plan with nothing to change sends nothing', async () => {
  const before = consensus.txns.length;
  const { value } = await commitPlan({ view: consensus.view, consensus }, (plan) => ({ value: plan.get('/kv/none') === undefined, commit: true }));
  expect(value).toBe(true);
  expect(consensus.txns.length).toBe(before);
});

test('no leader: the catch-up fails with Consul\'s text', async () => {
  consensus.failNext = [new Error('14 UNAVAILABLE: no leader')];
  await expect(commitPlan({ view: consensus.view, consensus }, () => ({ value: 1, commit: true }))).rejects.toThrow('No cluster leader');
});

test('more rows read than one Txn can compare is a clear error, not a crash', () => {
  const plan = new WritePlan(consensus.view);
  for (let i = 0; i < 129; i++) plan.get(`/kv/k${i}`);
  plan.put('/kv/k0', Buffer.from('x'));
  expect(() => plan.toTxn()).toThrow('this write depends on 129 keys; one consensus transaction can check at most 128: split it');
});
