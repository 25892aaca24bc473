import { FlagSpec, HelpRequested, parseFlags } from '../services/lib/flags';

/** A `consulate` subcommand, shaped like Consul's (mitchellh/cli): help text, synopsis, Run → exit code. */
export interface CommandIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /**
   * 'inherit' when stdout and stderr above are the process's own (bin/consulate): the children
   * of `lock` and `watch` then write to them directly, as Consul's do; otherwise their output is
   * copied through the functions above.
   */
  readonly stdio?: 'inherit';
}

export interface Command {
  /** One line for the command list. */
  readonly synopsis: string;
  /** The full -help text. */
  help(): string;
  /** Runs with the arguments after the command name; resolves with the exit code. */
  run(args: readonly string[], io: CommandIo): Promise<number>;
}

/** Flags and arguments of a command, parsed. */
export interface ParsedCommand {
  readonly values: ReadonlyMap<string, unknown>;
  readonly positionals: readonly string[];
}

/**
 * Parses a command's flags as Consul's commands do: `-help` prints the help and exits 0, a bad
 * flag prints the error and exits 1. Returns the exit code instead of the flags when it must stop.
 */
export function parseCommandFlags(flags: FlagSpec[], help: string, args: readonly string[], io: CommandIo): ParsedCommand | number {
  try {
    return parseFlags(flags, args);
  } catch (err) {
    if (err instanceof HelpRequested) {
      io.stdout(`${help}\n`);
      return 0;
    }
    io.stderr(`${(err as Error).message}\n`);
    return 1;
  }
}

/**
 * A command made of subcommands (`consulate kv get|put|delete`): the help lists them under
 * `usage` and `description`; no subcommand, or an unknown one, prints the help and exits 1.
 */
export function commandGroup(options: { synopsis: string; usage: string; description: string; subcommands: Readonly<Record<string, Command>> }): Command {
  const help = `${options.usage}

  ${options.description}

Subcommands:

${Object.entries(options.subcommands)
  .map(([name, c]) => `    ${name.padEnd(8)} ${c.synopsis}`)
  .join('\n')}`;
  return {
    synopsis: options.synopsis,
    help: () => help,
    async run(args, io) {
      const sub = args.length === 0 ? undefined : options.subcommands[args[0]];
      if (sub === undefined) {
        io.stderr(`${help}\n`);
        return 1;
      }
      return sub.run(args.slice(1), io);
    },
  };
}
