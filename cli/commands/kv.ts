/**
 * `consulate kv get|put|delete`: Consul's `consul kv` commands (command/kv/*) over the catalog's
 * HTTP API, with their flags, output ("Success! Data written to: KEY") and exit codes.
 */
import { readFileSync } from 'node:fs';

import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { Command, CommandIo, commandGroup, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi } from '../http-api';

interface KvPair {
  readonly Key: string;
  readonly CreateIndex: number;
  readonly ModifyIndex: number;
  readonly LockIndex: number;
  readonly Flags: number;
  readonly Session?: string;
  readonly Value: string | null;
}

function valueOf(pair: KvPair, base64: boolean): string {
  const bytes = Buffer.from(pair.Value ?? '', 'base64');
  return base64 ? bytes.toString('base64') : bytes.toString('utf8');
}

/** Go's tabwriter (padding 6) over the pair's fields, as `consul kv get -detailed`. */
function detailed(pair: KvPair, base64: boolean): string {
  const rows: [string, string][] = [
    ['CreateIndex', String(pair.CreateIndex)],
    ['Flags', String(pair.Flags)],
    ['Key', pair.Key],
    ['LockIndex', String(pair.LockIndex)],
    ['ModifyIndex', String(pair.ModifyIndex)],
    ['Session', pair.Session === undefined || pair.Session === '' ? '-' : pair.Session],
    ['Value', valueOf(pair, base64)],
  ];
  return rows.map(([name, value]) => `${name.padEnd('ModifyIndex'.length + 6)}${value}`).join('\n');
}

/** Consul strips one leading "/": KV keys never start with it. */
function keyArgument(positionals: readonly string[], io: CommandIo, expected: string): string | number {
  if (positionals.length > 1) {
    io.stderr(`Too many arguments (expected ${expected}, got ${positionals.length})\n`);
    return 1;
  }
  const key = positionals[0] ?? '';
  return key.startsWith('/') ? key.slice(1) : key;
}

const GET_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'base64', kind: 'bool', usage: 'Base64 encode the value.' },
  { name: 'detailed', kind: 'bool', usage: 'Provide additional metadata about the key in addition to the value, such as the ModifyIndex and flags.' },
  { name: 'keys', kind: 'bool', usage: 'List keys which start with the given prefix, but not their values.' },
  { name: 'recurse', kind: 'bool', usage: 'Recursively look at all keys prefixed with the given path.' },
  { name: 'separator', kind: 'string', usage: 'String to use as a separator between keys, with -keys.', defaultText: '"/"' },
];
const GET_HELP = `Usage: consulate kv get [options] [KEY_OR_PREFIX]

  Retrieves the value from the key-value store at the given key name. If no key exists with that
  name, an error is returned.

Options:

${flagUsage(GET_FLAGS)}`;

const getCommand: Command = {
  synopsis: 'Retrieves or lists data from the KV store',
  help: () => GET_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(GET_FLAGS, GET_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const key = keyArgument(parsed.positionals, io, '1');
    if (typeof key === 'number') return key;
    const v = parsed.values;
    const recurse = v.get('recurse') === true;
    const keysOnly = v.get('keys') === true;
    if (key === '' && !(recurse || keysOnly)) {
      io.stderr('Error! Missing KEY argument\n');
      return 1;
    }
    const api = new HttpApi(v, io.env);
    const path = `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
    const base64 = v.get('base64') === true;
    try {
      if (keysOnly) {
        const { body, status } = await api.request<string[]>('GET', path, { query: { keys: '', separator: (v.get('separator') as string | undefined) ?? '/' }, allow404: true });
        if (status !== 404) for (const k of body) io.stdout(`${k}\n`);
        return 0;
      }
      if (recurse) {
        const { body, status } = await api.request<KvPair[]>('GET', path, { query: { recurse: '' }, allow404: true });
        const pairs = status === 404 ? [] : body;
        pairs.forEach((pair, i) => {
          if (v.get('detailed') === true) io.stdout(`${detailed(pair, base64)}\n${i < pairs.length - 1 ? '\n' : ''}`);
          else io.stdout(`${pair.Key}:${valueOf(pair, base64)}\n`);
        });
        return 0;
      }
      const { body, status } = await api.request<KvPair[]>('GET', path, { allow404: true });
      if (status === 404 || body.length === 0) {
        io.stderr(`Error! No key exists at: ${key}\n`);
        return 1;
      }
      io.stdout(`${v.get('detailed') === true ? detailed(body[0], base64) : valueOf(body[0], base64)}\n`);
      return 0;
    } catch (err) {
      io.stderr(`Error querying Consul agent: ${(err as Error).message}\n`);
      return 1;
    }
  },
};

const PUT_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'cas', kind: 'bool', usage: 'Perform a Check-And-Set operation; requires -modify-index.' },
  { name: 'flags', kind: 'string', usage: 'Unsigned integer value to assign to this key-value pair (0: no flags).' },
  { name: 'base64', kind: 'bool', usage: 'Treat the data as base 64 encoded.' },
  { name: 'modify-index', kind: 'string', usage: 'The ModifyIndex of the key, with -cas.' },
  { name: 'session', kind: 'string', usage: 'The session for -acquire and -release.' },
  { name: 'acquire', kind: 'bool', usage: 'Obtain a lock on the key (creating it if absent); needs -session.' },
  { name: 'release', kind: 'bool', usage: 'Forfeit the lock on the key; needs -session.' },
];
const PUT_HELP = `Usage: consulate kv put [options] KEY [DATA]

  Writes the data to the given path in the key-value store. "@file" reads a file, "-" stdin.

Options:

${flagUsage(PUT_FLAGS)}`;

const putCommand: Command = {
  synopsis: 'Sets or updates data in the KV store',
  help: () => PUT_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(PUT_FLAGS, PUT_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const v = parsed.values;
    const [key, data = ''] = parsed.positionals;
    if (key === undefined) {
      io.stderr('Error! Missing KEY argument\n');
      return 1;
    }
    if (parsed.positionals.length > 2) {
      io.stderr(`Error! Too many arguments (expected 1 or 2, got ${parsed.positionals.length})\n`);
      return 1;
    }
    let value: Buffer;
    try {
      value = data.startsWith('@') ? readFileSync(data.slice(1)) : data === '-' ? readFileSync(0) : Buffer.from(data);
    } catch (err) {
      io.stderr(`Error! Failed to read ${data === '-' ? 'stdin' : 'file'}: ${(err as Error).message}\n`);
      return 1;
    }
    if (v.get('base64') === true) value = Buffer.from(value.toString(), 'base64');
    const session = (v.get('session') as string | undefined) ?? '';
    const acquire = v.get('acquire') === true;
    const release = v.get('release') === true;
    if ((acquire || release) && session === '') {
      io.stderr('Error! Missing -session (required with -acquire and -release)\n');
      return 1;
    }
    const modifyIndex = (v.get('modify-index') as string | undefined) ?? '0';
    const cas = v.get('cas') === true;
    if (cas && (modifyIndex === '0' || modifyIndex === '')) {
      io.stderr('Must specify -modify-index with -cas!\n');
      return 1;
    }
    const api = new HttpApi(v, io.env);
    const query: Record<string, string | undefined> = { flags: (v.get('flags') as string | undefined) ?? undefined };
    if (cas) query.cas = modifyIndex;
    if (acquire) query.acquire = session;
    if (release) query.release = session;
    let ok: boolean;
    try {
      ok = (await api.request<boolean>('PUT', `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`, { query, raw: value })).body;
    } catch (err) {
      const message = (err as Error).message;
      io.stderr(cas ? `Error! Did not write to ${key}: ${message}\n` : `Error! Failed writing data: ${message}\n`);
      return 1;
    }
    if (cas) return ok ? success(io, `Data written to: ${key}`) : failure(io, `Error! Did not write to ${key}: CAS failed`);
    if (acquire) return ok ? success(io, `Lock acquired on: ${key}`) : failure(io, 'Error! Did not acquire lock');
    if (release) return ok ? success(io, `Lock released on: ${key}`) : failure(io, 'Error! Did not release lock');
    return success(io, `Data written to: ${key}`);
  },
};

const DELETE_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'cas', kind: 'bool', usage: 'Perform a Check-And-Set operation; requires -modify-index.' },
  { name: 'modify-index', kind: 'string', usage: 'The ModifyIndex of the key, with -cas.' },
  { name: 'recurse', kind: 'bool', usage: 'Recursively delete all keys with the path.' },
];
const DELETE_HELP = `Usage: consulate kv delete [options] KEY_OR_PREFIX

  Removes the value from the key-value store at the given path. If no key exists at the path, no
  action is taken.

Options:

${flagUsage(DELETE_FLAGS)}`;

const deleteCommand: Command = {
  synopsis: 'Removes data from the KV store',
  help: () => DELETE_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(DELETE_FLAGS, DELETE_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const key = keyArgument(parsed.positionals, io, '1');
    if (typeof key === 'number') return key;
    const v = parsed.values;
    const recurse = v.get('recurse') === true;
    const cas = v.get('cas') === true;
    const modifyIndex = (v.get('modify-index') as string | undefined) ?? '0';
    if (key === '' && !recurse) return failure(io, 'Error! Missing KEY argument');
    if (cas && (modifyIndex === '0' || modifyIndex === '')) return failure(io, 'Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.');
    if (modifyIndex !== '0' && !cas) return failure(io, 'Cannot specify -modify-index without -cas!');
    if (recurse && cas) return failure(io, 'Cannot specify both -cas and -recurse!');
    const api = new HttpApi(v, io.env);
    const path = `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
    try {
      if (recurse) {
        await api.request<boolean>('DELETE', path, { query: { recurse: '' } });
        return success(io, `Deleted keys with prefix: ${key}`);
      }
      if (cas) {
        const { body } = await api.request<boolean>('DELETE', path, { query: { cas: modifyIndex } });
        return body ? success(io, `Deleted key: ${key}`) : failure(io, `Error! Did not delete key ${key}: CAS failed`);
      }
      await api.request<boolean>('DELETE', path);
      return success(io, `Deleted key: ${key}`);
    } catch (err) {
      const message = (err as Error).message;
      return failure(io, recurse ? `Error! Did not delete prefix ${key}: ${message}` : cas ? `Error! Did not delete key ${key}: ${message}` : `Error deleting key ${key}: ${message}`);
    }
  },
};

function success(io: CommandIo, text: string): number {
  io.stdout(`Success! ${text}\n`);
  return 0;
}

function failure(io: CommandIo, text: string): number {
  io.stderr(`${text}\n`);
  return 1;
}

const SUBCOMMANDS: Record<string, Command> = { get: getCommand, put: putCommand, delete: deleteCommand };

export const kvCommand: Command = commandGroup({
  synopsis: 'Interact with the key-value store',
  usage: 'Usage: consulate kv <subcommand> [options] [args]',
  description: `Interacts with the key-value store.`,
  subcommands: SUBCOMMANDS,
});
