// /v1/kv (reference/consul-compat.md §4.3, §4.4, §4.8; agent/kvs_endpoint.go, state/kvs.go) over
// real HTTP, on a fake consensus store.
import { DirEntry } from '../state/kv-reads';
import { keys } from '../state/keys';
import { send } from '../testing/http-harness';
import { KvServed, LeasedFakeConsensus, kvTestDeps, serveKv } from '../testing/kv-fake';

let consensus: LeasedFakeConsensus;
let served: KvServed;

beforeEach(async () => {
  consensus = new LeasedFakeConsensus();
  served = await serveKv(kvTestDeps(consensus));
});

afterEach(async () => {
  await served.close();
});

const get = (path: string) => served.call('GET', path);
const put = (path: string, body?: string | Uint8Array) => served.call('PUT', path, body ?? '');

describe('PUT then GET one key', () => {
  test('answers true, and the entry has Consul\'s shape: indexes are the consensus revisions', async () => {
    const written = await put('/v1/kv/web/config', 'hello');
    expect(written.status).toBe(200);
    expect(written.text).toBe('true');
    const revision = consensus.fake.revision;

    const read = await get('/v1/kv/web/config');
    expect(read.status).toBe(200);
    // Go's field order: LockIndex, Key, Flags, Value, (Session), CreateIndex, ModifyIndex.
    expect(read.text).toBe(`[{"LockIndex":0,"Key":"web/config","Flags":0,"Value":"aGVsbG8=","CreateIndex":${revision},"ModifyIndex":${revision}}]`);
    expect(read.headers.get('x-consul-index')).toBe(String(revision));
    expect(read.headers.get('x-consul-knownleader')).toBe('true');
  });

  test('an empty value reads as null; flags are a uint64, kept exact', async () => {
    await put('/v1/kv/empty?flags=18446744073709551615');
    const read = await get('/v1/kv/empty');
    expect(read.text).toContain('"Flags":18446744073709551615,"Value":null');
  });

  test('keys are case-sensitive', async () => {
    await put('/v1/kv/Key', 'upper');
    expect((await get('/v1/kv/key')).status).toBe(404);
    expect((await get('/v1/kv/Key')).status).toBe(200);
  });

  test('a second PUT keeps CreateIndex and moves ModifyIndex; an identical PUT changes nothing', async () => {
    await put('/v1/kv/k', 'one');
    const created = consensus.fake.revision;
    await put('/v1/kv/k', 'two');
    const modified = consensus.fake.revision;
    expect(modified).toBeGreaterThan(created);
    await put('/v1/kv/k', 'two');
    expect(consensus.fake.revision).toBe(modified);
    const [entry] = (await get('/v1/kv/k')).json<DirEntry[]>();
    expect(entry).toMatchObject({ CreateIndex: created, ModifyIndex: modified });
  });

  test('?raw is the bare value as text/plain, with Consul\'s anti-sniffing headers', async () => {
    await put('/v1/kv/page', '<script>alert(1)</script>');
    const raw = await get('/v1/kv/page?raw');
    expect(raw.text).toBe('<script>alert(1)</script>');
    expect(raw.headers.get('content-type')).toBe('text/plain');
    expect(raw.headers.get('x-content-type-options')).toBe('nosniff');
    expect(raw.headers.get('content-security-policy')).toBe('sandbox');
  });

  test('binary values survive byte for byte', async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 10, 13]);
    await put('/v1/kv/bin', bytes);
    const [entry] = (await get('/v1/kv/bin')).json<DirEntry[]>();
    expect(Buffer.from(entry.Value!, 'base64')).toEqual(bytes);
  });
});

describe('absent keys', () => {
  test('404 with an empty body and the index headers (the kvs table index)', async () => {
    await put('/v1/kv/other', 'x');
    const read = await get('/v1/kv/missing');
    expect(read.status).toBe(404);
    expect(read.text).toBe('');
    expect(read.headers.get('x-consul-index')).toBe(String(consensus.fake.revision));
    expect(read.headers.get('x-consul-knownleader')).toBe('true');
  });

  test('an empty store answers index 1, never 0 (§4.4)', async () => {
    const read = await get('/v1/kv/missing');
    expect(read.headers.get('x-consul-index')).toBe('1');
  });
});

describe('recurse and keys', () => {
  beforeEach(async () => {
    for (const key of ['web/b', 'web/a', 'web/sub/c', 'webby', 'db/x']) await put(`/v1/kv/${key}`, key);
  });

  test('recurse lists every key under the prefix, in key order; the index is the highest ModifyIndex', async () => {
    const read = await get('/v1/kv/web/?recurse');
    const entries = read.json<DirEntry[]>();
    expect(entries.map((e) => e.Key)).toEqual(['web/a', 'web/b', 'web/sub/c']);
    expect(read.headers.get('x-consul-index')).toBe(String(Math.max(...entries.map((e) => e.ModifyIndex))));
  });

  test('a delete under the prefix moves its index (Consul\'s graveyard), one elsewhere does not', async () => {
    await served.call('DELETE', '/v1/kv/web/a');
    const deletedAt = consensus.fake.revision;
    await served.call('DELETE', '/v1/kv/db/x');
    const read = await get('/v1/kv/web/?recurse');
    expect(read.headers.get('x-consul-index')).toBe(String(deletedAt));
  });

  test('an empty prefix result is a 404 with headers', async () => {
    const read = await get('/v1/kv/nothing/?recurse');
    expect(read.status).toBe(404);
    expect(read.headers.get('x-consul-index')).not.toBeNull();
  });

  test('keys with a separator cut each key after the first separator past the prefix', async () => {
    expect((await get('/v1/kv/web/?keys&separator=/')).json()).toEqual(['web/a', 'web/b', 'web/sub/']);
    expect((await get('/v1/kv/?keys&separator=/')).json()).toEqual(['db/', 'web/', 'webby']);
    // The old spelling still works.
    expect((await get('/v1/kv/?keys&seperator=/')).json()).toEqual(['db/', 'web/', 'webby']);
    expect((await get('/v1/kv/web?keys')).json()).toEqual(['web/a', 'web/b', 'web/sub/c', 'webby']);
  });

  test('keys of nothing: 404 under a prefix, [] at the root', async () => {
    expect((await get('/v1/kv/zzz?keys')).status).toBe(404);
    await served.call('DELETE', '/v1/kv/?recurse');
    const root = await get('/v1/kv/?keys');
    expect(root.status).toBe(200);
    expect(root.json()).toEqual([]);
  });
});

describe('check-and-set', () => {
  test('cas=0 creates only', async () => {
    expect((await put('/v1/kv/once?cas=0', 'a')).text).toBe('true');
    expect((await put('/v1/kv/once?cas=0', 'b')).text).toBe('false');
    expect(Buffer.from((await get('/v1/kv/once')).json<DirEntry[]>()[0].Value!, 'base64').toString()).toBe('a');
  });

  test('cas=N writes only when ModifyIndex is N', async () => {
    await put('/v1/kv/c', 'a');
    const [entry] = (await get('/v1/kv/c')).json<DirEntry[]>();
    expect((await put(`/v1/kv/c?cas=${entry.ModifyIndex + 1}`, 'b')).text).toBe('false');
    expect((await put(`/v1/kv/c?cas=${entry.ModifyIndex}`, 'b')).text).toBe('true');
    expect((await put(`/v1/kv/c?cas=${entry.ModifyIndex}`, 'c')).text).toBe('false');
    expect((await put('/v1/kv/absent?cas=5', 'x')).text).toBe('false');
  });
});

describe('DELETE', () => {
  test('one key; deleting an absent key is true too', async () => {
    await put('/v1/kv/d', 'x');
    expect((await served.call('DELETE', '/v1/kv/d')).text).toBe('true');
    expect((await get('/v1/kv/d')).status).toBe(404);
    expect((await served.call('DELETE', '/v1/kv/d')).text).toBe('true');
  });

  test('recurse deletes the whole prefix and nothing else', async () => {
    for (const key of ['p/a', 'p/b/c', 'q']) await put(`/v1/kv/${key}`, 'x');
    expect((await served.call('DELETE', '/v1/kv/p/?recurse')).text).toBe('true');
    expect(consensus.fake.keys(keys.kv(''))).toEqual([keys.kv('q')]);
  });

  test('cas: only at the ModifyIndex; cas=0 never deletes an existing key; an absent key is true', async () => {
    await put('/v1/kv/e', 'x');
    const [entry] = (await get('/v1/kv/e')).json<DirEntry[]>();
    expect((await served.call('DELETE', '/v1/kv/e?cas=0')).text).toBe('false');
    expect((await served.call('DELETE', `/v1/kv/e?cas=${entry.ModifyIndex + 1}`)).text).toBe('false');
    expect((await served.call('DELETE', `/v1/kv/e?cas=${entry.ModifyIndex}`)).text).toBe('true');
    expect((await served.call('DELETE', '/v1/kv/e?cas=3')).text).toBe('true');
  });
});

/** A request whose path goes on the wire as written (fetch would resolve ".."). */
async function rawCall(method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  const { status, text } = await send(new URL(served.base).host, method, path, body);
  return { status, text };
}

describe('path traversal (reliability.md S7; Consul\'s 2025 fix, agent/kvs_endpoint.go): a 400, nothing written', () => {
  test('".." in the raw path, plain or percent-encoded, never reaches another route', async () => {
    for (const [path, text] of [
      ['/v1/kv/../session/list', 'URL path contains invalid traversal sequence'],
      ['/v1/kv/a/../../txn', 'URL path contains invalid traversal sequence'],
      ['/v1/kv/app/..', 'URL path contains invalid traversal sequence'],
      ['/v1/kv/%2e%2e/session/list', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/%2E%2E%2Fsession', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/..%2fsession', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/%252e%252e%252fsession', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/.%2E/session/list', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/a%2F..%2F..%2Fb', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/a%5C..%5Cb', 'URL path contains encoded traversal sequence'],
    ]) {
      for (const method of ['GET', 'PUT', 'DELETE']) expect([path, method, await rawCall(method, path, method === 'PUT' ? 'x' : undefined)]).toEqual([path, method, { status: 400, text }]);
    }
    expect(consensus.fake.keys(keys.kv(''))).toEqual([]);
  });

  test('keys Consul refuses: a leading "/", a key that normalizes above its root, a key spelling an encoded "../"; and (ours) NUL', async () => {
    for (const [path, text] of [
      ['/v1/kv/%2Fetc/passwd', "key must not begin with a '/'"],
      ['/v1/kv/..hidden', 'key contains path traversal sequence after normalization'],
      ['/v1/kv/a%252e%252e%252fb', 'URL path contains encoded traversal sequence'],
      ['/v1/kv/a%25%32e%25%32e%25%32fb', 'key contains encoded path traversal sequence'],
      ['/v1/kv/a%00b', 'key must not contain a NUL character'],
    ]) {
      expect([path, await rawCall('PUT', path, 'x')]).toEqual([path, { status: 400, text }]);
    }
    expect(consensus.fake.keys(keys.kv(''))).toEqual([]);
    // Dots that do not climb stay keys: Consul takes them too.
    for (const path of ['/v1/kv/a..b', '/v1/kv/v1.2/config', '/v1/kv/.hidden', '/v1/kv/a/./b']) expect([path, (await rawCall('PUT', path, 'x')).status]).toEqual([path, 200]);
  });
});

describe('Consul\'s refusals, with its texts (§4.8)', () => {
  test('a missing key name is a 400', async () => {
    for (const [method, path] of [['PUT', '/v1/kv/'], ['GET', '/v1/kv/'], ['DELETE', '/v1/kv/']]) {
      const answer = await served.call(method, path);
      expect([answer.status, answer.text]).toEqual([400, 'Missing key name']);
    }
  });

  test('conflicting flags: a 400 naming the whole query, as url.Values.Encode writes it', async () => {
    const answer = await put('/v1/kv/k?release=b&cas=1&acquire=a', 'x');
    expect(answer.status).toBe(400);
    expect(answer.text).toBe('Conflicting flags: acquire=a&cas=1&release=b\n');
    const del = await served.call('DELETE', '/v1/kv/k?recurse&cas=2');
    expect([del.status, del.text]).toEqual([400, 'Conflicting flags: cas=2&recurse=\n']);
  });

  test('bad flags or cas: Go\'s strconv error, as a 500', async () => {
    const flags = await put('/v1/kv/k?flags=abc', 'x');
    expect([flags.status, flags.text]).toEqual([500, 'strconv.ParseUint: parsing "abc": invalid syntax']);
    const cas = await put('/v1/kv/k?cas=-1', 'x');
    expect([cas.status, cas.text]).toEqual([500, 'strconv.ParseUint: parsing "-1": invalid syntax']);
    const big = await put('/v1/kv/k?flags=18446744073709551616', 'x');
    expect(big.text).toBe('strconv.ParseUint: parsing "18446744073709551616": value out of range');
  });

  test('a value over 512 KiB is a 413 with Consul\'s text; 512 KiB itself passes the HTTP check', async () => {
    const answer = await put('/v1/kv/big', Buffer.alloc(512 * 1024 + 1, 'a'));
    expect(answer.status).toBe(413);
    expect(answer.text).toBe('Request body(524289 bytes) too large, max size: 524288 bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.');
    expect((await get('/v1/kv/big')).status).toBe(404);
    expect((await put('/v1/kv/big', Buffer.alloc(512 * 1024, 'a'))).text).toBe('true');
  });

  // Another datacenter (?dc=) never reaches the handlers: remote-datacenter.test.ts.

  test('?stale with ?consistent is a 400', async () => {
    const answer = await get('/v1/kv/k?stale&consistent');
    expect([answer.status, answer.text]).toEqual([400, 'Cannot specify ?stale with ?consistent, conflicting semantics.']);
  });

  test('another method: 405 with Allow', async () => {
    const answer = await served.call('POST', '/v1/kv/k');
    expect(answer.status).toBe(405);
    expect(answer.headers.get('allow')).toBe('OPTIONS,GET,PUT,DELETE');
  });
});

describe('blocking queries (§4.4)', () => {
  test('a GET at the current index waits until a PUT moves it', async () => {
    await put('/v1/kv/watched', 'one');
    const index = (await get('/v1/kv/watched')).headers.get('x-consul-index');
    const started = Date.now();
    const waiting = get(`/v1/kv/watched?index=${index}&wait=5s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await put('/v1/kv/watched', 'two');
    const woken = await waiting;
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(Number(woken.headers.get('x-consul-index'))).toBeGreaterThan(Number(index));
    expect(Buffer.from(woken.json<DirEntry[]>()[0].Value!, 'base64').toString()).toBe('two');
  });

  test('a recursive GET wakes on a delete under its prefix', async () => {
    await put('/v1/kv/tree/a', 'x');
    await put('/v1/kv/tree/b', 'x');
    const index = (await get('/v1/kv/tree/?recurse')).headers.get('x-consul-index');
    const waiting = get(`/v1/kv/tree/?recurse&index=${index}&wait=5s`);
    await put('/v1/kv/elsewhere', 'x');
    await served.call('DELETE', '/v1/kv/tree/a');
    const woken = await waiting;
    expect(woken.json<DirEntry[]>().map((e) => e.Key)).toEqual(['tree/b']);
    expect(Number(woken.headers.get('x-consul-index'))).toBe(consensus.fake.revision);
  });

  test('a change to another key does not end the wait (the result\'s own index did not move)', async () => {
    await put('/v1/kv/mine', 'x');
    const index = (await get('/v1/kv/mine')).headers.get('x-consul-index');
    const started = Date.now();
    const waiting = get(`/v1/kv/mine?index=${index}&wait=400ms`);
    await put('/v1/kv/theirs', 'x');
    await put('/v1/kv/theirs', 'y');
    const answer = await waiting;
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(answer.headers.get('x-consul-index')).toBe(index);
  });

  test('a wait that runs out answers the unchanged result', async () => {
    await put('/v1/kv/still', 'x');
    const index = (await get('/v1/kv/still')).headers.get('x-consul-index');
    const answer = await get(`/v1/kv/still?index=${index}&wait=100ms`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-consul-index')).toBe(index);
  });
});
