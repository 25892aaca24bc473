/**
 * The hand-written Calls frame codec (call-frames.ts) against the generated one, both ways: what
 * it writes the generated decoder reads as the same frame (an older version of ours, or a client
 * in another language), and what the generated encoder writes it reads as the same calls and
 * answers. Bad bytes are refused, never read past.
 */
import fc from 'fast-check';

import { UnaryAnswer, UnaryCall } from '../gen/consulate/common/v1/call_stream';
import { ForwardServiceCallsRequest, ForwardServiceCallsResponse } from '../gen/consulate/router/v1/operator';
import { StreamedAnswer, StreamedCall, decodeAnswerFrame, decodeCallFrame, encodeAnswerFrame, encodeCallFrame } from './call-frames';

const text = fc.string({ maxLength: 24, unit: 'grapheme' });
const bytes = fc.uint8Array({ maxLength: 64 }).map((array) => Buffer.from(array));
const map = fc.dictionary(fc.string({ maxLength: 12 }), text, { maxKeys: 4 });
/** Ids and timeouts as numbers reach 2^53 - 1; small ones are the common case. */
const number = fc.oneof(fc.nat(200), fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));

const call: fc.Arbitrary<StreamedCall> = fc.record({ id: number, method: text, message: bytes, metadata: map, timeoutMs: number, cancel: fc.boolean() });
const answer: fc.Arbitrary<StreamedAnswer> = fc.record({ id: number, code: fc.nat(2 ** 32 - 1), details: text, message: bytes, trailers: map });

const generatedCall = (c: StreamedCall): UnaryCall => ({ ...c, id: BigInt(c.id), timeoutMs: BigInt(c.timeoutMs) });
const generatedAnswer = (a: StreamedAnswer): UnaryAnswer => ({ ...a, id: BigInt(a.id) });
const streamedCall = (c: UnaryCall): StreamedCall => ({ ...c, id: Number(c.id), timeoutMs: Number(c.timeoutMs), message: Buffer.from(c.message) });
const streamedAnswer = (a: UnaryAnswer): StreamedAnswer => ({ ...a, id: Number(a.id), message: Buffer.from(a.message) });
/** A decoded bytes field is a view of the frame; compare contents. */
const plain = <T extends { message: Buffer }>(item: T) => ({ ...item, message: Buffer.from(item.message) });

const RUNS = { seed: 0xca11, numRuns: 300 };

describe('Calls frames', () => {
  test('the calls we encode decode, with the generated decoder, to the same calls: one as `call`, several as `calls`', () => {
    fc.assert(
      fc.property(fc.array(call, { minLength: 1, maxLength: 4 }), (calls) => {
        const decoded = ForwardServiceCallsRequest.decode(encodeCallFrame(calls));
        if (calls.length === 1) expect(decoded).toEqual({ call: generatedCall(calls[0]), calls: [] });
        else expect(decoded).toEqual({ call: undefined, calls: calls.map(generatedCall) });
      }),
      RUNS,
    );
  });

  test('the answers we encode decode, with the generated decoder, to the same answers', () => {
    fc.assert(
      fc.property(fc.array(answer, { minLength: 1, maxLength: 4 }), (answers) => {
        const decoded = ForwardServiceCallsResponse.decode(encodeAnswerFrame(answers));
        if (answers.length === 1) expect(decoded).toEqual({ answer: generatedAnswer(answers[0]), answers: [] });
        else expect(decoded).toEqual({ answer: undefined, answers: answers.map(generatedAnswer) });
      }),
      RUNS,
    );
  });

  test('frames the generated encoder writes decode to the same calls and answers, `call` first', () => {
    fc.assert(
      fc.property(fc.option(call, { nil: undefined }), fc.array(call, { maxLength: 3 }), (one, many) => {
        const frame = { call: one === undefined ? undefined : generatedCall(one), calls: many.map(generatedCall) };
        const decoded = decodeCallFrame(Buffer.from(ForwardServiceCallsRequest.encode(frame).finish()));
        expect(decoded.map(plain)).toEqual([...(one === undefined ? [] : [one]), ...many].map((c) => streamedCall(generatedCall(c))));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.option(answer, { nil: undefined }), fc.array(answer, { maxLength: 3 }), (one, many) => {
        const frame = { answer: one === undefined ? undefined : generatedAnswer(one), answers: many.map(generatedAnswer) };
        const decoded = decodeAnswerFrame(Buffer.from(ForwardServiceCallsResponse.encode(frame).finish()));
        expect(decoded.map(plain)).toEqual([...(one === undefined ? [] : [one]), ...many].map((a) => streamedAnswer(generatedAnswer(a))));
      }),
      RUNS,
    );
  });

  test('unknown fields of every wire type are skipped; a repeated `call` keeps its last value, a repeated map key its last value', () => {
    const first = encodeCallFrame([{ id: 1, method: '/a', message: Buffer.alloc(0), metadata: { k: 'old' }, timeoutMs: 0, cancel: false }]);
    const second = encodeCallFrame([{ id: 2, method: '/b', message: Buffer.from('x'), metadata: {}, timeoutMs: 5, cancel: false }]);
    const unknown = Buffer.from([
      0xa0, 0x06, 0x05, // field 100, varint 5
      0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, // field 100, fixed64
      0xa2, 0x06, 0x02, 0x61, 0x62, // field 100, 2 bytes
      0xa5, 0x06, 1, 2, 3, 4, // field 100, fixed32
      0xa3, 0x06, 0x08, 0x01, 0xa4, 0x06, // field 100, a group holding field 1 = 1
    ]);
    // A map entry for "k" inside call 2, added after its own fields: the last value wins.
    const entry = Buffer.from([0x22, 0x08, 0x0a, 0x01, 0x6b, 0x12, 0x03, 0x6e, 0x65, 0x77]);
    const secondWithEntry = Buffer.concat([Buffer.from([0x0a, second[1] + entry.length]), second.subarray(2), entry]);
    expect(decodeCallFrame(Buffer.concat([first, unknown, secondWithEntry])).map(plain)).toEqual([
      { id: 2, method: '/b', message: Buffer.from('x'), metadata: { k: 'new' }, timeoutMs: 5, cancel: false },
    ]);
    expect(ForwardServiceCallsRequest.decode(Buffer.concat([first, unknown, secondWithEntry])).call).toMatchObject({ id: 2n, metadata: { k: 'new' } });
  });

  test('bad bytes are refused, never read past: truncated, lengths past the end, a field 0, a long varint, an id past 2^53', () => {
    const whole = encodeCallFrame([{ id: 300, method: '/consulate.router.v1.ForwardService/Forward', message: Buffer.alloc(40, 1), metadata: { traceparent: 'x' }, timeoutMs: 5_000, cancel: false }]);
    for (let length = 1; length < whole.length; length++) expect(() => decodeCallFrame(whole.subarray(0, length))).toThrow();
    expect(() => decodeCallFrame(Buffer.from([0x0a, 0x05, 0x08]))).toThrow(/runs past the end of a Calls frame/);
    expect(() => decodeCallFrame(Buffer.from([0x00, 0x01]))).toThrow(/field number 0/);
    expect(() => decodeCallFrame(Buffer.from([0x0a, 0x0b, 0x08, ...Array(10).fill(0xff)]))).toThrow(/past 64 bits/);
    expect(() => decodeAnswerFrame(Buffer.from([0x0a, 0x09, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]))).toThrow(/past 2\^53/);
    expect(() => decodeAnswerFrame(Buffer.from([0x0c]))).toThrow(/end of group with no start/);
    // A nested field that claims more than its message holds.
    expect(() => decodeCallFrame(Buffer.from([0x0a, 0x02, 0x12, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65]))).toThrow(/runs past its length/);
    // The generated decoder refuses the same truncations.
    for (const length of [1, 5, whole.length - 1]) expect(() => ForwardServiceCallsRequest.decode(whole.subarray(0, length))).toThrow();
  });

  test('random bytes are decoded or refused with an Error, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (random) => {
        for (const decode of [decodeCallFrame, decodeAnswerFrame]) {
          try {
            decode(Buffer.from(random));
          } catch (err) {
            expect(err).toBeInstanceOf(Error);
          }
        }
      }),
      { seed: 0xbad, numRuns: 2000 },
    );
  });

  test('a uint32 written as a longer varint (sign-extended, or with high bits set) reads as its low 32 bits, as the generated decoder reads it', () => {
    const answerWithCode = (code: number[]) => Buffer.from([0x0a, code.length + 1, 0x10, ...code]);
    const allOnes = answerWithCode([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    const fourteenHigh = answerWithCode([0x8e, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    for (const frame of [allOnes, fourteenHigh]) expect(decodeAnswerFrame(frame)[0].code).toBe(ForwardServiceCallsResponse.decode(frame).answer!.code);
    expect(decodeAnswerFrame(fourteenHigh)[0].code).toBe(14);
  });

  test('hostile nesting and tags are refused with an Error: groups past 100 deep, a tag past 32 bits, a varint past 64 bits', () => {
    expect(() => decodeAnswerFrame(Buffer.alloc(4 * 1024 * 1024, 0x0b))).toThrow(/groups nested deeper than 100/);
    expect(() => decodeCallFrame(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))).toThrow(/tag past 32 bits/);
    expect(() => decodeCallFrame(Buffer.from([0x0a, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]))).toThrow(/past 64 bits/);
  });

  test('what cannot be written correctly is refused, not sent corrupt: a negative, fractional or non-number field', () => {
    const call: StreamedCall = { id: 1, method: '/m', message: Buffer.alloc(0), metadata: {}, timeoutMs: 0, cancel: false };
    expect(() => encodeCallFrame([{ ...call, id: -1 }])).toThrow(/cannot be written as a varint/);
    expect(() => encodeCallFrame([{ ...call, timeoutMs: 1.5 }])).toThrow(/cannot be written as a varint/);
    expect(() => encodeAnswerFrame([{ id: 1, code: 'ECONNRESET' as unknown as number, details: '', message: Buffer.alloc(0), trailers: {} }])).toThrow(/cannot be written as a varint/);
  });
});

