/**
 * The router's areas in the consensus store (area-store.ts), against a real consensus server
 * started in this process (test/harness/in-process-consensus.ts): the txn compares that keep one area
 * per peer datacenter, the Operator API's refusals with Consul's texts (consul-compat.md, network
 * areas: `Must provide a peer datacenter`), the in-memory mirror fed by the watch, the areas'
 * index that blocking queries wait on, and the router registry under a lease.
 */
import { trace } from '@opentelemetry/api';

import { ConsensusClient } from '../lib/consensus-client';
import { createLogger } from '../lib/log';
import { Area, AreaError, AreaStore } from './area-store';
import { InProcessConsensus, startInProcessConsensus } from '../../test/harness/in-process-consensus';

const tracer = trace.getTracer('test');
const logger = createLogger({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', level: 'silent' });

let consensus: InProcessConsensus;
let client: ConsensusClient;
const opened: { stop(): void }[] = [];

beforeEach(async () => {
  consensus = await startInProcessConsensus();
  client = new ConsensusClient([consensus.address], tracer);
});

afterEach(async () => {
  for (const one of opened.splice(0)) one.stop();
  client.close();
  await consensus.stop();
});

// ---------------------------------------------------------------------------------------------
// Builders

/** A router's store of datacenter `datacenter`, loaded and watching. */
async function openStore(datacenter = 'dc1', consensusAddrs = [consensus.address]): Promise<AreaStore> {
  const own = new ConsensusClient(consensusAddrs, tracer);
  const store = new AreaStore(datacenter, own, consensusAddrs, tracer, logger);
  opened.push(store, { stop: () => own.close() });
  await store.start();
  return store;
}

/** What `consul operator area create -peer-datacenter=<peer>` sends, with `more` on top. */
function areaInput(peerDatacenter: string, more: Partial<{ retryJoin: string[]; useTls: boolean; transit: boolean }> = {}) {
  return { peerDatacenter, retryJoin: more.retryJoin ?? [], useTls: more.useTls ?? false, transit: more.transit ?? false };
}

/** The keys under `prefix` as the store holds them, with their values. */
async function stored(prefix: string): Promise<Record<string, string>> {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  const response = await client.kv('range', { key: Buffer.from(prefix), rangeEnd: end, limit: 0n, revision: 0n, consistency: 0, keysOnly: false, countOnly: false }, { timeoutMs: 2_000, idempotent: true });
  return Object.fromEntries(response.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
}

async function refusal(promise: Promise<unknown>): Promise<AreaError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof AreaError)) throw new Error(`expected an AreaError, got ${String(err)}`);
  return err;
}

/** Polls `condition` until it holds; the mirror follows the store through a watch, not at once. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function elapsedMs(work: Promise<unknown>): Promise<number> {
  const started = Date.now();
  await work;
  return Date.now() - started;
}

// ---------------------------------------------------------------------------------------------
// Create

describe('create', () => {
  test('refuses an area without a peer datacenter, with Consul\'s text, and writes nothing', async () => {
    const store = await openStore();
    const err = await refusal(store.create(areaInput('')));
    expect(err.message).toBe('Must provide a peer datacenter');
    expect(err.kind).toBe('invalid');
    expect(await stored('/router/')).toEqual({});
  });

  test('refuses an area with its own datacenter', async () => {
    const store = await openStore('dc1');
    const err = await refusal(store.create(areaInput('dc1')));
    expect(err.message).toBe('Cannot create an area with the local datacenter "dc1"');
    expect(err.kind).toBe('precondition');
  });

  test.each(['DC2', 'dc 2', 'dc2/../x', 'd'.repeat(65)])('refuses the datacenter name %j', async (peer) => {
    const store = await openStore();
    const err = await refusal(store.create(areaInput(peer)));
    expect(err.message).toBe(`Invalid peer datacenter "${peer}": use lower-case letters, digits, '-' or '_'`);
    expect(err.kind).toBe('invalid');
  });

  test('refuses a RetryJoin address that cannot be one (join-address.ts), naming it, and writes nothing', async () => {
    const store = await openStore();
    const err = await refusal(store.create(areaInput('dc2', { retryJoin: ['10.0.2.1', 'router 2.dc2'] })));
    expect(err.message).toBe('Invalid RetryJoin address "router 2.dc2": "router 2.dc2" is not an IP address or a host name');
    expect(err.kind).toBe('invalid');
    expect(await stored('/router/')).toEqual({});
  });

  test('writes the area as Consul\'s api.Area and the peer index in one revision', async () => {
    const store = await openStore();
    const { id, index } = await store.create(areaInput('dc2', { retryJoin: ['10.0.2.1'], useTls: true, transit: true }));
    expect(await stored('/router/')).toEqual({
      [`/router/areas/${id}`]: JSON.stringify({ ID: id, PeerDatacenter: 'dc2', RetryJoin: ['10.0.2.1'], UseTLS: true, Transit: true }),
      '/router/area-peers/dc2': id,
    });
    const response = await client.kv('range', { key: Buffer.from('/router/area-peers/dc2'), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, consistency: 0, keysOnly: false, countOnly: false }, { timeoutMs: 2_000, idempotent: true });
    expect(Number(response.kvs[0].modRevision)).toBe(index);
  });

  test('allows one area per peer datacenter', async () => {
    const store = await openStore();
    await store.create(areaInput('dc2'));
    const err = await refusal(store.create(areaInput('dc2', { transit: true })));
    expect(err.message).toBe('An area with peer datacenter "dc2" already exists');
    expect(err.kind).toBe('exists');
    await store.create(areaInput('dc3'));
    expect(Object.keys(await stored('/router/areas/'))).toHaveLength(2);
  });

  test('allows one area per peer datacenter when two routers create it at once', async () => {
    const [router1, router2] = [await openStore(), await openStore()];
    const outcomes = await Promise.allSettled([router1.create(areaInput('dc2')), router2.create(areaInput('dc2')), router1.create(areaInput('dc2'))]);
    const created = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const refused = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as AreaError] : []));
    expect(created).toHaveLength(1);
    expect(refused.map((err) => [err.kind, err.message])).toEqual([
      ['exists', 'An area with peer datacenter "dc2" already exists'],
      ['exists', 'An area with peer datacenter "dc2" already exists'],
    ]);
    const areas = await stored('/router/areas/');
    expect(Object.keys(areas)).toEqual([`/router/areas/${(created[0] as PromiseFulfilledResult<{ id: string }>).value.id}`]);
  });
});

// ---------------------------------------------------------------------------------------------
// Update and delete

describe('update', () => {
  test('changes only the fields given', async () => {
    const store = await openStore();
    const { id } = await store.create(areaInput('dc2', { retryJoin: ['10.0.2.1:8300'], useTls: true, transit: false }));

    await store.update(id, { transit: true });
    await store.catchUp();
    expect(store.area(id)).toEqual<Area>({ id, peerDatacenter: 'dc2', retryJoin: ['10.0.2.1:8300'], useTls: true, transit: true });

    await store.update(id, { useTls: false });
    await store.catchUp();
    expect(store.area(id)).toEqual<Area>({ id, peerDatacenter: 'dc2', retryJoin: ['10.0.2.1:8300'], useTls: false, transit: true });

    await store.update(id, {});
    await store.catchUp();
    expect(store.area(id)).toEqual<Area>({ id, peerDatacenter: 'dc2', retryJoin: ['10.0.2.1:8300'], useTls: false, transit: true });
  });

  test('returns a newer index than the create', async () => {
    const store = await openStore();
    const created = await store.create(areaInput('dc2'));
    const updated = await store.update(created.id, { transit: true });
    expect(updated).toEqual({ id: created.id, index: expect.any(Number) });
    expect(updated.index).toBeGreaterThan(created.index);
  });

  test('refuses an unknown area as not found', async () => {
    const store = await openStore();
    const err = await refusal(store.update('8b0ee2f4-0000-4000-8000-000000000000', { transit: true }));
    expect(err.message).toBe('area ID "8b0ee2f4-0000-4000-8000-000000000000" does not exist');
    expect(err.kind).toBe('not-found');
  });
});

describe('delete', () => {
  test('removes the area and its peer index, so the peer can have an area again', async () => {
    const store = await openStore();
    const { id } = await store.create(areaInput('dc2'));
    await store.create(areaInput('dc3'));
    const { index } = await store.delete(id);
    expect(index).toBeGreaterThan(0);
    const left = await stored('/router/');
    expect(Object.keys(left).filter((key) => key.includes(id) || key.endsWith('/dc2'))).toEqual([]);
    expect(Object.keys(left)).toHaveLength(2);
    await expect(store.create(areaInput('dc2'))).resolves.toEqual({ id: expect.any(String), index: expect.any(Number) });
  });

  test('refuses an unknown area as not found, and a second delete of the same area', async () => {
    const store = await openStore();
    expect((await refusal(store.delete('nope'))).kind).toBe('not-found');
    const { id } = await store.create(areaInput('dc2'));
    await store.delete(id);
    const err = await refusal(store.delete(id));
    expect([err.kind, err.message]).toEqual(['not-found', `area ID "${id}" does not exist`]);
  });
});

// ---------------------------------------------------------------------------------------------
// The mirror and its index

describe('mirror', () => {
  test('loads what is already stored, areas sorted by peer datacenter', async () => {
    const writer = await openStore();
    const dc3 = await writer.create(areaInput('dc3', { transit: true }));
    const dc2 = await writer.create(areaInput('dc2'));

    const reader = await openStore();
    expect(reader.isLoaded).toBe(true);
    expect(reader.areas().map((area) => [area.peerDatacenter, area.id, area.transit])).toEqual([
      ['dc2', dc2.id, false],
      ['dc3', dc3.id, true],
    ]);
    expect(reader.index).toBe(dc2.index);
  });

  test('follows another router\'s creates, updates and deletes, and tells subscribers', async () => {
    const writer = await openStore();
    const reader = await openStore();
    let told = 0;
    reader.subscribe(() => told++);

    const { id } = await writer.create(areaInput('dc2'));
    await eventually(() => reader.area(id) !== undefined, 'the reader sees the new area');
    expect(told).toBeGreaterThan(0);

    await writer.update(id, { transit: true });
    await eventually(() => reader.area(id)?.transit === true, 'the reader sees the update');

    await writer.delete(id);
    await eventually(() => reader.area(id) === undefined, 'the reader sees the delete');
    expect(reader.areas()).toEqual([]);
  });

  test('moves the index with every change to the areas, and only with those', async () => {
    const store = await openStore();
    expect(store.index).toBe(1); // Consul never answers a blocking query with index 0

    const created = await store.create(areaInput('dc2'));
    await eventually(() => store.index === created.index, 'the index is the create\'s');

    const updated = await store.update(created.id, { useTls: true });
    await eventually(() => store.index === updated.index, 'the index is the update\'s');

    store.keepRegistered({ node: 'router-1', address: '127.0.0.1:8300' });
    await eventually(() => store.routers().length === 1, 'the router is registered');
    expect(store.index).toBe(updated.index);

    const deleted = await store.delete(created.id);
    await eventually(() => store.index === deleted.index, 'the index is the delete\'s');
  });

  test('catchUp makes another router\'s write visible at once', async () => {
    const writer = await openStore();
    const reader = await openStore();
    const { id } = await writer.create(areaInput('dc2'));
    await reader.catchUp();
    expect(reader.area(id)?.peerDatacenter).toBe('dc2');
  });

  test('catchUp answers at once after writes outside the router prefix (a catalog write, a KV put)', async () => {
    const store = await openStore();
    const { id } = await store.create(areaInput('dc2'));
    for (let i = 0; i < 3; i++) await client.kv('put', { key: Buffer.from(`/kv/elsewhere-${i}`), value: Buffer.from('x'), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: true });
    expect(await elapsedMs(store.catchUp())).toBeLessThan(2_000);
    expect(store.area(id)?.peerDatacenter).toBe('dc2');
    // The watch keeps applying what comes after, and does not undo the newer read.
    await store.update(id, { transit: true });
    await eventually(() => store.area(id)?.transit === true, 'the update is mirrored');
    await store.delete(id);
    await eventually(() => store.area(id) === undefined, 'the delete is mirrored');
  });

  test('a change missed while the watch was down still moves the index', async () => {
    // Two listeners on the one Raft node stand for two consensus servers. The router watches
    // through the spare; the spare goes away, another router deletes an area before this one
    // reloads, and the reload must move the index, or blocking queries would sleep through it.
    const spare = await consensus.addListener();
    const store = await openStore('dc1', [spare.address, consensus.address]);
    const writer = await openStore();
    const { id } = await writer.create(areaInput('dc2'));
    await eventually(() => store.area(id) !== undefined, 'the area is mirrored');
    const before = store.index;
    const waiting = store.waitForIndex(before, 10_000);

    await consensus.stopListener(spare.address);
    const { index } = await writer.delete(id);
    await eventually(() => store.area(id) === undefined, 'the reload drops the area');
    expect(store.index).toBeGreaterThan(before);
    expect(store.index).toBeLessThanOrEqual(index);
    expect(await elapsedMs(waiting)).toBeLessThan(5_000);
  });
});

describe('waitForIndex', () => {
  test('returns at once when the index is already past', async () => {
    const store = await openStore();
    await store.create(areaInput('dc2'));
    await store.catchUp();
    expect(await elapsedMs(store.waitForIndex(store.index - 1, 5_000))).toBeLessThan(1_000);
  });

  test('wakes on a change to the areas', async () => {
    const store = await openStore();
    const index = store.index;
    const waiting = store.waitForIndex(index, 10_000);
    const writer = await openStore();
    await writer.create(areaInput('dc2'));
    expect(await elapsedMs(waiting)).toBeLessThan(5_000);
    expect(store.index).toBeGreaterThan(index);
  });

  test('times out when nothing changes, and a router registration is no change', async () => {
    const store = await openStore();
    const index = store.index;
    const waiting = store.waitForIndex(index, 300);
    store.keepRegistered({ node: 'router-1', address: '127.0.0.1:8300' });
    expect(await elapsedMs(waiting)).toBeGreaterThanOrEqual(250);
    expect(store.routers()).toEqual([{ node: 'router-1', address: '127.0.0.1:8300' }]);
    expect(store.index).toBe(index);
  });

  test('stop wakes the waiters', async () => {
    const store = await openStore();
    const waiting = store.waitForIndex(store.index, 10_000);
    setTimeout(() => store.stop(), 20);
    expect(await elapsedMs(waiting)).toBeLessThan(5_000);
  });
});

describe('keepRegistered', () => {
  test('puts the router under a lease of ROUTER_LEASE_TTL_S, seen by every router of the datacenter', async () => {
    const store = await openStore();
    const other = await openStore();
    store.keepRegistered({ node: 'router-1', address: '10.0.1.20:8300' });
    await eventually(() => other.routers().length === 1, 'the other router sees the registration');
    expect(other.routers()).toEqual([{ node: 'router-1', address: '10.0.1.20:8300' }]);

    const response = await client.kv('range', { key: Buffer.from('/router/routers/router-1'), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, consistency: 0, keysOnly: false, countOnly: false }, { timeoutMs: 2_000, idempotent: true });
    const lease = response.kvs[0].lease;
    expect(lease).not.toBe(0n);
    const ttl = await client.lease('leaseTimeToLive', { id: lease, keys: false }, { timeoutMs: 2_000, idempotent: true });
    expect(Number(ttl.grantedTtl)).toBe(10);

    await client.lease('leaseRevoke', { id: lease }, { timeoutMs: 2_000, idempotent: false });
    await eventually(() => other.routers().length === 0, 'the registration goes with its lease');
  });
});
