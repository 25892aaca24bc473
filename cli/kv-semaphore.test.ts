// api/semaphore.go against the catalog's real KV and session endpoints (in-process, fake
// consensus): N holders at once, the next waiting for a slot, and the refusals between a lock, a
// semaphore and a semaphore of another limit on one prefix.
import { HttpApi } from './http-api';
import { kvGet } from './kv-api';
import { ERR_LOCK_CONFLICT, Lock } from './kv-lock';
import { ERR_SEMAPHORE_CONFLICT, SEMAPHORE_FLAG_VALUE, Semaphore } from './kv-semaphore';
import { ServedCatalog, serveCatalog } from './testing/served-catalog';

let catalog: ServedCatalog;
let api: HttpApi;
const stop = new AbortController();

beforeEach(async () => {
  catalog = await serveCatalog();
  api = new HttpApi(new Map([['http-addr', catalog.base]]), {});
});

afterEach(() => catalog.close());

const sessions = async () => (await catalog.call('GET', '/v1/session/list')).json<{ Behavior: string }[]>();

describe('Semaphore (-n)', () => {
  test('limit 2: two holders at once, the third waits for a slot; .lock lists the holders', async () => {
    const semaphores = ['a', 'b', 'c'].map((name) => new Semaphore(api, { prefix: 'sem', limit: 2, sessionName: name }));
    await semaphores[0].acquire(stop.signal);
    await semaphores[1].acquire(stop.signal);
    let third = false;
    const waiting = semaphores[2].acquire(stop.signal).then((held) => (third = held !== undefined));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(third).toBe(false);
    const lock = (await kvGet(api, 'sem/.lock')).pair!;
    expect(lock.Flags).toBe(SEMAPHORE_FLAG_VALUE);
    const value = JSON.parse(Buffer.from(lock.Value!, 'base64').toString()) as { Limit: number; Holders: Record<string, boolean> };
    expect(value.Limit).toBe(2);
    expect(Object.keys(value.Holders)).toHaveLength(2);
    // Contender keys are the sessions' own, deleted with them (Behavior "delete").
    expect((await sessions()).every((s) => s.Behavior === 'delete')).toBe(true);

    await semaphores[0].release();
    await waiting;
    expect(third).toBe(true);
    await semaphores[1].release();
    await semaphores[2].release();
    await semaphores[2].destroy();
    expect((await catalog.call('GET', '/v1/kv/sem?recurse')).status).toBe(404);
  });

  test('a lock and a semaphore on one prefix refuse each other; limits must agree', async () => {
    const lock = new Lock(api, { key: 'mixed/.lock', sessionName: 'lock' });
    await lock.acquire(stop.signal);
    await expect(new Semaphore(api, { prefix: 'mixed', limit: 2, sessionName: 's' }).acquire(stop.signal)).rejects.toThrow(ERR_SEMAPHORE_CONFLICT);
    await lock.release();

    const two = new Semaphore(api, { prefix: 'limits', limit: 2, sessionName: 's2' });
    await two.acquire(stop.signal);
    await expect(new Semaphore(api, { prefix: 'limits', limit: 3, sessionName: 's3' }).acquire(stop.signal)).rejects.toThrow('semaphore limit conflict (lock: 2, local: 3)');
    await expect(new Lock(api, { key: 'limits/.lock', sessionName: 'l' }).acquire(stop.signal)).rejects.toThrow(ERR_LOCK_CONFLICT);
    await two.release();
  });
});
