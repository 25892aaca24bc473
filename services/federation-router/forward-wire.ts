/**
 * Forwarded requests as bytes. A router reads of a forwarded request only what routing needs (its
 * datacenter, its HTTP method or gRPC method) and passes the rest on as it came: the request's
 * HTTP body and headers, a gRPC call's message and the answer are never decoded and encoded again
 * at a router. Each hop used to decode and re-encode them (ForwardRequest, ServeResponse with its
 * header maps), a sixth of a router's CPU on a forwarded read (bench/federation/README.md).
 *
 * The messages of operator.proto, federation.proto and forwarded.proto are so numbered that the
 * answers nest without copying: ServeResponse's `response` and ForwardResponse's `response` are
 * both field 1 (an HttpResponse), so a catalog's ServeResponse with `path` appended is a
 * ForwardResponse; a ForwardResponse is field 1 of FederationServiceForwardResponse. A singular
 * field that comes twice keeps its last value and a repeated one gathers every value in order,
 * as ts-proto's decoders do; `path` written first is the path's first entry. The bytes are read
 * with services/lib/proto-wire.ts, which is stricter than the generated decoders only on encodings
 * no encoder writes (a varint past ten bytes or past 64 bits, a length of 2^32 or more): those are
 * refused, where ts-proto would read them. A skipped group's end is not matched to its start.
 */
import { MethodDefinition } from '@grpc/grpc-js';

import { EMPTY, END_GROUP, LEN, Reader, VARINT, Writer, nestedFieldSize, repeatedStringSize } from '../lib/proto-wire';

/** A forwarded request (an encoded ForwardRequest) and what a router reads of it. */
export interface ForwardEnvelope {
  readonly bytes: Uint8Array;
  readonly datacenter: string;
  /** Its HTTP request: the method and path read, the whole of it still encoded (an HttpRequest). */
  readonly http?: { readonly method: string; readonly path: string; readonly bytes: Uint8Array };
  /** Its gRPC call: the method and whether it is a read; the message as it came. */
  readonly grpc?: { readonly method: string; readonly readOnly: boolean; readonly message: Uint8Array };
}

/** Field numbers, from the .proto files. */
const FORWARD_REQUEST = { datacenter: 1, request: 2, grpc: 3 };
const HTTP_REQUEST = { method: 1, path: 2 };
const GRPC_REQUEST = { method: 1, message: 2, readOnly: 3 };
const FEDERATION_FORWARD_REQUEST = { forward: 1, visited: 2 };
const FORWARD_RESPONSE = { path: 2 };
const SERVE_REQUEST = { request: 1 };
const FEDERATION_FORWARD_RESPONSE = { forward: 1 };

/** Reads a ForwardRequest's head; throws (as a decoder does) on bytes that are not one. */
export function readForwardRequest(bytes: Uint8Array): ForwardEnvelope {
  let datacenter = '';
  let http: ForwardEnvelope['http'];
  let grpc: ForwardEnvelope['grpc'];
  eachField(bytes, 'a ForwardRequest', (field, wireType, reader) => {
    if (wireType !== LEN) return false;
    if (field === FORWARD_REQUEST.datacenter) datacenter = reader.string();
    else if (field === FORWARD_REQUEST.request) http = readHttpRequest(reader.bytes());
    else if (field === FORWARD_REQUEST.grpc) grpc = readGrpcRequest(reader.bytes());
    else return false;
    return true;
  });
  return { bytes, datacenter, http, grpc };
}

function readHttpRequest(bytes: Buffer): NonNullable<ForwardEnvelope['http']> {
  let method = '';
  let path = '';
  eachField(bytes, 'an HttpRequest', (field, wireType, reader) => {
    if (wireType !== LEN) return false;
    if (field === HTTP_REQUEST.method) method = reader.string();
    else if (field === HTTP_REQUEST.path) path = reader.string();
    else return false;
    return true;
  });
  return { method, path, bytes };
}

function readGrpcRequest(bytes: Buffer): NonNullable<ForwardEnvelope['grpc']> {
  let method = '';
  let message: Uint8Array = EMPTY;
  let readOnly = false;
  eachField(bytes, 'a GrpcRequest', (field, wireType, reader) => {
    if (field === GRPC_REQUEST.method && wireType === LEN) method = reader.string();
    else if (field === GRPC_REQUEST.message && wireType === LEN) message = reader.bytes();
    // A bool is any varint but 0, as the decoders read it.
    else if (field === GRPC_REQUEST.readOnly && wireType === VARINT) readOnly = reader.varint() !== 0;
    else return false;
    return true;
  });
  return { method, readOnly, message };
}

/** A FederationServiceForwardRequest: the forwarded request (undefined when it has none) and the datacenters it left. */
export function readFederationForward(bytes: Uint8Array): { forward: ForwardEnvelope | undefined; visited: string[] } {
  let forward: Uint8Array | undefined;
  const visited: string[] = [];
  eachField(bytes, 'a FederationServiceForwardRequest', (field, wireType, reader) => {
    if (wireType !== LEN) return false;
    if (field === FEDERATION_FORWARD_REQUEST.forward) forward = reader.bytes();
    else if (field === FEDERATION_FORWARD_REQUEST.visited) visited.push(reader.string());
    else return false;
    return true;
  });
  return { forward: forward === undefined ? undefined : readForwardRequest(forward), visited };
}

/** The FederationServiceForwardRequest that carries `forward` on, having left `visited`. */
export function federationForward(forward: Uint8Array, visited: readonly string[]): Buffer {
  let size = nestedFieldSize(forward.length);
  for (const datacenter of visited) size += repeatedStringSize(datacenter);
  const writer = new Writer(size, 'a FederationServiceForwardRequest');
  writer.nested(FEDERATION_FORWARD_REQUEST.forward, forward.length);
  writer.raw(forward);
  for (const datacenter of visited) writer.repeatedString(FEDERATION_FORWARD_REQUEST.visited, datacenter);
  writer.done();
  return writer.buffer;
}

/** The ServeRequest (ForwardedHttpService) of an encoded HttpRequest. */
export function serveRequest(http: Uint8Array): Buffer {
  return messageOf(SERVE_REQUEST.request, http, 'a ServeRequest');
}

/** `answer` (a ForwardResponse, or a ServeResponse: its `response` is the same field) with `datacenters` first on its path. */
export function withPathFirst(datacenters: readonly string[], answer: Uint8Array): Buffer {
  let size = answer.length;
  for (const datacenter of datacenters) size += repeatedStringSize(datacenter);
  const writer = new Writer(size, 'a ForwardResponse');
  for (const datacenter of datacenters) writer.repeatedString(FORWARD_RESPONSE.path, datacenter);
  writer.raw(answer);
  writer.done();
  return writer.buffer;
}

/** The ForwardResponse a FederationServiceForwardResponse carries (empty when none: a ForwardResponse with nothing set). */
export function forwardOfFederationAnswer(bytes: Uint8Array): Buffer {
  let forward: Buffer = EMPTY;
  eachField(bytes, 'a FederationServiceForwardResponse', (field, wireType, reader) => {
    if (field !== FEDERATION_FORWARD_RESPONSE.forward || wireType !== LEN) return false;
    forward = reader.bytes();
    return true;
  });
  return forward;
}

/** The FederationServiceForwardResponse that carries an encoded ForwardResponse back. */
export function federationAnswer(forward: Uint8Array): Buffer {
  return messageOf(FEDERATION_FORWARD_RESPONSE.forward, forward, 'a FederationServiceForwardResponse');
}

/** A message whose one field, `field`, is the message `inner` (written even when empty: it is there). */
function messageOf(field: number, inner: Uint8Array, what: string): Buffer {
  const writer = new Writer(nestedFieldSize(inner.length), what);
  writer.nested(field, inner.length);
  writer.raw(inner);
  writer.done();
  return writer.buffer;
}

/**
 * Reads `bytes` field by field as ts-proto's decoders do: a zero tag or an end-group ends the
 * message, a field `read` does not take (another number, another wire type) is skipped. Throws on
 * a truncated field, a bad wire type or a malformed varint (see the top of this file). Bytes read
 * are views of `bytes`, not copies.
 */
function eachField(bytes: Uint8Array, what: string, read: (field: number, wireType: number, reader: Reader) => boolean): void {
  const reader = new Reader(asBuffer(bytes), what);
  while (reader.at < reader.length) {
    const tag = reader.uint32();
    if (tag === 0 || (tag & 7) === END_GROUP) return;
    if (!read(tag >>> 3, tag & 7, reader)) reader.skip(tag & 7);
  }
}

/** A Buffer over the same memory (grpc-js sends Buffers). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `method` with its messages left encoded: a handler or caller of it sees and gives bytes. */
export function encodedMethod<Req, Res>(method: MethodDefinition<Req, Res>): MethodDefinition<Buffer, Buffer> {
  const same = (bytes: Buffer): Buffer => bytes;
  return { ...method, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same };
}
