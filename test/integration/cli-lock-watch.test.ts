/**
 * `consulate lock`, `consulate watch` and `consulate members` as real processes against a real
 * catalog (Consul's command/lock, command/watch, command/members; reference/consul-compat.md
 * §2.5, §2.6, §4.3, §4.4):
 *
 *   server-1    consensus (one-server Raft) and a gossip server agent
 *   catalog-1   the catalog (HTTP 8500), and on the same host a gossip client agent of the same
 *               name, so the reconciler registers catalog-1 with serfHealth: sessions (and so
 *               locks) belong to the catalog's node, as Consul's belong to the agent's
 *
 * Two `lock` processes on one prefix run their children one at a time; the child's failure is
 * reported as Consul's lock reports it; a lock whose session is destroyed kills its child; a
 * `watch -type=key` hands the new value to its handler when it is put; `members -http-addr` prints
 * through the catalog exactly what `members -gossip-addr` prints from the gossip agent.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CONSULATE_BIN, REPO_ROOT, RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

const PROFILE = '-gossip-profile=local';
const serverHost = freeLoopbackAddress();
const catalogHost = freeLoopbackAddress();
const HTTP = `-http-addr=http://${catalogHost}:8500`;
let serverGossip: RoleProcess;
const work = mkdtempSync(join(tmpdir(), 'consulate-cli-lock-'));

interface CliRun {
  readonly child: ChildProcess;
  /** Everything written so far. */
  readonly out: { stdout: string; stderr: string };
  readonly done: Promise<{ code: number | string; stdout: string; stderr: string }>;
}

const runs: CliRun[] = [];

/** A `consulate` process; killed (SIGKILL) after `timeoutMs` so a hang fails the test, not the run. */
function cli(args: readonly string[], timeoutMs = 20_000): CliRun {
  const child = spawn(process.execPath, [CONSULATE_BIN, ...args], { cwd: REPO_ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (out.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out.stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? 'unknown', ...out });
    }),
  );
  const run = { child, out, done };
  runs.push(run);
  return run;
}

async function http(method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://${catalogHost}:8500${path}`, { method, body, signal: AbortSignal.timeout(10_000) });
  return { status: response.status, text: await response.text() };
}

async function lockSession(key: string): Promise<string | undefined> {
  const answer = await http('GET', `/v1/kv/${key}`);
  return answer.status === 200 ? (JSON.parse(answer.text) as { Session?: string }[])[0].Session : undefined;
}

beforeAll(async () => {
  const [consensus, gossip] = await Promise.all([
    startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] }),
    startRole({ role: 'gossip', node: 'server-1', address: serverHost, args: ['-server', PROFILE] }),
  ]);
  serverGossip = gossip;
  await Promise.all([
    startRole({ role: 'gossip', node: 'catalog-1', address: catalogHost, args: [`-join=${serverHost}:8301`, PROFILE] }),
    startRole({ role: 'catalog', node: 'catalog-1', address: catalogHost, args: [`-consensus-addr=${consensus.grpc}`, `-gossip-addr=${serverGossip.grpc}`] }),
  ]);
  // Sessions need the catalog's node registered with a passing serfHealth: the reconciler's work.
  await eventually(
    'catalog-1 registered with serfHealth passing',
    async () => {
      const answer = await http('GET', '/v1/health/node/catalog-1').catch(() => undefined);
      return answer?.status === 200 && (JSON.parse(answer.text) as { CheckID: string; Status: string }[]).some((c) => c.CheckID === 'serfHealth' && c.Status === 'passing');
    },
    20_000,
  );
});

afterAll(async () => {
  for (const run of runs) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  await stopAll();
});

test('two `lock` processes on one prefix never run their children at the same time; each releases and cleans up', async () => {
  const markers = join(work, 'markers');
  writeFileSync(markers, '');
  const child = (id: string) => `echo start ${id} >> ${markers}; sleep 1; echo end ${id} >> ${markers}`;
  const results = await Promise.all(['a', 'b'].map((id) => cli(['lock', HTTP, 'jobs/nightly', child(id)]).done));
  for (const result of results) expect(result).toMatchObject({ code: 0, stderr: '' });

  const lines = readFileSync(markers, 'utf8').trim().split('\n');
  expect(lines).toHaveLength(4);
  const order: string[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const [start, end] = [lines[i].split(' '), lines[i + 1].split(' ')];
    // A start is always followed by the end of the same child: no overlap.
    expect([start[0], end[0], end[1]]).toEqual(['start', 'end', start[1]]);
    order.push(start[1]);
  }
  expect(order.sort()).toEqual(['a', 'b']);
  // The last one out deletes the lock key; every session is gone.
  expect((await http('GET', '/v1/kv/jobs/nightly/.lock')).status).toBe(404);
  expect(await http('GET', '/v1/session/list')).toMatchObject({ status: 200, text: '[]' });
});

test("a failing child: Consul's text, exit 0, or 2 with -child-exit-code", async () => {
  const [plain, propagated, ok] = await Promise.all([
    cli(['lock', HTTP, 'exit/plain', 'exit 3']).done,
    cli(['lock', HTTP, '-child-exit-code', 'exit/propagated', 'exit 3']).done,
    cli(['lock', HTTP, '-child-exit-code', 'exit/ok', 'echo fine']).done,
  ]);
  expect(plain).toMatchObject({ code: 0, stderr: 'Error running handler: exit status 3\n' });
  expect(propagated).toMatchObject({ code: 2, stderr: 'Error running handler: exit status 3\n' });
  expect(ok).toMatchObject({ code: 0, stdout: 'fine\n', stderr: '' });
});

test('a lost lock (its session destroyed) kills the child', async () => {
  const run = cli(['lock', HTTP, '-verbose', '-shell=false', 'lost/job', 'sleep', '60']);
  const session = await eventually('the lock to be held', () => lockSession('lost/job/.lock'), 10_000);
  const destroyedAt = Date.now();
  expect(await http('PUT', `/v1/session/destroy/${session}`)).toMatchObject({ status: 200, text: 'true' });
  const result = await run.done;
  expect(Date.now() - destroyedAt).toBeLessThan(5_000);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/Starting handler\nLock lost, killing child\nTerminating child pid \d+\nChild terminated\n/);
});

test('`watch -type=key` with a handler: the new value on its stdin when it is put; without one, the value printed once', async () => {
  const run = cli(['watch', HTTP, '-type=key', '-key=app/color', 'cat'], 30_000);
  // The first answer (no key yet) is handled too: null.
  await eventually('the first result', () => run.out.stdout.startsWith('null\n') || undefined, 10_000);
  expect(await http('PUT', '/v1/kv/app/color', 'blue')).toMatchObject({ text: 'true' });
  const line = await eventually('the put value', () => run.out.stdout.split('\n').find((l) => l.includes('"Key":"app/color"')), 10_000);
  expect(JSON.parse(line)).toMatchObject({ Key: 'app/color', Value: Buffer.from('blue').toString('base64'), Flags: 0, Session: '' });
  run.child.kill('SIGTERM');
  expect(await run.done).toMatchObject({ code: 0, stderr: '' });

  const once = await cli(['watch', HTTP, '-type=key', '-key=app/color']).done;
  expect(once.code).toBe(0);
  expect(JSON.parse(once.stdout)).toMatchObject({ Key: 'app/color', Value: Buffer.from('blue').toString('base64') });
  expect(once.stdout).toMatch(/^\{\n {4}"Key": "app\/color",\n/);
});

test('`members -http-addr` lists the members through the catalog, as `members -gossip-addr` does from the agent', async () => {
  const viaCatalog = await eventually(
    'both members alive through the catalog',
    async () => {
      const run = await cli(['members', HTTP]).done;
      return run.code === 0 && /catalog-1 .* alive/.test(run.stdout) && /server-1 .* alive/.test(run.stdout) ? run : undefined;
    },
    10_000,
  );
  expect(viaCatalog.stderr).toBe('');
  const rows = viaCatalog.stdout.trim().split('\n').map((line) => line.trim().split(/\s+/));
  expect(rows[0]).toEqual(['Node', 'Address', 'Status', 'Type', 'Build', 'Protocol', 'DC', 'Segment']);
  expect(rows.slice(1).map((r) => [r[0], r[1], r[2], r[3], r[7]])).toEqual([
    ['server-1', `${serverHost}:8301`, 'alive', 'server', '<all>'],
    ['catalog-1', `${catalogHost}:8301`, 'alive', 'client', '<default>'],
  ]);
  const viaGossip = await cli(['members', `-gossip-addr=${serverGossip.grpc}`]).done;
  expect(viaGossip).toMatchObject({ code: 0, stdout: viaCatalog.stdout });
  expect((await cli(['members', HTTP, '-status=failed']).done).code).toBe(2);
});
