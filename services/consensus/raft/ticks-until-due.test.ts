/**
 * Raft.ticksUntilDue, which a shell sleeps by (ConsensusNode.armTicks): the ticks before the due one
 * make no Ready (Raft.tick asserts that on every tick everywhere), and the due one is the tick that
 * does the work: a follower's election, a leader's heartbeat. Three cores, messages passed by hand.
 */
import { raftConfig } from './config';
import { Raft, bootstrapEntries } from './raft';

const MEMBERS = ['n1', 'n2', 'n3'].map((id) => ({ id, address: `${id}:8310`, learner: false }));

function core(id: string, random: number): Raft {
  return new Raft({
    config: raftConfig({ id, random: () => random, electionTicks: 6, heartbeatTicks: 2 }),
    hardState: { term: 0, vote: '', commit: 0 },
    snapshot: undefined,
    entries: bootstrapEntries(MEMBERS),
  });
}

/** Handles every Ready, passing the messages on, until none is left. */
function settle(cores: Map<string, Raft>): void {
  for (let moved = true; moved; ) {
    moved = false;
    for (const raft of cores.values()) {
      if (!raft.hasReady()) continue;
      moved = true;
      const rd = raft.ready();
      raft.advance(rd);
      for (const m of rd.messages) cores.get(m.to)?.step(m);
    }
  }
}

/** Ticks `raft` until the due tick, checking the ones before make nothing; how many it took. */
function tickToDue(raft: Raft): number {
  const due = raft.ticksUntilDue();
  for (let i = 1; i < due; i++) {
    raft.tick();
    expect(raft.hasReady()).toBe(false);
  }
  raft.tick();
  return due;
}

test("a follower's due tick is its election: the ticks before it make nothing, that one campaigns", () => {
  const raft = core('n1', 0.5); // randomized timeout 6 + floor(0.5 * 6) = 9 ticks
  settle(new Map([['n1', raft]]));
  expect(raft.ticksUntilDue()).toBe(9);
  expect(tickToDue(raft)).toBe(9);
  expect(raft.status().role).toBe('pre-candidate');
  expect(raft.ready().messages.map((m) => `${m.type}->${m.to}`)).toEqual(['pre-vote->n2', 'pre-vote->n3']);
});

test("a leader's due tick is its heartbeat, and a follower that hears it starts its count again", () => {
  const cores = new Map([
    ['n1', core('n1', 0)],
    ['n2', core('n2', 0.9)],
    ['n3', core('n3', 0.9)],
  ]);
  settle(cores);
  const leader = cores.get('n1')!;
  tickToDue(leader);
  settle(cores);
  expect(leader.status().role).toBe('leader');
  const follower = cores.get('n2')!;
  for (let beat = 0; beat < 5; beat++) {
    expect(leader.ticksUntilDue()).toBe(2);
    follower.tick(); // the follower's clock runs too, short of its election
    expect(follower.ticksUntilDue()).toBeLessThan(11);
    expect(tickToDue(leader)).toBe(2);
    const rd = leader.ready();
    leader.advance(rd);
    expect(rd.messages.filter((m) => m.type === 'heartbeat').map((m) => m.to)).toEqual(['n2', 'n3']);
    for (const m of rd.messages) cores.get(m.to)!.step(m);
    settle(cores);
    expect(follower.ticksUntilDue()).toBe(11); // heard from its leader: a whole timeout again (6 + floor(0.9 * 6))
  }
});

test('a learner never campaigns: nothing is due', () => {
  const raft = new Raft({
    config: raftConfig({ id: 'n4', random: () => 0 }),
    hardState: { term: 0, vote: '', commit: 0 },
    snapshot: undefined,
    entries: [...bootstrapEntries(MEMBERS), { index: 4, term: 1, kind: 'config', change: { kind: 'add-learner', member: { id: 'n4', address: 'n4:8310', learner: true } } }],
  });
  settle(new Map([['n4', raft]]));
  expect(raft.ticksUntilDue()).toBe(Infinity);
});
