/**
 * Request bodies decoded the way Consul's `decodeBody` (Go's encoding/json Decoder) decodes them,
 * so a client sees the same `Request decode failed: <err>` text (agent/catalog_endpoint.go):
 *
 * - syntax errors first, with Go's scanner texts: `invalid character 'x' looking for beginning of
 *   value`, `unexpected EOF` (a value cut short), `EOF` (an empty body);
 * - only the first value is read, whatever follows it is ignored (Decoder.Decode);
 * - then the value is stored into a declared Go type: field names match case-insensitively,
 *   unknown fields are ignored (or refused, `json: unknown field "X"`, with lib.DecodeJSON's
 *   DisallowUnknownFields), `null` leaves the zero value, and the first mismatch is reported
 *   as Go's UnmarshalTypeError (`json: cannot unmarshal number into Go struct field
 *   RegisterRequest.Node of type string`) after the rest has been decoded.
 */

/** The Go types a body is decoded into; `name` is how Go prints the type in errors. */
export type GoType =
  | { readonly kind: 'string'; readonly name: string }
  | { readonly kind: 'int'; readonly name: string }
  /** A Go uint64, kept exact as a bigint (KV Flags and indexes use all 64 bits). */
  | { readonly kind: 'uint64'; readonly name: string }
  /** []byte: a base64 string (encoding/json's rule), as a Buffer; undefined for null. */
  | { readonly kind: 'bytes'; readonly name: string }
  | { readonly kind: 'bool'; readonly name: string }
  | { readonly kind: 'slice'; readonly name: string; readonly elem: GoType }
  | { readonly kind: 'map'; readonly name: string; readonly elem: GoType }
  /** `pointer`: a `*T` field, absent (undefined) unless the body has it; else the zero struct. */
  | { readonly kind: 'struct'; readonly name: string; readonly pointer: boolean; readonly fields: Readonly<Record<string, GoType>> }
  /** interface{}: any JSON, as JSON.parse would give it. */
  | { readonly kind: 'any' };

export const go = {
  string: (name = 'string'): GoType => ({ kind: 'string', name }),
  int: (name = 'int'): GoType => ({ kind: 'int', name }),
  uint64: (name = 'uint64'): GoType => ({ kind: 'uint64', name }),
  bytes: (): GoType => ({ kind: 'bytes', name: '[]uint8' }),
  bool: (name = 'bool'): GoType => ({ kind: 'bool', name }),
  slice: (elem: GoType, name?: string): GoType => ({ kind: 'slice', name: name ?? `[]${typeName(elem)}`, elem }),
  map: (elem: GoType, name?: string): GoType => ({ kind: 'map', name: name ?? `map[string]${typeName(elem)}`, elem }),
  struct: (name: string, fields: Record<string, GoType>): GoType => ({ kind: 'struct', name, pointer: false, fields }),
  pointer: (name: string, fields: Record<string, GoType>): GoType => ({ kind: 'struct', name, pointer: true, fields }),
  any: (): GoType => ({ kind: 'any' }),
};

function typeName(type: GoType): string {
  return type.kind === 'any' ? 'interface {}' : type.name;
}

/** A decode failure, with Go's text (the caller prefixes `Request decode failed: `). */
export class GoJsonError extends Error {
  override readonly name = 'GoJsonError';
}

/** Go's encoding/json stops a nesting this deep (its limit is 10000; ours keeps the stack small). */
export const MAX_DECODE_DEPTH = 1000;

type Node =
  | { readonly kind: 'object'; readonly entries: readonly (readonly [string, Node])[] }
  | { readonly kind: 'array'; readonly items: readonly Node[] }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'number'; readonly literal: string }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'null' };

/** Decodes the first JSON value of `body` into `type`; throws GoJsonError with Go's text. */
export function decodeGoJson(body: string | Buffer, type: GoType, options: DecodeOptions = {}): unknown {
  const node = new Scanner(typeof body === 'string' ? body : body.toString('utf8')).parseFirst();
  const decoder = new TypeDecoder(options);
  const value = decoder.store(node, type, undefined, []);
  if (decoder.firstError !== undefined) throw new GoJsonError(decoder.firstError);
  return value;
}

// ---- Syntax: Go's scanner (encoding/json/scanner.go), its error texts included. ----

class Scanner {
  private at = 0;
  private depth = 0;

  constructor(private readonly text: string) {}

  parseFirst(): Node {
    this.skipSpace();
    if (this.at >= this.text.length) throw new GoJsonError('EOF');
    return this.value();
  }

  private value(): Node {
    const c = this.peek('looking for beginning of value');
    if (c === '{') return this.nested(() => this.object());
    if (c === '[') return this.nested(() => this.array());
    if (c === '"') return { kind: 'string', value: this.string() };
    if (c === '-' || (c >= '0' && c <= '9')) return { kind: 'number', literal: this.number() };
    if (c === 't') return this.literal('true', { kind: 'bool', value: true });
    if (c === 'f') return this.literal('false', { kind: 'bool', value: false });
    if (c === 'n') return this.literal('null', { kind: 'null' });
    throw this.invalid(c, 'looking for beginning of value');
  }

  private nested(parse: () => Node): Node {
    if (++this.depth > MAX_DECODE_DEPTH) throw new GoJsonError('exceeded max depth');
    const node = parse();
    this.depth--;
    return node;
  }

  private object(): Node {
    this.at++;
    const entries: [string, Node][] = [];
    this.skipSpace();
    if (this.peek() === '}') {
      this.at++;
      return { kind: 'object', entries };
    }
    for (;;) {
      const quote = this.peek();
      if (quote !== '"') throw this.invalid(quote, 'looking for beginning of object key string');
      const key = this.string();
      this.skipSpace();
      const colon = this.peek();
      if (colon !== ':') throw this.invalid(colon, 'after object key');
      this.at++;
      this.skipSpace();
      entries.push([key, this.value()]);
      this.skipSpace();
      const next = this.peek();
      if (next === '}') {
        this.at++;
        return { kind: 'object', entries };
      }
      if (next !== ',') throw this.invalid(next, 'after object key:value pair');
      this.at++;
      this.skipSpace();
    }
  }

  private array(): Node {
    this.at++;
    const items: Node[] = [];
    this.skipSpace();
    if (this.peek() === ']') {
      this.at++;
      return { kind: 'array', items };
    }
    for (;;) {
      items.push(this.value());
      this.skipSpace();
      const next = this.peek();
      if (next === ']') {
        this.at++;
        return { kind: 'array', items };
      }
      if (next !== ',') throw this.invalid(next, 'after array element');
      this.at++;
      this.skipSpace();
    }
  }

  private string(): string {
    const start = this.at;
    this.at++;
    for (;;) {
      const c = this.peek();
      if (c === '"') {
        this.at++;
        return JSON.parse(this.text.slice(start, this.at)) as string;
      }
      if (c === '\\') {
        this.at++;
        const escape = this.peek();
        if (escape === 'u') {
          for (let i = 0; i < 4; i++) {
            this.at++;
            const hex = this.peek();
            if (!/[0-9a-fA-F]/.test(hex)) throw this.invalid(hex, 'in \\u hexadecimal character escape');
          }
        } else if (!'"\\/bfnrt'.includes(escape)) {
          throw this.invalid(escape, 'in string escape code');
        }
      } else if (c.charCodeAt(0) < 0x20) {
        throw this.invalid(c, 'in string literal');
      }
      this.at++;
    }
  }

  private number(): string {
    const start = this.at;
    if (this.text[this.at] === '-') {
      this.at++;
      const first = this.peek();
      if (!(first >= '0' && first <= '9')) throw this.invalid(first, 'in numeric literal');
    }
    if (this.text[this.at] === '0') this.at++;
    else while (this.isDigit(this.text[this.at])) this.at++;
    if (this.text[this.at] === '.') {
      this.at++;
      const digit = this.peek();
      if (!this.isDigit(digit)) throw this.invalid(digit, 'after decimal point in numeric literal');
      while (this.isDigit(this.text[this.at])) this.at++;
    }
    if (this.text[this.at] === 'e' || this.text[this.at] === 'E') {
      this.at++;
      if (this.text[this.at] === '+' || this.text[this.at] === '-') this.at++;
      const digit = this.peek();
      if (!this.isDigit(digit)) throw this.invalid(digit, 'in exponent of numeric literal');
      while (this.isDigit(this.text[this.at])) this.at++;
    }
    return this.text.slice(start, this.at);
  }

  private literal(word: string, node: Node): Node {
    this.at++;
    for (const expected of word.slice(1)) {
      const c = this.peek();
      if (c !== expected) throw this.invalid(c, `in literal ${word} (expecting ${quoteChar(expected)})`);
      this.at++;
    }
    return node;
  }

  /** The character at the cursor; a value cut short is Go's io.ErrUnexpectedEOF. */
  private peek(_context?: string): string {
    if (this.at >= this.text.length) throw new GoJsonError('unexpected EOF');
    return this.text[this.at];
  }

  private isDigit(c: string | undefined): boolean {
    return c !== undefined && c >= '0' && c <= '9';
  }

  private skipSpace(): void {
    while (this.at < this.text.length && ' \t\r\n'.includes(this.text[this.at])) this.at++;
  }

  private invalid(c: string, context: string): GoJsonError {
    return new GoJsonError(`invalid character ${quoteChar(c)} ${context}`);
  }
}

/** Go's quoteChar: the offending byte, single-quoted, escaped as strconv.Quote escapes it. */
export function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return `'"'`;
  // Go looks at one byte: for a multi-byte character, the first byte of its UTF-8 form.
  const byte = Buffer.from(c, 'utf8')[0] ?? 0;
  const named: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 0x5c: '\\\\' };
  if (named[byte] !== undefined) return `'${named[byte]}'`;
  if (byte < 0x20 || byte === 0x7f) return `'\\x${byte.toString(16).padStart(2, '0')}'`;
  if (byte >= 0x80 && byte < 0xa0) return `'\\u${byte.toString(16).padStart(4, '0')}'`;
  if (byte === 0xad) return "'\\u00ad'";
  return `'${String.fromCharCode(byte)}'`;
}

// ---- Types: Go's decodeState storing a value, its UnmarshalTypeError texts included. ----

export interface DecodeOptions {
  /** lib.DecodeJSON's Decoder.DisallowUnknownFields: a key no field takes is an error. */
  readonly disallowUnknownFields?: boolean;
}

class TypeDecoder {
  firstError: string | undefined;

  constructor(private readonly options: DecodeOptions) {}

  /** `struct`: the innermost Go struct being filled (named in errors); `fields`: the path of field names from the root. */
  store(node: Node, type: GoType, struct: string | undefined, fields: readonly string[]): unknown {
    if (type.kind === 'any') return toPlain(node);
    if (node.kind === 'null') return zeroOf(type);
    switch (type.kind) {
      case 'string':
        if (node.kind === 'string') return node.value;
        return this.mismatch(describe(node), type, struct, fields);
      case 'bool':
        if (node.kind === 'bool') return node.value;
        return this.mismatch(describe(node), type, struct, fields);
      case 'int': {
        if (node.kind !== 'number') return this.mismatch(describe(node), type, struct, fields);
        const value = Number(node.literal);
        if (!/^-?\d+$/.test(node.literal) || !Number.isSafeInteger(value)) return this.mismatch(`number ${node.literal}`, type, struct, fields);
        return value;
      }
      case 'uint64': {
        if (node.kind !== 'number') return this.mismatch(describe(node), type, struct, fields);
        if (!/^\d+$/.test(node.literal) || BigInt(node.literal) >= 1n << 64n) return this.mismatch(`number ${node.literal}`, type, struct, fields);
        return BigInt(node.literal);
      }
      case 'bytes': {
        if (node.kind !== 'string') return this.mismatch(describe(node), type, struct, fields);
        const decoded = decodeGoBase64(node.value);
        if (typeof decoded === 'string') {
          this.firstError ??= decoded;
          return undefined;
        }
        return decoded;
      }
      case 'slice': {
        if (node.kind !== 'array') return this.mismatch(describe(node), type, struct, fields);
        return node.items.map((item) => this.store(item, type.elem, struct, fields));
      }
      case 'map': {
        if (node.kind !== 'object') return this.mismatch(describe(node), type, struct, fields);
        const out: Record<string, unknown> = {};
        for (const [key, value] of node.entries) out[key] = this.store(value, type.elem, struct, fields);
        return out;
      }
      case 'struct': {
        if (node.kind !== 'object') return this.mismatch(describe(node), type, struct, fields);
        const out = zeroStruct(type);
        const shortName = type.name.slice(type.name.lastIndexOf('.') + 1);
        for (const [key, value] of node.entries) {
          const field = fieldNamed(type, key);
          if (field === undefined) {
            if (this.options.disallowUnknownFields) this.firstError ??= `json: unknown field ${JSON.stringify(key)}`;
            continue;
          }
          out[field] = this.store(value, type.fields[field], shortName, [...fields, field]);
        }
        return out;
      }
    }
  }

  private mismatch(value: string, type: GoType, struct: string | undefined, fields: readonly string[]): unknown {
    const name = typeName(type);
    this.firstError ??= struct === undefined ? `json: cannot unmarshal ${value} into Go value of type ${name}` : `json: cannot unmarshal ${value} into Go struct field ${struct}.${fields.join('.')} of type ${name}`;
    return zeroOf(type);
  }
}

/** Go matches a key to a field exactly first, then ignoring case. */
function fieldNamed(type: { readonly fields: Readonly<Record<string, GoType>> }, key: string): string | undefined {
  if (Object.prototype.hasOwnProperty.call(type.fields, key)) return key;
  const lower = key.toLowerCase();
  return Object.keys(type.fields).find((field) => field.toLowerCase() === lower);
}

function describe(node: Node): string {
  return node.kind === 'object' ? 'object' : node.kind === 'array' ? 'array' : node.kind;
}

function zeroOf(type: GoType): unknown {
  switch (type.kind) {
    case 'string':
      return '';
    case 'int':
      return 0;
    case 'uint64':
      return 0n;
    case 'bool':
      return false;
    case 'struct':
      return type.pointer ? undefined : zeroStruct(type);
    default:
      return undefined;
  }
}

function zeroStruct(type: Extract<GoType, { kind: 'struct' }>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, fieldType] of Object.entries(type.fields)) out[field] = zeroOf(fieldType);
  return out;
}

function toPlain(node: Node): unknown {
  switch (node.kind) {
    case 'object':
      return Object.fromEntries(node.entries.map(([key, value]) => [key, toPlain(value)]));
    case 'array':
      return node.items.map(toPlain);
    case 'number':
      return Number(node.literal);
    case 'null':
      return null;
    default:
      return node.value;
  }
}

/** base64.StdEncoding.DecodeString: the bytes, or Go's `illegal base64 data at input byte N`. */
export function decodeGoBase64(text: string): Buffer | string {
  const corrupt = (at: number) => `illegal base64 data at input byte ${at}`;
  // Go skips \r and \n anywhere; every other byte counts, padding is required.
  const positions: number[] = [];
  let clean = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\r' || text[i] === '\n') continue;
    positions.push(i);
    clean += text[i];
  }
  for (let q = 0; q < clean.length; q += 4) {
    const quantum = clean.slice(q, q + 4);
    for (let j = 0; j < quantum.length; j++) {
      if (/[A-Za-z0-9+/]/.test(quantum[j])) continue;
      if (quantum[j] !== '=' || j < 2) return corrupt(positions[q + j]);
      if (j === 2 && quantum.length === 3) return corrupt(text.length);
      if (j === 2 && quantum[3] !== '=') return corrupt(positions[q + 2]);
      if (q + 4 < clean.length) return corrupt(positions[q + 4]);
      return Buffer.from(clean, 'base64');
    }
    if (quantum.length < 4) return corrupt(positions[q]);
  }
  return Buffer.from(clean, 'base64');
}
