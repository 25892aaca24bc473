/**
 * The Lifeguard property (reference/reliability.md G3; Dadgar, Phillips, Currey, arXiv 1707.00788):
 * with 10 % of members slow to process messages, healthy members are wrongly declared dead
 * far less often with Lifeguard (local health multiplier, nacks, dynamic suspicion timeout, buddy
 * system) than with plain SWIM (fixed suspicion timeout, none of the rest).
 *
 * One trial: `members` join one member and converge; then a tenth of them are slow (each blocks
 * for 1-10 s, runs for a random while, blocks again: the paper's CPU-exhaustion model, see
 * swim-sim.ts for what a block does) over `durationMs`, with some datagram loss, no crash. A false
 * failure is a member-failed event about a member that is neither slow nor ever crashed. At the end
 * one healthy member crashes and we time its detection (the cost Lifeguard may add).
 *
 * The slow members and their block schedule come from their own fork of the seed, so a seed gives
 * the same slowness with Lifeguard on and off; only the cores' own choices differ.
 *
 * A slow member catches up on all its missed ticks when it unblocks, before it reads what queued
 * up (the paper's model: "refutation of a suspicion can only succeed if it is processed by the
 * suspecting member in a timely manner"; its timers expire while its messages wait). That is what
 * makes plain SWIM fail: a slow member's probe and suspicion timers run out in the burst, before
 * it reads the acks and refutations waiting for it, and it declares a healthy member dead. The
 * gossip shell replays missed ticks the same way for stalls up to a minute (MAX_CATCH_UP_TICKS,
 * services/gossip/pool.ts), so the blocks here (1-10 s) are what a real slow process sees.
 */
import { SimMember, SwimSim } from '../../../bench/gossip/swim-sim';
import { lanDefaults, SwimTimings } from '../../../services/lib/swim/config';
import { Prng } from '../prng';
import { FaultyNetwork } from './network-faults';

export interface LifeguardOptions {
  readonly members?: number;
  readonly slowFraction?: number;
  readonly lossRate?: number;
  readonly durationMs?: number;
  readonly timings?: SwimTimings;
  /** Ticks a slow member catches up when it unblocks (swim-sim.ts): Infinity, the paper's model, by default. */
  readonly maxCatchUpTicks?: number;
}

export interface LifeguardTrial {
  readonly seed: number;
  readonly lifeguard: boolean;
  readonly members: number;
  readonly slow: readonly string[];
  /** member-failed events about healthy members, counted per observer (all observers). */
  readonly falseFailures: number;
  /** The same, at healthy observers only (what the rest of the cluster, and Consul's catalog, sees). */
  readonly falseFailuresAtHealthyObservers: number;
  /** Healthy members that at least one observer declared dead. */
  readonly distinctVictims: number;
  /** member-failed events about slow members (they may really miss a suspicion timeout while blocked). */
  readonly slowMembersDeclaredDead: number;
  /** member-suspect events about healthy members. */
  readonly healthySuspected: number;
  /** The crash at the end: first running member to mark it dead, and the last (ms after the crash). */
  readonly detectionFirstMs: number | undefined;
  readonly detectionAllMs: number | undefined;
  readonly virtualMs: number;
  readonly traceHash: string;
}

const JOIN_WINDOW_MS = 1_000;
const CONVERGE_LIMIT_MS = 120_000;
const DETECTION_LIMIT_MS = 120_000;

export function runLifeguardTrial(seed: number, lifeguard: boolean, options: LifeguardOptions = {}): LifeguardTrial {
  const n = options.members ?? 32;
  const slowCount = Math.round(n * (options.slowFraction ?? 0.1));
  const durationMs = options.durationMs ?? 300_000;
  const prng = new Prng(seed);
  // Drawn first and from their own forks: identical with Lifeguard on and off.
  const slowPrng = prng.fork();
  const victimPrng = prng.fork();
  const network = new FaultyNetwork(prng.fork(), { lossRate: options.lossRate ?? 0.05, duplicateRate: 0, delayMinMs: 1, delayMaxMs: 5 });

  const names = Array.from({ length: n }, (_, i) => `node-${String(i + 1).padStart(2, '0')}`);
  const slow = new Set<string>();
  while (slow.size < slowCount) slow.add(slowPrng.pick(names));
  const crashed = new Set<string>();
  const victims = new Set<string>();
  let falseFailures = 0;
  let falseFailuresAtHealthyObservers = 0;
  let slowMembersDeclaredDead = 0;
  let healthySuspected = 0;
  let detection: { victim: string; at: number; seenBy: Map<string, number> } | undefined;
  const healthy = (name: string) => !slow.has(name) && !crashed.has(name);

  const sim = new SwimSim({
    rng: prng.fork(),
    timings: options.timings ?? lanDefaults(),
    lifeguard,
    faults: network,
    maxCatchUpTicks: options.maxCatchUpTicks ?? Infinity,
    onEvent: (observer, event) => {
      if (event.type === 'member-suspect' && healthy(event.member.name)) healthySuspected++;
      if (event.type !== 'member-failed') return;
      const victim = event.member.name;
      if (detection !== undefined && victim === detection.victim) {
        if (!detection.seenBy.has(observer.name)) detection.seenBy.set(observer.name, sim.now);
      } else if (slow.has(victim)) {
        slowMembersDeclaredDead++;
      } else if (healthy(victim)) {
        falseFailures++;
        if (healthy(observer.name)) falseFailuresAtHealthyObservers++;
        victims.add(victim);
      }
    },
  });
  const members = names.map((name) => sim.add(name));
  for (const member of members.slice(1)) sim.schedule(slowPrng.int(JOIN_WINDOW_MS), () => sim.join(member, [members[0]]));
  const allSeeAll = () => members.every((observer) => !observer.up || members.every((m) => !m.up || isAlive(observer, m.name)));
  if (sim.runUntil(allSeeAll, CONVERGE_LIMIT_MS, 100) === undefined) throw new Error(`seed ${seed}: the ${n} members did not converge within ${CONVERGE_LIMIT_MS} ms before the slowness started`);

  const end = sim.now + durationMs;
  for (const member of members.filter((m) => slow.has(m.name))) {
    let at = sim.now + slowPrng.between(0, 10_000);
    while (at < end) {
      const blockMs = slowPrng.between(1_000, 10_000);
      const start = at;
      sim.schedule(start, () => sim.block(member, Math.min(blockMs, end - start)));
      at += blockMs + slowPrng.between(1_000, 20_000);
    }
  }
  sim.runFor(durationMs);

  // A true failure among the healthy: how long until it is known dead.
  const victim = victimPrng.pick(members.filter((m) => healthy(m.name)));
  crashed.add(victim.name);
  detection = { victim: victim.name, at: sim.now, seenBy: new Map() };
  sim.crash(victim);
  const running = members.filter((m) => m.up);
  sim.runUntil(() => running.every((m) => detection!.seenBy.has(m.name)), DETECTION_LIMIT_MS, 100);
  const times = [...detection.seenBy.values()].map((at) => at - detection!.at);
  const everyone = detection.seenBy.size === running.length;

  return {
    seed,
    lifeguard,
    members: n,
    slow: [...slow].sort(),
    falseFailures,
    falseFailuresAtHealthyObservers,
    distinctVictims: victims.size,
    slowMembersDeclaredDead,
    healthySuspected,
    detectionFirstMs: times.length === 0 ? undefined : Math.min(...times),
    detectionAllMs: everyone ? Math.max(...times) : undefined,
    virtualMs: sim.now,
    traceHash: sim.traceHash,
  };
}

function isAlive(observer: SimMember, name: string): boolean {
  const state = observer.core.member(name)?.state;
  return state === 'alive' || state === 'suspect';
}
