/**
 * The frames of a `Calls` stream (consulate/common/v1/call_stream.proto), encoded and decoded by
 * hand. Every service's `<Service>CallsRequest` is `call = 1` and `repeated calls = 2` of
 * UnaryCall, its response `answer = 1` and `repeated answers = 2` of UnaryAnswer, so one codec
 * serves them all, on the same wire format as the generated ones (call-frames.test.ts holds that
 * both ways).
 *
 * Why by hand: each call crosses these codecs twice in every process on a forwarded request's
 * path, and the generated ones spend most of their time on what the frames do not need here:
 * 64-bit ids as BigInt, a nested message object per metadata entry, a writer that forks per
 * field. Ids and timeouts are plain numbers (our clients number calls from 1; a timeout is at
 * most days), and a bytes field is read as a view of the frame, not copied.
 *
 * Decoding takes bytes from another process: it throws on anything that is not a well-formed
 * frame (grpc-js then fails the stream), and never reads past the buffer.
 */

import { ServiceDefinition } from '@grpc/grpc-js';

import { EMPTY, LEN, Reader, VARINT, Writer, bytesFieldSize, mapSize, numberFieldSize, stringFieldSize, varintSize } from './proto-wire';

/** One call started on a stream, or cancelled (`cancel`, with only `id` set). */
export interface StreamedCall {
  readonly id: number;
  /** The unary method's path: "/consulate.router.v1.ForwardService/Forward". */
  readonly method: string;
  /** The request message, encoded. */
  readonly message: Buffer;
  /** ASCII metadata (trace context); binary entries do not travel. */
  readonly metadata: Readonly<Record<string, string>>;
  /** What is left of the caller's deadline; 0 for none. */
  readonly timeoutMs: number;
  readonly cancel: boolean;
}

/** One call's end: its status, and its response message when OK. */
export interface StreamedAnswer {
  readonly id: number;
  readonly code: number;
  readonly details: string;
  readonly message: Buffer;
  readonly trailers: Readonly<Record<string, string>>;
}

/** Field numbers: the frames', UnaryCall's and UnaryAnswer's. */
const FRAME = { one: 1, many: 2 } as const;
const CALL = { id: 1, method: 2, message: 3, metadata: 4, timeoutMs: 5, cancel: 6 } as const;
const ANSWER = { id: 1, code: 2, details: 3, message: 4, trailers: 5 } as const;

// ---------------------------------------------------------------------------------------------
// Encoding: sizes first, then one buffer written front to back

/**
 * `definition` with its `Calls` method (de)serialized by these codecs: what RoleGrpcServer serves.
 * (Start-up code: Object.assign rather than a spread, which the hot-path check keeps out of this file.)
 */
export function withCallFrames(definition: ServiceDefinition): ServiceDefinition {
  const calls = definition.calls;
  if (calls === undefined || !calls.requestStream || !calls.responseStream) throw new Error(`${calls?.path ?? 'the service'} has no bidirectional Calls method`);
  const framed = Object.assign({}, calls, { requestSerialize: encodeCallFrame, requestDeserialize: decodeCallFrame, responseSerialize: encodeAnswerFrame, responseDeserialize: decodeAnswerFrame });
  return Object.assign({}, definition, { calls: framed });
}

/** A frame of the calls started in one turn: one alone goes as `call`, which every version reads. */
export function encodeCallFrame(calls: readonly StreamedCall[]): Buffer {
  return encodeFrame(calls, callSize, writeCall);
}

/** A frame of the answers ready in one turn: one alone goes as `answer`, which every version reads. */
export function encodeAnswerFrame(answers: readonly StreamedAnswer[]): Buffer {
  return encodeFrame(answers, answerSize, writeAnswer);
}

function encodeFrame<T>(items: readonly T[], sizeOf: (item: T) => number, write: (out: Writer, item: T) => void): Buffer {
  const field = items.length === 1 ? FRAME.one : FRAME.many;
  const sizes = items.map(sizeOf);
  let total = 0;
  for (const size of sizes) total += 1 + varintSize(size) + size;
  const out = new Writer(total, 'a Calls frame');
  for (let i = 0; i < items.length; i++) {
    out.tag(field, LEN);
    out.varint(sizes[i]);
    write(out, items[i]);
  }
  out.done();
  return out.buffer;
}

function callSize(call: StreamedCall): number {
  return numberFieldSize(call.id) + stringFieldSize(call.method) + bytesFieldSize(call.message) + mapSize(call.metadata) + numberFieldSize(call.timeoutMs) + (call.cancel ? 2 : 0);
}

function writeCall(out: Writer, call: StreamedCall): void {
  out.numberField(CALL.id, call.id);
  out.stringField(CALL.method, call.method);
  out.bytesField(CALL.message, call.message);
  out.map(CALL.metadata, call.metadata);
  out.numberField(CALL.timeoutMs, call.timeoutMs);
  if (call.cancel) out.numberField(CALL.cancel, 1);
}

function answerSize(answer: StreamedAnswer): number {
  return numberFieldSize(answer.id) + numberFieldSize(answer.code) + stringFieldSize(answer.details) + bytesFieldSize(answer.message) + mapSize(answer.trailers);
}

function writeAnswer(out: Writer, answer: StreamedAnswer): void {
  out.numberField(ANSWER.id, answer.id);
  out.numberField(ANSWER.code, answer.code);
  out.stringField(ANSWER.details, answer.details);
  out.bytesField(ANSWER.message, answer.message);
  out.map(ANSWER.trailers, answer.trailers);
}

// ---------------------------------------------------------------------------------------------
// Decoding

export function decodeCallFrame(bytes: Buffer): StreamedCall[] {
  return decodeFrame(bytes, readCall);
}

export function decodeAnswerFrame(bytes: Buffer): StreamedAnswer[] {
  return decodeFrame(bytes, readAnswer);
}

/** `call`/`answer` first (the last one when it comes twice, as the generated decoder keeps it), then the others in order. */
function decodeFrame<T>(bytes: Buffer, read: (input: Reader, end: number) => T): T[] {
  const input = new Reader(bytes, 'a Calls frame');
  let one: T | undefined;
  const many: T[] = [];
  while (input.at < bytes.length) {
    const [field, wireType] = input.tag();
    if ((field === FRAME.one || field === FRAME.many) && wireType === LEN) {
      const end = input.end();
      const item = read(input, end);
      if (field === FRAME.one) one = item;
      else many.push(item);
    } else input.skip(wireType);
  }
  if (one !== undefined) many.unshift(one);
  return many;
}

function readCall(input: Reader, end: number): StreamedCall {
  let id = 0;
  let method = '';
  let message: Buffer = EMPTY;
  const metadata: Record<string, string> = {};
  let timeoutMs = 0;
  let cancel = false;
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === CALL.id && wireType === VARINT) id = input.exact('a call id');
    else if (field === CALL.method && wireType === LEN) method = input.string();
    else if (field === CALL.message && wireType === LEN) message = input.bytes();
    else if (field === CALL.metadata && wireType === LEN) input.entry(metadata);
    // A timeout past 2^53 ms is no timeout at all.
    else if (field === CALL.timeoutMs && wireType === VARINT) timeoutMs = Math.min(input.varint(), Number.MAX_SAFE_INTEGER);
    else if (field === CALL.cancel && wireType === VARINT) cancel = input.varint() !== 0;
    else input.skip(wireType);
  }
  input.ends(end);
  return { id, method, message, metadata, timeoutMs, cancel };
}

function readAnswer(input: Reader, end: number): StreamedAnswer {
  let id = 0;
  let code = 0;
  let details = '';
  let message: Buffer = EMPTY;
  const trailers: Record<string, string> = {};
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === ANSWER.id && wireType === VARINT) id = input.exact('a call id');
    else if (field === ANSWER.code && wireType === VARINT) code = input.uint32();
    else if (field === ANSWER.details && wireType === LEN) details = input.string();
    else if (field === ANSWER.message && wireType === LEN) message = input.bytes();
    else if (field === ANSWER.trailers && wireType === LEN) input.entry(trailers);
    else input.skip(wireType);
  }
  input.ends(end);
  return { id, code, details, message, trailers };
}

