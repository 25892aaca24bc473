/**
 * consulate.catalog.v1.KVService over the in-process fakes: Consul's KV (reference/consul-compat.md
 * §4.3: cas=0 creates only, cas=N writes only at ModifyIndex N, a lock needs a live session,
 * values up to 512 KiB), its transactions, and WatchPrefix (§4.4's index rules for a prefix,
 * deletes included). A condition that does not hold is `succeeded: false`, as Consul's `false`.
 */
import { ClientReadableStream, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { KVVerb, PutRequest, TxnOp, WatchPrefixResponse } from '../../gen/consulate/catalog/v1/kv';
import { goQuote } from '../../lib/go-text';
import { registerKvEndpoints } from '../http/kv-endpoint';
import { MAX_KV_VALUE_BYTES } from '../state/model';
import { CatalogGrpc, startCatalogGrpc } from '../testing/grpc-harness';
import { HttpHarness, startHttp } from '../testing/http-harness';
import { registerNode } from '../testing/kv-fake';
import { INDEX_TRAILER } from './status';

let api: CatalogGrpc;

beforeEach(async () => {
  api = await startCatalogGrpc();
});

afterEach(async () => {
  await api.close();
});

function put(key: string, value: string, extra: Partial<PutRequest> = {}) {
  return api.call(api.kv.put.bind(api.kv), { key, value: Buffer.from(value), flags: 0n, condition: undefined, datacenter: '', ...extra });
}

function get(key: string, options: { recurse?: boolean; keys?: boolean; separator?: string } = {}) {
  return api.call(api.kv.get.bind(api.kv), { query: undefined, key, recurse: false, keys: false, separator: '', ...options });
}

function del(key: string, options: { recurse?: boolean; cas?: bigint } = {}) {
  return api.call(api.kv.delete.bind(api.kv), { key, recurse: false, datacenter: '', ...options });
}

test('put, get, recurse, keys with a separator, flags as uint64', async () => {
  const written = await put('app/config', 'v1', { flags: 2n ** 64n - 1n });
  expect(written).toEqual({ succeeded: true, index: BigInt(api.consensus.fake.revision) });
  await put('app/db/url', 'postgres://');
  await put('apps', 'x');

  const one = await get('app/config');
  expect(one.entries).toEqual([{ key: 'app/config', value: Buffer.from('v1'), flags: 2n ** 64n - 1n, lockIndex: 0n, session: '', createIndex: written.index, modifyIndex: written.index }]);
  expect(one.meta?.index).toBe(written.index);

  expect((await get('app/', { recurse: true })).entries.map((e) => e.key)).toEqual(['app/config', 'app/db/url']);
  expect((await get('app/', { keys: true, separator: '/' })).keys).toEqual(['app/config', 'app/db/']);
  expect((await get('nothing/', { recurse: true })).entries).toEqual([]);
});

test('the HTTP API reads what gRPC wrote, byte for byte and index for index', async () => {
  const written = await put('shared/key', 'from grpc', { flags: 42n });
  const http: HttpHarness = await startHttp((router) => registerKvEndpoints(router, api.deps));
  try {
    const [entry] = (await http.request('GET', '/v1/kv/shared/key')).json as { Value: string; Flags: number; ModifyIndex: number }[];
    expect([Buffer.from(entry.Value, 'base64').toString(), entry.Flags, BigInt(entry.ModifyIndex)]).toEqual(['from grpc', 42, written.index]);
    expect((await http.request('PUT', '/v1/kv/shared/key?cas=1', 'stale')).text).toBe('false');
  } finally {
    await http.close();
  }
});

test('a missing key: NOT_FOUND with the kvs index in the trailer', async () => {
  await put('a', '1');
  const failure = await api.failure(api.kv.get.bind(api.kv), { query: undefined, key: 'missing', recurse: false, keys: false, separator: '' });
  expect({ code: failure.code, details: failure.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'key "missing" doesn\'t exist' });
  expect(failure.metadata.get(INDEX_TRAILER)).toEqual([String(api.consensus.fake.revision)]);
});

test('cas: 0 creates only; N writes only at ModifyIndex N; a failed cas is succeeded=false and writes nothing', async () => {
  const created = await put('lock/x', 'a', { condition: { $case: 'cas', value: 0n } });
  expect(created.succeeded).toBe(true);
  const txns = api.consensus.fake.txns.length;
  expect((await put('lock/x', 'b', { condition: { $case: 'cas', value: 0n } })).succeeded).toBe(false);
  expect((await put('lock/x', 'b', { condition: { $case: 'cas', value: created.index + 100n } })).succeeded).toBe(false);
  expect(api.consensus.fake.txns).toHaveLength(txns);
  expect((await put('lock/x', 'b', { condition: { $case: 'cas', value: created.index } })).succeeded).toBe(true);
  expect((await get('lock/x')).entries[0].value.toString()).toBe('b');
});

test('delete: one key, by cas, a prefix; recurse with cas is refused', async () => {
  const a = await put('d/a', '1');
  await put('d/b', '2');
  await put('d/c/1', '3');
  expect((await del('d/a', { cas: a.index + 1n })).succeeded).toBe(false);
  expect((await del('d/a', { cas: a.index })).succeeded).toBe(true);
  expect((await del('d/b')).succeeded).toBe(true);
  expect((await get('d/', { recurse: true })).entries.map((e) => e.key)).toEqual(['d/c/1']);
  const deleted = await del('d/', { recurse: true });
  expect(deleted.index).toBe(BigInt(api.consensus.fake.revision));
  expect(api.consensus.fake.keys('/kv/')).toEqual([]);
  // Consul's graveyard rule: the prefix's index moved with the delete.
  expect((await get('d/', { recurse: true })).meta?.index).toBe(deleted.index);
  const both = await api.failure(api.kv.delete.bind(api.kv), { key: 'd/', recurse: true, cas: 1n, datacenter: '' });
  expect(both.code).toBe(GrpcStatus.INVALID_ARGUMENT);
});

test("bad input: INVALID_ARGUMENT with Consul's texts (missing key, oversized value)", async () => {
  const missing = await api.failure(api.kv.put.bind(api.kv), { key: '', value: Buffer.from('x'), flags: 0n, condition: undefined, datacenter: '' });
  expect({ code: missing.code, details: missing.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'Missing key name' });
  const huge = await api.failure(api.kv.put.bind(api.kv), { key: 'big', value: Buffer.alloc(MAX_KV_VALUE_BYTES + 1), flags: 0n, condition: undefined, datacenter: '' });
  expect({ code: huge.code, details: huge.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: `Value for key "big" is too large (${MAX_KV_VALUE_BYTES + 1} > ${MAX_KV_VALUE_BYTES} bytes)` });
  // Exactly the limit is fine.
  expect((await put('big', 'x'.repeat(MAX_KV_VALUE_BYTES))).succeeded).toBe(true);
});

test('keys the KV endpoint refuses (reliability.md S7): INVALID_ARGUMENT naming the key, for get, put and delete; nothing written', async () => {
  const cases: [string, string][] = [
    ['../etc/passwd', 'key contains invalid path traversal sequence'],
    ['a/..\\b', 'key contains invalid path traversal sequence'],
    ['/abs', "key must not begin with a '/'"],
    ['a/%2e%2e%2fb', 'key contains encoded path traversal sequence'],
    ['..', 'key contains path traversal sequence after normalization'],
    ['a\0b', 'key must not contain a NUL character'],
  ];
  for (const [key, problem] of cases) {
    const details = `key ${goQuote(key)}: ${problem}`;
    const put = await api.failure(api.kv.put.bind(api.kv), { key, value: Buffer.from('x'), flags: 0n, condition: undefined, datacenter: '' });
    const read = await api.failure(api.kv.get.bind(api.kv), { query: undefined, key, recurse: true, keys: false, separator: '' });
    const del = await api.failure(api.kv.delete.bind(api.kv), { key, recurse: false, datacenter: '' });
    for (const failure of [put, read, del]) expect([key, failure.code, failure.details]).toEqual([key, GrpcStatus.INVALID_ARGUMENT, details]);
  }
  expect(api.consensus.fake.keys('/kv/')).toEqual([]);
});

test('locks: acquire with a session, a second session is refused (false), release; an unknown session is FAILED_PRECONDITION', async () => {
  registerNode(api.consensus, 'catalog-1');
  const create = () => api.call(api.session.create.bind(api.session), { name: '', node: '', lockDelay: { seconds: 0n, nanos: 0 }, behavior: 0, ttl: undefined, nodeChecks: undefined, serviceChecks: [], datacenter: '' });
  const { id: first } = await create();
  const { id: second } = await create();
  expect((await put('leader', 'me', { condition: { $case: 'acquire', value: first } })).succeeded).toBe(true);
  expect((await get('leader')).entries[0]).toMatchObject({ session: first, lockIndex: 1n });
  expect((await put('leader', 'you', { condition: { $case: 'acquire', value: second } })).succeeded).toBe(false);
  expect((await put('leader', 'you', { condition: { $case: 'release', value: second } })).succeeded).toBe(false);
  expect((await put('leader', 'done', { condition: { $case: 'release', value: first } })).succeeded).toBe(true);
  expect((await get('leader')).entries[0]).toMatchObject({ session: '', lockIndex: 1n, value: Buffer.from('done') });

  const unknown = await api.failure(api.kv.put.bind(api.kv), { key: 'leader', value: Buffer.alloc(0), flags: 0n, condition: { $case: 'acquire', value: 'no-such-session' }, datacenter: '' });
  expect({ code: unknown.code, details: unknown.details }).toEqual({ code: GrpcStatus.FAILED_PRECONDITION, details: 'invalid session "no-such-session"' });
  const none = await api.failure(api.kv.put.bind(api.kv), { key: 'leader', value: Buffer.alloc(0), flags: 0n, condition: { $case: 'acquire', value: '' }, datacenter: '' });
  expect({ code: none.code, details: none.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'missing session' });
});

function op(verb: KVVerb, key: string, extra: Partial<TxnOp> = {}): TxnOp {
  return { verb, key, value: Buffer.alloc(0), flags: 0n, index: 0n, session: '', ...extra };
}

test('Txn: all ops commit together with resolved indexes, or none with the errors (Consul /v1/txn)', async () => {
  const done = await api.call(api.kv.txn.bind(api.kv), { query: undefined, ops: [op(KVVerb.KV_VERB_SET, 't/a', { value: Buffer.from('1') }), op(KVVerb.KV_VERB_CAS, 't/b', { value: Buffer.from('2') }), op(KVVerb.KV_VERB_GET, 't/a')] });
  expect(done.errors).toEqual([]);
  const revision = BigInt(api.consensus.fake.revision);
  expect(done.index).toBe(revision);
  // Writes answer without their value; reads with it; all at the txn's revision.
  expect(done.results.map((r) => [r.key, r.value.toString(), r.modifyIndex])).toEqual([
    ['t/a', '', revision],
    ['t/b', '', revision],
    ['t/a', '1', revision],
  ]);

  const failed = await api.call(api.kv.txn.bind(api.kv), { query: undefined, ops: [op(KVVerb.KV_VERB_SET, 't/c', { value: Buffer.from('3') }), op(KVVerb.KV_VERB_CHECK_NOT_EXISTS, 't/a')] });
  expect(failed).toEqual({ results: [], errors: [{ opIndex: 1, what: 'key "t/a" exists' }], index: revision });
  expect((await get('t/', { recurse: true })).entries.map((e) => e.key)).toEqual(['t/a', 't/b']);

  const readOnly = await api.call(api.kv.txn.bind(api.kv), { query: undefined, ops: [op(KVVerb.KV_VERB_GET_TREE, 't/')] });
  expect(readOnly.results.map((r) => r.value.toString())).toEqual(['1', '2']);

  const noVerb = await api.failure(api.kv.txn.bind(api.kv), { query: undefined, ops: [op(KVVerb.KV_VERB_UNSPECIFIED, 'x')] });
  expect(noVerb.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  const tooMany = await api.failure(api.kv.txn.bind(api.kv), { query: undefined, ops: Array.from({ length: 129 }, (_, i) => op(KVVerb.KV_VERB_GET, `k${i}`)) });
  expect({ code: tooMany.code, details: tooMany.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'Transaction contains too many operations (129 > 128)' });
});

/** A WatchPrefix stream's messages and end, as they come. */
function watchPrefix(prefix: string): { messages: WatchPrefixResponse[]; error(): ServiceError | undefined; stream: ClientReadableStream<WatchPrefixResponse>; until(n: number): Promise<void> } {
  const stream = api.kv.watchPrefix({ prefix, query: undefined });
  const messages: WatchPrefixResponse[] = [];
  let error: ServiceError | undefined;
  stream.on('data', (message: WatchPrefixResponse) => messages.push(message));
  stream.on('error', (err: ServiceError) => (error = err));
  return {
    messages,
    error: () => error,
    stream,
    async until(n) {
      const deadline = Date.now() + 3_000;
      while (messages.length < n && error === undefined) {
        if (Date.now() > deadline) throw new Error(`WatchPrefix: ${messages.length} of ${n} messages after 3 s`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

test('WatchPrefix: the entries at once, then each change under the prefix (puts and deletes), not the others', async () => {
  await put('cfg/a', '1');
  const watched = watchPrefix('cfg/');
  await watched.until(1);
  expect(watched.messages[0].entries.map((e) => [e.key, e.value.toString()])).toEqual([['cfg/a', '1']]);
  const firstIndex = watched.messages[0].index;

  await put('other/x', 'ignored');
  const woken = await put('cfg/b', '2');
  await watched.until(2);
  expect(watched.messages[1].entries.map((e) => e.key)).toEqual(['cfg/a', 'cfg/b']);
  expect(watched.messages[1].index).toBe(woken.index);
  expect(watched.messages[1].index).toBeGreaterThan(firstIndex);

  const deleted = await del('cfg/a');
  await watched.until(3);
  expect(watched.messages[2].entries.map((e) => e.key)).toEqual(['cfg/b']);
  expect(watched.messages[2].index).toBe(deleted.index);

  // A write that changes nothing (same value, same flags) sends nothing.
  await put('cfg/b', '2');
  await new Promise((resolve) => setTimeout(resolve, 150));
  expect(watched.messages).toHaveLength(3);
  expect(watched.error()).toBeUndefined();
  watched.stream.cancel();
});
