/**
 * consulate.catalog.v1.SessionService over the in-process fakes: Consul's sessions
 * (agent/consul/session_endpoint.go, state/session.go) as the HTTP API keeps them: Consul's
 * defaults (the catalog's node, serfHealth, 15 s lock-delay, release), its TTL bounds and texts,
 * the lease behind a TTL, and destroying a session releasing its locks.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

import { CreateRequest, SessionBehavior } from '../../gen/consulate/catalog/v1/session';
import { Consistency } from '../../gen/consulate/catalog/v1/query';
import { registerSessionEndpoints } from '../http/session-endpoint';
import { CatalogGrpc, startCatalogGrpc } from '../testing/grpc-harness';
import { HttpHarness, startHttp } from '../testing/http-harness';
import { registerNode } from '../testing/kv-fake';
import { INDEX_TRAILER } from './status';

let api: CatalogGrpc;

beforeEach(async () => {
  api = await startCatalogGrpc();
  registerNode(api.consensus, 'catalog-1');
  registerNode(api.consensus, 'node-2', 'passing', ['disk']);
});

afterEach(async () => {
  await api.close();
});

function create(request: Partial<CreateRequest> = {}) {
  return api.call(api.session.create.bind(api.session), { name: '', node: '', lockDelay: undefined, behavior: SessionBehavior.SESSION_BEHAVIOR_UNSPECIFIED, ttl: undefined, nodeChecks: undefined, serviceChecks: [], datacenter: '', ...request });
}

function createFailure(request: Partial<CreateRequest>) {
  return api.failure(api.session.create.bind(api.session), { name: '', node: '', lockDelay: undefined, behavior: SessionBehavior.SESSION_BEHAVIOR_UNSPECIFIED, ttl: undefined, nodeChecks: undefined, serviceChecks: [], datacenter: '', ...request });
}

const info = (id: string) => api.call(api.session.info.bind(api.session), { query: undefined, id });

test("create with Consul's defaults, then Info and List (as the HTTP API shows it)", async () => {
  const { id } = await create({ name: 'web-lock' });
  const { session, meta } = await info(id);
  expect(session).toEqual({
    id,
    name: 'web-lock',
    node: 'catalog-1',
    lockDelay: { seconds: 15n, nanos: 0 },
    behavior: SessionBehavior.SESSION_BEHAVIOR_RELEASE,
    ttl: undefined,
    nodeChecks: ['serfHealth'],
    serviceChecks: [],
    createIndex: BigInt(api.consensus.fake.revision),
    modifyIndex: BigInt(api.consensus.fake.revision),
  });
  expect(meta?.index).toBe(BigInt(api.consensus.fake.revision));

  const http: HttpHarness = await startHttp((router) => registerSessionEndpoints(router, api.deps));
  try {
    expect((await http.request('GET', `/v1/session/info/${id}`)).json).toEqual([expect.objectContaining({ ID: id, Node: 'catalog-1', LockDelay: 15e9, Behavior: 'release', NodeChecks: ['serfHealth'] })]);
  } finally {
    await http.close();
  }

  const other = await create({ node: 'node-2', behavior: SessionBehavior.SESSION_BEHAVIOR_DELETE, nodeChecks: { checkIds: ['serfHealth', 'disk'] }, ttl: { seconds: 30n, nanos: 0 }, lockDelay: { seconds: 0n, nanos: 0 } });
  const all = await api.call(api.session.list.bind(api.session), { query: { consistency: Consistency.CONSISTENCY_CONSISTENT, minIndex: 0n, maxStale: undefined, datacenter: '' }, node: '' });
  expect(all.sessions.map((s) => s.id).sort()).toEqual([id, other.id].sort());
  expect(all.meta?.consistency).toBe(Consistency.CONSISTENCY_CONSISTENT);
  const onNode2 = await api.call(api.session.list.bind(api.session), { query: undefined, node: 'NODE-2' });
  expect(onNode2.sessions).toEqual([expect.objectContaining({ id: other.id, behavior: SessionBehavior.SESSION_BEHAVIOR_DELETE, ttl: { seconds: 30n, nanos: 0 }, lockDelay: { seconds: 0n, nanos: 0 }, nodeChecks: ['serfHealth', 'disk'] })]);
  // A TTL lives on a consensus lease of twice the TTL (structs.SessionTTLMultiplier).
  expect([...api.consensus.leases.values()].map((lease) => lease.ttl)).toEqual([60n]);
});

test('node_checks set with no IDs: a session with no checks', async () => {
  const { id } = await create({ nodeChecks: { checkIds: [] }, ttl: { seconds: 10n, nanos: 0 } });
  expect((await info(id)).session?.nodeChecks).toEqual([]);
});

test("Consul's refusals: INVALID_ARGUMENT for a malformed request, FAILED_PRECONDITION for the catalog's state", async () => {
  const shortTtl = await createFailure({ ttl: { seconds: 5n, nanos: 0 } });
  expect({ code: shortTtl.code, details: shortTtl.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]" });
  const behavior = await createFailure({ behavior: 7 as SessionBehavior });
  expect({ code: behavior.code, details: behavior.details }).toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details: "Invalid Behavior setting '7'" });
  const noNode = await createFailure({ node: 'ghost' });
  expect({ code: noNode.code, details: noNode.details }).toEqual({ code: GrpcStatus.FAILED_PRECONDITION, details: 'Missing node registration' });
  const noCheck = await createFailure({ nodeChecks: { checkIds: ['nope'] } });
  expect({ code: noCheck.code, details: noCheck.details }).toEqual({ code: GrpcStatus.FAILED_PRECONDITION, details: "Missing check 'nope' registration" });
  expect(api.consensus.leases.size).toBe(0);
});

test('renew restarts the lease; an unknown session is NOT_FOUND with Consul\'s text', async () => {
  const { id } = await create({ ttl: { seconds: 15n, nanos: 0 } });
  const renewed = await api.call(api.session.renew.bind(api.session), { id, datacenter: '' });
  expect(renewed.session?.id).toBe(id);
  expect(api.consensus.keepAlives).toHaveLength(1);
  const unknown = await api.failure(api.session.renew.bind(api.session), { id: 'no-such', datacenter: '' });
  expect({ code: unknown.code, details: unknown.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: "Session id 'no-such' not found" });
  const missing = await api.failure(api.session.info.bind(api.session), { query: undefined, id: 'no-such' });
  expect(missing.code).toBe(GrpcStatus.NOT_FOUND);
  expect(missing.metadata.get(INDEX_TRAILER)).toEqual([String(api.consensus.fake.revision)]);
  expect((await api.failure(api.session.destroy.bind(api.session), { id: '', datacenter: '' })).details).toBe('Missing session');
});

test('destroy releases the locks the session held (Behavior release), then the session is gone', async () => {
  const { id } = await create({ lockDelay: { seconds: 0n, nanos: 0 } });
  const put = (condition: { $case: 'acquire'; value: string } | undefined) => api.call(api.kv.put.bind(api.kv), { key: 'leader', value: Buffer.from('me'), flags: 0n, condition, datacenter: '' });
  expect((await put({ $case: 'acquire', value: id })).succeeded).toBe(true);
  await api.call(api.session.destroy.bind(api.session), { id, datacenter: '' });
  const entry = (await api.call(api.kv.get.bind(api.kv), { query: undefined, key: 'leader', recurse: false, keys: false, separator: '' })).entries[0];
  expect(entry).toMatchObject({ session: '', lockIndex: 1n });
  expect((await api.failure(api.session.info.bind(api.session), { query: undefined, id })).code).toBe(GrpcStatus.NOT_FOUND);
  // Destroying it again is no error (Session.Apply returns nil for an unknown session).
  await api.call(api.session.destroy.bind(api.session), { id, datacenter: '' });
});
