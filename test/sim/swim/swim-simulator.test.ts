/**
 * The seeded gossip simulator in CI (reference/reliability.md §6.3 G2-G4, performance.md G4):
 * SWIM_SIM_SEEDS fault-mix runs of the real SWIM core with zero violations, replay determinism,
 * no false failure when nothing is wrong, the Lifeguard property against plain SWIM, and 200
 * members converging with stable membership. A failing seed prints the command that replays it:
 *   SWIM_SIM_SEED=<n> npx jest --selectProjects simulation --testPathPatterns test/sim/swim -t 'replay SWIM_SIM_SEED'
 * Knobs: SWIM_SIM_SEEDS (fault-mix seeds, default 400), SWIM_SIM_FROM (first seed, 1),
 * SWIM_LIFEGUARD_SEEDS (seeds per Lifeguard arm, 10).
 */
import { healthyNetwork, SimMember, SwimSim } from '../../../bench/gossip/swim-sim';
import { measureScale } from '../../../bench/gossip/scale';
import { lanDefaults, localDefaults, SwimTimings } from '../../../services/lib/swim/config';
import { Swim } from '../../../services/lib/swim/swim';
import { Prng } from '../prng';
import { joinGossipMs, suspicionMs } from './bounds';
import { LifeguardTrial, runLifeguardTrial } from './lifeguard';
import { SwimCluster, SwimSimReport, SwimSimulationFailure } from './swim-cluster';

const SEEDS = Number(process.env.SWIM_SIM_SEEDS ?? 400);
const FROM = Number(process.env.SWIM_SIM_FROM ?? 1);
const LIFEGUARD_SEEDS = Number(process.env.SWIM_LIFEGUARD_SEEDS ?? 10);
const replaySeed = process.env.SWIM_SIM_SEED;

function runSeed(seed: number): SwimSimReport | SwimSimulationFailure {
  try {
    return new SwimCluster(seed).run();
  } catch (err) {
    if (err instanceof SwimSimulationFailure) return err;
    throw new Error(`seed ${seed} crashed the simulator: ${(err as Error).stack}\n  replay: SWIM_SIM_SEED=${seed} npx jest --selectProjects simulation --testPathPatterns test/sim/swim -t 'replay SWIM_SIM_SEED'`);
  }
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const timingsOf = (r: SwimSimReport): SwimTimings => (r.profile.timing === 'lan' ? lanDefaults() : localDefaults());
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

(replaySeed === undefined ? test.skip : test)('replay SWIM_SIM_SEED', () => {
  const outcome = runSeed(Number(replaySeed));
  if (outcome instanceof SwimSimulationFailure) throw outcome;
  console.log(JSON.stringify(outcome, null, 2));
});

(replaySeed === undefined ? test : test.skip)(`${SEEDS} fault-mix seeds from ${FROM}: invariants, join convergence, healing and detection hold`, () => {
  const started = Date.now();
  const failures: SwimSimulationFailure[] = [];
  const reports: SwimSimReport[] = [];
  for (let seed = FROM; seed < FROM + SEEDS; seed++) {
    const outcome = runSeed(seed);
    if (outcome instanceof SwimSimulationFailure) failures.push(outcome);
    else reports.push(outcome);
  }
  const healed = reports.filter((r) => r.profile.partitions);
  const join = reports.map((r) => r.joinConvergedMs);
  console.log(
    [
      `${SEEDS} seeds in ${((Date.now() - started) / 1000).toFixed(1)} s wall, ${failures.length} failures`,
      `join convergence: p50 ${seconds(percentile(join, 0.5))}, p99 ${seconds(percentile(join, 0.99))}, max ${seconds(Math.max(...join))} (worst fraction of its bound ${Math.max(...reports.map((r) => r.joinConvergedMs / r.joinBoundMs)).toFixed(2)}); ${reports.filter((r) => r.joinConvergedMs > joinGossipMs(timingsOf(r), r.profile.members, 1_000)).length} of ${reports.length} needed a push/pull to finish`,
      `healing after a partition held past the suspicion timeout (${healed.length} seeds): p50 ${seconds(percentile(healed.map((r) => r.healConvergedMs), 0.5))}, max ${seconds(Math.max(...healed.map((r) => r.healConvergedMs)))} (worst fraction of its bound ${Math.max(...healed.map((r) => r.healConvergedMs / r.healBoundMs)).toFixed(2)})`,
      `detection of a crash, all running members: p50 ${seconds(percentile(reports.map((r) => r.detectionAllMs), 0.5))}, p99 ${seconds(percentile(reports.map((r) => r.detectionAllMs), 0.99))} (worst fraction of its bound ${Math.max(...reports.map((r) => r.detectionAllMs / r.detectionBoundMs)).toFixed(2)})`,
      `faults: ${reports.reduce((s, r) => s + r.partitions, 0)} partitions, ${reports.reduce((s, r) => s + r.crashes, 0)} crashes, ${reports.reduce((s, r) => s + r.restarts, 0)} restarts, ${reports.reduce((s, r) => s + r.blocks, 0)} slow-member blocks`,
    ].join('\n  '),
  );
  expect(failures.map((failure) => failure.message)).toEqual([]);
});

describe('canary bugs in the core are caught within 50 seeds (the checkers still bite)', () => {
  // Each stubs out one mechanism of the core; if a method is renamed, update its canary.
  const canaries: [method: string, bug: string][] = [
    ['refute', 'a member never refutes a suspicion or death'],
    ['reconnectToFailedMember', 'no reconnector'],
    ['expireSuspicions', 'suspicions never time out'],
  ];
  for (const [method, bug] of canaries) {
    test(bug, () => {
      const prototype = Swim.prototype as unknown as Record<string, () => void>;
      expect(typeof prototype[method]).toBe('function');
      const stub = jest.spyOn(prototype, method).mockImplementation(() => undefined);
      try {
        for (let seed = 1; seed <= 50; seed++) {
          const outcome = runSeed(seed);
          if (outcome instanceof SwimSimulationFailure) {
            console.log(`canary "${bug}": caught at seed ${seed} by ${outcome.check}`);
            return;
          }
        }
      } finally {
        stub.mockRestore();
      }
      throw new Error(`canary "${bug}" was not caught in 50 seeds: the checkers have gone blind`);
    });
  }
});

test('replay determinism: a seed run twice gives the same trace', () => {
  for (const seed of [3, 77, 2024]) {
    const first = runSeed(seed);
    const second = runSeed(seed);
    expect(first).not.toBeInstanceOf(SwimSimulationFailure);
    expect((second as SwimSimReport).traceHash).toBe((first as SwimSimReport).traceHash);
  }
  expect(runLifeguardTrial(5, false, { durationMs: 60_000 }).traceHash).toBe(runLifeguardTrial(5, false, { durationMs: 60_000 }).traceHash);
});

/** A healthy LAN pool of `n` members that joined one member and converged. */
function healthyPool(seed: number, n: number, timings: SwimTimings = lanDefaults()): { sim: SwimSim; members: SimMember[]; failed: { observer: string; member: string; at: number }[]; suspected: number } {
  const prng = new Prng(seed);
  const failed: { observer: string; member: string; at: number }[] = [];
  const pool = { sim: undefined as unknown as SwimSim, members: [] as SimMember[], failed, suspected: 0 };
  pool.sim = new SwimSim({
    rng: prng.fork(),
    timings,
    faults: healthyNetwork(prng.fork()),
    onEvent: (observer, event) => {
      if (event.type === 'member-failed') failed.push({ observer: observer.name, member: event.member.name, at: pool.sim.now });
      if (event.type === 'member-suspect') pool.suspected++;
    },
  });
  pool.members = Array.from({ length: n }, (_, i) => pool.sim.add(`node-${String(i + 1).padStart(2, '0')}`));
  for (const member of pool.members.slice(1)) pool.sim.schedule(prng.int(1_000), () => pool.sim.join(member, [pool.members[0]]));
  const converged = pool.sim.runUntil(() => pool.members.every((o) => pool.members.every((m) => o.core.member(m.name)?.state === 'alive')), 120_000, 50);
  if (converged === undefined) throw new Error(`seed ${seed}: the healthy pool of ${n} did not converge`);
  return pool;
}

test('no false failure in a lossless healthy run: 32 members, 10 minutes, LAN timings', () => {
  for (const seed of [1, 2]) {
    const pool = healthyPool(seed, 32);
    pool.sim.runFor(600_000);
    expect({ seed, failed: pool.failed, suspected: pool.suspected }).toEqual({ seed, failed: [], suspected: 0 });
  }
});

test('a true failure in a healthy 16-member pool (G2): first dead p99 ≤ 10 s, known to all ≤ 12 s', () => {
  const first: number[] = [];
  const all: number[] = [];
  for (let seed = 1; seed <= 20; seed++) {
    const pool = healthyPool(seed, 16);
    pool.sim.runFor(5_000 + seed * 97);
    const victim = pool.members[seed % 16];
    const crashedAt = pool.sim.now;
    pool.sim.crash(victim);
    const survivors = pool.members.filter((m) => m !== victim);
    const done = pool.sim.runUntil(() => survivors.every((m) => m.core.member(victim.name)?.state === 'dead'), 60_000, 10);
    expect({ seed, detected: done !== undefined }).toEqual({ seed, detected: true });
    const times = pool.failed.filter((f) => f.member === victim.name).map((f) => f.at - crashedAt);
    first.push(Math.min(...times));
    all.push(Math.max(...times));
    expect(pool.failed.filter((f) => f.member !== victim.name)).toEqual([]);
  }
  const { minMs, maxMs } = suspicionMs(lanDefaults(), 16);
  console.log(`G2, 16 members, LAN (suspicion min ${seconds(minMs)}, max ${seconds(maxMs)}), 20 crashes: first dead p50 ${seconds(percentile(first, 0.5))} max ${seconds(Math.max(...first))}; all dead p50 ${seconds(percentile(all, 0.5))} max ${seconds(Math.max(...all))}`);
  expect(percentile(first, 0.99)).toBeLessThanOrEqual(10_000);
  expect(Math.max(...all)).toBeLessThanOrEqual(12_000);
});

test('a graceful leave and a force-leave reach every member of a pool of 10 within 1 s, in 100 seeds each (the CLI tests wait 10 s)', () => {
  // By gossip alone a pool of 10 sends each broadcast 4 times per member: a leave missed a member
  // in about 5 % of seeds and a force-leave in 7 %, until a push/pull 30 s later.
  const missed: string[] = [];
  for (let seed = 1; seed <= 100; seed++) {
    const graceful = healthyPool(seed, 10);
    const leaver = graceful.members[seed % 10];
    leaver.core.leave();
    graceful.sim.runFor(100);
    graceful.sim.crash(leaver);
    const stayed = graceful.members.filter((m) => m !== leaver);
    if (graceful.sim.runUntil(() => stayed.every((m) => m.core.member(leaver.name)?.state === 'left'), 1_000, 10) === undefined) missed.push(`leave, seed ${seed}`);

    const forced = healthyPool(seed, 10);
    const victim = forced.members[seed % 10];
    forced.sim.crash(victim);
    const survivors = forced.members.filter((m) => m !== victim);
    forced.sim.runUntil(() => survivors.every((m) => m.core.member(victim.name)?.state === 'dead'), 60_000, 10);
    expect(survivors[0].core.forceLeave(victim.name)).toBeUndefined();
    if (forced.sim.runUntil(() => survivors.every((m) => m.core.member(victim.name)?.state === 'left'), 1_000, 10) === undefined) missed.push(`force-leave, seed ${seed}`);
  }
  expect(missed).toEqual([]);
});

test('a member paused for 2 s, below the suspicion timeout, is never declared dead and refutes (G4)', () => {
  let refuted = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const pool = healthyPool(seed, 16);
    const paused = pool.members[1 + (seed % 15)];
    const before = paused.core.localMember().incarnation;
    let suspectedWhilePaused = false;
    for (let round = 0; round < 5; round++) {
      pool.sim.runFor(10_000 + seed * 31);
      pool.sim.block(paused, 2_000);
      pool.sim.runFor(2_000);
      suspectedWhilePaused ||= pool.members.some((m) => m.core.member(paused.name)?.state === 'suspect');
      pool.sim.runFor(3_000);
    }
    pool.sim.runFor(10_000);
    expect({ seed, failed: pool.failed }).toEqual({ seed, failed: [] });
    // memberlist AliveNode_Refute: a suspicion that reached it was refuted with a higher incarnation.
    if (suspectedWhilePaused) {
      expect(paused.core.localMember().incarnation).toBeGreaterThan(before);
      refuted++;
    }
    expect(pool.members.every((m) => m.core.member(paused.name)?.state === 'alive')).toBe(true);
  }
  // Pauses of 2 s against 1 s probes: most seeds see the suspicion, so the refutation is checked.
  expect(refuted).toBeGreaterThanOrEqual(5);
});

test(`the Lifeguard property (G3): ${LIFEGUARD_SEEDS} seeds, 32 members, 10 % slow, 5 % loss, healthy members declared dead ≥ 20× less often with Lifeguard`, () => {
  // A blocked member replays every missed tick when it unblocks, before its queued packets, as
  // the shell does for stalls under MAX_CATCH_UP_TICKS (60 s; services/gossip/pool.ts).
  const trials = { on: [] as LifeguardTrial[], off: [] as LifeguardTrial[] };
  for (let seed = 1; seed <= LIFEGUARD_SEEDS; seed++) {
    trials.off.push(runLifeguardTrial(seed, false));
    trials.on.push(runLifeguardTrial(seed, true));
  }
  const sum = (ts: LifeguardTrial[], f: (t: LifeguardTrial) => number) => ts.reduce((s, t) => s + f(t), 0);
  const figures = (label: string, ts: LifeguardTrial[]) => {
    const first = ts.map((t) => t.detectionFirstMs).filter((v): v is number => v !== undefined);
    const all = ts.map((t) => t.detectionAllMs).filter((v): v is number => v !== undefined);
    return {
      label,
      falseFailures: sum(ts, (t) => t.falseFailures),
      atHealthyObservers: sum(ts, (t) => t.falseFailuresAtHealthyObservers),
      distinctVictims: sum(ts, (t) => t.distinctVictims),
      healthySuspected: sum(ts, (t) => t.healthySuspected),
      slowDeclaredDead: sum(ts, (t) => t.slowMembersDeclaredDead),
      detectionFirstP50Ms: first.length === 0 ? NaN : percentile(first, 0.5),
      detectionAllP50Ms: all.length === 0 ? NaN : percentile(all, 0.5),
      detectionAllMaxMs: all.length === 0 ? NaN : Math.max(...all),
      undetected: ts.length - all.length,
    };
  };
  const on = figures('Lifeguard on', trials.on);
  const off = figures('Lifeguard off (plain SWIM)', trials.off);
  const ratio = (a: number, b: number) => (b === 0 ? (a === 0 ? 'n/a' : '∞') : `${(a / b).toFixed(1)}×`);
  console.log(
    [
      `Lifeguard property, ${LIFEGUARD_SEEDS} seeds × 300 s, 32 members, 3 slow (blocked 1-10 s, then 1-20 s running), 5 % loss:`,
      ...[off, on].map((f) => `  ${JSON.stringify(f)}`),
      `  healthy members declared dead, per observer: off ${off.falseFailures} / on ${on.falseFailures} = ${ratio(off.falseFailures, on.falseFailures)}; at healthy observers ${ratio(off.atHealthyObservers, on.atHealthyObservers)}; distinct victims ${off.distinctVictims} / ${on.distinctVictims} = ${ratio(off.distinctVictims, on.distinctVictims)}`,
      `  true-failure detection (all running members), p50: off ${seconds(off.detectionAllP50Ms)}, on ${seconds(on.detectionAllP50Ms)} (${((on.detectionAllP50Ms / off.detectionAllP50Ms - 1) * 100).toFixed(0)} %)`,
      ...trials.off.map((t, i) => `  seed ${t.seed}: off ${t.falseFailures} (${t.distinctVictims} victims), on ${trials.on[i].falseFailures} (${trials.on[i].distinctVictims} victims)`),
    ].join('\n'),
  );
  // Off must produce enough false failures that a single one with Lifeguard on would break 20×.
  expect(off.falseFailures).toBeGreaterThanOrEqual(20);
  expect(on.falseFailures * 20).toBeLessThanOrEqual(off.falseFailures);
  expect(on.distinctVictims * 20).toBeLessThanOrEqual(off.distinctVictims);
  expect(on.undetected).toBe(0);
  // G3: detection of true failures no worse than +50 %.
  expect(on.detectionAllP50Ms).toBeLessThanOrEqual(1.5 * off.detectionAllP50Ms);
});

test('1,000 members from a converged start: a late joiner reaches all in O(log N) rounds, membership stays stable (performance.md G4)', () => {
  const result = measureScale({ members: 1000, start: 'converged', rng: new Prng(1000) });
  console.log(
    `scale, 1,000 members started converged: a late joiner reached everyone in ${result.lateJoinerRounds} rounds (log2 N = ${result.log2N.toFixed(2)}); ` +
      `steady state ${result.bytesPerMemberPerSecond?.total.toFixed(0)} B/member/s over ${result.steadyStateMs / 1000} s; ${(result.wallMs / 1000).toFixed(1)} s wall`,
  );
  expect(result.queuedAtWindowStart).toBe(0);
  expect(result.memberFailedEvents).toBe(0);
  expect(result.suspectEvents).toBe(0);
  expect(result.lateJoinerRounds).toBeLessThanOrEqual(2 * result.log2N);
  // Every member opens about one push/pull of the whole table per (scaled) interval, and answers one.
  expect(result.bytesPerMemberPerSecond!.streams).toBeGreaterThan(0);
});

test('200 members join one member and converge with stable membership (performance.md G4)', () => {
  const result = measureScale({ members: 200, rng: new Prng(200) });
  console.log(
    `scale, 200 members: converged ${result.convergeMs} ms after the last join = ${result.roundsToConverge} gossip rounds (log2 N = ${result.log2N.toFixed(2)}); ` +
      `a late joiner reached everyone in ${result.lateJoinerRounds} rounds; queues drained in ${result.drainMs} ms; ` +
      `steady state ${result.bytesPerMemberPerSecond?.total.toFixed(0)} B/member/s (${result.bytesPerMemberPerSecond?.datagrams.toFixed(0)} datagrams + ${result.bytesPerMemberPerSecond?.streams.toFixed(0)} push/pull), ${result.datagramsPerMemberPerSecond?.toFixed(1)} datagrams/member/s; ${(result.wallMs / 1000).toFixed(1)} s wall`,
  );
  expect(result.converged).toBe(true);
  expect(result.memberFailedEvents).toBe(0);
  expect(result.suspectEvents).toBe(0);
  // A single broadcast spreads in O(log N) rounds (SWIM §4.4); allow twice log2 N.
  expect(result.lateJoinerRounds).toBeLessThanOrEqual(2 * result.log2N);
  expect(result.queuedAtWindowStart).toBe(0);
});
