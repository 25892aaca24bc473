/**
 * JSON as Go's encoding/json writes it, for output that must match what Consul's CLI prints
 * (`consul watch` dumps its result with json.MarshalIndent, hands it to a handler with
 * json.Encoder): fields in struct order (the caller builds objects in that order), map keys
 * sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped as \u003c..., uint64 values exact.
 */

/** A uint64 kept exact (a KV pair's Flags): its decimal digits, written as a bare number. */
export class GoUint {
  constructor(readonly digits: string) {
    if (!/^\d+$/.test(digits)) throw new Error(`GoUint: not an unsigned integer: ${JSON.stringify(digits)}`);
  }
}

/** A Go map: written with its keys sorted, as encoding/json does. */
export class GoMap {
  constructor(readonly entries: Readonly<Record<string, unknown>>) {}
}

const UINT_MARK = '\u0000uint:';

function prepare(value: unknown): unknown {
  if (value instanceof GoUint) return `${UINT_MARK}${value.digits}`;
  if (value instanceof GoMap) {
    const sorted: Record<string, unknown> = {};
    // Go sorts map keys by their bytes; for strings that is UTF-16 order outside the astral planes.
    for (const key of Object.keys(value.entries).sort((a, b) => (Buffer.from(a).compare(Buffer.from(b))))) sorted[key] = prepare(value.entries[key]);
    return sorted;
  }
  if (Array.isArray(value)) return value.map(prepare);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) out[key] = prepare(v);
    return out;
  }
  return value;
}

function finish(text: string): string {
  return text
    .replace(new RegExp(`"${UINT_MARK.replace('\u0000', '\\\\u0000')}(\\d+)"`, 'g'), '$1')
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** json.MarshalIndent(value, "", indent). */
export function marshalIndent(value: unknown, indent = '    '): string {
  return finish(JSON.stringify(prepare(value), null, indent) ?? 'null');
}

/** json.Marshal(value); json.Encoder.Encode adds a newline after it. */
export function marshal(value: unknown): string {
  return finish(JSON.stringify(prepare(value)) ?? 'null');
}
