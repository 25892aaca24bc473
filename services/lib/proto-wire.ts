/**
 * Protobuf's wire format by hand, for the few messages every forwarded request crosses several
 * times (call-frames.ts, the catalog's ForwardService messages): sizes first, then one buffer
 * written front to back; reading takes numbers as numbers and bytes as views. The generated
 * codecs remain the reference: each user holds its messages to them both ways in its tests.
 */

export const VARINT = 0;
export const FIXED64 = 1;
export const LEN = 2;
export const START_GROUP = 3;
export const END_GROUP = 4;
export const FIXED32 = 5;

/** A map<string, string> entry's fields. */
const ENTRY = { key: 1, value: 2 } as const;
/** Groups nested deeper than this are refused, as the generated decoders refuse them. */
const MAX_GROUP_DEPTH = 100;

/** Proto3: a field at its default (0, "", empty) is not written. */
export function numberFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

export function stringFieldSize(value: string): number {
  return value.length === 0 ? 0 : repeatedStringSize(value);
}

export function bytesFieldSize(value: Uint8Array): number {
  return value.length === 0 ? 0 : 1 + varintSize(value.length) + value.length;
}

export function mapSize(map: Readonly<Record<string, string>>): number {
  let size = 0;
  for (const key of Object.keys(map)) {
    const entry = entrySize(key, map[key]);
    size += 1 + varintSize(entry) + entry;
  }
  return size;
}

function entrySize(key: string, value: string): number {
  return stringFieldSize(key) + stringFieldSize(value);
}

/** An entry of a repeated string: written even when empty. */
export function repeatedStringSize(value: string): number {
  return nestedFieldSize(Buffer.byteLength(value, 'utf8'));
}

/** A nested message's field: its tag, its length and its `size` bytes. */
export function nestedFieldSize(size: number): number {
  return 1 + varintSize(size) + size;
}

export function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** Writes one message into a buffer of the size computed beforehand, front to back. */
export class Writer {
  readonly buffer: Buffer;
  private at = 0;

  /** `what`: the message, for errors ("a Calls frame"). */
  constructor(
    size: number,
    private readonly what: string,
  ) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  /** Field numbers 1-15 only: one byte, as the sizes above count it. */
  tag(field: number, wireType: number): void {
    if (!(field >= 1 && field <= 15)) throw new Error(`field ${field} of ${this.what} needs a tag of more than one byte`);
    this.buffer[this.at++] = (field << 3) | wireType;
  }

  /** A non-negative integer up to 2^53 - 1 (ids, timeouts, sizes, codes); anything else is a caller's bug. */
  varint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${value} cannot be written as a varint of ${this.what}`);
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
    if (value.length !== 0) this.repeatedString(field, value);
  }

  bytesField(field: number, value: Uint8Array): void {
    if (value.length === 0) return;
    this.tag(field, LEN);
    this.varint(value.length);
    this.buffer.set(value, this.at);
    this.at += value.length;
  }

  /** An entry of a repeated string, written even when empty. */
  repeatedString(field: number, value: string): void {
    this.tag(field, LEN);
    // Short ASCII strings (method paths, trace headers, datacenters) are most of what goes here.
    const bytes = Buffer.byteLength(value, 'utf8');
    this.varint(bytes);
    this.at += this.buffer.write(value, this.at, bytes, 'utf8');
  }

  /** Bytes already encoded (a message's fields, or a whole field), as they are. */
  raw(bytes: Uint8Array): void {
    this.buffer.set(bytes, this.at);
    this.at += bytes.length;
  }

  /** A nested message's tag and length: its fields follow. */
  nested(field: number, size: number): void {
    this.tag(field, LEN);
    this.varint(size);
  }

  map(field: number, map: Readonly<Record<string, string>>): void {
    for (const key of Object.keys(map)) {
      const value = map[key];
      this.tag(field, LEN);
      this.varint(entrySize(key, value));
      this.stringField(ENTRY.key, key);
      this.stringField(ENTRY.value, value);
    }
  }

  /** The sizes computed beforehand are what was written: a mismatch would send a corrupt frame. */
  done(): void {
    if (this.at !== this.buffer.length) throw new Error(`${this.what} was sized ${this.buffer.length} bytes but ${this.at} were written`);
  }
}

export const EMPTY: Buffer = Buffer.alloc(0);

/**
 * Reads a message from bytes another process sent: throws on anything that is not well formed,
 * never reads past the buffer. Bytes fields are views of it, not copies.
 */
export class Reader {
  at = 0;

  /** `what`: the message, for errors ("a Calls frame"). */
  constructor(
    private readonly input: Buffer,
    private readonly what: string,
  ) {}

  get length(): number {
    return this.input.length;
  }

  tag(): [field: number, wireType: number] {
    const tag = this.varint();
    // A tag is a uint32: field numbers reach 2^29 - 1.
    if (tag > 0xffffffff) throw new Error(`a tag past 32 bits in ${this.what}`);
    const field = Math.floor(tag / 8);
    if (field === 0) throw new Error(`invalid field number 0 in ${this.what}`);
    return [field, tag % 8];
  }

  /**
   * A varint as a number: exact up to 2^53, and past it (a uint64 near its top) only a bound.
   * It ends by its tenth byte (varintByte), as protobuf's.
   */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      const byte = this.varintByte(i);
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  }

  /**
   * A uint32: the low 32 bits of the varint, exactly, as every protobuf decoder reads one (an
   * encoder may write it sign-extended to ten bytes).
   */
  uint32(): number {
    let low = 0;
    for (let i = 0; ; i++) {
      const byte = this.varintByte(i);
      if (i < 5) low |= (byte & 0x7f) << (7 * i);
      if (byte < 0x80) return low >>> 0;
    }
  }

  /** The byte `i` (from 0) of a varint: inside the message, and the tenth holding the 64th bit only (so it ends the varint). */
  private varintByte(i: number): number {
    if (this.at >= this.input.length) throw new Error(`${this.what} ends inside a varint`);
    const byte = this.input[this.at++];
    if (i === 9 && byte > 1) throw new Error(`a varint past 64 bits in ${this.what}`);
    return byte;
  }

  /** A varint that must stay exact: past 2^53 it is refused. */
  exact(field: string): number {
    const value = this.varint();
    if (!Number.isSafeInteger(value)) throw new Error(`${field} past 2^53 in ${this.what} (${value})`);
    return value;
  }

  /** Where a length-delimited field that starts here ends. */
  end(): number {
    const length = this.varint();
    const end = this.at + length;
    if (end > this.input.length) throw new Error(`a field of ${length} bytes runs past the end of ${this.what}`);
    return end;
  }

  /** A nested message that was read must end where its length said. */
  ends(end: number): void {
    if (this.at !== end) throw new Error(`a field of ${this.what} runs past its length`);
  }

  string(): string {
    const end = this.end();
    const text = this.input.toString('utf8', this.at, end);
    this.at = end;
    return text;
  }

  /**
   * A view of the message's bytes, not a copy: it keeps the whole message (a frame of several
   * calls) in memory while it is held, which our users do only while they serve one request.
   */
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
  skip(wireType: number, depth = 0): void {
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
        if (depth >= MAX_GROUP_DEPTH) throw new Error(`groups nested deeper than ${MAX_GROUP_DEPTH} in ${this.what}`);
        for (;;) {
          const [, inner] = this.tag();
          if (inner === END_GROUP) return;
          this.skip(inner, depth + 1);
        }
      case END_GROUP:
        throw new Error(`an end of group with no start in ${this.what}`);
      default:
        throw new Error(`wire type ${wireType} in ${this.what}`);
    }
  }

  private advance(bytes: number): void {
    if (this.at + bytes > this.input.length) throw new Error(`${this.what} ends inside a fixed-width field`);
    this.at += bytes;
  }
}
