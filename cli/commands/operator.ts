/**
 * `consulate operator <subcommand>`: Consul's `consul operator` family. Today it holds `area`
 * (operator-area.ts), the network areas of reference/consul-compat.md §3.3.
 */
import { Command } from '../command';
import { operatorAreaCommand } from './operator-area';

const SUBCOMMANDS: Record<string, Command> = { area: operatorAreaCommand };

const HELP = `Usage: consulate operator <subcommand> [options]

  Provides cluster-level tools for operators.

Subcommands:

${Object.entries(SUBCOMMANDS)
  .map(([name, c]) => `    ${name.padEnd(8)} ${c.synopsis}`)
  .join('\n')}`;

export const operatorCommand: Command = {
  synopsis: 'Provides cluster-level tools for operators (network areas)',
  help: () => HELP,
  async run(args, io) {
    const sub = args.length === 0 ? undefined : SUBCOMMANDS[args[0]];
    if (sub === undefined) {
      io.stderr(`${HELP}\n`);
      return 1;
    }
    return sub.run(args.slice(1), io);
  },
};
