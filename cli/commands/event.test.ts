// `consulate event` as Consul's command/event/event.go: its checks and texts before anything is
// sent, then a fire against the catalog's real endpoints in-process (its events loop back, so the
// event is in /v1/event/list at once).
import { ServedCatalog, captureIo, closedPort, serveCatalog } from '../testing/served-catalog';
import { eventCommand } from './event';

let catalog: ServedCatalog;

beforeAll(async () => {
  catalog = await serveCatalog();
});

afterAll(() => catalog.close());

async function event(...args: string[]) {
  const { io, out } = captureIo();
  const code = await eventCommand.run([`-http-addr=${catalog.base}`, ...args], io);
  return { code, ...out };
}

test('fires: `Event ID: <id>`, the payload and filters as given, the event listed', async () => {
  const fired = await event('-name=deploy', '-node=catalog', '-service=web', '-tag=v1', 'build 42');
  expect(fired).toEqual({ code: 0, stdout: expect.stringMatching(/^Event ID: [0-9a-f-]{36}\n$/), stderr: '' });
  const id = fired.stdout.trim().slice('Event ID: '.length);
  // catalog-1 has no service `web`: the event is fired but not kept by this catalog.
  expect((await catalog.call('GET', '/v1/event/list')).json<{ ID: string }[]>().some((e) => e.ID === id)).toBe(false);
  const plain = await event('-name=restart');
  const listed = (await catalog.call('GET', '/v1/event/list?name=restart')).json<{ ID: string; Payload: string | null }[]>();
  expect(listed).toEqual([expect.objectContaining({ ID: plain.stdout.trim().slice('Event ID: '.length), Payload: null })]);
});

test.each([
  [[], 'Event name must be specified\n'],
  [['-name=x', '-node=('], /^Failed to compile node filter regexp: /],
  [['-name=x', '-service=['], /^Failed to compile service filter regexp: /],
  [['-name=x', '-tag=v1'], 'Cannot provide tag filter without service filter.\n'],
  [['-name=x', 'one', 'two'], /^Too many command line arguments\.\n\nUsage: consulate event /],
])('refuses %j before sending anything, exit 1', async (args, stderr) => {
  const before = (await catalog.call('GET', '/v1/event/list')).json<unknown[]>().length;
  const result = await event(...args);
  expect(result).toMatchObject({ code: 1, stdout: '', stderr: typeof stderr === 'string' ? stderr : expect.stringMatching(stderr) });
  expect((await catalog.call('GET', '/v1/event/list')).json<unknown[]>()).toHaveLength(before);
});

test("no catalog: Error firing event, with Go's text for the refused PUT", async () => {
  const port = await closedPort();
  const { io, out } = captureIo();
  expect(await eventCommand.run([`-http-addr=127.0.0.1:${port}`, '-name=x'], io)).toBe(1);
  expect(out.stderr).toBe(`Error firing event: Put "http://127.0.0.1:${port}/v1/event/fire/x": dial tcp 127.0.0.1:${port}: connect: connection refused\n`);
});
