/**
 * The catalog's hand-written ForwardService messages (forward-messages.ts) against the generated
 * codecs: a request it encodes decodes, with the generated decoder, to the same request, and an
 * answer the generated encoder (an older router, or ours passing a catalog's bytes on) writes
 * decodes to the same answer.
 */
import fc from 'fast-check';

import { ServeRequest, ServeResponse } from '../gen/consulate/catalog/v1/forwarded';
import { ForwardRequest, ForwardResponse } from '../gen/consulate/router/v1/operator';
import { decodeForwardResponse, decodeServeRequest, encodeForwardRequest, encodeServeResponse } from './forward-messages';

const text = fc.string({ maxLength: 16, unit: 'grapheme' });
const bytes = fc.uint8Array({ maxLength: 48 }).map((array) => Buffer.from(array));
const map = fc.dictionary(fc.string({ maxLength: 10 }), text, { maxKeys: 4 });
const uint32 = fc.nat(2 ** 32 - 1);

const httpRequest = fc.record({ method: text, path: text, rawQuery: text, headers: map, body: bytes });
const httpResponse = fc.record({ status: uint32, headers: map, body: bytes });
const request: fc.Arbitrary<ForwardRequest> = fc.record({
  datacenter: text,
  request: fc.option(httpRequest, { nil: undefined }),
  grpc: fc.option(fc.record({ method: text, message: bytes, readOnly: fc.boolean() }), { nil: undefined }),
});
const response: fc.Arbitrary<ForwardResponse> = fc.record({
  response: fc.option(httpResponse, { nil: undefined }),
  path: fc.array(text, { maxLength: 3 }),
  grpc: fc.option(fc.record({ code: uint32, details: text, message: bytes, trailers: map }), { nil: undefined }),
});

/** Bytes fields as plain Buffers (a decoded one is a view of the message). */
const plain = (answer: ForwardResponse) => ({
  ...answer,
  response: answer.response && { ...answer.response, body: Buffer.from(answer.response.body) },
  grpc: answer.grpc && { ...answer.grpc, message: Buffer.from(answer.grpc.message) },
});

describe("a catalog's ForwardService messages", () => {
  test('a request it encodes is the request the generated decoder reads, byte for byte what the generated encoder writes', () => {
    fc.assert(
      fc.property(request, (forwarded) => {
        const ours = encodeForwardRequest(forwarded);
        expect(ForwardRequest.decode(ours)).toEqual(ForwardRequest.decode(ForwardRequest.encode(forwarded).finish()));
        expect(ours).toEqual(Buffer.from(ForwardRequest.encode(forwarded).finish()));
      }),
      { seed: 0xf0a, numRuns: 400 },
    );
  });

  test('an answer the generated encoder writes reads as the same answer; unknown fields are skipped', () => {
    fc.assert(
      fc.property(response, (answer) => {
        const encoded = Buffer.from(ForwardResponse.encode(answer).finish());
        expect(plain(decodeForwardResponse(encoded))).toEqual(plain(ForwardResponse.decode(encoded)));
        const unknown = Buffer.from([0xa0, 0x06, 0x05, 0xa2, 0x06, 0x01, 0x61]);
        expect(plain(decodeForwardResponse(Buffer.concat([unknown, encoded])))).toEqual(plain(ForwardResponse.decode(encoded)));
      }),
      { seed: 0xf0b, numRuns: 400 },
    );
  });

  test('cut short, an answer is refused where the generated decoder refuses it (and read the same where a field ends)', () => {
    const whole = Buffer.from(ForwardResponse.encode({ response: { status: 200, headers: { 'x-consul-index': '7' }, body: Buffer.from('[]') }, path: ['dc2'] }).finish());
    const outcome = (decode: () => ForwardResponse) => {
      try {
        return plain(decode());
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        return 'refused';
      }
    };
    let refused = 0;
    for (let length = 1; length < whole.length; length++) {
      const cut = whole.subarray(0, length);
      const ours = outcome(() => decodeForwardResponse(cut));
      expect(ours).toEqual(outcome(() => ForwardResponse.decode(cut)));
      if (ours === 'refused') refused++;
    }
    expect(refused).toBeGreaterThan(whole.length / 2);
  });

  test("the answering catalog's Serve: a request the generated encoder writes (a router of any version) reads the same; its answer is the generated encoder's bytes", () => {
    fc.assert(
      fc.property(fc.option(httpRequest, { nil: undefined }), fc.option(httpResponse, { nil: undefined }), (request, response) => {
        const encoded = Buffer.from(ServeRequest.encode({ request }).finish());
        const ours = decodeServeRequest(encoded).request;
        expect(ours && { ...ours, body: Buffer.from(ours.body) }).toEqual(ServeRequest.decode(encoded).request);
        expect(encodeServeResponse({ response })).toEqual(Buffer.from(ServeResponse.encode({ response }).finish()));
      }),
      { seed: 0xf0c, numRuns: 400 },
    );
    expect(() => decodeServeRequest(Buffer.from([0x0a, 0x05, 0x0a, 0x03, 0x47]))).toThrow(/runs past the end of a ServeRequest/);
  });
});
