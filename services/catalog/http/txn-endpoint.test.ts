// PUT /v1/txn with Consul's KV verbs (agent/txn_endpoint.go, agent/consul/txn_endpoint.go,
// state/txn.go txnKVS): all or nothing as one consensus Txn, Consul's result and error shapes and
// texts, its limits.
import { keys } from '../state/keys';
import { DirEntry } from '../state/kv-reads';
import { KvServed, LeasedFakeConsensus, kvTestDeps, registerNode, serveKv } from '../testing/kv-fake';

let consensus: LeasedFakeConsensus;
let served: KvServed;

beforeEach(async () => {
  consensus = new LeasedFakeConsensus();
  served = await serveKv(kvTestDeps(consensus));
});

afterEach(async () => {
  await served.close();
});

const b64 = (text: string) => Buffer.from(text).toString('base64');
const txn = (ops: unknown) => served.call('PUT', '/v1/txn', ops);
type Results = { Results: { KV: DirEntry }[] | null; Errors: { OpIndex: number; What: string }[] | null };

test('a write txn commits as one consensus Txn; results carry its revision, values only for reads', async () => {
  await served.call('PUT', '/v1/kv/c', 'old');
  const answer = await txn([
    { KV: { Verb: 'set', Key: 'a', Value: b64('1'), Flags: 7 } },
    { KV: { Verb: 'set', Key: 'b', Value: b64('2') } },
    { KV: { Verb: 'get', Key: 'a' } },
    { KV: { Verb: 'delete', Key: 'c' } },
  ]);
  expect(answer.status).toBe(200);
  const revision = consensus.fake.revision;
  expect(answer.json()).toEqual({
    Results: [
      { KV: { LockIndex: 0, Key: 'a', Flags: 7, Value: null, CreateIndex: revision, ModifyIndex: revision } },
      { KV: { LockIndex: 0, Key: 'b', Flags: 0, Value: null, CreateIndex: revision, ModifyIndex: revision } },
      // A get sees the set before it, in the same transaction.
      { KV: { LockIndex: 0, Key: 'a', Flags: 7, Value: b64('1'), CreateIndex: revision, ModifyIndex: revision } },
    ],
    Errors: null,
  });
  expect(consensus.fake.keys(keys.kv(''))).toEqual([keys.kv('a'), keys.kv('b')]);
  // One Txn for the whole transaction (the PUT of c was the first).
  expect(consensus.fake.txns).toHaveLength(2);
});

test('a failing op fails the whole txn: 409, every error with its OpIndex, nothing changed', async () => {
  await served.call('PUT', '/v1/kv/existing', 'x');
  const before = consensus.fake.revision;
  const answer = await txn([
    { KV: { Verb: 'set', Key: 'new', Value: b64('1') } },
    { KV: { Verb: 'cas', Key: 'existing', Value: b64('2'), Index: 999 } },
    { KV: { Verb: 'check-not-exists', Key: 'existing' } },
    { KV: { Verb: 'get', Key: 'nowhere' } },
  ]);
  expect(answer.status).toBe(409);
  expect(answer.headers.get('content-type')).toBe('application/json');
  expect(answer.json()).toEqual({
    Results: null,
    Errors: [
      { OpIndex: 1, What: 'failed to set key "existing", index is stale' },
      { OpIndex: 2, What: 'key "existing" exists' },
      { OpIndex: 3, What: 'key "nowhere" doesn\'t exist' },
    ],
  });
  expect(consensus.fake.revision).toBe(before);
  expect((await served.call('GET', '/v1/kv/new')).status).toBe(404);
});

test('check-index, check-session, delete-cas, delete-tree: Consul\'s texts', async () => {
  await served.call('PUT', '/v1/kv/k', 'x');
  const [entry] = (await served.call('GET', '/v1/kv/k')).json<DirEntry[]>();
  const failed = (await txn([
    { KV: { Verb: 'check-index', Key: 'k', Index: entry.ModifyIndex + 1 } },
    { KV: { Verb: 'check-index', Key: 'gone', Index: 1 } },
    { KV: { Verb: 'check-session', Key: 'k', Session: 'abc' } },
    { KV: { Verb: 'check-session', Key: 'gone' } },
    { KV: { Verb: 'delete-cas', Key: 'k', Index: 1 } },
    { KV: { Verb: 'unlock', Key: 'k', Session: 'abc' } },
    { KV: { Verb: 'frob', Key: 'k' } },
    { KV: { Verb: 'lock', Key: 'k', Session: 'abc' } },
  ])).json<Results>();
  expect(failed.Errors).toEqual([
    { OpIndex: 0, What: `failed index check for key "k", current modify index ${entry.ModifyIndex} != ${entry.ModifyIndex + 1}` },
    { OpIndex: 1, What: 'failed to check index, key "gone" doesn\'t exist' },
    { OpIndex: 2, What: 'failed session check for key "k", current session "" != "abc"' },
    { OpIndex: 3, What: 'failed to check session, key "gone" doesn\'t exist' },
    { OpIndex: 4, What: 'failed to delete key "k", index is stale' },
    { OpIndex: 5, What: 'failed to unlock key "k", lock isn\'t held, or is held by another session' },
    { OpIndex: 6, What: 'unknown KV verb "frob"' },
    { OpIndex: 7, What: 'invalid session "abc"' },
  ]);

  for (const key of ['t/a', 't/b', 'u']) await served.call('PUT', `/v1/kv/${key}`, 'x');
  const ok = await txn([
    { KV: { Verb: 'check-index', Key: 'k', Index: entry.ModifyIndex } },
    { KV: { Verb: 'delete-tree', Key: 't/' } },
    { KV: { Verb: 'set', Key: 't/new', Value: b64('n') } },
    { KV: { Verb: 'delete-cas', Key: 'k', Index: entry.ModifyIndex } },
    { KV: { Verb: 'get-tree', Key: 't/' } },
  ]);
  expect(ok.status).toBe(200);
  expect(ok.json<Results>().Results!.map((r) => [r.KV.Key, r.KV.Value])).toEqual([
    ['k', null],
    ['t/new', null],
    ['t/new', b64('n')],
  ]);
  expect(consensus.fake.keys(keys.kv(''))).toEqual([keys.kv('t/new'), keys.kv('u')]);
});

test('lock and unlock in a txn, with a session', async () => {
  registerNode(consensus, 'catalog-1');
  const { ID } = (await served.call('PUT', '/v1/session/create')).json<{ ID: string }>();
  const locked = await txn([{ KV: { Verb: 'lock', Key: 'leader', Value: b64('me'), Session: ID } }, { KV: { Verb: 'check-session', Key: 'leader', Session: ID } }]);
  expect(locked.status).toBe(200);
  expect(locked.json<Results>().Results![0].KV).toMatchObject({ Key: 'leader', LockIndex: 1, Session: ID, Value: null });
  const unlocked = await txn([{ KV: { Verb: 'unlock', Key: 'leader', Session: ID } }]);
  expect(unlocked.json<Results>().Results![0].KV).toMatchObject({ LockIndex: 1 });
  expect(unlocked.json<Results>().Results![0].KV).not.toHaveProperty('Session');
});

test('a read-only txn runs on the view: 200 with QueryMeta in the body, LastContact and KnownLeader headers', async () => {
  await served.call('PUT', '/v1/kv/r/1', 'one');
  const revision = consensus.fake.revision;
  const txnsBefore = consensus.fake.txns.length;
  const answer = await txn([{ KV: { Verb: 'get', Key: 'r/1' } }, { KV: { Verb: 'get-tree', Key: 'r/' } }, { KV: { Verb: 'check-not-exists', Key: 'r/2' } }]);
  expect(answer.status).toBe(200);
  expect(answer.json()).toEqual({
    Results: [
      { KV: { LockIndex: 0, Key: 'r/1', Flags: 0, Value: b64('one'), CreateIndex: revision, ModifyIndex: revision } },
      { KV: { LockIndex: 0, Key: 'r/1', Flags: 0, Value: b64('one'), CreateIndex: revision, ModifyIndex: revision } },
    ],
    Errors: null,
    Index: 0,
    LastContact: 0,
    KnownLeader: true,
    ConsistencyLevel: '',
    NotModified: false,
    Backend: 0,
    ResultsFilteredByACLs: false,
  });
  expect(answer.headers.get('x-consul-knownleader')).toBe('true');
  expect(answer.headers.get('x-consul-index')).toBeNull();
  expect(consensus.fake.txns.length).toBe(txnsBefore);
  const missing = await txn([{ KV: { Verb: 'get', Key: 'nope' } }]);
  expect(missing.status).toBe(409);
  expect(missing.json<Results>().Errors).toEqual([{ OpIndex: 0, What: 'key "nope" doesn\'t exist' }]);
});

test('an empty key is refused before anything runs (kvsPreApply), except for delete-tree', async () => {
  const answer = await txn([{ KV: { Verb: 'set', Key: '', Value: b64('x') } }, { KV: { Verb: 'delete-tree', Key: '' } }]);
  expect(answer.status).toBe(409);
  expect(answer.json<Results>().Errors).toEqual([{ OpIndex: 0, What: 'Must provide key' }]);
});

test('ops with nothing in them are dropped, as Consul\'s convertOps drops them', async () => {
  const answer = await txn([{}, { KV: null }, { KV: { Verb: 'get', Key: 'nope' } }]);
  expect(answer.json<Results>().Errors).toEqual([{ OpIndex: 0, What: 'key "nope" doesn\'t exist' }]);
});

describe('Consul\'s limits and parse errors', () => {
  test('more than 128 operations: 413 with Consul\'s text', async () => {
    const ops = Array.from({ length: 129 }, (_, i) => ({ KV: { Verb: 'set', Key: `k${i}`, Value: b64('x') } }));
    const answer = await txn(ops);
    expect([answer.status, answer.text]).toEqual([413, 'Transaction contains too many operations (129 > 128)']);
    const exactly = await txn(ops.slice(0, 128));
    expect(exactly.status).toBe(200);
  });

  test('a body over txn_max_req_len: 413 with Consul\'s text', async () => {
    const body = JSON.stringify([{ KV: { Verb: 'set', Key: 'big', Value: Buffer.alloc(400 * 1024).toString('base64') } }]);
    const answer = await txn(body);
    expect(answer.status).toBe(413);
    expect(answer.text).toBe(`Request body(${Buffer.byteLength(body)} bytes) too large, max size: 524288 bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len.`);
  });

  test('malformed JSON: 400 Failed to parse body, with Go\'s scanner texts', async () => {
    const cases: [string, string][] = [
      ['', 'Failed to parse body: EOF'],
      ['[{"KV": ', 'Failed to parse body: unexpected EOF'],
      ['nope', "Failed to parse body: invalid character 'o' in literal null (expecting 'u')"],
      ['{KV}', "Failed to parse body: invalid character 'K' looking for beginning of object key string"],
      ['[{"KV": {"Verb": "get", "Key": "a",}}]', "Failed to parse body: invalid character '}' looking for beginning of object key string"],
      ['[1 2]', "Failed to parse body: invalid character '2' after array element"],
      ['x', "Failed to parse body: invalid character 'x' looking for beginning of value"],
    ];
    for (const [body, text] of cases) {
      const answer = await txn(body);
      expect([answer.status, answer.text]).toEqual([400, text]);
    }
  });

  test('wrong types, unknown fields, bad base64: 400 with Go\'s decoding texts', async () => {
    const cases: [unknown, string][] = [
      [{ KV: {} }, 'Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps'],
      [[{ KV: { Verb: 'set', Key: 'a', Flags: 'x' } }], 'Failed to parse body: json: cannot unmarshal string into Go struct field KVTxnOp.KV.Flags of type uint64'],
      [[{ KV: { Verb: 'set', Key: 'a', Index: -1 } }], 'Failed to parse body: json: cannot unmarshal number -1 into Go struct field KVTxnOp.KV.Index of type uint64'],
      [[{ KV: { Verb: 'set', Key: 'a', Extra: 1 } }], 'Failed to parse body: json: unknown field "Extra"'],
      [[{ KV: { Verb: 'set', Key: 'a', Value: 'not base64!' } }], 'Failed to parse body: illegal base64 data at input byte 3'],
      [[5], 'Failed to parse body: json: cannot unmarshal number into Go value of type api.TxnOp'],
    ];
    for (const [body, text] of cases) {
      const answer = await txn(body);
      expect([answer.status, answer.text]).toEqual([400, text]);
    }
  });

  test('field names match case-insensitively, as Go\'s do; uint64 flags stay exact', async () => {
    const answer = await txn('[{"kv": {"verb": "set", "key": "f", "flags": 18446744073709551615}}]');
    expect(answer.status).toBe(200);
    expect(answer.text).toContain('"Flags":18446744073709551615');
  });

  test('catalog ops are not run here yet: the txn fails with a clear error', async () => {
    const answer = await txn([{ Node: { Verb: 'get', Node: { Node: 'n1' } } }]);
    expect(answer.status).toBe(409);
    expect(answer.json<Results>().Errors![0].What).toContain('Node operations');
  });
});

test('a conflicting writer between plan and commit: the txn is planned again, and its checks see the new state', async () => {
  await served.call('PUT', '/v1/kv/counter', '1');
  const [entry] = (await served.call('GET', '/v1/kv/counter')).json<DirEntry[]>();
  let interfered = false;
  consensus.fake.beforeTxn = () => {
    if (interfered) return;
    interfered = true;
    consensus.fake.put(keys.kv('counter'), Buffer.from('someone else'));
  };
  const answer = await txn([{ KV: { Verb: 'check-index', Key: 'counter', Index: entry.ModifyIndex } }, { KV: { Verb: 'set', Key: 'counter', Value: b64('2') } }]);
  expect(answer.status).toBe(409);
  expect(answer.json<Results>().Errors![0].What).toMatch(/^failed index check for key "counter"/);
});
