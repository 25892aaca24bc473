/**
 * `consulate lock [options] PREFIX CHILD...`: Consul's `consul lock` (command/lock/lock.go). It
 * takes the lock `<prefix>/.lock` (or, with -n above 1, a slot of a semaphore under the prefix)
 * through the catalog's HTTP API, runs the child while it holds it, then releases and cleans up.
 * A lost lock (the session invalidated, the key taken away) or a shutdown signal stops the child:
 * SIGTERM, then SIGKILL after 5 s. Exit codes as Consul's: 0, also when the child failed, unless
 * -child-exit-code (then 2 for a failed child); 1 when the lock could not be set up, acquired or
 * released.
 */
import { posix } from 'node:path';

import { parseGoDuration } from '../../services/lib/go-text';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { Command, CommandIo, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi } from '../http-api';
import { errorText } from '../kv-api';
import { Held, Lock, LockLike } from '../kv-lock';
import { DEFAULT_SEMAPHORE_KEY, Semaphore } from '../kv-semaphore';
import { Timing, realTiming } from '../lock-session';
import { RunningChild, SignalSource, startChild } from '../subprocess';

/** lockKillGracePeriod: SIGTERM, then this long, then SIGKILL. */
export const LOCK_KILL_GRACE_MS = 5_000;
/** defaultMonitorRetry and defaultMonitorRetryTime of the command (the api's is 2 s). */
export const DEFAULT_MONITOR_RETRY = 3;
export const DEFAULT_MONITOR_RETRY_MS = 1_000;

const FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'child-exit-code', kind: 'bool', usage: "Exit 2 if the child process exited with an error if this is true, otherwise this doesn't propagate an error from the child. The default value is false." },
  { name: 'n', kind: 'int', usage: 'Optional limit on the number of concurrent lock holders. The underlying implementation switches from a lock to a semaphore when the value is greater than 1.', defaultText: '1' },
  { name: 'monitor-retry', kind: 'int', usage: 'Number of times to retry if the catalog returns a 500 error (or cannot be reached) while monitoring the lock, with a 1s wait between retries. 0 disables retries.', defaultText: '3' },
  { name: 'name', kind: 'string', usage: 'Optional name to associate with the lock session. If not provided, one is generated based on the provided child command.' },
  { name: 'pass-stdin', kind: 'bool', usage: 'Pass stdin to the child process.' },
  { name: 'shell', kind: 'bool', usage: 'Use a shell to run the command (can set a custom shell via the SHELL environment variable).', defaultText: 'true' },
  { name: 'timeout', kind: 'string', usage: 'Maximum amount of time to wait to acquire the lock, specified as a duration like "1s" or "3h". The default value is 0 (wait forever).' },
  { name: 'try', kind: 'string', usage: 'DEPRECATED. Use -timeout instead.' },
  { name: 'verbose', kind: 'bool', usage: 'Enable verbose (debugging) output.' },
];

const HELP = `Usage: consulate lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process
  when successful. The child process can assume the lock is held while it
  executes. If the lock is lost or communication is disrupted the child
  process will be sent a SIGTERM signal and given time to gracefully exit.
  After the grace period expires the process will be hard terminated.

  When -n=1, only a single lock holder or leader exists providing mutual
  exclusion. Setting a higher value switches to a semaphore allowing multiple
  holders to coordinate.

  The prefix provided must have write privileges.

Options:

${flagUsage(FLAGS)}`;

/** The command's settings after Consul's checks, in Consul's order. */
export interface LockSettings {
  readonly prefix: string;
  readonly child: readonly string[];
  readonly limit: number;
  readonly name: string;
  readonly timeoutMs: number;
  readonly monitorRetry: number;
  readonly passStdin: boolean;
  readonly shell: boolean;
  readonly verbose: boolean;
  readonly propagateChildCode: boolean;
}

/** Parses and checks the arguments; the settings, or the error text to print (exit 1). */
export function lockSettings(values: ReadonlyMap<string, unknown>, positionals: readonly string[]): LockSettings | { error: string } {
  const limit = (values.get('n') as number | undefined) ?? 1;
  if (limit <= 0) return { error: 'Lock holder limit must be positive' };
  if (positionals.length < 2) return { error: 'Key prefix and child command must be specified' };
  const prefix = positionals[0].startsWith('/') ? positionals[0].slice(1) : positionals[0];
  // -timeout and its deprecated spelling -try set the same duration; the later one wins.
  let timeoutMs = 0;
  for (const name of ['try', 'timeout']) {
    const text = values.get(name) as string | undefined;
    if (text === undefined) continue;
    const parsed = parseGoDuration(text);
    if (parsed.error !== undefined) return { error: `invalid value "${text}" for flag -${name}: parse error` };
    timeoutMs = parsed.ns / 1e6;
  }
  if (timeoutMs < 0) return { error: 'Timeout must be positive' };
  const child = positionals.slice(1);
  const name = (values.get('name') as string | undefined) || `Consul lock for '${child.join(' ')}' at '${prefix}'`;
  const monitorRetry = (values.get('monitor-retry') as number | undefined) ?? DEFAULT_MONITOR_RETRY;
  if (monitorRetry < 0) return { error: "Number for 'monitor-retry' must be >= 0" };
  return {
    prefix,
    child,
    limit,
    name,
    timeoutMs,
    monitorRetry,
    passStdin: values.get('pass-stdin') === true,
    shell: values.get('shell') !== false,
    verbose: values.get('verbose') === true,
    propagateChildCode: values.get('child-exit-code') === true,
  };
}

/** What the command needs from the world besides the HTTP API; tests pass their own. */
export interface LockEnvironment {
  readonly signals: SignalSource;
  readonly timing: Timing;
}

const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export function makeLockCommand(environment: () => LockEnvironment): Command {
  return {
    synopsis: 'Execute a command holding a lock',
    help: () => HELP,
    async run(args, io) {
      const parsed = parseCommandFlags(FLAGS, HELP, args, io);
      if (typeof parsed === 'number') return parsed;
      const settings = lockSettings(parsed.values, parsed.positionals);
      if ('error' in settings) {
        io.stderr(`${settings.error}\n`);
        return 1;
      }
      const env = environment();
      // Consul's ShutdownCh: SIGINT or SIGTERM stops the acquisition, or the child.
      const shutdown = new AbortController();
      const onShutdown = () => shutdown.abort();
      for (const signal of SHUTDOWN_SIGNALS) env.signals.on(signal, onShutdown);
      try {
        // -stale does not reach the lock's reads: its monitor reads with ?consistent (as api.Lock).
        return await runLocked(new HttpApi(parsed.values, io.env, undefined, false), settings, io, env, shutdown.signal);
      } finally {
        for (const signal of SHUTDOWN_SIGNALS) env.signals.off(signal, onShutdown);
      }
    },
  };
}

export const lockCommand: Command = makeLockCommand(() => ({ signals: process, timing: realTiming }));

async function runLocked(api: HttpApi, settings: LockSettings, io: CommandIo, env: LockEnvironment, shutdown: AbortSignal): Promise<number> {
  const info = (text: string) => settings.verbose && io.stdout(`${text}\n`);
  const error = (text: string) => io.stderr(`${text}\n`);

  try {
    await api.request('GET', '/v1/agent/self');
  } catch (err) {
    error(`Error querying Consul agent: ${errorText(err)}`);
    return 1;
  }

  const oneshot = settings.timeoutMs > 0;
  let lock: LockLike;
  try {
    if (settings.limit === 1) {
      const key = posix.join(settings.prefix, DEFAULT_SEMAPHORE_KEY);
      info(`Setting up lock at path: ${key}`);
      lock = new Lock(api, { key, sessionName: settings.name, monitorRetries: settings.monitorRetry, monitorRetryMs: DEFAULT_MONITOR_RETRY_MS, lockTryOnce: oneshot, lockWaitMs: oneshot ? settings.timeoutMs : undefined }, env.timing);
    } else {
      info(`Setting up semaphore (limit ${settings.limit}) at prefix: ${settings.prefix}`);
      lock = new Semaphore(api, { prefix: settings.prefix, limit: settings.limit, sessionName: settings.name, monitorRetries: settings.monitorRetry, monitorRetryMs: DEFAULT_MONITOR_RETRY_MS, tryOnce: oneshot, waitMs: oneshot ? settings.timeoutMs : undefined }, env.timing);
    }
  } catch (err) {
    error(`Lock setup failed: ${errorText(err)}`);
    return 1;
  }

  info('Attempting lock acquisition');
  let held: Held | undefined;
  try {
    held = await lock.acquire(shutdown);
  } catch (err) {
    error(`Lock acquisition failed: ${errorText(err)}`);
    return 1;
  }
  if (held === undefined) {
    error('Shutdown triggered or timeout during lock acquisition');
    return 1;
  }

  let childCode = 0;
  if (shutdown.aborted) {
    error('Shutdown triggered during lock acquisition');
  } else {
    info('Starting handler');
    if (settings.passStdin) info('Stdin passed to handler process');
    const started = await startChild({ args: settings.child, shell: settings.shell, extraEnv: { CONSUL_LOCK_HELD: 'true' }, stdin: settings.passStdin ? 'inherit' : 'none', io, signals: env.signals });
    if ('startError' in started) {
      error(`Error starting handler: ${started.startError}`);
      childCode = 2;
      info('Child terminated, releasing lock');
    } else {
      const outcome = await firstOf(started, held.lost, shutdown);
      if (outcome === 'exited') {
        const exit = await started.exited;
        if (exit.error !== undefined) {
          error(`Error running handler: ${exit.error}`);
          childCode = 2;
        }
        info('Child terminated, releasing lock');
      } else {
        info(outcome === 'shutdown' ? 'Shutdown triggered, killing child' : 'Lock lost, killing child');
        await killChild(started, info, env.timing);
      }
    }
  }

  try {
    await lock.release();
  } catch (err) {
    error(`Lock release failed: ${errorText(err)}`);
    return 1;
  }
  try {
    await lock.destroy();
    info('Cleanup succeeded');
  } catch (err) {
    if (errorText(err) !== lock.inUseError) {
      error(`Lock cleanup failed: ${errorText(err)}`);
      return 1;
    }
    info('Cleanup aborted, lock in use');
  }
  return settings.propagateChildCode ? childCode : 0;
}

/** Which comes first: the child's exit, the lock's loss, or a shutdown signal. */
function firstOf(child: RunningChild, lost: AbortSignal, shutdown: AbortSignal): Promise<'exited' | 'lost' | 'shutdown'> {
  return new Promise((resolve) => {
    const onLost = () => resolve('lost');
    const onShutdown = () => resolve('shutdown');
    const cleanup = () => {
      lost.removeEventListener('abort', onLost);
      shutdown.removeEventListener('abort', onShutdown);
    };
    void child.exited.then(() => {
      cleanup();
      resolve('exited');
    });
    if (shutdown.aborted) return onShutdown();
    if (lost.aborted) return onLost();
    lost.addEventListener('abort', onLost, { once: true });
    shutdown.addEventListener('abort', onShutdown, { once: true });
  });
}

/** killChild: SIGTERM, the grace period, then SIGKILL. */
async function killChild(child: RunningChild, info: (text: string) => void, timing: Timing): Promise<void> {
  info(`Terminating child pid ${child.pid}`);
  child.kill('SIGTERM');
  const stopWaiting = new AbortController();
  const exitedInTime = await Promise.race([child.exited.then(() => true), timing.sleep(LOCK_KILL_GRACE_MS, stopWaiting.signal).then(() => false)]);
  stopWaiting.abort();
  if (exitedInTime) {
    info('Child terminated');
    return;
  }
  info(`Child did not exit after grace period of ${LOCK_KILL_GRACE_MS / 1000}s`);
  info(`Killing child pid ${child.pid}`);
  child.kill('SIGKILL');
  await child.exited;
}
