import { FlagError, FlagSpec, HelpRequested, flagUsage, parseFlags } from './flags';

// Go's flag package semantics, as Consul's CLI parses them (reference/toolchain.md §B5).
const specs: FlagSpec[] = [
  { name: 'peer-datacenter', kind: 'string', usage: 'Peer datacenter.' },
  { name: 'retry-join', kind: 'list', usage: 'Address to join; repeatable.' },
  { name: 'use-tls', kind: 'bool', usage: 'Use TLS.' },
  { name: 'port', kind: 'int', usage: 'Port.', defaultText: '8300' },
];

describe('parseFlags', () => {
  test('reads the area create argv the way Consul does', () => {
    const parsed = parseFlags(specs, ['-peer-datacenter=dc2', '-retry-join', '10.0.0.1', '-retry-join=10.0.0.2', '--use-tls', 'rest', '-port=1']);
    expect(Object.fromEntries(parsed.values)).toEqual({
      'peer-datacenter': 'dc2',
      'retry-join': ['10.0.0.1', '10.0.0.2'],
      'use-tls': true,
    });
    expect(parsed.positionals).toEqual(['rest', '-port=1']);
  });

  test('a boolean takes its value only after "="', () => {
    expect(parseFlags(specs, ['-use-tls=false']).values.get('use-tls')).toBe(false);
    const parsed = parseFlags(specs, ['-use-tls', 'false']);
    expect(parsed.values.get('use-tls')).toBe(true);
    expect(parsed.positionals).toEqual(['false']);
    expect(() => parseFlags(specs, ['-use-tls=maybe'])).toThrow('invalid boolean value "maybe" for -use-tls: parse error');
  });

  test('"--" ends the flags and is consumed; a lone "-" is positional', () => {
    expect(parseFlags(specs, ['--', '-port=1']).positionals).toEqual(['-port=1']);
    expect(parseFlags(specs, ['-', 'x']).positionals).toEqual(['-', 'x']);
  });

  test("errors carry Go's texts", () => {
    expect(() => parseFlags(specs, ['-nope'])).toThrow(new FlagError('flag provided but not defined: -nope'));
    expect(() => parseFlags(specs, ['-port'])).toThrow('flag needs an argument: -port');
    expect(() => parseFlags(specs, ['-port=eighty'])).toThrow('invalid value "eighty" for flag -port: parse error');
    expect(() => parseFlags(specs, ['---port=1'])).toThrow('bad flag syntax: ---port=1');
    expect(() => parseFlags(specs, ['-=x'])).toThrow('bad flag syntax: -=x');
  });

  test('-h, -help and --help ask for help', () => {
    for (const arg of ['-h', '-help', '--help']) expect(() => parseFlags(specs, [arg])).toThrow(HelpRequested);
  });

  test('the last value of a single-valued flag wins', () => {
    expect(parseFlags(specs, ['-port=1', '-port', '2']).values.get('port')).toBe(2);
  });

  test('usage lists flags by name with defaults', () => {
    expect(flagUsage(specs)).toContain('  -port <int>\n      Port. (default 8300)');
  });
});
