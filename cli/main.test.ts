import { main, usage } from './main';

function capture() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { env: {}, stdout: (text: string) => (out.stdout += text), stderr: (text: string) => (out.stderr += text) } };
}

// Exit codes as Consul's CLI (mitchellh/cli): 0 ok, 1 error, 127 no such command.
describe('consulate', () => {
  test('no command or an unknown one prints the command list and exits 127', async () => {
    for (const argv of [[], ['nope']]) {
      const { out, io } = capture();
      expect(await main(argv, io)).toBe(127);
      expect(out.stderr).toBe(`${usage()}\n`);
    }
  });

  test('-help and -version exit 0', async () => {
    let { out, io } = capture();
    expect(await main(['-help'], io)).toBe(0);
    expect(out.stdout).toContain('federation-router    Runs a federation router');
    ({ out, io } = capture());
    expect(await main(['--version'], io)).toBe(0);
    expect(out.stdout).toMatch(/^Consulate v\d+\.\d+\.\d+\n/);
  });

  test('every command answers -help with its usage and exits 0', async () => {
    for (const name of ['consensus', 'gossip', 'catalog', 'federation-router', 'version']) {
      const { out, io } = capture();
      expect(await main([name, '-help'], io)).toBe(0);
      expect(out.stdout).toContain(`Usage: consulate ${name}`);
    }
  });

  test('a role with a flag it does not know exits 1 with Go\'s text', async () => {
    const { out, io } = capture();
    expect(await main(['gossip', '-segmentt=alpha'], io)).toBe(1);
    expect(out.stderr).toContain('flag provided but not defined: -segmentt');
  });

  test('version takes no arguments', async () => {
    const { out, io } = capture();
    expect(await main(['version', 'extra'], io)).toBe(1);
    expect(out.stderr).toContain('This command takes no arguments');
  });
});
