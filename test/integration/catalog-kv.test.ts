/**
 * The KV store, sessions and transactions of Consul's HTTP API with real processes
 * (reference/consul-compat.md §4.3, §4.4, §4.8):
 *
 *   server-1   consensus, a one-server Raft (leases expire by its clock)
 *   catalog-1  HTTP on <its address>:8500; every write one consensus Txn; reads from its view
 *
 * put / get / recurse / keys / raw / cas / flags / delete; a blocking GET woken by a PUT; a lock
 * taken and released by a session; a session whose TTL runs out losing its lock on its own; a
 * txn that commits and one that fails and changes nothing; Consul's 413 and 400 texts.
 */
import { trace } from '@opentelemetry/api';

import { keys } from '../../services/catalog/state/keys';
import { StoredCheck, StoredNode } from '../../services/catalog/state/model';
import { ConsensusClient } from '../../services/lib/consensus-client';
import { RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

const NODE = 'catalog-1';

let consensus: RoleProcess;
let catalog: RoleProcess;

interface Answer {
  status: number;
  text: string;
  headers: Headers;
  json<T = unknown>(): T;
}

interface DirEntry {
  LockIndex: number;
  Key: string;
  Flags: number;
  Value: string | null;
  Session?: string;
  CreateIndex: number;
  ModifyIndex: number;
}

async function http(method: string, path: string, body?: string | Uint8Array | object): Promise<Answer> {
  const payload = body === undefined || typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const response = await fetch(`http://${catalog.address}:8500${path}`, { method, body: payload, signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  return { status: response.status, text, headers: response.headers, json: <T>() => JSON.parse(text) as T };
}

const b64 = (text: string) => Buffer.from(text).toString('base64');
const valueOf = (entry: DirEntry) => Buffer.from(entry.Value ?? '', 'base64').toString();

beforeAll(async () => {
  const serverHost = freeLoopbackAddress();
  consensus = await startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] });
  catalog = await startRole({ role: 'catalog', node: NODE, args: [`-consensus-addr=${consensus.grpc}`] });
  // Sessions belong to a registered node with a passing serfHealth (what the reconciler writes
  // from gossip; this test has no gossip, so it writes the rows itself, in the catalog's layout).
  const client = new ConsensusClient([consensus.grpc], trace.getTracer('test'));
  const node: StoredNode = { ID: '', Node: NODE, Address: catalog.address, Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} };
  const check: StoredCheck = { Node: NODE, CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', Notes: '', Output: 'Agent alive and reachable', ServiceID: '', ServiceName: '', ServiceTags: [], Type: '' };
  for (const [key, value] of [[keys.node(NODE), node], [keys.check(NODE, 'serfHealth'), check]] as const) {
    await client.kv('put', { key: Buffer.from(key), value: Buffer.from(JSON.stringify(value)), lease: 0n, prevKv: false }, { timeoutMs: 10_000, idempotent: false });
  }
  client.close();
});

afterAll(stopAll);

test('put, get, recurse, keys, raw, flags, cas, delete', async () => {
  expect((await http('PUT', '/v1/kv/app/config?flags=42', 'v1')).text).toBe('true');
  const read = await http('GET', '/v1/kv/app/config');
  expect(read.status).toBe(200);
  const [entry] = read.json<DirEntry[]>();
  expect(entry).toMatchObject({ Key: 'app/config', Flags: 42, LockIndex: 0, Value: b64('v1') });
  expect(entry.CreateIndex).toBeGreaterThan(0);
  expect(read.headers.get('x-consul-index')).toBe(String(entry.ModifyIndex));

  const raw = await http('GET', '/v1/kv/app/config?raw');
  expect([raw.text, raw.headers.get('content-type')]).toEqual(['v1', 'text/plain']);

  await http('PUT', '/v1/kv/app/db/url', 'postgres://');
  await http('PUT', '/v1/kv/apple', 'fruit');
  expect((await http('GET', '/v1/kv/app/?recurse')).json<DirEntry[]>().map((e) => e.Key)).toEqual(['app/config', 'app/db/url']);
  expect((await http('GET', '/v1/kv/app?keys&separator=/')).json()).toEqual(['app/', 'apple']);

  // cas: 0 creates only; N only at ModifyIndex N.
  expect((await http('PUT', '/v1/kv/app/config?cas=0', 'v2')).text).toBe('false');
  expect((await http('PUT', `/v1/kv/app/config?cas=${entry.ModifyIndex}`, 'v2')).text).toBe('true');
  expect((await http('PUT', `/v1/kv/app/config?cas=${entry.ModifyIndex}`, 'v3')).text).toBe('false');
  const [updated] = (await http('GET', '/v1/kv/app/config')).json<DirEntry[]>();
  expect([valueOf(updated), updated.CreateIndex]).toEqual(['v2', entry.CreateIndex]);

  expect((await http('DELETE', `/v1/kv/app/config?cas=${entry.ModifyIndex}`)).text).toBe('false');
  expect((await http('DELETE', `/v1/kv/app/config?cas=${updated.ModifyIndex}`)).text).toBe('true');
  const gone = await http('GET', '/v1/kv/app/config');
  expect([gone.status, gone.text]).toEqual([404, '']);
  expect(Number(gone.headers.get('x-consul-index'))).toBeGreaterThan(updated.ModifyIndex);

  expect((await http('DELETE', '/v1/kv/app/?recurse')).text).toBe('true');
  expect((await http('GET', '/v1/kv/app/?recurse')).status).toBe(404);
  expect((await http('GET', '/v1/kv/apple')).status).toBe(200);
});

test('a blocking GET is woken by a PUT, with a higher X-Consul-Index', async () => {
  await http('PUT', '/v1/kv/watch/me', 'before');
  const index = Number((await http('GET', '/v1/kv/watch/me')).headers.get('x-consul-index'));
  const started = Date.now();
  let answered = false;
  const blocked = http('GET', `/v1/kv/watch/me?index=${index}&wait=20s`).then((answer) => {
    answered = true;
    return answer;
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(answered).toBe(false);
  await http('PUT', '/v1/kv/watch/me', 'after');
  const woken = await blocked;
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(Number(woken.headers.get('x-consul-index'))).toBeGreaterThan(index);
  expect(valueOf(woken.json<DirEntry[]>()[0])).toBe('after');
});

test('a session takes a lock and releases it; another session cannot take it meanwhile', async () => {
  const first = (await http('PUT', '/v1/session/create', { Name: 'first' })).json<{ ID: string }>().ID;
  const second = (await http('PUT', '/v1/session/create', { Name: 'second', LockDelay: '0s' })).json<{ ID: string }>().ID;
  const [info] = (await http('GET', `/v1/session/info/${first}`)).json<{ Node: string; LockDelay: number; NodeChecks: string[] }[]>();
  expect(info).toMatchObject({ Node: NODE, LockDelay: 15e9, NodeChecks: ['serfHealth'] });

  expect((await http('PUT', `/v1/kv/service/leader?acquire=${first}`, 'first')).text).toBe('true');
  expect((await http('PUT', `/v1/kv/service/leader?acquire=${second}`, 'second')).text).toBe('false');
  expect((await http('GET', '/v1/kv/service/leader')).json<DirEntry[]>()[0]).toMatchObject({ Session: first, LockIndex: 1 });

  expect((await http('PUT', `/v1/kv/service/leader?release=${first}`)).text).toBe('true');
  expect((await http('PUT', `/v1/kv/service/leader?acquire=${second}`, 'second')).text).toBe('true');
  expect((await http('GET', '/v1/kv/service/leader')).json<DirEntry[]>()[0]).toMatchObject({ Session: second, LockIndex: 2 });

  const unknown = await http('PUT', '/v1/kv/service/leader?acquire=00000000-0000-0000-0000-000000000001', 'x');
  expect([unknown.status, unknown.text]).toEqual([500, 'invalid session "00000000-0000-0000-0000-000000000001"']);
  expect((await http('PUT', `/v1/session/destroy/${second}`)).text).toBe('true');
  expect((await http('GET', '/v1/kv/service/leader')).json<DirEntry[]>()[0]).not.toHaveProperty('Session');
});

test('a session whose TTL runs out loses its lock by itself (the lease expires, the catalog releases)', async () => {
  const created = await http('PUT', '/v1/session/create', { Name: 'short', TTL: '10s', LockDelay: '1s' });
  expect(created.status).toBe(200);
  const id = created.json<{ ID: string }>().ID;
  expect((await http('PUT', `/v1/kv/ttl/lock?acquire=${id}`, 'held')).text).toBe('true');
  // Renewing works while it lives.
  expect((await http('PUT', `/v1/session/renew/${id}`)).json<{ ID: string; TTL: string }[]>()[0]).toMatchObject({ ID: id, TTL: '10s' });

  // Consul invalidates a session not renewed within 2×TTL: the lease is 20 s from the renewal.
  await eventually(
    'the session to expire and its lock to be released',
    async () => {
      const [entry] = (await http('GET', '/v1/kv/ttl/lock')).json<DirEntry[]>();
      return entry.Session === undefined ? entry : undefined;
    },
    40_000,
  );
  expect((await http('GET', `/v1/session/info/${id}`)).text).toBe('[]');
  const renew = await http('PUT', `/v1/session/renew/${id}`);
  expect([renew.status, renew.text]).toEqual([404, `Session id '${id}' not found`]);
  expect((await http('GET', '/v1/kv/ttl/lock')).json<DirEntry[]>()[0]).toMatchObject({ LockIndex: 1, Value: b64('held') });
}, 60_000);

test('a txn commits all of its ops; a failing one changes nothing (409, Consul\'s errors)', async () => {
  const committed = await http('PUT', '/v1/txn', [
    { KV: { Verb: 'set', Key: 'txn/a', Value: b64('1') } },
    { KV: { Verb: 'set', Key: 'txn/b', Value: b64('2') } },
    { KV: { Verb: 'get', Key: 'txn/a' } },
  ]);
  expect(committed.status).toBe(200);
  const body = committed.json<{ Results: { KV: DirEntry }[]; Errors: null }>();
  expect(body.Errors).toBeNull();
  expect(body.Results.map((r) => [r.KV.Key, r.KV.Value])).toEqual([
    ['txn/a', null],
    ['txn/b', null],
    ['txn/a', b64('1')],
  ]);
  // One Txn: one revision for all of them.
  expect(new Set(body.Results.map((r) => r.KV.ModifyIndex)).size).toBe(1);

  const before = (await http('GET', '/v1/kv/txn/?recurse')).headers.get('x-consul-index');
  const failed = await http('PUT', '/v1/txn', [
    { KV: { Verb: 'set', Key: 'txn/c', Value: b64('3') } },
    { KV: { Verb: 'delete', Key: 'txn/a' } },
    { KV: { Verb: 'cas', Key: 'txn/b', Value: b64('x'), Index: 1 } },
  ]);
  expect(failed.status).toBe(409);
  expect(failed.json()).toEqual({ Results: null, Errors: [{ OpIndex: 2, What: 'failed to set key "txn/b", index is stale' }] });
  const after = await http('GET', '/v1/kv/txn/?recurse');
  expect(after.json<DirEntry[]>().map((e) => [e.Key, valueOf(e)])).toEqual([
    ['txn/a', '1'],
    ['txn/b', '2'],
  ]);
  expect(after.headers.get('x-consul-index')).toBe(before);
});

test('Consul\'s refusals: a value over 512 KiB (413), malformed txn JSON (400)', async () => {
  const big = await http('PUT', '/v1/kv/too/big', Buffer.alloc(512 * 1024 + 1, 'x'));
  expect([big.status, big.text]).toEqual([413, 'Request body(524289 bytes) too large, max size: 524288 bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.']);
  expect((await http('GET', '/v1/kv/too/big')).status).toBe(404);

  const malformed = await http('PUT', '/v1/txn', '[{"KV": {"Verb": "set", "Key": "k",]');
  expect([malformed.status, malformed.text]).toEqual([400, "Failed to parse body: invalid character ']' looking for beginning of object key string"]);
  const truncated = await http('PUT', '/v1/txn', '[{"KV": ');
  expect([truncated.status, truncated.text]).toEqual([400, 'Failed to parse body: unexpected EOF']);
  const tooMany = await http('PUT', '/v1/txn', Array.from({ length: 129 }, (_, i) => ({ KV: { Verb: 'get', Key: `k${i}` } })));
  expect([tooMany.status, tooMany.text]).toEqual([413, 'Transaction contains too many operations (129 > 128)']);
});
