/**
 * A Python client generated from proto/ (examples/python; DESIGN.md "the polyglot API"): Debian's
 * python3-grpc-tools generates the stubs with examples/python/generate.sh, and Debian's
 * python3-grpcio runs examples/python/register_and_watch.py against a real catalog, as its README
 * tells a user to:
 *
 *   server-1   consensus, a one-server Raft
 *   catalog    gRPC on <its address>:8502 (the example's), HTTP on 8500 (the second instance's)
 *
 * The example registers web-python over gRPC (CatalogService.Register) and watches `web`
 * (HealthService.WatchServiceHealth). Once it has printed the current instances, web-2 registers
 * through Consul's `PUT /v1/catalog/register` (reference/consul-compat.md §4.1); the example
 * prints both instances as its second message and exits 0 (--updates 2).
 *
 * Skipped, with the reason printed, where /usr/bin/python3 cannot import grpc and grpc_tools;
 * under CI (.ci/run installs python3-grpcio and python3-grpc-tools) it runs, and fails if they are
 * missing.
 */
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { send } from '../../services/catalog/testing/http-harness';
import { REPO_ROOT, RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

/** Debian's interpreter: python3-grpcio and python3-grpc-tools install for it, not for whichever python3 is on PATH (toolchain.md §B8). */
const DEBIAN_PYTHON = '/usr/bin/python3';
const EXAMPLE_DIR = join(REPO_ROOT, 'examples', 'python');
/** The example's own bound on its watch; the test waits for its exit, not for a clock. */
const WATCH_TIMEOUT_S = 60;

function pythonGrpcUnavailableReason(): string | undefined {
  const probe = spawnSync(DEBIAN_PYTHON, ['-c', 'import grpc, grpc_tools.protoc'], { encoding: 'utf8', timeout: 30_000 });
  if (probe.error !== undefined) return `${DEBIAN_PYTHON} cannot run (${probe.error.message})`;
  if (probe.status !== 0) {
    const why = probe.stderr.trim().split('\n').pop() ?? `exit ${probe.status}`;
    return `${DEBIAN_PYTHON} cannot import grpc and grpc_tools (${why}): apt-get install python3-grpcio python3-grpc-tools, as .ci/run does`;
  }
  return undefined;
}

const unavailable = pythonGrpcUnavailableReason();
// CI installs the packages (.ci/run): there a missing one is a failure, not a skip.
const skip = unavailable !== undefined && !process.env.CI;
if (skip) console.warn(`python-client.test.ts skipped: ${unavailable}`);
const describeWithPython = skip ? describe.skip : describe;

/** One message of the example's watch as it printed it: a header line, then one line per instance. */
interface PrintedUpdate {
  sequence: number;
  index: number;
  count: number;
  instances: string[];
}

function printedUpdates(lines: readonly string[]): PrintedUpdate[] {
  const updates: PrintedUpdate[] = [];
  for (const line of lines) {
    const header = /^\[(\d+)\] index (\d+): (\d+) instances? of web$/.exec(line);
    if (header !== null) updates.push({ sequence: Number(header[1]), index: Number(header[2]), count: Number(header[3]), instances: [] });
    else if (line.startsWith('  ') && updates.length > 0) updates[updates.length - 1].instances.push(line.trim());
  }
  return updates;
}

function generateStubs(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [join(EXAMPLE_DIR, 'generate.sh')], { timeout: 60_000, env: { ...process.env, PYTHON: DEBIAN_PYTHON } }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`examples/python/generate.sh failed (${err.message}):\n${stdout}${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

describeWithPython('examples/python: a Python client generated from proto/ with Debian python3-grpc-tools', () => {
  let consensus: RoleProcess;
  let catalog: RoleProcess;
  let example: ChildProcess | undefined;

  beforeAll(async () => {
    const serverHost = freeLoopbackAddress();
    consensus = await startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] });
    catalog = await startRole({ role: 'catalog', node: 'catalog', args: [`-consensus-addr=${consensus.grpc}`] });
    // Up is not ready: the one-server Raft elects itself and the view loads in the background.
    await eventually('the catalog to answer a default-consistency read', async () => (await send(`${catalog.address}:8500`, 'GET', '/v1/catalog/nodes')).status === 200 || undefined, 20_000);
    console.log(await generateStubs());
  });

  afterAll(async () => {
    if (example !== undefined && example.exitCode === null && example.signalCode === null) example.kill('SIGKILL');
    await stopAll();
  });

  test('register_and_watch.py registers web-python, prints it, then prints web-2 beside it once that registers, and exits 0', async () => {
    const args = [join(EXAMPLE_DIR, 'register_and_watch.py'), `--addr=${catalog.grpc}`, '--node=python-example', '--node-address=127.0.0.1', '--service-id=web-python', '--port=8080', '--updates=2', `--timeout=${WATCH_TIMEOUT_S}`];
    const child = spawn(DEBIAN_PYTHON, args, { cwd: EXAMPLE_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    example = child;
    const stdout: string[] = [];
    let stderr = '';
    createInterface({ input: child.stdout }).on('line', (line) => stdout.push(line));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
    let exitCode: number | string | undefined;
    void exited.then((code) => (exitCode = code));
    const transcript = () => `stdout:\n${stdout.join('\n')}\nstderr:\n${stderr}`;

    await eventually(
      'the example to print the current instances of web',
      () => {
        if (exitCode !== undefined) throw new Error(`register_and_watch.py exited (${exitCode}) before its first message:\n${transcript()}`);
        const [first] = printedUpdates(stdout);
        return first !== undefined && first.instances.length === first.count ? true : undefined;
      },
      30_000,
    );

    const second = await send(`${catalog.address}:8500`, 'PUT', '/v1/catalog/register', {
      Node: 'node-beta-1',
      Address: '127.0.1.102',
      Service: { ID: 'web-2', Service: 'web', Port: 8081 },
      Checks: [{ CheckID: 'service:web-2', Name: 'web alive', Status: 'passing', ServiceID: 'web-2' }],
    });
    expect({ status: second.status, text: second.text }).toEqual({ status: 200, text: 'true' });

    // The example ends itself: after its second message, or at its own --timeout with status 1.
    const code = await exited;
    if (code !== 0) throw new Error(`register_and_watch.py exited ${code}:\n${transcript()}`);
    console.log(`register_and_watch.py printed:\n${stdout.join('\n')}`);

    const registered = /^registered web-python \(web\) on node python-example at index (\d+); watching web on (\S+)$/.exec(stdout[0]);
    expect(registered?.[2]).toBe(catalog.grpc);
    const updates = printedUpdates(stdout);
    expect(updates.map(({ sequence, instances }) => ({ sequence, instances }))).toEqual([
      { sequence: 1, instances: ['web-python on python-example at 127.0.0.1:8080: passing'] },
      // In node then instance ID order, as ServiceHealth lists them.
      { sequence: 2, instances: ['web-2 on node-beta-1 at 127.0.1.102:8081: passing', 'web-python on python-example at 127.0.0.1:8080: passing'] },
    ]);
    // The first message is as of the registration or later; the index grows from one to the next.
    expect(updates[0].index).toBeGreaterThanOrEqual(Number(registered![1]));
    expect(updates[1].index).toBeGreaterThan(updates[0].index);
  });
});
