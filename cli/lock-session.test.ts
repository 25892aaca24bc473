// api/session.go RenewPeriodic under a hand-driven clock, against the catalog's real session
// endpoints: a renewal every TTL/2, the session destroyed when its holder ends it, and no more
// renewals once the server no longer knows it.
import { HttpApi } from './http-api';
import { LockSession, Timing } from './lock-session';
import { ServedCatalog, serveCatalog } from './testing/served-catalog';

/** Sleeps end only when the test says so; each one moves the clock by its length. */
class HandDrivenTime implements Timing {
  private nowMs = 0;
  readonly pending: { ms: number; wake: (completed: boolean) => void }[] = [];

  now(): number {
    return this.nowMs;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve(false);
      const entry = { ms, wake: resolve };
      this.pending.push(entry);
      signal?.addEventListener('abort', () => {
        this.pending.splice(this.pending.indexOf(entry), 1);
        resolve(false);
      });
    });
  }

  /** Ends the oldest sleep. */
  wake(): number {
    const entry = this.pending.shift()!;
    this.nowMs += entry.ms;
    entry.wake(true);
    return entry.ms;
  }
}

let catalog: ServedCatalog;
let api: HttpApi;

beforeEach(async () => {
  catalog = await serveCatalog();
  api = new HttpApi(new Map([['http-addr', catalog.base]]), {});
});

afterEach(() => catalog.close());

const settle = () => new Promise((resolve) => setTimeout(resolve, 100));
const list = async () => (await catalog.call('GET', '/v1/session/list')).json<{ ID: string }[]>();

test('renews every TTL/2 (the lease kept alive), and destroys the session when ended', async () => {
  const time = new HandDrivenTime();
  const session = await LockSession.create(api, { name: 'n', ttl: '15s' }, time);
  expect(time.pending.map((p) => p.ms)).toEqual([7_500]);
  time.wake();
  await settle();
  expect(catalog.consensus.keepAlives).toHaveLength(1);
  expect(time.pending.map((p) => p.ms)).toEqual([7_500]);
  await session.end();
  expect(await list()).toEqual([]);
});

test('a session the server no longer knows is not renewed again', async () => {
  const time = new HandDrivenTime();
  const session = await LockSession.create(api, { name: 'n', ttl: '10s' }, time);
  await catalog.call('PUT', `/v1/session/destroy/${session.id}`);
  expect(time.wake()).toBe(5_000);
  await settle();
  expect(time.pending).toEqual([]);
  await session.end();
});

test('an invalid TTL is refused before anything is created', async () => {
  await expect(LockSession.create(api, { name: 'n', ttl: '15' })).rejects.toThrow('invalid SessionTTL: time: missing unit in duration "15"');
  expect(await list()).toEqual([]);
});
