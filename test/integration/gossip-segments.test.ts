/**
 * Network segments with real gossip agents (reference/consul-compat.md §2; reliability.md G6).
 *
 *   server-1, server-2   -server -segments=alpha:8303 -segments=beta:8304 -segments=gamma:8305
 *                        (the default pool on 8301 and one pool per segment; server-2 joins
 *                        server-1's 8301 and meets it in every segment by flooding, §2.3)
 *   node-default-1       the default segment, joins server-1:8301
 *   node-alpha-1, -2     segment alpha, join server-1:8303 and server-2:8303
 *   node-beta-1, -2      segment beta, join server-1:8304 and server-2:8304
 *   node-gamma-1         segment gamma, joins server-2:8305
 *
 * First the seed guide's walk-through as an operator sees it (the real `consulate` binary), then
 * 1,000 randomized joins across the pools, after which no pool may hold a member of another
 * segment and every refusal must be Consul's wrong-segment text (§2.4).
 * The `local` gossip profile: these claims are about segments, not failure-detection timings.
 */
import { VERSION } from '../../services/lib/version';
import { eventually, stopAll } from '../harness/processes';
import { Agent, closeClients, join, members, runCli, seesExactlyAlive, startAgent, tableRows, within } from './gossip-agents';
import { Prng } from '../sim/prng';

const PROFILE = '-gossip-profile=local';
const SEGMENT_PORTS: Record<string, number> = { '': 8301, alpha: 8303, beta: 8304, gamma: 8305 };
const SERVER_ARGS = ['-server', '-segments=alpha:8303', '-segments=beta:8304', '-segments=gamma:8305', PROFILE];

const servers: Agent[] = [];
const clients = new Map<string, { agent: Agent; segment: string }>();

/** Every pool of the topology: which agent runs it, its segment, its address. */
interface PoolEndpoint {
  readonly agent: Agent;
  readonly segment: string;
  readonly host: string;
  readonly port: number;
}

function endpoints(): PoolEndpoint[] {
  const out: PoolEndpoint[] = [];
  for (const server of servers) for (const [segment, port] of Object.entries(SEGMENT_PORTS)) out.push({ agent: server, segment, host: server.host, port });
  for (const { agent, segment } of clients.values()) out.push({ agent, segment, host: agent.host, port: 8301 });
  return out;
}

/** The members every pool of `segment` must hold: both servers and that segment's clients. */
function expectedMembers(segment: string): string[] {
  return [...servers.map((s) => s.name), ...[...clients.entries()].filter(([, c]) => c.segment === segment).map(([name]) => name)].sort();
}

/** Consul's wrong-segment refusal as memberlist wraps it (agent/consul/merge.go; §2.4). */
function wrongSegment(address: string, member: string, theirs: string, mine: string): string {
  return `Failed to join ${address}: Member '${member}' part of wrong segment '${theirs}' (expected '${mine}')`;
}

async function allPoolsConverged(): Promise<boolean> {
  for (const pool of endpoints()) {
    const segment = servers.includes(pool.agent) ? pool.segment : '';
    if (!(await seesExactlyAlive(pool.agent, expectedMembers(pool.segment), segment))) return false;
  }
  return true;
}

beforeAll(async () => {
  const server1 = await startAgent('server-1', SERVER_ARGS);
  servers.push(server1);
  // No port: the default pool's own port (8301), Consul's join-port precedence (§2.2).
  servers.push(await startAgent('server-2', [...SERVER_ARGS, `-join=${server1.host}`]));
  const server2 = servers[1];
  // Segment flooding: server-2 appears in server-1's every segment pool without an operator join.
  await eventually('the servers meeting in every segment', async () => {
    for (const segment of ['alpha', 'beta', 'gamma']) if (!(await seesExactlyAlive(server1, ['server-1', 'server-2'], segment))) return undefined;
    return true;
  }, 10_000);

  const plan: [string, string, string][] = [
    ['node-default-1', '', server1.host],
    ['node-alpha-1', 'alpha', `${server1.host}:8303`],
    ['node-alpha-2', 'alpha', `${server2.host}:8303`],
    ['node-beta-1', 'beta', `${server1.host}:8304`],
    ['node-beta-2', 'beta', `${server2.host}:8304`],
    ['node-gamma-1', 'gamma', `${server2.host}:8305`],
  ];
  const started = await Promise.all(plan.map(([name, segment, target]) => startAgent(name, [...(segment === '' ? [] : [`-segment=${segment}`]), `-join=${target}`, PROFILE])));
  plan.forEach(([name, segment], i) => clients.set(name, { agent: started[i], segment }));
  await eventually('every pool holding exactly its segment’s members', allPoolsConverged, 20_000);
});

afterAll(async () => {
  closeClients();
  await stopAll();
});

function client(name: string): Agent {
  return clients.get(name)!.agent;
}

test('the segments walk-through: `consulate members` shows Consul’s columns and labels; a wrong-segment join is refused with Consul’s text (§2.4, §2.5)', async () => {
  const [server1, server2] = servers;
  const header = ['Node', 'Address', 'Status', 'Type', 'Build', 'Protocol', 'DC', 'Segment'];
  const row = (name: string, address: string, type: string, label: string) => [name, address, 'alive', type, VERSION, '2', 'dc1', label];

  // The default -segment=_all: each server once, from the default pool, labelled <all>; rows
  // sorted by label, then name.
  const all = await runCli(['members', `-gossip-addr=${server1.proc.grpc}`]);
  expect(all).toMatchObject({ code: 0, stderr: '' });
  expect(tableRows(all.stdout)).toEqual([
    header,
    row('server-1', `${server1.host}:8301`, 'server', '<all>'),
    row('server-2', `${server2.host}:8301`, 'server', '<all>'),
    row('node-default-1', `${client('node-default-1').host}:8301`, 'client', '<default>'),
    row('node-alpha-1', `${client('node-alpha-1').host}:8301`, 'client', 'alpha'),
    row('node-alpha-2', `${client('node-alpha-2').host}:8301`, 'client', 'alpha'),
    row('node-beta-1', `${client('node-beta-1').host}:8301`, 'client', 'beta'),
    row('node-beta-2', `${client('node-beta-2').host}:8301`, 'client', 'beta'),
    row('node-gamma-1', `${client('node-gamma-1').host}:8301`, 'client', 'gamma'),
  ]);

  // -segment=alpha: only alpha's clients, and the servers at their alpha port (the pool the row came from).
  const alpha = await runCli(['members', `-gossip-addr=${server1.proc.grpc}`, '-segment=alpha']);
  expect(alpha.code).toBe(0);
  expect(tableRows(alpha.stdout)).toEqual([
    header,
    row('node-alpha-1', `${client('node-alpha-1').host}:8301`, 'client', 'alpha'),
    row('node-alpha-2', `${client('node-alpha-2').host}:8301`, 'client', 'alpha'),
    row('server-1', `${server1.host}:8303`, 'server', 'alpha'),
    row('server-2', `${server2.host}:8303`, 'server', 'alpha'),
  ]);

  // A client sees only its own segment: the servers at that segment's port.
  const fromBeta = await runCli(['members', `-gossip-addr=${client('node-beta-1').proc.grpc}`]);
  expect(tableRows(fromBeta.stdout)).toEqual([
    header,
    row('server-1', `${server1.host}:8304`, 'server', '<all>'),
    row('server-2', `${server2.host}:8304`, 'server', '<all>'),
    row('node-beta-1', `${client('node-beta-1').host}:8301`, 'client', 'beta'),
    row('node-beta-2', `${client('node-beta-2').host}:8301`, 'client', 'beta'),
  ]);

  // A client of beta joining a server's alpha port, or a client of alpha: refused (gRPC Join).
  const beta1 = client('node-beta-1');
  const toServer = await join(beta1, [`${server1.host}:8303`]);
  expect(toServer).toEqual({ joined: 0, results: [{ address: `${server1.host}:8303`, joined: false, error: wrongSegment(`${server1.host}:8303`, 'server-1', 'alpha', 'beta') }] });
  const alpha1 = client('node-alpha-1');
  const toClient = await join(beta1, [`${alpha1.host}:8301`]);
  expect(toClient.results[0].error).toBe(wrongSegment(`${alpha1.host}:8301`, 'node-alpha-1', 'alpha', 'beta'));

  // The same through the CLI, as an operator would try it.
  const cliJoin = await runCli(['join', `-gossip-addr=${beta1.proc.grpc}`, `${server1.host}:8303`]);
  expect(cliJoin.code).toBe(1);
  expect(cliJoin.stderr).toContain(wrongSegment(`${server1.host}:8303`, 'server-1', 'alpha', 'beta'));
  expect(cliJoin.stderr).toContain('Failed to join any nodes.');

  // Nothing leaked either way.
  expect(await seesExactlyAlive(beta1, expectedMembers('beta'))).toBe(true);
  expect(await seesExactlyAlive(server1, expectedMembers('alpha'), 'alpha')).toBe(true);

  // -join at start into the wrong segment: the agent does not start, and says why.
  const misjoined = await startAgent('node-beta-3', ['-segment=beta', `-join=${server1.host}:8303`, PROFILE], { waitHealthy: false });
  expect(await within(misjoined.proc.exited, 15_000, 'node-beta-3 to exit')).toBe(1);
  expect(misjoined.proc.lines.some((line) => line.includes(wrongSegment(`${server1.host}:8303`, 'server-1', 'alpha', 'beta')))).toBe(true);
  await misjoined.proc.stop();
});

const JOIN_REQUESTS = 1_000;
const JOIN_CONCURRENCY = 8;

test(`${JOIN_REQUESTS} randomized joins across segments: zero cross-segment members, every refusal in Consul’s words (G6)`, async () => {
  const seed = Number(process.env.GOSSIP_JOIN_SEED ?? Date.now() % 1_000_000);
  const prng = new Prng(seed);
  const random = () => prng.next();
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const pools = endpoints();

  // Each request: a random pool of a random agent joins one or two random pool addresses. An
  // address is written without its port (Consul's rule: the joining pool's own port) when that
  // names the same pool.
  const requests = Array.from({ length: JOIN_REQUESTS }, () => {
    const from = pick(pools);
    const targets = Array.from({ length: random() < 0.2 ? 2 : 1 }, () => pick(pools));
    const addresses = targets.map((t) => (t.port === from.port && random() < 0.3 ? t.host : `${t.host}:${t.port}`));
    return { from, targets, addresses };
  });

  const counts = { requests: 0, addresses: 0, accepted: 0, refused: 0 };
  const mismatches: string[] = [];
  const startedAt = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const { from, targets, addresses } = requests[next++];
      const isServer = servers.includes(from.agent);
      const response = await join(from.agent, addresses, isServer ? from.segment : '');
      counts.requests++;
      response.results.forEach((result, i) => {
        counts.addresses++;
        const target = targets[i];
        const address = `${target.host}:${target.port}`;
        const expected = target.segment === from.segment ? { address, joined: true, error: '' } : { address, joined: false, error: wrongSegment(address, target.agent.name, target.segment, from.segment) };
        if (result.joined) counts.accepted++;
        else counts.refused++;
        if (result.address !== expected.address || result.joined !== expected.joined || result.error !== expected.error) {
          mismatches.push(`${from.agent.name}/${from.segment || '<default>'} → ${addresses[i]}: got ${JSON.stringify(result)}, expected ${JSON.stringify(expected)}`);
        }
      });
    }
  };
  await Promise.all(Array.from({ length: JOIN_CONCURRENCY }, worker));
  const elapsedMs = Date.now() - startedAt;
  console.log(`gossip G6 (seed ${seed}): ${counts.requests} join requests (${counts.addresses} addresses) in ${elapsedMs} ms, ${JOIN_CONCURRENCY} at a time: ${counts.accepted} accepted, ${counts.refused} refused (wrong segment)`);

  expect(mismatches.slice(0, 10)).toEqual([]);
  expect(counts.requests).toBe(JOIN_REQUESTS);
  expect(counts.accepted).toBeGreaterThan(0);
  expect(counts.refused).toBeGreaterThan(0);
  expect(elapsedMs).toBeLessThan(60_000);

  // Every pool of every agent: exactly its segment's members, each tagged with the pool's segment.
  await eventually('every pool still exactly its segment’s members', allPoolsConverged, 10_000);
  for (const pool of endpoints()) {
    const isServer = servers.includes(pool.agent);
    const listed = await members(pool.agent, isServer ? pool.segment : '');
    for (const member of listed) {
      expect({ pool: `${pool.agent.name}/${pool.segment}`, member: member.name, tag: member.tags.segment, listedFrom: member.segment }).toEqual({ pool: `${pool.agent.name}/${pool.segment}`, member: member.name, tag: pool.segment, listedFrom: pool.segment });
    }
  }
  // The _all view of a server: each client under its own segment, the servers once.
  const everything = await members(servers[0], '_all');
  expect(everything.map((m) => m.name).sort()).toEqual([...servers.map((s) => s.name), ...clients.keys()].sort());
  for (const member of everything) expect(member.tags.segment).toBe(member.segment);
  for (const agent of [...servers, ...[...clients.values()].map((c) => c.agent)]) expect(agent.proc.child.exitCode).toBeNull();
});
