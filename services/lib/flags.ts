/**
 * Command-line flags with the semantics of Go's `flag` package, which Consul's CLI uses, so our
 * commands take exactly what `consul` takes: single-dash long names (`-peer-datacenter=dc2`),
 * `--name` too, `-name value` for non-booleans, booleans only as `-name` or `-name=false`,
 * parsing stops at the first positional argument or at `--`.
 */

export type FlagKind = 'string' | 'int' | 'bool' | 'list';

export interface FlagSpec {
  /** The name without dashes, e.g. "peer-datacenter". */
  readonly name: string;
  readonly kind: FlagKind;
  /** One sentence for -help. */
  readonly usage: string;
  /** The default as -help shows it; omitted when there is none. */
  readonly defaultText?: string;
}

export type FlagValue = string | number | boolean | string[];

export interface ParsedFlags {
  /** Only the flags that were given, by name; a list flag holds every value in order. */
  readonly values: ReadonlyMap<string, FlagValue>;
  /** What follows the flags. */
  readonly positionals: readonly string[];
}

/** A flag the command line got wrong; the message is Go's `flag` package's text. */
export class FlagError extends Error {
  override readonly name = 'FlagError';
}

/** `-h`, `-help` or `--help` was given (and no flag of that name is defined). */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
  constructor() {
    super('help requested');
  }
}

const MAX_ARGS = 4096;

export function parseFlags(specs: readonly FlagSpec[], args: readonly string[]): ParsedFlags {
  if (args.length > MAX_ARGS) throw new FlagError(`too many arguments (${args.length}; at most ${MAX_ARGS})`);
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  const values = new Map<string, FlagValue>();
  let i = 0;
  while (i < args.length) {
    const arg = args[i];
    if (arg.length < 2 || arg[0] !== '-') break;
    i++;
    if (arg === '--') break;
    const body = arg[1] === '-' ? arg.slice(2) : arg.slice(1);
    if (body.length === 0 || body[0] === '-' || body[0] === '=') throw new FlagError(`bad flag syntax: ${arg}`);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    const spec = byName.get(name);
    if (spec === undefined) {
      if (name === 'h' || name === 'help') throw new HelpRequested();
      throw new FlagError(`flag provided but not defined: -${name}`);
    }
    if (spec.kind === 'bool') {
      values.set(name, inline === undefined ? true : parseBool(name, inline));
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (i >= args.length) throw new FlagError(`flag needs an argument: -${name}`);
      raw = args[i++];
    }
    values.set(name, convert(spec, raw, values.get(name)));
  }
  return { values, positionals: args.slice(i) };
}

function parseBool(name: string, raw: string): boolean {
  // Go's strconv.ParseBool.
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false;
  throw new FlagError(`invalid boolean value "${raw}" for -${name}: parse error`);
}

function convert(spec: FlagSpec, raw: string, previous: FlagValue | undefined): FlagValue {
  switch (spec.kind) {
    case 'string':
      return raw;
    case 'int': {
      if (!/^[+-]?\d+$/.test(raw)) throw new FlagError(`invalid value "${raw}" for flag -${spec.name}: parse error`);
      const value = Number(raw);
      if (!Number.isSafeInteger(value)) throw new FlagError(`invalid value "${raw}" for flag -${spec.name}: value out of range`);
      return value;
    }
    case 'list':
      return [...((previous as string[] | undefined) ?? []), raw];
    case 'bool':
      return parseBool(spec.name, raw);
  }
}

/** The flag list as Go's `PrintDefaults` lays it out, sorted by name. */
export function flagUsage(specs: readonly FlagSpec[]): string {
  const lines: string[] = [];
  for (const spec of [...specs].sort((a, b) => a.name.localeCompare(b.name))) {
    const kind = spec.kind === 'bool' ? '' : spec.kind === 'list' ? ' <value>' : ` <${spec.kind}>`;
    lines.push(`  -${spec.name}${kind}`);
    const dflt = spec.defaultText === undefined ? '' : ` (default ${spec.defaultText})`;
    lines.push(`      ${spec.usage}${dflt}`);
  }
  return lines.join('\n');
}
