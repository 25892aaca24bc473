/**
 * One SWIM pool as a running thing: the pure SWIM core (services/lib/swim) on a timer, a
 * transport that carries its packets and push/pull streams, and the pool's Vivaldi coordinate fed
 * by probe round trips. The gossip agent runs one per segment over UDP and TCP
 * (services/gossip/transport.ts); the federation router runs one per network area, and the WAN
 * pool, over gRPC on 8300 (services/federation-router/pool-transport.ts).
 *
 * The core's clock advances by the real time that passed (in whole ticks, up to
 * MAX_CATCH_UP_TICKS at once), so a process that was stopped for a while sees its timers expire
 * when it resumes, before it reads what queued up meanwhile, as memberlist's would: exactly the
 * slow-member case Lifeguard was made for.
 */
import { randomInt } from 'node:crypto';

import { field } from './config';
import { Logger } from './log';
import { SwimTimings, swimConfig } from './swim/config';
import { Message, PushPull } from './swim/messages';
import { Swim } from './swim/swim';
import { MemberInfo, OutgoingTcpPing, StreamOutcome, SwimEvent, TcpPingOutcome } from './swim/types';
import { decodePacket, decodeStreamFrame, encodePacket, encodeStreamFrame, messageSize } from './swim/wire-codec';
import { decodeCoordinate, encodeCoordinate } from './vivaldi/codec';
import { defaultVivaldiConfig } from './vivaldi/config';
import { Coordinate } from './vivaldi/coordinate';
import { VivaldiClient } from './vivaldi/client';

/** `-gossip-eager` (SwimTimings.eagerGossip), for every role that runs pools: the gossip agent and the router. */
export const GOSSIP_EAGER_FIELD = field.bool({
  key: 'gossip_eager',
  flag: 'gossip-eager',
  usage: "Pass new gossip on at once instead of at the next gossip round (same bytes, news in round trips); false keeps memberlist's timing.",
  default: true,
});

/** `-gossip-suspect-on-refusal` (SwimTimings.suspectOnRefusal), for the same roles. */
export const GOSSIP_SUSPECT_ON_REFUSAL_FIELD = field.bool({
  key: 'gossip_suspect_on_refusal',
  flag: 'gossip-suspect-on-refusal',
  usage: "Suspect a member at once when its TCP fallback ping is refused (its host is up, its process is gone) instead of at the end of the probe period; false keeps memberlist's timing.",
  default: true,
});

const TICK_MS = 10;
/** 60 s of ticks: a longer stall is not replayed tick by tick; the clock jumps instead. */
const MAX_CATCH_UP_TICKS = 6_000;
const TICK_NS = BigInt(TICK_MS * 1_000_000);
/** Probes whose send time we remember for the RTT; older ones are forgotten. */
const MAX_PINGS_IN_FLIGHT = 1_024;

/**
 * Why a transport's `exchange` failed. `refused` when the connection itself was refused: the
 * address's host answered, and nothing listens there (a TCP RST, ECONNREFUSED).
 */
export class ExchangeError extends Error {
  constructor(
    message: string,
    readonly refused = false,
  ) {
    super(message);
    this.name = 'ExchangeError';
  }
}

/** What a pool needs from the network: datagrams and request/answer streams, to and from ip:port. */
export interface PoolTransport {
  /** This member's ip:port in the pool. */
  readonly address: string;
  /** Frames that arrived and could not be read, counted by the transport and by the pool. */
  readonly dropped: { packets: number; streams: number };
  onPacket(handler: (from: string, bytes: Uint8Array) => void): void;
  /** The handler answers a request frame (a push/pull, a TCP ping) with a response frame. */
  onStream(handler: (from: string, request: Uint8Array) => Uint8Array): void;
  /** Best effort, as a datagram: a lost packet is what SWIM is built for. */
  sendPacket(to: string, bytes: Uint8Array): void;
  /** One request frame and its answer; rejects with an ExchangeError. */
  exchange(to: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export interface PoolOptions {
  /** How log lines name the pool: a segment ("" for the default one), an area or "wan". */
  readonly segment: string;
  readonly name: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly timings: SwimTimings;
  readonly validateMembers: (members: readonly MemberInfo[]) => string | undefined;
  readonly logger: Logger;
  /** Lifeguard on (the default); off only for experiments. */
  readonly lifeguard?: boolean;
}

export interface JoinResult {
  readonly address: string;
  readonly joined: boolean;
  /** memberlist's `Failed to join <addr>: <reason>`, empty when joined. */
  readonly error: string;
}

export type PoolListener = (event: SwimEvent) => void;

export class SwimPool {
  private readonly core: Swim;
  private readonly vivaldi: VivaldiClient;
  private readonly peerCoordinates = new Map<string, Coordinate>();
  private readonly pingsSent = new Map<number, bigint>();
  private readonly streamWaiters = new Map<number, (outcome: StreamOutcome) => void>();
  private readonly listeners = new Set<PoolListener>();
  /** Wakes the pool when the core next has something to do (`arm`); undefined while none is set. */
  private timer: NodeJS.Timeout | undefined;
  /** When `timer` fires, on process.hrtime. */
  private timerAtNs = 0n;
  private lastTickNs = process.hrtime.bigint();
  private stopped = false;

  constructor(
    private readonly transport: PoolTransport,
    readonly options: PoolOptions,
  ) {
    const random = () => randomInt(0, 2 ** 32) / 2 ** 32;
    this.vivaldi = new VivaldiClient(defaultVivaldiConfig(), random);
    this.core = new Swim(
      swimConfig({
        ...options.timings,
        name: options.name,
        address: transport.address,
        tags: options.tags,
        tickMs: TICK_MS,
        lifeguard: options.lifeguard ?? true,
        random,
        messageSize,
        ackPayload: () => encodeCoordinate(this.vivaldi.getCoordinate()),
        validateMembers: options.validateMembers,
      }),
    );
    transport.onPacket((from, bytes) => this.receivePacket(from, bytes));
    transport.onStream((from, request) => this.receiveStream(from, request));
    this.flush();
  }

  get segment(): string {
    return this.options.segment;
  }

  get address(): string {
    return this.transport.address;
  }

  get droppedFrames(): { packets: number; streams: number } {
    return { ...this.transport.dropped };
  }

  members(): MemberInfo[] {
    return this.core.members();
  }

  localMember(): MemberInfo {
    return this.core.localMember();
  }

  healthScore(): number {
    return this.core.healthScore();
  }

  /** This member's coordinate in this pool. */
  coordinate(): Coordinate {
    return this.vivaldi.getCoordinate();
  }

  /** The last coordinate each member sent with an ack to our probes. */
  coordinates(): ReadonlyMap<string, Coordinate> {
    return this.peerCoordinates;
  }

  subscribe(listener: PoolListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Joins through each address (a push/pull with each); per-address results, memberlist's texts. */
  async join(addresses: readonly string[]): Promise<JoinResult[]> {
    this.catchUp();
    const waits = this.core.join(addresses).map((id) => new Promise<StreamOutcome>((resolve) => this.streamWaiters.set(id, resolve)));
    this.flush();
    const outcomes = await Promise.all(waits);
    return outcomes.map((outcome) => ({ address: outcome.address, joined: outcome.error === undefined, error: outcome.error === undefined ? '' : `Failed to join ${outcome.address}: ${outcome.error}` }));
  }

  /** Leaves gracefully: the leave goes out at once, then a short drain (at most `timeoutMs`). */
  async leave(timeoutMs: number): Promise<void> {
    // The core tells every live member at once (flushed here); the wait lets the leave also ride a
    // few gossip rounds (Consul's leave_drain_time idea).
    this.catchUp();
    this.core.leave();
    this.flush();
    await new Promise((resolve) => setTimeout(resolve, Math.min(timeoutMs, 3 * this.options.timings.gossipIntervalMs)));
  }

  forceLeave(node: string, prune: boolean): string | undefined {
    this.catchUp();
    const error = this.core.forceLeave(node, prune);
    this.flush();
    return error;
  }

  fireEvent(name: string, payload: Uint8Array): { ltime: number } | { error: string } {
    this.catchUp();
    const result = this.core.fireUserEvent(name, payload);
    this.flush();
    return result;
  }

  setTags(tags: Readonly<Record<string, string>>): void {
    this.catchUp();
    this.core.setTags(tags);
    this.flush();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const waiter of this.streamWaiters.values()) waiter({ id: 0, address: '', join: true, error: 'the gossip pool is shutting down' });
    this.streamWaiters.clear();
    await this.transport.close();
  }

  private tick(): void {
    this.timer = undefined;
    this.catchUp();
    this.flush();
  }

  /**
   * Runs the core's ticks up to now: the ones the pool slept through (nothing was due in them,
   * `msUntilDue`), and, after a stall, whatever fell due meanwhile. Before anything is handed to
   * the core, so that it meets it at the right time.
   */
  private catchUp(): void {
    const now = process.hrtime.bigint();
    const elapsedTicks = Number((now - this.lastTickNs) / TICK_NS);
    if (elapsedTicks <= 0) return;
    this.lastTickNs += BigInt(elapsedTicks) * TICK_NS;
    for (let i = 0; i < Math.min(elapsedTicks, MAX_CATCH_UP_TICKS); i++) this.core.tick();
    if (elapsedTicks > MAX_CATCH_UP_TICKS) this.lastTickNs = now;
  }

  /**
   * Sets the timer for the tick when the core next has something to do, unless one is set for
   * then or earlier. An idle pool wakes a few times a second (gossip rounds, probes), not every
   * tick: each wake-up of an idle process costs this VM 0.1-0.2 ms of CPU.
   */
  private arm(): void {
    if (this.stopped) return;
    const dueTicks = Math.ceil(this.core.msUntilDue() / TICK_MS);
    const atNs = this.lastTickNs + BigInt(dueTicks) * TICK_NS;
    if (this.timer !== undefined && this.timerAtNs <= atNs) return;
    clearTimeout(this.timer);
    this.timerAtNs = atNs;
    // A millisecond more: a timer of libuv may fire a little before its time by the hrtime clock.
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(Number(atNs - process.hrtime.bigint()) / 1e6)) + 1);
  }

  private receivePacket(from: string, bytes: Uint8Array): void {
    if (this.stopped) return;
    this.catchUp();
    const decoded = decodePacket(bytes);
    if ('error' in decoded) {
      this.transport.dropped.packets++;
      this.options.logger.debug({ from, reason: decoded.error }, `dropped a gossip packet from ${from}: ${decoded.error}`);
      return;
    }
    this.core.receivePacket(from, decoded.messages);
    this.flush();
  }

  private receiveStream(from: string, request: Uint8Array): Uint8Array {
    this.catchUp();
    const decoded = decodeStreamFrame(request);
    if ('frame' in decoded && decoded.frame.type === 'ping') {
      const ack = this.core.answerTcpPing(decoded.frame.ping);
      return encodeStreamFrame(ack === undefined ? { type: 'error', message: `ping for unexpected node '${decoded.frame.ping.node}'` } : { type: 'ack', ack });
    }
    if ('error' in decoded || decoded.frame.type !== 'push-pull-request') {
      this.transport.dropped.streams++;
      const reason = 'error' in decoded ? decoded.error : `unexpected ${decoded.frame.type} frame`;
      return encodeStreamFrame({ type: 'error', message: reason });
    }
    const { answer } = this.core.receiveStream(from, decoded.frame.state);
    this.flush();
    return encodeStreamFrame({ type: 'push-pull-response', state: answer });
  }

  /** Carries out what the core asked for: datagrams, streams, events. */
  private flush(): void {
    if (this.stopped) return;
    const ready = this.core.ready();
    for (const packet of ready.packets) this.sendPacket(packet.to, packet.messages);
    for (const stream of ready.streams) void this.runStream(stream.id, stream.to, stream.state);
    for (const ping of ready.tcpPings) void this.runTcpPing(ping);
    for (const event of ready.events) this.handleEvent(event);
    this.arm();
  }

  private sendPacket(to: string, messages: readonly Message[]): void {
    const first = messages[0];
    if (first?.type === 'ping') {
      if (this.pingsSent.size >= MAX_PINGS_IN_FLIGHT) this.pingsSent.delete(this.pingsSent.keys().next().value!);
      this.pingsSent.set(first.seqNo, process.hrtime.bigint());
    }
    let bytes: Uint8Array;
    try {
      bytes = encodePacket(messages);
    } catch (err) {
      this.options.logger.error({ err, to }, `cannot encode a gossip packet: ${(err as Error).message}`);
      return;
    }
    this.transport.sendPacket(to, bytes);
  }

  private async runStream(id: number, to: string, state: PushPull): Promise<void> {
    let outcome: PushPull | { error: string };
    try {
      const answer = decodeStreamFrame(await this.transport.exchange(to, encodeStreamFrame({ type: 'push-pull-request', state }), this.options.timings.streamTimeoutMs));
      if ('error' in answer) outcome = { error: answer.error };
      else if (answer.frame.type === 'error') outcome = { error: answer.frame.message };
      else if (answer.frame.type === 'push-pull-response') outcome = answer.frame.state;
      else outcome = { error: `unexpected ${answer.frame.type} frame` };
    } catch (err) {
      outcome = { error: (err as Error).message };
    }
    if (this.stopped) return;
    this.catchUp();
    const result = this.core.streamCompleted(id, outcome);
    if (result.error !== undefined && !result.join) this.options.logger.debug({ to, reason: result.error }, `push/pull with ${to} failed: ${result.error}`);
    this.streamWaiters.get(id)?.(result);
    this.streamWaiters.delete(id);
    this.flush();
  }

  private async runTcpPing({ to, ping, timeoutMs }: OutgoingTcpPing): Promise<void> {
    let outcome: TcpPingOutcome = 'no-answer';
    try {
      const answer = decodeStreamFrame(await this.transport.exchange(to, encodeStreamFrame({ type: 'ping', ping }), timeoutMs));
      if ('frame' in answer && answer.frame.type === 'ack' && answer.frame.ack.seqNo === ping.seqNo) outcome = 'ack';
    } catch (err) {
      if (err instanceof ExchangeError && err.refused) outcome = 'refused';
    }
    if (this.stopped) return;
    this.catchUp();
    this.core.tcpPingCompleted(ping.seqNo, outcome);
    this.flush();
  }

  private handleEvent(event: SwimEvent): void {
    const segment = this.options.segment === '' ? '<default>' : this.options.segment;
    switch (event.type) {
      case 'ping-complete':
        return this.recordRoundTrip(event.node, event.seqNo, event.payload);
      case 'log': {
        // The core names the member a line is about `node`, which is also the logger's own field
        // (this agent's name): in JSON the second key wins, so the line would seem to come from
        // the member it is about. It goes out as `member`, as the member-event lines below.
        const { node, ...fields } = event.fields ?? {};
        this.options.logger[event.level]({ segment, ...fields, ...(node === undefined ? {} : { member: node }) }, `memberlist: ${event.message}`);
        return;
      }
      case 'member-join':
      case 'member-update':
      case 'member-failed':
      case 'member-leave':
      case 'member-reap': {
        const name = { 'member-join': 'EventMemberJoin', 'member-update': 'EventMemberUpdate', 'member-failed': 'EventMemberFailed', 'member-leave': 'EventMemberLeave', 'member-reap': 'EventMemberReap' }[event.type];
        // Consul's log line: `serf: EventMemberJoin: node1 10.0.0.1`.
        this.options.logger.info({ serf_event: name, segment, member: event.member.name, address: event.member.address }, `serf: ${name}: ${event.member.name} ${event.member.address.replace(/:\d+$/, '')}`);
        if (event.type === 'member-reap' || event.type === 'member-leave') {
          this.peerCoordinates.delete(event.member.name);
          this.vivaldi.forgetNode(event.member.name);
        }
        break;
      }
      default:
        break;
    }
    for (const listener of this.listeners) listener(event);
  }

  private recordRoundTrip(node: string, seqNo: number, payload: Uint8Array): void {
    const sent = this.pingsSent.get(seqNo);
    this.pingsSent.delete(seqNo);
    const coordinate = decodeCoordinate(payload);
    if (sent === undefined || coordinate === undefined) return;
    const rttSeconds = Number(process.hrtime.bigint() - sent) / 1e9;
    try {
      this.vivaldi.update(node, coordinate, rttSeconds);
      this.peerCoordinates.set(node, coordinate);
    } catch (err) {
      this.options.logger.debug({ node, err }, `Vivaldi rejected a sample from ${node}: ${(err as Error).message}`);
    }
  }
}
