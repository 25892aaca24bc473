/**
 * reliability.md S4, the area API's semantics on gRPC: an unknown ID is NOT_FOUND echoing it, a
 * malformed one INVALID_ARGUMENT before anything is looked up, an area with this datacenter itself
 * FAILED_PRECONDITION, a second area with the same peer ALREADY_EXISTS; joins answer per address.
 * The handlers run against a real AreaStore on an in-process consensus server; the pools are not
 * needed, and a stub that throws proves a refused call never reached them.
 */
import { ServerUnaryCall, handleUnaryCall, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { InProcessConsensus, startInProcessConsensus } from '../../test/harness/in-process-consensus';
import { OperatorServiceServer } from '../gen/consulate/router/v1/operator';
import { ConsensusClient } from '../lib/consensus-client';
import { createLogger } from '../lib/log';
import { AreaStore } from './area-store';
import { Federation } from './federation';
import { operatorService } from './operator-service';

const tracer = trace.getTracer('test');
const logger = createLogger({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', level: 'silent' });

let consensus: InProcessConsensus;
let client: ConsensusClient;
let store: AreaStore;
let service: OperatorServiceServer;
const joined: { id: string; addresses: readonly string[] }[] = [];

beforeEach(async () => {
  consensus = await startInProcessConsensus();
  client = new ConsensusClient([consensus.address], tracer);
  store = new AreaStore('dc1', client, [consensus.address], tracer, logger);
  await store.start();
  joined.length = 0;
  const federation = {
    join: async (id: string, addresses: readonly string[]) => {
      if (store.area(id) === undefined) throw new Error(`join asked for an area the mirror does not hold: ${id}`);
      joined.push({ id, addresses });
      return addresses.map((address) => ({ address, joined: false, error: `Failed to join ${address}: dial tcp ${address}: connect: connection refused` }));
    },
    members: (id: string) => {
      if (store.area(id) === undefined) throw new Error(`members asked for an area the mirror does not hold: ${id}`);
      return [];
    },
  } as unknown as Federation;
  service = operatorService({ context: { roleInfo: () => ({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', version: '0', startedAtUnixMs: 0n, listeners: {} }) }, consensus: client, datacenter: 'dc1', store, federation, forwarder: { tryOrder: (hops) => [...hops] } });
});

afterEach(async () => {
  store.stop();
  client.close();
  await consensus.stop();
});

type Outcome = { ok: true; value: unknown } | { ok: false; code: GrpcStatus; details: string };

/** Calls one unary handler as grpc-js would. */
function invoke<Request, Response>(handler: handleUnaryCall<Request, Response>, request: Request): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = { request, getDeadline: () => Infinity, metadata: undefined } as unknown as ServerUnaryCall<Request, Response>;
    handler(call, (err, value) => resolve(err === null ? { ok: true, value } : { ok: false, code: err.code!, details: err.details! }));
  });
}

const refusal = (code: GrpcStatus, details: string) => ({ ok: false, code, details });

test('a malformed area ID: INVALID_ARGUMENT for get, update, delete, join and members, and nothing is joined', async () => {
  for (const id of ['not-a-uuid', '../../admin', '7e4b6c1f-0000-4000-8000', '7E4B6C1F-0000-4000-8000-00000000000G']) {
    const details = `Invalid area ID "${id}": an area ID is a UUID (8-4-4-4-12 hex digits)`;
    expect(await invoke(service.getArea, { id, options: undefined })).toEqual(refusal(GrpcStatus.INVALID_ARGUMENT, details));
    expect(await invoke(service.updateArea, { id, useTls: true, transit: undefined })).toEqual(refusal(GrpcStatus.INVALID_ARGUMENT, details));
    expect(await invoke(service.deleteArea, { id })).toEqual(refusal(GrpcStatus.INVALID_ARGUMENT, details));
    expect(await invoke(service.joinArea, { id, addresses: ['127.0.0.1'] })).toEqual(refusal(GrpcStatus.INVALID_ARGUMENT, details));
    expect(await invoke(service.areaMembers, { id })).toEqual(refusal(GrpcStatus.INVALID_ARGUMENT, details));
  }
  expect(await invoke(service.deleteArea, { id: '' })).toEqual(refusal(GrpcStatus.INVALID_ARGUMENT, 'Missing area ID'));
  expect(joined).toEqual([]);
});

test('an unknown area ID: NOT_FOUND echoing it for update, delete, join and members; get answers no area', async () => {
  const id = '7e4b6c1f-2f7a-4d2b-9f0e-3c5a1b2d4e6f';
  const details = `area ID "${id}" does not exist`;
  expect(await invoke(service.updateArea, { id, useTls: true, transit: undefined })).toEqual(refusal(GrpcStatus.NOT_FOUND, details));
  expect(await invoke(service.deleteArea, { id })).toEqual(refusal(GrpcStatus.NOT_FOUND, details));
  expect(await invoke(service.joinArea, { id, addresses: ['127.0.0.1'] })).toEqual(refusal(GrpcStatus.NOT_FOUND, details));
  expect(await invoke(service.areaMembers, { id })).toEqual(refusal(GrpcStatus.NOT_FOUND, details));
  // Consul's GET answers an array; terraform reads [] as "the area is gone".
  expect(await invoke(service.getArea, { id, options: undefined })).toMatchObject({ ok: true, value: { areas: [] } });
  expect(joined).toEqual([]);
});

test('create: this datacenter itself FAILED_PRECONDITION, a second area with a peer ALREADY_EXISTS; a join answers per address', async () => {
  const area = (peerDatacenter: string) => ({ area: { id: '', peerDatacenter, retryJoin: [], useTls: false, transit: false } });
  expect(await invoke(service.createArea, area('dc1'))).toEqual(refusal(GrpcStatus.FAILED_PRECONDITION, 'Cannot create an area with the local datacenter "dc1"'));
  const created = await invoke(service.createArea, area('dc2'));
  expect(created).toMatchObject({ ok: true, value: { id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/) } });
  expect(await invoke(service.createArea, area('dc2'))).toEqual(refusal(GrpcStatus.ALREADY_EXISTS, 'An area with peer datacenter "dc2" already exists'));
  const id = (created as { value: { id: string } }).value.id;
  const join = await invoke(service.joinArea, { id, addresses: ['127.0.0.1', 'not an address'] });
  expect(join).toEqual({ ok: true, value: { results: [expect.objectContaining({ address: '127.0.0.1', joined: false }), expect.objectContaining({ address: 'not an address', joined: false })] } });
  expect(joined).toEqual([{ id, addresses: ['127.0.0.1', 'not an address'] }]);
});

test('an area created through another router is found by join and members at once: the mirror catches up before NOT_FOUND', async () => {
  // A second router of the datacenter, its own mirror of the same store: a script's `create` and
  // its `join` can land on different routers, or on one whose watch has not delivered the area yet.
  const other = new AreaStore('dc1', client, [consensus.address], tracer, logger);
  await other.start();
  try {
    const created = await other.create({ peerDatacenter: 'dc2', retryJoin: [], useTls: false, transit: false });
    // No wait for the watch: the handlers must not answer from a mirror that is behind.
    const [join, members] = await Promise.all([invoke(service.joinArea, { id: created.id, addresses: ['127.0.0.1'] }), invoke(service.areaMembers, { id: created.id })]);
    expect(join).toMatchObject({ ok: true, value: { results: [expect.objectContaining({ address: '127.0.0.1' })] } });
    expect(members).toEqual({ ok: true, value: { members: [] } });
    expect(joined).toEqual([{ id: created.id, addresses: ['127.0.0.1'] }]);
  } finally {
    other.stop();
  }
});
