/**
 * A SWIM pool's transport over 8300 (pool-transport.ts): the pool's name on the wire, packets and
 * push/pull exchanges as FederationService calls to an in-process gRPC server (plaintext: TLS is
 * PeerClients' business, tested beside it), and a failed join in Consul's words
 * (`consul operator area join` prints memberlist's `dial tcp <addr>: connect: connection refused`).
 */
import { AddressInfo, createServer as createTcpServer } from 'node:net';

import { Metadata, Server as GrpcServer, ServerCredentials, ServerUnaryCall, ServiceError, credentials, sendUnaryData, status as GrpcStatus } from '@grpc/grpc-js';

import { FederationServiceClient, FederationServiceService, PacketRequest, PushPullRequest } from '../gen/consulate/router/v1/federation';
import { createLogger } from '../lib/log';
import { ExchangeError } from '../lib/swim-pool';
import { peerOf } from './testing/peer-of';
import { DATACENTER_METADATA, PeerClients } from './peer-clients';
import { RpcPoolTransport, poolKey } from './pool-transport';

const logger = createLogger({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', level: 'silent' });
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// ---------------------------------------------------------------------------------------------
// Builders

interface Received {
  readonly packets: { request: PacketRequest; datacenter: unknown[] }[];
  readonly exchanges: PushPullRequest[];
}

/** Another router's 8300: keeps what arrives; answers a push/pull with `answer` (or never). */
async function peerRouter(answer: ((request: PushPullRequest) => Buffer) | 'never' = (request) => Buffer.concat([Buffer.from('re:'), request.frame])): Promise<{ address: string; received: Received }> {
  const received: Received = { packets: [], exchanges: [] };
  const unimplemented = (_: unknown, callback: sendUnaryData<never>) => callback({ code: GrpcStatus.UNIMPLEMENTED });
  const server = new GrpcServer();
  server.addService(FederationServiceService, {
    packet(call: ServerUnaryCall<PacketRequest, object>, callback: sendUnaryData<object>) {
      received.packets.push({ request: call.request, datacenter: call.metadata.get(DATACENTER_METADATA) });
      callback(null, {});
    },
    pushPull(call: ServerUnaryCall<PushPullRequest, { frame: Buffer }>, callback: sendUnaryData<{ frame: Buffer }>) {
      received.exchanges.push(call.request);
      if (answer !== 'never') callback(null, { frame: answer(call.request) });
    },
    forward: unimplemented,
    ping: unimplemented,
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))));
  cleanups.push(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, received };
}

/** An address nothing listens on. */
async function deadAddress(): Promise<string> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `127.0.0.1:${port}`;
}

/** PeerClients of dc1 without TLS; `client` replaces the real client for every address. */
function plaintextPeers(client?: Partial<FederationServiceClient>): PeerClients {
  const clients = new Map<string, FederationServiceClient>();
  cleanups.push(() => clients.forEach((one) => one.close()));
  const gossip = (address: string) => {
    if (client !== undefined) return client as FederationServiceClient;
    let one = clients.get(address);
    if (one === undefined) clients.set(address, (one = new FederationServiceClient(address, credentials.createInsecure())));
    return one;
  };
  const metadata = () => {
    const sent = new Metadata();
    sent.set(DATACENTER_METADATA, 'dc1');
    return sent;
  };
  const peer = (address: string) => peerOf(gossip(address));
  const fake: Pick<PeerClients, 'gossip' | 'forwarding' | 'metadata'> = { gossip: peer, forwarding: peer, metadata };
  return fake as PeerClients;
}

function transport(peers: PeerClients = plaintextPeers()): RpcPoolTransport {
  return new RpcPoolTransport('area:dc1:dc2', '10.0.1.20:8300', peers, logger);
}

/** A client whose push/pull fails at once with `details` (as grpc-js reports a failed connect). */
function failingClient(code: GrpcStatus, details: string): Partial<FederationServiceClient> {
  const error = Object.assign(new Error(`${code} ${GrpcStatus[code]}: ${details}`), { code, details, metadata: new Metadata() }) as ServiceError;
  return { pushPull: ((_request: unknown, _metadata: unknown, _options: unknown, callback: (err: ServiceError) => void) => callback(error)) as unknown as FederationServiceClient['pushPull'] };
}

/** A packet is fire and forget: wait until the peer has it. */
async function eventually(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the peer');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  if (err === undefined) throw new Error('expected a rejection');
  return err.message;
}

// ---------------------------------------------------------------------------------------------

describe('poolKey', () => {
  test('names an area\'s pool by both datacenters, the same from either side', () => {
    expect(poolKey('dc1', 'dc2')).toBe('area:dc1:dc2');
    expect(poolKey('dc2', 'dc1')).toBe('area:dc1:dc2');
    expect(poolKey('west', 'east')).toBe(poolKey('east', 'west'));
  });

  test('names the WAN pool "wan"', () => {
    expect(poolKey('dc1', undefined)).toBe('wan');
  });
});

describe('sending', () => {
  test('a packet goes to the member\'s router as a Packet call, naming the pool, us and our datacenter', async () => {
    const peer = await peerRouter();
    transport().sendPacket(peer.address, new Uint8Array([1, 2, 3]));
    await eventually(() => peer.received.packets.length > 0);
    expect(peer.received.packets).toEqual([{ request: { pool: 'area:dc1:dc2', from: '10.0.1.20:8300', packet: Buffer.from([1, 2, 3]) }, datacenter: ['dc1'] }]);
  });

  test('a push/pull is one PushPull call; its answer frame is the reply', async () => {
    const peer = await peerRouter();
    const answer = await transport().exchange(peer.address, Buffer.from('state'), 2_000);
    expect(Buffer.from(answer).toString()).toBe('re:state');
    expect(peer.received.exchanges).toEqual([{ pool: 'area:dc1:dc2', from: '10.0.1.20:8300', frame: Buffer.from('state') }]);
  });

  test('a closed transport sends no packets', async () => {
    const peer = await peerRouter();
    const peers = plaintextPeers();
    const [closed, open] = [transport(peers), transport(peers)];
    await closed.close();
    closed.sendPacket(peer.address, new Uint8Array([1]));
    open.sendPacket(peer.address, new Uint8Array([2]));
    await eventually(() => peer.received.packets.length > 0);
    expect(peer.received.packets.map((packet) => [...packet.request.packet])).toEqual([[2]]);
  });
});

describe('receiving', () => {
  test('packets and push/pulls arriving on 8300 go to the pool\'s handlers until it closes', async () => {
    const open = transport();
    const packets: [string, number[]][] = [];
    open.onPacket((from, bytes) => packets.push([from, [...bytes]]));
    open.onStream((from, request) => Buffer.from(`${from}:${Buffer.from(request).toString()}`));

    open.deliverPacket('10.0.2.20:8300', new Uint8Array([7]));
    expect(packets).toEqual([['10.0.2.20:8300', [7]]]);
    expect(Buffer.from(open.answerStream('10.0.2.20:8300', Buffer.from('ping'))).toString()).toBe('10.0.2.20:8300:ping');

    await open.close();
    open.deliverPacket('10.0.2.20:8300', new Uint8Array([8]));
    expect(packets).toHaveLength(1);
    expect(() => open.answerStream('10.0.2.20:8300', Buffer.from('ping'))).toThrow('pool area:dc1:dc2 is closed');
  });
});

describe('a failed exchange, in Consul\'s words', () => {
  test('nothing listening: connection refused', async () => {
    const address = await deadAddress();
    expect(await rejection(transport().exchange(address, Buffer.from('x'), 2_000))).toBe(`failed to connect to "${address}": dial tcp ${address}: connect: connection refused`);
  });

  test('no answer by the deadline: i/o timeout', async () => {
    const peer = await peerRouter('never');
    expect(await rejection(transport().exchange(peer.address, Buffer.from('x'), 100))).toBe(`failed to connect to "${peer.address}": dial tcp ${peer.address}: i/o timeout`);
  });

  test('no route to the host', async () => {
    const peers = plaintextPeers(failingClient(GrpcStatus.UNAVAILABLE, 'No connection established. Last error: connect EHOSTUNREACH 10.9.9.9:8300'));
    expect(await rejection(transport(peers).exchange('10.9.9.9:8300', Buffer.from('x'), 2_000))).toBe('failed to connect to "10.9.9.9:8300": dial tcp 10.9.9.9:8300: connect: no route to host');
  });

  test('only a refused connection is an ExchangeError marked refused (the pool then suspects the member at once)', async () => {
    const refused = await transport().exchange(await deadAddress(), Buffer.from('x'), 2_000).catch((err: unknown) => err);
    const timedOut = await transport().exchange((await peerRouter('never')).address, Buffer.from('x'), 100).catch((err: unknown) => err);
    const unreachable = await transport(plaintextPeers(failingClient(GrpcStatus.UNAVAILABLE, 'No connection established. Last error: connect EHOSTUNREACH 10.9.9.9:8300'))).exchange('10.9.9.9:8300', Buffer.from('x'), 2_000).catch((err: unknown) => err);
    expect([refused, timedOut, unreachable].map((err) => err instanceof ExchangeError && err.refused)).toEqual([true, false, false]);
  });

  test('anything else keeps gRPC\'s details, without the resolver\'s note', async () => {
    const peers = plaintextPeers(failingClient(GrpcStatus.NOT_FOUND, 'no pool "area:dc1:dc2" on this router. Resolution note: dns lookup of peer'));
    expect(await rejection(transport(peers).exchange('10.9.9.9:8300', Buffer.from('x'), 2_000))).toBe('failed to connect to "10.9.9.9:8300": no pool "area:dc1:dc2" on this router');
  });
});
