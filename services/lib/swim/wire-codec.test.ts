/**
 * The SWIM wire codec (proto/consulate/gossip/v1/wire.proto). Bytes come from the network, so
 * decoding must refuse anything malformed or past a limit without throwing; encoding must
 * round-trip every valid message exactly; and messageSize must be exact, since the core fills
 * datagrams with it (memberlist's compound messages, `util.go` makeCompoundMessage).
 */
import fc from 'fast-check';
import * as wire from '../../gen/consulate/gossip/v1/wire';
import { InvariantViolation } from '../invariant';
import { Message, MemberState, PushPull, PushPullMember } from './messages';
import {
  MAX_PACKET_BYTES,
  MAX_PUSH_PULL_MEMBERS,
  MAX_STREAM_FRAME_BYTES,
  StreamFrame,
  WIRE_LIMITS,
  decodePacket,
  decodeStreamFrame,
  encodePacket,
  encodeStreamFrame,
  frameLength,
  lengthPrefixed,
  messageSize,
  pushPullFrameSize,
  validateMessage,
  validatePushPull,
} from './wire-codec';

// ---------------------------------------------------------------------------------------------
// Arbitraries: every valid message

const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

const wireNumber = fc.oneof(
  fc.constantFrom(0, 1, 127, 128, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const anyText = (maxLength: number) => fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength }), fc.string({ unit: 'grapheme', maxLength }));
const nodeName = anyText(24).filter((s) => s.length > 0 && utf8Bytes(s) <= WIRE_LIMITS.nodeNameBytes);
const optionalNodeName = anyText(24).filter((s) => utf8Bytes(s) <= WIRE_LIMITS.nodeNameBytes);
const address = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 65535 })).map(([ip, port]) => `${ip}:${port}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 65535 })).map(([ip, port]) => `[${ip}]:${port}`),
  anyText(40).filter((s) => s.length > 0 && utf8Bytes(s) <= WIRE_LIMITS.addressBytes),
);
const tags = fc
  .uniqueArray(fc.tuple(anyText(12).filter((k) => k !== '__proto__'), anyText(24)), { maxLength: 8, selector: ([key]) => key })
  .map((entries): Record<string, string> => Object.fromEntries(entries));
const payload = fc.uint8Array({ maxLength: 120 });

const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('ping' as const), seqNo: wireNumber, node: optionalNodeName }),
  fc.record({ type: fc.constant('indirect-ping' as const), seqNo: wireNumber, target: nodeName, targetAddress: address, nack: fc.boolean() }),
  fc.record({ type: fc.constant('ack' as const), seqNo: wireNumber, payload }),
  fc.record({ type: fc.constant('nack' as const), seqNo: wireNumber }),
  fc.record({ type: fc.constant('alive' as const), node: nodeName, address, incarnation: wireNumber, tags }),
  fc.record({ type: fc.constant('suspect' as const), node: nodeName, incarnation: wireNumber, from: nodeName }),
  fc.record({ type: fc.constant('dead' as const), node: nodeName, incarnation: wireNumber, from: nodeName }),
  fc.record({ type: fc.constant('leave-intent' as const), node: nodeName, ltime: wireNumber }),
  fc.record({ type: fc.constant('user-event' as const), ltime: wireNumber, name: nodeName, payload }),
);
const packetArb = fc.array(messageArb, { minLength: 1, maxLength: 8 });

const memberArb: fc.Arbitrary<PushPullMember> = fc.record({
  node: nodeName,
  address,
  incarnation: wireNumber,
  state: fc.constantFrom<MemberState>('alive', 'suspect', 'dead', 'left'),
  tags,
});
const pushPullArb = (maxMembers: number): fc.Arbitrary<PushPull> =>
  fc.record({
    join: fc.boolean(),
    members: fc.array(memberArb, { maxLength: maxMembers }),
    memberLtime: wireNumber,
    eventLtime: wireNumber,
  });
const frameArb = (maxMembers: number): fc.Arbitrary<StreamFrame> =>
  fc.oneof(
    pushPullArb(maxMembers).map((state): StreamFrame => ({ type: 'push-pull-request', state })),
    pushPullArb(maxMembers).map((state): StreamFrame => ({ type: 'push-pull-response', state })),
    anyText(80)
      .filter((s) => s.length > 0)
      .map((message): StreamFrame => ({ type: 'error', message })),
    fc.record({ type: fc.constant('ping' as const), seqNo: wireNumber, node: optionalNodeName }).map((ping): StreamFrame => ({ type: 'ping', ping })),
    fc.record({ type: fc.constant('ack' as const), seqNo: wireNumber, payload }).map((ack): StreamFrame => ({ type: 'ack', ack })),
  );

// One of each, with the edges a hand-picked example shows best.
const EVERY_VARIANT: Message[] = [
  { type: 'ping', seqNo: 1, node: 'node-alpha-1' },
  { type: 'ping', seqNo: 0, node: '' },
  { type: 'indirect-ping', seqNo: 2 ** 32, target: 'server-2', targetAddress: '127.0.1.2:8301', nack: true },
  { type: 'ack', seqNo: Number.MAX_SAFE_INTEGER, payload: new Uint8Array(88).fill(7) },
  { type: 'ack', seqNo: 3, payload: new Uint8Array(0) },
  { type: 'nack', seqNo: 4 },
  { type: 'alive', node: 'node-beta-1', address: '127.0.1.102:8304', incarnation: 12, tags: { role: 'node', dc: 'dc1', segment: 'beta', '': 'empty name', ünï: 'cödé' } },
  { type: 'suspect', node: 'node-beta-1', incarnation: 12, from: 'server-1' },
  { type: 'dead', node: 'node-beta-1', incarnation: 13, from: 'node-beta-1' },
  { type: 'leave-intent', node: 'node-beta-1', ltime: 99 },
  { type: 'user-event', ltime: 5, name: 'deploy', payload: Uint8Array.from([0, 1, 2, 255]) },
];

function isError(result: object): result is { error: string } {
  return 'error' in result;
}

function expectRefused(result: object, pattern: RegExp): void {
  expect(result).toEqual({ error: expect.stringMatching(pattern) });
}

/** Bytes a peer could send that our encoder would never write: straight from the generated code. */
function rawPacket(gossip: wire.GossipMessage[]): Uint8Array {
  return wire.Packet.encode({ messages: gossip }).finish();
}

function rawFrame(frame: wire.StreamFrame['frame']): Uint8Array {
  return wire.StreamFrame.encode({ frame }).finish();
}

const wireMember = (overrides: Partial<wire.PushPullMember> = {}): wire.PushPullMember => ({
  node: 'n',
  address: '127.0.0.1:8301',
  incarnation: 1n,
  state: wire.MemberState.MEMBER_STATE_ALIVE,
  tags: {},
  ...overrides,
});

const wirePushPull = (members: wire.PushPullMember[]): wire.PushPull => ({ join: false, members, memberLtime: 1n, eventLtime: 1n });

// ---------------------------------------------------------------------------------------------

describe('round trips', () => {
  test('every message variant decodes to exactly what was encoded', () => {
    for (const message of EVERY_VARIANT) {
      expect(decodePacket(encodePacket([message]))).toEqual({ messages: [message] });
    }
    expect(decodePacket(encodePacket(EVERY_VARIANT))).toEqual({ messages: EVERY_VARIANT });
  });

  test('property: any valid compound packet round-trips exactly, in order', () => {
    fc.assert(
      fc.property(packetArb, (messages) => {
        expect(decodePacket(encodePacket(messages))).toEqual({ messages });
      }),
      { numRuns: 2000 },
    );
  });

  test('property: any valid stream frame round-trips exactly', () => {
    fc.assert(
      fc.property(frameArb(12), (frame) => {
        expect(decodeStreamFrame(encodeStreamFrame(frame))).toEqual({ frame });
      }),
      { numRuns: 1000 },
    );
  });

  test('a push/pull with every member state, and the error frame a refused merge answers with', () => {
    const state: PushPull = {
      join: true,
      members: (['alive', 'suspect', 'dead', 'left'] as const).map((s, i) => ({ node: `n${i}`, address: `127.0.0.${i + 1}:8301`, incarnation: i, state: s, tags: { segment: 'alpha' } })),
      memberLtime: 7,
      eventLtime: Number.MAX_SAFE_INTEGER,
    };
    for (const frame of [{ type: 'push-pull-request', state }, { type: 'push-pull-response', state }] as const) {
      expect(decodeStreamFrame(encodeStreamFrame(frame))).toEqual({ frame });
    }
    // Consul's text for a client of another segment joining a server's pool (reference/consul-compat.md).
    const refusal: StreamFrame = { type: 'error', message: 'Member \'node-beta-1\' part of wrong segment \'beta\' (expected \'alpha\')' };
    expect(decodeStreamFrame(encodeStreamFrame(refusal))).toEqual({ frame: refusal });
  });

  test('a decoded payload is a copy: it neither changes with nor pins the datagram buffer', () => {
    const datagram = encodePacket([{ type: 'user-event', ltime: 1, name: 'e', payload: Uint8Array.from([1, 2, 3]) }]);
    const decoded = decodePacket(datagram);
    datagram.fill(0);
    expect(decoded).toEqual({ messages: [{ type: 'user-event', ltime: 1, name: 'e', payload: Uint8Array.from([1, 2, 3]) }] });
  });

  test('length-prefixed frames: frameLength reads back what lengthPrefixed wrote, at any offset', () => {
    const body = encodeStreamFrame({ type: 'error', message: 'x' });
    const onWire = lengthPrefixed(body);
    expect(onWire.length).toBe(4 + body.length);
    const shifted = new Uint8Array(3 + onWire.length);
    shifted.set(onWire, 3);
    expect(frameLength(shifted.subarray(3, 7))).toEqual({ length: body.length });
    expect(decodeStreamFrame(shifted.subarray(7))).toEqual({ frame: { type: 'error', message: 'x' } });
  });
});

describe('broadcasts heard again', () => {
  const messagesOf = (result: ReturnType<typeof decodePacket>): Message[] => {
    if ('error' in result) throw new Error(result.error);
    return result.messages;
  };

  test('a broadcast heard again is the object decoded the first time, equal to what was sent; pings and acks are decoded anew', () => {
    const alive: Message = { type: 'alive', node: 'n-again', address: '10.0.0.9:8301', incarnation: 7, tags: { role: 'node', dc: 'dc1' } };
    const ping: Message = { type: 'ping', seqNo: 41, node: 'n-again' };
    // Two datagrams from two senders: the same broadcast, in another place in each packet.
    const first = messagesOf(decodePacket(encodePacket([ping, alive])));
    const second = messagesOf(decodePacket(encodePacket([alive, { type: 'ack', seqNo: 41, payload: new Uint8Array(0) }])));
    expect(first).toEqual([ping, alive]);
    expect(second[0]).toBe(first[1]);
    expect(second[0]).toEqual(alive);
    expect(messagesOf(decodePacket(encodePacket([ping])))[0]).not.toBe(first[0]);
  });

  test('a broadcast heard before does not save a packet whose other message is malformed or refused', () => {
    const alive: Message = { type: 'alive', node: 'n-refused', address: '10.0.0.9:8301', incarnation: 1, tags: {} };
    const aliveBytes = encodePacket([alive]);
    messagesOf(decodePacket(aliveBytes));
    expectRefused(decodePacket(Uint8Array.from([...aliveBytes, ...rawPacket([{ body: undefined }])])), /message 2 of 2: empty message/);
    // A message whose length runs past the datagram's end.
    expectRefused(decodePacket(Uint8Array.from([...aliveBytes, 0x0a, 0x7f, 0x2a])), /malformed gossip packet/);
  });

  test('property: a packet decodes to the same messages the first time and every time after', () => {
    fc.assert(
      fc.property(packetArb, (messages) => {
        const bytes = encodePacket(messages);
        const first = decodePacket(bytes);
        expect(first).toEqual({ messages });
        expect(decodePacket(bytes)).toEqual(first);
      }),
    );
  });
});

describe('pushPullFrameSize: exact, without encoding', () => {
  test('property: it is the length encodeStreamFrame gives, for requests and answers', () => {
    fc.assert(
      fc.property(pushPullArb(12), fc.boolean(), (state, request) => {
        expect(pushPullFrameSize(state)).toBe(encodeStreamFrame({ type: request ? 'push-pull-request' : 'push-pull-response', state }).length);
      }),
      { numRuns: 1000 },
    );
  });

  test('across varint boundaries: a frame of 1,000 members, and members sharing one tags object', () => {
    const tags = { role: 'node', dc: 'dc1', segment: '', id: '6e1d1b1c-44b1-4b5e-9f2a-0d6b3c1e2f40' };
    const members: PushPullMember[] = Array.from({ length: 1000 }, (_, i) => ({ node: `node-${i}`, address: `10.0.${i >> 8}.${i & 255}:8301`, incarnation: i * 1000, state: 'alive', tags }));
    const state: PushPull = { join: false, members, memberLtime: 2 ** 40, eventLtime: 0 };
    expect(pushPullFrameSize(state)).toBe(encodeStreamFrame({ type: 'push-pull-request', state }).length);
  });
});

describe('messageSize: exact, so the core can fill a datagram', () => {
  test('property: a packet is exactly the sum of its messages\' sizes', () => {
    fc.assert(
      fc.property(packetArb, (messages) => {
        expect(encodePacket(messages).length).toBe(messages.reduce((sum, m) => sum + messageSize(m), 0));
      }),
      { numRuns: 2000 },
    );
  });

  test('sizes across varint boundaries (a 127- and a 128-byte body differ by one length byte)', () => {
    for (let length = 100; length < 20_000; length += 97) {
      const message: Message = { type: 'ack', seqNo: 1, payload: new Uint8Array(length) };
      expect(messageSize(message)).toBe(encodePacket([message]).length);
    }
  });

  test('filling a 1,400-byte datagram greedily by messageSize never overflows it', () => {
    fc.assert(
      fc.property(fc.array(messageArb, { minLength: 1, maxLength: 60 }), (queue) => {
        let budget = 1400;
        const packet: Message[] = [];
        for (const message of queue) {
          const size = messageSize(message);
          if (size <= budget) {
            packet.push(message);
            budget -= size;
          }
        }
        if (packet.length > 0) expect(encodePacket(packet).length).toBe(1400 - budget);
      }),
      { numRuns: 300 },
    );
  });
});

describe('limits (STYLE.md: a limit on everything; a clear error, never a crash)', () => {
  const name = (bytes: number) => 'n'.repeat(bytes);

  test.each([
    ['node name', (n: number): Message => ({ type: 'alive', node: name(n), address: 'a', incarnation: 1, tags: {} }), WIRE_LIMITS.nodeNameBytes],
    ['ping node', (n: number): Message => ({ type: 'ping', seqNo: 1, node: name(n) }), WIRE_LIMITS.nodeNameBytes],
    ['suspect from', (n: number): Message => ({ type: 'suspect', node: 'a', incarnation: 1, from: name(n) }), WIRE_LIMITS.nodeNameBytes],
    ['address', (n: number): Message => ({ type: 'alive', node: 'a', address: name(n), incarnation: 1, tags: {} }), WIRE_LIMITS.addressBytes],
    ['indirect ping address', (n: number): Message => ({ type: 'indirect-ping', seqNo: 1, target: 'a', targetAddress: name(n), nack: false }), WIRE_LIMITS.addressBytes],
    ['event name', (n: number): Message => ({ type: 'user-event', ltime: 1, name: name(n), payload: new Uint8Array(0) }), WIRE_LIMITS.eventNameBytes],
  ])('%s: at the limit it travels; one byte past it is refused on decode and on encode', (_field, make, limit) => {
    const atLimit = make(limit);
    expect(decodePacket(encodePacket([atLimit]))).toEqual({ messages: [atLimit] });
    const past = make(limit + 1);
    expect(validateMessage(past)).toMatch(new RegExp(`${limit + 1} bytes is above the limit of ${limit}`));
    expect(() => encodePacket([past])).toThrow(InvariantViolation);
    expect(() => messageSize(past)).toThrow(InvariantViolation);
    // What a peer with another encoder could send anyway.
    expect(decodePacket(rawPacketFor(past))).toEqual({ error: expect.stringContaining(`above the limit of ${limit}`) });
  });

  test('limits count UTF-8 bytes, not characters', () => {
    expect(validateMessage({ type: 'ping', seqNo: 1, node: 'é'.repeat(64) })).toBeUndefined();
    expect(validateMessage({ type: 'ping', seqNo: 1, node: 'é'.repeat(65) })).toMatch(/130 bytes is above the limit of 128/);
  });

  test('tags: the limits of entries and bytes travel; one more entry or byte is refused', () => {
    const { tagCount, tagBytes } = WIRE_LIMITS;
    const atLimit = Object.fromEntries(Array.from({ length: tagCount }, (_, i) => [`k${i}`, 'v']));
    const alive = (t: Record<string, string>): Message => ({ type: 'alive', node: 'a', address: 'b', incarnation: 1, tags: t });
    expect(decodePacket(encodePacket([alive(atLimit)]))).toEqual({ messages: [alive(atLimit)] });
    const oneMore = { ...atLimit, [`k${tagCount}`]: 'v' };
    const tooMany = new RegExp(`${tagCount + 1} tags is above the limit of ${tagCount}`);
    expect(validateMessage(alive(oneMore))).toMatch(tooMany);
    expectRefused(decodePacket(rawPacketFor(alive(oneMore))), tooMany);

    const full = { role: 'v'.repeat(tagBytes - 4) };
    expect(decodePacket(encodePacket([alive(full)]))).toEqual({ messages: [alive(full)] });
    const past = { role: 'v'.repeat(tagBytes - 3) };
    const tooLarge = new RegExp(`${tagBytes + 1} bytes`);
    expect(validateMessage(alive(past))).toMatch(tooLarge);
    expectRefused(decodePacket(rawPacketFor(alive(past))), tooLarge);
    expect(() => encodePacket([alive(past)])).toThrow(InvariantViolation);
  });

  test('payloads: 64 KiB is the field limit, and a datagram is smaller still', () => {
    const event = (n: number): Message => ({ type: 'user-event', ltime: 1, name: 'e', payload: new Uint8Array(n) });
    expect(validateMessage(event(WIRE_LIMITS.payloadBytes))).toBeUndefined();
    expect(validateMessage(event(WIRE_LIMITS.payloadBytes + 1))).toMatch(/65537 bytes is above the limit of 65536/);
    // The field fits; the datagram does not: encoding says so instead of sending a truncated packet.
    expect(() => encodePacket([event(WIRE_LIMITS.payloadBytes)])).toThrow(/above the 65507-byte datagram limit/);
    let largest = MAX_PACKET_BYTES;
    while (messageSize(event(largest)) > MAX_PACKET_BYTES) largest -= 1;
    expect(encodePacket([event(largest)]).length).toBe(MAX_PACKET_BYTES);
    expect(() => encodePacket([event(largest + 1)])).toThrow(InvariantViolation);
    expectRefused(decodePacket(new Uint8Array(MAX_PACKET_BYTES + 1)), /65508 bytes is above the 65507-byte limit/);
  });

  test('numbers above Number.MAX_SAFE_INTEGER are refused, not rounded', () => {
    const forged = rawPacket([{ body: { $case: 'alive', value: { node: 'a', address: 'b', incarnation: 2n ** 53n, tags: {} } } }]);
    expectRefused(decodePacket(forged), /incarnation 9007199254740992 is above Number.MAX_SAFE_INTEGER/);
    const seq = rawPacket([{ body: { $case: 'ping', value: { seqNo: 2n ** 64n - 1n, node: '' } } }]);
    expectRefused(decodePacket(seq), /seqNo 18446744073709551615 is above/);
    expect(validateMessage({ type: 'nack', seqNo: -1 })).toMatch(/not an integer/);
    expect(validateMessage({ type: 'nack', seqNo: 1.5 })).toMatch(/not an integer/);
    expect(() => encodePacket([{ type: 'nack', seqNo: Number.MAX_SAFE_INTEGER + 1 }])).toThrow(InvariantViolation);
  });

  test('empty packets, empty messages and kinds this version does not know are refused', () => {
    expectRefused(decodePacket(new Uint8Array(0)), /carries no message/);
    expectRefused(decodePacket(rawPacket([{ body: undefined }])), /message 1 of 1: empty message/);
    // A GossipMessage holding only field 15 (a future variant), after a valid ping.
    const ping = encodePacket([{ type: 'ping', seqNo: 1, node: 'a' }]);
    const future = Uint8Array.from([...ping, 0x0a, 0x03, 0x7a, 0x01, 0x00]);
    expectRefused(decodePacket(future), /message 2 of 2: empty message, or a kind this version does not know/);
    expect(() => encodePacket([])).toThrow(InvariantViolation);
  });

  test('required names must be there', () => {
    expect(validateMessage({ type: 'alive', node: '', address: 'a', incarnation: 1, tags: {} })).toMatch(/alive: node is empty/);
    expect(validateMessage({ type: 'alive', node: 'a', address: '', incarnation: 1, tags: {} })).toMatch(/alive: address is empty/);
    expect(validateMessage({ type: 'user-event', ltime: 1, name: '', payload: new Uint8Array(0) })).toMatch(/name is empty/);
    expectRefused(decodePacket(rawPacket([{ body: { $case: 'dead', value: { node: 'a', incarnation: 1n, from: '' } } }])), /dead: from is empty/);
  });

  test('a refusal quotes a peer\'s text briefly, so it fits the error frame sent back', () => {
    const key = 'k'.repeat(WIRE_LIMITS.tagBytes + 1000);
    const result = decodePacket(rawPacketFor({ type: 'alive', node: 'a', address: 'b', incarnation: 1, tags: { [key]: 'v' } }));
    expectRefused(result, new RegExp(`tag name "k{32}\\.\\.\\." of ${key.length} bytes is above the limit of ${WIRE_LIMITS.tagBytes}`));
    if (!isError(result)) throw new Error('unreachable');
    expect(decodeStreamFrame(encodeStreamFrame({ type: 'error', message: result.error }))).toEqual({ frame: { type: 'error', message: result.error } });
  });

  test('what a JS object cannot carry faithfully is refused on encode', () => {
    const proto = JSON.parse('{"__proto__": "x"}') as Record<string, string>;
    expect(validateMessage({ type: 'alive', node: 'a', address: 'b', incarnation: 1, tags: proto })).toMatch(/"__proto__" cannot be a tag name/);
    expect(validateMessage({ type: 'ping', seqNo: 1, node: 'a\uD800' })).toMatch(/lone surrogate/);
  });
});

describe('stream limits (memberlist TestReadRemoteState_Limits)', () => {
  test('a header claiming ten million nodes closes the stream before anything is allocated', () => {
    // memberlist's test: a push/pull header claiming 10 M nodes. Any length past 20 MiB is refused.
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, 10_000_000 * 64, false);
    expectRefused(frameLength(header), /above the 20971520-byte limit .*closing the stream/);
    new DataView(header.buffer).setUint32(0, 0xffffffff, false);
    expectRefused(frameLength(header), /4294967295 bytes is above/);
    new DataView(header.buffer).setUint32(0, MAX_STREAM_FRAME_BYTES, false);
    expect(frameLength(header)).toEqual({ length: MAX_STREAM_FRAME_BYTES });
    new DataView(header.buffer).setUint32(0, MAX_STREAM_FRAME_BYTES + 1, false);
    expectRefused(frameLength(header), /20971521 bytes/);
    expectRefused(frameLength(new Uint8Array(4)), /0 bytes carries nothing/);
    expectRefused(frameLength(new Uint8Array(3)), /needs 4 bytes, got 3/);
    expectRefused(decodeStreamFrame(new Uint8Array(MAX_STREAM_FRAME_BYTES + 1)), /above the 20971520-byte limit/);
  });

  test('a frame with more than 1,048,576 members is refused by counting, before decoding them', () => {
    // Each member the smallest a peer can send: an empty PushPullMember is two bytes (tag, length 0).
    const members = MAX_PUSH_PULL_MEMBERS + 1;
    const state = new Uint8Array(members * 2).fill(0x12);
    for (let i = 1; i < state.length; i += 2) state[i] = 0;
    const frame = Uint8Array.from([0x0a, ...varint(state.length)]);
    const bytes = new Uint8Array(frame.length + state.length);
    bytes.set(frame);
    bytes.set(state, frame.length);
    // "more than": the pre-scan's words (counting two million bytes), not the decoder's (after a million objects).
    expectRefused(decodeStreamFrame(bytes), /more than 1048576 members/);
    expect(validatePushPull({ join: false, members: new Array<PushPullMember>(members), memberLtime: 0, eventLtime: 0 })).toMatch(/1048577 members is above the limit/);
  });

  test('a member with more tags than the limit is refused by counting, even when they repeat one key', () => {
    const tagEntry = [0x2a, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01, 0x76]; // field 5: { key: "k", value: "v" }
    const member = wire.PushPullMember.encode(wireMember()).finish();
    const memberWithTags = Uint8Array.from([...member, ...Array.from({ length: WIRE_LIMITS.tagCount + 1 }, () => tagEntry).flat()]);
    const state = Uint8Array.from([0x12, ...varint(memberWithTags.length), ...memberWithTags]);
    const bytes = Uint8Array.from([0x12, ...varint(state.length), ...state]);
    expectRefused(decodeStreamFrame(bytes), new RegExp(`member 1: more than ${WIRE_LIMITS.tagCount} tags`));
  });

  test('unknown member states, empty frames and oversized errors are refused', () => {
    for (const state of [wire.MemberState.MEMBER_STATE_UNSPECIFIED, 9 as wire.MemberState]) {
      expectRefused(decodeStreamFrame(rawFrame({ $case: 'pushPullRequest', value: wirePushPull([wireMember({ state })]) })), /push\/pull request\): member 1: unknown state/);
    }
    expectRefused(decodeStreamFrame(new Uint8Array(0)), /empty or of a kind this version does not know/);
    expectRefused(decodeStreamFrame(Uint8Array.from([0x7a, 0x00])), /empty or of a kind/);
    expectRefused(decodeStreamFrame(rawFrame({ $case: 'error', value: { message: 'e'.repeat(4097) } })), /4097 bytes is above the limit of 4096/);
    expectRefused(decodeStreamFrame(rawFrame({ $case: 'error', value: { message: '' } })), /message is empty/);
    expectRefused(decodeStreamFrame(rawFrame({ $case: 'ping', value: { seqNo: 2n ** 53n, node: 'a' } })), /\(ping\): ping seqNo 9007199254740992 is above/);
    expectRefused(decodeStreamFrame(rawFrame({ $case: 'ack', value: { seqNo: 1n, payload: Buffer.alloc(64 * 1024 + 1) } })), /\(ack\): ack: payload/);
    expectRefused(
      decodeStreamFrame(rawFrame({ $case: 'pushPullResponse', value: { ...wirePushPull([]), eventLtime: 2n ** 60n } })),
      /push\/pull response\): eventLtime 1152921504606846976 is above Number.MAX_SAFE_INTEGER/,
    );
    expect(() => encodeStreamFrame({ type: 'error', message: '' })).toThrow(InvariantViolation);
    expect(() => lengthPrefixed(new Uint8Array(0))).toThrow(InvariantViolation);
  });
});

describe('hostile bytes (memberlist fuzz targets: decode never panics)', () => {
  // A small seeded generator: one seed, one reproducible run. FUZZ_SEED=<n> replays a failure.
  const seed = Number(process.env['FUZZ_SEED'] ?? 0x5eed);
  function mulberry32(a: number): () => number {
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function mutations(valid: Uint8Array[], count: number): Generator<Uint8Array> {
    const random = mulberry32(seed);
    const int = (n: number) => Math.floor(random() * n);
    return (function* () {
      for (let i = 0; i < count; i++) {
        const base = valid[int(valid.length)]!;
        switch (i % 6) {
          case 0: // random bytes
            yield Uint8Array.from({ length: int(160) }, () => int(256));
            break;
          case 1: // truncated
            yield base.slice(0, int(base.length));
            break;
          case 2: {
            // one to four bit flips
            const out = base.slice();
            for (let flips = 1 + int(4); flips > 0 && out.length > 0; flips--) out[int(out.length)]! ^= 1 << int(8);
            yield out;
            break;
          }
          case 3: {
            // a byte overwritten with a varint-ish or tag-ish value
            const out = base.slice();
            if (out.length > 0) out[int(out.length)] = [0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x0b, 0x0c, 0x0f][int(9)]!;
            yield out;
            break;
          }
          case 4: {
            // a random run spliced in
            const at = int(base.length + 1);
            yield concat(base.subarray(0, at), Uint8Array.from({ length: 1 + int(8) }, () => int(256)), base.subarray(at));
            break;
          }
          default: {
            // two valid encodings glued, one cut short
            const other = valid[int(valid.length)]!;
            yield concat(base, other.subarray(0, int(other.length + 1)));
          }
        }
      }
    })();
  }

  // jest's expect is slow at 100,000 calls: the loops check by hand and fail with the input in hex.
  function fail(what: string, bytes: Uint8Array, detail: string): never {
    throw new Error(`${what} on ${Buffer.from(bytes).toString('hex')} (FUZZ_SEED=${seed}): ${detail}`);
  }

  test('100,000 random, truncated and bit-flipped datagrams: no throw; a valid decode or an error', () => {
    const valid = fc.sample(packetArb, { seed, numRuns: 300 }).map(encodePacket);
    let decoded = 0;
    for (const bytes of mutations(valid, 100_000)) {
      let result: ReturnType<typeof decodePacket>;
      try {
        result = decodePacket(bytes);
      } catch (cause) {
        fail('decodePacket threw', bytes, String(cause));
      }
      if (isError(result)) {
        if (typeof result.error !== 'string' || result.error.length === 0 || Buffer.byteLength(result.error) > WIRE_LIMITS.errorMessageBytes) {
          fail('an empty or oversized error', bytes, JSON.stringify(result));
        }
        continue;
      }
      decoded += 1;
      if (result.messages.length === 0) fail('no messages and no error', bytes, '');
      for (const message of result.messages) {
        const problem = validateMessage(message);
        if (problem !== undefined) fail('decoded an invalid message', bytes, problem);
      }
      // Whatever is accepted can be relayed, and reads back as itself.
      const again = decodePacket(encodePacket(result.messages));
      if (isError(again) || again.messages.length !== result.messages.length) fail('did not read back', bytes, JSON.stringify(again));
    }
    // The mutations are not all refusals: the decoder is exercised past its first byte.
    expect(decoded).toBeGreaterThan(10_000);
  });

  test('100,000 random, truncated and bit-flipped stream frames: no throw; a valid decode or an error', () => {
    // Small frames: the decoder's paths are the same, and 100,000 of them stay quick.
    const valid = fc.sample(frameArb(3), { seed, numRuns: 300 }).map(encodeStreamFrame);
    let decoded = 0;
    for (const bytes of mutations(valid, 100_000)) {
      let result: ReturnType<typeof decodeStreamFrame>;
      try {
        result = decodeStreamFrame(bytes);
      } catch (cause) {
        fail('decodeStreamFrame threw', bytes, String(cause));
      }
      if (isError(result)) {
        if (typeof result.error !== 'string' || result.error.length === 0 || Buffer.byteLength(result.error) > WIRE_LIMITS.errorMessageBytes) {
          fail('an empty or oversized error', bytes, JSON.stringify(result));
        }
        continue;
      }
      decoded += 1;
      const again = decodeStreamFrame(encodeStreamFrame(result.frame));
      if (isError(again) || again.frame.type !== result.frame.type) fail('did not read back', bytes, JSON.stringify(again));
    }
    expect(decoded).toBeGreaterThan(10_000);
  });

  test('deeply nested groups and submessages give an error, not a stack overflow', () => {
    const groups = new Uint8Array(MAX_PACKET_BYTES).fill(0x0b); // field 1, start group, over and over
    expectRefused(decodePacket(groups), /malformed gossip packet/);
    expectRefused(decodeStreamFrame(new Uint8Array(1_000_000).fill(0x0b)), /malformed stream frame/);
    // Length-delimited field 1 nested 30,000 deep.
    const nested: number[] = [];
    for (let i = 0; i < 30_000; i++) nested.push(0x0a, 0x00);
    expect(isError(decodePacket(Uint8Array.from(nested)))).toBe(true);
  });
});

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** `message` encoded by the generated code alone, with none of our encoder's checks. */
function rawPacketFor(message: Message): Uint8Array {
  switch (message.type) {
    case 'alive':
      return rawPacket([{ body: { $case: 'alive', value: { node: message.node, address: message.address, incarnation: BigInt(message.incarnation), tags: { ...message.tags } } } }]);
    case 'ping':
      return rawPacket([{ body: { $case: 'ping', value: { seqNo: BigInt(message.seqNo), node: message.node } } }]);
    case 'suspect':
      return rawPacket([{ body: { $case: 'suspect', value: { node: message.node, incarnation: BigInt(message.incarnation), from: message.from } } }]);
    case 'indirect-ping':
      return rawPacket([{ body: { $case: 'indirectPing', value: { seqNo: BigInt(message.seqNo), target: message.target, targetAddress: message.targetAddress, nack: message.nack } } }]);
    case 'user-event':
      return rawPacket([{ body: { $case: 'userEvent', value: { ltime: BigInt(message.ltime), name: message.name, payload: Buffer.from(message.payload) } } }]);
    default:
      throw new Error(`rawPacketFor: no case for ${message.type}`);
  }
}
