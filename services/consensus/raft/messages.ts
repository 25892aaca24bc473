/**
 * The messages Raft servers exchange. One flat shape for every type, as etcd-io/raft's
 * `Message`: simple to encode (raft.proto's RaftMessage) and to print in golden transcripts.
 */
import { Entry, NodeId, Snapshot } from './types';

export type MessageType =
  | 'pre-vote'
  | 'pre-vote-response'
  | 'vote'
  | 'vote-response'
  | 'append'
  | 'append-response'
  | 'heartbeat'
  | 'heartbeat-response'
  | 'snapshot'
  | 'timeout-now';

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /**
   * vote, pre-vote: the candidate's last log index. append: the index before `entries`.
   * append-response (rejected): the index of the append that was rejected.
   */
  readonly logIndex: number;
  /** vote, pre-vote: the candidate's last log term. append: the term at `logIndex`. */
  readonly logTerm: number;
  readonly entries: readonly Entry[];
  /** append, heartbeat: the leader's commit index (heartbeat: no more than the follower matches). */
  readonly commit: number;
  /** responses: vote granted, append matched. */
  readonly success: boolean;
  /** append-response: the last index now matching (success), or a hint where to retry (reject). */
  readonly matchIndex: number;
  /** append-response (rejected): the term of the follower's entry at `matchIndex`. */
  readonly rejectTerm: number;
  readonly snapshot: Snapshot | undefined;
  /** heartbeat and its response: the round, for ReadIndex and the leader lease. */
  readonly round: number;
  /** vote: sent because the leader handed over leadership, so it may disturb a live leader (§3.10). */
  readonly transfer: boolean;
}

/**
 * Whether a message may leave before the Ready it came in is on disk. A leader's appends may
 * (thesis §10.2.1: the leader writes its log in parallel with its followers, and counts itself
 * toward commit only once its write is done); a vote or an acknowledgement may not, since it
 * promises what is on disk.
 */
export function sendableBeforePersist(m: Message): boolean {
  return m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot' || m.type === 'timeout-now';
}

const BLANK: Omit<Message, 'type' | 'from' | 'to' | 'term'> = {
  logIndex: 0,
  logTerm: 0,
  entries: [],
  commit: 0,
  success: false,
  matchIndex: 0,
  rejectTerm: 0,
  snapshot: undefined,
  round: 0,
  transfer: false,
};

/**
 * Every message is built field by field, so all have one shape. Not `{ ...BLANK, ...fields }`: in
 * Node 20's V8 an object spread followed by more properties leaves the fast path, 7 µs a message
 * here against 0.03, and its garbage goes to the old generation (test/checkers/hot-path-spread.test.ts).
 */
export function message(fields: Pick<Message, 'type' | 'from' | 'to' | 'term'> & Partial<Message>): Message {
  return {
    type: fields.type,
    from: fields.from,
    to: fields.to,
    term: fields.term,
    logIndex: fields.logIndex ?? BLANK.logIndex,
    logTerm: fields.logTerm ?? BLANK.logTerm,
    entries: fields.entries ?? BLANK.entries,
    commit: fields.commit ?? BLANK.commit,
    success: fields.success ?? BLANK.success,
    matchIndex: fields.matchIndex ?? BLANK.matchIndex,
    rejectTerm: fields.rejectTerm ?? BLANK.rejectTerm,
    snapshot: fields.snapshot ?? BLANK.snapshot,
    round: fields.round ?? BLANK.round,
    transfer: fields.transfer ?? BLANK.transfer,
  };
}

/** A one-line description, for golden transcripts and debug logs. */
export function describeMessage(m: Message): string {
  const parts = [`${m.from}->${m.to}`, m.type, `term=${m.term}`];
  switch (m.type) {
    case 'pre-vote':
    case 'vote':
      parts.push(`last=${m.logIndex}/${m.logTerm}`);
      if (m.transfer) parts.push('transfer');
      break;
    case 'pre-vote-response':
    case 'vote-response':
      parts.push(m.success ? 'granted' : 'rejected');
      break;
    case 'append':
      parts.push(`prev=${m.logIndex}/${m.logTerm}`, `commit=${m.commit}`, `entries=[${m.entries.map(describeEntry).join(' ')}]`);
      break;
    case 'append-response':
      parts.push(m.success ? `match=${m.matchIndex}` : `reject=${m.logIndex} hint=${m.matchIndex}/${m.rejectTerm}`);
      break;
    case 'heartbeat':
      parts.push(`commit=${m.commit}`, `round=${m.round}`);
      break;
    case 'heartbeat-response':
      parts.push(`round=${m.round}`);
      break;
    case 'snapshot':
      parts.push(`snapshot=${m.snapshot?.meta.index}/${m.snapshot?.meta.term}`);
      break;
    case 'timeout-now':
      break;
  }
  return parts.join(' ');
}

export function describeEntry(e: Entry): string {
  switch (e.kind) {
    case 'normal':
      return `${e.index}/${e.term}:${Buffer.from(e.data).toString('utf8')}`;
    case 'config':
      return `${e.index}/${e.term}:${e.change.kind}(${e.change.member.id})`;
    case 'noop':
      return `${e.index}/${e.term}:noop`;
  }
}
