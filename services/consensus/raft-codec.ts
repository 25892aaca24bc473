/** Raft messages between the core's shape (raft/messages.ts) and the wire's (raft.proto). */
import { RaftMessage, RaftMessage_MessageType } from '../gen/consulate/consensus/v1/raft';
import { Message, MessageType } from './raft/messages';
import { entryFromProto, entryToProto, snapshotMetaFromProto, snapshotMetaToProto } from './storage/entry-codec';

const TO_WIRE: Record<MessageType, RaftMessage_MessageType> = {
  'pre-vote': RaftMessage_MessageType.MESSAGE_TYPE_PRE_VOTE,
  'pre-vote-response': RaftMessage_MessageType.MESSAGE_TYPE_PRE_VOTE_RESPONSE,
  vote: RaftMessage_MessageType.MESSAGE_TYPE_VOTE,
  'vote-response': RaftMessage_MessageType.MESSAGE_TYPE_VOTE_RESPONSE,
  append: RaftMessage_MessageType.MESSAGE_TYPE_APPEND,
  'append-response': RaftMessage_MessageType.MESSAGE_TYPE_APPEND_RESPONSE,
  heartbeat: RaftMessage_MessageType.MESSAGE_TYPE_HEARTBEAT,
  'heartbeat-response': RaftMessage_MessageType.MESSAGE_TYPE_HEARTBEAT_RESPONSE,
  snapshot: RaftMessage_MessageType.MESSAGE_TYPE_SNAPSHOT,
  'timeout-now': RaftMessage_MessageType.MESSAGE_TYPE_TIMEOUT_NOW,
};

const FROM_WIRE = new Map<RaftMessage_MessageType, MessageType>(Object.entries(TO_WIRE).map(([type, wire]) => [wire, type as MessageType]));

/** `fromAddress`: the sender's own address, for a receiver that does not know it yet (transport.ts). */
export function messageToWire(m: Message, fromAddress = ''): RaftMessage {
  return {
    type: TO_WIRE[m.type],
    from: m.from,
    to: m.to,
    term: BigInt(m.term),
    logIndex: BigInt(m.logIndex),
    logTerm: BigInt(m.logTerm),
    entries: m.entries.map(entryToProto),
    commit: BigInt(m.commit),
    success: m.success,
    matchIndex: BigInt(m.matchIndex),
    snapshot: m.snapshot === undefined ? undefined : { metadata: snapshotMetaToProto(m.snapshot.meta), data: Buffer.from(m.snapshot.data) },
    round: BigInt(m.round),
    transfer: m.transfer,
    rejectTerm: BigInt(m.rejectTerm),
    fromAddress,
  };
}

/** Throws on a message that is not a valid Raft message of ours; the caller drops it. */
export function messageFromWire(w: RaftMessage): Message {
  const type = FROM_WIRE.get(w.type);
  if (type === undefined) throw new Error(`unknown Raft message type ${w.type}`);
  if (w.from === '' || w.to === '') throw new Error('Raft message without from or to');
  if (type === 'snapshot' && (w.snapshot?.metadata === undefined)) throw new Error('snapshot message without a snapshot');
  return {
    type,
    from: w.from,
    to: w.to,
    term: safe(w.term),
    logIndex: safe(w.logIndex),
    logTerm: safe(w.logTerm),
    entries: w.entries.map(entryFromProto),
    commit: safe(w.commit),
    success: w.success,
    matchIndex: safe(w.matchIndex),
    rejectTerm: safe(w.rejectTerm),
    snapshot: w.snapshot?.metadata === undefined ? undefined : { meta: snapshotMetaFromProto(w.snapshot.metadata), data: new Uint8Array(w.snapshot.data) },
    round: safe(w.round),
    transfer: w.transfer,
  };
}

function safe(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`value ${value} is past 2^53`);
  return Number(value);
}
