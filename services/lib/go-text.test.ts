// Go's texts inside Consul's messages (reference/consul-compat.md §4.8: errors with Consul's exact
// text): time.Duration, strconv, %q, url.Values.Encode — each expectation is what Go prints.
import { compileGoRegexp, formatGoDuration, goQuote, goValuesEncode, parseGoDuration, parseGoUint64, regexpProblem } from './go-text';

test('time.Duration.String', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [15e9, '15s'],
    [10e9, '10s'],
    [24 * 3600e9, '24h0m0s'],
    [90e9, '1m30s'],
    [3600e9, '1h0m0s'],
    [1.5e9, '1.5s'],
    [1.5e6, '1.5ms'],
    [500e3, '500µs'],
    [100, '100ns'],
    [-2e9, '-2s'],
  ];
  for (const [ns, text] of cases) expect(formatGoDuration(ns)).toBe(text);
});

test('time.ParseDuration, with its error texts', () => {
  expect(parseGoDuration('15s')).toEqual({ ns: 15e9 });
  expect(parseGoDuration('1h30m')).toEqual({ ns: 5400e9 });
  expect(parseGoDuration('1.5s')).toEqual({ ns: 1.5e9 });
  expect(parseGoDuration('.5s')).toEqual({ ns: 0.5e9 });
  expect(parseGoDuration('0')).toEqual({ ns: 0 });
  expect(parseGoDuration('-3ms')).toEqual({ ns: -3e6 });
  expect(parseGoDuration('10µs')).toEqual({ ns: 10e3 });
  expect(parseGoDuration('')).toEqual({ error: 'time: invalid duration ""' });
  expect(parseGoDuration('soon')).toEqual({ error: 'time: invalid duration "soon"' });
  expect(parseGoDuration('10')).toEqual({ error: 'time: missing unit in duration "10"' });
  expect(parseGoDuration('10x')).toEqual({ error: 'time: unknown unit "x" in duration "10x"' });
  expect(parseGoDuration('.s')).toEqual({ error: 'time: invalid duration ".s"' });
});

test('strconv.ParseUint(s, 10, 64)', () => {
  expect(parseGoUint64('42')).toEqual({ value: 42n });
  expect(parseGoUint64('18446744073709551615')).toEqual({ value: 18446744073709551615n });
  expect(parseGoUint64('18446744073709551616')).toEqual({ error: 'strconv.ParseUint: parsing "18446744073709551616": value out of range' });
  expect(parseGoUint64('')).toEqual({ error: 'strconv.ParseUint: parsing "": invalid syntax' });
  expect(parseGoUint64('+1')).toEqual({ error: 'strconv.ParseUint: parsing "+1": invalid syntax' });
});

test('%q of a string (strconv.Quote)', () => {
  expect(goQuote('plain')).toBe('"plain"');
  expect(goQuote('say "hi"\\')).toBe('"say \\"hi\\"\\\\"');
  expect(goQuote('tab\tnl\n')).toBe('"tab\\tnl\\n"');
  expect(goQuote('\u0001')).toBe('"\\x01"');
  expect(goQuote('çé/ü')).toBe('"çé/ü"');
});

test('url.Values.Encode: keys sorted, values QueryEscaped', () => {
  expect(goValuesEncode(new URLSearchParams('release=b&cas=1&acquire=a'))).toBe('acquire=a&cas=1&release=b');
  expect(goValuesEncode(new URLSearchParams('recurse&cas=2'))).toBe('cas=2&recurse=');
  expect(goValuesEncode(new URLSearchParams('a=x y&a=1/2'))).toBe('a=x+y&a=1%2F2');
});

test("Go regular expressions: RE2's syntax (flags, \\z, POSIX classes) and regexp.Compile's error texts", () => {
  const web = compileGoRegexp('(?i)^web-[[:digit:]]+\\z');
  expect('error' in web ? web.error : [web.matches('WEB-12'), web.matches('web-1x'), web.matches('xweb-1')]).toEqual([true, false, false]);
  // MatchString: anywhere in the text.
  const anywhere = compileGoRegexp('api');
  expect('error' in anywhere ? anywhere.error : anywhere.matches('my-api-1')).toBe(true);
  expect(regexpProblem('(')).toBe('error parsing regexp: missing closing ): `(`');
  expect(regexpProblem('*')).toBe('error parsing regexp: missing argument to repetition operator: `*`');
  // A backreference is not RE2: Go refuses it.
  expect(regexpProblem('(a)\\1')).toMatch(/^error parsing regexp: invalid escape sequence: `\\1`/);
  expect(regexpProblem('web.*')).toBeUndefined();
});
