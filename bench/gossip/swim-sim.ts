/**
 * A network of real SWIM cores (services/lib/swim) in virtual time: the engine under the seeded
 * gossip simulator (test/sim/swim) and the scale benchmark (bench/gossip/sim-scale.ts). It plays
 * the shell's part (services/gossip/pool.ts) for every member: ticks the core every tickMs, carries
 * its datagrams and push/pull streams with the delays and losses a `Faults` model draws, and
 * reports the events. Nothing here decides what goes wrong; that is the caller's (the simulator's
 * nemesis, or nothing for the benchmark).
 *
 *   crashed member   neither ticks nor receives; datagrams to it are lost, streams to it are refused
 *   blocked member   (a "slow" one, Lifeguard's CPU-exhaustion model) does not tick and does not
 *                    process what arrives; when it unblocks it first catches up on its missed ticks,
 *                    then processes the queued datagrams and streams in a burst, in arrival order
 *                    (Node runs an overdue interval timer before it polls the sockets; Go's
 *                    memberlist fires its overdue timers before the packet backlog is read). How
 *                    many missed ticks it catches up is `maxCatchUpTicks`: all of them (the
 *                    paper's model, and services/gossip/pool.ts's for stalls under a minute:
 *                    time passes for a starved process, its timers expire) or at most a number
 *   stream           request and answer each take a one-way delay; across a cut link (either
 *                    direction: TCP needs both) the dial hangs until streamTimeoutMs; to a crashed
 *                    member it is refused after one round trip. A TCP ping goes the same way,
 *                    with the probe's own timeout; a blocked member answers it when it unblocks
 *
 * Time is whole milliseconds; the event queue is a timing wheel of one bucket per millisecond
 * (events at the same millisecond run in the order they were scheduled), which keeps the cost per
 * event constant with 10^5 datagrams in flight. bench/ does not import from test/, so randomness
 * comes in as an `Rng` (test/sim/prng.ts's Prng fits it).
 */
import { SwimTimings, swimConfig } from '../../services/lib/swim/config';
import { Message, PushPull } from '../../services/lib/swim/messages';
import { Swim } from '../../services/lib/swim/swim';
import { assertQuietTick } from '../../services/lib/swim/testing/quiet-tick';
import { OutgoingTcpPing, StreamOutcome, SwimEvent, TcpPingOutcome } from '../../services/lib/swim/types';
import { messageSize, pushPullFrameSize, STREAM_FRAME_HEADER_BYTES } from '../../services/lib/swim/wire-codec';

/** A seeded source of randomness: [0, 1) draws, and independent children. */
export interface Rng {
  next(): number;
  fork(): Rng;
}

/** What the network does to traffic between two addresses. Every draw comes from the caller's Rng. */
export interface Faults {
  /** True while nothing gets from `from` to `to` (a partition, one-way or both ways). */
  cut(from: string, to: string): boolean;
  /** The delay in ms of each copy of one datagram: [] when it is lost, two entries when duplicated. */
  datagramDelays(from: string, to: string): readonly number[];
  /** The one-way delay in ms of a stream's request or answer. */
  streamDelayMs(from: string, to: string): number;
}

/** A healthy LAN: no loss, no duplication, 1 to `maxDelayMs` one way. */
export function healthyNetwork(rng: Rng, maxDelayMs = 2): Faults {
  const delay = () => 1 + Math.floor(rng.next() * maxDelayMs);
  return { cut: () => false, datagramDelays: () => [delay()], streamDelayMs: delay };
}

/** The shell's cap on ticks run at once after a stall (services/gossip/pool.ts MAX_CATCH_UP_TICKS: 60 s). */
export const MAX_CATCH_UP_TICKS = 6_000;

export interface SimMember {
  readonly name: string;
  readonly address: string;
  readonly index: number;
  /** Replaced on restart: a new process with a fresh core. */
  core: Swim;
  up: boolean;
  /** While now < blockedUntilMs the member is blocked (slow); 0 when it is not. */
  blockedUntilMs: number;
  missedTicks: number;
  /** What arrived while blocked, in arrival order. */
  inbox: ((core: Swim) => void)[];
  restarts: number;
  /** Bytes this member put on the wire while byte counting was on (datagrams; streams it opened or answered). */
  datagramBytes: number;
  streamBytes: number;
}

export interface SwimSimOptions {
  readonly rng: Rng;
  readonly timings: SwimTimings;
  readonly lifeguard?: boolean;
  readonly tickMs?: number;
  readonly faults?: Faults;
  readonly tags?: Readonly<Record<string, string>>;
  /** Ticks a blocked member runs when it unblocks, at most: Infinity (the default) or the shell's MAX_CATCH_UP_TICKS. */
  readonly maxCatchUpTicks?: number;
  /** Every event of every member, as it is drained from the core. */
  readonly onEvent?: (observer: SimMember, event: SwimEvent) => void;
  /** The outcome of every push/pull or join a member opened. */
  readonly onStreamOutcome?: (member: SimMember, outcome: StreamOutcome) => void;
}

export class SwimSim {
  readonly members: SimMember[] = [];
  private readonly byAddress = new Map<string, SimMember>();
  private readonly byName = new Map<string, SimMember>();
  private readonly buckets = new Map<number, (() => void)[]>();
  private nowMs = 0;
  private readonly tickMs: number;
  private readonly faults: Faults;
  /** Member events and faults, FNV-1a: two runs of one seed give one hash. */
  private trace = 0x811c9dc5;
  /** Datagram sizes are the wire codec's; messages are shared between cores, so each is sized once. */
  private readonly sizes = new WeakMap<Message, number>();
  private readonly sizeOf = (message: Message): number => {
    let size = this.sizes.get(message);
    if (size === undefined) {
      size = messageSize(message);
      this.sizes.set(message, size);
    }
    return size;
  };
  countBytes = false;
  datagramsSent = 0;
  streamsOpened = 0;

  constructor(private readonly options: SwimSimOptions) {
    this.tickMs = options.tickMs ?? 10;
    this.faults = options.faults ?? healthyNetwork(options.rng.fork());
    this.scheduleTick();
  }

  get now(): number {
    return this.nowMs;
  }

  get traceHash(): string {
    return (this.trace >>> 0).toString(16).padStart(8, '0');
  }

  // ---- members ------------------------------------------------------------------------------

  /** A new member named `name` at its own address; it knows only itself until it joins. */
  add(name: string): SimMember {
    const index = this.members.length;
    const address = `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}:8301`;
    const member: SimMember = { name, address, index, core: this.newCore(name, address), up: true, blockedUntilMs: 0, missedTicks: 0, inbox: [], restarts: 0, datagramBytes: 0, streamBytes: 0 };
    this.members.push(member);
    this.byAddress.set(address, member);
    this.byName.set(name, member);
    this.flush(member);
    return member;
  }

  member(name: string): SimMember {
    const member = this.byName.get(name);
    if (member === undefined) throw new RangeError(`no simulated member ${name}`);
    return member;
  }

  /** A push/pull join from `member` to each of `seeds`. */
  join(member: SimMember, seeds: readonly SimMember[]): void {
    member.core.join(seeds.map((seed) => seed.address));
    this.flush(member);
  }

  /** The process dies: no ticks, nothing received, what it had queued is gone. */
  crash(member: SimMember): void {
    member.up = false;
    member.blockedUntilMs = 0;
    member.missedTicks = 0;
    member.inbox = [];
    this.mix(`crash ${member.name}`);
  }

  /** A new process at the same name and address, with a fresh core (incarnation 1, knows only itself). */
  restart(member: SimMember): void {
    member.restarts++;
    member.core = this.newCore(member.name, member.address);
    member.up = true;
    member.blockedUntilMs = 0;
    member.missedTicks = 0;
    member.inbox = [];
    this.mix(`restart ${member.name}`);
    this.flush(member);
  }

  /** The member stops ticking and processing for `durationMs`, then catches up in a burst. */
  block(member: SimMember, durationMs: number): void {
    if (!member.up) return;
    const until = this.nowMs + Math.max(1, Math.round(durationMs));
    if (until <= member.blockedUntilMs) return;
    member.blockedUntilMs = until;
    this.mix(`block ${member.name} ${until}`);
    const core = member.core;
    this.schedule(until, () => {
      if (member.core !== core || !member.up || member.blockedUntilMs !== until) return;
      this.unblock(member);
    });
  }

  isBlocked(member: SimMember): boolean {
    return member.blockedUntilMs > this.nowMs;
  }

  private unblock(member: SimMember): void {
    member.blockedUntilMs = 0;
    const catchUp = Math.min(member.missedTicks, this.options.maxCatchUpTicks ?? Infinity);
    member.missedTicks = 0;
    for (let i = 0; i < catchUp; i++) member.core.tick();
    this.flush(member);
    const inbox = member.inbox;
    member.inbox = [];
    for (const handle of inbox) {
      if (!member.up) return;
      handle(member.core);
      this.flush(member);
    }
  }

  private newCore(name: string, address: string): Swim {
    const rng = this.options.rng.fork();
    return new Swim(
      swimConfig({
        ...this.options.timings,
        name,
        address,
        tags: this.options.tags ?? {},
        tickMs: this.tickMs,
        lifeguard: this.options.lifeguard ?? true,
        random: () => rng.next(),
        messageSize: this.sizeOf,
      }),
    );
  }

  // ---- the event loop -----------------------------------------------------------------------

  /** Runs `run` at virtual time `atMs` (rounded to the millisecond, never in the past). */
  schedule(atMs: number, run: () => void): void {
    const at = Math.max(this.nowMs, Math.round(atMs));
    let bucket = this.buckets.get(at);
    if (bucket === undefined) {
      bucket = [];
      this.buckets.set(at, bucket);
    }
    bucket.push(run);
  }

  /** Runs virtual time forward by `durationMs`. */
  runFor(durationMs: number): void {
    this.runUntil(() => false, durationMs);
  }

  /**
   * Runs until `done()` holds (checked every `checkEveryMs`) or `limitMs` have passed. Returns
   * the virtual time at which it held, or undefined when it did not within the limit.
   */
  runUntil(done: () => boolean, limitMs: number, checkEveryMs = this.tickMs): number | undefined {
    const end = this.nowMs + limitMs;
    let nextCheck = this.nowMs;
    for (;;) {
      const bucket = this.buckets.get(this.nowMs);
      if (bucket !== undefined) {
        // Events scheduled for this very millisecond while it runs join the same bucket.
        for (let i = 0; i < bucket.length; i++) bucket[i]();
        this.buckets.delete(this.nowMs);
      }
      if (this.nowMs >= nextCheck) {
        if (done()) return this.nowMs;
        nextCheck = this.nowMs + checkEveryMs;
      }
      if (this.nowMs >= end) return undefined;
      this.nowMs++;
    }
  }

  private scheduleTick(): void {
    this.schedule(this.nowMs + this.tickMs, () => {
      for (const member of this.members) {
        if (!member.up) continue;
        if (member.blockedUntilMs > this.nowMs) {
          member.missedTicks++;
          continue;
        }
        // The real shell (services/lib/swim-pool.ts) sleeps through the ticks before msUntilDue.
        const quiet = member.core.msUntilDue() > this.tickMs;
        member.core.tick();
        this.flush(member, quiet);
      }
      this.scheduleTick();
    });
  }

  /** Hands `handle` to the member now, or queues it while the member is blocked; drops it when the member is down. */
  private arrive(member: SimMember, handle: (core: Swim) => void): void {
    if (!member.up) return;
    if (member.blockedUntilMs > this.nowMs) {
      member.inbox.push(handle);
      return;
    }
    handle(member.core);
    this.flush(member);
  }

  // ---- the shell's part ---------------------------------------------------------------------

  /**
   * Drains the core's ready(): datagrams and streams go on the network, events to the observer.
   * `quiet`: the core said nothing was due in the tick just run, so there must be nothing.
   */
  private flush(member: SimMember, quiet = false): void {
    const ready = member.core.ready();
    if (quiet) assertQuietTick(member.name, member.core.now(), ready);
    for (const packet of ready.packets) this.sendDatagram(member, packet.to, packet.messages);
    for (const stream of ready.streams) this.openStream(member, stream.id, stream.to, stream.state);
    for (const ping of ready.tcpPings) this.tcpPing(member, ping);
    if (ready.events.length > 0) {
      for (const event of ready.events) {
        if (event.type !== 'log' && event.type !== 'ping-complete' && event.type !== 'user-event') this.mix(`${member.name} ${event.type} ${event.member.name} ${event.member.incarnation}`);
        this.options.onEvent?.(member, event);
      }
    }
  }

  private sendDatagram(from: SimMember, to: string, messages: readonly Message[]): void {
    this.datagramsSent++;
    if (this.countBytes) {
      let bytes = 0;
      for (const message of messages) bytes += this.sizeOf(message);
      from.datagramBytes += bytes;
    }
    const target = this.byAddress.get(to);
    if (target === undefined || this.faults.cut(from.address, to)) return;
    for (const delay of this.faults.datagramDelays(from.address, to)) {
      this.schedule(this.nowMs + delay, () => {
        if (this.faults.cut(from.address, to)) return;
        this.arrive(target, (core) => core.receivePacket(from.address, messages));
      });
    }
  }

  private openStream(from: SimMember, id: number, to: string, state: PushPull): void {
    this.streamsOpened++;
    if (this.countBytes) from.streamBytes += STREAM_FRAME_HEADER_BYTES + pushPullFrameSize(state);
    const settle = this.settleOnce(from, (core, outcome: PushPull | { readonly error: string }) => {
      const result = core.streamCompleted(id, outcome);
      this.options.onStreamOutcome?.(from, result);
    });
    this.schedule(this.nowMs + this.options.timings.streamTimeoutMs, () => settle({ error: `read tcp ${from.address}->${to}: i/o timeout` }));
    this.dial(
      from,
      to,
      (core, target) => {
        const { answer } = core.receiveStream(from.address, state);
        if (this.countBytes) target.streamBytes += STREAM_FRAME_HEADER_BYTES + pushPullFrameSize(answer);
        return answer;
      },
      settle,
      () => settle({ error: `dial tcp ${to}: connect: connection refused` }),
    );
  }

  /** memberlist's TCP fallback ping: acked by a reachable member, refused by a crashed one, unanswered otherwise. */
  private tcpPing(from: SimMember, { to, ping, timeoutMs }: OutgoingTcpPing): void {
    if (this.countBytes) from.streamBytes += STREAM_FRAME_HEADER_BYTES + messageSize(ping);
    const settle = this.settleOnce(from, (core, outcome: TcpPingOutcome) => core.tcpPingCompleted(ping.seqNo, outcome));
    this.schedule(this.nowMs + timeoutMs, () => settle('no-answer'));
    this.dial(
      from,
      to,
      (core, target) => {
        const ack = core.answerTcpPing(ping);
        if (this.countBytes && ack !== undefined) target.streamBytes += STREAM_FRAME_HEADER_BYTES + messageSize(ack);
        return ack === undefined ? 'no-answer' : 'ack';
      },
      settle,
      () => settle('refused'),
    );
  }

  /** Hands the first outcome of an exchange to the core that started it (a restarted member's new core hears nothing). */
  private settleOnce<T>(from: SimMember, complete: (core: Swim, outcome: T) => void): (outcome: T) => void {
    const opener = from.core;
    let settled = false;
    return (outcome) =>
      this.arrive(from, (core) => {
        if (settled || core !== opener) return;
        settled = true;
        complete(core, outcome);
      });
  }

  /**
   * A TCP request/answer from `from` to `to`: the target `serve`s the request when it arrives and
   * its answer comes back to `answered`; to a crashed member `refused` runs after a round trip;
   * across a cut link nothing happens (the caller's timeout settles it).
   */
  private dial<T>(from: SimMember, to: string, serve: (core: Swim, target: SimMember) => T, answered: (answer: T) => void, refused: () => void): void {
    const target = this.byAddress.get(to);
    const cut = () => this.faults.cut(from.address, to) || this.faults.cut(to, from.address);
    if (cut()) return;
    const there = this.faults.streamDelayMs(from.address, to);
    if (target === undefined || !target.up) {
      this.schedule(this.nowMs + 2 * there, refused);
      return;
    }
    this.schedule(this.nowMs + there, () => {
      if (cut()) return;
      if (!target.up) {
        this.schedule(this.nowMs + there, refused);
        return;
      }
      this.arrive(target, (core) => {
        const answer = serve(core, target);
        this.schedule(this.nowMs + this.faults.streamDelayMs(to, from.address), () => {
          if (!cut()) answered(answer);
        });
      });
    });
  }

  /** Mixes `text` and the time into the trace hash (FNV-1a). */
  mix(text: string): void {
    let h = this.trace;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    this.trace = Math.imul(h ^ this.nowMs, 0x01000193);
  }
}
