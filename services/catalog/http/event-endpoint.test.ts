// /v1/event/fire/:name and /v1/event/list (agent/event_endpoint.go), over a catalog's UserEvents
// on a scripted gossip agent that delivers what is fired to its own watch, as a real one does
// (testing/loopback-events.ts).
import { createLogger } from '../../lib/log';
import { loopbackEvents } from '../testing/loopback-events';
import { UserEvents, eventsIndex } from '../user-events';
import { UserEventJson, registerEventEndpoints } from './event-endpoint';
import { Served, serveRouter } from './testing/serve-router';

let served: Served;
const loopback = loopbackEvents();
const events = new UserEvents({ gossip: loopback.gossip, node: 'catalog-1', localServices: () => [], logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' }) });

beforeAll(async () => {
  events.start();
  served = await serveRouter((router) => registerEventEndpoints(router, { datacenter: 'dc1', events }));
});

afterAll(async () => {
  events.stop();
  await served.close();
});

describe('PUT /v1/event/fire/:name', () => {
  test("Consul's UserEvent: a new ID, the filters, Payload base64 (null without one), Version 1, LTime 0", async () => {
    const fired = await served.request('/v1/event/fire/deploy?node=web&service=api&tag=v1', 'PUT', 'v2.0');
    expect(fired.status).toBe(200);
    expect(fired.json()).toEqual({ ID: expect.stringMatching(/^[0-9a-f-]{36}$/), Name: 'deploy', Payload: Buffer.from('v2.0').toString('base64'), NodeFilter: 'web', ServiceFilter: 'api', TagFilter: 'v1', Version: 1, LTime: 0 });
    expect((await served.request('/v1/event/fire/restart', 'PUT')).json()).toMatchObject({ Name: 'restart', Payload: null, NodeFilter: '' });
  });

  test("refusals: 400 Missing name; Consul's 500s for bad filters and for what gossip refuses; PUT only", async () => {
    expect(await served.request('/v1/event/fire/', 'PUT')).toMatchObject({ status: 400, text: 'Missing name' });
    expect(await served.request('/v1/event/fire/x?tag=v1', 'PUT')).toMatchObject({ status: 500, text: 'Cannot provide tag filter without service filter' });
    expect(await served.request('/v1/event/fire/x?node=(', 'PUT')).toMatchObject({ status: 500, text: expect.stringMatching(/^Invalid node filter: /) });
    loopback.refuseWith = 'user event exceeds configured limit of 512 bytes before encoding';
    try {
      expect(await served.request('/v1/event/fire/big', 'PUT', 'x'.repeat(600))).toMatchObject({ status: 500, text: loopback.refuseWith });
    } finally {
      loopback.refuseWith = undefined;
    }
    expect((await served.request('/v1/event/fire/x', 'GET')).status).toBe(405);
  });
});

describe('GET /v1/event/list', () => {
  test('the events this catalog kept, oldest first, with their LTime (not the deploy for node web: this is catalog-1); ?name= keeps one name; X-Consul-Index is the last ID folded', async () => {
    await served.request('/v1/event/fire/restart?node=catalog', 'PUT');
    const all = await served.request('/v1/event/list');
    const body = all.json() as UserEventJson[];
    expect(body.map((e) => `${e.Name}/${e.NodeFilter}`)).toEqual(['restart/', 'restart/catalog']);
    expect(body.every((e) => e.LTime > 0)).toBe(true);
    expect(all.headers.get('x-consul-index')).toBe(String(eventsIndex(events.list())));
    const named = await served.request('/v1/event/list?name=deploy');
    expect([named.json(), named.headers.get('x-consul-index')]).toEqual([[], '1']);
    const none = await served.request('/v1/event/list?name=nothing');
    expect([none.json(), none.headers.get('x-consul-index')]).toEqual([[], '1']);
  });

  test('?index= equal to the current one blocks until the next event; another index answers at once; a bad one is 400', async () => {
    const index = (await served.request('/v1/event/list?name=deploy')).headers.get('x-consul-index')!;
    expect(index).toBe('1');
    const blocked = served.request(`/v1/event/list?name=deploy&index=${index}&wait=30s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await served.request('/v1/event/fire/deploy', 'PUT', 'again');
    const woken = await blocked;
    const names = woken.json() as UserEventJson[];
    expect(names.map((e) => [e.Name, Buffer.from(e.Payload!, 'base64').toString()])).toEqual([['deploy', 'again']]);
    expect(woken.headers.get('x-consul-index')).toBe(String(eventsIndex(events.list('deploy'))));
    const quick = await served.request('/v1/event/list?index=12345&wait=30s');
    expect(quick.status).toBe(200);
    expect(await served.request('/v1/event/list?index=x')).toMatchObject({ status: 400, text: 'Invalid index' });
    expect(await served.request(`/v1/event/list?index=${2n ** 64n}`)).toMatchObject({ status: 400, text: 'Invalid index' });
  });

  test('a blocking list by name waits through events of other names (its own index did not move)', async () => {
    const index = (await served.request('/v1/event/list?name=deploy')).headers.get('x-consul-index')!;
    const blocked = served.request(`/v1/event/list?name=deploy&index=${index}&wait=30s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await served.request('/v1/event/fire/restart', 'PUT');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const { ID } = (await served.request('/v1/event/fire/deploy', 'PUT', 'v3')).json() as UserEventJson;
    // Woken by the restart, it went back to waiting: its answer is the deploy that came after.
    const answer = await blocked;
    expect((answer.json() as UserEventJson[]).at(-1)!.ID).toBe(ID);
    expect(answer.headers.get('x-consul-index')).not.toBe(index);
  });

  test('a blocking list with nothing new answers at the end of its wait, unchanged', async () => {
    const index = (await served.request('/v1/event/list')).headers.get('x-consul-index')!;
    const answer = await served.request(`/v1/event/list?index=${index}&wait=100ms`);
    expect(answer.headers.get('x-consul-index')).toBe(index);
  });
});
