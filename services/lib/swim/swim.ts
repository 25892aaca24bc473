/**
 * The SWIM membership core with Lifeguard (Das, Gupta, Motivala 2002; Dadgar, Phillips, Currey
 * 2017), as hashicorp/memberlist runs it and with the parts of Serf that Consul relies on (member
 * events, reaping, reconnecting to failed members, leave intents, user events with Lamport time).
 *
 * Pure: no sockets, timers or clock. The shell calls `tick()` once per `tickMs` of its time, hands in
 * packets (`receivePacket`) and streams (`receiveStream`, `streamCompleted`), and drains `ready()`
 * for the packets and streams to send and the events to report. Ticks before `msUntilDue()` do
 * nothing but move the clock, so the shell may sleep until then and run the missed ticks when it
 * wakes or before it hands in anything. Randomness comes from the config. One instance is one
 * pool: a LAN segment, an area or the WAN.
 *
 *   failure detection   round-robin probes in a shuffled order; a direct ping, then after
 *                       probeTimeout k indirect pings (SWIM §4.2) and a ping over TCP
 *                       (memberlist's fallback); no ack by the end of the (health-scaled) probe
 *                       interval → suspect, or at once when the TCP ping is refused
 *   suspicion           suspect → dead after a timeout that shrinks with independent
 *                       confirmations (suspicion.ts); the suspect refutes with a higher
 *                       incarnation; the buddy system tells it directly on the next ping
 *   local health        missed acks and nacks raise the health score, which stretches our probe
 *                       interval (awareness.ts)
 *   dissemination       alive/suspect/dead piggybacked on every packet (broadcast-queue.ts) plus
 *                       gossip rounds to a few random members (periodic, and at once when there is
 *                       news with eagerGossip), and periodic push/pull full syncs
 */
import { invariant } from '../invariant';
import { Awareness } from './awareness';
import { BroadcastQueue } from './broadcast-queue';
import { SwimConfig } from './config';
import {
  AckMessage,
  AliveMessage,
  Broadcast,
  DeadMessage,
  IndirectPingMessage,
  LeaveIntentMessage,
  Message,
  NackMessage,
  PingMessage,
  PushPull,
  PushPullMember,
  SuspectMessage,
  UserEventMessage,
} from './messages';
import { Suspicion, suspicionTimeoutMs } from './suspicion';
import { MemberInfo, OutgoingPacket, OutgoingStream, OutgoingTcpPing, Ready, StreamOutcome, SwimEvent, TcpPingOutcome } from './types';

/**
 * A member record never changes in place: a change replaces it in the table. So events hand
 * records out as they are, and cores may share them (warmStart).
 */
type Member = MemberInfo;

/** Our probe of one member, from the direct ping to the end of the protocol period. */
interface Probe {
  readonly target: string;
  readonly seqNo: number;
  readonly startedMs: number;
  /** When to give up on the direct ack and ask others (probeTimeout). */
  readonly directDeadlineMs: number;
  /** The end of this protocol period (health-scaled probe interval). */
  readonly deadlineMs: number;
  indirect: boolean;
  expectedNacks: number;
  nacks: number;
  /** The TCP fallback ping was acked: the member is up, its datagrams are not getting through. */
  tcpContacted: boolean;
}

/** An indirect ping we forward for another member (we ping, they get the ack or a nack). */
interface Relay {
  readonly originSeqNo: number;
  readonly origin: string;
  readonly nack: boolean;
  readonly deadlineMs: number;
}

interface PendingStream {
  readonly address: string;
  readonly join: boolean;
}

/** Compound-packet overhead per message: the field tag and length prefix in `Packet.messages`. */
const PER_MESSAGE_OVERHEAD = 3;
/** memberlist `pushPullScaleThreshold`: past this many members the push/pull interval grows with log2 N. */
const PUSH_PULL_SCALE_THRESHOLD = 32;
/** After a join, the first push/pull comes this soon instead of a push/pull interval later. */
const JOIN_SYNC_DELAY_MS = 1_000;
/**
 * How long a leave intent makes a member's failure a leave: a leaving agent is gone within its
 * leave timeout (5 s), and failing it takes at most the suspicion's maximum (24-60 s on a LAN).
 */
const LEAVING_MS = 120_000;
/** Pools up to this many live members hear of a newcomer from the member it joined, directly (tellOfNewcomer). */
const TELL_NEWCOMER_MAX_MEMBERS = 32;
/** How often failed and left members are checked for reaping (Serf ReapInterval 15 s). */
const REAP_INTERVAL_MS = 15_000;
const NOTHING_READY: Ready = Object.freeze({ packets: Object.freeze([]), streams: Object.freeze([]), tcpPings: Object.freeze([]), events: Object.freeze([]) });

export class Swim {
  private nowMs = 0;
  private readonly table = new Map<string, Member>();
  /** Members alive or suspect, ourselves included (we start alive). */
  private liveCount = 1;
  /** Every member's name in probe order (memberlist's `nodes` slice), shuffled each round. */
  private probeOrder: string[] = [];
  private probeIndex = 0;
  private probe: Probe | undefined;
  private readonly relays = new Map<number, Relay>();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly awareness: Awareness;
  private readonly broadcasts: BroadcastQueue;
  private readonly streams = new Map<number, PendingStream>();
  private nextSeqNo = 1;
  private nextStreamId = 1;
  private nextProbeMs: number;
  private nextGossipMs: number;
  private nextPushPullMs: number;
  private nextReconnectMs: number;
  private nextReapMs: number;
  private left = false;
  private memberLtime = 0;
  private eventLtime = 0;
  /** Last leave intent seen per node (Serf's recentIntents), so intents are applied once. */
  private readonly intentLtimes = new Map<string, number>();
  /**
   * Members whose leave intent came while they were alive (Serf's StatusLeaving), and when: their
   * failure within LEAVING_MS is a leave. A newer incarnation clears it (the member refuted the
   * intent); the bound covers an intent that arrives after the refutation (gossip keeps no order).
   */
  private readonly leaving = new Map<string, number>();
  /** User events seen, by Lamport time (Serf's eventBuffer), for de-duplication. */
  private readonly seenEvents = new Map<number, Set<string>>();
  /** A broadcast was queued since the last gossip round (eagerGossip): ready() runs one, at most once per tick. */
  private eagerRoundDue = false;
  private lastGossipRoundMs = -1;
  private packets: OutgoingPacket[] = [];
  private outgoingStreams: OutgoingStream[] = [];
  private outgoingTcpPings: OutgoingTcpPing[] = [];
  private events: SwimEvent[] = [];

  constructor(private readonly config: SwimConfig) {
    this.awareness = new Awareness(config.lifeguard ? config.awarenessMaxMultiplier : 1);
    this.broadcasts = new BroadcastQueue(config.maxQueuedBroadcasts);
    const self: Member = { name: config.name, address: config.address, incarnation: 1, state: 'alive', tags: { ...config.tags }, stateChangeMs: 0 };
    this.table.set(self.name, self);
    this.probeOrder.push(self.name);
    // memberlist tells its delegate of the local member too, so a watcher sees the whole pool.
    this.events.push({ type: 'member-join', member: self });
    // Stagger the periodic work so that members started together do not act in lock step.
    this.nextProbeMs = this.randomMs(config.probeIntervalMs);
    this.nextGossipMs = this.randomMs(config.gossipIntervalMs);
    this.nextPushPullMs = this.randomMs(config.pushPullIntervalMs);
    this.nextReconnectMs = config.reconnectIntervalMs;
    this.nextReapMs = REAP_INTERVAL_MS;
  }

  // ---------------------------------------------------------------------------------------------
  // The shell's interface

  /** Advances the core's clock by one tick and runs whatever is due. */
  tick(): void {
    this.nowMs += this.config.tickMs;
    this.expireRelays();
    this.advanceProbe();
    this.expireSuspicions();
    // Gossip goes on after a leave, so the leave itself gets out (memberlist waits for it).
    if (this.nowMs >= this.nextGossipMs) {
      this.nextGossipMs = this.nowMs + this.config.gossipIntervalMs;
      this.gossipRound();
    }
    if (this.left) return;
    if (this.nowMs >= this.nextPushPullMs) {
      this.nextPushPullMs = this.nowMs + this.pushPullIntervalMs();
      this.pushPullWithRandomMember();
    }
    if (this.nowMs >= this.nextReconnectMs) {
      this.nextReconnectMs = this.nowMs + this.config.reconnectIntervalMs;
      this.reconnectToFailedMember();
    }
    if (this.nowMs >= this.nextReapMs) {
      this.nextReapMs = this.nowMs + REAP_INTERVAL_MS;
      this.reap();
    }
  }

  /**
   * How long, on the core's clock, until a tick has something to do (at least one tick): the next
   * probe or probe deadline, relay or suspicion deadline, gossip round (an eager one next tick),
   * push/pull, reconnect or reap. Every tick before then only moves the clock; an input can bring
   * the time forward, so the shell asks again after each.
   */
  msUntilDue(): number {
    let dueMs = this.eagerRoundDue ? Math.min(this.nextGossipMs, this.nowMs + this.config.tickMs) : this.nextGossipMs;
    if (!this.left) dueMs = Math.min(dueMs, this.nextPushPullMs, this.nextReconnectMs, this.nextReapMs);
    const probe = this.probe;
    if (probe !== undefined) dueMs = Math.min(dueMs, probe.indirect ? probe.deadlineMs : probe.directDeadlineMs, probe.deadlineMs);
    else if (!this.left) dueMs = Math.min(dueMs, this.nextProbeMs);
    for (const relay of this.relays.values()) dueMs = Math.min(dueMs, relay.deadlineMs);
    for (const suspicion of this.suspicions.values()) dueMs = Math.min(dueMs, suspicion.deadlineMs);
    return Math.max(this.config.tickMs, dueMs - this.nowMs);
  }

  /** One datagram from `from` ("ip:port"), decoded. */
  receivePacket(from: string, messages: readonly Message[]): void {
    for (const message of messages) this.receiveMessage(from, message);
  }

  /**
   * A push/pull stream from another member. Like memberlist's handleConn, the answer (our state)
   * is sent whatever happens; the sender's state is merged only if every member passes the merge
   * delegate, and `error` says why it did not.
   */
  receiveStream(from: string, state: PushPull): { answer: PushPull; error?: string } {
    const answer = this.localState(state.join);
    const unknown = state.join && this.liveCount <= TELL_NEWCOMER_MAX_MEMBERS ? state.members.filter((m) => !this.table.has(m.node)) : [];
    const error = this.mergeRemoteState(state);
    if (error !== undefined) this.log('warn', `Failed push/pull merge: ${error}`, { from });
    else if (unknown.length === 1) this.tellOfNewcomer(unknown[0].node);
    return error === undefined ? { answer } : { answer, error };
  }

  /**
   * Beyond memberlist: a member that takes a join in a small pool tells every other live member
   * of the newcomer directly, one datagram each, besides gossiping it. There an epidemic sends each
   * piece of news only 4 times per member, some of them to the dead (gossiped to for 30 s) or to
   * the newcomer itself: in simulation a late joiner stayed unknown to some member of a pool of 5
   * until that member's next push/pull (up to 23 s) in 17 of 200 joins. Only for a join that brings
   * one new member, the usual case (a merge of two pools goes by gossip and push/pull, as memberlist's).
   */
  private tellOfNewcomer(name: string): void {
    const newcomer = this.table.get(name);
    if (newcomer?.state === 'alive') this.tellEveryLiveMember([this.aliveMessage(newcomer)], newcomer.name);
  }

  /** The outcome of a stream this core asked for: the peer's answer, or why there is none. */
  streamCompleted(id: number, outcome: PushPull | { readonly error: string }): StreamOutcome {
    const pending = this.streams.get(id);
    if (pending === undefined) return { id, address: '', join: false, error: `unknown stream ${id}` };
    this.streams.delete(id);
    if ('error' in outcome) return { id, address: pending.address, join: pending.join, error: outcome.error };
    const error = this.mergeRemoteState(outcome);
    if (error !== undefined) {
      this.log('warn', `Failed push/pull merge: ${error}`, { from: pending.address });
      return { id, address: pending.address, join: pending.join, error };
    }
    // A member that just joined knows only those who had joined before it; those who join right
    // after reach it by gossip, and an epidemic with few transmissions can miss it (measured: a
    // few joins in a hundred waited 20 s for the periodic push/pull). One early push/pull closes
    // that gap. memberlist has no such step; performance.md G3 asks for no such outliers.
    if (pending.join) this.nextPushPullMs = Math.min(this.nextPushPullMs, this.nowMs + JOIN_SYNC_DELAY_MS);
    return { id, address: pending.address, join: pending.join };
  }

  /**
   * How a TCP ping this core asked for (`Ready.tcpPings`) ended. Only the probe still running
   * hears it: the outcome of an older probe's ping changes nothing.
   */
  tcpPingCompleted(seqNo: number, outcome: TcpPingOutcome): void {
    const probe = this.probe;
    if (probe === undefined || probe.seqNo !== seqNo) return;
    if (outcome === 'ack') probe.tcpContacted = true;
    else if (outcome === 'refused' && this.config.suspectOnRefusal) this.probeRefused(probe);
  }

  /**
   * The answer to a ping that came over TCP (memberlist's handleConn): our ack, or undefined for
   * a ping meant for another member (one that used to live at our address).
   */
  answerTcpPing(ping: PingMessage): AckMessage | undefined {
    if (ping.node !== '' && ping.node !== this.config.name) {
      this.log('debug', `Got ping for unexpected node '${ping.node}' over TCP`);
      return undefined;
    }
    return { type: 'ack', seqNo: ping.seqNo, payload: this.config.ackPayload() };
  }

  /**
   * Starts from a converged pool, for the scale simulation (bench/gossip/scale.ts): `members`
   * become the table as if each had joined and its alive broadcast had run its course, so nothing
   * is queued and no event is reported. The records are kept as they are (a change replaces a
   * record, never edits it), so cores can share them: 10,000 cores of 10,000 members then fit one
   * process, where a real mass join of 10,000 is out of its reach. Only for a core that has not
   * started yet.
   */
  warmStart(members: readonly MemberInfo[]): void {
    invariant(this.nowMs === 0 && this.table.size === 1 && this.streams.size === 0, 'warmStart is for a core that has not started');
    for (const member of members) {
      if (member.name === this.config.name) continue;
      invariant(!this.table.has(member.name), () => `warmStart: ${member.name} is listed twice`);
      this.table.set(member.name, member);
      this.probeOrder.push(member.name);
      if (isLive(member.state)) this.liveCount++;
    }
    this.shuffle(this.probeOrder);
    // A converged pool's members sit at random phases of the push/pull interval for its size.
    this.nextPushPullMs = this.randomMs(this.pushPullIntervalMs());
  }

  /** Starts a join (a push/pull with `join` set) to each address; returns the stream ids. */
  join(addresses: readonly string[]): number[] {
    return addresses.map((address) => this.startStream(address, true));
  }

  /**
   * Leaves the pool on purpose: a dead message from ourselves about ourselves (memberlist's
   * encoding of a leave), which others record as `left`, sent to every live member at once and
   * gossiped too. `leaveSent()` tells that it went out.
   */
  leave(): void {
    if (this.left) return;
    this.left = true;
    const self = this.self();
    // Serf's Leave broadcasts a leave intent first: a member that misses the dead message below,
    // and fails us once we are gone, still records a leave (the intent makes failed left).
    const intent: LeaveIntentMessage = { type: 'leave-intent', node: self.name, ltime: ++this.memberLtime };
    this.intentLtimes.set(self.name, intent.ltime);
    this.enqueue(intent);
    const dead: DeadMessage = { type: 'dead', node: self.name, incarnation: self.incarnation, from: self.name };
    this.enqueue(dead);
    // Beyond memberlist: we also tell every live member directly, one datagram each. By gossip
    // alone, a member missed the leave in about 5 % of leaves in a simulated pool of 10 and saw
    // us alive, then suspect, then failed, long after we had gone.
    this.tellEveryLiveMember([intent, dead]);
    this.setState(self, 'left', self.incarnation);
  }

  /** True once our leave has gone out (it goes at once, to every live member). */
  leaveSent(): boolean {
    return this.left;
  }

  /**
   * Serf's force-leave: a failed member becomes left everywhere (through a leave intent), so it
   * is no longer reconnected to; `prune` also forgets it at once. Returns Consul's error text when
   * there is no such member.
   */
  forceLeave(node: string, prune = false): string | undefined {
    const member = this.table.get(node);
    if (member === undefined) return `agent: No node found with name '${node}'`;
    const intent: LeaveIntentMessage = { type: 'leave-intent', node, ltime: ++this.memberLtime };
    this.applyLeaveIntent(intent);
    // Beyond Serf, as for our own leave: by gossip alone (4 sends each in a pool of 10), a
    // member missed the intent in 21 of 300 simulated force-leaves and kept the member failed
    // until the next push/pull, 30 s later.
    this.tellEveryLiveMember([intent]);
    // The intent replaced the record (failed → left): judge the one in the table now.
    const current = this.table.get(node);
    if (prune && current?.state === 'left' && current.name !== this.config.name) this.remove(current);
    return undefined;
  }

  /** One datagram with `messages` to every live member but us (and `except`), besides the gossip. */
  private tellEveryLiveMember(messages: Message[], except?: string): void {
    for (const member of this.table.values()) {
      if (member.name !== this.config.name && member.name !== except && isLive(member.state)) this.packets.push({ to: member.address, messages });
    }
  }

  /** Serf's user event: Lamport-ordered, sent to every member (ourselves included). Returns an error text when too large. */
  fireUserEvent(name: string, payload: Uint8Array): { ltime: number } | { error: string } {
    const size = utf8Length(name) + payload.length;
    if (size > this.config.userEventSizeLimit) return { error: `user event exceeds configured limit of ${this.config.userEventSizeLimit} bytes before encoding` };
    const event: UserEventMessage = { type: 'user-event', ltime: this.eventLtime, name, payload };
    this.eventLtime++;
    this.receiveUserEvent(event);
    return { ltime: event.ltime };
  }

  /** Changes our tags (Serf SetTags): a higher incarnation and an alive broadcast. */
  setTags(tags: Readonly<Record<string, string>>): void {
    const self = this.self();
    const updated = this.replace(self, { tags: { ...tags }, incarnation: self.incarnation + 1 });
    this.enqueue(this.aliveMessage(updated));
    this.events.push({ type: 'member-update', member: updated });
  }

  /** Drains what the shell must do: packets, streams to open, events to report. */
  ready(): Ready {
    if (this.eagerRoundDue && this.lastGossipRoundMs !== this.nowMs) this.gossipRound();
    // Most ticks have nothing for the shell: no new arrays for them.
    if (this.packets.length === 0 && this.outgoingStreams.length === 0 && this.outgoingTcpPings.length === 0 && this.events.length === 0) return NOTHING_READY;
    const ready: Ready = { packets: this.packets, streams: this.outgoingStreams, tcpPings: this.outgoingTcpPings, events: this.events };
    this.packets = [];
    this.outgoingStreams = [];
    this.outgoingTcpPings = [];
    this.events = [];
    return ready;
  }

  members(): MemberInfo[] {
    return [...this.table.values()];
  }

  member(name: string): MemberInfo | undefined {
    return this.table.get(name);
  }

  localMember(): MemberInfo {
    return this.self();
  }

  /** Lifeguard's health score: 0 healthy, up to awarenessMaxMultiplier − 1. */
  healthScore(): number {
    return this.awareness.healthScore;
  }

  /** The core's clock in ms (ticks × tickMs). */
  now(): number {
    return this.nowMs;
  }

  /**
   * Alive and suspect members, ourselves included (memberlist's estNumNodes). Kept as a count,
   * not counted: every outgoing packet asks (the retransmit limit).
   */
  liveMembers(): number {
    return this.liveCount;
  }

  pendingBroadcasts(): number {
    return this.broadcasts.length;
  }

  // ---------------------------------------------------------------------------------------------
  // Failure detection

  private advanceProbe(): void {
    const probe = this.probe;
    if (probe !== undefined) {
      if (!probe.indirect && this.nowMs >= probe.directDeadlineMs) this.probeIndirectly(probe);
      if (this.nowMs >= probe.deadlineMs) this.probeFailed(probe);
    }
    if (this.probe === undefined && !this.left && this.nowMs >= this.nextProbeMs) this.startProbe();
  }

  private startProbe(): void {
    const target = this.nextProbeTarget();
    // memberlist's ticker fires every probeInterval; a probe itself runs for the scaled interval.
    this.nextProbeMs = this.nowMs + this.config.probeIntervalMs;
    if (target === undefined) return;
    const seqNo = this.nextSeqNo++;
    this.probe = {
      target: target.name,
      seqNo,
      startedMs: this.nowMs,
      directDeadlineMs: this.nowMs + this.config.probeTimeoutMs,
      deadlineMs: this.nowMs + this.awareness.scaleTimeout(this.config.probeIntervalMs),
      indirect: false,
      expectedNacks: 0,
      nacks: 0,
      tcpContacted: false,
    };
    const ping: PingMessage = { type: 'ping', seqNo, node: target.name };
    // The buddy system (Lifeguard): a suspect hears of its suspicion with the ping, so it can refute at once.
    if (target.state === 'suspect' && this.config.lifeguard) {
      this.send(target.address, [ping, { type: 'suspect', node: target.name, incarnation: target.incarnation, from: this.config.name }]);
    } else {
      this.send(target.address, [ping]);
    }
  }

  /** Round robin over a shuffled order, reshuffled each round (SWIM §4.3), skipping ourselves and the dead. */
  private nextProbeTarget(): Member | undefined {
    for (let checked = 0; checked <= this.probeOrder.length; checked++) {
      if (this.probeIndex >= this.probeOrder.length) {
        this.shuffle(this.probeOrder);
        this.probeIndex = 0;
      }
      const member = this.table.get(this.probeOrder[this.probeIndex++]);
      if (member === undefined || member.name === this.config.name) continue;
      if (member.state === 'alive' || member.state === 'suspect') return member;
    }
    return undefined;
  }

  private probeIndirectly(probe: Probe): void {
    probe.indirect = true;
    const target = this.table.get(probe.target);
    if (target === undefined) return;
    const helpers = this.randomMembers(this.config.indirectChecks, (m) => m.name !== target.name && m.state === 'alive');
    for (const helper of helpers) {
      const nack = this.config.lifeguard;
      if (nack) probe.expectedNacks++;
      const message: IndirectPingMessage = { type: 'indirect-ping', seqNo: probe.seqNo, target: target.name, targetAddress: target.address, nack };
      this.send(helper.address, [message]);
    }
    // memberlist's fallback: TCP may get through where UDP does not. It has until the end of the period.
    if (this.config.tcpPings) this.outgoingTcpPings.push({ to: target.address, ping: { type: 'ping', seqNo: probe.seqNo, node: target.name }, timeoutMs: probe.deadlineMs - this.nowMs });
  }

  private probeFailed(probe: Probe): void {
    this.probe = undefined;
    // Lifeguard: helpers that did not even nack point at us, not the target. Without helpers
    // that nack, any failed probe counts against our health (memberlist probeNode).
    if (probe.expectedNacks > 0) this.awareness.applyDelta(Math.max(0, probe.expectedNacks - probe.nacks));
    else this.awareness.applyDelta(1);
    if (probe.tcpContacted) {
      this.log('warn', `Was able to connect to ${probe.target} over TCP but UDP probes failed, network may be misconfigured`, { node: probe.target });
      return;
    }
    this.suspectProbed(probe, 'no acks received');
  }

  /**
   * Our TCP ping was refused: the member's host is up and nothing listens at its address. No ack
   * can come any more, so the member is suspected now. Our health is left as it is: the refusal
   * came back, so our own network works, and the helpers' nacks are still on their way.
   */
  private probeRefused(probe: Probe): void {
    this.probe = undefined;
    this.suspectProbed(probe, 'connection refused over TCP and no acks received');
  }

  /** Suspects the member a failed probe was about, unless it is dead or gone already. */
  private suspectProbed(probe: Probe, why: string): void {
    const target = this.table.get(probe.target);
    if (target === undefined || target.state === 'dead' || target.state === 'left') return;
    this.log('info', `Suspect ${target.name} has failed, ${why}`, { node: target.name });
    this.suspectNode({ type: 'suspect', node: target.name, incarnation: target.incarnation, from: this.config.name });
  }

  private probeSucceeded(probe: Probe, payload: Uint8Array): void {
    this.probe = undefined;
    this.awareness.applyDelta(-1);
    // Only a direct ack measures the round trip to the target (memberlist NotifyPingComplete).
    if (!probe.indirect) this.events.push({ type: 'ping-complete', node: probe.target, seqNo: probe.seqNo, payload });
  }

  private expireRelays(): void {
    for (const [seqNo, relay] of this.relays) {
      if (this.nowMs < relay.deadlineMs) continue;
      this.relays.delete(seqNo);
      if (relay.nack) this.send(relay.origin, [{ type: 'nack', seqNo: relay.originSeqNo }]);
    }
  }

  private expireSuspicions(): void {
    for (const [name, suspicion] of this.suspicions) {
      if (this.nowMs < suspicion.deadlineMs) continue;
      this.suspicions.delete(name);
      const member = this.table.get(name);
      if (member === undefined || member.state !== 'suspect') continue;
      this.log('info', `Marking ${name} as failed, suspect timeout reached (${suspicion.confirmationCount} peer confirmations)`, { node: name });
      this.deadNode({ type: 'dead', node: name, incarnation: member.incarnation, from: this.config.name });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  private receiveMessage(from: string, message: Message): void {
    switch (message.type) {
      case 'ping':
        return this.receivePing(from, message);
      case 'indirect-ping':
        return this.receiveIndirectPing(from, message);
      case 'ack':
        return this.receiveAck(message);
      case 'nack':
        return this.receiveNack(message);
      case 'alive':
        return this.aliveNode(message);
      case 'suspect':
        return this.suspectNode(message);
      case 'dead':
        return this.deadNode(message);
      case 'leave-intent':
        return this.receiveLeaveIntent(message);
      case 'user-event':
        return this.receiveUserEvent(message);
    }
  }

  private receivePing(from: string, ping: PingMessage): void {
    // A ping meant for a member that used to live at our address is not ours to answer.
    if (ping.node !== '' && ping.node !== this.config.name) {
      this.log('debug', `Got ping for unexpected node '${ping.node}'`, { from });
      return;
    }
    this.send(from, [{ type: 'ack', seqNo: ping.seqNo, payload: this.config.ackPayload() }]);
  }

  private receiveIndirectPing(from: string, request: IndirectPingMessage): void {
    const seqNo = this.nextSeqNo++;
    this.relays.set(seqNo, { originSeqNo: request.seqNo, origin: from, nack: request.nack, deadlineMs: this.nowMs + this.config.probeTimeoutMs });
    this.send(request.targetAddress, [{ type: 'ping', seqNo, node: request.target }]);
  }

  private receiveAck(ack: AckMessage): void {
    const relay = this.relays.get(ack.seqNo);
    if (relay !== undefined) {
      this.relays.delete(ack.seqNo);
      this.send(relay.origin, [{ type: 'ack', seqNo: relay.originSeqNo, payload: ack.payload }]);
      return;
    }
    if (this.probe !== undefined && this.probe.seqNo === ack.seqNo) this.probeSucceeded(this.probe, ack.payload);
  }

  private receiveNack(nack: NackMessage): void {
    if (this.probe !== undefined && this.probe.seqNo === nack.seqNo) this.probe.nacks++;
  }

  /** memberlist `aliveNode`, with Serf's merge delegate checking members that are new or changed. */
  private aliveNode(alive: AliveMessage): void {
    const member = this.table.get(alive.node);
    if (member === undefined) {
      if (alive.node !== this.config.name) this.addMember(alive);
      return;
    }
    if (member.name === this.config.name) {
      // Someone holds an old view of us; refute only what could make others think we changed.
      if (this.left || alive.incarnation < member.incarnation) return;
      if (alive.incarnation === member.incarnation && sameTags(alive.tags, member.tags) && alive.address === member.address) return;
      this.refute(member, alive.incarnation);
      this.log('warn', 'Refuting an alive message about ourselves', { incarnation: alive.incarnation });
      return;
    }

    const gone = member.state === 'dead' || member.state === 'left';
    const moved = member.address !== alive.address;
    if (moved && !gone) {
      // Two members claim one name: the one we know keeps it while it lives (memberlist's conflict rule).
      this.log('warn', `Conflicting address for ${alive.node}: ${member.address} is alive, ${alive.address} claims the name`, { node: alive.node });
      return;
    }
    // A gone member may come back at a new address with its old incarnation (memberlist's reclaim).
    if (alive.incarnation <= member.incarnation && !(moved && gone)) return;
    const retagged = !sameTags(alive.tags, member.tags);
    if (retagged && this.refused(alive)) return;

    this.suspicions.delete(member.name);
    // A newer incarnation: a refuted leave intent (the member lives on), or a member back after one.
    this.leaving.delete(member.name);
    this.enqueue(alive);
    if (gone) this.liveCount++;
    const revived = member.state === 'alive' ? {} : { state: 'alive' as const, stateChangeMs: this.nowMs };
    const updated = this.replace(member, { address: alive.address, tags: alive.tags, incarnation: alive.incarnation, ...revived });
    if (gone) this.events.push({ type: 'member-join', member: updated });
    else if (retagged || moved) this.events.push({ type: 'member-update', member: updated });
  }

  private addMember(alive: AliveMessage): void {
    if (this.refused(alive)) return;
    if (this.table.size >= this.config.maxMembers) {
      this.log('error', `Ignoring '${alive.node}': the pool already holds maxMembers (${this.config.maxMembers})`, { node: alive.node });
      return;
    }
    const member: Member = { name: alive.node, address: alive.address, incarnation: alive.incarnation, state: 'alive', tags: alive.tags, stateChangeMs: this.nowMs };
    this.table.set(member.name, member);
    this.liveCount++;
    // A newcomer goes to a random place in the probe order, not to the end; like memberlist, by
    // swapping it with whoever is there (O(1): a splice would make a mass join cost O(N²)).
    const at = Math.floor(this.config.random() * (this.probeOrder.length + 1));
    this.probeOrder.push(member.name);
    const last = this.probeOrder.length - 1;
    [this.probeOrder[at], this.probeOrder[last]] = [this.probeOrder[last], this.probeOrder[at]];
    this.enqueue(alive);
    this.events.push({ type: 'member-join', member });
  }

  /** Serf's NotifyAlive: the merge delegate sees every member that arrives by gossip too. */
  private refused(alive: AliveMessage): boolean {
    const refusal = this.config.validateMembers([this.infoOf(alive, 'alive')]);
    if (refusal === undefined) return false;
    this.log('warn', `Ignoring an alive message for '${alive.node}': ${refusal}`, { node: alive.node });
    return true;
  }

  /** memberlist `suspectNode`: confirm an existing suspicion, refute one about us, or start one. */
  private suspectNode(suspect: SuspectMessage): void {
    const member = this.table.get(suspect.node);
    if (member === undefined || suspect.incarnation < member.incarnation) return;

    const existing = this.suspicions.get(suspect.node);
    if (existing !== undefined) {
      // Independent confirmations are re-gossiped, so they reach the others too.
      if (this.config.lifeguard && existing.confirm(suspect.from, this.nowMs)) this.enqueue(suspect);
      return;
    }
    if (member.state !== 'alive') return;

    if (member.name === this.config.name) {
      if (this.left) return;
      this.refute(member, suspect.incarnation);
      this.log('warn', `Refuting a suspect message (from: ${suspect.from})`, { from: suspect.from });
      return;
    }
    this.enqueue(suspect);
    this.setState(member, 'suspect', suspect.incarnation);

    // k independent confirmations bring the timeout down to min; we hit the nominal timeout two
    // probe intervals short of suspicionMult (memberlist). Too small a pool expects none.
    const n = this.liveMembers();
    const expected = this.config.lifeguard && n - 2 >= this.config.suspicionMult - 2 ? this.config.suspicionMult - 2 : 0;
    const minMs = suspicionTimeoutMs(this.config.suspicionMult, n, this.config.probeIntervalMs);
    const maxMs = this.config.lifeguard ? this.config.suspicionMaxTimeoutMult * minMs : minMs;
    this.suspicions.set(member.name, new Suspicion(suspect.from, expected, minMs, maxMs, this.nowMs));
  }

  /** memberlist `deadNode`: dead (or left, when a member says so of itself); we refute unless we are leaving. */
  private deadNode(dead: DeadMessage): void {
    const member = this.table.get(dead.node);
    if (member === undefined || dead.incarnation < member.incarnation) return;
    this.suspicions.delete(member.name);
    if (member.state === 'dead' || member.state === 'left') return;

    if (member.name === this.config.name) {
      if (!this.left) {
        this.refute(member, dead.incarnation);
        this.log('warn', `Refuting a dead message (from: ${dead.from})`, { from: dead.from });
        return;
      }
    }
    this.enqueue(dead);
    const announced = this.leaving.get(member.name);
    const leaving = announced !== undefined && this.nowMs - announced <= LEAVING_MS;
    this.setState(member, dead.node === dead.from || leaving ? 'left' : 'dead', dead.incarnation);
    this.leaving.delete(member.name);
  }

  /** A higher incarnation than the accusation, broadcast; being accused counts against our health. */
  private refute(self: Member, accusedIncarnation: number): void {
    const refuted = this.replace(self, { incarnation: Math.max(self.incarnation, accusedIncarnation) + 1 });
    if (this.config.lifeguard) this.awareness.applyDelta(1);
    this.enqueue(this.aliveMessage(refuted));
  }

  private receiveLeaveIntent(intent: LeaveIntentMessage): void {
    this.memberLtime = Math.max(this.memberLtime, intent.ltime);
    this.applyLeaveIntent(intent);
  }

  /** Serf handleNodeLeaveIntent: failed → left; an intent about ourselves while we live is refuted. */
  private applyLeaveIntent(intent: LeaveIntentMessage): void {
    const seen = this.intentLtimes.get(intent.node);
    if (seen !== undefined && seen >= intent.ltime) return;
    this.intentLtimes.set(intent.node, intent.ltime);
    const member = this.table.get(intent.node);
    if (member === undefined) return;
    if (member.name === this.config.name) {
      if (!this.left) this.refute(member, member.incarnation);
      return;
    }
    this.enqueue(intent);
    if (member.state === 'dead') this.setState(member, 'left', member.incarnation);
    else if (member.state === 'alive' || member.state === 'suspect') this.leaving.set(member.name, this.nowMs);
  }

  private receiveUserEvent(event: UserEventMessage): void {
    this.eventLtime = Math.max(this.eventLtime, event.ltime + 1);
    // Serf drops events older than its buffer: it can no longer tell whether they are duplicates.
    if (this.eventLtime > this.config.eventBuffer && event.ltime < this.eventLtime - this.config.eventBuffer) return;
    const key = `${event.name}\u0000${Array.from(event.payload).join(',')}`;
    let seen = this.seenEvents.get(event.ltime);
    if (seen === undefined) {
      seen = new Set();
      this.seenEvents.set(event.ltime, seen);
      if (this.seenEvents.size > this.config.eventBuffer) this.pruneSeenEvents();
    }
    if (seen.has(key)) return;
    seen.add(key);
    this.enqueue(event);
    this.events.push({ type: 'user-event', name: event.name, payload: event.payload, ltime: event.ltime });
  }

  private pruneSeenEvents(): void {
    const floor = this.eventLtime - this.config.eventBuffer;
    for (const ltime of this.seenEvents.keys()) if (ltime < floor) this.seenEvents.delete(ltime);
  }

  // ---------------------------------------------------------------------------------------------
  // Dissemination and state sync

  /**
   * One gossip round. Periodic (every gossipIntervalMs), and with `eagerGossip` also as soon as
   * a new broadcast is queued, at most once per tick: each member then passes news on within a
   * round trip instead of up to a gossip interval later. The number of times each broadcast is
   * sent (the retransmit limit) is the same, so only the timing changes, not the bytes.
   */
  private gossipRound(): void {
    this.lastGossipRoundMs = this.nowMs;
    this.eagerRoundDue = false;
    if (this.broadcasts.length === 0) return;
    const targets = this.randomMembers(this.config.gossipNodes, (m) => {
      if (m.state === 'alive' || m.state === 'suspect') return true;
      // The dead still hear gossip for a while, so one that is alive after all learns it must refute.
      return m.state === 'dead' && this.nowMs - m.stateChangeMs < this.config.gossipToTheDeadMs;
    });
    let sent = false;
    for (const target of targets) {
      const messages = this.takeBroadcasts(this.config.packetBudgetBytes);
      if (messages.length === 0) break;
      this.packets.push({ to: target.address, messages });
      sent = true;
    }
    // News that did not fit in this round's packets (a burst of joins fills them) leaves in the
    // next tick's round, not the next periodic one.
    if (sent && this.config.eagerGossip && this.broadcasts.neverSent > 0) this.eagerRoundDue = true;
  }

  private pushPullWithRandomMember(): void {
    const [peer] = this.randomMembers(1, (m) => m.state === 'alive');
    if (peer !== undefined) this.startStream(peer.address, false);
  }

  /** Serf's reconnector: a failed member might be back (a healed partition); a push/pull tells. */
  private reconnectToFailedMember(): void {
    // Nobody failed or left, as is usual: no search (randomMembers would draw 3N times for nothing).
    if (this.allLive()) return;
    const [peer] = this.randomMembers(1, (m) => m.state === 'dead');
    if (peer === undefined) return;
    this.log('info', `Attempting re-join to previously failed node: ${peer.name}`, { node: peer.name });
    this.startStream(peer.address, true);
  }

  /** Serf's reaper: failed members are forgotten after reconnectTimeout, left ones after tombstoneTimeout. */
  private reap(): void {
    if (this.allLive()) return;
    for (const member of [...this.table.values()]) {
      if (member.name === this.config.name) continue;
      const age = this.nowMs - member.stateChangeMs;
      if ((member.state === 'dead' && age >= this.config.reconnectTimeoutMs) || (member.state === 'left' && age >= this.config.tombstoneTimeoutMs)) this.remove(member);
    }
  }

  private remove(member: Member): void {
    if (isLive(member.state)) this.liveCount--;
    this.table.delete(member.name);
    this.suspicions.delete(member.name);
    this.leaving.delete(member.name);
    const at = this.probeOrder.indexOf(member.name);
    if (at >= 0) {
      this.probeOrder.splice(at, 1);
      if (at < this.probeIndex) this.probeIndex--;
    }
    this.events.push({ type: 'member-reap', member });
  }

  private startStream(address: string, join: boolean): number {
    const id = this.nextStreamId++;
    this.streams.set(id, { address, join });
    this.outgoingStreams.push({ id, to: address, state: this.localState(join) });
    return id;
  }

  private localState(join: boolean): PushPull {
    const members: PushPullMember[] = [...this.table.values()].map((m) => ({ node: m.name, address: m.address, incarnation: m.incarnation, state: m.state, tags: m.tags }));
    return { join, members, memberLtime: this.memberLtime, eventLtime: this.eventLtime };
  }

  /** memberlist `mergeRemoteState` + `mergeState`, behind Serf's merge delegate. */
  private mergeRemoteState(state: PushPull): string | undefined {
    const refusal = this.config.validateMembers(state.members.map((m) => this.infoOf({ type: 'alive', node: m.node, address: m.address, incarnation: m.incarnation, tags: m.tags }, m.state)));
    if (refusal !== undefined) return refusal;
    this.memberLtime = Math.max(this.memberLtime, state.memberLtime);
    this.eventLtime = Math.max(this.eventLtime, state.eventLtime);
    for (const remote of state.members) {
      switch (remote.state) {
        case 'alive':
          this.aliveNode({ type: 'alive', node: remote.node, address: remote.address, incarnation: remote.incarnation, tags: remote.tags });
          break;
        case 'left': {
          // Serf's push/pull carries its left members as leave intents: one we failed left gracefully.
          const local = this.table.get(remote.node);
          if (local?.state === 'dead' && remote.incarnation >= local.incarnation) this.setState(local, 'left', remote.incarnation);
          else this.deadNode({ type: 'dead', node: remote.node, incarnation: remote.incarnation, from: remote.node });
          break;
        }
        case 'dead':
        // Another member's "dead" only makes us suspect: we give the member its chance to refute.
        case 'suspect':
          this.suspectNode({ type: 'suspect', node: remote.node, incarnation: remote.incarnation, from: this.config.name });
          break;
      }
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Plumbing

  /** Sends `messages` to `to` in one datagram, with as many broadcasts piggybacked as fit. */
  private send(to: string, messages: Message[]): void {
    let used = 0;
    for (const message of messages) used += this.config.messageSize(message) + PER_MESSAGE_OVERHEAD;
    const piggyback = this.takeBroadcasts(this.config.packetBudgetBytes - used);
    this.packets.push({ to, messages: piggyback.length === 0 ? messages : [...messages, ...piggyback] });
  }

  private takeBroadcasts(budgetBytes: number): Broadcast[] {
    if (budgetBytes <= 0) return [];
    return this.broadcasts.take(budgetBytes, PER_MESSAGE_OVERHEAD, this.retransmitLimit());
  }

  private enqueue(broadcast: Broadcast): void {
    this.broadcasts.push(broadcast, this.config.messageSize(broadcast));
    if (this.config.eagerGossip) this.eagerRoundDue = true;
  }

  /** memberlist `retransmitLimit`: retransmitMult × ceil(log10(N + 1)). */
  private retransmitLimit(): number {
    return this.config.retransmitMult * Math.ceil(Math.log10(this.liveMembers() + 1));
  }

  /** memberlist `pushPullScale`: the interval grows with log2 N past 32 members, to bound the load. */
  private pushPullIntervalMs(): number {
    const n = this.liveMembers();
    if (n <= PUSH_PULL_SCALE_THRESHOLD) return this.config.pushPullIntervalMs;
    const multiplier = Math.ceil(Math.log2(n) - Math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1;
    return multiplier * this.config.pushPullIntervalMs;
  }

  private setState(member: Member, state: MemberInfo['state'], incarnation: number): void {
    invariant(incarnation >= member.incarnation, () => `incarnation of ${member.name} would go back from ${member.incarnation} to ${incarnation}`);
    if (member.state === state) {
      if (incarnation !== member.incarnation) this.replace(member, { incarnation });
      return;
    }
    this.liveCount += Number(isLive(state)) - Number(isLive(member.state));
    const updated = this.replace(member, { incarnation, state, stateChangeMs: this.nowMs });
    if (state === 'dead') this.events.push({ type: 'member-failed', member: updated });
    else if (state === 'left') this.events.push({ type: 'member-leave', member: updated });
    else if (state === 'suspect') this.events.push({ type: 'member-suspect', member: updated });
  }

  /** No member is failed or left (liveCount counts alive and suspect ones, ourselves included). */
  private allLive(): boolean {
    return this.liveCount === this.table.size;
  }

  /** Up to k distinct random members other than ourselves that pass `filter` (memberlist kRandomNodes). */
  private randomMembers(k: number, filter: (member: Member) => boolean): Member[] {
    const out: Member[] = [];
    const n = this.probeOrder.length;
    if (k <= 0 || n <= 1) return out;
    const picked = new Set<string>();
    for (let attempt = 0; attempt < 3 * n && out.length < k; attempt++) {
      const name = this.probeOrder[Math.floor(this.config.random() * n)];
      if (name === this.config.name || picked.has(name)) continue;
      const member = this.table.get(name);
      if (member === undefined || !filter(member)) continue;
      picked.add(name);
      out.push(member);
    }
    return out;
  }

  private aliveMessage(member: Member): AliveMessage {
    return { type: 'alive', node: member.name, address: member.address, incarnation: member.incarnation, tags: member.tags };
  }

  private self(): Member {
    const self = this.table.get(this.config.name);
    invariant(self !== undefined, 'the local member is always in its own pool');
    return self;
  }

  /** A member's record with `changes`, in its place in the table. */
  private replace(member: Member, changes: Partial<Omit<Member, 'name'>>): Member {
    // Object.assign, not `{ ...member, ...changes }`: V8's slow path (test/checkers/hot-path-spread.test.ts).
    const updated: Member = Object.assign({}, member, changes);
    this.table.set(member.name, updated);
    return updated;
  }

  private infoOf(alive: AliveMessage, state: MemberInfo['state']): MemberInfo {
    return { name: alive.node, address: alive.address, incarnation: alive.incarnation, state, tags: alive.tags, stateChangeMs: this.nowMs };
  }

  private shuffle(names: string[]): void {
    for (let i = names.length - 1; i > 0; i--) {
      const j = Math.floor(this.config.random() * (i + 1));
      [names[i], names[j]] = [names[j], names[i]];
    }
  }

  private randomMs(spanMs: number): number {
    return Math.floor(this.config.random() * spanMs);
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void {
    this.events.push(fields === undefined ? { type: 'log', level, message } : { type: 'log', level, message, fields });
  }
}

function isLive(state: MemberInfo['state']): boolean {
  return state === 'alive' || state === 'suspect';
}

function sameTags(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const aKeys = Object.keys(a);
  if (aKeys.length !== Object.keys(b).length) return false;
  return aKeys.every((key) => b[key] === a[key]);
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return bytes;
}
