/**
 * The state machine against etcd v3's documented behaviour (etcd.io/docs/v3.5/learning/api,
 * api_guarantees, and server/mvcc + server/etcdserver/txn where the docs are silent).
 */
import { Command } from '../../gen/consulate/consensus/v1/command';
import { KeyValue } from '../../gen/consulate/consensus/v1/kv';
import { Event_EventType } from '../../gen/consulate/consensus/v1/watch';
import { FROM_KEY, command, compare, op, rangeRequest } from './command-builders';
import { ApplyResult, KvStateMachine } from './kv-state-machine';

function ok(result: ApplyResult): Extract<ApplyResult, { ok: true }> {
  if (!result.ok) throw new Error(`expected success, got ${result.error.toString()}`);
  return result;
}

function failed(result: ApplyResult): Extract<ApplyResult, { ok: false }> {
  if (result.ok) throw new Error(`expected failure, got success at revision ${result.revision}`);
  return result;
}

function read(sm: KvStateMachine, ...args: Parameters<typeof rangeRequest>) {
  const outcome = sm.range(rangeRequest(...args));
  if (!outcome.ok) throw new Error(outcome.error.toString());
  return outcome.response;
}

function pairs(kvs: KeyValue[]): [string, string][] {
  return kvs.map((kv) => [kv.key.toString(), kv.value.toString()]);
}

function get(sm: KvStateMachine, key: string, revision = 0): KeyValue | undefined {
  return read(sm, key, '', { revision }).kvs[0];
}

function applyAll(sm: KvStateMachine, commands: Command[]): void {
  for (const c of commands) ok(sm.apply(c));
}

describe('revisions (etcd mvcc: one main revision per change)', () => {
  test('the empty store is at revision 1, and the first put gets revision 2', () => {
    const sm = new KvStateMachine();
    expect(sm.revision).toBe(1n);
    expect(ok(sm.apply(command.put('a', '1'))).revision).toBe(2n);
    expect(sm.revision).toBe(2n);
  });

  test('create_revision, mod_revision and version: 1 on create, +1 per put', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.put('a', '1'), command.put('b', 'x'), command.put('a', '2'), command.put('a', '3')]);
    expect(get(sm, 'a')).toEqual({ key: Buffer.from('a'), value: Buffer.from('3'), createRevision: 2n, modRevision: 5n, version: 3n, lease: 0n });
  });

  test('a delete resets the version: the next put creates the key again', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.put('a', '1'), command.put('a', '2'), command.delete('a'), command.put('a', '3')]);
    expect(get(sm, 'a')).toMatchObject({ createRevision: 5n, modRevision: 5n, version: 1n });
  });

  test('a txn is one revision however many keys it changes; each key gets that mod_revision', () => {
    const sm = new KvStateMachine();
    const result = ok(sm.apply(command.txn([], [op.put('a', '1'), op.put('b', '2'), op.put('c', '3')])));
    expect(result.revision).toBe(2n);
    expect(read(sm, 'a', 'z').kvs.map((kv) => kv.modRevision)).toEqual([2n, 2n, 2n]);
    expect(result.events.map((e) => e.kv!.key.toString())).toEqual(['a', 'b', 'c']);
  });

  test('a put of an unchanged value still takes a revision (a put always changes something)', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.put('a', '1'), command.put('a', '1')]);
    expect(sm.revision).toBe(3n);
    expect(get(sm, 'a')!.version).toBe(2n);
  });

  test('a delete that deletes nothing does not take a revision (etcd: End() bumps only with changes)', () => {
    const sm = new KvStateMachine();
    ok(sm.apply(command.put('a', '1')));
    const result = ok(sm.apply(command.delete('b')));
    expect(result.revision).toBe(2n);
    expect(result.events).toEqual([]);
    expect(result.response).toEqual({ $case: 'deleteRange', value: { header: undefined, deleted: 0n, prevKvs: [] } });
  });

  test('a read-only txn does not take a revision', () => {
    const sm = new KvStateMachine();
    ok(sm.apply(command.put('a', '1')));
    const result = ok(sm.apply(command.txn([compare.version('a', 'EQUAL', 1)], [op.range('a')])));
    expect(result.revision).toBe(2n);
    expect(sm.revision).toBe(2n);
  });
});

describe('put and delete (etcd KV.Put, KV.DeleteRange)', () => {
  test('put with prev_kv returns the previous key-value; without, nothing', () => {
    const sm = new KvStateMachine();
    const first = ok(sm.apply(command.put('a', '1', { prevKv: true })));
    expect(first.response).toEqual({ $case: 'put', value: { header: undefined, prevKv: undefined } });
    const second = ok(sm.apply(command.put('a', '2', { prevKv: true })));
    expect(second.response.value).toEqual({ header: undefined, prevKv: { key: Buffer.from('a'), value: Buffer.from('1'), createRevision: 2n, modRevision: 2n, version: 1n, lease: 0n } });
    const third = ok(sm.apply(command.put('a', '3')));
    expect(third.response.value).toEqual({ header: undefined, prevKv: undefined });
  });

  test('delete_range deletes [key, range_end), returns the count and, with prev_kv, the deleted pairs in key order', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.put('a', '1'), command.put('b', '2'), command.put('c', '3'), command.put('d', '4')]);
    const result = ok(sm.apply(command.delete('b', 'd', { prevKv: true })));
    expect(result.revision).toBe(6n);
    const response = result.response.value as { deleted: bigint; prevKvs: KeyValue[] };
    expect(response.deleted).toBe(2n);
    expect(pairs(response.prevKvs)).toEqual([['b', '2'], ['c', '3']]);
    expect(pairs(read(sm, 'a', FROM_KEY).kvs)).toEqual([['a', '1'], ['d', '4']]);
    expect(result.events.map((e) => [e.type, e.kv!.key.toString(), e.kv!.modRevision, e.prevKv!.value.toString()])).toEqual([
      [Event_EventType.EVENT_TYPE_DELETE, 'b', 6n, '2'],
      [Event_EventType.EVENT_TYPE_DELETE, 'c', 6n, '3'],
    ]);
  });

  test('a delete event carries the key and mod_revision only; its prev_kv the deleted value (etcd mvccpb.Event)', () => {
    const sm = new KvStateMachine();
    ok(sm.apply(command.put('a', '1')));
    const [event] = ok(sm.apply(command.delete('a'))).events;
    expect(event.kv).toEqual({ key: Buffer.from('a'), value: Buffer.alloc(0), createRevision: 0n, modRevision: 3n, version: 0n, lease: 0n });
    expect(event.prevKv).toMatchObject({ value: Buffer.from('1'), modRevision: 2n });
  });

  test('delete with range_end "\\0" deletes every key >= key', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.put('a', '1'), command.put('b', '2'), command.put('c', '3')]);
    expect((ok(sm.apply(command.delete('b', FROM_KEY))).response.value as { deleted: bigint }).deleted).toBe(2n);
    expect(pairs(read(sm, '\0', FROM_KEY).kvs)).toEqual([['a', '1']]);
  });
});

describe('range (etcd KV.Range)', () => {
  const sm = new KvStateMachine();
  beforeAll(() => applyAll(sm, ['a', 'ab', 'b', 'ba', 'c'].map((k, i) => command.put(k, String(i)))));

  test('an empty range_end reads one key', () => {
    expect(pairs(read(sm, 'ab').kvs)).toEqual([['ab', '1']]);
    expect(read(sm, 'zz')).toEqual({ header: undefined, kvs: [], more: false, count: 0n });
  });

  test('[key, range_end) is half-open and ordered by key bytes', () => {
    expect(pairs(read(sm, 'a', 'b').kvs).map(([k]) => k)).toEqual(['a', 'ab']);
    expect(pairs(read(sm, 'ab', 'c').kvs).map(([k]) => k)).toEqual(['ab', 'b', 'ba']);
  });

  test('range_end "\\0" reads every key >= key; key "\\0" with it reads every key', () => {
    expect(read(sm, 'b', FROM_KEY).kvs.map((kv) => kv.key.toString())).toEqual(['b', 'ba', 'c']);
    expect(read(sm, '\0', FROM_KEY).count).toBe(5n);
  });

  test('a range_end at or below key is empty', () => {
    expect(read(sm, 'b', 'a').count).toBe(0n);
    expect(read(sm, 'b', 'b').count).toBe(0n);
  });

  test('limit cuts kvs, count is the whole range, more says it was cut', () => {
    const response = read(sm, 'a', FROM_KEY, { limit: 2 });
    expect(response.kvs.map((kv) => kv.key.toString())).toEqual(['a', 'ab']);
    expect(response.count).toBe(5n);
    expect(response.more).toBe(true);
    expect(read(sm, 'a', FROM_KEY, { limit: 5 }).more).toBe(false);
  });

  test('keys_only drops values; count_only returns only the count', () => {
    expect(read(sm, 'a', 'b', { keysOnly: true }).kvs.map((kv) => [kv.key.toString(), kv.value.length, kv.version])).toEqual([
      ['a', 0, 1n],
      ['ab', 0, 1n],
    ]);
    expect(read(sm, 'a', FROM_KEY, { countOnly: true, limit: 1 })).toEqual({ header: undefined, kvs: [], more: false, count: 5n });
  });

  test('keys are ordered by bytes, not by UTF-16 or locale', () => {
    const binary = new KvStateMachine();
    const keys = [Buffer.from([0xff]), Buffer.from([0x80, 0x00]), Buffer.from([0x7f]), Buffer.from([0x01]), Buffer.from('é'), Buffer.from([0x80])];
    applyAll(binary, keys.map((k) => command.put(k, 'v')));
    const got = binary.range(rangeRequest(Buffer.from([0]), FROM_KEY));
    expect(got.ok && got.response.kvs.map((kv) => kv.key)).toEqual([...keys].sort(Buffer.compare));
  });

  test('revision reads the store as it was; a deleted key reappears at older revisions', () => {
    const h = new KvStateMachine();
    applyAll(h, [command.put('k', '1'), command.put('k', '2'), command.delete('k'), command.put('j', 'x')]);
    expect(get(h, 'k', 2)!.value.toString()).toBe('1');
    expect(get(h, 'k', 3)!.value.toString()).toBe('2');
    expect(get(h, 'k', 4)).toBeUndefined();
    expect(get(h, 'k', 1)).toBeUndefined();
    expect(read(h, '\0', FROM_KEY, { revision: 3 }).count).toBe(1n);
  });

  test('a future revision fails OUT_OF_RANGE "mvcc: required revision is a future revision"', () => {
    const outcome = sm.range(rangeRequest('a', '', { revision: 99 }));
    expect(outcome.ok).toBe(false);
    expect(!outcome.ok && [outcome.error.code, outcome.error.message]).toEqual(['OUT_OF_RANGE', 'etcdserver: mvcc: required revision is a future revision']);
  });

  test('an empty key fails "etcdserver: key is not provided"', () => {
    const outcome = sm.range(rangeRequest(''));
    expect(!outcome.ok && outcome.error.message).toBe('etcdserver: key is not provided');
  });
});

describe('txn (etcd KV.Txn: compares, then success or failure, as one revision)', () => {
  function setup(): KvStateMachine {
    const sm = new KvStateMachine();
    applyAll(sm, [command.grant(60, 7), command.put('a', 'apple'), command.put('a', 'avocado', { lease: 7n })]);
    return sm; // a: create 2, mod 3, version 2, lease 7, value 'avocado'; store at 3
  }

  test.each([
    ['version = 2', compare.version('a', 'EQUAL', 2), true],
    ['version > 1', compare.version('a', 'GREATER', 1), true],
    ['version < 2', compare.version('a', 'LESS', 2), false],
    ['version != 2', compare.version('a', 'NOT_EQUAL', 2), false],
    ['create = 2', compare.create('a', 'EQUAL', 2), true],
    ['create > 2', compare.create('a', 'GREATER', 2), false],
    ['mod = 3', compare.mod('a', 'EQUAL', 3), true],
    ['mod < 4', compare.mod('a', 'LESS', 4), true],
    ['value = avocado', compare.value('a', 'EQUAL', 'avocado'), true],
    ['value > apple (byte order)', compare.value('a', 'GREATER', 'apple'), true],
    ['value < b', compare.value('a', 'LESS', 'b'), true],
    ['value != avocado', compare.value('a', 'NOT_EQUAL', 'avocado'), false],
    ['lease = 7', compare.lease('a', 'EQUAL', 7), true],
    ['lease != 0', compare.lease('a', 'NOT_EQUAL', 0), true],
  ])('compare %s on an existing key', (_name, c, expected) => {
    const sm = setup();
    expect((ok(sm.apply(command.txn([c], [])))).response.value).toMatchObject({ succeeded: expected });
  });

  test.each([
    ['version = 0', compare.version('missing', 'EQUAL', 0), true],
    ['create = 0', compare.create('missing', 'EQUAL', 0), true],
    ['mod = 0', compare.mod('missing', 'EQUAL', 0), true],
    ['lease = 0', compare.lease('missing', 'EQUAL', 0), true],
    ['version > 0', compare.version('missing', 'GREATER', 0), false],
    ['value = ""', compare.value('missing', 'EQUAL', ''), false],
    ['value != x', compare.value('missing', 'NOT_EQUAL', 'x'), false],
    ['value < x', compare.value('missing', 'LESS', 'x'), false],
  ])('compare %s on a missing key (etcd: zero KeyValue, but a VALUE compare is always false)', (_name, c, expected) => {
    const sm = setup();
    expect(ok(sm.apply(command.txn([c], []))).response.value).toMatchObject({ succeeded: expected });
  });

  test('all compares must hold; success runs on true, failure on false, responses in op order', () => {
    const sm = setup();
    const taken = ok(sm.apply(command.txn([compare.version('a', 'EQUAL', 2), compare.version('b', 'EQUAL', 0)], [op.put('b', '1', { prevKv: true }), op.range('a'), op.delete('zz')], [op.put('c', 'no')])));
    expect(taken.revision).toBe(4n);
    const response = taken.response.value as { succeeded: boolean; responses: { response?: { $case: string } }[] };
    expect(response.succeeded).toBe(true);
    expect(response.responses.map((r) => r.response!.$case)).toEqual(['responsePut', 'responseRange', 'responseDeleteRange']);
    const otherwise = ok(sm.apply(command.txn([compare.version('a', 'EQUAL', 1)], [op.put('c', 'yes')], [op.put('c', 'no'), op.put('d', 'no')])));
    expect(otherwise.response.value).toMatchObject({ succeeded: false });
    expect(get(sm, 'c')!.value.toString()).toBe('no');
    expect(otherwise.revision).toBe(5n);
  });

  test('a range in a txn sees the txn\'s earlier writes (etcd txn reads its own writes)', () => {
    const sm = setup();
    const result = ok(sm.apply(command.txn([], [op.put('n', 'new'), op.delete('a'), op.range('\0', FROM_KEY)])));
    const range = (result.response.value as { responses: { response?: { value: unknown } }[] }).responses[2].response!.value as { kvs: KeyValue[] };
    expect(pairs(range.kvs)).toEqual([['n', 'new']]);
    expect(range.kvs[0].modRevision).toBe(4n);
  });

  test('a range in a txn at an explicit revision reads that revision', () => {
    const sm = setup();
    const result = ok(sm.apply(command.txn([], [op.put('a', 'new'), op.range('a', '', { revision: 2 })])));
    const range = (result.response.value as { responses: { response?: { value: unknown } }[] }).responses[1].response!.value as { kvs: KeyValue[] };
    expect(pairs(range.kvs)).toEqual([['a', 'apple']]);
  });

  test('etcd rejects a txn that puts one key twice: "duplicate key given in txn request", nothing changes', () => {
    const sm = setup();
    const hash = sm.hash();
    const result = failed(sm.apply(command.txn([], [op.put('x', '1'), op.put('x', '2')])));
    expect([result.error.code, result.error.message]).toEqual(['INVALID_ARGUMENT', 'etcdserver: duplicate key given in txn request']);
    expect(result.revision).toBe(3n);
    expect(sm.hash()).toBe(hash);
  });

  test('etcd rejects a txn that puts a key inside a range it deletes; overlapping deletes are allowed', () => {
    const sm = setup();
    expect(failed(sm.apply(command.txn([], [op.delete('a', 'c'), op.put('b', '1')]))).error.message).toBe('etcdserver: duplicate key given in txn request');
    expect(failed(sm.apply(command.txn([], [], [op.put('b', '1'), op.delete('\0', FROM_KEY)]))).error.code).toBe('INVALID_ARGUMENT');
    const overlapping = ok(sm.apply(command.txn([], [op.delete('a', 'c'), op.delete('a')])));
    expect(overlapping.response.value).toMatchObject({ succeeded: true });
    // The second delete found 'a' already gone within the same revision.
    expect((overlapping.response.value as { responses: { response?: { value: { deleted: bigint } } }[] }).responses.map((r) => r.response!.value.deleted)).toEqual([1n, 0n]);
  });

  test('a put to a missing lease anywhere in the branch fails the whole txn, nothing applied (etcd checkRequests)', () => {
    const sm = setup();
    const hash = sm.hash();
    const result = failed(sm.apply(command.txn([], [op.put('x', '1'), op.put('y', '2', { lease: 99n })])));
    expect([result.error.code, result.error.message]).toEqual(['NOT_FOUND', 'etcdserver: requested lease not found']);
    expect(sm.hash()).toBe(hash);
    expect(get(sm, 'x')).toBeUndefined();
  });

  test('only the branch taken is checked: a bad lease in the other branch does not matter', () => {
    const sm = setup();
    ok(sm.apply(command.txn([compare.version('a', 'EQUAL', 2)], [op.put('x', '1')], [op.put('y', '2', { lease: 99n })])));
    expect(get(sm, 'x')).toBeDefined();
  });

  test('a range at a compacted revision fails the whole txn, nothing applied', () => {
    const sm = setup();
    ok(sm.apply(command.compact(3)));
    const result = failed(sm.apply(command.txn([], [op.put('x', '1'), op.range('a', '', { revision: 2 })])));
    expect(result.error.message).toBe('etcdserver: mvcc: required revision has been compacted');
    expect(get(sm, 'x')).toBeUndefined();
  });

  test('a compare with no target or result is refused, not guessed', () => {
    const sm = setup();
    const c = compare.version('a', 'EQUAL', 2);
    expect(failed(sm.apply(command.txn([{ ...c, target: 0 }], []))).error.code).toBe('INVALID_ARGUMENT');
    expect(failed(sm.apply(command.txn([{ ...c, result: 0 }], []))).error.code).toBe('INVALID_ARGUMENT');
  });

  test('a compare whose target_union names another field compares with the target\'s zero (Go getters)', () => {
    const sm = setup();
    const mismatched = { ...compare.version('a', 'EQUAL', 2), targetUnion: { $case: 'lease' as const, value: 2n } };
    expect(ok(sm.apply(command.txn([mismatched], []))).response.value).toMatchObject({ succeeded: false });
    expect(ok(sm.apply(command.txn([{ ...mismatched, result: 2 /* GREATER */ }], []))).response.value).toMatchObject({ succeeded: true });
  });
});

describe('compaction (etcd KV.Compact)', () => {
  function history(): KvStateMachine {
    const sm = new KvStateMachine();
    // 2: a=1  3: a=2  4: b=1  5: del b  6: a=3  7: c=1
    applyAll(sm, [command.put('a', '1'), command.put('a', '2'), command.put('b', '1'), command.delete('b'), command.put('a', '3'), command.put('c', '1')]);
    return sm;
  }

  test('reads below the compact revision fail "mvcc: required revision has been compacted"; at and after it they answer as before', () => {
    const sm = history();
    const before = [5, 6, 7].map((revision) => read(sm, '\0', FROM_KEY, { revision }));
    const result = ok(sm.apply(command.compact(5)));
    expect(result.revision).toBe(7n); // compaction takes no revision
    expect([5, 6, 7].map((revision) => read(sm, '\0', FROM_KEY, { revision }))).toEqual(before);
    const outcome = sm.range(rangeRequest('a', '', { revision: 4 }));
    expect(!outcome.ok && [outcome.error.code, outcome.error.message, outcome.error.compactRevision]).toEqual(['OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted', 5n]);
    expect(sm.compactRevision).toBe(5n);
  });

  test('the latest version of each live key at the compact revision is kept; deleted keys are forgotten', () => {
    const sm = history();
    ok(sm.apply(command.compact(5)));
    expect(get(sm, 'a', 5)).toMatchObject({ value: Buffer.from('2'), modRevision: 3n, version: 2n, createRevision: 2n });
    expect(get(sm, 'b', 5)).toBeUndefined();
    // The snapshot holds 'a' at 3 and 6 and 'c' at 7; 'b' is gone.
    const restored = new KvStateMachine();
    restored.restore(sm.snapshot());
    expect(restored.hash()).toBe(sm.hash());
  });

  test('compacting at or below the last compaction fails compacted; above the current revision fails future', () => {
    const sm = history();
    ok(sm.apply(command.compact(4)));
    expect(failed(sm.apply(command.compact(4))).error.message).toBe('etcdserver: mvcc: required revision has been compacted');
    expect(failed(sm.apply(command.compact(3))).error.code).toBe('OUT_OF_RANGE');
    expect(failed(sm.apply(command.compact(8))).error.message).toBe('etcdserver: mvcc: required revision is a future revision');
    ok(sm.apply(command.compact(7)));
  });

  test('a key compacted to its last version keeps counting: version and create_revision survive', () => {
    const sm = history();
    ok(sm.apply(command.compact(7)));
    ok(sm.apply(command.put('a', '4')));
    expect(get(sm, 'a')).toMatchObject({ version: 4n, createRevision: 2n, modRevision: 8n });
  });
});

describe('leases (etcd Lease API; expiry is the leader\'s, through revokes)', () => {
  test('a grant with id 0 gets the next id after the highest ever granted; ids are never reused', () => {
    const sm = new KvStateMachine();
    expect(ok(sm.apply(command.grant(10))).response.value).toEqual({ header: undefined, id: 1n, ttl: 10n });
    expect(ok(sm.apply(command.grant(10, 50))).response.value).toMatchObject({ id: 50n });
    ok(sm.apply(command.revoke(50)));
    expect(ok(sm.apply(command.grant(10))).response.value).toMatchObject({ id: 51n });
    expect(sm.revision).toBe(1n); // grants and empty revokes take no revision
  });

  test('when the largest int64 id is granted, a grant that lets the server choose fails FAILED_PRECONDITION; explicit ids still work', () => {
    const sm = new KvStateMachine();
    ok(sm.apply(command.grant(10, (1n << 63n) - 1n)));
    expect(failed(sm.apply(command.grant(10))).error.code).toBe('FAILED_PRECONDITION');
    ok(sm.apply(command.grant(10, 7)));
  });

  test('granting an existing id fails "etcdserver: lease already exists"', () => {
    const sm = new KvStateMachine();
    ok(sm.apply(command.grant(10, 5)));
    const result = failed(sm.apply(command.grant(20, 5)));
    expect([result.error.code, result.error.message]).toEqual(['ALREADY_EXISTS', 'etcdserver: lease already exists']);
    expect(sm.lease(5n)!.ttl).toBe(10n);
  });

  test('TTLs outside 1..9e9 s are refused (etcd MaxLeaseTTL)', () => {
    const sm = new KvStateMachine();
    expect(failed(sm.apply(command.grant(9_000_000_001n))).error.message).toBe('etcdserver: too large lease TTL');
    expect(failed(sm.apply(command.grant(0))).error.code).toBe('INVALID_ARGUMENT');
    ok(sm.apply(command.grant(9_000_000_000n)));
  });

  test('a put with a missing lease fails "etcdserver: requested lease not found" and changes nothing', () => {
    const sm = new KvStateMachine();
    const result = failed(sm.apply(command.put('a', '1', { lease: 3n })));
    expect([result.error.code, result.error.message]).toEqual(['NOT_FOUND', 'etcdserver: requested lease not found']);
    expect(sm.revision).toBe(1n);
  });

  test('a put with a lease attaches the key; a put without one detaches it', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.grant(10, 1), command.grant(10, 2), command.put('a', '1', { lease: 1n }), command.put('b', '1', { lease: 1n })]);
    expect(sm.lease(1n)!.keys.map(String)).toEqual(['a', 'b']);
    ok(sm.apply(command.put('a', '2', { lease: 2n })));
    ok(sm.apply(command.put('b', '2')));
    expect(sm.lease(1n)!.keys).toEqual([]);
    expect(sm.leases().map((l) => [l.id, l.ttl, l.keys.map(String)])).toEqual([
      [1n, 10n, []],
      [2n, 10n, ['a']],
    ]);
    expect(get(sm, 'b')!.lease).toBe(0n);
  });

  test('a revoke deletes every attached key in ONE revision, in key order, and removes the lease', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.grant(10, 1), command.put('z', '1', { lease: 1n }), command.put('m', '1', { lease: 1n }), command.put('a', '1', { lease: 1n }), command.put('free', '1')]);
    const result = ok(sm.apply(command.revoke(1)));
    expect(result.revision).toBe(6n);
    expect(result.events.map((e) => [e.type, e.kv!.key.toString(), e.kv!.modRevision])).toEqual([
      [Event_EventType.EVENT_TYPE_DELETE, 'a', 6n],
      [Event_EventType.EVENT_TYPE_DELETE, 'm', 6n],
      [Event_EventType.EVENT_TYPE_DELETE, 'z', 6n],
    ]);
    expect(sm.lease(1n)).toBeUndefined();
    expect(pairs(read(sm, '\0', FROM_KEY).kvs)).toEqual([['free', '1']]);
    expect(failed(sm.apply(command.put('a', '1', { lease: 1n }))).error.code).toBe('NOT_FOUND');
  });

  test('a deleted key leaves its lease; revoking it later does not touch the key put again without a lease', () => {
    const sm = new KvStateMachine();
    applyAll(sm, [command.grant(10, 1), command.put('a', '1', { lease: 1n }), command.delete('a'), command.put('a', '2')]);
    expect(sm.lease(1n)!.keys).toEqual([]);
    expect(ok(sm.apply(command.revoke(1))).revision).toBe(4n);
    expect(get(sm, 'a')!.value.toString()).toBe('2');
  });

  test('revoking an unknown lease fails "etcdserver: requested lease not found"', () => {
    const result = failed(new KvStateMachine().apply(command.revoke(4)));
    expect([result.error.code, result.error.message]).toEqual(['NOT_FOUND', 'etcdserver: requested lease not found']);
  });
});

describe('apply never throws for a failing command', () => {
  test('a command with no operation is INVALID_ARGUMENT', () => {
    expect(failed(new KvStateMachine().apply({ op: undefined })).error.code).toBe('INVALID_ARGUMENT');
  });

  test('an empty key is "etcdserver: key is not provided", in a put, a delete, and inside a txn', () => {
    const sm = new KvStateMachine();
    for (const c of [command.put('', '1'), command.delete(''), command.txn([], [op.range('')]), command.txn([], [], [op.put('', 'x')])]) {
      expect(failed(sm.apply(c)).error.message).toBe('etcdserver: key is not provided');
    }
    expect(sm.revision).toBe(1n);
  });

  test('a txn op with no request is INVALID_ARGUMENT', () => {
    expect(failed(new KvStateMachine().apply(command.txn([], [{ request: undefined }]))).error.code).toBe('INVALID_ARGUMENT');
  });
});

describe('results share nothing mutable with the caller', () => {
  test('the store copies values: a caller reusing its buffer changes nothing', () => {
    const sm = new KvStateMachine();
    const value = Buffer.from('abc');
    ok(sm.apply({ op: { $case: 'put', value: { key: Buffer.from('k'), value, lease: 0n, prevKv: false } } }));
    value.write('xyz');
    expect(get(sm, 'k')!.value.toString()).toBe('abc');
  });
});
