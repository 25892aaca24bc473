/**
 * The messages of the SWIM core, decoded. The shell turns them into protobuf frames
 * (`wire-codec.ts`, proto/consulate/gossip/v1/wire.proto); the core never sees bytes. Names
 * follow memberlist's (`net.go`): ping, indirect ping, ack, nack, alive, suspect, dead, plus
 * Serf's leave intent and user event, and the push/pull state exchange that runs over a stream.
 */

/** A member's state as SWIM knows it. Serf shows `suspect` as alive and `dead` as failed. */
export type MemberState = 'alive' | 'suspect' | 'dead' | 'left';

/** Probe `node` directly; the receiver acks only when it is `node` (memberlist ignores a ping for someone else). */
export interface PingMessage {
  readonly type: 'ping';
  readonly seqNo: number;
  readonly node: string;
}

/** Ask the receiver to probe `target` at `targetAddress` for us and relay the ack (SWIM §4.2). */
export interface IndirectPingMessage {
  readonly type: 'indirect-ping';
  readonly seqNo: number;
  readonly target: string;
  readonly targetAddress: string;
  /** Lifeguard: send a nack if the target does not answer in time, so the asker can tell its own health. */
  readonly nack: boolean;
}

export interface AckMessage {
  readonly type: 'ack';
  readonly seqNo: number;
  /** Opaque to the core: the pool's Vivaldi coordinate rides here (memberlist's PingDelegate). */
  readonly payload: Uint8Array;
}

export interface NackMessage {
  readonly type: 'nack';
  readonly seqNo: number;
}

export interface AliveMessage {
  readonly type: 'alive';
  readonly node: string;
  /** "ip:port" of the member in this pool. */
  readonly address: string;
  readonly incarnation: number;
  readonly tags: Readonly<Record<string, string>>;
}

export interface SuspectMessage {
  readonly type: 'suspect';
  readonly node: string;
  readonly incarnation: number;
  /** Who suspects: independent confirmations shorten the suspicion timeout (Lifeguard). */
  readonly from: string;
}

/** `from === node` means the node left on purpose (memberlist encodes a leave this way). */
export interface DeadMessage {
  readonly type: 'dead';
  readonly node: string;
  readonly incarnation: number;
  readonly from: string;
}

/** Serf's leave intent, used by force-leave: a failed member becomes left. Ordered by Lamport time. */
export interface LeaveIntentMessage {
  readonly type: 'leave-intent';
  readonly node: string;
  readonly ltime: number;
}

/** A user event (Serf's `event`), ordered and de-duplicated by Lamport time. */
export interface UserEventMessage {
  readonly type: 'user-event';
  readonly ltime: number;
  readonly name: string;
  readonly payload: Uint8Array;
}

/** What travels in one datagram (several make a compound packet). */
export type Message =
  | PingMessage
  | IndirectPingMessage
  | AckMessage
  | NackMessage
  | AliveMessage
  | SuspectMessage
  | DeadMessage
  | LeaveIntentMessage
  | UserEventMessage;

/** The messages that are disseminated by piggybacking (the broadcast queue holds only these). */
export type Broadcast = AliveMessage | SuspectMessage | DeadMessage | LeaveIntentMessage | UserEventMessage;

/** One member as a push/pull exchange carries it. */
export interface PushPullMember {
  readonly node: string;
  readonly address: string;
  readonly incarnation: number;
  readonly state: MemberState;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * The full state sync over a stream (memberlist's pushPullMsg, with Serf's clocks): sent on join
 * and every push/pull interval; the receiver answers with its own state and merges the sender's.
 */
export interface PushPull {
  readonly join: boolean;
  readonly members: readonly PushPullMember[];
  /** Serf's member Lamport clock (leave intents) and event clock (user events). */
  readonly memberLtime: number;
  readonly eventLtime: number;
}
