/**
 * memberlist's TCP fallback ping with real processes: nftables drops every datagram to and from
 * one agent (its UDP is firewalled, its TCP is not). Its probers' UDP pings go unanswered and their
 * indirect probes too, but the TCP ping each then sends is acked, so the agent stays alive on every
 * member and the probers log memberlist's warning instead of suspecting it. Without the fallback
 * it would be declared dead within the suspicion timeout (services/lib/swim/swim.test.ts shows that
 * side). Needs root and nft; skipped with the reason otherwise.
 */
import { spawnSync } from 'node:child_process';

import { eventually, logRecords, stopAll } from '../harness/processes';
import { Agent, closeClients, seesExactlyAlive, startAgent, statuses } from './gossip-agents';

const TABLE = `consulate_udp_cut_${process.pid}`;
/** Long enough for each prober to probe the cut agent several times (two targets each, 1 s probes). */
const CUT_MS = 12_000;

function unavailable(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs Linux and root (nftables)';
  if (spawnSync('nft', ['--version']).status !== 0) return '`nft` is not available';
  return undefined;
}

function nft(...args: string[]): string {
  const result = spawnSync('nft', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`nft ${args.join(' ')}: ${result.stderr.trim()}`);
  return result.stdout;
}

const reason = unavailable();
const agents: Agent[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterAll(async () => {
  if (reason === undefined) spawnSync('nft', ['delete', 'table', 'inet', TABLE]);
  closeClients();
  await stopAll();
});

(reason === undefined ? test : test.skip)(`an agent whose datagrams are all dropped, TCP still passing, is never declared dead: its TCP pings are acked${reason === undefined ? '' : ` (skipped: ${reason})`}`, async () => {
  const server = await startAgent('server-1', ['-server', '-gossip-profile=lan']);
  agents.push(server, ...(await Promise.all(['node-1', 'node-2'].map((name) => startAgent(name, [`-join=${server.host}`, '-gossip-profile=lan'])))));
  const names = agents.map((a) => a.name);
  await eventually('all three members seeing three alive', async () => {
    for (const agent of agents) if (!(await seesExactlyAlive(agent, names))) return undefined;
    return true;
  }, 20_000);

  const cut = agents.find((a) => a.name === 'node-2')!;
  nft('add', 'table', 'inet', TABLE);
  nft('add', 'chain', 'inet', TABLE, 'out', '{ type filter hook output priority 0; policy accept; }');
  nft('add', 'rule', 'inet', TABLE, 'out', 'ip', 'daddr', cut.host, 'meta', 'l4proto', 'udp', 'counter', 'drop');
  nft('add', 'rule', 'inet', TABLE, 'out', 'ip', 'saddr', cut.host, 'meta', 'l4proto', 'udp', 'counter', 'drop');
  const since = Date.now();
  await sleep(CUT_MS);

  const dropped = [...nft('list', 'chain', 'inet', TABLE, 'out').matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
  const after = (a: Agent) => logRecords(a.proc).filter((r) => Date.parse(String(r.time)) >= since);
  const warnedBy = agents.filter((a) => after(a).some((r) => r.msg === `memberlist: Was able to connect to ${cut.name} over TCP but UDP probes failed, network may be misconfigured`)).map((a) => a.name);
  const suspicions = agents.flatMap((a) => after(a).filter((r) => typeof r.msg === 'string' && r.msg.startsWith('memberlist: Suspect ')).map((r) => `${a.name}: ${String(r.msg)}`));
  console.log(`gossip TCP fallback: ${cut.name}'s datagrams dropped for ${CUT_MS} ms (${dropped.join(' + ')} packets); warned by ${warnedBy.join(', ')}; suspicions: ${suspicions.length === 0 ? 'none' : suspicions.join('; ')}`);

  expect(dropped.every((packets) => packets > 0)).toBe(true);
  expect(warnedBy.filter((name) => name !== cut.name).length).toBeGreaterThan(0);
  for (const agent of agents) expect({ seenBy: agent.name, statuses: Object.fromEntries(await statuses(agent)) }).toEqual({ seenBy: agent.name, statuses: { 'server-1': 'alive', 'node-1': 'alive', 'node-2': 'alive' } });
});
