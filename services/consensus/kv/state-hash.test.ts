/**
 * The state hash the simulator compares across servers: equal for equal states (the same
 * commands in the same order), different when the replicated state differs in any way a read, a
 * watch or a later command could tell.
 */
import { command, op } from './command-builders';
import { KvStateMachine } from './kv-state-machine';

function busyStore(): KvStateMachine {
  const sm = new KvStateMachine();
  for (const c of [command.grant(30, 5), command.put('a', '1', { lease: 5n }), command.txn([], [op.put('b', '1'), op.delete('a')]), command.compact(2)]) {
    if (!sm.apply(c).ok) throw new Error('setup failed');
  }
  return sm;
}

describe('hash', () => {
  test('servers that applied the same commands agree; one different command changes it', () => {
    const a = busyStore();
    const b = busyStore();
    expect(a.hash()).toBe(b.hash());
    expect(a.hash()).toMatch(/^[0-9a-f]{64}$/);
    a.apply(command.put('x', '1'));
    b.apply(command.put('x', '2'));
    expect(a.hash()).not.toBe(b.hash());
  });

  test('history counts, not only the latest state: the same live keys reached differently hash differently', () => {
    const a = new KvStateMachine();
    const b = new KvStateMachine();
    a.apply(command.put('k', '1'));
    a.apply(command.put('k', '2'));
    b.apply(command.put('j', '1'));
    b.apply(command.put('k', '2'));
    b.apply(command.delete('j'));
    expect(a.hash()).not.toBe(b.hash());
  });

  test('leases count: a grant changes the hash though it takes no revision', () => {
    const a = new KvStateMachine();
    const before = a.hash();
    a.apply(command.grant(10));
    expect(a.hash()).not.toBe(before);
  });
});
