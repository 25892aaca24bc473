/**
 * The child processes of `consulate lock` and the handlers of `consulate watch`, started as
 * Consul starts them (agent.ExecScript / agent.ExecSubprocess, agent.ForwardSignals): through
 * `$SHELL -c` (default /bin/sh) with the arguments joined by spaces, or the arguments as they
 * are; the signals an operator sends to consulate are passed on to the child; a failed child is
 * described in Go's words (`exit status 3`, `signal: terminated`).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';

import { CommandIo } from './command';

/** agent/signal_unix.go forwardSignals, less SIGUSR1, which Node keeps for its inspector. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'];

/** How long a child's copied output may trail its exit. */
const OUTPUT_GRACE_MS = 500;

/** Where a command hears the operator's signals: the process, or a test's emitter. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

export interface ChildOptions {
  /** The command line after the flags; joined with spaces and run by the shell when `shell`. */
  readonly args: readonly string[];
  readonly shell: boolean;
  /** Added to the environment the command itself got (CONSUL_LOCK_HELD, CONSUL_INDEX). */
  readonly extraEnv: Readonly<Record<string, string>>;
  /** The child's stdin: none (/dev/null), consulate's own, or these bytes. */
  readonly stdin: 'none' | 'inherit' | Buffer;
  readonly io: CommandIo;
  readonly signals: SignalSource;
}

/** How a child ended: a Go-style error text when it failed, undefined when it exited 0. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly error?: string;
}

export interface RunningChild {
  readonly pid: number | undefined;
  readonly exited: Promise<ChildExit>;
  kill(signal: NodeJS.Signals): boolean;
}

/** Go's syscall.Signal.String() for the signals a child is likely to die of. */
const GO_SIGNAL_NAMES: Partial<Record<NodeJS.Signals, string>> = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace/breakpoint trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user defined signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm clock',
  SIGTERM: 'terminated',
};

/** exec.ExitError's text: `exit status N` or `signal: killed`. */
export function goExitText(code: number | null, signal: NodeJS.Signals | null): string | undefined {
  if (signal !== null) return `signal: ${GO_SIGNAL_NAMES[signal] ?? signal}`;
  if (code !== null && code !== 0) return `exit status ${code}`;
  return undefined;
}

/** The program and its arguments, as ExecScript or ExecSubprocess builds them. */
export function childCommand(args: readonly string[], shell: boolean, env: NodeJS.ProcessEnv): { file: string; argv: string[] } | { error: string } {
  if (shell) return { file: env.SHELL !== undefined && env.SHELL !== '' ? env.SHELL : '/bin/sh', argv: ['-c', args.join(' ')] };
  if (args.length === 0) return { error: 'need an executable to run' };
  return { file: args[0], argv: args.slice(1) };
}

/**
 * Starts the child; resolves once it runs (or with the start error's text, Go's words). Output
 * goes to consulate's own stdout and stderr: inherited when the command owns the process's
 * stdio, else copied to `io`.
 */
export function startChild(options: ChildOptions): Promise<RunningChild | { startError: string }> {
  const command = childCommand(options.args, options.shell, options.io.env);
  if ('error' in command) return Promise.resolve({ startError: command.error });
  const inherit = options.io.stdio === 'inherit';
  const stdin = options.stdin === 'none' ? 'ignore' : options.stdin === 'inherit' ? 'inherit' : 'pipe';
  let child: ChildProcess;
  try {
    child = spawn(command.file, command.argv, { env: { ...options.io.env, ...options.extraEnv }, stdio: [stdin, inherit ? 'inherit' : 'pipe', inherit ? 'inherit' : 'pipe'] });
  } catch (err) {
    return Promise.resolve({ startError: (err as Error).message });
  }
  if (!inherit) {
    for (const [stream, write] of [
      [child.stdout, options.io.stdout],
      [child.stderr, options.io.stderr],
    ] as const) {
      const decoder = new StringDecoder('utf8');
      stream?.on('data', (chunk: Buffer) => write(decoder.write(chunk)));
      stream?.on('end', () => {
        const rest = decoder.end();
        if (rest !== '') write(rest);
      });
    }
  }
  if (Buffer.isBuffer(options.stdin)) {
    // A handler that does not read its input must not fail the write.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.stdin);
  }

  const forward = (signal: NodeJS.Signals) => () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const forwarders = FORWARDED_SIGNALS.map((signal) => [signal, forward(signal)] as const);
  return new Promise((resolve) => {
    let started = false;
    const exited = new Promise<ChildExit>((resolveExit) => {
      child.once('exit', (code, signal) => {
        for (const [s, listener] of forwarders) options.signals.off(s, listener);
        const result = { code, signal, error: goExitText(code, signal) };
        if (inherit) return resolveExit(result);
        // The copied output ends with the child's, unless a process it left behind still holds
        // the pipes (a shell killed before its own child): then it is cut after a short grace.
        const streams = [child.stdout, child.stderr].filter((stream) => stream !== null && !stream.closed);
        let open = streams.length;
        let finished = false;
        const done = () => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          for (const stream of streams) stream?.destroy();
          resolveExit(result);
        };
        const timer = setTimeout(done, OUTPUT_GRACE_MS);
        if (open === 0) return done();
        for (const stream of streams) stream?.once('close', () => --open === 0 && done());
      });
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (started) return;
      const text = err.code === 'ENOENT' ? `exec: "${command.file}": executable file not found in $PATH` : err.code === 'EACCES' ? `fork/exec ${command.file}: permission denied` : err.message;
      resolve({ startError: text });
    });
    child.once('spawn', () => {
      started = true;
      for (const [s, listener] of forwarders) options.signals.on(s, listener);
      resolve({ pid: child.pid, exited, kill: (signal) => child.kill(signal) });
    });
  });
}
