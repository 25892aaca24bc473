/**
 * Forwarded requests as bytes (forward-wire.ts): what a router reads of a request is what the
 * generated decoder reads, and the bytes it builds decode, with the generated decoders, to the
 * messages a router used to build field by field.
 */
import fc from 'fast-check';

import { ServeResponse } from '../gen/consulate/catalog/v1/forwarded';
import { FederationServiceForwardRequest, FederationServiceForwardResponse } from '../gen/consulate/router/v1/federation';
import { ForwardRequest, ForwardResponse, HttpRequest } from '../gen/consulate/router/v1/operator';
import { ServeRequest } from '../gen/consulate/catalog/v1/forwarded';
import { federationAnswer, federationForward, forwardOfFederationAnswer, readFederationForward, readForwardRequest, serveRequest, withPathFirst } from './forward-wire';

const text = fc.string({ maxLength: 12 });
const bytes = fc.uint8Array({ maxLength: 64 }).map((array) => Buffer.from(array));
const headers = fc.dictionary(fc.stringMatching(/^[a-z-]{1,10}$/), text, { maxKeys: 4 });
const httpRequest = fc.record({ method: fc.constantFrom('GET', 'PUT', 'DELETE', ''), path: text, rawQuery: text, headers, body: bytes });
const grpcRequest = fc.record({ method: text, message: bytes, readOnly: fc.boolean() });
const forwardRequest = fc.record({ datacenter: text, request: fc.option(httpRequest, { nil: undefined }), grpc: fc.option(grpcRequest, { nil: undefined }) });
const httpResponse = fc.record({ status: fc.integer({ min: 0, max: 599 }), headers, body: bytes });
const datacenters = fc.array(fc.stringMatching(/^dc[0-9]{1,2}$/), { maxLength: 4 });

const encoded = (request: ForwardRequest) => ForwardRequest.encode(request).finish();

describe('reading a forwarded request', () => {
  test('reads what the generated decoder reads: datacenter, HTTP method and path, gRPC method, message and read-only', () => {
    fc.assert(
      fc.property(forwardRequest, (request) => {
        const envelope = readForwardRequest(encoded(request));
        const decoded = ForwardRequest.decode(encoded(request));
        expect(envelope.datacenter).toBe(decoded.datacenter);
        expect(envelope.http === undefined).toBe(decoded.request === undefined);
        if (envelope.http !== undefined) {
          expect([envelope.http.method, envelope.http.path]).toEqual([decoded.request!.method, decoded.request!.path]);
          // The whole HTTP request is kept as it came.
          expect(HttpRequest.decode(envelope.http.bytes)).toEqual(decoded.request);
        }
        expect(envelope.grpc === undefined).toBe(decoded.grpc === undefined);
        if (envelope.grpc !== undefined) {
          expect({ ...envelope.grpc, message: Buffer.from(envelope.grpc.message) }).toEqual(decoded.grpc);
        }
      }),
      { seed: 0xf0d1, numRuns: 300 },
    );
  });

  test('a field that comes twice keeps its last value; unknown fields are skipped', () => {
    const first = encoded({ datacenter: 'dc1', request: { method: 'GET', path: '/a', rawQuery: '', headers: {}, body: Buffer.alloc(0) } });
    const second = encoded({ datacenter: 'dc2', request: undefined, grpc: undefined });
    const unknown = Uint8Array.from([0xa0, 0x06, 0x05]); // field 100, varint 5
    const envelope = readForwardRequest(Buffer.concat([first, unknown, second]));
    expect(envelope.datacenter).toBe('dc2');
    expect(envelope.http?.path).toBe('/a');
  });

  test('truncated bytes are refused, as the decoder refuses them', () => {
    const whole = encoded({ datacenter: 'dc2', request: { method: 'GET', path: '/v1/catalog/nodes', rawQuery: '', headers: {}, body: Buffer.alloc(0) } });
    for (const length of [1, 3, whole.length - 1]) {
      const cut = whole.subarray(0, length);
      expect(() => ForwardRequest.decode(cut)).toThrow();
      expect(() => readForwardRequest(cut)).toThrow();
    }
  });

  test('a FederationService forward: the request and the datacenters it left', () => {
    fc.assert(
      fc.property(forwardRequest, datacenters, (request, visited) => {
        const wire = FederationServiceForwardRequest.encode({ forward: request, visited }).finish();
        const read = readFederationForward(wire);
        expect(read.visited).toEqual(visited);
        expect(ForwardRequest.decode(read.forward!.bytes)).toEqual(ForwardRequest.decode(encoded(request)));
      }),
      { seed: 0xf0d2, numRuns: 200 },
    );
    expect(readFederationForward(FederationServiceForwardRequest.encode({ forward: undefined, visited: ['dc2'] }).finish()).forward).toBeUndefined();
  });
});

describe('building the messages a router sends', () => {
  test('the forward to the next router decodes to the request and the datacenters left', () => {
    fc.assert(
      fc.property(forwardRequest, datacenters, (request, visited) => {
        const decoded = FederationServiceForwardRequest.decode(federationForward(encoded(request), visited));
        expect(decoded).toEqual({ forward: ForwardRequest.decode(encoded(request)), visited });
      }),
      { seed: 0xf0d3, numRuns: 200 },
    );
  });

  test("the catalog's ServeRequest carries the HTTP request as it came", () => {
    fc.assert(
      fc.property(httpRequest, (request) => {
        const http = HttpRequest.encode(request).finish();
        expect(ServeRequest.decode(serveRequest(http))).toEqual({ request: HttpRequest.decode(http) });
      }),
      { seed: 0xf0d4, numRuns: 200 },
    );
  });

  test("the catalog's ServeResponse with the path first is the ForwardResponse; a transit router puts itself first", () => {
    fc.assert(
      fc.property(httpResponse, datacenters, (response, path) => {
        const served = withPathFirst(path, ServeResponse.encode({ response }).finish());
        expect(ForwardResponse.decode(served)).toEqual({ response: ServeResponse.decode(ServeResponse.encode({ response }).finish()).response, path, grpc: undefined });
        const carried = withPathFirst(['dc1'], served);
        expect(ForwardResponse.decode(carried).path).toEqual(['dc1', ...path]);
      }),
      { seed: 0xf0d5, numRuns: 200 },
    );
  });

  test('a ForwardResponse in and out of a FederationService answer', () => {
    const forward = ForwardResponse.encode({ response: { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('[]') }, path: ['dc2'] }).finish();
    const answer = federationAnswer(forward);
    expect(FederationServiceForwardResponse.decode(answer)).toEqual({ forward: ForwardResponse.decode(forward) });
    expect(Buffer.from(forwardOfFederationAnswer(answer))).toEqual(Buffer.from(forward));
    // An answer without one carries an empty ForwardResponse: no HTTP response, no path.
    expect(ForwardResponse.decode(forwardOfFederationAnswer(new Uint8Array(0)))).toEqual({ response: undefined, path: [], grpc: undefined });
  });

  test('what the generated encoders write for present-but-empty fields: an empty message, an empty entry of a repeated string', () => {
    const empty = new Uint8Array(0);
    expect(Buffer.from(federationForward(empty, ['', 'dc1']))).toEqual(Buffer.from(FederationServiceForwardRequest.encode({ forward: ForwardRequest.decode(empty), visited: ['', 'dc1'] }).finish()));
    expect(Buffer.from(serveRequest(empty))).toEqual(Buffer.from(ServeRequest.encode({ request: HttpRequest.decode(empty) }).finish()));
    expect(Buffer.from(federationAnswer(empty))).toEqual(Buffer.from(FederationServiceForwardResponse.encode({ forward: ForwardResponse.decode(empty) }).finish()));
    expect(ForwardResponse.decode(withPathFirst(['', 'dc2'], empty)).path).toEqual(['', 'dc2']);
  });

  test('a two-byte tag, a ten-byte varint and a group are skipped as the decoders skip them', () => {
    const request = encoded({ datacenter: 'dc2', grpc: { method: '/consulate.catalog.v1.CatalogService/Status', message: Buffer.from([1, 2]), readOnly: true } });
    // Field 2000 (a two-byte tag) as a varint; field 4 as -1 sign-extended to ten bytes; a group of field 9 holding a varint.
    const extra = Buffer.from([0x80, 0x7d, 0x01, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x4b, 0x08, 0x01, 0x4c]);
    const envelope = readForwardRequest(Buffer.concat([request, extra]));
    expect(envelope.datacenter).toBe('dc2');
    expect(envelope.grpc?.readOnly).toBe(true);
    expect(ForwardRequest.decode(Buffer.concat([request, extra])).grpc?.readOnly).toBe(true);
  });
});
