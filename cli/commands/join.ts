/**
 * `consulate join`, `consulate leave`, `consulate force-leave`: Consul's agent commands of the
 * same names, over the gossip agent's Membership API, with their output and exit codes. A
 * `join -wan` goes to the catalog's HTTP API instead (`PUT /v1/agent/join/<addr>?wan=1`, as
 * Consul's CLI asks its agent), which hands it to a federation router: the routers run the WAN
 * pool, not the gossip agents.
 */
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { callUnary } from '../../services/lib/grpc-client';
import { Command, CommandIo, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi } from '../http-api';
import { GOSSIP_ADDR_FLAG, callError, gossipAddress, membershipClient } from './gossip-api';

const JOIN_FLAGS: FlagSpec[] = [
  GOSSIP_ADDR_FLAG,
  ...HTTP_FLAGS.filter((flag) => flag.name === 'http-addr'),
  { name: 'segment', kind: 'string', usage: "Which of a server's pools joins (a segment name; the default segment when empty)." },
  { name: 'wan', kind: 'bool', usage: "Joins this datacenter's federation routers to another datacenter's in the WAN pool, through the catalog's HTTP API (-http-addr). Addresses are routers' (port 8300 when none is given)." },
];
const JOIN_HELP = `Usage: consulate join [options] address ...

  Tells a running agent to join the pool of the agents at the given addresses (host or
  host:port). A client of a segment must join a server at that segment's port. With -wan, a
  federation router of the catalog's datacenter joins the WAN pool through the given routers of
  another datacenter.

Options:

${flagUsage(JOIN_FLAGS)}`;

/** One WAN join: the router's join reaches the other datacenter over 8300 (its own deadline is 15 s). */
const WAN_JOIN_TIMEOUT_MS = 30_000;

export const joinCommand: Command = {
  synopsis: 'Tells a running agent to join the cluster',
  help: () => JOIN_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(JOIN_FLAGS, JOIN_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length === 0) {
      io.stderr('At least one address to join must be specified.\n');
      return 1;
    }
    if (parsed.values.get('wan') === true) return joinWan(parsed.positionals, parsed.values, io);
    const address = gossipAddress(parsed.values.get('gossip-addr'), io.env);
    const client = membershipClient(address);
    try {
      const response = await callUnary(client.join.bind(client), { addresses: [...parsed.positionals], segment: (parsed.values.get('segment') as string | undefined) ?? '' }, { timeoutMs: 30_000, idempotent: false });
      for (const result of response.results) if (!result.joined) io.stderr(`Error joining address '${result.address}': ${result.error}\n`);
      if (response.joined === 0) {
        io.stderr('Failed to join any nodes.\n');
        return 1;
      }
      io.stdout(`Successfully joined cluster by contacting ${response.joined} nodes.\n`);
      return 0;
    } catch (err) {
      io.stderr(`Error joining the cluster: ${callError(err, address)}\n`);
      return 1;
    } finally {
      client.close();
    }
  },
};

/** Consul's join command: one `/v1/agent/join/<addr>?wan=1` per address, each failure reported, success if any joined. */
async function joinWan(addresses: readonly string[], values: ReadonlyMap<string, unknown>, io: CommandIo): Promise<number> {
  const api = new HttpApi(values, io.env, '');
  let joins = 0;
  for (const address of addresses) {
    try {
      await api.request('PUT', `/v1/agent/join/${encodeURIComponent(address)}`, { query: { wan: '1' }, timeoutMs: WAN_JOIN_TIMEOUT_MS });
      joins++;
    } catch (err) {
      io.stderr(`Error joining address '${address}': ${(err as Error).message}\n`);
    }
  }
  if (joins === 0) {
    io.stderr('Failed to join any nodes.\n');
    return 1;
  }
  io.stdout(`Successfully joined cluster by contacting ${joins} nodes.\n`);
  return 0;
}

const LEAVE_HELP = `Usage: consulate leave [options]

  Causes the agent to gracefully leave every pool and shut down.

Options:

${flagUsage([GOSSIP_ADDR_FLAG])}`;

export const leaveCommand: Command = {
  synopsis: 'Gracefully leaves the cluster and shuts down',
  help: () => LEAVE_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags([GOSSIP_ADDR_FLAG], LEAVE_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length > 0) {
      io.stderr('This command takes no arguments\n');
      return 1;
    }
    const address = gossipAddress(parsed.values.get('gossip-addr'), io.env);
    const client = membershipClient(address);
    try {
      await callUnary(client.leave.bind(client), {}, { timeoutMs: 30_000, idempotent: false });
      io.stdout('Graceful leave complete\n');
      return 0;
    } catch (err) {
      io.stderr(`Error leaving: ${callError(err, address)}\n`);
      return 1;
    } finally {
      client.close();
    }
  },
};

const FORCE_LEAVE_FLAGS: FlagSpec[] = [GOSSIP_ADDR_FLAG, { name: 'prune', kind: 'bool', usage: 'Also forget the node at once, instead of after the reap interval.' }];
const FORCE_LEAVE_HELP = `Usage: consulate force-leave [options] name

  Forces a member of the cluster to enter the "left" state: a failed node is no longer
  reconnected to. An alive node refutes it.

Options:

${flagUsage(FORCE_LEAVE_FLAGS)}`;

export const forceLeaveCommand: Command = {
  synopsis: 'Forces a member of the cluster to enter the "left" state',
  help: () => FORCE_LEAVE_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(FORCE_LEAVE_FLAGS, FORCE_LEAVE_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length !== 1) {
      io.stderr('A single node name must be specified to force leave.\n');
      return 1;
    }
    const address = gossipAddress(parsed.values.get('gossip-addr'), io.env);
    const client = membershipClient(address);
    try {
      await callUnary(client.forceLeave.bind(client), { node: parsed.positionals[0], prune: parsed.values.get('prune') === true }, { timeoutMs: 10_000, idempotent: true });
      return 0;
    } catch (err) {
      io.stderr(`Error force leaving: ${callError(err, address)}\n`);
      return 1;
    } finally {
      client.close();
    }
  },
};
