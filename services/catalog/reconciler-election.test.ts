// One active reconciler per datacenter (DESIGN.md data flow 3): the election on a consensus lease,
// against an in-memory store with etcd's lease semantics, on a manual clock. The safety claim
// checked at every step: never two catalogs acting as the reconciler at once.
import { ManualClock } from '../lib/clock';
import { createLogger } from '../lib/log';
import { ELECTION_DEFAULTS, ElectionConfig, LeaseStore, ReconcilerElection, electionConfigProblem } from './reconciler-election';

const KEY = '/sys/reconciler';
const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'test', level: 'silent' });

/**
 * etcd's lease semantics, kept by one "leader": a lease expires `ttl` after its last grant or
 * keepalive, and its keys go with it. `cut(candidate)` makes every call of that candidate fail
 * (a partition, or a process that stopped answering).
 */
class FakeConsensus {
  private nextLease = 1n;
  readonly leases = new Map<bigint, { ttlSeconds: number; expiresAtMs: number }>();
  readonly kv = new Map<string, { value: string; lease: bigint }>();
  readonly cut = new Set<string>();

  constructor(private readonly clock: ManualClock) {}

  storeFor(candidate: string): LeaseStore {
    const guard = async <T>(fn: () => T): Promise<T> => {
      await Promise.resolve();
      if (this.cut.has(candidate)) throw new Error(`${candidate}: consensus unreachable`);
      this.expire();
      return fn();
    };
    return {
      grant: (ttlSeconds) =>
        guard(() => {
          const id = this.nextLease++;
          this.leases.set(id, { ttlSeconds, expiresAtMs: this.clock.nowMs() + ttlSeconds * 1000 });
          return id;
        }),
      keepAlive: (lease) =>
        guard(() => {
          const held = this.leases.get(lease);
          if (held === undefined) return 0;
          held.expiresAtMs = this.clock.nowMs() + held.ttlSeconds * 1000;
          return held.ttlSeconds;
        }),
      revoke: (lease) => guard(() => this.revoke(lease)),
      acquire: (key, value, lease) =>
        guard(() => {
          if (this.kv.has(key) || !this.leases.has(lease)) return false;
          this.kv.set(key, { value, lease });
          return true;
        }),
      holder: (key) => guard(() => this.kv.get(key)?.value),
    };
  }

  /** The consensus leader's lease check, as often as the clock moves. */
  expire(): void {
    for (const [id, lease] of this.leases) if (lease.expiresAtMs <= this.clock.nowMs()) this.revoke(id);
  }

  private revoke(id: bigint): void {
    this.leases.delete(id);
    for (const [key, entry] of this.kv) if (entry.lease === id) this.kv.delete(key);
  }
}

interface Candidate {
  readonly name: string;
  readonly election: ReconcilerElection;
  readonly transitions: { atMs: number; active: boolean }[];
}

function setup(names: string[], config: Partial<ElectionConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  const consensus = new FakeConsensus(clock);
  const candidates: Candidate[] = names.map((name) => {
    const transitions: { atMs: number; active: boolean }[] = [];
    const election = new ReconcilerElection({ key: KEY, candidate: name, ...ELECTION_DEFAULTS, ...config }, consensus.storeFor(name), clock, logger, (active) => transitions.push({ atMs: clock.nowMs(), active }));
    return { name, election, transitions };
  });
  /** Moves time in 10 ms steps, letting promises settle, and checks there is never more than one holder. */
  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += 10) {
      clock.advance(10);
      consensus.expire();
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      const active = candidates.filter((c) => c.election.active).map((c) => c.name);
      expect(active.length).toBeLessThanOrEqual(1);
    }
  };
  const active = () => candidates.filter((c) => c.election.active).map((c) => c.name);
  return { clock, consensus, candidates, run, active };
}

describe('the reconciler election', () => {
  test('the first candidate takes /sys/reconciler on its lease; the others stand by', async () => {
    const { candidates, consensus, run, active } = setup(['catalog-a', 'catalog-b', 'catalog-c']);
    candidates[0].election.start();
    await run(100);
    for (const c of candidates.slice(1)) c.election.start();
    await run(10_000);
    expect(active()).toEqual(['catalog-a']);
    expect(consensus.kv.get(KEY)?.value).toBe('catalog-a');
    // Kept alive all along: one activation, no step-down.
    expect(candidates[0].transitions).toEqual([{ atMs: expect.any(Number), active: true }]);
    expect(candidates[0].election.fence).toBe(consensus.kv.get(KEY)?.lease);
  });

  test('when the holder dies, another takes over once its lease expires (within TTL + retry), never before', async () => {
    const { candidates, consensus, clock, run, active } = setup(['catalog-a', 'catalog-b']);
    candidates[0].election.start();
    await run(100);
    candidates[1].election.start();
    await run(3_000);
    expect(active()).toEqual(['catalog-a']);

    const diedAtMs = clock.nowMs();
    consensus.cut.add('catalog-a');
    await run(ELECTION_DEFAULTS.ttlSeconds * 1000 + ELECTION_DEFAULTS.retryIntervalMs + 500);
    expect(active()).toEqual(['catalog-b']);
    const stepDown = candidates[0].transitions.find((t) => !t.active)!;
    const takeOver = candidates[1].transitions.find((t) => t.active)!;
    // The old holder stopped acting before the new one started (run() also checked every step).
    expect(stepDown.atMs).toBeLessThan(takeOver.atMs);
    expect(takeOver.atMs - diedAtMs).toBeLessThanOrEqual(ELECTION_DEFAULTS.ttlSeconds * 1000 + ELECTION_DEFAULTS.retryIntervalMs + 100);
    // It stopped on its own clock, without hearing anything: the last granted keepalive + TTL − margin.
    expect(stepDown.atMs - diedAtMs).toBeLessThanOrEqual(ELECTION_DEFAULTS.ttlSeconds * 1000 - ELECTION_DEFAULTS.stepDownMarginMs);
  });

  test('a holder cut off from consensus comes back as a standby, not as a second holder', async () => {
    const { candidates, consensus, run, active } = setup(['catalog-a', 'catalog-b']);
    candidates[0].election.start();
    await run(100);
    candidates[1].election.start();
    consensus.cut.add('catalog-a');
    await run(8_000);
    consensus.cut.delete('catalog-a');
    await run(5_000);
    expect(active()).toEqual(['catalog-b']);
    expect(candidates[0].transitions.map((t) => t.active)).toEqual([true, false]);
  });

  test('a lease that is gone (keepalive answers TTL 0) means stepping down at once', async () => {
    const { candidates, consensus, run, active } = setup(['catalog-a']);
    candidates[0].election.start();
    await run(100);
    const lease = consensus.kv.get(KEY)!.lease;
    consensus.leases.delete(lease);
    consensus.kv.delete(KEY);
    await run(ELECTION_DEFAULTS.renewIntervalMs + 20);
    expect(candidates[0].transitions.map((t) => t.active)).toEqual([true, false]);
    // And it campaigns again: the key is free.
    await run(ELECTION_DEFAULTS.retryIntervalMs + 100);
    expect(active()).toEqual(['catalog-a']);
  });

  test('lost() (a fenced write failed) steps down now and campaigns again', async () => {
    const { candidates, run } = setup(['catalog-a']);
    candidates[0].election.start();
    await run(100);
    candidates[0].election.lost('a write found /sys/reconciler on another lease');
    expect(candidates[0].election.active).toBe(false);
    expect(candidates[0].election.fence).toBeUndefined();
    await run(ELECTION_DEFAULTS.retryIntervalMs + 100);
    expect(candidates[0].election.active).toBe(true);
  });

  test('a holder that stops releases the lock: a standby takes over at its next try, not after the TTL', async () => {
    const { candidates, consensus, clock, run, active } = setup(['catalog-a', 'catalog-b']);
    candidates[0].election.start();
    await run(100);
    candidates[1].election.start();
    await run(2_000);
    const stoppedAtMs = clock.nowMs();
    await candidates[0].election.stop();
    expect(consensus.kv.has(KEY)).toBe(false);
    await run(ELECTION_DEFAULTS.retryIntervalMs + 100);
    expect(active()).toEqual(['catalog-b']);
    expect(candidates[1].transitions[0].atMs - stoppedAtMs).toBeLessThanOrEqual(ELECTION_DEFAULTS.retryIntervalMs + 100);
  });

  test('a lost race for the key revokes the lease it granted itself', async () => {
    const { candidates, consensus, run } = setup(['catalog-a', 'catalog-b']);
    candidates[0].election.start();
    candidates[1].election.start();
    await run(500);
    expect(candidates.filter((c) => c.election.active)).toHaveLength(1);
    expect(consensus.leases.size).toBe(1);
  });

  test('timings that leave no room for two renewals are refused at construction', () => {
    expect(electionConfigProblem({ key: KEY, candidate: 'a', ...ELECTION_DEFAULTS })).toBeUndefined();
    expect(electionConfigProblem({ key: KEY, candidate: 'a', ...ELECTION_DEFAULTS, renewIntervalMs: 2_500 })).toMatch(/two renewals/);
    expect(electionConfigProblem({ key: KEY, candidate: 'a', ...ELECTION_DEFAULTS, ttlSeconds: 1 })).toMatch(/at least 2/);
  });
});
