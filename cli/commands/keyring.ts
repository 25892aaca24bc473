/**
 * `consulate keyring`: Consul's `consul keyring` (-list, -install, -use, -remove) against one
 * gossip agent's keyring through its Membership API. Consul's command reaches every agent through
 * a Serf query; here each agent is asked on its own (say which with -gossip-addr), so a rotation is
 * install on every agent, then use on every agent, then remove on every agent.
 */
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { callUnary } from '../../services/lib/grpc-client';
import { Command, parseCommandFlags } from '../command';
import { GOSSIP_ADDR_FLAG, callError, gossipAddress, membershipClient } from './gossip-api';

const FLAGS: FlagSpec[] = [
  GOSSIP_ADDR_FLAG,
  { name: 'list', kind: 'bool', usage: 'List the keys installed on the agent.' },
  { name: 'install', kind: 'string', usage: 'Install a new encryption key (base64).' },
  { name: 'use', kind: 'string', usage: 'Make an installed key the one that encrypts.' },
  { name: 'remove', kind: 'string', usage: 'Remove a key that is not the one in use.' },
];

const HELP = `Usage: consulate keyring [options]

  Manages the gossip encryption keys of an agent. Exactly one of -list, -install, -use or
  -remove. To rotate: -install the new key on every agent, -use it on every agent, then
  -remove the old one.

Options:

${flagUsage(FLAGS)}`;

export const keyringCommand: Command = {
  synopsis: 'Manages gossip layer encryption keys',
  help: () => HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(FLAGS, HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const v = parsed.values;
    const chosen = ['list', 'install', 'use', 'remove'].filter((name) => v.has(name));
    if (chosen.length !== 1) {
      io.stderr('Only a single action is allowed\n');
      return 1;
    }
    const address = gossipAddress(v.get('gossip-addr'), io.env);
    const client = membershipClient(address);
    const policy = { timeoutMs: 10_000, idempotent: false };
    try {
      switch (chosen[0]) {
        case 'list': {
          const { keys, primaryKey } = await callUnary(client.listKeys.bind(client), {}, { ...policy, idempotent: true });
          io.stdout('==> Gathering installed encryption keys...\n');
          for (const key of keys) io.stdout(`  ${key}${key === primaryKey ? ' [primary]' : ''}\n`);
          return 0;
        }
        case 'install':
          io.stdout('==> Installing new gossip encryption key...\n');
          await callUnary(client.installKey.bind(client), { key: v.get('install') as string }, policy);
          return 0;
        case 'use':
          io.stdout('==> Changing primary gossip encryption key...\n');
          await callUnary(client.useKey.bind(client), { key: v.get('use') as string }, policy);
          return 0;
        default:
          io.stdout('==> Removing gossip encryption key...\n');
          await callUnary(client.removeKey.bind(client), { key: v.get('remove') as string }, policy);
          return 0;
      }
    } catch (err) {
      io.stderr(`Error: ${callError(err, address)}\n`);
      return 1;
    } finally {
      client.close();
    }
  },
};
