/**
 * Go's own texts, as they reach Consul's users inside its errors: `%q` quoting, time.Duration's
 * String and ParseDuration (with their error texts), strconv.ParseUint's errors and
 * url.Values.Encode. Consul builds many of its messages from these (`invalid session %#v`,
 * `Invalid Session TTL '%d', must be between [%v=%v]`, `Conflicting flags: %v`), so matching them
 * byte for byte needs Go's formatting, not JavaScript's.
 */

import { RE2JS } from 're2js';

const NS_PER = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 } as const;

/** strconv.Quote: a double-quoted Go string literal (what `%q` and `%#v` print for a string). */
export function goQuote(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (char === '"' || char === '\\') out += `\\${char}`;
    else if (isGoPrintable(code)) out += char;
    else out += escapeRune(code);
  }
  return `${out}"`;
}

function escapeRune(code: number): string {
  const named: Record<number, string> = { 7: '\\a', 8: '\\b', 12: '\\f', 10: '\\n', 13: '\\r', 9: '\\t', 11: '\\v' };
  if (named[code] !== undefined) return named[code];
  if (code < 0x80 && code !== 0x7f) return `\\x${code.toString(16).padStart(2, '0')}`;
  if (code === 0x7f) return '\\x7f';
  if (code < 0x10000) return `\\u${code.toString(16).padStart(4, '0')}`;
  return `\\U${code.toString(16).padStart(8, '0')}`;
}

/** strconv.IsPrint, closely enough for the texts Consul quotes: no controls, no separators but ' '. */
function isGoPrintable(code: number): boolean {
  if (code < 0x20 || code === 0x7f) return false;
  if (code >= 0x80 && code <= 0xa0) return false;
  if (code === 0xad) return false;
  return !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Zs}\p{Cs}\p{Co}\p{Cn}]/u.test(String.fromCodePoint(code)) || code === 0x20;
}

/** time.Duration.String(): "15s", "1m30s", "24h0m0s", "1.5ms", "0s". */
export function formatGoDuration(nanoseconds: number): string {
  if (nanoseconds === 0) return '0s';
  const negative = nanoseconds < 0;
  let ns = Math.abs(Math.round(nanoseconds));
  let text: string;
  if (ns < 1e9) {
    const [unit, size] = ns < 1e3 ? ['ns', 1] : ns < 1e6 ? ['µs', 1e3] : ['ms', 1e6];
    text = `${fraction(ns, size)}${unit}`;
  } else {
    const hours = Math.floor(ns / 3600e9);
    ns -= hours * 3600e9;
    const minutes = Math.floor(ns / 60e9);
    ns -= minutes * 60e9;
    text = `${fraction(ns, 1e9)}s`;
    if (hours > 0 || minutes > 0) text = `${minutes}m${text}`;
    if (hours > 0) text = `${hours}h${text}`;
  }
  return negative ? `-${text}` : text;
}

/** `value / size` with up to nine decimals, trailing zeros dropped, as Go prints durations. */
function fraction(value: number, size: number): string {
  const whole = Math.floor(value / size);
  const rest = value - whole * size;
  if (rest === 0) return String(whole);
  const digits = String(rest).padStart(Math.round(Math.log10(size)), '0').replace(/0+$/, '');
  return `${whole}.${digits}`;
}

export type GoDurationResult = { readonly ns: number; readonly error?: undefined } | { readonly ns?: undefined; readonly error: string };

/** time.ParseDuration, with its exact error texts (`time: invalid duration "x"`). */
export function parseGoDuration(original: string): GoDurationResult {
  const quoted = timeQuote(original);
  const invalid = { error: `time: invalid duration ${quoted}` };
  let s = original;
  let negative = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    negative = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return { ns: 0 };
  if (s === '') return invalid;
  let total = 0;
  while (s !== '') {
    if (!(s[0] === '.' || (s[0] >= '0' && s[0] <= '9'))) return invalid;
    const integer = /^[0-9]*/.exec(s)![0];
    s = s.slice(integer.length);
    let decimals = '';
    if (s[0] === '.') {
      decimals = /^\.([0-9]*)/.exec(s)![1];
      s = s.slice(1 + decimals.length);
      if (integer === '' && decimals === '') return invalid;
    } else if (integer === '') return invalid;
    const unit = /^[^0-9.]*/.exec(s)![0];
    if (unit === '') return { error: `time: missing unit in duration ${quoted}` };
    s = s.slice(unit.length);
    const size = (NS_PER as Record<string, number>)[unit];
    if (size === undefined) return { error: `time: unknown unit ${timeQuote(unit)} in duration ${quoted}` };
    total += Number(integer === '' ? '0' : integer) * size + (decimals === '' ? 0 : Number(`0.${decimals}`) * size);
    if (total > 9_223_372_036_854_775_807) return invalid;
  }
  return { ns: negative ? -total : total };
}

/** The time package's own quote: double quotes around the text, non-ASCII and controls escaped. */
function timeQuote(text: string): string {
  let out = '"';
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte >= 0x20 && byte < 0x80) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

const MAX_UINT64 = (1n << 64n) - 1n;

/** strconv.ParseUint(text, 10, 64), with its error texts. */
export function parseGoUint64(text: string): { value: bigint; error?: undefined } | { value?: undefined; error: string } {
  if (!/^[0-9]+$/.test(text)) return { error: `strconv.ParseUint: parsing ${goQuote(text)}: invalid syntax` };
  const value = BigInt(text);
  if (value > MAX_UINT64) return { error: `strconv.ParseUint: parsing ${goQuote(text)}: value out of range` };
  return { value };
}

/** url.Values.Encode: keys sorted, each value QueryEscape'd ("a=1&b=x+y"). */
export function goValuesEncode(query: URLSearchParams): string {
  const byKey = new Map<string, string[]>();
  for (const [key, value] of query) {
    const values = byKey.get(key) ?? [];
    values.push(value);
    byKey.set(key, values);
  }
  const parts: string[] = [];
  for (const key of [...byKey.keys()].sort()) for (const value of byKey.get(key)!) parts.push(`${queryEscape(key)}=${queryEscape(value)}`);
  return parts.join('&');
}

function queryEscape(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(char)) out += char;
    else if (byte === 0x20) out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A Go regular expression (Go's regexp is RE2: linear time, no backreferences), compiled with
 * re2js, a port of RE2 with Go's syntax and error texts. Consul's user-event filters are these;
 * run by JavaScript's backtracking engine, a filter from any client could stall every catalog.
 */
export interface GoRegexp {
  /** regexp.MatchString: a match anywhere in `text`. */
  matches(text: string): boolean;
}

/** regexp.Compile: the expression, or Go's error text (`error parsing regexp: missing closing ): `(``). */
export function compileGoRegexp(pattern: string): GoRegexp | { error: string } {
  try {
    const compiled = RE2JS.compile(pattern);
    return { matches: (text) => compiled.matcher(text).find() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Why `pattern` does not compile as a Go regular expression, or undefined. */
export function regexpProblem(pattern: string): string | undefined {
  const compiled = compileGoRegexp(pattern);
  return 'error' in compiled ? compiled.error : undefined;
}
