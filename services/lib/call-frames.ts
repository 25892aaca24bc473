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

const LEN = 2;
const VARINT = 0;
const FIXED64 = 1;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;

/** Field numbers: the frames', UnaryCall's, UnaryAnswer's and a map entry's. */
const FRAME = { one: 1, many: 2 } as const;
const CALL = { id: 1, method: 2, message: 3, metadata: 4, timeoutMs: 5, cancel: 6 } as const;
const ANSWER = { id: 1, code: 2, details: 3, message: 4, trailers: 5 } as const;
const ENTRY = { key: 1, value: 2 } as const;

// ---------------------------------------------------------------------------------------------
// Encoding: sizes first, then one buffer written front to back

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
  const out = new Writer(total);
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

/** Proto3: a field at its default (0, "", empty) is not written. */
function numberFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

function stringFieldSize(value: string): number {
  if (value.length === 0) return 0;
  const bytes = Buffer.byteLength(value, 'utf8');
  return 1 + varintSize(bytes) + bytes;
}

function bytesFieldSize(value: Uint8Array): number {
  return value.length === 0 ? 0 : 1 + varintSize(value.length) + value.length;
}

function mapSize(map: Readonly<Record<string, string>>): number {
  let size = 0;
  for (const key in map) {
    const entry = entrySize(key, map[key]);
    size += 1 + varintSize(entry) + entry;
  }
  return size;
}

function entrySize(key: string, value: string): number {
  return stringFieldSize(key) + stringFieldSize(value);
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

class Writer {
  readonly buffer: Buffer;
  private at = 0;

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  tag(field: number, wireType: number): void {
    this.buffer[this.at++] = (field << 3) | wireType;
  }

  /** A non-negative integer up to 2^53 - 1 (ids, timeouts, sizes, codes). */
  varint(value: number): void {
    while (value >= 128) {
      this.buffer[this.at++] = (value % 128) | 128;
      value = Math.floor(value / 128);
    }
    this.buffer[this.at++] = value;
  }

  numberField(field: number, value: number): void {
    if (value === 0) return;
    this.tag(field, VARINT);
    this.varint(value);
  }

  stringField(field: number, value: string): void {
    if (value.length === 0) return;
    this.tag(field, LEN);
    // Short ASCII strings (method paths, trace headers) are most of what goes here.
    const bytes = Buffer.byteLength(value, 'utf8');
    this.varint(bytes);
    this.at += this.buffer.write(value, this.at, bytes, 'utf8');
  }

  bytesField(field: number, value: Uint8Array): void {
    if (value.length === 0) return;
    this.tag(field, LEN);
    this.varint(value.length);
    this.buffer.set(value, this.at);
    this.at += value.length;
  }

  map(field: number, map: Readonly<Record<string, string>>): void {
    for (const key in map) {
      const value = map[key];
      this.tag(field, LEN);
      this.varint(entrySize(key, value));
      this.stringField(ENTRY.key, key);
      this.stringField(ENTRY.value, value);
    }
  }

  /** The sizes computed beforehand are what was written: a mismatch would send a corrupt frame. */
  done(): void {
    if (this.at !== this.buffer.length) throw new Error(`a Calls frame was sized ${this.buffer.length} bytes but ${this.at} were written`);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

export function decodeCallFrame(bytes: Buffer): StreamedCall[] {
  return decodeFrame(bytes, readCall);
}

export function decodeAnswerFrame(bytes: Buffer): StreamedAnswer[] {
  return decodeFrame(bytes, readAnswer);
}

/** `call`/`answer` (the last one, as protobuf has a repeated singular field) first, then the others in order. */
function decodeFrame<T>(bytes: Buffer, read: (input: Reader, end: number) => T): T[] {
  const input = new Reader(bytes);
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
  let message = EMPTY;
  const metadata: Record<string, string> = {};
  let timeoutMs = 0;
  let cancel = false;
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === CALL.id && wireType === VARINT) id = input.id();
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
  let message = EMPTY;
  const trailers: Record<string, string> = {};
  while (input.at < end) {
    const [field, wireType] = input.tag();
    if (field === ANSWER.id && wireType === VARINT) id = input.id();
    // uint32: the low 32 bits, as every protobuf decoder reads one.
    else if (field === ANSWER.code && wireType === VARINT) code = input.varint() % 2 ** 32;
    else if (field === ANSWER.details && wireType === LEN) details = input.string();
    else if (field === ANSWER.message && wireType === LEN) message = input.bytes();
    else if (field === ANSWER.trailers && wireType === LEN) input.entry(trailers);
    else input.skip(wireType);
  }
  input.ends(end);
  return { id, code, details, message, trailers };
}

const EMPTY: Buffer = Buffer.alloc(0);

class Reader {
  at = 0;

  constructor(private readonly input: Buffer) {}

  tag(): [field: number, wireType: number] {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new Error('invalid field number 0 in a Calls frame');
    return [field, tag % 8];
  }

  /**
   * A varint as a number: exact up to 2^53, and past it (a uint64 near its top) only a bound.
   * Ten bytes at most, as protobuf's.
   */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.input.length) throw new Error('a Calls frame ends inside a varint');
      const byte = this.input[this.at++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new Error('a varint longer than 10 bytes in a Calls frame');
  }

  /** A call's id: a number that stays exact (ours count from 1; a peer's past 2^53 is refused). */
  id(): number {
    const id = this.varint();
    if (!Number.isSafeInteger(id)) throw new Error(`a call id past 2^53 in a Calls frame (${id})`);
    return id;
  }

  /** Where a length-delimited field that starts here ends. */
  end(): number {
    const length = this.varint();
    const end = this.at + length;
    if (end > this.input.length) throw new Error(`a Calls frame field of ${length} bytes runs past the frame's end`);
    return end;
  }

  /** A nested message that was read must end where its length said. */
  ends(end: number): void {
    if (this.at !== end) throw new Error('a Calls frame field runs past its length');
  }

  string(): string {
    const end = this.end();
    const text = this.input.toString('utf8', this.at, end);
    this.at = end;
    return text;
  }

  bytes(): Buffer {
    const end = this.end();
    const view = this.input.subarray(this.at, end);
    this.at = end;
    return view;
  }

  /** A map<string, string> entry into `map`: a missing key or value is "", a repeated key's last value wins. */
  entry(map: Record<string, string>): void {
    const end = this.end();
    let key = '';
    let value = '';
    while (this.at < end) {
      const [field, wireType] = this.tag();
      if (field === ENTRY.key && wireType === LEN) key = this.string();
      else if (field === ENTRY.value && wireType === LEN) value = this.string();
      else this.skip(wireType);
    }
    this.ends(end);
    map[key] = value;
  }

  /** Past a field this version does not read. */
  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case LEN:
        this.at = this.end();
        return;
      case FIXED32:
        this.advance(4);
        return;
      case START_GROUP:
        for (;;) {
          const [, inner] = this.tag();
          if (inner === END_GROUP) return;
          this.skip(inner);
        }
      case END_GROUP:
        throw new Error('an end of group with no start in a Calls frame');
      default:
        throw new Error(`wire type ${wireType} in a Calls frame`);
    }
  }

  private advance(bytes: number): void {
    if (this.at + bytes > this.input.length) throw new Error('a Calls frame ends inside a fixed-width field');
    this.at += bytes;
  }
}
