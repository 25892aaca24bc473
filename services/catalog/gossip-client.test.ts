// The catalog's client of its gossip agents: deadlines, fail-over to the next agent, and a member
// watch that survives an agent going away, against real gRPC servers on loopback.
import { ServerWritableStream, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { MemberEvent, MemberEventType, MembershipServiceServer, MembershipServiceService, WatchMembersRequest, WatchMembersResponse, protobufFileName } from '../gen/consulate/gossip/v1/membership';
import { RoleGrpcServer } from '../lib/grpc-server';
import { createLogger } from '../lib/log';
import { GossipAnswerError, GossipClient, GossipUnavailableError } from './gossip-client';

const logger = createLogger({ role: 'gossip', datacenter: 'dc1', node: 'n', level: 'silent' });
const tracer = trace.getTracer('test');

interface FakeAgent {
  readonly name: string;
  readonly address: string;
  readonly server: RoleGrpcServer;
  readonly streams: Set<ServerWritableStream<WatchMembersRequest, WatchMembersResponse>>;
  calls: number;
}

/** A gossip agent whose Members answers with its own name as the one member. */
async function fakeAgent(name: string): Promise<FakeAgent> {
  const streams = new Set<ServerWritableStream<WatchMembersRequest, WatchMembersResponse>>();
  const agent = { name, streams, calls: 0 } as FakeAgent;
  const member = { name, address: '127.0.0.1', port: 8301, tags: {}, status: 'alive', statusCode: 1, segment: '', incarnation: 1n };
  const implementation: Partial<MembershipServiceServer> = {
    members(call, callback) {
      agent.calls++;
      if (call.request.segment === 'gamma') return callback({ code: GrpcStatus.NOT_FOUND, details: 'segment "gamma" not found' } as never);
      callback(null, { members: [member] });
    },
    status(_call, callback) {
      callback(null, { server: name.startsWith('server') });
    },
    watchMembers(call) {
      streams.add(call);
      call.write({ event: { type: MemberEventType.MEMBER_EVENT_TYPE_CURRENT, member } });
      call.write({ event: { type: MemberEventType.MEMBER_EVENT_TYPE_SYNCED } });
      call.on('cancelled', () => streams.delete(call));
    },
  };
  const server = new RoleGrpcServer({ logger, tracer, services: [{ definition: MembershipServiceService, implementation: implementation as MembershipServiceServer, protoFile: protobufFileName }] });
  return Object.assign(agent, { server, address: await server.listen('127.0.0.1', 0) });
}

/** An address nothing listens on (a server bound, then closed). */
async function deadAddress(): Promise<string> {
  const agent = await fakeAgent('dead');
  await agent.server.shutdown();
  return agent.address;
}

describe('GossipClient', () => {
  const agents: FakeAgent[] = [];
  const clients: GossipClient[] = [];
  const client = (addresses: string[]) => {
    const c = new GossipClient(addresses, tracer);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    agents.push(await fakeAgent('server-1'), await fakeAgent('server-2'));
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(agents.map((a) => a.server.shutdown()));
  });

  test('a call that cannot reach an agent goes to the next; later calls start at the one that answered', async () => {
    const dead = await deadAddress();
    const gossip = client([dead, agents[0].address]);
    expect((await gossip.members('_all')).map((m) => m.name)).toEqual(['server-1']);
    const before = agents[0].calls;
    await gossip.members('_all');
    expect(agents[0].calls).toBe(before + 1);
  });

  test("an agent's own answer is final: not asked of the next agent", async () => {
    const gossip = client([agents[0].address, agents[1].address]);
    const before = agents[1].calls;
    await expect(gossip.members('gamma')).rejects.toEqual(new GossipAnswerError(GrpcStatus.NOT_FOUND, 'segment "gamma" not found'));
    expect(agents[1].calls).toBe(before);
  });

  test('no agent reachable: one error naming every agent tried', async () => {
    const [a, b] = [await deadAddress(), await deadAddress()];
    const error = await client([a, b])
      .members('')
      .catch((err: Error) => err);
    expect(error).toBeInstanceOf(GossipUnavailableError);
    expect((error as Error).message).toContain(`${a}: unreachable`);
    expect((error as Error).message).toContain(`${b}: unreachable`);
  });

  test('no agent configured: every call says how to configure one', async () => {
    await expect(client([]).segments()).rejects.toThrow(/-gossip-addr=HOST:8320/);
  });

  test('agentKinds tells servers from clients, and unreachable agents apart', async () => {
    const client1 = await fakeAgent('client-1');
    agents.push(client1);
    const dead = await deadAddress();
    expect(await client([agents[0].address, client1.address, dead]).agentKinds()).toEqual([
      { address: agents[0].address, server: true },
      { address: client1.address, server: false },
      { address: dead, server: undefined },
    ]);
  });

  test('a member watch whose agent goes away moves to the next agent, which starts with a snapshot', async () => {
    const first = await fakeAgent('server-a');
    const events: { agent: string; event: MemberEvent }[] = [];
    const broken: string[] = [];
    const watch = client([first.address, agents[1].address]).watchMembers('_all', {
      onEvent: (event, agent) => events.push({ agent, event }),
      onBroken: (agent, _reason, next) => broken.push(`${agent} -> ${next}`),
    });
    const synced = (agent: string) => events.some((e) => e.agent === agent && e.event.type === MemberEventType.MEMBER_EVENT_TYPE_SYNCED);
    await until(() => synced(first.address));
    // The agent stops, ending its streams as the gossip role does.
    for (const stream of first.streams) stream.end();
    await first.server.shutdown();
    await until(() => synced(agents[1].address));
    watch.cancel();
    expect(broken).toEqual([`${first.address} -> ${agents[1].address}`]);
    expect(events.filter((e) => e.agent === agents[1].address).map((e) => e.event.type)).toEqual([MemberEventType.MEMBER_EVENT_TYPE_CURRENT, MemberEventType.MEMBER_EVENT_TYPE_SYNCED]);
  });

  test('a cancelled watch is not re-opened', async () => {
    const broken: string[] = [];
    const watch = client([agents[0].address]).watchMembers('_all', { onEvent: () => undefined, onBroken: (agent) => broken.push(agent) });
    await until(() => agents[0].streams.size > 0);
    watch.cancel();
    await until(() => agents[0].streams.size === 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(broken).toEqual([]);
    expect(agents[0].streams.size).toBe(0);
  });
});

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
