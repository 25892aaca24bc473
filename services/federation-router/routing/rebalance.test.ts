// Consul's periodic server rebalancing (rebalance.ts; consul-compat.md §3.5, agent/router/manager.go),
// driven by a ManualClock, a seeded PRNG and scripted pings.
import { Prng } from '../../../test/sim/prng';
import { ManualClock } from '../../lib/clock';
import { createLogger } from '../../lib/log';
import { MIN_REBALANCE_MS, Rebalancer, RebalancerDeps, rebalanceIntervalMs } from './rebalance';
import { NextHop } from './route-table';

const hop = (name: string, datacenter = 'dc2', alive = true): NextHop => ({ name: `${name}.${datacenter}`, address: `${name}.${datacenter}:8300`, datacenter, areaId: 'wan', alive });
const names = (hops: readonly NextHop[]) => hops.map((h) => h.name);

/** Lets the pings' promises settle. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

function setup(routers: NextHop[], more: Partial<RebalancerDeps> & { answers?: (hop: NextHop) => boolean; seed?: number } = {}) {
  const clock = new ManualClock();
  const pinged: string[] = [];
  const lines: { level: string; msg: string }[] = [];
  const logger = createLogger({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const state = { routers };
  const prng = new Prng(more.seed ?? 1);
  const rebalancer = new Rebalancer({
    clock,
    random: () => prng.next(),
    routersOf: (datacenter) => state.routers.filter((h) => h.datacenter === datacenter),
    poolMembers: () => state.routers.length + 1,
    ping: (h) => {
      pinged.push(h.name);
      return Promise.resolve((more.answers ?? (() => true))(h));
    },
    logger,
    ...more,
  });
  return { clock, pinged, lines, state, rebalancer };
}

describe('the interval (refreshServerRebalanceTimer)', () => {
  test('120 s plus up to 60 s of jitter, drawn each time', () => {
    expect(rebalanceIntervalMs(3, 10, () => 0)).toBe(120_000);
    expect(rebalanceIntervalMs(3, 10, () => 0.5)).toBe(150_000);
    expect(rebalanceIntervalMs(3, 10, () => 0.999999)).toBe(179_999);
  });

  test('stretched so that a pool that large opens at most 64 connections a second per router', () => {
    // 3 routers: 192 a second; 50,000 members rebalancing every 120 s would be 417.
    expect(rebalanceIntervalMs(3, 50_000, () => 0)).toBe(260_417);
    expect(rebalanceIntervalMs(3, 23_040, () => 0)).toBe(120_000);
    expect(rebalanceIntervalMs(0, 64, () => 0)).toBe(120_000);
  });
});

describe('a datacenter\'s manager', () => {
  test('keeps the route table\'s order until its first rebalance, 120 s after it first met the datacenter', () => {
    const routers = [hop('r1'), hop('r2'), hop('r3')];
    const { clock, pinged, rebalancer } = setup(routers);
    expect(names(rebalancer.order(routers))).toEqual(['r1.dc2', 'r2.dc2', 'r3.dc2']);
    // The table reorders them (its RTT estimates moved): the manager's order stays.
    expect(names(rebalancer.order([routers[2], routers[0], routers[1]]))).toEqual(['r1.dc2', 'r2.dc2', 'r3.dc2']);
    clock.advance(MIN_REBALANCE_MS - 1);
    expect(pinged).toEqual([]);
    clock.advance(1);
    expect(pinged).toHaveLength(1);
  });

  test('a router it has not met goes last (AddServer)', () => {
    const { rebalancer } = setup([]);
    rebalancer.order([hop('r2'), hop('r1')]);
    expect(names(rebalancer.order([hop('r3'), hop('r1'), hop('r2')]))).toEqual(['r2.dc2', 'r1.dc2', 'r3.dc2']);
  });

  test('rebalancing shuffles and puts first the first router that answers a ping; those that did not go last', async () => {
    const routers = [hop('r1'), hop('r2'), hop('r3'), hop('r4')];
    const { clock, pinged, rebalancer } = setup(routers, { answers: (h) => h.name === 'r3.dc2' || h.name === 'r4.dc2' });
    rebalancer.order(routers);
    clock.advance(MIN_REBALANCE_MS);
    await settle();
    const order = names(rebalancer.order(routers));
    // Pinged in the shuffled order until one answered; that one leads, the silent ones trail.
    expect(order[0]).toBe(pinged[pinged.length - 1]);
    expect(['r3.dc2', 'r4.dc2']).toContain(order[0]);
    expect(order.slice(-(pinged.length - 1))).toEqual(pinged.slice(0, -1));
    expect(rebalancer.isOffline('dc2')).toBe(false);
  });

  test('no router answering: offline, logged once, order kept; the next rebalance that reaches one ends it', async () => {
    const routers = [hop('r1'), hop('r2')];
    let up = false;
    const { clock, pinged, lines, rebalancer } = setup(routers, { answers: () => up });
    rebalancer.order(routers);
    clock.advance(MIN_REBALANCE_MS);
    await settle();
    expect(pinged).toHaveLength(2);
    expect(rebalancer.isOffline('dc2')).toBe(true);
    expect(names(rebalancer.order(routers))).toEqual(['r1.dc2', 'r2.dc2']);
    clock.advance(180_000);
    await settle();
    expect(lines.filter((line) => /no router of dc2 answered a ping/.test(line.msg))).toHaveLength(1);
    up = true;
    clock.advance(180_000);
    await settle();
    expect(rebalancer.isOffline('dc2')).toBe(false);
    expect(lines.map((line) => line.msg)).toContainEqual(expect.stringMatching(/^rebalanced the routers of dc2: r\d\.dc2 answers, no longer offline$/));
  });

  test('rebalances again every 120-180 s', async () => {
    const routers = [hop('r1'), hop('r2')];
    const { clock, pinged, rebalancer } = setup(routers);
    rebalancer.order(routers);
    const at: number[] = [];
    for (let elapsed = 0; elapsed < 1_000_000; elapsed += 1_000) {
      const before = pinged.length;
      clock.advance(1_000);
      await settle();
      if (pinged.length > before) at.push(clock.nowMs());
    }
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    expect(at[0]).toBe(MIN_REBALANCE_MS);
    expect(gaps.length).toBeGreaterThanOrEqual(5);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(120_000);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(181_000);
  });

  test('a router gone from the pools leaves it; a datacenter with none left is dropped, its timer with it', async () => {
    const routers = [hop('r1'), hop('r2')];
    const { clock, state, rebalancer } = setup(routers);
    rebalancer.order(routers);
    state.routers = [routers[1]];
    clock.advance(MIN_REBALANCE_MS);
    await settle();
    expect(names(rebalancer.order([routers[1]]))).toEqual(['r2.dc2']);
    state.routers = [];
    clock.advance(180_000);
    await settle();
    expect(clock.pending()).toBe(0);
  });

  test('each datacenter has its own manager; routers of several keep their places among each other', async () => {
    const mixed = [hop('a', 'dc2'), hop('x', 'dc3'), hop('b', 'dc2'), hop('y', 'dc3')];
    const { rebalancer } = setup(mixed);
    rebalancer.order([hop('b', 'dc2'), hop('a', 'dc2'), hop('y', 'dc3'), hop('x', 'dc3')]);
    expect(names(rebalancer.order(mixed))).toEqual(['b.dc2', 'y.dc3', 'a.dc2', 'x.dc3']);
  });

  test('closed: no timer left, and the order is the one given', () => {
    const routers = [hop('r1'), hop('r2')];
    const { clock, rebalancer } = setup(routers);
    rebalancer.order(routers);
    rebalancer.close();
    expect(clock.pending()).toBe(0);
    expect(names(rebalancer.order([routers[1], routers[0]]))).toEqual(['r2.dc2', 'r1.dc2']);
  });
});

test("the point of it: dc1's routers, each rebalancing on its own, spread their first choice over dc2's routers", async () => {
  const routers = [hop('r1'), hop('r2'), hop('r3')];
  const firsts = new Map<string, number>();
  for (let seed = 1; seed <= 30; seed++) {
    const { clock, rebalancer } = setup(routers, { seed });
    rebalancer.order(routers);
    clock.advance(MIN_REBALANCE_MS);
    await settle();
    const first = rebalancer.order(routers)[0].name;
    firsts.set(first, (firsts.get(first) ?? 0) + 1);
    rebalancer.close();
  }
  // Before any rebalance every one of them would send to r1.dc2 (the route table's first).
  expect([...firsts.keys()].sort()).toEqual(['r1.dc2', 'r2.dc2', 'r3.dc2']);
  for (const count of firsts.values()) expect(count).toBeGreaterThanOrEqual(4);
});
