/**
 * `consulate operator <subcommand>`: Consul's `consul operator` family. Today it holds `area`
 * (operator-area.ts), the network areas of reference/consul-compat.md §3.3.
 */
import { Command, commandGroup } from '../command';
import { operatorAreaCommand } from './operator-area';

const SUBCOMMANDS: Record<string, Command> = { area: operatorAreaCommand };

export const operatorCommand: Command = commandGroup({
  synopsis: 'Provides cluster-level tools for operators (network areas)',
  usage: 'Usage: consulate operator <subcommand> [options]',
  description: `Provides cluster-level tools for operators.`,
  subcommands: SUBCOMMANDS,
});
