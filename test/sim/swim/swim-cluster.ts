/**
 * One seed of the gossip simulator (TigerBeetle's VOPR for SWIM): a pool of real SWIM cores on the
 * simulated network of bench/gossip/swim-sim.ts, a fault mix drawn from the seed, and checkers.
 *
 *   1. join       N members join one seed member; loss, duplication and delay are on from the start
 *                 → every member sees all N alive within joinConvergenceBoundMs
 *   2. faults     the nemesis partitions (symmetric and one-way), crashes, restarts and heals;
 *                 "slow" members block for 1-10 s at random intervals (Lifeguard's CPU exhaustion);
 *                 a seed with partitions ends the phase on one held past the suspicion timeout
 *   3. heal       partitions healed, no new blocks, crashed members stay down
 *                 → every running member sees every running member alive within healBoundMs
 *   4. detection  one running member crashes
 *                 → every running member marks it dead within detectionBoundMs
 *
 * Throughout: an observer's view of a member's incarnation never goes back, and no running member
 * ever sees itself dead. Everything random comes from the seed; a violation throws
 * SwimSimulationFailure naming the seed and the command that replays it.
 */
import { MAX_CATCH_UP_TICKS, SimMember, SwimSim } from '../../../bench/gossip/swim-sim';
import { lanDefaults, localDefaults, SWIM_DEFAULTS, SwimTimings } from '../../../services/lib/swim/config';
import { Swim } from '../../../services/lib/swim/swim';
import { SwimEvent } from '../../../services/lib/swim/types';
import { Prng } from '../prng';
import { detectionBoundMs, healBoundMs, joinConvergenceBoundMs, suspicionMs } from './bounds';
import { FaultyNetwork, NetworkProfile } from './network-faults';

export class SwimSimulationFailure extends Error {
  override readonly name = 'SwimSimulationFailure';
  constructor(
    readonly seed: number,
    readonly check: string,
    detail: string,
  ) {
    super(`seed ${seed}: ${check} violated: ${detail}\n  replay: SWIM_SIM_SEED=${seed} npx jest --selectProjects simulation --testPathPatterns test/sim/swim -t 'replay SWIM_SIM_SEED'`);
  }
}

/** The fault mix of one seed. */
export interface SwimFaultProfile extends NetworkProfile {
  readonly members: number;
  readonly timing: 'lan' | 'local';
  readonly faultPhaseMs: number;
  /** Mean time between nemesis actions. */
  readonly nemesisEveryMs: number;
  readonly partitions: boolean;
  readonly crashes: boolean;
  readonly restarts: boolean;
  /** Members that block for 1-10 s at random intervals during the fault phase. */
  readonly slowMembers: number;
  /** Missed ticks a member runs when it unblocks: all (the Lifeguard paper's model) or the shell's cap (swim-sim.ts). */
  readonly catchUp: 'all' | 'shell';
}

export interface SwimSimReport {
  readonly seed: number;
  readonly profile: SwimFaultProfile;
  readonly joinConvergedMs: number;
  readonly joinBoundMs: number;
  readonly healConvergedMs: number;
  readonly healBoundMs: number;
  /** From the crash to the first running member marking it dead, and to the last. */
  readonly detectionFirstMs: number;
  readonly detectionAllMs: number;
  readonly detectionBoundMs: number;
  /** The worst Lifeguard health score among running members when the detection phase began. */
  readonly healthAtCrash: number;
  readonly crashes: number;
  readonly restarts: number;
  readonly partitions: number;
  readonly blocks: number;
  readonly memberFailedEvents: number;
  readonly virtualMs: number;
  readonly traceHash: string;
}

const JOIN_WINDOW_MS = 1_000;
const CHECK_EVERY_MS = 50;
const INVARIANT_SCAN_EVERY_MS = 250;
/** Consul's retry_join: a (re)started member that could not join tries another member this often. */
const RETRY_JOIN_MS = 5_000;

export function drawProfile(prng: Prng): SwimFaultProfile {
  const delayMinMs = prng.between(0, 3);
  return {
    members: prng.between(5, 24),
    timing: prng.chance(0.75) ? 'lan' : 'local',
    lossRate: prng.chance(0.3) ? 0 : prng.next() * 0.3,
    duplicateRate: prng.chance(0.5) ? 0 : prng.next() * 0.3,
    delayMinMs,
    delayMaxMs: delayMinMs + prng.between(1, 50),
    faultPhaseMs: prng.between(60_000, 180_000),
    nemesisEveryMs: prng.between(5_000, 30_000),
    partitions: prng.chance(0.7),
    crashes: prng.chance(0.6),
    restarts: prng.chance(0.6),
    slowMembers: prng.chance(0.5) ? prng.between(1, 3) : 0,
    catchUp: prng.chance(0.5) ? 'all' : 'shell',
  };
}

export class SwimCluster {
  readonly sim: SwimSim;
  readonly network: FaultyNetwork;
  readonly profile: SwimFaultProfile;
  readonly timings: SwimTimings;
  private readonly prng: Prng;
  /** Per observer process (core): the highest incarnation it has shown for each member. */
  private readonly seenIncarnations = new WeakMap<Swim, Map<string, number>>();
  private readonly joining = new Set<SimMember>();
  private faultsOn = false;
  private counts = { crashes: 0, restarts: 0, partitions: 0, blocks: 0, memberFailed: 0 };
  /** Who marked the crashed member of the detection phase dead, and when. */
  private detection: { victim: string; at: number; seenBy: Map<string, number> } | undefined;

  constructor(private readonly seed: number) {
    this.prng = new Prng(seed);
    this.profile = drawProfile(this.prng.fork());
    this.timings = this.profile.timing === 'lan' ? lanDefaults() : localDefaults();
    this.network = new FaultyNetwork(this.prng.fork(), this.profile);
    this.sim = new SwimSim({
      rng: this.prng.fork(),
      timings: this.timings,
      faults: this.network,
      maxCatchUpTicks: this.profile.catchUp === 'all' ? Infinity : MAX_CATCH_UP_TICKS,
      onEvent: (observer, event) => this.onEvent(observer, event),
      onStreamOutcome: (member, outcome) => {
        if (!outcome.join || !this.joining.has(member)) return;
        if (outcome.error === undefined) this.joining.delete(member);
        else this.sim.schedule(this.sim.now + RETRY_JOIN_MS, () => this.joinSomeone(member));
      },
    });
    for (let i = 1; i <= this.profile.members; i++) this.sim.add(`node-${String(i).padStart(2, '0')}`);
  }

  run(): SwimSimReport {
    const p = this.profile;
    const n = p.members;
    this.scheduleInvariantScans();

    // 1. join
    const [seedMember, ...others] = this.sim.members;
    for (const member of others) {
      this.joining.add(member);
      this.sim.schedule(this.prng.int(JOIN_WINDOW_MS), () => this.sim.join(member, [seedMember]));
    }
    const joinBound = joinConvergenceBoundMs(this.timings, n, JOIN_WINDOW_MS);
    const joinConvergedMs = this.within('join convergence', joinBound, () => this.everyoneSeesEveryoneAlive());

    // 2. faults
    this.faultsOn = true;
    const faultsEnd = this.sim.now + p.faultPhaseMs;
    this.scheduleNemesis(faultsEnd);
    const candidates = this.sim.members.slice();
    for (let i = 0; i < p.slowMembers; i++) this.scheduleSlowness(candidates.splice(this.prng.int(candidates.length), 1)[0], faultsEnd);
    this.sim.runFor(p.faultPhaseMs);
    if (p.partitions) {
      // End on a partition long enough for each side to declare the other dead, so that healing
      // always exercises the reconnector and refutation, not only the easy case.
      this.partition();
      this.sim.runFor(this.prng.between(1, 2) * suspicionMs(this.timings, n).maxMs);
    }

    // 3. heal
    this.faultsOn = false;
    this.network.heal();
    this.sim.mix('heal');
    const healBound = healBoundMs(this.timings, n, this.running().length, SWIM_DEFAULTS.reconnectIntervalMs);
    const healConvergedMs = this.within('convergence after healing', healBound, () => this.everyoneSeesEveryoneAlive());

    // 4. detection
    const running = this.running();
    const unblocked = running.filter((member) => !this.sim.isBlocked(member));
    const victim = this.prng.pick(unblocked.length > 0 ? unblocked : running);
    this.detection = { victim: victim.name, at: this.sim.now, seenBy: new Map() };
    const healthAtCrash = Math.max(...running.map((member) => member.core.healthScore()));
    this.sim.crash(victim);
    const detectBound = detectionBoundMs(this.timings, running.length);
    this.within('detection of a crashed member', detectBound, () => this.running().every((m) => this.detection!.seenBy.has(m.name) || isGone(m.core, victim.name)));
    const times = [...this.detection.seenBy.values()].map((at) => at - this.detection!.at);

    return {
      seed: this.seed,
      profile: p,
      joinConvergedMs,
      joinBoundMs: joinBound,
      healConvergedMs,
      healBoundMs: healBound,
      detectionFirstMs: Math.min(...times),
      detectionAllMs: Math.max(...times),
      detectionBoundMs: detectBound,
      healthAtCrash,
      crashes: this.counts.crashes,
      restarts: this.counts.restarts,
      partitions: this.counts.partitions,
      blocks: this.counts.blocks,
      memberFailedEvents: this.counts.memberFailed,
      virtualMs: this.sim.now,
      traceHash: this.sim.traceHash,
    };
  }

  // ---- checkers -----------------------------------------------------------------------------

  /** Runs until `done` holds; fails the seed when it does not within `boundMs`. Returns the time it took. */
  private within(check: string, boundMs: number, done: () => boolean): number {
    const from = this.sim.now;
    const at = this.sim.runUntil(done, boundMs, CHECK_EVERY_MS);
    if (at === undefined) throw new SwimSimulationFailure(this.seed, check, `not within ${boundMs} ms (profile ${JSON.stringify(this.profile)})\n    ${this.detection === undefined ? this.describeViews() : this.describeDetection()}`);
    return at - from;
  }

  private everyoneSeesEveryoneAlive(): boolean {
    const running = this.running();
    for (const observer of running) {
      for (const member of running) {
        const state = observer.core.member(member.name)?.state;
        // Serf shows a suspect member as alive: it has not failed.
        if (state !== 'alive' && state !== 'suspect') return false;
      }
    }
    return true;
  }

  private onEvent(observer: SimMember, event: SwimEvent): void {
    if (event.type === 'log' || event.type === 'ping-complete' || event.type === 'user-event') return;
    const member = event.member;
    this.checkIncarnation(observer, member.name, member.incarnation);
    if (event.type === 'member-failed') {
      this.counts.memberFailed++;
      if (member.name === observer.name) throw new SwimSimulationFailure(this.seed, 'never dead to itself', `${observer.name} marked itself failed at ${this.sim.now} ms`);
      if (this.detection !== undefined && member.name === this.detection.victim && !this.detection.seenBy.has(observer.name)) this.detection.seenBy.set(observer.name, this.sim.now);
    }
  }

  private checkIncarnation(observer: SimMember, name: string, incarnation: number): void {
    let seen = this.seenIncarnations.get(observer.core);
    if (seen === undefined) {
      seen = new Map();
      this.seenIncarnations.set(observer.core, seen);
    }
    const before = seen.get(name) ?? 0;
    if (incarnation < before) throw new SwimSimulationFailure(this.seed, 'incarnation monotonic', `${observer.name} saw ${name} go from incarnation ${before} back to ${incarnation} at ${this.sim.now} ms`);
    seen.set(name, incarnation);
  }

  /** Every view of every running member, on a timer: incarnations and self-state between events too. */
  private scheduleInvariantScans(): void {
    const scan = () => {
      for (const observer of this.running()) {
        const self = observer.core.localMember();
        if (self.state !== 'alive') throw new SwimSimulationFailure(this.seed, 'never dead to itself', `${observer.name} sees itself ${self.state} at ${this.sim.now} ms`);
        for (const member of observer.core.members()) this.checkIncarnation(observer, member.name, member.incarnation);
      }
      this.sim.schedule(this.sim.now + INVARIANT_SCAN_EVERY_MS, scan);
    };
    this.sim.schedule(this.sim.now + INVARIANT_SCAN_EVERY_MS, scan);
  }

  // ---- the nemesis --------------------------------------------------------------------------

  private scheduleNemesis(until: number): void {
    const act = () => {
      if (!this.faultsOn || this.sim.now >= until) return;
      this.nemesis();
      this.sim.schedule(this.sim.now + this.prng.between(this.profile.nemesisEveryMs / 2, this.profile.nemesisEveryMs * 2), act);
    };
    this.sim.schedule(this.sim.now + this.prng.between(0, this.profile.nemesisEveryMs), act);
  }

  private nemesis(): void {
    const p = this.profile;
    const choices: (() => void)[] = [() => this.heal()];
    if (p.partitions) choices.push(() => this.partition());
    if (p.crashes && this.running().length > 3) {
      choices.push(() => {
        const victim = this.prng.pick(this.running());
        this.sim.crash(victim);
        this.joining.delete(victim);
        this.counts.crashes++;
      });
    }
    const down = this.sim.members.filter((member) => !member.up);
    if (p.restarts && down.length > 0) {
      choices.push(() => {
        const member = this.prng.pick(down);
        this.sim.restart(member);
        this.counts.restarts++;
        this.joining.add(member);
        this.joinSomeone(member);
      });
    }
    this.prng.pick(choices)();
  }

  private partition(): void {
    const addresses = this.sim.members.map((member) => member.address);
    this.network.heal();
    const shape = this.prng.int(3);
    if (shape === 0) {
      // One member alone.
      const alone = this.prng.pick(addresses);
      this.network.split([alone], addresses.filter((a) => a !== alone));
    } else if (shape === 1) {
      // Two halves, of random sizes.
      const side = new Set(addresses.filter(() => this.prng.chance(0.5)));
      this.network.split([...side], addresses.filter((a) => !side.has(a)));
    } else {
      // One-way: some members stop hearing one member, which still hears them.
      const mute = this.prng.pick(addresses);
      for (const other of addresses) if (other !== mute && this.prng.chance(0.5)) this.network.cutOneWay(mute, other);
    }
    this.counts.partitions++;
    this.sim.mix(`partition ${this.network.describe()}`);
  }

  private heal(): void {
    this.network.heal();
    this.sim.mix('heal');
  }

  /** A slow member: blocked for 1-10 s, then running for 1-20 s, until `until`. */
  private scheduleSlowness(member: SimMember, until: number): void {
    const prng = this.prng.fork();
    const next = () => {
      if (!this.faultsOn || this.sim.now >= until) return;
      const blockMs = prng.between(1_000, 10_000);
      this.sim.block(member, blockMs);
      this.counts.blocks++;
      this.sim.schedule(this.sim.now + blockMs + prng.between(1_000, 20_000), next);
    };
    this.sim.schedule(this.sim.now + prng.between(0, 10_000), next);
  }

  private joinSomeone(member: SimMember): void {
    if (!member.up || !this.joining.has(member)) return;
    const others = this.running().filter((other) => other !== member);
    if (others.length === 0) return;
    this.sim.join(member, [this.prng.pick(others)]);
  }

  private running(): SimMember[] {
    return this.sim.members.filter((member) => member.up);
  }

  private describeViews(): string {
    const running = this.running();
    return running
      .map((observer) => {
        const wrong = running.map((m) => [m.name, observer.core.member(m.name)?.state ?? 'unknown'] as const).filter(([, state]) => state !== 'alive' && state !== 'suspect');
        return `${observer.name}${this.sim.isBlocked(observer) ? ' (blocked)' : ''}: ${wrong.length === 0 ? 'sees all alive' : wrong.map(([name, state]) => `${name}=${state}`).join(' ')}`;
      })
      .join('\n    ');
  }

  private describeDetection(): string {
    if (this.detection === undefined) return '';
    const { victim, at } = this.detection;
    return this.running()
      .map((observer) => `${observer.name} (health ${observer.core.healthScore()}): ${victim}=${observer.core.member(victim)?.state ?? 'unknown'}${this.detection!.seenBy.has(observer.name) ? ` after ${this.detection!.seenBy.get(observer.name)! - at} ms` : ''}`)
      .join('\n    ');
  }
}

function isGone(core: Swim, name: string): boolean {
  const state = core.member(name)?.state;
  return state === 'dead' || state === 'left';
}
