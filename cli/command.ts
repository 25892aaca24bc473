/** A `consulate` subcommand, shaped like Consul's (mitchellh/cli): help text, synopsis, Run → exit code. */
export interface CommandIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export interface Command {
  /** One line for the command list. */
  readonly synopsis: string;
  /** The full -help text. */
  help(): string;
  /** Runs with the arguments after the command name; resolves with the exit code. */
  run(args: readonly string[], io: CommandIo): Promise<number>;
}
