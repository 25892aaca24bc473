/**
 * consulate.catalog.v1.HealthService over the in-process fakes: Consul's `/v1/health`
 * (reference/consul-compat.md §4.2: node checks then the instance's own, `passing` drops an
 * instance with any check not passing) and WatchServiceHealth, the server stream that is a
 * blocking query (§4.4) that never stops: the answer at once, then each changed answer with its
 * index, bounded per catalog and ended when the catalog shuts down.
 */
import { ClientReadableStream, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { HealthStatus, RegisterRequest } from '../../gen/consulate/catalog/v1/catalog';
import { WatchServiceHealthRequest, WatchServiceHealthResponse } from '../../gen/consulate/catalog/v1/health';
import { CatalogGrpc, startCatalogGrpc } from '../testing/grpc-harness';

let api: CatalogGrpc;

afterEach(async () => {
  await api.close();
});

function check(checkId: string, status: HealthStatus, serviceId = '') {
  return { node: '', checkId, name: checkId, status, notes: '', output: '', serviceId, type: '' };
}

function service(id: string, name: string, tags: string[] = []) {
  return { id, name, tags, address: '', taggedAddresses: {}, meta: {}, port: 8080, weights: undefined, enableTagOverride: false };
}

async function register(request: Partial<RegisterRequest>): Promise<bigint> {
  const full: RegisterRequest = { datacenter: '', id: '', node: '', address: '10.0.0.1', taggedAddresses: {}, nodeMeta: {}, service: undefined, checks: [], skipNodeUpdate: false, ...request };
  return (await api.call(api.catalog.register.bind(api.catalog), full)).index;
}

/** Three instances of web: a1 all passing, b1 with a warning service check, c1 with serfHealth critical. */
async function populate(): Promise<void> {
  await register({ node: 'a1', nodeMeta: { 'consul-network-segment': 'alpha' }, service: service('web-a', 'web', ['v1']), checks: [check('serfHealth', HealthStatus.HEALTH_STATUS_PASSING), check('web-a-http', HealthStatus.HEALTH_STATUS_PASSING, 'web-a')] });
  await register({ node: 'b1', service: service('web-b', 'web', ['v2']), checks: [check('serfHealth', HealthStatus.HEALTH_STATUS_PASSING), check('web-b-http', HealthStatus.HEALTH_STATUS_WARNING, 'web-b')] });
  await register({ node: 'c1', service: service('web-c', 'web', ['v1']), checks: [check('serfHealth', HealthStatus.HEALTH_STATUS_CRITICAL)] });
}

const serviceQuery = { query: undefined, service: 'web', tags: [] as string[], passingOnly: false, nodeMeta: {} };

describe('reads', () => {
  beforeEach(async () => {
    api = await startCatalogGrpc();
    await populate();
  });

  test("ServiceHealth: node checks, then the instance's own; passing_only; tags; node_meta (§4.2)", async () => {
    const all = await api.call(api.health.serviceHealth.bind(api.health), serviceQuery);
    expect(all.entries.map((e) => [e.node?.name, e.service?.id, e.checks.map((c) => c.checkId)])).toEqual([
      ['a1', 'web-a', ['serfHealth', 'web-a-http']],
      ['b1', 'web-b', ['serfHealth', 'web-b-http']],
      ['c1', 'web-c', ['serfHealth']],
    ]);
    expect(all.entries[1].checks[1]).toMatchObject({ status: HealthStatus.HEALTH_STATUS_WARNING, serviceId: 'web-b', serviceName: 'web', serviceTags: ['v2'] });
    expect(all.meta?.index).toBe(BigInt(api.consensus.fake.revision));

    const passing = await api.call(api.health.serviceHealth.bind(api.health), { ...serviceQuery, passingOnly: true });
    expect(passing.entries.map((e) => e.node?.name)).toEqual(['a1']);
    expect((await api.call(api.health.serviceHealth.bind(api.health), { ...serviceQuery, tags: ['v1'] })).entries.map((e) => e.node?.name)).toEqual(['a1', 'c1']);
    expect((await api.call(api.health.serviceHealth.bind(api.health), { ...serviceQuery, tags: ['v1'], nodeMeta: { 'consul-network-segment': 'alpha' } })).entries.map((e) => e.node?.name)).toEqual(['a1']);
    expect((await api.call(api.health.serviceHealth.bind(api.health), { ...serviceQuery, service: 'nope' })).entries).toEqual([]);
  });

  test('NodeHealth and ChecksInState (unspecified is "any")', async () => {
    const node = await api.call(api.health.nodeHealth.bind(api.health), { query: undefined, node: 'B1' });
    expect(node.checks.map((c) => c.checkId)).toEqual(['serfHealth', 'web-b-http']);
    const critical = await api.call(api.health.checksInState.bind(api.health), { query: undefined, state: HealthStatus.HEALTH_STATUS_CRITICAL, nodeMeta: {} });
    expect(critical.checks.map((c) => `${c.node}/${c.checkId}`)).toEqual(['c1/serfHealth']);
    const any = await api.call(api.health.checksInState.bind(api.health), { query: undefined, state: HealthStatus.HEALTH_STATUS_UNSPECIFIED, nodeMeta: {} });
    expect(any.checks).toHaveLength(5);
    const bad = await api.failure(api.health.checksInState.bind(api.health), { query: undefined, state: 7 as HealthStatus, nodeMeta: {} });
    expect(bad.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect((await api.failure(api.health.nodeHealth.bind(api.health), { query: undefined, node: '' })).details).toBe('Missing node name');
  });
});

/** A watch stream's messages and end, as they come. */
class Watched {
  readonly messages: WatchServiceHealthResponse[] = [];
  error: ServiceError | undefined;
  private waiters: (() => void)[] = [];

  constructor(readonly stream: ClientReadableStream<WatchServiceHealthResponse>) {
    stream.on('data', (message: WatchServiceHealthResponse) => this.poke(() => this.messages.push(message)));
    stream.on('error', (err: ServiceError) => this.poke(() => (this.error = err)));
  }

  /** Resolves once `count` messages (or an error) have come, within `timeoutMs`. */
  async until(predicate: () => boolean, timeoutMs = 3_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`watch: condition not met after ${timeoutMs} ms (${this.messages.length} messages, error ${this.error?.details})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  private poke(change: () => void): void {
    change();
    for (const wake of this.waiters.splice(0)) wake();
  }
}

function watch(request: Partial<WatchServiceHealthRequest> = {}): Watched {
  return new Watched(api.health.watchServiceHealth({ service: 'web', tags: [], passingOnly: false, nodeMeta: {}, query: undefined, ...request }));
}

describe('WatchServiceHealth', () => {
  test('the current instances at once, then a message with a higher index when an instance registers', async () => {
    api = await startCatalogGrpc();
    await populate();
    const watched = watch({ passingOnly: true });
    await watched.until(() => watched.messages.length === 1);
    const [first] = watched.messages;
    expect(first.entries.map((e) => e.node?.name)).toEqual(['a1']);
    expect(first.index).toBe(BigInt(api.consensus.fake.revision));

    const added = await register({ node: 'd1', service: service('web-d', 'web'), checks: [check('serfHealth', HealthStatus.HEALTH_STATUS_PASSING)] });
    await watched.until(() => watched.messages.length === 2);
    expect(watched.messages[1].entries.map((e) => e.node?.name)).toEqual(['a1', 'd1']);
    expect(watched.messages[1].index).toBe(added);

    // A check going critical drops d1 (passing_only): a third message.
    await register({ node: 'd1', checks: [check('serfHealth', HealthStatus.HEALTH_STATUS_CRITICAL)] });
    await watched.until(() => watched.messages.length === 3);
    expect(watched.messages[2].entries.map((e) => e.node?.name)).toEqual(['a1']);
    expect(watched.messages[2].index).toBeGreaterThan(added);
    watched.stream.cancel();
  });

  test('a change that leaves the answer as it was sends nothing', async () => {
    api = await startCatalogGrpc();
    await populate();
    const watched = watch({ tags: ['v1'] });
    await watched.until(() => watched.messages.length === 1);
    // Another service, and a KV write: the tables move (services) or not (kvs); web's answer does not.
    await register({ node: 'e1', service: service('db-1', 'db') });
    await api.call(api.kv.put.bind(api.kv), { key: 'k', value: Buffer.from('v'), flags: 0n, condition: undefined, datacenter: '' });
    await register({ node: 'b1', service: service('web-b', 'web', ['v2', 'canary']) });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(watched.messages).toHaveLength(1);
    // And one that changes it does.
    await register({ node: 'b1', service: service('web-b', 'web', ['v1']) });
    await watched.until(() => watched.messages.length === 2);
    expect(watched.messages[1].entries.map((e) => e.service?.id)).toEqual(['web-a', 'web-b', 'web-c']);
    watched.stream.cancel();
  });

  test('bounded: RESOURCE_EXHAUSTED beyond the cap; a cancelled watch frees its place', async () => {
    api = await startCatalogGrpc({ maxWatches: 2 });
    const one = watch();
    const two = watch();
    await one.until(() => one.messages.length === 1);
    await two.until(() => two.messages.length === 1);
    const three = watch();
    await three.until(() => three.error !== undefined);
    expect({ code: three.error!.code, details: three.error!.details }).toEqual({
      code: GrpcStatus.RESOURCE_EXHAUSTED,
      details: 'too many watches on this catalog (2); close some, or watch through another catalog',
    });
    one.stream.cancel();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(api.watches.count).toBe(1);
    const four = watch();
    await four.until(() => four.messages.length === 1);
    two.stream.cancel();
    four.stream.cancel();
  });

  test('the catalog shutting down ends every watch with UNAVAILABLE, and refuses new ones', async () => {
    api = await startCatalogGrpc();
    const watched = watch();
    await watched.until(() => watched.messages.length === 1);
    api.watches.closeAll();
    await watched.until(() => watched.error !== undefined);
    expect({ code: watched.error!.code, details: watched.error!.details }).toEqual({ code: GrpcStatus.UNAVAILABLE, details: 'this catalog is shutting down: watch again through another catalog' });
    expect(api.watches.count).toBe(0);
    const late = watch();
    await late.until(() => late.error !== undefined);
    expect(late.error!.code).toBe(GrpcStatus.UNAVAILABLE);
  });

  test('bad requests end the stream at once: no service name (INVALID_ARGUMENT), another datacenter without a router (NOT_FOUND)', async () => {
    api = await startCatalogGrpc();
    const unnamed = watch({ service: '' });
    await unnamed.until(() => unnamed.error !== undefined);
    expect({ code: unnamed.error!.code, details: unnamed.error!.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: 'Missing service name' });
    const remote = watch({ query: { consistency: 0, minIndex: 0n, maxStale: undefined, datacenter: 'dc2' } });
    await remote.until(() => remote.error !== undefined);
    // Forwarded through the routers (grpc/remote-datacenter.ts): without one, no path.
    expect({ code: remote.error!.code, details: remote.error!.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    expect(api.watches.count).toBe(0);
  });
});
