// consulate.catalog.v1.EventService (event-service.ts) on a catalog's UserEvents over a gossip agent
// that delivers what is fired to its own watch (testing/loopback-events.ts), behind a real
// RoleGrpcServer, with the generated client.
import { ClientReadableStream, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { EventServiceClient, EventServiceFireRequest, EventServiceService, EventServiceWatchResponse, protobufFileName } from '../../gen/consulate/catalog/v1/event';
import { callUnary } from '../../lib/grpc-client';
import { RoleGrpcServer } from '../../lib/grpc-server';
import { createLogger } from '../../lib/log';
import { GossipUnavailableError } from '../gossip-client';
import { loopbackEvents } from '../testing/loopback-events';
import { UserEvents, eventsIndex } from '../user-events';
import { eventService } from './event-service';

const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' });
const loopback = loopbackEvents();
const events = new UserEvents({ gossip: loopback.gossip, node: 'catalog-1', localServices: () => [], logger });
let server: RoleGrpcServer;
let client: EventServiceClient;

beforeAll(async () => {
  events.start();
  server = new RoleGrpcServer({ logger, tracer: trace.getTracer('test'), services: [{ definition: EventServiceService, implementation: eventService({ events, logger }), protoFile: protobufFileName }] });
  const address = await server.listen('127.0.0.1', 0);
  server.setServing(true);
  client = new EventServiceClient(address, credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  events.stop();
  await server.shutdown();
});

const once = { timeoutMs: 5_000, idempotent: false };
const fire = (request: Partial<EventServiceFireRequest>) =>
  callUnary(client.fire.bind(client), { name: '', payload: Buffer.alloc(0), nodeFilter: '', serviceFilter: '', tagFilter: '', datacenter: '', ...request }, once);
const list = (name: string) => callUnary(client.list.bind(client), { name }, once);

test('Fire answers the event as fired (LTime 0); List has it, oldest first, with its LTime and the index of the last', async () => {
  const { event } = await fire({ name: 'deploy', payload: Buffer.from('v1') });
  expect(event).toMatchObject({ name: 'deploy', payload: Buffer.from('v1'), version: 1, ltime: 0n });
  await fire({ name: 'restart' });
  const listed = await list('');
  expect(listed.events.map((e) => [e.id, e.name])).toEqual([
    [event!.id, 'deploy'],
    [expect.any(String), 'restart'],
  ]);
  expect(listed.events[0].ltime > 0n).toBe(true);
  expect(listed.index).toBe(eventsIndex(listed.events));
  expect((await list('deploy')).events.map((e) => e.name)).toEqual(['deploy']);
});

test("refusals: INVALID_ARGUMENT with Consul's texts and gossip's; UNAVAILABLE without a gossip agent", async () => {
  const code = (request: Partial<EventServiceFireRequest>) => fire(request).then(() => undefined, (err: ServiceError) => [err.code, err.details]);
  expect(await code({})).toEqual([GrpcStatus.INVALID_ARGUMENT, 'User event missing name']);
  expect(await code({ name: 'x', tagFilter: 'v1' })).toEqual([GrpcStatus.INVALID_ARGUMENT, 'Cannot provide tag filter without service filter']);
  loopback.refuseWith = 'user event exceeds configured limit of 512 bytes before encoding';
  try {
    expect(await code({ name: 'x', payload: Buffer.alloc(600) })).toEqual([GrpcStatus.INVALID_ARGUMENT, loopback.refuseWith]);
  } finally {
    loopback.refuseWith = undefined;
  }
  const fireEvent = loopback.gossip.fireEvent;
  (loopback.gossip as { fireEvent: typeof fireEvent }).fireEvent = () => Promise.reject(new GossipUnavailableError('No gossip agent answered'));
  try {
    expect(await code({ name: 'x' })).toEqual([GrpcStatus.UNAVAILABLE, 'No gossip agent answered']);
  } finally {
    (loopback.gossip as { fireEvent: typeof fireEvent }).fireEvent = fireEvent;
  }
});

test('Watch streams each event kept from then on, of its name only, until cancelled', async () => {
  const stream: ClientReadableStream<EventServiceWatchResponse> = client.watch({ name: 'deploy' });
  const got: string[] = [];
  stream.on('data', (message: EventServiceWatchResponse) => got.push(Buffer.from(message.event!.payload).toString()));
  stream.on('error', () => undefined);
  // The stream is open once the server has it: fire until the first one arrives.
  for (let i = 0; got.length === 0 && i < 100; i++) {
    await fire({ name: 'deploy', payload: Buffer.from('early') });
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  got.length = 0;
  await fire({ name: 'other', payload: Buffer.from('no') });
  await fire({ name: 'deploy', payload: Buffer.from('v2') });
  while (got.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(got).toEqual(['v2']);
  stream.cancel();
});
