/**
 * The SWIM pool, the shell around the pure core: on an in-memory network and on jest's fake clock,
 * so the pool's timer is the only thing that moves time. What it must show: an idle pool wakes for
 * the core's gossip rounds and probes, not at every 10 ms tick (each wake-up of an idle process
 * costs CPU), and sleeping through ticks loses nothing: probes, deadlines and suspicion timeouts
 * still fire, so a member that stops answering is declared dead.
 */
import { createLogger } from './log';
import { PoolTransport, SwimPool } from './swim-pool';
import { lanDefaults } from './swim/config';

const logger = createLogger({ role: 'gossip', datacenter: 'dc1', node: 'test', level: 'silent' });

/** Packets and push/pulls between pools in this process, delivered as microtasks; `cut` drops a member's traffic both ways. */
class MemoryNetwork {
  readonly cut = new Set<string>();
  private readonly handlers = new Map<string, { packet: (from: string, bytes: Uint8Array) => void; stream: (from: string, request: Uint8Array) => Uint8Array }>();

  transport(address: string): PoolTransport {
    const handlers = { packet: (_from: string, _bytes: Uint8Array) => {}, stream: (_from: string, _request: Uint8Array): Uint8Array => new Uint8Array(0) };
    this.handlers.set(address, handlers);
    const reachable = (to: string) => !this.cut.has(address) && !this.cut.has(to) && this.handlers.has(to);
    return {
      address,
      dropped: { packets: 0, streams: 0 },
      onPacket: (handler) => void (handlers.packet = handler),
      onStream: (handler) => void (handlers.stream = handler),
      sendPacket: (to, bytes) => {
        if (reachable(to)) queueMicrotask(() => this.handlers.get(to)?.packet(address, bytes));
      },
      exchange: async (to, request) => {
        await Promise.resolve();
        if (!reachable(to)) throw new Error(`dial tcp ${to}: i/o timeout`);
        return this.handlers.get(to)!.stream(address, request);
      },
      close: async () => void this.handlers.delete(address),
    };
  }
}

function pool(network: MemoryNetwork, name: string): SwimPool {
  return new SwimPool(network.transport(`10.0.0.${name.slice(1)}:8301`), { segment: '', name, tags: {}, timings: lanDefaults(), validateMembers: () => undefined, logger });
}

/** The pools of the running test, stopped after it. */
let pools: SwimPool[] = [];

beforeEach(() => {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] });
});

afterEach(async () => {
  for (const p of pools) await p.stop();
  pools = [];
  jest.useRealTimers();
});

/** `count` pools (n1...), all joined through n1 and listing each other alive; they are `pools`. */
async function joinedPools(count: number): Promise<MemoryNetwork> {
  const network = new MemoryNetwork();
  pools = Array.from({ length: count }, (_, i) => pool(network, `n${i + 1}`));
  const joins = pools.slice(1).map((p) => p.join([pools[0].address]));
  await jest.advanceTimersByTimeAsync(100);
  for (const result of await Promise.all(joins)) expect(result).toEqual([{ address: pools[0].address, joined: true, error: '' }]);
  await jest.advanceTimersByTimeAsync(2_000);
  for (const p of pools) expect(p.members().filter((m) => m.state === 'alive')).toHaveLength(count);
  return network;
}

test('an idle pool wakes for its gossip rounds and probes, not at every 10 ms tick', async () => {
  await joinedPools(4);
  const timers = jest.spyOn(global, 'setTimeout');
  await jest.advanceTimersByTimeAsync(10_000);
  // Per member and second: five gossip rounds (200 ms), a probe and its ack; ticks would be 100.
  const perMemberPerSecond = timers.mock.calls.length / pools.length / 10;
  expect(perMemberPerSecond).toBeGreaterThan(4);
  expect(perMemberPerSecond).toBeLessThan(15);
  timers.mockRestore();
});

test('sleeping through ticks loses no deadline: a member that stops answering is suspected, then declared dead by the rest', async () => {
  const network = await joinedPools(4);
  network.cut.add(pools[3].address);
  // LAN: a probe a second; suspicion from 4 s (N < 10) up to 6 x that without confirmations.
  await jest.advanceTimersByTimeAsync(40_000);
  for (const p of pools.slice(0, 3)) expect(p.members().find((m) => m.name === 'n4')?.state).toBe('dead');
});
