import { ConfigError, checks, field, loadConfig } from './config';

const schema = {
  datacenter: field.string({ key: 'datacenter', flag: 'datacenter', usage: 'Datacenter.', default: 'dc1', check: checks.datacenter }),
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'gRPC port.', default: 8310, check: checks.port }),
  dataDir: field.string({ key: 'data_dir', flag: 'data-dir', usage: 'Data directory.', default: undefined }),
  peers: field.list({ key: 'initial_peers', flag: 'initial-peer', usage: 'Peer.', default: [], check: checks.hostPorts }),
  server: field.bool({ key: 'server', flag: 'server', usage: 'Server mode.', default: false }),
};

function files(map: Record<string, string>) {
  return (path: string) => {
    if (!(path in map)) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
    return map[path];
  };
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  test('layers defaults < files < env < flags', () => {
    const readFile = files({
      'a.json': JSON.stringify({ datacenter: 'dc7', ports: { grpc: 9000 }, data_dir: '/a' }),
      'b.json': JSON.stringify({ data_dir: '/b', initial_peers: ['127.0.0.1:1'] }),
    });
    const { config, positionals } = loadConfig(schema, {
      args: ['-config=a.json', '-config', 'b.json', '-grpc-port=9100', '-server', 'extra'],
      env: { CONSULATE_DATACENTER: 'dc8', CONSULATE_GRPC_PORT: '9001' },
      readFile,
    });
    expect(config).toEqual({ datacenter: 'dc8', grpcPort: 9100, dataDir: '/b', peers: ['127.0.0.1:1'], server: true });
    expect(positionals).toEqual(['extra']);
  });

  test('a missing required field says every way to set it', () => {
    expect(problemsOf(() => loadConfig(schema, { args: [] }))).toEqual([
      '-data-dir ("data_dir") is required: set it with -data-dir=..., CONSULATE_DATA_DIR or "data_dir" in a config file',
    ]);
  });

  test("a bad datacenter gets Consul's text; every problem is reported at once", () => {
    const problems = problemsOf(() => loadConfig(schema, { args: ['-datacenter=DC 1', '-grpc-port=0', '-data-dir=/d', '-initial-peer=nohost'] }));
    expect(problems).toEqual([
      '-datacenter ("datacenter"): datacenter can only contain lowercase alphanumeric, - or _ characters.',
      '-grpc-port ("ports.grpc"): port 0 is out of range: use 1-65535',
      '-initial-peer ("initial_peers"): "nohost" is not host:port (e.g. 127.0.1.1:8310)',
    ]);
  });

  test('file problems name the file and the key', () => {
    const readFile = files({ 'bad.json': '{"datacenter": 7, "ports": {"grpc": "x"}, "nope": 1}', 'broken.json': '{', 'arr.json': '[]' });
    const problems = problemsOf(() =>
      loadConfig(schema, { args: ['-config=bad.json', '-config=broken.json', '-config=arr.json', '-config=gone.json', '-data-dir=/d'], readFile }),
    );
    expect(problems[0]).toBe('config file bad.json: "datacenter" must be a string, got 7');
    expect(problems[1]).toBe('config file bad.json: "ports.grpc" must be an integer, got "x"');
    expect(problems[2]).toMatch(/^config file bad.json: unknown key "nope" \(known keys: data_dir, datacenter, initial_peers, ports.grpc, server\)$/);
    expect(problems[3]).toMatch(/^config file broken.json: not valid JSON/);
    expect(problems[4]).toBe('config file arr.json: must hold a JSON object');
    expect(problems[5]).toBe('config file gone.json: cannot be read (ENOENT); check the -config path');
  });

  test('environment values are type-checked', () => {
    const problems = problemsOf(() => loadConfig(schema, { args: ['-data-dir=/d'], env: { CONSULATE_GRPC_PORT: 'x', CONSULATE_SERVER: 'yes' } }));
    expect(problems).toEqual([
      '-grpc-port ("ports.grpc"): environment value "x" is not an integer',
      '-server ("server"): environment value "yes" is not a boolean (true or false)',
    ]);
  });

  test('list values from the environment are comma-separated', () => {
    const { config } = loadConfig(schema, { args: ['-data-dir=/d'], env: { CONSULATE_INITIAL_PEER: '127.0.0.1:1, 127.0.0.2:2' } });
    expect(config.peers).toEqual(['127.0.0.1:1', '127.0.0.2:2']);
  });
});

describe('checks', () => {
  test('addresses', () => {
    expect(checks.ipAddress('127.0.1.1')).toBeUndefined();
    expect(checks.ipAddress('::1')).toBeUndefined();
    expect(checks.ipAddress('localhost')).toMatch(/not an IP address/);
    expect(checks.hostPorts(['[::1]:8300', 'server-1:8310'])).toBeUndefined();
    expect(checks.hostPorts(['127.0.0.1:70000'])).toMatch(/out of range/);
  });
});
