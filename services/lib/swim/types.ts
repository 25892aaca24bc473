/** What the SWIM core hands its shell: members, events, and the packets and streams to send. */
import { Message, MemberState, PingMessage, PushPull } from './messages';

export interface MemberInfo {
  readonly name: string;
  /** "ip:port" in this pool. */
  readonly address: string;
  readonly incarnation: number;
  readonly state: MemberState;
  readonly tags: Readonly<Record<string, string>>;
  /** When the state last changed, on the core's clock (ms). */
  readonly stateChangeMs: number;
}

/** Serf's member status, as Consul's API shows it: suspect is still alive; dead is failed. */
export type SerfStatus = 'alive' | 'leaving' | 'left' | 'failed';

export function serfStatus(state: MemberState): SerfStatus {
  switch (state) {
    case 'alive':
    case 'suspect':
      return 'alive';
    case 'dead':
      return 'failed';
    case 'left':
      return 'left';
  }
}

/** Consul's integer for a Serf status in `/v1/agent/members` (0 none, 1 alive, 2 leaving, 3 left, 4 failed). */
export const SERF_STATUS_CODE: Readonly<Record<SerfStatus, number>> = { alive: 1, leaving: 2, left: 3, failed: 4 };

export type SwimEvent =
  | { readonly type: 'member-join'; readonly member: MemberInfo }
  | { readonly type: 'member-update'; readonly member: MemberInfo }
  | { readonly type: 'member-failed'; readonly member: MemberInfo }
  | { readonly type: 'member-leave'; readonly member: MemberInfo }
  | { readonly type: 'member-reap'; readonly member: MemberInfo }
  /** A member went from alive to suspect: not an event Serf shows, but what a detector test watches. */
  | { readonly type: 'member-suspect'; readonly member: MemberInfo }
  | { readonly type: 'user-event'; readonly name: string; readonly payload: Uint8Array; readonly ltime: number }
  /** An ack for our probe of `node` arrived; the shell knows when the ping left, so it has the RTT. */
  | { readonly type: 'ping-complete'; readonly node: string; readonly seqNo: number; readonly payload: Uint8Array }
  | { readonly type: 'log'; readonly level: 'debug' | 'info' | 'warn' | 'error'; readonly message: string; readonly fields?: Readonly<Record<string, unknown>> };

/** One datagram: several messages make a compound packet. */
export interface OutgoingPacket {
  readonly to: string;
  readonly messages: readonly Message[];
}

/**
 * A push/pull over a stream: the shell opens a connection to `to`, sends `state`, reads the
 * answer, and calls `streamCompleted(id, answer)` (or with an error, or `streamTimedOut`).
 */
export interface OutgoingStream {
  readonly id: number;
  readonly to: string;
  readonly state: PushPull;
}

/**
 * memberlist's TCP fallback ping: the shell dials `to`, sends `ping` as a stream frame, waits at
 * most `timeoutMs` for the ack, and calls `tcpPingCompleted(ping.seqNo, outcome)`.
 */
export interface OutgoingTcpPing {
  readonly to: string;
  readonly ping: PingMessage;
  readonly timeoutMs: number;
}

/**
 * How a TCP ping ended: `ack` (the member answered), `refused` (the connection was refused: the
 * host is up and nothing listens at the address), `no-answer` (anything else: a timeout, an
 * error, an answer that is not the member's ack).
 */
export type TcpPingOutcome = 'ack' | 'refused' | 'no-answer';

export interface Ready {
  readonly packets: readonly OutgoingPacket[];
  readonly streams: readonly OutgoingStream[];
  readonly tcpPings: readonly OutgoingTcpPing[];
  readonly events: readonly SwimEvent[];
}

/** The outcome of a push/pull the core started: `error` is Consul's text when a merge was refused. */
export type StreamOutcome = { readonly id: number; readonly address: string; readonly join: boolean; readonly error?: string };
