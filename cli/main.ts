/**
 * `consulate`: one binary for every role and every operator command, like `consul`. Flags follow
 * Go's flag package; exit codes follow Consul's CLI (mitchellh/cli): 0 success, 1 error, 127 for
 * an unknown command or none (after printing the command list).
 */
import { Command, CommandIo } from './command';
import { catalogCommand } from './commands/catalog';
import { eventCommand } from './commands/event';
import { forceLeaveCommand, joinCommand, leaveCommand } from './commands/join';
import { keygenCommand } from './commands/keygen';
import { keyringCommand } from './commands/keyring';
import { kvCommand } from './commands/kv';
import { lockCommand } from './commands/lock';
import { membersCommand } from './commands/members';
import { operatorCommand } from './commands/operator';
import { roleCommand } from './commands/role';
import { tlsCommand } from './commands/tls';
import { versionCommand } from './commands/version';
import { watchCommand } from './commands/watch';

export const commands: Record<string, Command> = {
  catalog: catalogCommand(roleCommand(() => require('../services/catalog/role').catalogRole, 'Runs a catalog (HTTP API on 8500, gRPC API on 8502)')),
  consensus: roleCommand(() => require('../services/consensus/role').consensusRole, 'Runs a consensus server (Raft and the KV store)'),
  event: eventCommand,
  'federation-router': roleCommand(() => require('../services/federation-router/role').federationRouterRole, 'Runs a federation router (network areas over mTLS on 8300)'),
  'force-leave': forceLeaveCommand,
  gossip: roleCommand(() => require('../services/gossip/role').gossipRole, 'Runs a gossip agent (SWIM membership, segments)'),
  join: joinCommand,
  keygen: keygenCommand,
  keyring: keyringCommand,
  kv: kvCommand,
  leave: leaveCommand,
  lock: lockCommand,
  members: membersCommand,
  operator: operatorCommand,
  tls: tlsCommand,
  version: versionCommand,
  watch: watchCommand,
};

export function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, command]) => `    ${name.padEnd(width)}    ${command.synopsis}`);
  return ['Usage: consulate [--version] [--help] <command> [<args>]', '', 'Available commands are:', ...lines].join('\n');
}

export async function main(argv: readonly string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '-v' || name === '-version' || name === '--version') return versionCommand.run([], io);
  if (name === '-h' || name === '-help' || name === '--help') {
    io.stdout(`${usage()}\n`);
    return 0;
  }
  const command = name === undefined ? undefined : commands[name];
  if (command === undefined) {
    io.stderr(`${usage()}\n`);
    return 127;
  }
  if (rest.length === 1 && ['-h', '-help', '--help'].includes(rest[0])) {
    io.stdout(`${command.help()}\n`);
    return 0;
  }
  return command.run(rest, io);
}
