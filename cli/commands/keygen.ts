/** `consulate keygen`: as `consul keygen`, a new 32-byte gossip encryption key in base64. */
import { generateKey } from '../../services/gossip/keyring';
import { Command, parseCommandFlags } from '../command';

const HELP = `Usage: consulate keygen

  Generates a new encryption key that can be used to configure the agent to encrypt traffic.
  The output of this command is already in the proper format that the agent expects (-encrypt).`;

export const keygenCommand: Command = {
  synopsis: 'Generates a new encryption key',
  help: () => HELP,
  async run(args, io) {
    const parsed = parseCommandFlags([], HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length > 0) {
      io.stderr('This command takes no arguments\n');
      return 1;
    }
    io.stdout(`${generateKey()}\n`);
    return 0;
  },
};
