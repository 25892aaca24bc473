// The catalog's client of its federation routers: fail-over to the next router when one cannot be
// reached, starting from the last that answered; a router's own answer is final; deadlines of
// blocking calls. Against real gRPC servers on loopback (testing/fake-router.ts).
import { status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { ROUTER_CALL_TIMEOUT_MS, RouterAnswerError, RouterClient, RouterUnavailableError, blockingTimeoutMs } from './router-client';
import { FakeRouter, startFakeRouter } from './testing/fake-router';

const tracer = trace.getTracer('test');

/** An address nothing listens on (a router bound, then closed). */
async function deadAddress(): Promise<string> {
  const router = await startFakeRouter('dc1');
  await router.close();
  return router.address;
}

const FORWARD = { datacenter: 'dc2', request: { method: 'GET', path: '/v1/catalog/services', rawQuery: '', headers: {}, body: Buffer.alloc(0) } };
const ANSWER = { response: { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') }, path: ['dc2'] };

describe('RouterClient', () => {
  const routers: FakeRouter[] = [];
  const clients: RouterClient[] = [];
  const client = (addresses: string[]) => {
    const c = new RouterClient(addresses, tracer);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    routers.push(await startFakeRouter('dc1'), await startFakeRouter('dc1'));
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(routers.map((r) => r.close()));
  });

  test('a call that cannot reach a router goes to the next; later calls start at the one that answered', async () => {
    const dead = await deadAddress();
    const routerClient = client([dead, routers[0].address]);
    expect((await routerClient.datacenters()).datacenters).toEqual(['dc1']);
    const before = routers[0].calls.length;
    await routerClient.listAreas({});
    expect(routers[0].calls.slice(before)).toEqual(['listAreas']);
  });

  test('a write that never left goes to the next router too (nothing was sent)', async () => {
    const dead = await deadAddress();
    const created = await client([dead, routers[1].address]).createArea({ area: { id: '', peerDatacenter: 'dc7', retryJoin: [], useTls: false, transit: false } });
    expect(routers[1].areas.get(created.id)?.peerDatacenter).toBe('dc7');
  });

  test("a router's own answer is final: not asked of the next router", async () => {
    const routerClient = client([routers[0].address, routers[1].address]);
    const before = routers[1].calls.length;
    const unknown = '8b0ee2f4-0000-4000-8000-000000000000';
    await expect(routerClient.areaMembers({ id: unknown })).rejects.toEqual(new RouterAnswerError(GrpcStatus.NOT_FOUND, `area ID "${unknown}" does not exist`));
    routers[0].forwardAnswer = () => ({ code: GrpcStatus.UNAVAILABLE, details: 'Remote DC has no server currently reachable' });
    const failure = await routerClient.forward(FORWARD, { timeoutMs: 1_000, repeatable: true }).catch((err: RouterAnswerError) => err);
    expect(failure).toEqual(new RouterAnswerError(GrpcStatus.UNAVAILABLE, 'Remote DC has no server currently reachable'));
    expect(routers[1].calls.length).toBe(before);
    routers[0].forwardAnswer = () => ANSWER;
    expect((await routerClient.forward(FORWARD, { timeoutMs: 1_000, repeatable: true })).response?.status).toBe(200);
    expect(routers[0].forwarded.at(-1)).toEqual(FORWARD);
  });

  test('a call lost on the way (a connection cut mid-call) goes to the next router only when it may run twice', async () => {
    const [cut, other] = routers;
    cut.forwardAnswer = () => ({ code: GrpcStatus.UNAVAILABLE, details: 'read ECONNRESET' });
    other.forwardAnswer = () => ANSWER;
    const before = other.forwarded.length;
    const write = await client([cut.address, other.address])
      .forward(FORWARD, { timeoutMs: 2_000, repeatable: false })
      .catch((err: Error) => err);
    expect(write).toBeInstanceOf(RouterUnavailableError);
    expect((write as Error).message).toContain('it may have been carried out, so it was not sent to another router');
    expect((write as RouterUnavailableError).mayHaveApplied).toBe(true);
    expect(other.forwarded.length).toBe(before);
    const read = await client([cut.address, other.address]).forward(FORWARD, { timeoutMs: 2_000, repeatable: true });
    expect(read.response?.status).toBe(200);
    expect(other.forwarded.length).toBe(before + 1);
    cut.forwardAnswer = () => ANSWER;
  });

  test("one deadline for the whole call: a router that used it up leaves the next none, and a read that ran out says so, not that it may have been applied", async () => {
    const [silent, other] = routers;
    silent.forwardAnswer = () => new Promise(() => undefined);
    other.forwardAnswer = () => ANSWER;
    const before = other.forwarded.length;
    const started = Date.now();
    const read = await client([silent.address, other.address])
      .forward(FORWARD, { timeoutMs: 300, repeatable: true })
      .catch((err: Error) => err);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(read).toBeInstanceOf(RouterUnavailableError);
    expect((read as RouterUnavailableError).timedOut).toBe(true);
    expect(other.forwarded.length).toBe(before);
    const blocking = await client([silent.address, other.address])
      .forward(FORWARD, { timeoutMs: 300, repeatable: false, readOnly: true })
      .catch((err: Error) => err);
    expect(blocking).toBeInstanceOf(RouterUnavailableError);
    expect((blocking as RouterUnavailableError).mayHaveApplied).toBe(false);
    expect((blocking as RouterUnavailableError).timedOut).toBe(true);
    expect((blocking as Error).message).not.toContain('carried out');
    silent.forwardAnswer = () => ANSWER;
  });

  test('no router reachable: one error naming every router tried', async () => {
    const [a, b] = [await deadAddress(), await deadAddress()];
    const error = await client([a, b])
      .listAreas({})
      .catch((err: Error) => err);
    expect(error).toBeInstanceOf(RouterUnavailableError);
    expect((error as Error).message).toMatch(/^No federation router could answer: /);
    expect((error as Error).message).toContain(`${a}: unreachable`);
    expect((error as Error).message).toContain(`${b}: unreachable`);
  });

  test('no router configured: every call says how to configure one', async () => {
    const none = client([]);
    expect(none.configured).toBe(false);
    await expect(none.datacenters()).rejects.toThrow(/-router-addr=HOST:8330/);
    await expect(none.forward(FORWARD, { timeoutMs: 1_000, repeatable: true })).rejects.toBeInstanceOf(RouterUnavailableError);
  });

  test('the WAN pool: members as the router sees them, and a join through addresses; both may go to the next router', async () => {
    const dead = await deadAddress();
    const routerClient = client([dead, routers[0].address]);
    expect((await routerClient.wanMembers()).members.map((m) => m.name)).toEqual(['router-1.dc1']);
    const { results } = await routerClient.joinWan({ addresses: ['127.0.2.20', 'unreachable.dc2:8300'] });
    expect(results).toEqual([
      { address: '127.0.2.20', joined: true, error: '' },
      { address: 'unreachable.dc2:8300', joined: false, error: 'failed to connect to "unreachable.dc2:8300": dial tcp unreachable.dc2:8300: i/o timeout' },
    ]);
    expect(routers[0].wanJoins.slice(-2)).toEqual(['127.0.2.20', 'unreachable.dc2:8300']);
  });

  test("a blocking call's deadline: its wait, Consul's wait/16 of jitter, and a margin", () => {
    expect(blockingTimeoutMs(16_000, 5_000)).toBe(16_000 + 1_000 + 5_000);
    expect(blockingTimeoutMs(10 * 60_000, ROUTER_CALL_TIMEOUT_MS)).toBe(600_000 + 37_500 + ROUTER_CALL_TIMEOUT_MS);
  });

  test('a blocking ListAreas waits on the router, and returns on a change', async () => {
    const router = routers[0];
    const routerClient = client([router.address]);
    const { index } = await routerClient.listAreas({});
    const blocked = routerClient.listAreas({ options: { minIndex: index, waitMs: 4_000, stale: false, consistent: false } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await routerClient.createArea({ area: { id: '', peerDatacenter: 'dc8', retryJoin: [], useTls: false, transit: false } });
    const answer = await blocked;
    expect(answer.index).toBeGreaterThan(index);
    expect(answer.areas.map((a) => a.peerDatacenter)).toContain('dc8');
  });
});
