/**
 * Failure detection and leaving with real processes and memberlist's LAN timings
 * (reference/reliability.md §6.3 G2, G4; §3.2 for the formulas; consul-compat.md §4.7 for what
 * `left` and `failed` mean to the catalog). One pool of ten agents (server-1, node-1..node-9),
 * each joined to server-1, every member's WatchMembers stream held open by the test:
 *
 *   SIGSTOP node-3 for 2 s       shorter than the suspicion timeout: never declared dead
 *   SIGKILL node-5               every survivor marks it failed, within memberlist's bound; the
 *                                first suspicion comes from a TCP ping its closed port refused
 *   force-leave node-5           failed → left everywhere; an unknown name is Consul's error
 *   `consulate leave` on node-7  left (not failed) everywhere; the process exits 0
 *
 * The tests run in this order and build on each other (node-5 is dead when it is forced out).
 */
import { MemberEventType } from '../../services/gen/consulate/gossip/v1/membership';
import { lanDefaults } from '../../services/lib/swim/config';
import { eventually, logRecords, stopAll } from '../harness/processes';
import { Agent, MemberWatch, closeClients, members, runCli, seesExactlyAlive, startAgent, statuses, within } from './gossip-agents';

const POOL_SIZE = 10;
const LAN = lanDefaults();
/**
 * memberlist's suspicion timeout (`suspicionTimeout`, reliability.md §3.2): min = SuspicionMult ×
 * max(1, log10 N) × ProbeInterval, max = SuspicionMaxTimeoutMult × min; with N = 10: 4 s and 24 s.
 */
const SUSPICION_MIN_MS = LAN.suspicionMult * Math.max(1, Math.log10(POOL_SIZE)) * LAN.probeIntervalMs;
const SUSPICION_MAX_MS = LAN.suspicionMaxTimeoutMult * SUSPICION_MIN_MS;
/**
 * The longest a dead member may stay unnoticed: a probe interval for a first failed probe, the
 * suspicion timeout at its maximum (no confirmation at all), a few gossip rounds to spread the
 * verdict, and slack for two shared cores: 1 + 24 + 5 = 30 s.
 */
const DETECTION_BOUND_MS = LAN.probeIntervalMs + SUSPICION_MAX_MS + 5_000;
/** G4: a pause well under the minimum suspicion timeout. */
const PAUSE_MS = 2_000;
/** Pauses at most, until one gets the member suspected (each does with probability about 2/3). */
const MAX_PAUSES = 8;

const agents: Agent[] = [];
const watches = new Map<string, MemberWatch>();
const byName = (name: string): Agent => agents.find((a) => a.name === name)!;
/** The core's log line when a member's TCP ping is refused (-gossip-suspect-on-refusal). */
const refusalLine = (name: string) => `memberlist: Suspect ${name} has failed, connection refused over TCP and no acks received`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  const server = await startAgent('server-1', ['-server', '-gossip-profile=lan']);
  agents.push(server);
  agents.push(...(await Promise.all(Array.from({ length: POOL_SIZE - 1 }, (_, i) => startAgent(`node-${i + 1}`, [`-join=${server.host}`, '-gossip-profile=lan'])))));
  const names = agents.map((a) => a.name);
  await eventually(`all ${POOL_SIZE} members seeing ${POOL_SIZE} alive`, async () => {
    for (const agent of agents) if (!(await seesExactlyAlive(agent, names))) return undefined;
    return true;
  }, 20_000);
  for (const agent of agents) watches.set(agent.name, new MemberWatch(agent));
  await eventually('every watch synced', () => ([...watches.values()].every((w) => w.synced) ? true : undefined), 5_000);
});

afterAll(async () => {
  for (const watch of watches.values()) watch.close();
  closeClients();
  await stopAll();
});

test(`SIGSTOP of a member for ${PAUSE_MS / 1000} s (< the ${SUSPICION_MIN_MS / 1000} s minimum suspicion timeout): suspected, never declared dead, alive everywhere after (G4)`, async () => {
  const paused = byName('node-3');
  const incarnationBefore = (await members(byName('server-1'))).find((m) => m.name === paused.name)!.incarnation;
  const since = Date.now();
  const suspicionsOf = () =>
    agents.flatMap((a) => logRecords(a.proc).filter((r) => r.msg === `memberlist: Suspect ${paused.name} has failed, no acks received` && Date.parse(String(r.time)) >= since).map(() => a.name));
  // A pause only tests something if some member probed the paused one and suspected it: with nine
  // probers at one probe a second, about one pause in three goes unprobed, so pause again then.
  let pauses = 0;
  while (pauses < MAX_PAUSES && suspicionsOf().length === 0) {
    pauses++;
    paused.proc.child.kill('SIGSTOP');
    try {
      await sleep(PAUSE_MS);
    } finally {
      paused.proc.child.kill('SIGCONT');
    }
    await sleep(LAN.probeIntervalMs);
  }
  // Past the minimum suspicion timeout of any suspicion the pauses started, and then some.
  await sleep(SUSPICION_MIN_MS + 3_000);

  const failed = [...watches.values()].flatMap((w) => w.about(MemberEventType.MEMBER_EVENT_TYPE_FAILED, undefined, since).map((e) => `${w.agent.name} saw ${e.name} fail`));
  for (const agent of agents) expect({ seenBy: agent.name, status: (await statuses(agent)).get(paused.name) }).toEqual({ seenBy: agent.name, status: 'alive' });
  const views = await Promise.all(agents.filter((a) => a !== paused).map(async (a) => (await members(a)).find((m) => m.name === paused.name)!.incarnation));
  const suspectedBy = suspicionsOf();
  // A stopped process still accepts connections (the kernel does), so no TCP ping of it is refused.
  const refusedBy = agents.filter((a) => logRecords(a.proc).some((r) => r.msg === refusalLine(paused.name) && Date.parse(String(r.time)) >= since)).map((a) => a.name);
  const refutations = logRecords(paused.proc).filter((r) => typeof r.msg === 'string' && r.msg.startsWith('memberlist: Refuting') && Date.parse(String(r.time)) >= since);
  console.log(
    `gossip G4: ${paused.name} paused ${pauses} × ${PAUSE_MS} ms: suspected ${suspectedBy.length} times (by ${[...new Set(suspectedBy)].join(', ')}), ${refutations.length} refutations by it, incarnation ${incarnationBefore} → ${[...new Set(views.map(String))].join('/')} as the others see it, FAILED events on the ${watches.size} watches: ${failed.length}`,
  );
  expect(suspectedBy.length).toBeGreaterThan(0);
  expect(refusedBy).toEqual([]);
  expect(failed).toEqual([]);
});

test(`SIGKILL of a member of a ${POOL_SIZE}-member pool: every survivor marks it failed within ${DETECTION_BOUND_MS / 1000} s, and its watch says FAILED (G2)`, async () => {
  const victim = byName('node-5');
  const survivors = agents.filter((a) => a !== victim);
  const killedAt = Date.now();
  victim.proc.child.kill('SIGKILL');
  expect(await within(victim.proc.exited, 5_000, 'node-5 to die')).toBe('SIGKILL');

  const detectedAt = await eventually(
    `every survivor's watch reporting ${victim.name} FAILED`,
    () => {
      const times = survivors.map((a) => watches.get(a.name)!.about(MemberEventType.MEMBER_EVENT_TYPE_FAILED, victim.name, killedAt)[0]?.atMs);
      return times.every((t) => t !== undefined) ? (times as number[]) : undefined;
    },
    DETECTION_BOUND_MS,
  );
  const delays = detectedAt.map((t) => t - killedAt).sort((a, b) => a - b);
  // Its port is closed, so the first survivor to probe it had its TCP ping refused and suspected it then.
  const refusedBy = survivors.filter((a) => logRecords(a.proc).some((r) => r.msg === refusalLine(victim.name) && Date.parse(String(r.time)) >= killedAt)).map((a) => a.name);
  for (const agent of survivors) expect({ seenBy: agent.name, status: (await statuses(agent)).get(victim.name) }).toEqual({ seenBy: agent.name, status: 'failed' });
  console.log(`gossip G2: ${victim.name} SIGKILLed in a pool of ${POOL_SIZE}: first survivor marked it failed after ${delays[0]} ms, all ${survivors.length} after ${delays[delays.length - 1]} ms (memberlist bound ${DETECTION_BOUND_MS} ms; suspicion ${SUSPICION_MIN_MS}..${SUSPICION_MAX_MS} ms); suspected on a refused TCP ping by ${refusedBy.join(', ')}`);
  expect(delays[delays.length - 1]).toBeLessThanOrEqual(DETECTION_BOUND_MS);
  expect(refusedBy.length).toBeGreaterThan(0);
});

test('`consulate force-leave` turns the killed member from failed to left on every member; an unknown name is Consul’s error', async () => {
  const victim = byName('node-5');
  const survivors = agents.filter((a) => a !== victim);
  const server = byName('server-1');
  const since = Date.now();

  const forced = await runCli(['force-leave', `-gossip-addr=${server.proc.grpc}`, victim.name]);
  expect(forced).toMatchObject({ code: 0, stderr: '' });
  await eventually(`${victim.name} left on every survivor`, async () => {
    for (const agent of survivors) if ((await statuses(agent)).get(victim.name) !== 'left') return undefined;
    return true;
  }, 10_000);
  await eventually('every survivor’s watch reporting LEAVE', () => (survivors.every((a) => watches.get(a.name)!.about(MemberEventType.MEMBER_EVENT_TYPE_LEAVE, victim.name, since).length > 0) ? true : undefined), 5_000);

  const unknown = await runCli(['force-leave', `-gossip-addr=${server.proc.grpc}`, 'no-such-node']);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toContain("No node found with name 'no-such-node'");
});

test('`consulate leave`: the agent leaves gracefully (left, never failed, on every other member) and exits 0', async () => {
  const leaver = byName('node-7');
  const others = agents.filter((a) => a !== leaver && a.name !== 'node-5');
  const since = Date.now();

  const left = await runCli(['leave', `-gossip-addr=${leaver.proc.grpc}`]);
  const answeredAfterMs = Date.now() - since;
  expect(left).toMatchObject({ code: 0, stdout: 'Graceful leave complete\n' });
  expect(await within(leaver.proc.exited, 15_000, `${leaver.name} to exit`)).toBe(0);
  const exitedAfterMs = Date.now() - since;
  await eventually(`${leaver.name} left on every other member`, async () => {
    for (const agent of others) if ((await statuses(agent)).get(leaver.name) !== 'left') return undefined;
    return true;
  }, 10_000);
  const leftAfterMs = Date.now() - since;
  // Past a probe round and a suspicion timeout: a member that missed the leave would have failed it by now.
  await sleep(SUSPICION_MIN_MS + LAN.probeIntervalMs);
  for (const agent of others) {
    expect({ seenBy: agent.name, status: (await statuses(agent)).get(leaver.name) }).toEqual({ seenBy: agent.name, status: 'left' });
    const watch = watches.get(agent.name)!;
    expect({ seenBy: agent.name, leave: watch.about(MemberEventType.MEMBER_EVENT_TYPE_LEAVE, leaver.name, since).length > 0, failed: watch.about(MemberEventType.MEMBER_EVENT_TYPE_FAILED, leaver.name, since).length }).toEqual({ seenBy: agent.name, leave: true, failed: 0 });
  }
  console.log(`gossip leave: \`consulate leave\` answered after ${answeredAfterMs} ms, ${leaver.name} exited 0 after ${exitedAfterMs} ms and was left on all ${others.length} others by ${leftAfterMs} ms`);
});
