/**
 * The messages of a request forwarded between datacenters as the catalogs at its two ends handle
 * them, encoded by hand (lib/proto-wire.ts) on the generated code's wire format: the asking
 * catalog's ForwardService.Forward request and answer, the answering catalog's
 * ForwardedHttpService.Serve request and answer. A catalog handles one pair for every request it
 * forwards or serves for another datacenter, and the generated codecs spent a few per cent of its
 * CPU there (nested objects per header, a forking writer). forward-messages.test.ts holds them to
 * the generated codecs. The routers read these messages as bytes (federation-router/forward-wire.ts).
 */
import { MethodDefinition } from '@grpc/grpc-js';

import { ForwardedHttpServiceService, ServeRequest, ServeResponse } from '../gen/consulate/catalog/v1/forwarded';
import { ForwardRequest, ForwardResponse, ForwardServiceService, GrpcRequest, GrpcResponse, HttpRequest, HttpResponse } from '../gen/consulate/router/v1/operator';
import { EMPTY, LEN, Reader, VARINT, Writer, bytesFieldSize, mapSize, nestedFieldSize, numberFieldSize, stringFieldSize } from '../lib/proto-wire';

/** Field numbers, from operator.proto. */
const FORWARD_REQUEST = { datacenter: 1, request: 2, grpc: 3 } as const;
const HTTP_REQUEST = { method: 1, path: 2, rawQuery: 3, headers: 4, body: 5 } as const;
const GRPC_REQUEST = { method: 1, message: 2, readOnly: 3 } as const;
const FORWARD_RESPONSE = { response: 1, path: 2, grpc: 3 } as const;
const HTTP_RESPONSE = { status: 1, headers: 2, body: 3 } as const;
const GRPC_RESPONSE = { code: 1, details: 2, message: 3, trailers: 4 } as const;
const SERVE_REQUEST = { request: 1 } as const;
const SERVE_RESPONSE = { response: 1 } as const;

/** ForwardService.Forward with these codecs: what a catalog's Calls stream to its routers carries. */
export const FORWARD_METHOD: MethodDefinition<ForwardRequest, ForwardResponse> = {
  ...ForwardServiceService.forward,
  requestSerialize: encodeForwardRequest,
  responseDeserialize: decodeForwardResponse,
};

/** ForwardedHttpService.Serve with these codecs: what a catalog serves a router's requests with. */
export const SERVE_METHOD: MethodDefinition<ServeRequest, ServeResponse> = {
  ...ForwardedHttpServiceService.serve,
  requestDeserialize: decodeServeRequest,
  responseSerialize: encodeServeResponse,
};

export function encodeForwardRequest(request: ForwardRequest): Buffer {
  const http = request.request === undefined ? 0 : httpRequestSize(request.request);
  const grpc = request.grpc === undefined ? 0 : grpcRequestSize(request.grpc);
  // A nested message that is set is written even when empty, as the generated encoder does.
  const size = stringFieldSize(request.datacenter) + (request.request === undefined ? 0 : nestedFieldSize(http)) + (request.grpc === undefined ? 0 : nestedFieldSize(grpc));
  const out = new Writer(size, 'a ForwardRequest');
  out.stringField(FORWARD_REQUEST.datacenter, request.datacenter);
  if (request.request !== undefined) {
    const r = request.request;
    out.nested(FORWARD_REQUEST.request, http);
    out.stringField(HTTP_REQUEST.method, r.method);
    out.stringField(HTTP_REQUEST.path, r.path);
    out.stringField(HTTP_REQUEST.rawQuery, r.rawQuery);
    out.map(HTTP_REQUEST.headers, r.headers);
    out.bytesField(HTTP_REQUEST.body, r.body);
  }
  if (request.grpc !== undefined) {
    const g = request.grpc;
    out.nested(FORWARD_REQUEST.grpc, grpc);
    out.stringField(GRPC_REQUEST.method, g.method);
    out.bytesField(GRPC_REQUEST.message, g.message);
    out.numberField(GRPC_REQUEST.readOnly, g.readOnly ? 1 : 0);
  }
  out.done();
  return out.buffer;
}

function httpRequestSize(r: HttpRequest): number {
  return stringFieldSize(r.method) + stringFieldSize(r.path) + stringFieldSize(r.rawQuery) + mapSize(r.headers) + bytesFieldSize(r.body);
}

function grpcRequestSize(g: GrpcRequest): number {
  return stringFieldSize(g.method) + bytesFieldSize(g.message) + numberFieldSize(g.readOnly ? 1 : 0);
}

/** Reads a ForwardResponse as the generated decoder does; throws on bytes that are not one. */
export function decodeForwardResponse(bytes: Buffer): ForwardResponse {
  const input = new Reader(bytes, 'a ForwardResponse');
  let response: HttpResponse | undefined;
  const path: string[] = [];
  let grpc: GrpcResponse | undefined;
  while (input.at < input.length) {
    const [field, wireType] = input.tag();
    if (field === FORWARD_RESPONSE.response && wireType === LEN) response = readHttpResponse(input, input.end());
    else if (field === FORWARD_RESPONSE.path && wireType === LEN) path.push(input.string());
    else if (field === FORWARD_RESPONSE.grpc && wireType === LEN) grpc = readGrpcResponse(input, input.end());
    else input.skip(wireType);
  }
  return { response, path, grpc };
}

function readHttpResponse(input: Reader, end: number): HttpResponse {
  let status = 0;
  const headers: Record<string, string> = {};
  let body: Buffer = EMPTY;
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === HTTP_RESPONSE.status && wireType === VARINT) status = input.uint32();
    else if (field === HTTP_RESPONSE.headers && wireType === LEN) input.entry(headers);
    else if (field === HTTP_RESPONSE.body && wireType === LEN) body = input.bytes();
    else input.skip(wireType);
  }
  input.ends(end);
  return { status, headers, body };
}

function readGrpcResponse(input: Reader, end: number): GrpcResponse {
  let code = 0;
  let details = '';
  let message: Buffer = EMPTY;
  const trailers: Record<string, string> = {};
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === GRPC_RESPONSE.code && wireType === VARINT) code = input.uint32();
    else if (field === GRPC_RESPONSE.details && wireType === LEN) details = input.string();
    else if (field === GRPC_RESPONSE.message && wireType === LEN) message = input.bytes();
    else if (field === GRPC_RESPONSE.trailers && wireType === LEN) input.entry(trailers);
    else input.skip(wireType);
  }
  input.ends(end);
  return { code, details, message, trailers };
}

/** Reads a ServeRequest as the generated decoder does; throws on bytes that are not one. */
export function decodeServeRequest(bytes: Buffer): ServeRequest {
  const input = new Reader(bytes, 'a ServeRequest');
  let request: HttpRequest | undefined;
  while (input.at < input.length) {
    const [field, wireType] = input.tag();
    if (field === SERVE_REQUEST.request && wireType === LEN) request = readHttpRequest(input, input.end());
    else input.skip(wireType);
  }
  return { request };
}

function readHttpRequest(input: Reader, end: number): HttpRequest {
  let method = '';
  let path = '';
  let rawQuery = '';
  const headers: Record<string, string> = {};
  let body: Buffer = EMPTY;
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === HTTP_REQUEST.method && wireType === LEN) method = input.string();
    else if (field === HTTP_REQUEST.path && wireType === LEN) path = input.string();
    else if (field === HTTP_REQUEST.rawQuery && wireType === LEN) rawQuery = input.string();
    else if (field === HTTP_REQUEST.headers && wireType === LEN) input.entry(headers);
    else if (field === HTTP_REQUEST.body && wireType === LEN) body = input.bytes();
    else input.skip(wireType);
  }
  input.ends(end);
  return { method, path, rawQuery, headers, body };
}

export function encodeServeResponse(answer: ServeResponse): Buffer {
  const r = answer.response;
  const http = r === undefined ? 0 : numberFieldSize(r.status) + mapSize(r.headers) + bytesFieldSize(r.body);
  const out = new Writer(r === undefined ? 0 : nestedFieldSize(http), 'a ServeResponse');
  if (r !== undefined) {
    out.nested(SERVE_RESPONSE.response, http);
    out.numberField(HTTP_RESPONSE.status, r.status);
    out.map(HTTP_RESPONSE.headers, r.headers);
    out.bytesField(HTTP_RESPONSE.body, r.body);
  }
  out.done();
  return out.buffer;
}
