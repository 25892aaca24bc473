/**
 * Role configuration from three sources, as Consul layers its agent config: built-in defaults,
 * then JSON config files (`-config=FILE`, repeatable, later files win), then environment variables
 * (`CONSULATE_<FLAG>`), then command-line flags. Every role declares one schema of fields; each
 * field names its JSON key, its flag, its default and its check, so -help, validation and error
 * messages all come from one place. Errors name the field in all three spellings and say the fix.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

import { FlagSpec, FlagValue, flagUsage, parseFlags } from './flags';

type KindValue = { string: string; int: number; bool: boolean; list: string[] };
type Kind = keyof KindValue;

export interface ConfigField<K extends Kind = Kind> {
  readonly kind: K;
  /** Where the value sits in a JSON config file: "datacenter", "ports.grpc". */
  readonly key: string;
  /** The flag name without the dash: "datacenter", "grpc-port". */
  readonly flag: string;
  /** One sentence: what it is for. */
  readonly usage: string;
  /** The value when no source sets it; `undefined` for a required field. */
  readonly default: KindValue[K] | undefined;
  /** Returns what is wrong and how to fix it, or undefined when the value is fine. */
  check?(value: KindValue[K]): string | undefined;
}

export type ConfigSchema = Record<string, ConfigField>;
export type ConfigOf<S extends ConfigSchema> = { [F in keyof S]: S[F] extends ConfigField<infer K> ? KindValue[K] : never };

export const field = {
  string: (spec: Omit<ConfigField<'string'>, 'kind'>): ConfigField<'string'> => ({ kind: 'string', ...spec }),
  int: (spec: Omit<ConfigField<'int'>, 'kind'>): ConfigField<'int'> => ({ kind: 'int', ...spec }),
  bool: (spec: Omit<ConfigField<'bool'>, 'kind'>): ConfigField<'bool'> => ({ kind: 'bool', ...spec }),
  list: (spec: Omit<ConfigField<'list'>, 'kind'>): ConfigField<'list'> => ({ kind: 'list', ...spec }),
};

/** Every problem found, one per line; the process prints it and exits 1. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export interface ConfigSources {
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly readFile?: (path: string) => string;
}

export interface LoadedConfig<S extends ConfigSchema> {
  readonly config: ConfigOf<S>;
  readonly positionals: readonly string[];
}

const CONFIG_FLAG: FlagSpec = { name: 'config', kind: 'list', usage: 'A JSON config file; repeatable, later files override earlier ones.' };
const MAX_CONFIG_FILE_BYTES = 1 << 20;

export function envName(field: ConfigField): string {
  return `CONSULATE_${field.flag.toUpperCase().replace(/-/g, '_')}`;
}

export function configFlagSpecs(schema: ConfigSchema): FlagSpec[] {
  const specs = Object.values(schema).map((f): FlagSpec => ({
    name: f.flag,
    kind: f.kind,
    usage: `${f.usage} [${f.key} / ${envName(f)}]`,
    ...(f.default === undefined || (Array.isArray(f.default) && f.default.length === 0) ? {} : { defaultText: JSON.stringify(f.default) }),
  }));
  return [CONFIG_FLAG, ...specs];
}

export function configUsage(schema: ConfigSchema): string {
  return flagUsage(configFlagSpecs(schema));
}

export function loadConfig<S extends ConfigSchema>(schema: S, sources: ConfigSources): LoadedConfig<S> {
  const fields = Object.entries(schema);
  const parsed = parseFlags(configFlagSpecs(schema), sources.args);
  const problems: string[] = [];
  const values = new Map<string, unknown>();
  for (const [name, f] of fields) values.set(name, f.default);

  const readFile = sources.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  for (const path of (parsed.values.get('config') as string[] | undefined) ?? []) {
    mergeFile(path, readFile, fields, values, problems);
  }
  const env = sources.env ?? {};
  for (const [name, f] of fields) {
    const raw = env[envName(f)];
    if (raw === undefined || raw === '') continue;
    const value = fromString(f, raw);
    if (value === undefined) problems.push(`${describe(f)}: environment value "${raw}" is not ${article(f.kind)}`);
    else values.set(name, value);
  }
  for (const [name, f] of fields) {
    const value: FlagValue | undefined = parsed.values.get(f.flag);
    if (value !== undefined) values.set(name, value);
  }

  for (const [name, f] of fields) {
    const value = values.get(name);
    if (value === undefined) {
      problems.push(`${describe(f)} is required: set it with -${f.flag}=..., ${envName(f)} or "${f.key}" in a config file`);
      continue;
    }
    const problem = f.check?.(value as never);
    if (problem !== undefined) problems.push(`${describe(f)}: ${problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: Object.fromEntries(values) as ConfigOf<S>, positionals: parsed.positionals };
}

function describe(f: ConfigField): string {
  return `-${f.flag} ("${f.key}")`;
}

function article(kind: Kind): string {
  return { string: 'a string', int: 'an integer', bool: 'a boolean (true or false)', list: 'a list of strings' }[kind];
}

function fromString(f: ConfigField, raw: string): unknown {
  switch (f.kind) {
    case 'string':
      return raw;
    case 'int':
      return /^[+-]?\d+$/.test(raw) && Number.isSafeInteger(Number(raw)) ? Number(raw) : undefined;
    case 'bool':
      return raw === 'true' || raw === '1' ? true : raw === 'false' || raw === '0' ? false : undefined;
    case 'list':
      return raw.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
  }
}

function mergeFile(path: string, readFile: (path: string) => string, fields: [string, ConfigField][], values: Map<string, unknown>, problems: string[]): void {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    problems.push(`config file ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the -config path`);
    return;
  }
  if (text.length > MAX_CONFIG_FILE_BYTES) {
    problems.push(`config file ${path}: larger than ${MAX_CONFIG_FILE_BYTES} bytes`);
    return;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    problems.push(`config file ${path}: not valid JSON (${(err as Error).message})`);
    return;
  }
  if (!isPlainObject(doc)) {
    problems.push(`config file ${path}: must hold a JSON object`);
    return;
  }
  const byKey = new Map(fields.map(([name, f]) => [f.key, [name, f] as const]));
  for (const [key, value] of flatten(doc)) {
    const entry = byKey.get(key);
    if (entry === undefined) {
      problems.push(`config file ${path}: unknown key "${key}" (known keys: ${[...byKey.keys()].sort().join(', ')})`);
      continue;
    }
    const [name, f] = entry;
    if (!hasKind(f.kind, value)) {
      problems.push(`config file ${path}: "${key}" must be ${article(f.kind)}, got ${JSON.stringify(value)}`);
      continue;
    }
    values.set(name, value);
  }
}

function flatten(doc: Record<string, unknown>, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, value] of Object.entries(doc)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    if (isPlainObject(value)) out.push(...flatten(value, path));
    else out.push([path, value]);
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasKind(kind: Kind, value: unknown): boolean {
  switch (kind) {
    case 'string':
      return typeof value === 'string';
    case 'int':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'bool':
      return typeof value === 'boolean';
    case 'list':
      return Array.isArray(value) && value.every((item) => typeof item === 'string');
  }
}

// Checks shared by the roles. Each returns the problem and its fix, in Consul's words where
// Consul has them.

const DATACENTER = /^[a-z0-9_-]+$/;
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

export const checks = {
  datacenter(value: string): string | undefined {
    if (value === '') return 'datacenter cannot be empty';
    if (!DATACENTER.test(value)) return 'datacenter can only contain lowercase alphanumeric, - or _ characters.';
    return undefined;
  },
  nodeName(value: string): string | undefined {
    if (!NODE_NAME.test(value)) return `node name "${value}" is not valid: use 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit`;
    return undefined;
  },
  ipAddress(value: string): string | undefined {
    if (isIP(value) === 0) return `"${value}" is not an IP address: give one address, e.g. 127.0.1.1 (not a host name or a port)`;
    return undefined;
  },
  port(value: number): string | undefined {
    if (value < 1 || value > 65535) return `port ${value} is out of range: use 1-65535`;
    return undefined;
  },
  hostPorts(values: string[]): string | undefined {
    for (const value of values) {
      const problem = hostPortProblem(value);
      if (problem !== undefined) return problem;
    }
    return undefined;
  },
  logLevel(value: string): string | undefined {
    if (!LOG_LEVELS.includes(value)) return `unknown log level "${value}": use one of ${LOG_LEVELS.join(', ')}`;
    return undefined;
  },
  nonEmpty(value: string): string | undefined {
    return value.trim() === '' ? 'cannot be empty' : undefined;
  },
};

function hostPortProblem(value: string): string | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d+)$/.exec(value);
  if (match === null) return `"${value}" is not host:port (e.g. 127.0.1.1:8310)`;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return `"${value}": port ${port} is out of range: use 1-65535`;
  return undefined;
}
