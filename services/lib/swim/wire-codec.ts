/**
 * The SWIM wire format (proto/consulate/gossip/v1/wire.proto): the core's messages to and from
 * protobuf bytes, for datagrams (a `Packet`) and for TCP streams (`StreamFrame`s, each after a
 * 4-byte big-endian length). Pure: no sockets, no clock.
 *
 * Decoding takes bytes from the network, so it never throws: truncated, random or hostile bytes
 * give `{ error }`, and so does anything past the limits below. Encoding takes the core's own
 * messages, so a message past a limit there is a bug in the caller and stops loudly
 * (`validateMessage` / `validatePushPull` tell beforehand).
 */
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import * as wire from '../../gen/consulate/gossip/v1/wire';
import { invariant } from '../invariant';
import { AckMessage, MemberState, Message, PingMessage, PushPull, PushPullMember } from './messages';

/** The largest UDP payload over IPv4 (65,535 − 8 UDP − 20 IP header bytes). */
export const MAX_PACKET_BYTES = 65_507;
/** The largest stream frame: memberlist's `maxPushStateBytes`. */
export const MAX_STREAM_FRAME_BYTES = 20 * 1024 * 1024;
/** The most members one push/pull may carry. */
export const MAX_PUSH_PULL_MEMBERS = 1_048_576;
/** The length prefix of a stream frame, big-endian. */
export const STREAM_FRAME_HEADER_BYTES = 4;

/** Field limits, in UTF-8 bytes; a message past one is refused on decode and is a bug on encode. */
export const WIRE_LIMITS = {
  nodeNameBytes: 128,
  addressBytes: 256,
  /**
   * A server declaring the most segments (64) carries an `sl_<name>` tag for each beside its ~10
   * own, so the limits leave room for that (memberlist's 512-byte meta could not: consul#7004).
   */
  tagCount: 96,
  /** Every key and value of a member's tags together: 64 × (3 + 64 + 1 + 21) bytes of sl_ tags fit. */
  tagBytes: 8 * 1024,
  eventNameBytes: 128,
  /** A user event's payload, and an ack's. */
  payloadBytes: 64 * 1024,
  /** The text of a stream's error frame. */
  errorMessageBytes: 4 * 1024,
} as const;

/** A stream frame, decoded. The opener sends a request; the receiver answers or refuses. */
export type StreamFrame =
  | { readonly type: 'push-pull-request'; readonly state: PushPull }
  | { readonly type: 'push-pull-response'; readonly state: PushPull }
  /** memberlist's TCP fallback probe, and its answer. */
  | { readonly type: 'ping'; readonly ping: PingMessage }
  | { readonly type: 'ack'; readonly ack: AckMessage }
  /** A refusal, with the text the opener shows (Consul's, where it has one). */
  | { readonly type: 'error'; readonly message: string };

// ---------------------------------------------------------------------------------------------
// Datagrams

/** One datagram with `messages`, in order. Throws on an empty list, a message past a limit, or a packet over MAX_PACKET_BYTES. */
export function encodePacket(messages: readonly Message[]): Uint8Array {
  invariant(messages.length > 0, 'a gossip packet needs at least one message');
  // A repeated field's encoding is its elements' encodings one after another, so a packet is the
  // concatenation of one-message packets.
  const parts = messages.map(encodedMessage);
  let length = 0;
  for (const part of parts) length += part.length;
  invariant(length <= MAX_PACKET_BYTES, () => `a gossip packet of ${length} bytes is above the ${MAX_PACKET_BYTES}-byte datagram limit: fill packets with messageSize()`);
  if (parts.length === 1) return parts[0];
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

/** The messages of one datagram, or why it was refused. Never throws. */
export function decodePacket(bytes: Uint8Array): { messages: Message[] } | { error: string } {
  if (bytes.length > MAX_PACKET_BYTES) return { error: `gossip packet of ${bytes.length} bytes is above the ${MAX_PACKET_BYTES}-byte limit` };
  // Decoded in two steps, as one Packet.decode would be: every message's protobuf first (a
  // malformed one refuses the packet), then each is converted and checked in order.
  let bodies: Uint8Array[];
  const keys: (string | undefined)[] = [];
  const messages: (Message | undefined)[] = [];
  const decoded: wire.GossipMessage[] = [];
  try {
    bodies = packetMessageBodies(bytes);
    for (const [index, body] of bodies.entries()) {
      keys[index] = RecentBroadcasts.keyOf(body);
      messages[index] = recentBroadcasts.get(keys[index]);
      if (messages[index] === undefined) decoded[index] = wire.GossipMessage.decode(body);
    }
  } catch (cause) {
    return { error: `malformed gossip packet: ${reasonOf(cause)}` };
  }
  if (bodies.length === 0) return { error: 'gossip packet carries no message' };
  for (let index = 0; index < bodies.length; index++) {
    if (messages[index] !== undefined) continue;
    let message: Message;
    try {
      message = fromWireMessage(decoded[index]);
    } catch (cause) {
      return { error: `gossip packet, message ${index + 1} of ${bodies.length}: ${reasonOf(cause)}` };
    }
    messages[index] = message;
    recentBroadcasts.remember(keys[index], message);
  }
  return { messages: messages as Message[] };
}

/**
 * The bytes of each `messages` entry of a Packet, in order, read the way the generated
 * Packet.decode reads them (unknown fields skipped, an end-group tag or a zero tag ends it).
 * Throws on malformed protobuf.
 */
function packetMessageBodies(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const bodies: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === PACKET_MESSAGES_TAG) {
      bodies.push(reader.bytes());
      continue;
    }
    if ((tag & 7) === WireType.EndGroup || tag === 0) break;
    reader.skip(tag & 7);
  }
  return bodies;
}

/** Field 1 (`messages`), length-delimited. */
const PACKET_MESSAGES_TAG = (1 << 3) | WireType.LengthDelimited;

/**
 * Broadcasts decoded lately, by their bytes. Every member sends each alive, suspect, dead, leave
 * intent and user event it learns retransmitMult × log10(N + 1) times, each copy the same bytes
 * (`encodedMessage`), so a member receives most of them many times over: in a burst of joins,
 * the decoding and checking of the same alive messages and their tags was the largest part of
 * every member's CPU. A copy seen lately is now the same Message object, checked once, and when
 * passed on, encoded once. Only broadcasts are kept (pings and acks are never repeated), and only
 * small ones; the oldest goes when the map is full.
 */
class RecentBroadcasts {
  private static readonly MAX_ENTRIES = 1_024;
  private static readonly MAX_BYTES = 2_048;
  private readonly byBytes = new Map<string, Message>();

  /**
   * The key of a GossipMessage worth keeping: a small one whose body is one of fields 5 (alive) to
   * 9 (user event), by its first tag; undefined for any other.
   */
  static keyOf(body: Uint8Array): string | undefined {
    const broadcast = body.length > 0 && body.length <= RecentBroadcasts.MAX_BYTES && body[0] >= BROADCAST_TAGS.first && body[0] <= BROADCAST_TAGS.last && (body[0] & 7) === WireType.LengthDelimited;
    return broadcast ? asBuffer(body).toString('latin1') : undefined;
  }

  get(key: string | undefined): Message | undefined {
    return key === undefined ? undefined : this.byBytes.get(key);
  }

  remember(key: string | undefined, message: Message): void {
    if (key === undefined) return;
    if (this.byBytes.size >= RecentBroadcasts.MAX_ENTRIES) this.byBytes.delete(this.byBytes.keys().next().value!);
    this.byBytes.set(key, message);
  }
}

/** The one-byte tags of GossipMessage's broadcast bodies: alive (5) to user_event (9), length-delimited. */
const BROADCAST_TAGS = { first: (5 << 3) | WireType.LengthDelimited, last: (9 << 3) | WireType.LengthDelimited } as const;

const recentBroadcasts = new RecentBroadcasts();

/**
 * The exact number of bytes `message` adds to a Packet (its field tag, length and body), so that
 * a packet's size is the sum of its messages' sizes and the core can fill a datagram to a budget.
 */
export function messageSize(message: Message): number {
  return encodedMessage(message).length;
}

/**
 * Each message's encoding as a one-message Packet, validated, made once per message object: the
 * core's messages never change, and a broadcast rides 8 to 12 packets (its retransmit limit), each
 * of which also sizes it (messageSize) before it is sent.
 */
const encodedMessages = new WeakMap<Message, Uint8Array>();

function encodedMessage(message: Message): Uint8Array {
  let bytes = encodedMessages.get(message);
  if (bytes === undefined) {
    assertValid(validateMessage(message));
    bytes = wire.Packet.encode({ messages: [toWireMessage(message)] }).finish();
    encodedMessages.set(message, bytes);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Streams

/** The body of one stream frame, without its length prefix (see `lengthPrefixed`). Throws on a frame past a limit. */
export function encodeStreamFrame(frame: StreamFrame): Uint8Array {
  assertValid(validateStreamFrame(frame));
  const bytes = wire.StreamFrame.encode({ frame: toWireFrame(frame) }).finish();
  invariant(bytes.length <= MAX_STREAM_FRAME_BYTES, () => `a stream frame of ${bytes.length} bytes is above the ${MAX_STREAM_FRAME_BYTES}-byte limit`);
  return bytes;
}

/**
 * The exact length of `encodeStreamFrame` for a push/pull frame, counted without encoding (the
 * scale simulation sizes every push/pull of 10,000 members). Like the encoder, it leaves out
 * proto3 defaults; a member's tags are sized once per tags object (tags are never changed in place).
 */
export function pushPullFrameSize(state: PushPull): number {
  let members = 0;
  for (const member of state.members) {
    const body = stringFieldSize(member.node) + stringFieldSize(member.address) + numberFieldSize(member.incarnation) + numberFieldSize(STATE_TO_WIRE[member.state]) + tagsSize(member.tags);
    members += nestedFieldSize(body);
  }
  const body = (state.join ? 2 : 0) + members + numberFieldSize(state.memberLtime) + numberFieldSize(state.eventLtime);
  return nestedFieldSize(body);
}

const tagSizes = new WeakMap<Readonly<Record<string, string>>, number>();

/** A map<string, string> field: one nested entry per tag, each with its key and value fields. */
function tagsSize(tags: Readonly<Record<string, string>>): number {
  let size = tagSizes.get(tags);
  if (size === undefined) {
    size = 0;
    for (const [key, value] of Object.entries(tags)) size += nestedFieldSize(stringFieldSize(key) + stringFieldSize(value));
    tagSizes.set(tags, size);
  }
  return size;
}

/** Field numbers below 16 take a one-byte tag, as every field sized here does. */
function nestedFieldSize(bodyBytes: number): number {
  return 1 + varintSize(bodyBytes) + bodyBytes;
}

function stringFieldSize(value: string): number {
  return value.length === 0 ? 0 : nestedFieldSize(Buffer.byteLength(value, 'utf8'));
}

function numberFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

function varintSize(value: number): number {
  let size = 1;
  for (let rest = value; rest >= 128; rest = Math.floor(rest / 128)) size++;
  return size;
}

/** The frame in `bytes` (the body after the length prefix), or why it was refused. Never throws. */
export function decodeStreamFrame(bytes: Uint8Array): { frame: StreamFrame } | { error: string } {
  if (bytes.length > MAX_STREAM_FRAME_BYTES) return { error: `stream frame of ${bytes.length} bytes is above the ${MAX_STREAM_FRAME_BYTES}-byte limit` };
  // Count before decoding: 20 MiB of two-byte members would be ten million objects to refuse.
  const counted = countPushPullEntries(bytes);
  if (typeof counted === 'string') return { error: counted };
  let decoded: wire.StreamFrame;
  try {
    decoded = wire.StreamFrame.decode(bytes);
  } catch (cause) {
    return { error: `malformed stream frame: ${reasonOf(cause)}` };
  }
  const body = decoded.frame;
  if (body === undefined) return { error: 'stream frame is empty or of a kind this version does not know' };
  try {
    const frame = fromWireFrame(body);
    const problem = validateStreamFrame(frame);
    if (problem !== undefined) throw new Refusal(problem);
    return { frame };
  } catch (cause) {
    return { error: `stream frame (${FRAME_NAMES[body.$case]}): ${reasonOf(cause)}` };
  }
}

/**
 * The length of the frame that follows a 4-byte big-endian header, or why the stream must be
 * closed. A length above MAX_STREAM_FRAME_BYTES is refused before anything is allocated for it
 * (memberlist's TestReadRemoteState_Limits: a header claiming ten million nodes closes the stream).
 */
export function frameLength(header: Uint8Array): { length: number } | { error: string } {
  if (header.length < STREAM_FRAME_HEADER_BYTES) return { error: `stream frame header needs ${STREAM_FRAME_HEADER_BYTES} bytes, got ${header.length}` };
  const length = new DataView(header.buffer, header.byteOffset, STREAM_FRAME_HEADER_BYTES).getUint32(0, false);
  if (length === 0) return { error: 'stream frame of 0 bytes carries nothing' };
  if (length > MAX_STREAM_FRAME_BYTES) return { error: `stream frame of ${length} bytes is above the ${MAX_STREAM_FRAME_BYTES}-byte limit (memberlist's push/pull limit); closing the stream` };
  return { length };
}

/** `body` after its 4-byte big-endian length: what goes on the stream. */
export function lengthPrefixed(body: Uint8Array): Uint8Array {
  invariant(body.length > 0 && body.length <= MAX_STREAM_FRAME_BYTES, () => `a stream frame of ${body.length} bytes cannot be sent: frames hold 1 to ${MAX_STREAM_FRAME_BYTES} bytes`);
  const out = new Uint8Array(STREAM_FRAME_HEADER_BYTES + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false);
  out.set(body, STREAM_FRAME_HEADER_BYTES);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Limits

/** Why `message` cannot go on the wire, or undefined when it can. */
export function validateMessage(message: Message): string | undefined {
  switch (message.type) {
    case 'ping':
      return check(count('ping', 'seqNo', message.seqNo), text('ping', 'node', message.node, WIRE_LIMITS.nodeNameBytes, false));
    case 'indirect-ping':
      return check(
        count('indirect ping', 'seqNo', message.seqNo),
        text('indirect ping', 'target', message.target, WIRE_LIMITS.nodeNameBytes, true),
        text('indirect ping', 'targetAddress', message.targetAddress, WIRE_LIMITS.addressBytes, true),
      );
    case 'ack':
      return check(count('ack', 'seqNo', message.seqNo), bytes('ack', 'payload', message.payload, WIRE_LIMITS.payloadBytes));
    case 'nack':
      return count('nack', 'seqNo', message.seqNo);
    case 'alive':
      return check(
        text('alive', 'node', message.node, WIRE_LIMITS.nodeNameBytes, true),
        text('alive', 'address', message.address, WIRE_LIMITS.addressBytes, true),
        count('alive', 'incarnation', message.incarnation),
        tags('alive', message.tags),
      );
    case 'suspect':
    case 'dead':
      return check(
        text(message.type, 'node', message.node, WIRE_LIMITS.nodeNameBytes, true),
        count(message.type, 'incarnation', message.incarnation),
        text(message.type, 'from', message.from, WIRE_LIMITS.nodeNameBytes, true),
      );
    case 'leave-intent':
      return check(text('leave intent', 'node', message.node, WIRE_LIMITS.nodeNameBytes, true), count('leave intent', 'ltime', message.ltime));
    case 'user-event':
      return check(
        count('user event', 'ltime', message.ltime),
        text('user event', 'name', message.name, WIRE_LIMITS.eventNameBytes, true),
        bytes('user event', 'payload', message.payload, WIRE_LIMITS.payloadBytes),
      );
    default:
      return `unknown message type ${quote(String((message as { type: unknown }).type))}`;
  }
}

/** Why `state` cannot go on the wire, or undefined when it can. */
export function validatePushPull(state: PushPull): string | undefined {
  if (state.members.length > MAX_PUSH_PULL_MEMBERS) return `${state.members.length} members is above the limit of ${MAX_PUSH_PULL_MEMBERS}`;
  const clocks = check(count('push/pull', 'memberLtime', state.memberLtime), count('push/pull', 'eventLtime', state.eventLtime));
  if (clocks !== undefined) return clocks;
  for (const [index, member] of state.members.entries()) {
    const where = `push/pull member ${index + 1}`;
    const problem = check(
      text(where, 'node', member.node, WIRE_LIMITS.nodeNameBytes, true),
      text(where, 'address', member.address, WIRE_LIMITS.addressBytes, true),
      count(where, 'incarnation', member.incarnation),
      STATE_TO_WIRE[member.state] === undefined ? `${where}: unknown state ${quote(String(member.state))}` : undefined,
      tags(where, member.tags),
    );
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function validateStreamFrame(frame: StreamFrame): string | undefined {
  switch (frame.type) {
    case 'push-pull-request':
    case 'push-pull-response':
      return validatePushPull(frame.state);
    case 'error':
      return text('stream error', 'message', frame.message, WIRE_LIMITS.errorMessageBytes, true);
    case 'ping':
      return validateMessage(frame.ping);
    case 'ack':
      return validateMessage(frame.ack);
  }
}

function check(...problems: (string | undefined)[]): string | undefined {
  return problems.find((problem) => problem !== undefined);
}

// Proto3 strings are UTF-8: a lone surrogate would come back as U+FFFD, so it cannot be sent.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** `field` names the field in the error; a function is called only when there is one (tags name theirs by key). */
function text(where: string, field: string | (() => string), value: string, maxBytes: number, required: boolean): string | undefined {
  const name = () => (typeof field === 'string' ? field : field());
  if (typeof value !== 'string') return `${where}: ${name()} is not a string`;
  if (required && value.length === 0) return `${where}: ${name()} is empty`;
  const length = Buffer.byteLength(value, 'utf8');
  if (length > maxBytes) return `${where}: ${name()} of ${length} bytes is above the limit of ${maxBytes}`;
  if (LONE_SURROGATE.test(value)) return `${where}: ${name()} is not valid Unicode (a lone surrogate)`;
  return undefined;
}

function count(where: string, field: string, value: number): string | undefined {
  if (!Number.isSafeInteger(value) || value < 0) return `${where}: ${field} ${value} is not an integer in [0, ${Number.MAX_SAFE_INTEGER}]`;
  return undefined;
}

function bytes(where: string, field: string, value: Uint8Array, maxBytes: number): string | undefined {
  if (!(value instanceof Uint8Array)) return `${where}: ${field} is not a Uint8Array`;
  if (value.length > maxBytes) return `${where}: ${field} of ${value.length} bytes is above the limit of ${maxBytes}`;
  return undefined;
}

/** Tags objects already found valid: a member's tags go out in every alive message and push/pull, and are never changed in place. */
const validTags = new WeakSet<Readonly<Record<string, string>>>();

function tags(where: string, value: Readonly<Record<string, string>>): string | undefined {
  if (validTags.has(value)) return undefined;
  const problem = tagsProblem(where, value);
  if (problem === undefined && typeof value === 'object' && value !== null) validTags.add(value);
  return problem;
}

function tagsProblem(where: string, value: Readonly<Record<string, string>>): string | undefined {
  const entries = Object.entries(value);
  if (entries.length > WIRE_LIMITS.tagCount) return `${where}: ${entries.length} tags is above the limit of ${WIRE_LIMITS.tagCount}`;
  let total = 0;
  for (const [key, tagValue] of entries) {
    // A decoder's plain object cannot hold it as a key, so it would vanish on the other side.
    if (key === '__proto__') return `${where}: "__proto__" cannot be a tag name`;
    const problem = check(
      text(where, () => `tag name ${quote(key)}`, key, WIRE_LIMITS.tagBytes, false),
      text(where, () => `tag ${quote(key)}`, tagValue, WIRE_LIMITS.tagBytes, false),
    );
    if (problem !== undefined) return problem;
    total += Buffer.byteLength(key, 'utf8') + Buffer.byteLength(tagValue, 'utf8');
  }
  if (total > WIRE_LIMITS.tagBytes) return `${where}: tags of ${total} bytes in all are above the limit of ${WIRE_LIMITS.tagBytes}`;
  return undefined;
}

// A peer's text in our error stays short: the error may go back to it in a 4 KiB error frame.
function quote(value: string): string {
  return JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}...` : value);
}

function assertValid(problem: string | undefined): void {
  invariant(problem === undefined, () => `cannot encode for the gossip wire: ${problem}`);
}

function reasonOf(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

// ---------------------------------------------------------------------------------------------
// Structural pre-scan of a stream frame

/**
 * Walks StreamFrame → PushPull → PushPullMember without decoding them, and refuses a frame with
 * more members than MAX_PUSH_PULL_MEMBERS or a member with more tags than the limit: the counts
 * are what multiply allocations in a full decode. Malformed bytes are left to the decoder.
 */
function countPushPullEntries(bytes: Uint8Array): string | undefined {
  try {
    const reader = new BinaryReader(bytes);
    let members = 0;
    forEachField(reader, reader.len, (frameField, frameType) => {
      if ((frameField !== 1 && frameField !== 2) || frameType !== WireType.LengthDelimited) return false;
      forEachField(reader, submessageEnd(reader), (stateField, stateType) => {
        if (stateField !== 2 || stateType !== WireType.LengthDelimited) return false;
        members += 1;
        if (members > MAX_PUSH_PULL_MEMBERS) throw new Refusal(`push/pull carries more than ${MAX_PUSH_PULL_MEMBERS} members`);
        let tagCount = 0;
        forEachField(reader, submessageEnd(reader), (memberField, memberType) => {
          if (memberField !== 5 || memberType !== WireType.LengthDelimited) return false;
          tagCount += 1;
          if (tagCount > WIRE_LIMITS.tagCount) throw new Refusal(`push/pull member ${members}: more than ${WIRE_LIMITS.tagCount} tags`);
          return false;
        });
        return true;
      });
      return true;
    });
    return undefined;
  } catch (cause) {
    return cause instanceof Refusal ? cause.message : undefined;
  }
}

/** Thrown inside the decoder for bytes that are well-formed protobuf but not acceptable; caught at its edge. */
class Refusal extends Error {}

function submessageEnd(reader: BinaryReader): number {
  const length = reader.uint32();
  const end = reader.pos + length;
  if (end > reader.len) throw new RangeError('premature end of a submessage');
  return end;
}

/** Calls `visit` for each field up to `end`; a visit that returns false has the field skipped. */
function forEachField(reader: BinaryReader, end: number, visit: (field: number, type: WireType) => boolean): void {
  while (reader.pos < end) {
    const [field, type] = reader.tag();
    if (!visit(field, type)) reader.skip(type, field);
  }
}

// ---------------------------------------------------------------------------------------------
// Between the core's messages and the generated wire types

const STATE_TO_WIRE: Readonly<Record<MemberState, wire.MemberState>> = {
  alive: wire.MemberState.MEMBER_STATE_ALIVE,
  suspect: wire.MemberState.MEMBER_STATE_SUSPECT,
  dead: wire.MemberState.MEMBER_STATE_DEAD,
  left: wire.MemberState.MEMBER_STATE_LEFT,
};

const STATE_FROM_WIRE: ReadonlyMap<number, MemberState> = new Map(Object.entries(STATE_TO_WIRE).map(([state, code]) => [code, state as MemberState]));

function toWireMessage(message: Message): wire.GossipMessage {
  switch (message.type) {
    case 'ping':
      return { body: { $case: 'ping', value: { seqNo: BigInt(message.seqNo), node: message.node } } };
    case 'indirect-ping':
      return { body: { $case: 'indirectPing', value: { seqNo: BigInt(message.seqNo), target: message.target, targetAddress: message.targetAddress, nack: message.nack } } };
    case 'ack':
      return { body: { $case: 'ack', value: { seqNo: BigInt(message.seqNo), payload: asBuffer(message.payload) } } };
    case 'nack':
      return { body: { $case: 'nack', value: { seqNo: BigInt(message.seqNo) } } };
    case 'alive':
      return { body: { $case: 'alive', value: { node: message.node, address: message.address, incarnation: BigInt(message.incarnation), tags: { ...message.tags } } } };
    case 'suspect':
      return { body: { $case: 'suspect', value: { node: message.node, incarnation: BigInt(message.incarnation), from: message.from } } };
    case 'dead':
      return { body: { $case: 'dead', value: { node: message.node, incarnation: BigInt(message.incarnation), from: message.from } } };
    case 'leave-intent':
      return { body: { $case: 'leaveIntent', value: { node: message.node, ltime: BigInt(message.ltime) } } };
    case 'user-event':
      return { body: { $case: 'userEvent', value: { ltime: BigInt(message.ltime), name: message.name, payload: asBuffer(message.payload) } } };
  }
}

/** The core's message for a decoded GossipMessage; throws a Refusal for one it must not accept. */
function fromWireMessage(gossip: wire.GossipMessage): Message {
  const message = convertWireMessage(gossip);
  const problem = validateMessage(message);
  if (problem !== undefined) throw new Refusal(problem);
  return message;
}

function convertWireMessage(gossip: wire.GossipMessage): Message {
  const body = gossip.body;
  if (body === undefined) throw new Refusal('empty message, or a kind this version does not know');
  switch (body.$case) {
    case 'ping':
      return { type: 'ping', seqNo: safe(body.value.seqNo, 'ping seqNo'), node: body.value.node };
    case 'indirectPing': {
      const v = body.value;
      return { type: 'indirect-ping', seqNo: safe(v.seqNo, 'indirect ping seqNo'), target: v.target, targetAddress: v.targetAddress, nack: v.nack };
    }
    case 'ack':
      return { type: 'ack', seqNo: safe(body.value.seqNo, 'ack seqNo'), payload: asUint8Array(body.value.payload) };
    case 'nack':
      return { type: 'nack', seqNo: safe(body.value.seqNo, 'nack seqNo') };
    case 'alive': {
      const v = body.value;
      return { type: 'alive', node: v.node, address: v.address, incarnation: safe(v.incarnation, 'alive incarnation'), tags: copyTags(v.tags) };
    }
    case 'suspect':
    case 'dead': {
      const v = body.value;
      return { type: body.$case, node: v.node, incarnation: safe(v.incarnation, `${body.$case} incarnation`), from: v.from };
    }
    case 'leaveIntent':
      return { type: 'leave-intent', node: body.value.node, ltime: safe(body.value.ltime, 'leave intent ltime') };
    case 'userEvent': {
      const v = body.value;
      return { type: 'user-event', ltime: safe(v.ltime, 'user event ltime'), name: v.name, payload: asUint8Array(v.payload) };
    }
  }
}

function toWirePushPull(state: PushPull): wire.PushPull {
  return {
    join: state.join,
    members: state.members.map((member) => ({
      node: member.node,
      address: member.address,
      incarnation: BigInt(member.incarnation),
      state: STATE_TO_WIRE[member.state],
      tags: { ...member.tags },
    })),
    memberLtime: BigInt(state.memberLtime),
    eventLtime: BigInt(state.eventLtime),
  };
}

/** The core's push/pull state; throws a Refusal for one it must not accept (validated with the frame). */
function fromWirePushPull(state: wire.PushPull): PushPull {
  // The pre-scan counted these already; this holds whatever path the bytes took.
  if (state.members.length > MAX_PUSH_PULL_MEMBERS) throw new Refusal(`${state.members.length} members is above the limit of ${MAX_PUSH_PULL_MEMBERS}`);
  const members = state.members.map((member, index): PushPullMember => {
    const memberState = STATE_FROM_WIRE.get(member.state);
    if (memberState === undefined) throw new Refusal(`member ${index + 1}: unknown state ${member.state}`);
    return { node: member.node, address: member.address, incarnation: safe(member.incarnation, `member ${index + 1} incarnation`), state: memberState, tags: copyTags(member.tags) };
  });
  return { join: state.join, members, memberLtime: safe(state.memberLtime, 'memberLtime'), eventLtime: safe(state.eventLtime, 'eventLtime') };
}

const FRAME_NAMES = { pushPullRequest: 'push/pull request', pushPullResponse: 'push/pull response', error: 'error', ping: 'ping', ack: 'ack' } as const;

function fromWireFrame(frame: NonNullable<wire.StreamFrame['frame']>): StreamFrame {
  switch (frame.$case) {
    case 'pushPullRequest':
      return { type: 'push-pull-request', state: fromWirePushPull(frame.value) };
    case 'pushPullResponse':
      return { type: 'push-pull-response', state: fromWirePushPull(frame.value) };
    case 'error':
      return { type: 'error', message: frame.value.message };
    case 'ping':
      return { type: 'ping', ping: { type: 'ping', seqNo: safe(frame.value.seqNo, 'ping seqNo'), node: frame.value.node } };
    case 'ack':
      return { type: 'ack', ack: { type: 'ack', seqNo: safe(frame.value.seqNo, 'ack seqNo'), payload: asUint8Array(frame.value.payload) } };
  }
}

function toWireFrame(frame: StreamFrame): wire.StreamFrame['frame'] {
  switch (frame.type) {
    case 'push-pull-request':
      return { $case: 'pushPullRequest', value: toWirePushPull(frame.state) };
    case 'push-pull-response':
      return { $case: 'pushPullResponse', value: toWirePushPull(frame.state) };
    case 'error':
      return { $case: 'error', value: { message: frame.message } };
    case 'ping':
      return { $case: 'ping', value: { seqNo: BigInt(frame.ping.seqNo), node: frame.ping.node } };
    case 'ack':
      return { $case: 'ack', value: { seqNo: BigInt(frame.ack.seqNo), payload: asBuffer(frame.ack.payload) } };
  }
}

/** A uint64 from the wire as a JS number; above 2^53 − 1 it could not be told from its neighbours. */
function safe(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Refusal(`${field} ${value} is above Number.MAX_SAFE_INTEGER`);
  return Number(value);
}

function copyTags(decoded: { readonly [key: string]: string }): Record<string, string> {
  const copy: Record<string, string> = {};
  for (const [key, value] of Object.entries(decoded)) copy[key] = value;
  return copy;
}

// The generated types say Buffer (env=node); a view over the same bytes, no copy.
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// The decoder's Buffer is already a copy of the datagram's bytes; hand the core a plain view.
function asUint8Array(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
