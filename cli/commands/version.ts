import { parseFlags, HelpRequested, FlagError } from '../../services/lib/flags';
import { VERSION } from '../../services/lib/version';
import { Command } from '../command';

/** `consulate version`: as `consul version`, the version and what it speaks. */
export const versionCommand: Command = {
  synopsis: 'Prints the Consulate version',
  help: () => 'Usage: consulate version\n\n  Prints the version of this Consulate binary.',
  async run(args, io) {
    try {
      const { positionals } = parseFlags([], args);
      if (positionals.length > 0) throw new FlagError(`This command takes no arguments`);
    } catch (err) {
      if (err instanceof HelpRequested) {
        io.stdout(`${this.help()}\n`);
        return 0;
      }
      io.stderr(`${(err as Error).message}\n`);
      return 1;
    }
    io.stdout(`Consulate v${VERSION}\nProtocol 1 spoken by default (gRPC APIs consulate.*.v1)\nRuntime Node.js ${process.version}\n`);
    return 0;
  },
};
