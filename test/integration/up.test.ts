/**
 * `make up` as an operator runs it: every process of dc1 and dc2 healthy, endpoints in the
 * topology file, and nothing left behind however it ends: Ctrl-C after a child crashed, the
 * supervisor itself SIGKILLed, or DETACH=1 then `make down`; and `make demo` walking the seed
 * guides against the running dc1 and dc2, twice. Each cluster uses its own loopback subnet and
 * state directory so it never meets a cluster somebody is running with `make up`.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { checkHealth } from '../../services/lib/health-probe';
import { eventually, REPO_ROOT } from '../harness/processes';
import { isAlive } from '../../deploy/up';
import type { TopologyFile } from '../../deploy/up';
import { topology as plannedTopology } from '../../deploy/topology';

const PROCESSES_IN_TWO_DCS = plannedTopology(2).length;

const UP = join(REPO_ROOT, 'dist', 'deploy', 'up.js');
const DEMO = join(REPO_ROOT, 'dist', 'deploy', 'demo.js');

/** `make demo` as a process of its own (async: the supervisor's log pipe keeps draining meanwhile). */
function runDemo(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const demo = spawn(process.execPath, [DEMO, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 100_000 });
    let stdout = '';
    let stderr = '';
    demo.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    demo.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    demo.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
let subnetCounter = 0;

function freshCluster() {
  const stateDir = mkdtempSync(join(tmpdir(), 'consulate-up-'));
  const subnet = `127.${200 + ((process.pid + subnetCounter++) % 50)}`;
  return { stateDir, subnet, args: [`--state-dir=${stateDir}`, `--subnet=${subnet}`] };
}

// The supervisor itself allows 60 s (deploy/up.ts HEALTHY_TIMEOUT_MS); on a loaded 2-core machine
// starting 24 processes and two elections can take most of it.
async function readHealthyTopology(stateDir: string, timeoutMs = 70_000): Promise<TopologyFile> {
  const file = join(stateDir, 'topology.json');
  return eventually(
    'a healthy topology file',
    () => {
      if (!existsSync(file)) return undefined;
      const topology = JSON.parse(readFileSync(file, 'utf8')) as TopologyFile;
      return topology.healthy ? topology : undefined;
    },
    timeoutMs,
  );
}

async function allGone(pids: number[], timeoutMs = 15_000): Promise<void> {
  await eventually(`processes ${pids.join(', ')} to exit`, () => (pids.every((pid) => !isAlive(pid)) ? true : undefined), timeoutMs);
}

const started: ChildProcess[] = [];
const afterAllDowns: (() => void)[] = [];
afterAll(() => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
  for (const down of afterAllDowns) down();
});

describe('dc1 and dc2 under one supervisor', () => {
  const cluster = freshCluster();
  let supervisor: ChildProcess;
  let output = '';
  let exited: Promise<number | null>;
  let topology: TopologyFile;

  beforeAll(async () => {
    supervisor = spawn(process.execPath, [UP, '--dcs=2', ...cluster.args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(supervisor);
    supervisor.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise<number | null>((resolve) => supervisor.on('exit', (code) => resolve(code)));
    topology = await readHealthyTopology(cluster.stateDir);
  });

  test('come up healthy, every process answering', async () => {
    expect(topology.datacenters).toEqual(['dc1', 'dc2']);
    expect(topology.processes).toHaveLength(PROCESSES_IN_TWO_DCS);
    const roles = new Set(topology.processes.map((p) => `${p.datacenter}/${p.role}`));
    for (const dc of ['dc1', 'dc2']) for (const role of ['consensus', 'gossip', 'catalog', 'federation-router']) expect(roles).toContain(`${dc}/${role}`);
    const server1 = topology.processes.find((p) => p.datacenter === 'dc2' && p.host === 'server-1' && p.role === 'consensus')!;
    expect(server1.endpoints.grpc).toBe(`${cluster.subnet}.2.1:8310`);
    for (const p of topology.processes) expect((await checkHealth(p.endpoints.grpc, 2_000)).answer).toBe('SERVING');
    expect(output).toContain(`Consulate is up: ${PROCESSES_IN_TWO_DCS} processes in 2 datacenter(s) healthy`);
    expect(output).toMatch(/dc1 server-1 +consensus +\| info +consulate consensus running in dc1 as server-1/);
  });

  test('make demo walks the segments and areas guides against them, and walks them again reusing the areas', async () => {
    const dc = (n: number, octet: number) => `${cluster.subnet}.${n}.${octet}`;
    const first = await runDemo([`--state-dir=${cluster.stateDir}`]);
    expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
    // Segments (reference/consul-compat.md §2.4, §2.5): servers once as <all>, then per segment at its port.
    expect(first.stdout).toContain('(dc1) $ consulate members\n');
    expect(first.stdout).toMatch(new RegExp(`server-1 +${dc(1, 1)}:8301 +alive +server .* dc1 +<all>`));
    expect(first.stdout).toMatch(new RegExp(`node-alpha-1 +${dc(1, 101)}:8301 +alive +client .* dc1 +alpha`));
    expect(first.stdout).toMatch(new RegExp(`server-1 +${dc(1, 1)}:8304 +alive +server .* dc1 +beta`));
    expect(first.stdout).toContain(`(dc1) $ consulate join -gossip-addr=${dc(1, 101)}:8320 ${dc(1, 1)}:8304\n`);
    expect(first.stdout).toMatch(/Failed to join [\d.]+:8304: Member '[^']+' part of wrong segment 'beta' \(expected 'alpha'\)/);
    // Areas (§3.3): the pair created, joined, both datacenters' routers with an RTT, dc2 answering dc1.
    const dc1Area = /\(dc1\) \$ consulate operator area create -peer-datacenter=dc2\nCreated area "([0-9a-f-]{36})" with peer datacenter "dc2"!/.exec(first.stdout)?.[1];
    const dc2Area = /\(dc2\) \$ consulate operator area create -peer-datacenter=dc1\nCreated area "([0-9a-f-]{36})" with peer datacenter "dc1"!/.exec(first.stdout)?.[1];
    expect(dc1Area).toBeDefined();
    expect(dc2Area).toBeDefined();
    expect(first.stdout).toMatch(new RegExp(`${dc(2, 20)} +true +\\(none\\)`));
    for (const [router, address] of [['router-1.dc2', dc(2, 20)], ['router-2.dc2', dc(2, 21)]]) {
      expect(first.stdout).toMatch(new RegExp(`${dc1Area} +${router} +${address}:8300 +alive .* dc2 +[\\d.]+(ns|µs|ms|s)\\n`));
    }
    expect(first.stdout).toMatch(/\(dc1\) \$ consulate catalog services -datacenter=dc2\nconsul\nweb\n/);
    expect(first.stdout).toContain('"Datacenter": "dc2"');
    expect(first.stdout).toContain('Both guides walked: 13 steps, each as expected.');

    const again = await runDemo([`--state-dir=${cluster.stateDir}`]);
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
    expect(again.stdout).not.toContain('Created area');
    expect(again.stdout).toContain(`dc1 already has an area with peer datacenter "dc2" ("${dc1Area}")`);
    expect(again.stdout).toContain(`dc2 already has an area with peer datacenter "dc1" ("${dc2Area}")`);
    expect(again.stdout).toContain('Both guides walked: 13 steps, each as expected.');
  });

  test("a user event fired for dc2 from dc1's catalog (?dc=dc2) crosses the area and is listed by dc2's catalog; dc1's list stays its own", async () => {
    const catalogOf = (dc: string) => `http://${topology.processes.find((p) => p.datacenter === dc && p.role === 'catalog')!.address}:8500`;
    const fired = await fetch(`${catalogOf('dc1')}/v1/event/fire/deploy?dc=dc2`, { method: 'PUT', body: 'from dc1' });
    expect(fired.status).toBe(200);
    const { ID } = (await fired.json()) as { ID: string };
    const listedInDc2 = await eventually(
      "dc2's catalog to list the event",
      async () => {
        const events = (await (await fetch(`${catalogOf('dc2')}/v1/event/list?name=deploy`)).json()) as { ID: string; Payload: string }[];
        return events.find((event) => event.ID === ID);
      },
      20_000,
    );
    expect(Buffer.from(listedInDc2.Payload, 'base64').toString()).toBe('from dc1');
    // Consul's event list is the agent's own: `dc` does not move it.
    const inDc1 = (await (await fetch(`${catalogOf('dc1')}/v1/event/list?name=deploy&dc=dc2`)).json()) as { ID: string }[];
    expect(inDc1.some((event) => event.ID === ID)).toBe(false);
  });

  test('Ctrl-C after a crashed child leaves no process behind', async () => {
    const victim = topology.processes.find((p) => p.role === 'catalog')!;
    process.kill(victim.pid, 'SIGKILL');
    await eventually('the crash report', () => (output.includes('dc1 catalog') && output.includes('EXITED (SIGKILL)') ? true : undefined));

    supervisor.kill('SIGINT');
    expect(await exited).toBe(0);
    await allGone(topology.processes.map((p) => p.pid));
    expect(output).toContain(`Stopped ${PROCESSES_IN_TWO_DCS} processes.`);
    expect(existsSync(join(cluster.stateDir, 'topology.json'))).toBe(false);
  });
});

test('a SIGKILLed supervisor leaves no orphans: children stop when their stdin closes', async () => {
  const cluster = freshCluster();
  const supervisor = spawn(process.execPath, [UP, '--dcs=1', ...cluster.args], { cwd: REPO_ROOT, stdio: 'ignore' });
  started.push(supervisor);
  const topology = await readHealthyTopology(cluster.stateDir);
  expect(topology.processes).toHaveLength(plannedTopology(1).length);
  supervisor.kill('SIGKILL');
  await allGone(topology.processes.map((p) => p.pid));
});

test('DETACH=1 returns once healthy; make down stops everything', async () => {
  const cluster = freshCluster();
  // However this test ends, nothing it started in the background may outlive it.
  afterAllDowns.push(() => spawnSync(process.execPath, [UP, '--down', ...cluster.args], { cwd: REPO_ROOT, timeout: 30_000 }));
  const up = spawnSync(process.execPath, [UP, '--dcs=1', '--detach', ...cluster.args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(up.status).toBe(0);
  expect(up.stdout).toContain(`Consulate is up: ${plannedTopology(1).length} processes in 1 datacenter(s) healthy`);
  expect(up.stdout).toContain("Stop it with 'make down'.");
  const topology = JSON.parse(readFileSync(join(cluster.stateDir, 'topology.json'), 'utf8')) as TopologyFile;
  expect(isAlive(topology.supervisorPid)).toBe(true);

  const again = spawnSync(process.execPath, [UP, '--dcs=1', '--detach', ...cluster.args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 10_000 });
  expect(again.status).toBe(1);
  expect(again.stderr).toContain(`A cluster is already running under supervisor pid ${topology.supervisorPid}`);

  const down = spawnSync(process.execPath, [UP, '--down', ...cluster.args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
  expect(down.status).toBe(0);
  expect(down.stdout).toContain(`Stopped the cluster (supervisor pid ${topology.supervisorPid}).`);
  await allGone([topology.supervisorPid, ...topology.processes.map((p) => p.pid)]);
});

test('bad arguments are refused before anything starts', () => {
  const result = spawnSync(process.execPath, [UP, '--dcs=12'], { cwd: REPO_ROOT, encoding: 'utf8' });
  expect(result.status).toBe(2);
  expect(result.stderr).toContain('DCS must be a whole number from 1 to 9, got 12');
});

test('make demo with no cluster running says so and how to start one', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'consulate-demo-'));
  const result = spawnSync(process.execPath, [DEMO, `--state-dir=${stateDir}`], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
  expect(result.status).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^make demo: No Consulate cluster is running: .*topology\.json does not exist\. Start one with 'make up'/);
});
