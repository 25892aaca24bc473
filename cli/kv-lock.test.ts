// api/lock.go against the catalog's real KV and session endpoints (in-process, fake consensus):
// mutual exclusion, waiting on the key's index, the one-shot timeout, the flag conflict, loss when
// the session ends, monitor retries, cleanup.
import { HttpApi, HttpApiError } from './http-api';
import { Api, kvGet } from './kv-api';
import { ERR_LOCK_CONFLICT, ERR_LOCK_IN_USE, LOCK_FLAG_VALUE, Lock } from './kv-lock';
import { ServedCatalog, serveCatalog } from './testing/served-catalog';

let catalog: ServedCatalog;
let api: HttpApi;
const stop = new AbortController();

beforeEach(async () => {
  catalog = await serveCatalog();
  api = new HttpApi(new Map([['http-addr', catalog.base]]), {});
});

afterEach(() => catalog.close());

interface SessionInfo {
  ID: string;
  Name: string;
  TTL: string;
  Behavior: string;
}

const sessions = async () => (await catalog.call('GET', '/v1/session/list')).json<SessionInfo[]>();
const tick = () => new Promise((resolve) => setTimeout(resolve, 50));

describe('Lock', () => {
  test('takes a free key with its session (TTL 15s) and Consul\'s lock flag; release frees it and ends the session', async () => {
    const lock = new Lock(api, { key: 'service/web/.lock', sessionName: 'Consul lock for \'true\' at \'service/web\'' });
    const held = await lock.acquire(stop.signal);
    expect(held).toBeDefined();
    const [session] = await sessions();
    expect(session).toMatchObject({ Name: "Consul lock for 'true' at 'service/web'", TTL: '15s', Behavior: 'release' });
    const { pair } = await kvGet(api, 'service/web/.lock');
    expect(pair).toMatchObject({ Session: session.ID, Flags: LOCK_FLAG_VALUE, LockIndex: 1 });

    await lock.release();
    expect((await kvGet(api, 'service/web/.lock')).pair?.Session).toBe('');
    expect(await sessions()).toEqual([]);
    expect(held!.lost.aborted).toBe(true);
    await lock.destroy();
    expect((await kvGet(api, 'service/web/.lock')).pair).toBeUndefined();
  });

  test('a second holder blocks on the key until the first releases; never both at once', async () => {
    const first = new Lock(api, { key: 'k/.lock', sessionName: 'one' });
    const second = new Lock(api, { key: 'k/.lock', sessionName: 'two' });
    await first.acquire(stop.signal);
    let secondHeld = false;
    const waiting = second.acquire(stop.signal).then((held) => {
      secondHeld = held !== undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(secondHeld).toBe(false);
    await first.release();
    await waiting;
    expect(secondHeld).toBe(true);
    expect((await sessions()).map((s) => s.Name)).toEqual(['two']);
    await expect(first.destroy()).rejects.toThrow(ERR_LOCK_IN_USE);
    await second.release();
  });

  test('one-shot (-timeout): gives up after the wait, and destroys the session it made', async () => {
    const holder = new Lock(api, { key: 'busy/.lock', sessionName: 'holder' });
    await holder.acquire(stop.signal);
    const started = Date.now();
    const tryOnce = new Lock(api, { key: 'busy/.lock', sessionName: 'waiter', lockTryOnce: true, lockWaitMs: 400 });
    expect(await tryOnce.acquire(stop.signal)).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect((await sessions()).map((s) => s.Name)).toEqual(['holder']);
    await holder.release();
  });

  test('a stop signal ends the wait: undefined, no error', async () => {
    const holder = new Lock(api, { key: 'stop/.lock', sessionName: 'holder' });
    await holder.acquire(stop.signal);
    const shutdown = new AbortController();
    const waiting = new Lock(api, { key: 'stop/.lock', sessionName: 'waiter' }).acquire(shutdown.signal);
    await tick();
    shutdown.abort();
    expect(await waiting).toBeUndefined();
    await holder.release();
  });

  test('a key written by something else is a conflict, with Consul\'s text', async () => {
    await catalog.call('PUT', '/v1/kv/other/.lock', 'not a lock');
    await expect(new Lock(api, { key: 'other/.lock', sessionName: 'x' }).acquire(stop.signal)).rejects.toThrow(ERR_LOCK_CONFLICT);
    expect(await sessions()).toEqual([]);
  });

  test('the lock is lost when its session is destroyed (the key released under it)', async () => {
    const lock = new Lock(api, { key: 'lost/.lock', sessionName: 'x' });
    const held = (await lock.acquire(stop.signal))!;
    const [session] = await sessions();
    await catalog.call('PUT', `/v1/session/destroy/${session.ID}`);
    await new Promise<void>((resolve) => (held.lost.aborted ? resolve() : held.lost.addEventListener('abort', () => resolve())));
    // Release after the loss is no error: the key is simply not ours any more.
    await lock.release();
  });

  test('-monitor-retry: failed monitor reads (500s) are ridden out up to the limit, then the lock counts as lost', async () => {
    // The first `failures` consistent reads of the key fail.
    const failing = (failures: number): Api => ({
      request: (method, path, options) => {
        if (options?.query?.consistent !== undefined && failures-- > 0) return Promise.reject(new HttpApiError(500, 'Unexpected response code: 500 (No cluster leader)'));
        return api.request(method, path, options);
      },
    });
    const riding = new Lock(failing(2), { key: 'retry/.lock', sessionName: 'x', monitorRetries: 2, monitorRetryMs: 20 });
    const held = (await riding.acquire(stop.signal))!;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(held.lost.aborted).toBe(false);
    await riding.release();

    const giving = new Lock(failing(2), { key: 'retry/.lock', sessionName: 'y', monitorRetries: 1, monitorRetryMs: 20 });
    const lost = (await giving.acquire(stop.signal))!.lost;
    await new Promise<void>((resolve) => (lost.aborted ? resolve() : lost.addEventListener('abort', () => resolve())));
    await giving.release();
  });
});
