// /v1/session (agent/session_endpoint.go, agent/consul/session_endpoint.go, state/session.go)
// and the locks sessions hold through /v1/kv ?acquire / ?release (state/kvs.go kvsLockTxn,
// kvsUnlockTxn), over real HTTP on a fake consensus store with leases.
import { DirEntry } from '../state/kv-reads';
import { keys } from '../state/keys';
import { LockDelays } from '../state/lock-delay';
import { SessionJson } from '../state/sessions';
import { KvServed, LeasedFakeConsensus, kvTestDeps, registerNode, serveKv } from '../testing/kv-fake';

let consensus: LeasedFakeConsensus;
let served: KvServed;
let now = 1_000_000;
const lockDelays = new LockDelays({ monotonicMs: () => now });

beforeEach(async () => {
  consensus = new LeasedFakeConsensus();
  served = await serveKv(kvTestDeps(consensus, lockDelays));
});

afterEach(async () => {
  await served.close();
});

async function create(body?: unknown): Promise<string> {
  const answer = await served.call('PUT', '/v1/session/create', body);
  expect([answer.status, answer.text]).toEqual([200, expect.stringMatching(/^\{"ID":"[0-9a-f-]{36}"\}$/)]);
  return answer.json<{ ID: string }>().ID;
}

async function info(id: string): Promise<SessionJson> {
  const answer = await served.call('GET', `/v1/session/info/${id}`);
  expect(answer.status).toBe(200);
  return answer.json<SessionJson[]>()[0];
}

async function entry(key: string): Promise<DirEntry | undefined> {
  const answer = await served.call('GET', `/v1/kv/${key}`);
  return answer.status === 404 ? undefined : answer.json<DirEntry[]>()[0];
}

describe('session create', () => {
  test('the node must be registered (state store ErrMissingNode), with its text, as a 500', async () => {
    const answer = await served.call('PUT', '/v1/session/create');
    expect([answer.status, answer.text]).toEqual([500, 'Missing node registration']);
  });

  test('defaults: this catalog\'s node, serfHealth, 15 s lock-delay, release; Consul\'s JSON shape', async () => {
    registerNode(consensus, 'catalog-1');
    const id = await create();
    const answer = await served.call('GET', `/v1/session/info/${id}`);
    const revision = consensus.fake.revision;
    expect(answer.text).toBe(
      `[{"ID":"${id}","Name":"","Node":"catalog-1","LockDelay":15000000000,"Behavior":"release","TTL":"","NodeChecks":["serfHealth"],"ServiceChecks":null,"CreateIndex":${revision},"ModifyIndex":${revision}}]`,
    );
    expect(answer.headers.get('x-consul-index')).toBe(String(revision));
  });

  test('a body sets Name, Node, Behavior, TTL; LockDelay below 1000 means seconds, a string is a Go duration', async () => {
    registerNode(consensus, 'web-1');
    const a = await info(await create({ Name: 'lock', Node: 'web-1', Behavior: 'delete', TTL: '30s', LockDelay: 5 }));
    expect(a).toMatchObject({ Name: 'lock', Node: 'web-1', Behavior: 'delete', TTL: '30s', LockDelay: 5e9 });
    expect((await info(await create({ node: 'web-1', lockdelay: '1.5s' }))).LockDelay).toBe(1.5e9);
    expect((await info(await create({ Node: 'web-1', LockDelay: 2_000_000_000 }))).LockDelay).toBe(2e9);
  });

  test('Checks: [] means no checks (fixupEmptySessionChecks); NodeChecks and ServiceChecks are kept', async () => {
    registerNode(consensus, 'web-1', 'passing', ['svc:1']);
    expect((await info(await create({ Node: 'web-1', Checks: [] }))).NodeChecks).toEqual([]);
    const both = await info(await create({ Node: 'web-1', NodeChecks: ['serfHealth'], ServiceChecks: [{ ID: 'svc:1' }] }));
    expect(both).toMatchObject({ NodeChecks: ['serfHealth'], ServiceChecks: [{ ID: 'svc:1', Namespace: '' }] });
  });

  test('Consul\'s texts for bad sessions, as 500s', async () => {
    registerNode(consensus, 'catalog-1');
    const cases: [unknown, string][] = [
      [{ TTL: '5s' }, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"],
      [{ TTL: '25h' }, "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]"],
      [{ TTL: 'soon' }, 'Session TTL \'soon\' invalid: time: invalid duration "soon"'],
      [{ TTL: '10' }, 'Session TTL \'10\' invalid: time: missing unit in duration "10"'],
      [{ Behavior: 'explode' }, "Invalid Behavior setting 'explode'"],
      [{ Node: '' }, 'Must provide Node'],
      [{ NodeChecks: ['nope'] }, "Missing check 'nope' registration"],
    ];
    for (const [body, text] of cases) {
      const answer = await served.call('PUT', '/v1/session/create', body);
      expect([answer.status, answer.text]).toEqual([500, text]);
    }
    expect(consensus.fake.keys(keys.prefix('sessions'))).toEqual([]);
  });

  test('a critical check refuses the session', async () => {
    registerNode(consensus, 'sick', 'critical');
    const answer = await served.call('PUT', '/v1/session/create', { Node: 'sick' });
    expect([answer.status, answer.text]).toEqual([500, "Check 'serfHealth' is in critical state"]);
  });

  test('a body that is not JSON: 400 Request decode failed, with Go\'s text', async () => {
    const answer = await served.call('PUT', '/v1/session/create', '{"Name": ');
    expect([answer.status, answer.text]).toEqual([400, 'Request decode failed: unexpected EOF']);
    const typed = await served.call('PUT', '/v1/session/create', '{"Name": 5}');
    expect([typed.status, typed.text]).toEqual([400, 'Request decode failed: json: cannot unmarshal number into Go struct field Session.Name of type string']);
    const delay = await served.call('PUT', '/v1/session/create', '{"LockDelay": "later"}');
    expect([delay.status, delay.text]).toEqual([400, 'Request decode failed: time: invalid duration "later"']);
  });

  test('a TTL session lives on a lease of twice its TTL', async () => {
    registerNode(consensus, 'catalog-1');
    await create({ TTL: '15s' });
    expect([...consensus.leases.values()].map((lease) => lease.ttl)).toEqual([30n]);
  });
});

describe('session reads', () => {
  test('info of an unknown session is [] with the index headers; list and node list every session', async () => {
    registerNode(consensus, 'a');
    registerNode(consensus, 'b');
    const unknown = await served.call('GET', '/v1/session/info/00000000-0000-0000-0000-000000000000');
    expect([unknown.status, unknown.text]).toEqual([200, '[]']);
    expect(unknown.headers.get('x-consul-index')).not.toBeNull();
    const first = await create({ Node: 'a' });
    const second = await create({ Node: 'B' });
    const list = (await served.call('GET', '/v1/session/list')).json<SessionJson[]>();
    expect(list.map((s) => s.ID).sort()).toEqual([first, second].sort());
    // Node names match case-insensitively, as Consul's node index does.
    expect((await served.call('GET', '/v1/session/node/b')).json<SessionJson[]>().map((s) => s.ID)).toEqual([second]);
  });

  test('missing IDs and node names are 400s with Consul\'s texts', async () => {
    for (const [method, path, text] of [
      ['PUT', '/v1/session/destroy/', 'Missing session'],
      ['PUT', '/v1/session/renew/', 'Missing session'],
      ['GET', '/v1/session/info/', 'Missing session'],
      ['GET', '/v1/session/node/', 'Missing node name'],
    ]) {
      const answer = await served.call(method, path);
      expect([answer.status, answer.text]).toEqual([400, text]);
    }
  });

  test('a blocking list wakes when a session is created', async () => {
    registerNode(consensus, 'catalog-1');
    const index = (await served.call('GET', '/v1/session/list')).headers.get('x-consul-index');
    const waiting = served.call('GET', `/v1/session/list?index=${index}&wait=5s`);
    const id = await create();
    const woken = await waiting;
    expect(woken.json<SessionJson[]>().map((s) => s.ID)).toEqual([id]);
  });
});

describe('session renew and destroy', () => {
  test('renew keeps the lease alive and answers the session; an unknown one is a 404 with Consul\'s text', async () => {
    registerNode(consensus, 'catalog-1');
    const id = await create({ TTL: '10s' });
    const renewed = await served.call('PUT', `/v1/session/renew/${id}`);
    expect(renewed.status).toBe(200);
    expect(renewed.json<SessionJson[]>()[0]).toMatchObject({ ID: id, TTL: '10s' });
    expect(consensus.keepAlives).toHaveLength(1);
    const unknown = await served.call('PUT', '/v1/session/renew/8a6f2a4e-0000-0000-0000-000000000000');
    expect([unknown.status, unknown.text]).toEqual([404, "Session id '8a6f2a4e-0000-0000-0000-000000000000' not found"]);
  });

  test('renewing a session whose lease just expired is a 404', async () => {
    registerNode(consensus, 'catalog-1');
    const id = await create({ TTL: '10s' });
    const [lease] = [...consensus.leases.keys()];
    consensus.leases.delete(lease); // gone at the store, its row not yet
    const answer = await served.call('PUT', `/v1/session/renew/${id}`);
    expect(answer.status).toBe(404);
  });

  test('destroy answers true (an unknown session too) and revokes the lease', async () => {
    registerNode(consensus, 'catalog-1');
    const id = await create({ TTL: '10s' });
    expect((await served.call('PUT', `/v1/session/destroy/${id}`)).text).toBe('true');
    expect((await served.call('GET', `/v1/session/info/${id}`)).text).toBe('[]');
    expect(consensus.leases.size).toBe(0);
    expect((await served.call('PUT', `/v1/session/destroy/${id}`)).text).toBe('true');
  });
});

describe('locks (?acquire / ?release)', () => {
  let s1: string;
  let s2: string;

  beforeEach(async () => {
    registerNode(consensus, 'catalog-1');
    s1 = await create();
    s2 = await create();
  });

  test('acquire takes a free key: LockIndex 1, Session set, the value written', async () => {
    expect((await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me')).text).toBe('true');
    expect(await entry('leader')).toMatchObject({ LockIndex: 1, Session: s1, Value: Buffer.from('me').toString('base64') });
  });

  test('another session cannot take a held lock; the holder re-acquiring keeps LockIndex', async () => {
    await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me');
    expect((await served.call('PUT', `/v1/kv/leader?acquire=${s2}`, 'them')).text).toBe('false');
    expect((await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me again')).text).toBe('true');
    expect(await entry('leader')).toMatchObject({ LockIndex: 1, Session: s1, Value: Buffer.from('me again').toString('base64') });
  });

  test('release: only by the holder; it clears Session, keeps LockIndex; the next acquire bumps it', async () => {
    await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me');
    expect((await served.call('PUT', `/v1/kv/leader?release=${s2}`)).text).toBe('false');
    expect((await served.call('PUT', `/v1/kv/leader?release=${s1}`, 'bye')).text).toBe('true');
    const released = await entry('leader');
    expect(released).toMatchObject({ LockIndex: 1, Value: Buffer.from('bye').toString('base64') });
    expect(released).not.toHaveProperty('Session');
    expect((await served.call('PUT', `/v1/kv/leader?acquire=${s2}`, 'them')).text).toBe('true');
    expect(await entry('leader')).toMatchObject({ LockIndex: 2, Session: s2 });
    expect((await served.call('PUT', '/v1/kv/absent?release=' + s1)).text).toBe('false');
  });

  test('a plain PUT on a held key keeps its Session (and takes LockIndex 0 from the request, as Consul does)', async () => {
    await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me');
    await served.call('PUT', '/v1/kv/leader', 'overwritten');
    expect(await entry('leader')).toMatchObject({ LockIndex: 0, Session: s1 });
  });

  test('an unknown session is Consul\'s `invalid session "<id>"` (500); an empty one `missing session`', async () => {
    const unknown = await served.call('PUT', '/v1/kv/leader?acquire=nope', 'x');
    expect([unknown.status, unknown.text]).toEqual([500, 'invalid session "nope"']);
    const empty = await served.call('PUT', '/v1/kv/leader?acquire=', 'x');
    expect([empty.status, empty.text]).toEqual([500, 'missing session']);
    const release = await served.call('PUT', '/v1/kv/leader?release=', 'x');
    expect([release.status, release.text]).toEqual([500, 'missing session']);
  });

  test('destroying the holder releases its locks (LockIndex kept) and starts the lock-delay', async () => {
    await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me');
    await served.call('PUT', `/v1/session/destroy/${s1}`);
    const released = await entry('leader');
    expect(released).toMatchObject({ LockIndex: 1 });
    expect(released).not.toHaveProperty('Session');
    // 15 s default lock-delay: refused (false, not an error) until it passes.
    expect((await served.call('PUT', `/v1/kv/leader?acquire=${s2}`, 'them')).text).toBe('false');
    now += 15_001;
    expect((await served.call('PUT', `/v1/kv/leader?acquire=${s2}`, 'them')).text).toBe('true');
  });

  test('Behavior=delete: destroying the holder deletes its keys', async () => {
    const deleter = await create({ Behavior: 'delete', LockDelay: '0s' });
    await served.call('PUT', `/v1/kv/ephemeral?acquire=${deleter}`, 'x');
    await served.call('PUT', '/v1/kv/kept', 'y');
    await served.call('PUT', `/v1/session/destroy/${deleter}`);
    expect(await entry('ephemeral')).toBeUndefined();
    expect(await entry('kept')).toBeDefined();
    // LockDelay 0: nothing delayed.
    expect((await served.call('PUT', `/v1/kv/ephemeral?acquire=${s2}`, 'x')).text).toBe('true');
  });

  test('an acquire racing the session\'s destroy fails: the Txn checks the session still exists', async () => {
    let raced = false;
    consensus.fake.beforeTxn = () => {
      if (raced) return;
      raced = true;
      consensus.fake.delete(keys.session(s1));
    };
    const answer = await served.call('PUT', `/v1/kv/leader?acquire=${s1}`, 'me');
    expect([answer.status, answer.text]).toEqual([500, `invalid session "${s1}"`]);
    expect(await entry('leader')).toBeUndefined();
  });
});
