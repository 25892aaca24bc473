// Consul's user events with the catalog as the agent (user-events.ts; agent/user_event.go):
// validation texts, the gossip event a fire makes, which received events a catalog keeps (filters,
// versions, copies from several segments, the last 256), and the list's index.
import { UserEvent } from '../gen/consulate/catalog/v1/event';
import { createLogger } from '../lib/log';
import { loopbackEvents } from './testing/loopback-events';
import { FireParams, MAX_KEPT_EVENTS, USER_EVENT_PREFIX, UserEventError, UserEvents, eventsIndex } from './user-events';

const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' });

/** A catalog's UserEvents on a gossip agent that delivers what is fired to its watch, as a real one does. */
function catalogEvents(services: { ID: string; Tags: string[] }[] = []) {
  const loopback = loopbackEvents();
  const events = new UserEvents({ gossip: loopback.gossip, node: 'web-1', localServices: () => services, logger });
  events.start();
  const deliver = (event: Partial<UserEvent>, ltime = 99n) =>
    loopback.deliverRaw({ name: USER_EVENT_PREFIX + (event.name ?? 'x'), payload: Buffer.from(UserEvent.encode(UserEvent.fromPartial({ version: 1, ...event })).finish()), ltime });
  const deliverRaw = (name: string, payload: Buffer) => loopback.deliverRaw({ name, payload, ltime: 1n });
  return { events, fired: loopback.fired, deliver, deliverRaw };
}

const params = (more: Partial<FireParams> = {}): FireParams => ({ name: 'deploy', payload: Buffer.alloc(0), nodeFilter: '', serviceFilter: '', tagFilter: '', ...more });

describe('fire', () => {
  test('a UUID, version 1, LTime 0; gossiped as consul:event:<name> with the UserEvent as payload, and kept with its LTime', async () => {
    const { events, fired } = catalogEvents();
    const event = await events.fire(params({ payload: Buffer.from('v2') }));
    expect(event).toEqual({ id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/), name: 'deploy', payload: Buffer.from('v2'), nodeFilter: '', serviceFilter: '', tagFilter: '', version: 1, ltime: 0n });
    expect(fired.map((f) => f.name)).toEqual(['consul:event:deploy']);
    expect(UserEvent.decode(fired[0].payload)).toEqual(event);
    expect(events.list()).toEqual([{ ...event, ltime: 10n }]);
  });

  test.each([
    [params({ name: '' }), 'User event missing name'],
    [params({ tagFilter: 'v1' }), 'Cannot provide tag filter without service filter'],
    [params({ nodeFilter: '(' }), /^Invalid node filter: /],
    [params({ serviceFilter: '[' }), /^Invalid service filter: /],
    [params({ serviceFilter: 'web', tagFilter: '*' }), /^Invalid tag filter: /],
  ])("refuses %j with Consul's text, firing nothing", async (refused, text) => {
    const { events, fired } = catalogEvents();
    const err = await events.fire(refused).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserEventError);
    expect((err as Error).message).toMatch(text);
    expect(fired).toEqual([]);
  });
});

describe('which events a catalog keeps', () => {
  test("a node filter must match this catalog's node name, anywhere in it (Go's MatchString)", () => {
    const { events, deliver } = catalogEvents();
    deliver({ id: 'a', nodeFilter: 'web' });
    deliver({ id: 'b', nodeFilter: '^db' });
    deliver({ id: 'c', nodeFilter: '-1$' });
    expect(events.list().map((e) => e.id)).toEqual(['a', 'c']);
  });

  test("the filters are Go's (RE2): its syntax, and linear time whatever a client writes", () => {
    const { events, deliver } = catalogEvents([{ ID: 'a'.repeat(40), Tags: [] }]);
    deliver({ id: 'go-syntax', nodeFilter: '(?i)^WEB-\\d\\z' });
    // 2^40 steps for a backtracking engine on 40 a's (this test would never end); RE2's are linear.
    deliver({ id: 'catastrophic', serviceFilter: '^(a|a)*$b' });
    deliver({ id: 'nested', serviceFilter: '(a*)*c' });
    expect(events.list().map((e) => e.id)).toEqual(['go-syntax']);
  });

  test("a service filter needs a service of this node whose ID matches, with a tag filter a tag of it that matches", () => {
    const { events, deliver } = catalogEvents([{ ID: 'web-blue', Tags: ['v1', 'primary'] }]);
    deliver({ id: 'a', serviceFilter: 'web' });
    deliver({ id: 'b', serviceFilter: 'db' });
    deliver({ id: 'c', serviceFilter: 'web', tagFilter: '^prim' });
    deliver({ id: 'd', serviceFilter: 'web', tagFilter: 'v2' });
    expect(events.list().map((e) => e.id)).toEqual(['a', 'c']);
  });

  test('a newer version, a payload that is not a UserEvent, one without an ID, and other gossip events are ignored', () => {
    const { events, deliver, deliverRaw } = catalogEvents();
    deliver({ id: 'new', version: 2 });
    expect(() => deliverRaw(`${USER_EVENT_PREFIX}x`, Buffer.from([0xff, 0xff]))).not.toThrow();
    deliverRaw('not-ours', Buffer.from(UserEvent.encode(UserEvent.fromPartial({ id: 'z', version: 1 })).finish()));
    deliverRaw(`${USER_EVENT_PREFIX}no-id`, Buffer.from(UserEvent.encode(UserEvent.fromPartial({ name: 'no-id', version: 1 })).finish()));
    expect(events.list()).toEqual([]);
  });

  test('the copies a server agent gets from each segment are kept once; the last 256 are kept, oldest first', () => {
    const { events, deliver } = catalogEvents();
    deliver({ id: 'once', name: 'a' }, 1n);
    deliver({ id: 'once', name: 'a' }, 7n);
    expect(events.list().map((e) => [e.id, e.ltime])).toEqual([['once', 1n]]);
    for (let i = 0; i < MAX_KEPT_EVENTS + 10; i++) deliver({ id: `e${i}`, name: i % 2 === 0 ? 'even' : 'odd' });
    const kept = events.list();
    expect([kept.length, kept[0].id, kept.at(-1)!.id]).toEqual([MAX_KEPT_EVENTS, 'e10', `e${MAX_KEPT_EVENTS + 9}`]);
    expect(events.list('even').every((e) => e.name === 'even')).toBe(true);
    // An ID that fell out of the 256 is kept again if it comes back.
    deliver({ id: 'once' });
    expect(events.list().at(-1)!.id).toBe('once');
  });

  test('a waiter whose request is already gone returns at once; once stopped, a subscriber is told at once', async () => {
    const { events } = catalogEvents();
    const gone = new AbortController();
    gone.abort();
    await events.waitForEvent(60_000, gone.signal);
    events.stop();
    const told = await new Promise((resolve) => events.subscribe(resolve));
    expect(told).toBeUndefined();
  });

  test('a waiter wakes at the next event kept, not at one ignored', async () => {
    const { events, deliver } = catalogEvents();
    let woke = false;
    const waiting = events.waitForEvent(10_000).then(() => (woke = true));
    deliver({ id: 'x', nodeFilter: 'nobody' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(woke).toBe(false);
    deliver({ id: 'y' });
    await waiting;
    expect(woke).toBe(true);
  });
});

describe('eventsIndex (uuidToUint64)', () => {
  test("the UUID's two halves XORed; 1 for no event", () => {
    const event = (id: string) => UserEvent.fromPartial({ id });
    expect(eventsIndex([])).toBe(1n);
    expect(eventsIndex([event('00000000-0000-0000-0000-000000000000'), event('00000000-0000-0001-0000-000000000003')])).toBe(2n);
    expect(eventsIndex([event('ffffffff-ffff-ffff-0000-000000000000')])).toBe(2n ** 64n - 1n);
  });
});
