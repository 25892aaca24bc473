/** Segment configuration rules: reference/consul-compat.md §2.1 (server `segments`, client `segment`). */
import { ALL_SEGMENTS, DEFAULT_SEGMENT_LABEL, parseSegments, SEGMENT_LIMIT, SEGMENT_NAME_LIMIT, segmentProblems, SegmentSpec } from './segments';

const server = (segments: SegmentSpec[], lanPort = 8301): string[] => segmentProblems({ server: true, segment: '', segments, lanPort });
const client = (segment: string, segments: SegmentSpec[] = []): string[] => segmentProblems({ server: false, segment, segments, lanPort: 8301 });
const PATTERN = "Segment name must consist of alphanumeric characters or '-', and must start and end with an alphanumeric character";

test("Consul's constants (§2.1 non-user limits, §2.5 labels)", () => {
  expect([SEGMENT_LIMIT, SEGMENT_NAME_LIMIT, DEFAULT_SEGMENT_LABEL, ALL_SEGMENTS]).toEqual([64, 64, '<default>', '_all']);
});

describe('parseSegments: NAME:PORT values', () => {
  test('reads each value into a spec, in order', () => {
    expect(parseSegments(['alpha:8303', 'beta:8304'])).toEqual({ segments: [{ name: 'alpha', port: 8303 }, { name: 'beta', port: 8304 }], problems: [] });
    expect(parseSegments([])).toEqual({ segments: [], problems: [] });
  });

  test('leaves range checks to segmentProblems, so zero and negative ports get Consul\'s text', () => {
    const { segments, problems } = parseSegments(['alpha:0', 'beta:-1', ':8305']);
    expect(problems).toEqual([]);
    expect(server(segments)).toEqual(['Port for segment "alpha" cannot be <= 0', 'Port for segment "beta" cannot be <= 0', 'Segment name cannot be blank']);
  });

  test('names what is malformed and how to write it', () => {
    expect(parseSegments(['alpha', 'beta:', 'gamma:83x3', 'delta:8303,epsilon:8304', 'ok:8306']).problems).toEqual([
      'Segment "alpha" must be given as NAME:PORT (one segment per value), e.g. alpha:8303',
      'Port for segment "beta" must be a number, got "" (give NAME:PORT, one segment per value, e.g. alpha:8303)',
      'Port for segment "gamma" must be a number, got "83x3" (give NAME:PORT, one segment per value, e.g. alpha:8303)',
      'Port for segment "delta" must be a number, got "8303,epsilon:8304" (give NAME:PORT, one segment per value, e.g. alpha:8303)',
    ]);
    expect(parseSegments(['alpha', 'ok:8306']).segments).toEqual([{ name: 'ok', port: 8306 }]);
  });
});

describe('segmentProblems', () => {
  test('a server with well-formed segments has none', () => {
    expect(server([{ name: 'alpha', port: 8303 }, { name: 'beta', port: 8304 }, { name: 'a', port: 8305 }, { name: 'Team_East-2', port: 8306 }])).toEqual([]);
    expect(client('alpha')).toEqual([]);
    expect(client('')).toEqual([]);
  });

  test('only servers declare segments, only clients set segment (the newer builder wording)', () => {
    expect(client('', [{ name: 'alpha', port: 8303 }])).toEqual(['segments: Segments can only be configured on servers (server = true)']);
    expect(segmentProblems({ server: true, segment: 'alpha', segments: [], lanPort: 8301 })).toEqual(['segment: Segment name can only be set on clients (server = false)']);
  });

  test(`at most ${SEGMENT_LIMIT} segments`, () => {
    const many = (n: number): SegmentSpec[] => Array.from({ length: n }, (_, i) => ({ name: `s${i}`, port: 9000 + i }));
    expect(server(many(64))).toEqual([]);
    expect(server(many(65))).toEqual(['Cannot exceed network segment limit of 64']);
  });

  test('a blank name', () => {
    expect(server([{ name: '', port: 8303 }])).toEqual(['Segment name cannot be blank']);
  });

  test.each(['-alpha', 'alpha-', '1alpha', 'al pha', 'alpha!', '_all', '<default>', 'é', 'alpha_', '9'])('the name pattern refuses %j', (name) => {
    expect(server([{ name, port: 8303 }])).toEqual([`${PATTERN} (got "${name}")`]);
  });

  test.each(['a', 'Z', 'ab', 'a1', 'a_b', 'a-b', 'ALPHA', 'alpha-2'])('the name pattern accepts %j', (name) => {
    expect(server([{ name, port: 8303 }])).toEqual([]);
  });

  test(`names up to ${SEGMENT_NAME_LIMIT} bytes`, () => {
    expect(server([{ name: 'a'.repeat(64), port: 8303 }])).toEqual([]);
    const long = 'a'.repeat(65);
    expect(server([{ name: long, port: 8303 }])).toEqual([`Segment name "${long}" exceeds maximum length of 64`]);
  });

  test('ports must be positive and fit in 16 bits', () => {
    expect(server([{ name: 'alpha', port: 0 }, { name: 'beta', port: -8303 }, { name: 'gamma', port: 65536 }, { name: 'delta', port: 65535 }])).toEqual([
      'Port for segment "alpha" cannot be <= 0',
      'Port for segment "beta" cannot be <= 0',
      'Port for segment "gamma" cannot be > 65535',
    ]);
  });

  test('two segments on one port', () => {
    expect(server([{ name: 'alpha', port: 8303 }, { name: 'beta', port: 8303 }, { name: 'gamma', port: 8303 }])).toEqual([
      'Segment "beta" port 8303 overlaps with segment "alpha"',
      'Segment "gamma" port 8303 overlaps with segment "alpha"',
    ]);
  });

  test("a segment on the default segment's LAN port, whatever it is configured to", () => {
    expect(server([{ name: 'alpha', port: 8301 }])).toEqual(['Segment "alpha" port 8301 overlaps with the LAN port of the default segment (ports.serf_lan = 8301)']);
    expect(server([{ name: 'alpha', port: 8301 }], 9301)).toEqual([]);
    expect(server([{ name: 'alpha', port: 9301 }], 9301)).toEqual(['Segment "alpha" port 9301 overlaps with the LAN port of the default segment (ports.serf_lan = 9301)']);
  });

  test('a name declared twice, in any case', () => {
    expect(server([{ name: 'alpha', port: 8303 }, { name: 'alpha', port: 8304 }, { name: 'ALPHA', port: 8305 }])).toEqual([
      'Segment "alpha" is declared more than once (also as "alpha"): segment names must be unique',
      'Segment "ALPHA" is declared more than once (also as "alpha"): segment names must be unique',
    ]);
  });

  test("a client's segment must be a name a server could declare", () => {
    expect(client('-bad')).toEqual([`${PATTERN} (got "-bad")`]);
    expect(client('b'.repeat(65))).toEqual([`Segment name "${'b'.repeat(65)}" exceeds maximum length of 64`]);
  });

  test('every problem is reported at once', () => {
    expect(
      segmentProblems({
        server: false,
        segment: '',
        segments: [{ name: '', port: 0 }, { name: 'beta!', port: 8301 }, { name: 'gamma', port: 8303 }, { name: 'delta', port: 8303 }],
        lanPort: 8301,
      }),
    ).toEqual([
      'segments: Segments can only be configured on servers (server = true)',
      'Segment name cannot be blank',
      'Port for segment "" cannot be <= 0',
      `${PATTERN} (got "beta!")`,
      'Segment "beta!" port 8301 overlaps with the LAN port of the default segment (ports.serf_lan = 8301)',
      'Segment "delta" port 8303 overlaps with segment "gamma"',
    ]);
  });
});
