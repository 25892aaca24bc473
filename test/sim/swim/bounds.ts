/**
 * The time bounds the gossip simulator's checkers hold, derived from the SWIM timings
 * (reference/performance.md §1.3; memberlist `suspicionTimeout`, `retransmitLimit`,
 * `pushPullScale`; Serf's reconnector). Each is the mechanism's worst case (or, where the mechanism
 * is random, a tail with chance below 10^−3) plus a stated margin, never a figure fitted to runs:
 * a checker that fails means the mechanism took longer than it should be able to.
 */
import { SwimTimings } from '../../../services/lib/swim/config';
import { suspicionTimeoutMs } from '../../../services/lib/swim/suspicion';
import { pushPullIntervalMs } from '../../../bench/gossip/scale';

/** memberlist `retransmitLimit`: a broadcast goes out retransmitMult × ⌈log10(N + 1)⌉ times per member. */
export function retransmitLimit(t: SwimTimings, n: number): number {
  return t.retransmitMult * Math.ceil(Math.log10(n + 1));
}

/** Suspicion timeouts for a pool of `n` (memberlist `suspicionTimeout`; Lifeguard starts at max). */
export function suspicionMs(t: SwimTimings, n: number): { readonly minMs: number; readonly maxMs: number } {
  const minMs = suspicionTimeoutMs(t.suspicionMult, n, t.probeIntervalMs);
  return { minMs, maxMs: t.suspicionMaxTimeoutMult * minMs };
}

/**
 * Join convergence: N members join one seed within `joinWindowMs`; every member sees all N alive by
 *
 *   joinWindow + streamTimeout            the last join's push/pull is answered
 *   + retransmitLimit × gossipInterval    the seed's alive broadcasts for the joiners have all gone
 *                                         out (each member that hears one re-broadcasts it, so this
 *                                         is the epidemic's longest life at the seed)
 *   + 2 × pushPullInterval                the retransmit limit makes the epidemic likely, not
 *                                         certain, to reach everyone, even without loss (the limit
 *                                         is taken from the sender's member count, small while the
 *                                         pool forms); a member that missed a broadcast gets the
 *                                         full state at its next push/pull, or at the one after if
 *                                         that peer missed it too
 */
export function joinConvergenceBoundMs(t: SwimTimings, n: number, joinWindowMs: number): number {
  return joinGossipMs(t, n, joinWindowMs) + 2 * pushPullIntervalMs(t, n);
}

/** The gossip part of the join bound alone: a join that took longer was repaired by push/pull. */
export function joinGossipMs(t: SwimTimings, n: number, joinWindowMs: number): number {
  return joinWindowMs + t.streamTimeoutMs + retransmitLimit(t, n) * t.gossipIntervalMs;
}

/**
 * Detection of a crash by every running member, in a pool of `n` running members counting the
 * crashed one (memberlist's suspicion formula, under Lifeguard's local health multiplier):
 *
 *   period = awarenessMaxMultiplier × probeInterval   the longest protocol period: loss, slow
 *                                                    helpers and the crashed member itself (a
 *                                                    helper that never nacks) push a prober's health
 *                                                    score up, which stretches its period
 *   + firstProbe × period                            until some member's round-robin probe reaches
 *                                                    the crashed one: one prober reaches it within
 *                                                    2(n − 1) − 1 periods (first in one shuffled
 *                                                    round, last in the next); with n − 1 probers
 *                                                    the first comes after about one period, and
 *                                                    none in 8 has chance ≈ e^−8, so
 *                                                    firstProbe = min(8, 2(n − 1) − 1)
 *   + maxSuspicion                                   Lifeguard's timeout before any confirmation
 *   + retransmitLimit × gossipInterval               the dead broadcast reaches the rest
 */
export function detectionBoundMs(t: SwimTimings, n: number): number {
  const period = t.awarenessMaxMultiplier * t.probeIntervalMs;
  const firstProbe = Math.min(8, 2 * (n - 1) - 1);
  return (firstProbe + 1) * period + suspicionMs(t, n).maxMs + retransmitLimit(t, n) * t.gossipIntervalMs;
}

/**
 * After a partition heals, every running member sees every running member alive again. Members
 * declared dead across the cut are not probed and not pushed/pulled with (both pick among the
 * living), so what heals it is Serf's reconnector: every reconnectInterval each member push/pulls
 * with one random failed member. An exchange across the old cut makes each side suspect what the
 * other thought dead; the suspects refute with a higher incarnation; a second exchange carries the
 * refutations over, and gossip spreads them on each side. The bound, for `n` members of which
 * `running` are up (the rest stay crashed, and are picked by the reconnector just as often):
 *
 *   maxSuspicion + probeInterval        suspicions raised just before the heal run out and the
 *                                       deaths they cause are known everywhere
 *   + k × reconnectInterval             the two crossing exchanges. The worst cut isolates one
 *                                       member: it picks one of the others with chance
 *                                       (running − 1)/(n − 1) per interval, each of them picks it
 *                                       with 1/(n − 1), so crossings come as a Poisson stream of
 *                                       λ = 2(running − 1)/(n − 1) per interval; fewer than two in
 *                                       k intervals has chance e^−λk (1 + λk) < 10^−3 once
 *                                       λk ≥ 9.3, so k = ⌈4.65 (n − 1)/(running − 1)⌉
 *   + pushPullInterval                  members no exchange touched learn it from a push/pull,
 *                                       which also turns the last stale views into suspicions
 *                                       that are refuted
 *   + 10 s                              the longest block of a slow member
 */
export function healBoundMs(t: SwimTimings, n: number, running: number, reconnectIntervalMs: number): number {
  const k = Math.ceil((4.65 * (n - 1)) / Math.max(1, running - 1));
  return suspicionMs(t, n).maxMs + t.probeIntervalMs + k * reconnectIntervalMs + pushPullIntervalMs(t, n) + 10_000;
}
