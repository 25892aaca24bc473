/**
 * The SWIM core's configuration (memberlist `config.go`, Serf `serf/config.go`). Durations are in
 * milliseconds of the core's own clock, which advances `tickMs` per `tick()`; the shell ticks on
 * a timer, the simulator whenever it likes. Three timing profiles, as memberlist has them
 * (reference/performance.md §1.3): `lanDefaults()`, `wanDefaults()`, `localDefaults()`.
 */
import { Message } from './messages';
import { MemberInfo } from './types';

export interface SwimTimings {
  /** Time between probes of one member each (the protocol period). LAN 1 s. */
  readonly probeIntervalMs: number;
  /** How long to wait for a direct ack before probing indirectly. LAN 500 ms. */
  readonly probeTimeoutMs: number;
  /** Members asked to probe indirectly. LAN 3. */
  readonly indirectChecks: number;
  /**
   * Suspicion timeout multiplier: min = suspicionMult × max(1, log10 N) × probeInterval
   * (memberlist `suspicionTimeout`); confirmations expected k = suspicionMult − 2. LAN 4.
   */
  readonly suspicionMult: number;
  /** max suspicion timeout = this × min; the timeout starts at max and falls toward min (Lifeguard). LAN 6. */
  readonly suspicionMaxTimeoutMult: number;
  /** Time between gossip rounds. LAN 200 ms. */
  readonly gossipIntervalMs: number;
  /** Members gossiped to per round. LAN 3. */
  readonly gossipNodes: number;
  /**
   * A new broadcast leaves in a gossip round at once (at most one such round per tick), not at the
   * next periodic round: news crosses a hop in a round trip, not in up to gossipIntervalMs. Each
   * broadcast is still sent retransmitMult × ceil(log10(N + 1)) times, so the bytes are the same.
   * Beyond memberlist, which waits for its ticker (false gives memberlist's timing). true in every
   * profile.
   */
  readonly eagerGossip: boolean;
  /**
   * memberlist's TCP fallback (on unless DisableTcpPings): a member that missed its direct ping
   * is also pinged over TCP, beside the indirect pings; an ack that way spares it the suspicion
   * (its UDP is blocked, it is not down). true in every profile.
   */
  readonly tcpPings: boolean;
  /**
   * Beyond memberlist: a TCP ping refused (the member's host answered, and nothing listens at the
   * member's address: its process is gone) ends the probe at once, and the member is suspected
   * then instead of at the end of the protocol period (up to half of it sooner with LAN timings).
   * A stopped or overloaded process still accepts connections, and a lost host refuses none, so
   * neither is suspected any sooner. true in every profile; false gives memberlist's timing.
   */
  readonly suspectOnRefusal: boolean;
  /** A broadcast is sent retransmitMult × ceil(log10(N + 1)) times. LAN 4. */
  readonly retransmitMult: number;
  /** Time between full state syncs with one random member; scaled up past 32 members. LAN 30 s. */
  readonly pushPullIntervalMs: number;
  /** A dead member is still gossiped to for this long, so it can learn it was declared dead. LAN 30 s. */
  readonly gossipToTheDeadMs: number;
  /** Lifeguard's local health multiplier ceiling: probe interval and timeouts scale up to this. 8. */
  readonly awarenessMaxMultiplier: number;
  /** How long a stream exchange (push/pull, join) may take. LAN 10 s. */
  readonly streamTimeoutMs: number;
}

export interface SwimConfig extends SwimTimings {
  /** This member's node name, unique in the pool. */
  readonly name: string;
  /** This member's "ip:port" in this pool. */
  readonly address: string;
  /** Member tags (Serf tags: role, dc, segment, id, build, ports). */
  readonly tags: Readonly<Record<string, string>>;
  /** Milliseconds per tick. 10 by default. */
  readonly tickMs: number;
  /**
   * Lifeguard on (local health multiplier, nacks, dynamic suspicion timeout, buddy system), as
   * memberlist ships it. Off gives plain SWIM with a fixed suspicion timeout, for comparison.
   */
  readonly lifeguard: boolean;
  /** Bytes of one datagram, piggybacked broadcasts included. 1,400 (memberlist UDPBufferSize). */
  readonly packetBudgetBytes: number;
  /** Broadcasts queued before the oldest are dropped (Serf MaxQueueDepth). 4,096. */
  readonly maxQueuedBroadcasts: number;
  /** Every this long, try to reconnect to one random failed member (Serf ReconnectInterval). 30 s. */
  readonly reconnectIntervalMs: number;
  /** A failed member is reaped after this long (Serf ReconnectTimeout). 24 h. */
  readonly reconnectTimeoutMs: number;
  /** A left member is reaped after this long (Serf TombstoneTimeout). 24 h. */
  readonly tombstoneTimeoutMs: number;
  /** User events remembered for de-duplication (Serf EventBuffer). 512. */
  readonly eventBuffer: number;
  /** Largest user event, name and payload together (Serf UserEventSizeLimit). 512 bytes. */
  readonly userEventSizeLimit: number;
  /** Members held in one pool; joins beyond it are refused. 100,000. */
  readonly maxMembers: number;
  /** Randomness (probe order, gossip targets): seeded in simulation. Returns [0, 1). */
  readonly random: () => number;
  /** The encoded size of one message, so the core can fill a datagram without overflowing it. */
  readonly messageSize: (message: Message) => number;
  /** The ack payload to send (the pool's Vivaldi coordinate); empty by default. */
  readonly ackPayload: () => Uint8Array;
  /**
   * Serf's merge delegate: checks members arriving in a join, a push/pull or an alive message and
   * returns why they are refused (Consul's wrong-segment, wrong-datacenter, conflicting-ID texts).
   */
  readonly validateMembers: (members: readonly MemberInfo[]) => string | undefined;
}

/** memberlist DefaultLANConfig with Serf's reaping defaults. */
export function lanDefaults(): SwimTimings {
  return {
    probeIntervalMs: 1_000,
    probeTimeoutMs: 500,
    indirectChecks: 3,
    suspicionMult: 4,
    suspicionMaxTimeoutMult: 6,
    gossipIntervalMs: 200,
    gossipNodes: 3,
    eagerGossip: true,
    tcpPings: true,
    suspectOnRefusal: true,
    retransmitMult: 4,
    pushPullIntervalMs: 30_000,
    gossipToTheDeadMs: 30_000,
    awarenessMaxMultiplier: 8,
    streamTimeoutMs: 10_000,
  };
}

/** memberlist DefaultWANConfig: a delta from LAN. */
export function wanDefaults(): SwimTimings {
  return {
    ...lanDefaults(),
    probeIntervalMs: 5_000,
    probeTimeoutMs: 3_000,
    suspicionMult: 6,
    gossipIntervalMs: 500,
    gossipNodes: 4,
    pushPullIntervalMs: 60_000,
    gossipToTheDeadMs: 60_000,
    streamTimeoutMs: 30_000,
  };
}

/**
 * memberlist DefaultLocalConfig, except RetransmitMult stays 4: with 2, Serf `local` lost 7 of
 * 15 events at N = 20 (reference/performance.md §3a; "never trade RetransmitMult for latency").
 */
export function localDefaults(): SwimTimings {
  return {
    ...lanDefaults(),
    probeTimeoutMs: 200,
    indirectChecks: 1,
    suspicionMult: 3,
    gossipIntervalMs: 100,
    pushPullIntervalMs: 15_000,
    gossipToTheDeadMs: 15_000,
    streamTimeoutMs: 1_000,
  };
}

export const SWIM_DEFAULTS = {
  tickMs: 10,
  lifeguard: true,
  packetBudgetBytes: 1_400,
  maxQueuedBroadcasts: 4_096,
  reconnectIntervalMs: 30_000,
  reconnectTimeoutMs: 24 * 3_600_000,
  tombstoneTimeoutMs: 24 * 3_600_000,
  eventBuffer: 512,
  userEventSizeLimit: 512,
  maxMembers: 100_000,
  ackPayload: () => new Uint8Array(0),
  validateMembers: () => undefined,
} as const;

export type SwimConfigInput = Pick<SwimConfig, 'name' | 'address' | 'random' | 'messageSize'> & Partial<SwimConfig>;

export function swimConfig(fields: SwimConfigInput): SwimConfig {
  const config: SwimConfig = { ...lanDefaults(), tags: {}, ...SWIM_DEFAULTS, ...fields };
  validate(config);
  return config;
}

function validate(c: SwimConfig): void {
  const problems: string[] = [];
  if (c.name === '') problems.push('name must not be empty');
  if (!(c.tickMs >= 1)) problems.push(`tickMs must be >= 1, got ${c.tickMs}`);
  if (!(c.probeTimeoutMs > 0 && c.probeTimeoutMs < c.probeIntervalMs)) problems.push(`probeTimeoutMs (${c.probeTimeoutMs}) must be in (0, probeIntervalMs = ${c.probeIntervalMs})`);
  if (!(c.suspicionMult >= 1)) problems.push(`suspicionMult must be >= 1, got ${c.suspicionMult}`);
  if (!(c.suspicionMaxTimeoutMult >= 1)) problems.push(`suspicionMaxTimeoutMult must be >= 1, got ${c.suspicionMaxTimeoutMult}`);
  if (!(c.awarenessMaxMultiplier >= 1)) problems.push(`awarenessMaxMultiplier must be >= 1, got ${c.awarenessMaxMultiplier}`);
  for (const key of ['probeIntervalMs', 'gossipIntervalMs', 'pushPullIntervalMs', 'streamTimeoutMs', 'reconnectIntervalMs', 'packetBudgetBytes', 'maxQueuedBroadcasts', 'eventBuffer', 'maxMembers'] as const) {
    if (!(c[key] > 0)) problems.push(`${key} must be positive, got ${c[key]}`);
  }
  for (const key of ['indirectChecks', 'gossipNodes', 'retransmitMult'] as const) {
    if (!(Number.isSafeInteger(c[key]) && c[key] >= 0)) problems.push(`${key} must be a whole number >= 0, got ${c[key]}`);
  }
  if (problems.length > 0) throw new RangeError(`invalid SWIM config: ${problems.join('; ')}`);
}

/** memberlist's timing profiles by name, as the roles' `-gossip-profile` flag takes them. */
export const SWIM_PROFILES: Readonly<Record<string, () => SwimTimings>> = { lan: lanDefaults, local: localDefaults, wan: wanDefaults };
