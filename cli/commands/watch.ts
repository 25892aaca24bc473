/**
 * `consulate watch -type=TYPE [options] [child...]`: Consul's `consul watch` (command/watch/
 * watch.go) over the catalog's HTTP API. Without a child it prints the current result as
 * indented JSON and exits, as Consul does; with one it runs the child on every change with the
 * result's JSON on stdin and CONSUL_INDEX in its environment, until the child fails (exit 1) or
 * a SIGINT or SIGTERM arrives (exit 0).
 */
import { formatGoDuration } from '../../services/lib/go-text';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { Command, CommandIo, parseCommandFlags } from '../command';
import { marshal, marshalIndent } from '../go-json';
import { HTTP_FLAGS, HttpApi } from '../http-api';
import { errorText } from '../kv-api';
import { Timing, realTiming } from '../lock-session';
import { SignalSource, startChild } from '../subprocess';
import { WatchParams, parseWatch, runPlan } from '../watch-plan';

const FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'type', kind: 'string', usage: 'Specifies the watch type. One of key, keyprefix, services, nodes, service, checks or event.' },
  { name: 'key', kind: 'string', usage: "Specifies the key to watch. Only for 'key' type." },
  { name: 'prefix', kind: 'string', usage: "Specifies the key prefix to watch. Only for 'keyprefix' type." },
  { name: 'service', kind: 'string', usage: "Specifies the service to watch. Required for 'service' type, optional for 'checks' type." },
  { name: 'tag', kind: 'list', usage: "Specifies the service tag(s) to filter on. Optional for 'service' and 'checks' type." },
  { name: 'passingonly', kind: 'string', usage: "Specifies if only hosts passing all checks are displayed. Optional for 'service' type, must be one of `[true|false]`. Defaults false." },
  { name: 'state', kind: 'string', usage: "Specifies the states to watch. Optional for 'checks' type." },
  { name: 'name', kind: 'string', usage: "Specifies an event name to watch. Only for 'event' type." },
  { name: 'shell', kind: 'bool', usage: 'Use a shell to run the command (can set a custom shell via the SHELL environment variable).', defaultText: 'true' },
];

const HELP = `Usage: consulate watch [options] [child...]

  Watches for changes in a given data view from the catalog. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.

Options:

${flagUsage(FLAGS)}`;

/** strconv.ParseBool. */
function parseGoBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

/** The watch parameters from the flags: only those set, as the command builds its map. */
export function watchParams(values: ReadonlyMap<string, unknown>): WatchParams | { error: string } {
  const text = (name: string) => {
    const value = values.get(name) as string | undefined;
    return value === undefined || value === '' ? undefined : value;
  };
  const tags = (values.get('tag') as string[] | undefined)?.filter((tag) => tag !== '');
  let passingonly: boolean | undefined;
  const passing = text('passingonly');
  if (passing !== undefined) {
    passingonly = parseGoBool(passing);
    if (passingonly === undefined) return { error: `Failed to parse passingonly flag: strconv.ParseBool: parsing "${passing}": invalid syntax` };
  }
  return {
    type: text('type') ?? '',
    key: text('key'),
    prefix: text('prefix'),
    service: text('service'),
    tag: tags !== undefined && tags.length > 0 ? tags : undefined,
    passingonly,
    state: text('state'),
    stale: values.get('stale') === true ? true : undefined,
    name: text('name'),
  };
}

export interface WatchEnvironment {
  readonly signals: SignalSource;
  readonly timing: Timing;
  /** hclog's timestamp for the plan's error lines. */
  readonly now: () => Date;
}

const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export function makeWatchCommand(environment: () => WatchEnvironment): Command {
  return {
    synopsis: 'Watch for changes in the catalog',
    help: () => HELP,
    async run(args, io) {
      const parsed = parseCommandFlags(FLAGS, HELP, args, io);
      if (typeof parsed === 'number') return parsed;
      const params = watchParams(parsed.values);
      if ('error' in params) {
        io.stderr(`${params.error}\n`);
        return 1;
      }
      if (params.type === '') {
        io.stderr(`Watch type must be specified\n\n${HELP}\n`);
        return 1;
      }
      // -stale is the watch's `stale` parameter, which the plan's reads carry themselves.
      const api = new HttpApi(parsed.values, io.env, undefined, false);
      const watcher = parseWatch(api, params);
      if ('error' in watcher) {
        io.stderr(`${watcher.error}\n`);
        return 1;
      }
      try {
        await api.request('GET', '/v1/agent/self');
      } catch (err) {
        io.stderr(`Error querying Consul agent: ${errorText(err)}\n`);
        return 1;
      }

      const env = environment();
      const stop = new AbortController();
      const onShutdown = () => stop.abort();
      for (const signal of SHUTDOWN_SIGNALS) env.signals.on(signal, onShutdown);
      let errExit = 0;
      const child = parsed.positionals;
      const shell = parsed.values.get('shell') !== false;
      const handler =
        child.length === 0
          ? async (_index: bigint, result: unknown) => {
              io.stdout(`${marshalIndent(result)}\n`);
              return false;
            }
          : async (index: bigint, result: unknown) => {
              const ok = await runHandler(child, shell, index, result, io, env.signals);
              if (!ok) errExit = 1;
              return ok;
            };
      // A shutdown ends the command at once, a running handler or not (Consul: os.Exit(0)).
      const shutDown = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
      try {
        await Promise.race([
          shutDown,
          runPlan({
            watcher,
            handler,
            stop: stop.signal,
            timing: env.timing,
            onError: (err, retryMs) => io.stderr(`${hclogTime(env.now())} [ERROR] watch: Watch errored: type=${params.type} error=${JSON.stringify(errorText(err))} retry=${formatGoDuration(retryMs * 1e6)}\n`),
          }),
        ]);
      } finally {
        for (const signal of SHUTDOWN_SIGNALS) env.signals.off(signal, onShutdown);
      }
      return stop.signal.aborted ? 0 : errExit;
    },
  };
}

export const watchCommand: Command = makeWatchCommand(() => ({ signals: process, timing: realTiming, now: () => new Date() }));

/** One run of the handler: true when it exited 0. */
async function runHandler(child: readonly string[], shell: boolean, index: bigint, result: unknown, io: CommandIo, signals: SignalSource): Promise<boolean> {
  const started = await startChild({ args: child, shell, extraEnv: { CONSUL_INDEX: String(index) }, stdin: Buffer.from(`${marshal(result)}\n`), io, signals });
  if ('startError' in started) {
    io.stderr(`Error starting handler: ${started.startError}\n`);
    return false;
  }
  const exit = await started.exited;
  if (exit.error !== undefined) {
    io.stderr(`Error executing handler: ${exit.error}\n`);
    return false;
  }
  return true;
}

/** hclog's default time format, "2006-01-02T15:04:05.000Z0700", in local time. */
function hclogTime(date: Date): string {
  const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, '0');
  const offset = -date.getTimezoneOffset();
  const zone = offset === 0 ? 'Z' : `${offset > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(offset) / 60))}${pad(Math.abs(offset) % 60)}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}${zone}`;
}
