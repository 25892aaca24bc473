// `consulate lock` as command/lock/lock.go: its argument checks and texts, and whole runs against
// the catalog's real endpoints in-process (a child through sh -c with CONSUL_LOCK_HELD, the exit
// codes with and without -child-exit-code, a shutdown signal and a lost lock killing the child).
import { EventEmitter } from 'node:events';

import { realTiming } from '../lock-session';
import { ServedCatalog, captureIo, closedPort, serveCatalog } from '../testing/served-catalog';
import { lockSettings, makeLockCommand } from './lock';

let catalog: ServedCatalog;
let signals: EventEmitter;

beforeEach(async () => {
  catalog = await serveCatalog();
  signals = new EventEmitter();
});

afterEach(() => catalog.close());

const lock = makeLockCommand(() => ({ signals, timing: realTiming }));

async function runLock(args: string[]) {
  const { io, out } = captureIo();
  const code = await lock.run([`-http-addr=${catalog.base}`, ...args], io);
  return { code, ...out };
}

describe('arguments (lock.go Run)', () => {
  const settings = (values: [string, unknown][], positionals: string[]) => lockSettings(new Map(values), positionals);

  test("Consul's texts, in Consul's order", () => {
    expect(settings([['n', 0]], [])).toEqual({ error: 'Lock holder limit must be positive' });
    expect(settings([], ['only-a-prefix'])).toEqual({ error: 'Key prefix and child command must be specified' });
    expect(settings([['timeout', '-1s']], ['p', 'c'])).toEqual({ error: 'Timeout must be positive' });
    expect(settings([['timeout', 'soon']], ['p', 'c'])).toEqual({ error: 'invalid value "soon" for flag -timeout: parse error' });
    expect(settings([['monitor-retry', -1]], ['p', 'c'])).toEqual({ error: "Number for 'monitor-retry' must be >= 0" });
  });

  test('defaults: one leading / trimmed, the session named after the child and prefix, shell on, 3 monitor retries', () => {
    expect(settings([], ['/service/web', 'echo', 'hi'])).toEqual({
      prefix: 'service/web',
      child: ['echo', 'hi'],
      limit: 1,
      name: "Consul lock for 'echo hi' at 'service/web'",
      timeoutMs: 0,
      monitorRetry: 3,
      passStdin: false,
      shell: true,
      verbose: false,
      propagateChildCode: false,
    });
    expect(settings([['try', '2s']], ['p', 'c'])).toMatchObject({ timeoutMs: 2000 });
  });

  test('too few arguments exits 1 with the text on stderr', async () => {
    expect(await runLock(['prefix'])).toMatchObject({ code: 1, stderr: 'Key prefix and child command must be specified\n' });
  });
});

describe('a run', () => {
  test('-verbose: the lock at <prefix>/.lock, the child through sh -c with CONSUL_LOCK_HELD=true, released and cleaned up', async () => {
    const run = await runLock(['-verbose', 'service/web', 'echo', 'held=$CONSUL_LOCK_HELD']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toBe(['Setting up lock at path: service/web/.lock', 'Attempting lock acquisition', 'Starting handler', 'held=true', 'Child terminated, releasing lock', 'Cleanup succeeded', ''].join('\n'));
    expect((await catalog.call('GET', '/v1/kv/service/web/.lock')).status).toBe(404);
    expect((await catalog.call('GET', '/v1/session/list')).json()).toEqual([]);
  });

  test("a failing child: exit 0 as Consul's lock, or 2 with -child-exit-code; Go's text on stderr", async () => {
    expect(await runLock(['p', 'exit 3'])).toMatchObject({ code: 0, stderr: 'Error running handler: exit status 3\n' });
    expect(await runLock(['-child-exit-code', 'p', 'exit 3'])).toMatchObject({ code: 2, stderr: 'Error running handler: exit status 3\n' });
    expect(await runLock(['-child-exit-code', 'p', 'true'])).toMatchObject({ code: 0, stderr: '' });
    expect(await runLock(['-shell=false', '-child-exit-code', 'p', 'no-such-program-xyz'])).toMatchObject({ code: 2, stderr: 'Error starting handler: exec: "no-such-program-xyz": executable file not found in $PATH\n' });
  });

  test('-n 2: a semaphore slot under the prefix', async () => {
    const run = await runLock(['-verbose', '-n=2', 'sem', 'true']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Setting up semaphore (limit 2) at prefix: sem\n');
  });

  test('a SIGTERM while the child runs: the child is stopped, the lock released', async () => {
    const running = runLock(['-verbose', '-shell=false', 'sig', 'sleep', '30']);
    await waitFor(async () => (await catalog.call('GET', '/v1/kv/sig/.lock')).json<{ Session?: string }[]>()[0]?.Session);
    signals.emit('SIGTERM');
    const run = await running;
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Shutdown triggered, killing child\nTerminating child pid \d+\nChild terminated\n/);
    expect((await catalog.call('GET', '/v1/kv/sig/.lock')).status).toBe(404);
  });

  test('a lost lock (its session destroyed) kills the child', async () => {
    const running = runLock(['-verbose', '-shell=false', 'lost', 'sleep', '30']);
    const session = await waitFor(async () => (await catalog.call('GET', '/v1/kv/lost/.lock')).json<{ Session?: string }[]>()[0]?.Session);
    await catalog.call('PUT', `/v1/session/destroy/${session}`);
    const run = await running;
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Lock lost, killing child\nTerminating child pid \d+\nChild terminated\n/);
  });

  test('an unreachable catalog: Error querying Consul agent, exit 1', async () => {
    const { io, out } = captureIo();
    const port = await closedPort();
    expect(await lock.run([`-http-addr=127.0.0.1:${port}`, 'p', 'true'], io)).toBe(1);
    expect(out.stderr).toBe(`Error querying Consul agent: Get "http://127.0.0.1:${port}/v1/agent/self": dial tcp 127.0.0.1:${port}: connect: connection refused\n`);
  });
});

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
