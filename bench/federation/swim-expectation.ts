/**
 * What memberlist's timers predict for "SIGKILL one router → dc1 lists it failed" in one area pool
 * of N routers (computed, not measured): the reference for the measured rows, and the only figure
 * for Consul's WAN profile, which this benchmark does not run (a single sample would take a minute).
 *
 * The model follows memberlist `state.go` (probeNode, suspectNode) and `suspicion.go`, with the
 * profiles of reference/performance.md §1.3 (memberlist DefaultLANConfig / DefaultLocalConfig /
 * DefaultWANConfig), not ours, so a drift of ours would show as a gap:
 *  - each survivor probes its N − 1 peers round robin in an order reshuffled every round, one probe
 *    per ProbeInterval T, from a random phase; a probe of the dead member ends in `suspect` at its
 *    start + T (direct ping, ProbeTimeout, indirect pings until the period ends);
 *  - the first suspect starts a timer everywhere (gossip reaches the others within one
 *    GossipInterval); each other survivor's own failed probe is an independent confirmation;
 *  - k = SuspicionMult − 2 confirmations expected, 0 when N − 2 < k (then the timeout is min at
 *    once); min = SuspicionMult × max(1, log10 N) × T, max = SuspicionMaxTimeoutMult × min, and
 *    after c confirmations the timeout is max − (max − min) × log(c + 1) / log(k + 1), never below
 *    min (the same functions as services/lib/swim/suspicion.ts, imported);
 *  - the first survivor whose timer fires declares the member dead; dc1's first router has it
 *    from its own timer or one gossip hop later, whichever is first.
 * Left out: Lifeguard's local-health stretching (no one is slow in a healthy run), the CPU of two
 * shared cores, and the catalog's own polling interval (the measurement polls every 25 ms).
 */
import { seededRng } from '../gossip/rng';
import { remainingSuspicionMs, suspicionTimeoutMs } from '../../services/lib/swim/suspicion';

export interface MemberlistTimings {
  readonly probeIntervalMs: number;
  readonly probeTimeoutMs: number;
  readonly suspicionMult: number;
  readonly suspicionMaxTimeoutMult: number;
  readonly gossipIntervalMs: number;
}

/** reference/performance.md §1.3. */
export const MEMBERLIST_PROFILES: Readonly<Record<string, MemberlistTimings>> = {
  lan: { probeIntervalMs: 1_000, probeTimeoutMs: 500, suspicionMult: 4, suspicionMaxTimeoutMult: 6, gossipIntervalMs: 200 },
  local: { probeIntervalMs: 1_000, probeTimeoutMs: 200, suspicionMult: 3, suspicionMaxTimeoutMult: 6, gossipIntervalMs: 100 },
  wan: { probeIntervalMs: 5_000, probeTimeoutMs: 3_000, suspicionMult: 6, suspicionMaxTimeoutMult: 6, gossipIntervalMs: 500 },
};

export interface Expectation {
  readonly profile: string;
  readonly members: number;
  /** Confirmations expected (k), after memberlist's small-pool rule. */
  readonly k: number;
  readonly minSuspicionMs: number;
  readonly maxSuspicionMs: number;
  /** T + min suspicion: no run can be quicker. */
  readonly floorMs: number;
  readonly p10Ms: number;
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly samples: number;
}

/** The time of survivor's first probe of the dead member at or after 0. */
function firstProbeOfDead(targets: number, periodMs: number, next: () => number): number {
  // Start well before the kill so the round structure (reshuffles) is in its steady state.
  let t = -(3 * targets) * periodMs + next() * periodMs;
  for (let rounds = 0; rounds < 1_000; rounds++) {
    const position = Math.floor(next() * targets); // where the dead member falls in this round's shuffle
    const probeAt = t + position * periodMs;
    if (probeAt >= 0) return probeAt;
    t += targets * periodMs;
  }
  throw new Error('unreachable: no probe of the dead member in 1,000 rounds');
}

/** When one survivor's timer fires: started at `startMs`, confirmed at `confirmations` (ascending). */
function fireTime(startMs: number, confirmations: readonly number[], k: number, minMs: number, maxMs: number): number {
  let deadline = startMs + (k < 1 ? minMs : maxMs);
  let c = 0;
  for (const at of confirmations) {
    if (at >= deadline || c >= k) break;
    c++;
    deadline = at + Math.max(0, remainingSuspicionMs(c, k, at - startMs, minMs, maxMs));
  }
  return deadline;
}

export function expectedDetection(profile: string, members: number, samples = 20_000, seed = 1): Expectation {
  const p = MEMBERLIST_PROFILES[profile];
  if (p === undefined) throw new Error(`no memberlist profile "${profile}": use ${Object.keys(MEMBERLIST_PROFILES).join(', ')}`);
  if (!(Number.isInteger(members) && members >= 3)) throw new Error(`members must be >= 3, got ${members}`);
  const rng = seededRng(seed * 1_000_003 + members);
  const next = () => rng.next();
  const kNominal = p.suspicionMult - 2;
  const k = members - 2 < kNominal ? 0 : kNominal;
  const minMs = suspicionTimeoutMs(p.suspicionMult, members, p.probeIntervalMs);
  const maxMs = p.suspicionMaxTimeoutMult * minMs;
  const survivors = members - 1;
  const hop = () => next() * p.gossipIntervalMs;
  const out: number[] = [];
  for (let s = 0; s < samples; s++) {
    const suspectAt = Array.from({ length: survivors }, () => firstProbeOfDead(members - 1, p.probeIntervalMs, next) + p.probeIntervalMs);
    const first = Math.min(...suspectAt);
    // Survivor i hears of the first suspicion at once if it is its own, else one gossip hop later;
    // the others' independent suspects reach it one hop after they happen (its own at once).
    const fires = suspectAt.map((own, i) => {
      const start = own === first ? own : Math.min(own, first + hop());
      const confirms = suspectAt.filter((_, j) => j !== i).map((at) => at + hop());
      if (own > start) confirms.push(own);
      return fireTime(start, confirms.filter((at) => at > start).sort((a, b) => a - b), k, minMs, maxMs);
    });
    // Survivor 0 stands for the dc1 router the catalog asks.
    out.push(Math.min(fires[0], ...fires.slice(1).map((f) => f + hop())));
  }
  out.sort((a, b) => a - b);
  const at = (q: number) => Math.round(out[Math.min(out.length - 1, Math.floor(q * out.length))]);
  return { profile, members, k, minSuspicionMs: minMs, maxSuspicionMs: maxMs, floorMs: p.probeIntervalMs + minMs, p10Ms: at(0.1), medianMs: at(0.5), p90Ms: at(0.9), samples };
}
