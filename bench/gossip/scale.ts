/**
 * Gossip at scale (reference/performance.md G4): N members join one member on a healthy
 * simulated LAN (swim-sim.ts, the real SWIM core), and we measure
 *
 *   rounds to converge   gossip rounds (gossipIntervalMs each) from the last join until every
 *                        member sees all N alive; SWIM's epidemic dissemination promises O(log N)
 *                        rounds per broadcast, but a mass join is N broadcasts through packets of
 *                        1,400 bytes, so it is bandwidth-bound and grows faster than log N
 *   late joiner          once converged, one more member joins: rounds until everyone sees it,
 *                        the single-broadcast figure to hold against log N
 *   bytes/member/s       in steady state (converged, and every broadcast queue drained: after a mass
 *                        join each member retransmits each of the N alive broadcasts
 *                        retransmitMult × ⌈log10(N + 1)⌉ times, which takes a while), what each
 *                        member puts on the wire: datagrams (exact protobuf sizes, wire-codec
 *                        `messageSize`) and push/pull stream frames (wire-codec
 *                        `pushPullFrameSize`, + the 4-byte prefix); no UDP/IP headers
 *   stable membership    no member-failed event in the whole run, and the suspicions seen
 *
 * Each of N cores holds a table of N members, so memory grows as N²: a run stops early (and says
 * so) past `wallLimitMs` of real time or `heapLimitBytes` of heap, reporting how far it got.
 *
 * `start: 'converged'` skips the mass join: every core starts with the whole pool in its table and
 * nothing queued (Swim.warmStart, one shared record per member), as a pool is long after its
 * members joined. Then the steady state is measured first, and the late joiner after it (the
 * joiner re-broadcasts the N members it learns, so its queue would take long to drain). This is how
 * 10,000 members fit one process: a mass join of 10,000 costs it about 10^12 steps.
 */
import { lanDefaults, SwimTimings } from '../../services/lib/swim/config';
import { MemberInfo } from '../../services/lib/swim/types';
import { healthyNetwork, Rng, SimMember, SwimSim } from './swim-sim';

export interface ScaleOptions {
  readonly members: number;
  /** 'mass-join' (the default): N members join one within joinWindowMs. 'converged': see above. */
  readonly start?: 'mass-join' | 'converged';
  readonly rng: Rng;
  readonly timings?: SwimTimings;
  /** The joins happen at uniformly random times in [0, joinWindowMs). */
  readonly joinWindowMs?: number;
  /** Virtual time allowed for convergence after the last join. */
  readonly convergeLimitMs?: number;
  /** Virtual time allowed for the broadcast queues to drain before the steady-state window. */
  readonly drainLimitMs?: number;
  /**
   * Virtual time over which steady-state bytes are measured: by default one push/pull interval
   * (scaled for N), so that every member opens about one push/pull in it, as in the long run; at
   * most 60 s with a converged start.
   */
  readonly steadyStateMs?: number;
  readonly wallLimitMs?: number;
  readonly heapLimitBytes?: number;
  /** Called with progress lines (the benchmark prints them). */
  readonly progress?: (line: string) => void;
}

export interface ScaleResult {
  readonly members: number;
  readonly start: 'mass-join' | 'converged';
  readonly converged: boolean;
  /** How the convergence phase ended; the later phases are skipped past the budget (their figures undefined). */
  readonly stoppedBy: 'converged' | 'virtual-time-limit' | 'wall-time-limit' | 'heap-limit';
  readonly lastJoinMs: number;
  /** Virtual ms from the last join until everyone saw everyone (undefined when not converged, or with start 'converged'). */
  readonly convergeMs: number | undefined;
  readonly roundsToConverge: number | undefined;
  readonly log2N: number;
  /** Of the N² (observer, member) pairs, the fraction seen alive when the convergence phase ended. */
  readonly knownFraction: number;
  readonly lateJoinerRounds: number | undefined;
  /** Virtual ms from convergence (and the late joiner) until no member had a broadcast queued. */
  readonly drainMs: number | undefined;
  /** Broadcasts still queued, over all members, when the steady-state window began (0 once drained). */
  readonly queuedAtWindowStart: number | undefined;
  readonly steadyStateMs: number;
  readonly bytesPerMemberPerSecond: { readonly datagrams: number; readonly streams: number; readonly total: number } | undefined;
  readonly datagramsPerMemberPerSecond: number | undefined;
  readonly memberFailedEvents: number;
  readonly suspectEvents: number;
  readonly virtualMs: number;
  readonly wallMs: number;
  readonly heapUsedMb: number;
}

/** memberlist `pushPullScale`: past 32 members the push/pull interval grows with log2 N. */
export function pushPullIntervalMs(t: SwimTimings, n: number): number {
  if (n <= 32) return t.pushPullIntervalMs;
  return (Math.ceil(Math.log2(n) - Math.log2(32)) + 1) * t.pushPullIntervalMs;
}

/** The steady-state window of a converged start, at most (a 10,000-member second costs 2 s of wall time). */
const STEADY_WINDOW_CAP_MS = 60_000;
/** Consul's LAN tags, so alive messages and push/pulls have their real size. */
const SCALE_TAGS: Readonly<Record<string, string>> = { role: 'node', dc: 'dc1', segment: '', id: '6e1d1b1c-44b1-4b5e-9f2a-0d6b3c1e2f40', vsn: '2', vsn_min: '2', vsn_max: '3', build: '1.21.0:abcdef12' };

export function measureScale(options: ScaleOptions): ScaleResult {
  const n = options.members;
  const start = options.start ?? 'mass-join';
  const timings = options.timings ?? lanDefaults();
  const joinWindowMs = options.joinWindowMs ?? 1_000;
  const convergeLimitMs = options.convergeLimitMs ?? 120_000;
  const drainLimitMs = options.drainLimitMs ?? 300_000;
  // A converged start has every push/pull timer at a random phase, so a shorter window samples
  // the same rate: at 10,000 members 60 s still holds about 2,000 push/pulls.
  const steadyStateMs = options.steadyStateMs ?? (start === 'converged' ? Math.min(STEADY_WINDOW_CAP_MS, pushPullIntervalMs(timings, n)) : pushPullIntervalMs(timings, n));
  const wallLimitMs = options.wallLimitMs ?? Infinity;
  const heapLimitBytes = options.heapLimitBytes ?? Infinity;
  const progress = options.progress ?? (() => {});
  const started = Date.now();
  const wallS = () => ((Date.now() - started) / 1000).toFixed(0);

  // known[i]: members that member i sees alive (or suspect: Serf shows those as alive), itself included.
  const known: number[] = [];
  let complete = 0;
  let target = n;
  let memberFailedEvents = 0;
  let suspectEvents = 0;
  const adjust = (observer: SimMember, delta: number) => {
    if (known[observer.index] === target) complete--;
    known[observer.index] += delta;
    if (known[observer.index] === target) complete++;
  };
  const sim = new SwimSim({
    rng: options.rng,
    timings,
    faults: healthyNetwork(options.rng.fork()),
    tags: SCALE_TAGS,
    onEvent: (observer, event) => {
      if (known[observer.index] === undefined) known[observer.index] = 0;
      switch (event.type) {
        case 'member-join':
          adjust(observer, 1);
          break;
        case 'member-failed':
          memberFailedEvents++;
          adjust(observer, -1);
          break;
        case 'member-leave':
          adjust(observer, -1);
          break;
        case 'member-suspect':
          suspectEvents++;
          break;
        default:
      }
    },
  });

  const name = (i: number) => `node-${String(i).padStart(5, '0')}`;
  const members: SimMember[] = [];
  for (let i = 0; i < n; i++) members.push(sim.add(name(i)));
  const joinRng = options.rng.fork();

  let lastReport = Date.now();
  let lastHeapCheck = 0;
  let heapSpent = false;
  const budgetSpent = (): 'wall-time-limit' | 'heap-limit' | undefined => {
    const now = Date.now();
    if (now - started > wallLimitMs) return 'wall-time-limit';
    // Reading the heap walks its spaces: at most once a second.
    if (!heapSpent && now - lastHeapCheck >= 1_000) {
      lastHeapCheck = now;
      heapSpent = process.memoryUsage().heapUsed > heapLimitBytes;
    }
    return heapSpent ? 'heap-limit' : undefined;
  };
  const overBudget = () => budgetSpent() !== undefined;

  let lastJoinMs = 0;
  let convergeMs: number | undefined;
  let stoppedBy: ScaleResult['stoppedBy'] = 'converged';
  let knownFraction = 1;
  if (start === 'mass-join') {
    const seed = members[0];
    for (const member of members.slice(1)) {
      const at = Math.floor(joinRng.next() * joinWindowMs);
      lastJoinMs = Math.max(lastJoinMs, at);
      sim.schedule(at, () => sim.join(member, [seed]));
    }
    const converged = () => {
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        progress(`N=${n}: ${(sim.now / 1000).toFixed(1)} s virtual, ${complete}/${n} members see everyone, ${wallS()} s wall`);
      }
      return (sim.now > lastJoinMs && complete === n) || overBudget();
    };
    const doneAt = sim.runUntil(converged, lastJoinMs + convergeLimitMs, 1);
    if (doneAt !== undefined && complete === n) convergeMs = doneAt - lastJoinMs;
    else stoppedBy = budgetSpent() ?? 'virtual-time-limit';
    let knownPairs = 0;
    for (const count of known) knownPairs += count ?? 0;
    knownFraction = knownPairs / (n * n);
    progress(`N=${n}: ${convergeMs !== undefined ? `converged ${convergeMs} ms after the last join` : `stopped (${stoppedBy}) with ${(knownFraction * 100).toFixed(1)} % of pairs known`}, ${wallS()} s wall`);
  } else {
    const records: MemberInfo[] = members.map((member) => ({ name: member.name, address: member.address, incarnation: 1, state: 'alive', tags: SCALE_TAGS, stateChangeMs: 0 }));
    for (const member of members) {
      member.core.warmStart(records);
      known[member.index] = n;
    }
    complete = n;
    progress(`N=${n}: every core starts with the ${n} members in its table, ${wallS()} s wall`);
  }
  const isConverged = stoppedBy === 'converged';

  // One more member joins a random one: how many rounds until all N + 1 see it.
  let lateJoinerRounds: number | undefined;
  const lateJoiner = () => {
    target = n + 1;
    complete = 0;
    const late = sim.add(name(n));
    for (const member of members) if (known[member.index] === target) complete++;
    const joinedAt = sim.now;
    sim.join(late, [members[Math.floor(joinRng.next() * n)]]);
    const seenAt = sim.runUntil(() => complete === n + 1 || overBudget(), convergeLimitMs, 1);
    if (seenAt !== undefined && complete === n + 1) lateJoinerRounds = (seenAt - joinedAt) / timings.gossipIntervalMs;
    progress(`N=${n}: late joiner seen by all in ${lateJoinerRounds ?? '?'} rounds, ${wallS()} s wall`);
  };

  const queued = () => sim.members.reduce((sum, member) => sum + member.core.pendingBroadcasts(), 0);
  let drainMs: number | undefined;
  const drain = () => {
    const drainFrom = sim.now;
    const drainedAt = sim.runUntil(() => queued() === 0 || overBudget(), drainLimitMs, 1_000);
    if (drainedAt !== undefined && queued() === 0) drainMs = drainedAt - drainFrom;
    progress(`N=${n}: broadcast queues ${drainMs === undefined ? `not drained (${queued()} queued)` : `drained in ${drainMs} ms`}`);
  };

  let queuedAtWindowStart: number | undefined;
  let bytes: ScaleResult['bytesPerMemberPerSecond'];
  let datagramsPerMemberPerSecond: number | undefined;
  const steadyState = () => {
    if (overBudget()) return;
    queuedAtWindowStart = queued();
    sim.countBytes = true;
    const datagramsBefore = sim.datagramsSent;
    sim.runFor(steadyStateMs);
    sim.countBytes = false;
    let datagramBytes = 0;
    let streamBytes = 0;
    for (const member of sim.members) {
      datagramBytes += member.datagramBytes;
      streamBytes += member.streamBytes;
    }
    const perMemberSecond = (total: number) => total / sim.members.length / (steadyStateMs / 1000);
    bytes = { datagrams: perMemberSecond(datagramBytes), streams: perMemberSecond(streamBytes), total: perMemberSecond(datagramBytes + streamBytes) };
    datagramsPerMemberPerSecond = perMemberSecond(sim.datagramsSent - datagramsBefore);
    progress(`N=${n}: steady state measured over ${steadyStateMs / 1000} s virtual, ${wallS()} s wall`);
  };

  if (start === 'converged') {
    steadyState();
    if (!overBudget()) lateJoiner();
  } else if (isConverged) {
    lateJoiner();
    drain();
    steadyState();
  }

  return {
    members: n,
    start,
    converged: isConverged,
    stoppedBy,
    lastJoinMs,
    convergeMs,
    roundsToConverge: convergeMs === undefined ? undefined : convergeMs / timings.gossipIntervalMs,
    log2N: Math.log2(n),
    knownFraction,
    lateJoinerRounds,
    drainMs,
    queuedAtWindowStart,
    steadyStateMs: bytes === undefined ? 0 : steadyStateMs,
    bytesPerMemberPerSecond: bytes,
    datagramsPerMemberPerSecond,
    memberFailedEvents,
    suspectEvents,
    virtualMs: sim.now,
    wallMs: Date.now() - started,
    heapUsedMb: Math.round(process.memoryUsage().heapUsed / 1e6),
  };
}
