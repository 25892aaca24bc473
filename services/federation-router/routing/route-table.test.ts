/**
 * The federation router's route table (route-table.ts). First Consul's rules, one small topology
 * each: adjacency through areas and the WAN (consul-compat.md §3.5) and the distance order of
 * datacenters (§3.8). Then transit, beyond Consul (DESIGN.md "Beyond Consul: transit"): what a
 * router advertises, what it accepts from a peer, and the hub-and-spoke acceptance scenario.
 * Last, a model: random federations of areas, each datacenter's advertisements fed back to its
 * peers round after round until nothing changes; the routes at that fixed point must be sound
 * (real walks, no loops, transit on both sides of every datacenter crossed), complete and the
 * cheapest, and a federation that changes under converged routes must settle where a fresh one
 * would.
 */
import fc from 'fast-check';
import {
  MAX_HOPS,
  MemberStatus,
  PoolSnapshot,
  Route,
  RouterMember,
  advertisement,
  computeRoutes,
  datacentersByDistance,
  parseAdvertisement,
} from './route-table';

const MS = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Builders

const addresses = new Map<string, string>();
/** A distinct ip:port per router name, stable within the file. */
function addressOf(name: string): string {
  let address = addresses.get(name);
  if (address === undefined) {
    const n = addresses.size;
    address = `10.0.${Math.floor(n / 250)}.${(n % 250) + 1}:8300`;
    addresses.set(name, address);
  }
  return address;
}

/** A server of `datacenter` as one of our pools sees it; `rttMs` undefined = no coordinate yet. */
function router(node: string, datacenter: string, rttMs: number | undefined, more: { status?: MemberStatus; routesTag?: string } = {}): RouterMember {
  const name = `${node}.${datacenter}`;
  return { name, address: addressOf(name), datacenter, status: more.status ?? 'alive', rttNs: rttMs === undefined ? undefined : rttMs * MS, routesTag: more.routesTag };
}

function area(areaId: string, peer: string, members: RouterMember[], transit = false): PoolSnapshot {
  return { areaId, peer, transit, members };
}

function wan(members: RouterMember[]): PoolSnapshot {
  return { areaId: 'wan', peer: undefined, transit: false, members };
}

const hopNames = (route: Route | undefined) => route?.nextHops.map((hop) => hop.name);

// ---------------------------------------------------------------------------------------------
// Consul's rules

describe('adjacency (consul-compat.md §3.5)', () => {
  it('counts only the peer datacenter of an area: our own routers and a third datacenter in the pool are no route', () => {
    //   dc1 (us) ── area-dc2 ── dc2          (s1.dc3 wandered into the pool: not the area's peer)
    const pools = [area('area-dc2', 'dc2', [router('s1', 'dc1', 0), router('s1', 'dc2', 10), router('s2', 'dc2', 12), router('s1', 'dc3', 1)])];
    const routes = computeRoutes('dc1', pools);
    expect([...routes.keys()]).toEqual(['dc2']);
    expect(routes.get('dc2')).toEqual({
      datacenter: 'dc2',
      path: ['dc2'],
      areaId: 'area-dc2',
      rttNs: 12 * MS,
      nextHops: [
        { name: 's1.dc2', address: addressOf('s1.dc2'), datacenter: 'dc2', areaId: 'area-dc2', alive: true },
        { name: 's2.dc2', address: addressOf('s2.dc2'), datacenter: 'dc2', areaId: 'area-dc2', alive: true },
      ],
      reachable: true,
    });
  });

  it('counts the servers of every other datacenter in the WAN pool', () => {
    const routes = computeRoutes('dc1', [wan([router('s1', 'dc1', 0), router('s1', 'dc3', 30), router('s1', 'dc2', 20)])]);
    expect([...routes.keys()].sort()).toEqual(['dc2', 'dc3']);
    expect(routes.get('dc2')).toMatchObject({ path: ['dc2'], areaId: 'wan', rttNs: 20 * MS, reachable: true });
    expect(routes.get('dc3')).toMatchObject({ path: ['dc3'], areaId: 'wan', rttNs: 30 * MS, reachable: true });
  });

  it('ignores members that left: not a next hop, not in the distance, and a datacenter of only those is unknown', () => {
    const routes = computeRoutes('dc1', [
      wan([router('s1', 'dc2', 10), router('s2', 'dc2', 1, { status: 'left' }), router('s3', 'dc2', 30), router('s1', 'dc3', 5, { status: 'left' })]),
    ]);
    expect(routes.has('dc3')).toBe(false);
    expect(hopNames(routes.get('dc2'))).toEqual(['s1.dc2', 's3.dc2']);
    // The upper median of [10, 30]; counting the left member's 1 ms would give 10.
    expect(routes.get('dc2')!.rttNs).toBe(30 * MS);
  });

  it('keeps failed members known, tried last, counted in the distance', () => {
    const routes = computeRoutes('dc1', [wan([router('s1', 'dc2', 5, { status: 'failed' }), router('s2', 'dc2', 20), router('s3', 'dc2', 10)])]);
    const route = routes.get('dc2')!;
    expect(route.nextHops.map((hop) => [hop.name, hop.alive])).toEqual([
      ['s3.dc2', true],
      ['s2.dc2', true],
      ['s1.dc2', false],
    ]);
    expect(route.rttNs).toBe(10 * MS); // rtts [5, 10, 20][1]
    expect(route.reachable).toBe(true);
  });

  it('keeps a datacenter whose servers all failed known and unreachable ("Remote DC has no server currently reachable", §3.7)', () => {
    const routes = computeRoutes('dc1', [area('area-dc2', 'dc2', [router('s1', 'dc2', 7, { status: 'failed' }), router('s2', 'dc2', 5, { status: 'failed' })])]);
    expect(routes.get('dc2')).toMatchObject({ path: ['dc2'], reachable: false, rttNs: 7 * MS });
    expect(routes.get('dc2')!.nextHops.map((hop) => [hop.name, hop.alive])).toEqual([
      ['s2.dc2', false],
      ['s1.dc2', false],
    ]);
  });

  it('orders next hops nearest first, the unknown RTT after the known, names breaking ties', () => {
    const routes = computeRoutes('dc1', [wan([router('s4', 'dc2', undefined), router('s3', 'dc2', 10), router('s2', 'dc2', 30), router('s1', 'dc2', 10)])]);
    expect(hopNames(routes.get('dc2'))).toEqual(['s1.dc2', 's3.dc2', 's2.dc2', 's4.dc2']);
  });

  it('routes nowhere else without transit: with areas dc1–dc2 and dc2–dc3, dc1 has no path to dc3 (§3.5 "No multi-hop routing")', () => {
    const dc2Advertises = '5000:dc3';
    const routes = computeRoutes('dc1', [area('area-dc2', 'dc2', [router('s1', 'dc2', 10)])]);
    expect([...routes.keys()]).toEqual(['dc2']);
    // And a tag is only ever read from the area's peer: dc2 must advertise dc3 for dc1 to know it.
    expect([...computeRoutes('dc1', [area('area-dc2', 'dc2', [router('s1', 'dc2', 10, { routesTag: dc2Advertises })])]).keys()].sort()).toEqual(['dc2', 'dc3']);
  });
});

describe('distance (consul-compat.md §3.8)', () => {
  it.each<[string, (number | undefined)[], number]>([
    ['one server', [10], 10],
    ['two: the upper of the two', [10, 20], 20],
    ['three: the middle', [30, 10, 20], 20],
    ['four: rtts[2] of the sorted', [40, 10, 30, 20], 30],
    ['no coordinate: +Infinity', [undefined], Infinity],
    ['half unknown: the upper median is unknown', [10, undefined], Infinity],
    ['one of three unknown: the middle is known', [undefined, 10, 20], 20],
  ])('a pool distance is the upper median of its servers\' RTTs (%s)', (_, rttsMs, expectedMs) => {
    const routes = computeRoutes('dc1', [wan(rttsMs.map((rtt, i) => router(`m${i}`, 'dc2', rtt)))]);
    expect(routes.get('dc2')!.rttNs).toBe(expectedMs * MS);
  });

  it.each([
    ['WAN first', (a: PoolSnapshot, w: PoolSnapshot) => [w, a]],
    ['area first', (a: PoolSnapshot, w: PoolSnapshot) => [a, w]],
  ])('takes the nearest pool to a datacenter; the other pool\'s servers are fallbacks (%s)', (_, order) => {
    //   dc1 ── area-dc2 (medians 20, 30 → 30) ── dc2
    //   dc1 ── wan      (medians 40, 50 → 50) ── dc2
    const inArea = area('area-dc2', 'dc2', [router('a1', 'dc2', 30), router('a2', 'dc2', 20)]);
    const inWan = wan([router('w1', 'dc2', 40), router('w2', 'dc2', 50)]);
    const route = computeRoutes('dc1', order(inArea, inWan)).get('dc2')!;
    expect(route).toMatchObject({ path: ['dc2'], areaId: 'area-dc2', rttNs: 30 * MS, reachable: true });
    expect(route.nextHops.map((hop) => [hop.name, hop.areaId])).toEqual([
      ['a2.dc2', 'area-dc2'],
      ['a1.dc2', 'area-dc2'],
      ['w1.dc2', 'wan'],
      ['w2.dc2', 'wan'],
    ]);
  });

  it('lists a server in two pools once, through the nearer pool', () => {
    const route = computeRoutes('dc1', [wan([router('s1', 'dc2', 40)]), area('area-dc2', 'dc2', [router('s1', 'dc2', 10)])]).get('dc2')!;
    expect(route.nextHops).toEqual([{ name: 's1.dc2', address: addressOf('s1.dc2'), datacenter: 'dc2', areaId: 'area-dc2', alive: true }]);
  });

  it('orders datacenters: local first, then by RTT, ties and the unknown by name (a stable sort after an alphabetical one)', () => {
    // Pool order scrambled on purpose: the map's insertion order must not show through.
    const routes = computeRoutes('dc3', [
      wan([
        router('s1', 'dc6', undefined),
        router('s1', 'dc5', 30),
        router('s1', 'dc7', 10),
        router('s1', 'dc2', undefined),
        router('s1', 'dc1', 30),
        router('s1', 'dc4', 10),
        router('s1', 'dc3', 0),
      ]),
    ]);
    expect(datacentersByDistance('dc3', routes)).toEqual(['dc3', 'dc4', 'dc7', 'dc1', 'dc5', 'dc2', 'dc6']);
  });

  it('orders by the minimum over pools', () => {
    const routes = computeRoutes('dc1', [wan([router('s1', 'dc2', 50), router('s1', 'dc4', 10)]), area('area-dc2', 'dc2', [router('s1', 'dc2', 5)])]);
    expect(datacentersByDistance('dc1', routes)).toEqual(['dc1', 'dc2', 'dc4']);
  });

  it('lists only the local datacenter when nothing is federated (Catalog.ListDatacenters)', () => {
    expect(datacentersByDistance('dc1', computeRoutes('dc1', []))).toEqual(['dc1']);
  });

  it('places a datacenter reached in transit by its estimated path RTT', () => {
    // dc2 at 10 ms advertises dc3 at 15 ms: dc3 is 25 ms away, between dc4 (20) and dc5 (30).
    const routes = computeRoutes('dc1', [
      area('area-dc2', 'dc2', [router('s1', 'dc2', 10, { routesTag: '15000:dc3' })]),
      wan([router('s1', 'dc5', 30), router('s1', 'dc4', 20)]),
    ]);
    expect(datacentersByDistance('dc1', routes)).toEqual(['dc1', 'dc2', 'dc4', 'dc3', 'dc5']);
  });
});

// ---------------------------------------------------------------------------------------------
// Transit: what is advertised

describe('advertisement', () => {
  //                 area A (transit)          area B (transit)
  //   dc1 (10 ms) ───────────────── dc2 (us) ──────────────── dc3 (20 ms) ── advertises dc4 (5 ms)
  //                                  │   │                                 and dc7 through dc1 (7 ms)
  //                area C (no transit)   wan
  //                                  │   │
  //             dc5 (30 ms), advertises dc8   dc6 (40 ms)
  const dc2Pools = (b: { dc3?: Partial<{ rttMs: number | undefined; status: MemberStatus; routesTag: string }>; aTransit?: boolean } = {}) => {
    const a = area('A', 'dc1', [router('s1', 'dc2', 0), router('s1', 'dc1', 10)], b.aTransit ?? true);
    const dc3 = b.dc3 ?? {};
    const bPool = area(
      'B',
      'dc3',
      [router('s1', 'dc2', 0), router('s1', 'dc3', 'rttMs' in dc3 ? dc3.rttMs : 20, { status: dc3.status ?? 'alive', routesTag: dc3.routesTag ?? '5000:dc4,7000:dc1>dc7' })],
      true,
    );
    const c = area('C', 'dc5', [router('s1', 'dc5', 30, { routesTag: '1000:dc8' })], false);
    const w = wan([router('s1', 'dc2', 0), router('s1', 'dc6', 40)]);
    return { a, b: bPool, c, w, all: [a, bPool, c, w] };
  };

  it('learns every route of the drawing', () => {
    const { all } = dc2Pools();
    const routes = computeRoutes('dc2', all);
    const summary = [...routes.values()].map((r) => [r.datacenter, r.path.join('>'), r.areaId, r.rttNs / MS]).sort();
    expect(summary).toEqual([
      ['dc1', 'dc1', 'A', 10],
      ['dc3', 'dc3', 'B', 20],
      ['dc4', 'dc3>dc4', 'B', 25],
      ['dc5', 'dc5', 'C', 30],
      ['dc6', 'dc6', 'wan', 40],
      ['dc7', 'dc3>dc1>dc7', 'B', 27],
      ['dc8', 'dc5>dc8', 'C', 31],
    ]);
  });

  it('offers into a transit area only what leaves through another transit area, never through the area\'s peer', () => {
    const { a, b, c, w, all } = dc2Pools();
    const routes = computeRoutes('dc2', all);
    // Not dc1 (the peer itself), not dc5/dc8 (area C is not transit), not dc6 (the WAN), not dc7 (its path crosses dc1).
    expect(advertisement(a, all, routes)).toBe('20000:dc3,25000:dc3>dc4');
    expect(advertisement(b, all, routes)).toBe('10000:dc1');
    expect(advertisement(c, all, routes)).toBe('');
    expect(advertisement(w, all, routes)).toBe('');
  });

  it('offers nothing into an area that is not transit, and nothing from it', () => {
    const { a, b, all } = dc2Pools({ aTransit: false });
    const routes = computeRoutes('dc2', all);
    expect(advertisement(a, all, routes)).toBe('');
    // B's only other transit area was A.
    expect(advertisement(b, all, routes)).toBe('');
  });

  it('offers no unreachable route', () => {
    const { a, all } = dc2Pools({ dc3: { status: 'failed' } });
    const routes = computeRoutes('dc2', all);
    expect(routes.get('dc3')!.reachable).toBe(false);
    expect(routes.get('dc4')!.reachable).toBe(false);
    expect(advertisement(a, all, routes)).toBe('');
  });

  it('offers an unknown RTT as -1, read back as +Infinity', () => {
    const { a, all } = dc2Pools({ dc3: { rttMs: undefined } });
    const tag = advertisement(a, all, computeRoutes('dc2', all));
    expect(tag).toBe('-1:dc3,-1:dc3>dc4');
    expect(parseAdvertisement(tag)).toEqual([
      { rttNs: Infinity, path: ['dc3'] },
      { rttNs: Infinity, path: ['dc3', 'dc4'] },
    ]);
  });

  it(`offers no route already ${MAX_HOPS} datacenters long: the peer could not take one more hop`, () => {
    const far = Array.from({ length: MAX_HOPS - 1 }, (_, i) => `x${i + 1}`); // dc3 advertises MAX_HOPS-1 datacenters…
    const near = far.slice(0, -1).map((name) => `${name}n`); // …and MAX_HOPS-2
    const { a, all } = dc2Pools({ dc3: { routesTag: `1000:${far.join('>')},1000:${near.join('>')}` } });
    const routes = computeRoutes('dc2', all);
    expect(routes.get(far[far.length - 1])!.path).toHaveLength(MAX_HOPS);
    expect(routes.get(near[near.length - 1])!.path).toHaveLength(MAX_HOPS - 1);
    expect(parseAdvertisement(advertisement(a, all, routes)).map((r) => r.path.length)).toEqual([1, MAX_HOPS - 1]);
  });

  it('reads back what it wrote, entry for entry, sorted by datacenter', () => {
    const { a, b, all } = dc2Pools();
    const name = fc.constantFrom('dc3', 'dc4', 'dc5', 'dc6', 'dc7', 'dc8', 'dc9', 'eu-west_1');
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({ datacenter: name, via: fc.array(name, { maxLength: MAX_HOPS - 2 }), rttUs: fc.option(fc.integer({ min: 0, max: 10 ** 12 }), { nil: undefined }) }),
          { selector: (entry) => entry.datacenter, maxLength: 6 },
        ),
        (entries) => {
          const routes = new Map<string, Route>(
            entries.map(({ datacenter, via, rttUs }) => [
              datacenter,
              { datacenter, path: [...via, datacenter], areaId: b.areaId, rttNs: rttUs === undefined ? Infinity : rttUs * 1_000, nextHops: [], reachable: true },
            ]),
          );
          const expected = [...routes.values()].sort((x, y) => (x.datacenter < y.datacenter ? -1 : 1)).map((r) => ({ rttNs: r.rttNs, path: r.path }));
          expect(parseAdvertisement(advertisement(a, all, routes))).toEqual(expected);
        },
      ),
      { seed: 0x5eed, numRuns: 200 },
    );
  });
});

describe('parseAdvertisement', () => {
  it('reads nothing from an empty tag', () => {
    expect(parseAdvertisement('')).toEqual([]);
  });

  it('skips malformed and hostile entries and keeps the rest', () => {
    const hostile = [
      'garbage',
      '5:DC3', // names are lower case
      'DC3:5',
      '5:dc 3',
      '5:dc3.consul',
      '5:dcé',
      '5:dc3>', // empty names
      '5:>dc3',
      '5:dc3>>dc4',
      '5:',
      ':dc3',
      '',
      ' 5:dc3',
      '5:dc3\n',
      '+5:dc3',
      '5.5:dc3',
      '0x10:dc3',
      '1e3:dc3',
      '-2:dc3', // the only negative is -1, "unknown"
      '-0:dc3',
      '1234567890123456:dc3', // 16 digits of microseconds: more than anyone measures
      `5:${Array.from({ length: 17 }, (_, i) => `d${i}`).join('>')}`, // 17 datacenters
    ];
    const tag = ['5:dc2', ...hostile.slice(0, 11), '-1:dc4', ...hostile.slice(11), '123456789012345:dc5>dc6'].join(',');
    expect(parseAdvertisement(tag)).toEqual([
      { rttNs: 5_000, path: ['dc2'] },
      { rttNs: Infinity, path: ['dc4'] },
      { rttNs: 123456789012345_000, path: ['dc5', 'dc6'] },
    ]);
  });

  it('reads paths up to 16 datacenters; computeRoutes then holds them to MAX_HOPS', () => {
    const sixteen = Array.from({ length: 16 }, (_, i) => `d${i}`);
    expect(parseAdvertisement(`5:${sixteen.join('>')}`)).toEqual([{ rttNs: 5_000, path: sixteen }]);
  });
});

// ---------------------------------------------------------------------------------------------
// Transit: what is accepted

describe('transit routes', () => {
  //   dc1 (us) ── area-dc2 ── dc2 ── …
  const fromDc2 = (routesTag: string, rttMs = 10, status: MemberStatus = 'alive') => area('area-dc2', 'dc2', [router('s1', 'dc2', rttMs, { status, routesTag })]);

  it('routes through a peer to what it advertises, the RTT the first hop plus the advertised rest', () => {
    const route = computeRoutes('dc1', [fromDc2('15000:dc3,20000:dc3>dc4')]).get('dc4')!;
    expect(route).toMatchObject({ datacenter: 'dc4', path: ['dc2', 'dc3', 'dc4'], areaId: 'area-dc2', rttNs: 30 * MS, reachable: true });
    expect(route.nextHops).toEqual([{ name: 's1.dc2', address: addressOf('s1.dc2'), datacenter: 'dc2', areaId: 'area-dc2', alive: true }]);
  });

  it.each([
    ['a path through us', '5:dc3>dc1>dc9', 'dc9'],
    ['a path repeating a datacenter', '5:dc3>dc4>dc3>dc9', 'dc9'],
    ['a path back through the peer', '5:dc3>dc2>dc9', 'dc9'],
    ['a route to the peer itself', '5:dc2', 'dc2-through-itself'],
    [`a path of ${MAX_HOPS + 1} datacenters`, `5:${Array.from({ length: MAX_HOPS }, (_, i) => `x${i}`).join('>')}`, `x${MAX_HOPS - 1}`],
  ])('refuses %s', (_, tag, target) => {
    const routes = computeRoutes('dc1', [fromDc2(tag)]);
    expect(routes.has(target)).toBe(false);
    expect(routes.get('dc2')!.path).toEqual(['dc2']);
  });

  it(`accepts a path of exactly ${MAX_HOPS} datacenters`, () => {
    const names = Array.from({ length: MAX_HOPS - 1 }, (_, i) => `x${i}`);
    expect(computeRoutes('dc1', [fromDc2(`5:${names.join('>')}`)]).get(names[names.length - 1])!.path).toEqual(['dc2', ...names]);
  });

  it('reads tags only from the area\'s peer, never from a left member, never from the WAN', () => {
    const routes = computeRoutes('dc1', [
      area('area-dc2', 'dc2', [router('s1', 'dc2', 10), router('s1', 'dc5', 1, { routesTag: '1:dc6' }), router('s2', 'dc2', 12, { status: 'left', routesTag: '1:dc7' })]),
      wan([router('s1', 'dc4', 10, { routesTag: '1:dc8' })]),
      area('area-dc1', 'dc1', [router('s2', 'dc1', 0, { routesTag: '1:dc9' })]),
    ]);
    expect([...routes.keys()].sort()).toEqual(['dc2', 'dc4']);
  });

  it('prefers a living direct route to any transit route, however cheap', () => {
    const routes = computeRoutes('dc1', [fromDc2('1:dc3'), area('area-dc3', 'dc3', [router('s1', 'dc3', 500)])]);
    expect(routes.get('dc3')).toMatchObject({ path: ['dc3'], areaId: 'area-dc3', rttNs: 500 * MS });
    expect(routes.get('dc3')!.nextHops[0].name).toBe('s1.dc3');
  });

  it('takes the cheapest transit route, then the shortest; the other peers\' routers are fallbacks', () => {
    //   dc1 ── dc2 (10 ms) advertises dc9 at 20 ms, through dc5   = 30 ms, 3 datacenters
    //      ── dc3 (20 ms) advertises dc9 at 10 ms                 = 30 ms, 2 datacenters
    //      ── dc4 ( 5 ms) advertises dc9 at 40 ms                 = 45 ms
    const routes = computeRoutes('dc1', [
      fromDc2('20000:dc5>dc9'),
      area('area-dc3', 'dc3', [router('s1', 'dc3', 20, { routesTag: '10000:dc9' })]),
      area('area-dc4', 'dc4', [router('s1', 'dc4', 5, { routesTag: '40000:dc9' })]),
    ]);
    expect(routes.get('dc9')).toMatchObject({ path: ['dc3', 'dc9'], areaId: 'area-dc3', rttNs: 30 * MS, reachable: true });
    expect(hopNames(routes.get('dc9'))).toEqual(['s1.dc3', 's1.dc2', 's1.dc4']);
  });

  it('takes the nearest living router of a peer as the first hop', () => {
    const routes = computeRoutes('dc1', [
      area('area-dc2', 'dc2', [router('s1', 'dc2', 30, { routesTag: '5000:dc3' }), router('s2', 'dc2', 10, { routesTag: '5000:dc3' }), router('s3', 'dc2', 20, { routesTag: '5000:dc3' })]),
    ]);
    expect(routes.get('dc3')).toMatchObject({ path: ['dc2', 'dc3'], rttNs: 15 * MS });
    expect(hopNames(routes.get('dc3'))).toEqual(['s2.dc2', 's3.dc2', 's1.dc2']);
  });

  it('lets a living router, not a failed one, decide the path', () => {
    //   dc1 ── dc2: s1 failed, its last tag offers dc9 at 1 ms ── dc9
    //      ── dc3: s1 alive, offers dc9 at 50 ms               ── dc9
    // Traffic goes to the first living hop, dc3's: the path must say so, or loop prevention reads a lie.
    const routes = computeRoutes('dc1', [fromDc2('1000:dc9', 1, 'failed'), area('area-dc3', 'dc3', [router('s1', 'dc3', 10, { routesTag: '50000:dc9' })])]);
    const route = routes.get('dc9')!;
    expect(route).toMatchObject({ path: ['dc3', 'dc9'], areaId: 'area-dc3', rttNs: 60 * MS, reachable: true });
    expect(route.nextHops.map((hop) => [hop.name, hop.alive])).toEqual([
      ['s1.dc3', true],
      ['s1.dc2', false],
    ]);
  });

  it('routes in transit to a neighbour whose own routers all failed, when a peer still reaches it', () => {
    //   dc1 ── area-dc3 ── dc3 (s1 failed)
    //   dc1 ── area-dc2 ── dc2, which still reaches dc3 (over another link)
    const routes = computeRoutes('dc1', [area('area-dc3', 'dc3', [router('s1', 'dc3', 5, { status: 'failed' })]), fromDc2('8000:dc3')]);
    const route = routes.get('dc3')!;
    expect(route).toMatchObject({ path: ['dc2', 'dc3'], areaId: 'area-dc2', rttNs: 18 * MS, reachable: true });
    expect(route.nextHops.map((hop) => [hop.name, hop.alive])).toEqual([
      ['s1.dc2', true],
      ['s1.dc3', false],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// A federation model. Every datacenter's routers see the same pools (as one router would):
// for each area of datacenter d with peer p, d's routers (local, RTT 0) and p's routers with
// their RTTs from d and the tag p's routers currently advertise into that area. One round: every
// datacenter computes its routes from the current tags and advertises anew; a fixed point is a
// round that changes no tag.

interface ModelRouter {
  readonly name: string;
  readonly address: string;
  readonly datacenter: string;
  readonly failed: boolean;
}

interface ModelArea {
  readonly datacenters: readonly [string, string];
  /** Each side's own transit flag, in the order of `datacenters`. */
  readonly transit: readonly [boolean, boolean];
}

interface Federation {
  readonly datacenters: readonly string[];
  readonly routers: ReadonlyMap<string, readonly ModelRouter[]>;
  readonly areas: readonly ModelArea[];
  /** From a datacenter (all its routers share one view) to a router of another, in ns. */
  readonly rttNs: (from: string, to: ModelRouter) => number | undefined;
}

type RoutesByDatacenter = ReadonlyMap<string, ReadonlyMap<string, Route>>;
/** What each datacenter's routers advertise into each of its areas, by tagKey. */
type Tags = ReadonlyMap<string, string>;

/** Each side of an area has its own ID, as in Consul (each datacenter creates its side). */
const areaIdOf = (self: string, peer: string) => `${self}-to-${peer}`;
const tagKey = (datacenter: string, areaId: string) => `${datacenter} ${areaId}`;

/** Enough rounds for any path of MAX_HOPS to be learned, withdrawn and relearned. */
const MAX_ROUNDS = 3 * MAX_HOPS;

interface AreaSide {
  readonly areaId: string;
  readonly peer: string;
  readonly transit: boolean;
}

function sidesOf(federation: Federation, datacenter: string): AreaSide[] {
  return federation.areas.flatMap(({ datacenters, transit }) => {
    const i = datacenters.indexOf(datacenter);
    if (i < 0) return [];
    const peer = datacenters[1 - i];
    return [{ areaId: areaIdOf(datacenter, peer), peer, transit: transit[i] }];
  });
}

function poolsOf(federation: Federation, datacenter: string, tags: Tags): PoolSnapshot[] {
  const member = (r: ModelRouter, rttNs: number | undefined, routesTag: string | undefined): RouterMember => ({
    name: r.name,
    address: r.address,
    datacenter: r.datacenter,
    status: r.failed ? 'failed' : 'alive',
    rttNs,
    routesTag,
  });
  return sidesOf(federation, datacenter).map(({ areaId, peer, transit }) => ({
    areaId,
    peer,
    transit,
    members: [
      ...federation.routers.get(datacenter)!.map((r) => member(r, 0, tags.get(tagKey(datacenter, areaId)))),
      ...federation.routers.get(peer)!.map((r) => member(r, federation.rttNs(datacenter, r), tags.get(tagKey(peer, areaIdOf(peer, datacenter))))),
    ],
  }));
}

function exchange(federation: Federation, tags: Tags): { routes: RoutesByDatacenter; tags: Tags } {
  const routes = new Map<string, ReadonlyMap<string, Route>>();
  const next = new Map<string, string>();
  for (const datacenter of federation.datacenters) {
    const pools = poolsOf(federation, datacenter, tags);
    const own = computeRoutes(datacenter, pools);
    routes.set(datacenter, own);
    for (const pool of pools) next.set(tagKey(datacenter, pool.areaId), advertisement(pool, pools, own));
  }
  return { routes, tags: next };
}

/** Rounds from `tags` (none: a federation just formed) until no tag changes. */
function converge(federation: Federation, tags: Tags = new Map()): { routes: RoutesByDatacenter; tags: Tags; rounds: number } {
  for (let rounds = 1; rounds <= MAX_ROUNDS; rounds++) {
    const next = exchange(federation, tags);
    if ([...next.tags].every(([key, tag]) => (tags.get(key) ?? '') === tag)) return { routes: next.routes, tags, rounds };
    tags = next.tags;
  }
  throw new Error(`no fixed point within ${MAX_ROUNDS} rounds`);
}

/** A federation drawn by hand: routers by datacenter, areas, and RTTs in ms from a datacenter to a router name. */
function federationOf(routers: Record<string, string[]>, areas: ModelArea[], rttMs: (from: string, to: string) => number, failed: string[] = []): Federation {
  return {
    datacenters: Object.keys(routers),
    routers: new Map(
      Object.entries(routers).map(([datacenter, nodes]) => [
        datacenter,
        nodes.map((node) => {
          const name = `${node}.${datacenter}`;
          return { name, address: addressOf(name), datacenter, failed: failed.includes(name) };
        }),
      ]),
    ),
    areas,
    rttNs: (from, to) => rttMs(from, to.name) * MS,
  };
}

function withFailed(federation: Federation, failed: (r: ModelRouter) => boolean): Federation {
  const routers = new Map([...federation.routers].map(([dc, list]) => [dc, list.map((r) => ({ ...r, failed: failed(r) }))]));
  return { ...federation, routers };
}

/** Where a request for `target` entering at `from` goes: each datacenter's first living next hop, until the target. */
function forwardingWalk(routes: RoutesByDatacenter, from: string, target: string): string[] {
  const walk: string[] = [];
  for (let at = from; at !== target; ) {
    const hop = routes.get(at)?.get(target)?.nextHops.find((h) => h.alive);
    if (hop === undefined || walk.length > MAX_HOPS) return [...walk, '(stuck)'];
    walk.push(hop.datacenter);
    if (walk.filter((dc) => dc === hop.datacenter).length > 1 || hop.datacenter === from) return [...walk, '(loop)'];
    at = hop.datacenter;
  }
  return walk;
}

describe('hub and spoke (the transit acceptance scenario)', () => {
  //   dc1 ── dc1-to-dc2 / dc2-to-dc1 ── dc2 (hub) ── dc2-to-dc3 / dc3-to-dc2 ── dc3
  //   RTTs in ms, from a datacenter to each router:
  //     dc1 → r1.dc2 10, r2.dc2 14          dc2 → r1.dc1 10, r2.dc1 12, r1.dc3 20
  //     dc3 → r1.dc2 20, r2.dc2 22
  const RTT_MS: Record<string, number> = {
    'dc1 r1.dc2': 10,
    'dc1 r2.dc2': 14,
    'dc2 r1.dc1': 10,
    'dc2 r2.dc1': 12,
    'dc2 r1.dc3': 20,
    'dc3 r1.dc2': 20,
    'dc3 r2.dc2': 22,
  };
  const hub = (t: { dc1: boolean; dc2ToDc1: boolean; dc2ToDc3: boolean; dc3: boolean }) =>
    federationOf(
      { dc1: ['r1', 'r2'], dc2: ['r1', 'r2'], dc3: ['r1'] },
      [
        { datacenters: ['dc1', 'dc2'], transit: [t.dc1, t.dc2ToDc1] },
        { datacenters: ['dc2', 'dc3'], transit: [t.dc2ToDc3, t.dc3] },
      ],
      (from, to) => RTT_MS[`${from} ${to}`],
    );

  const flags = [false, true];
  const cases = flags.flatMap((dc1) => flags.flatMap((dc2ToDc1) => flags.flatMap((dc2ToDc3) => flags.map((dc3) => ({ dc1, dc2ToDc1, dc2ToDc3, dc3 })))));

  it.each(cases.filter((t) => !(t.dc2ToDc1 && t.dc2ToDc3)))('gives dc1 no route to dc3 unless dc2 marks both its areas transit (%o)', (t) => {
    const { routes } = converge(hub(t));
    expect([...routes.get('dc1')!.keys()]).toEqual(['dc2']);
    expect([...routes.get('dc3')!.keys()]).toEqual(['dc2']);
    expect(datacentersByDistance('dc1', routes.get('dc1')!)).toEqual(['dc1', 'dc2']);
  });

  it.each(cases.filter((t) => t.dc2ToDc1 && t.dc2ToDc3))('routes dc1 to dc3 through dc2 once dc2 marks both areas transit, whatever dc1 and dc3 say (%o)', (t) => {
    const { routes, rounds } = converge(hub(t));
    expect(rounds).toBeLessThanOrEqual(3);
    expect(routes.get('dc1')!.get('dc3')).toEqual({
      datacenter: 'dc3',
      path: ['dc2', 'dc3'],
      areaId: 'dc1-to-dc2',
      rttNs: (10 + 20) * MS, // the nearest dc2 router, then dc2's distance to dc3
      nextHops: [
        { name: 'r1.dc2', address: addressOf('r1.dc2'), datacenter: 'dc2', areaId: 'dc1-to-dc2', alive: true },
        { name: 'r2.dc2', address: addressOf('r2.dc2'), datacenter: 'dc2', areaId: 'dc1-to-dc2', alive: true },
      ],
      reachable: true,
    });
    // And back: dc3 → dc2 (nearest 20 ms) → dc1 (upper median of 10, 12).
    expect(routes.get('dc3')!.get('dc1')).toMatchObject({ path: ['dc2', 'dc1'], areaId: 'dc3-to-dc2', rttNs: (20 + 12) * MS, reachable: true });
    expect(datacentersByDistance('dc1', routes.get('dc1')!)).toEqual(['dc1', 'dc2', 'dc3']);
    expect(forwardingWalk(routes, 'dc1', 'dc3')).toEqual(['dc2', 'dc3']);
  });

  it('fails over between the hub\'s routers, and loses dc3 when the hub is gone', () => {
    const all = { dc1: true, dc2ToDc1: true, dc2ToDc3: true, dc3: true };
    const oneDown = converge(withFailed(hub(all), (r) => r.name === 'r1.dc2')).routes;
    expect(oneDown.get('dc1')!.get('dc3')!.nextHops.map((hop) => [hop.name, hop.alive])).toEqual([
      ['r2.dc2', true],
      ['r1.dc2', false],
    ]);
    const hubDown = converge(withFailed(hub(all), (r) => r.datacenter === 'dc2')).routes;
    expect(hubDown.get('dc1')!.get('dc2')!.reachable).toBe(false);
    expect(hubDown.get('dc1')!.get('dc3')?.reachable ?? false).toBe(false);
  });
});

describe('a line of datacenters, all transit', () => {
  //   dc0 ── dc1 ── dc2 ── … ── dc9, 10 ms between neighbours
  const names = Array.from({ length: 10 }, (_, i) => `dc${i}`);
  const line = federationOf(
    Object.fromEntries(names.map((dc) => [dc, ['r1']])),
    names.slice(1).map((dc, i) => ({ datacenters: [names[i], dc] as const, transit: [true, true] as const })),
    () => 10,
  );

  it(`reaches ${MAX_HOPS} datacenters away and no further`, () => {
    const { routes } = converge(line);
    expect(routes.get('dc0')!.get('dc8')).toMatchObject({ path: names.slice(1, 9), rttNs: 80 * MS, reachable: true });
    expect(routes.get('dc0')!.has('dc9')).toBe(false);
    expect(routes.get('dc9')!.has('dc0')).toBe(false);
    expect(routes.get('dc9')!.get('dc1')!.path).toHaveLength(MAX_HOPS);
    expect(routes.get('dc4')!.size).toBe(9);
  });
});

describe('a datacenter lost after the routes settled', () => {
  //   dc1 ─── dc2        all areas transit on both sides; then dc3's only router fails.
  //     \     /          dc1 and dc2 each still hold the other's advertisement of dc3, made
  //      dc3             when it was alive: neither may keep dc3 reachable through the other.
  const triangle = federationOf(
    { dc1: ['r1'], dc2: ['r1'], dc3: ['r1'] },
    [
      { datacenters: ['dc1', 'dc2'], transit: [true, true] },
      { datacenters: ['dc1', 'dc3'], transit: [true, true] },
      { datacenters: ['dc2', 'dc3'], transit: [true, true] },
    ],
    () => 10,
  );

  it('becomes unreachable everywhere, with no forwarding loop', () => {
    const before = converge(triangle);
    expect(before.routes.get('dc1')!.get('dc3')!.reachable).toBe(true);
    const lost = withFailed(triangle, (r) => r.datacenter === 'dc3');
    const after = converge(lost, before.tags);
    for (const from of ['dc1', 'dc2']) {
      expect(after.routes.get(from)!.get('dc3')).toMatchObject({ path: ['dc3'], reachable: false });
      expect(forwardingWalk(after.routes, from, 'dc3')).toEqual(['(stuck)']);
    }
    expect(after.routes).toEqual(converge(lost).routes);
  });
});

// ---------------------------------------------------------------------------------------------
// Random federations: 2–9 datacenters of 1–3 routers, random areas with a transit flag on each
// side, a random RTT per pair of routers, sometimes failed routers. With 9 datacenters at most no
// path can exceed MAX_HOPS (a route never crosses its own source), so the limit is never what
// stops a route here: the line above holds the limit.

interface Shape {
  readonly routerCounts: readonly number[];
  /** One RTT per unordered pair of routers (index pairIndex), in µs so advertisements are exact. */
  readonly rttsUs: readonly number[];
}

interface State {
  /** Per pair of datacenters (index pairIndex): no area, or the area's transit flags [lower, higher]. */
  readonly areas: readonly (readonly [boolean, boolean] | null)[];
  /** Per router, in datacenter then router order. */
  readonly failed: readonly boolean[];
}

/** Unordered pairs of 0..n-1, indexed 0..n(n-1)/2-1. */
const pairIndex = (i: number, j: number) => (i < j ? (j * (j - 1)) / 2 + i : (i * (i - 1)) / 2 + j);
const pairCount = (n: number) => (n * (n - 1)) / 2;
const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

const shapeArb: fc.Arbitrary<Shape> = fc
  .array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 9 })
  .chain((routerCounts) => {
    const pairs = pairCount(sum(routerCounts));
    return fc.record({
      routerCounts: fc.constant(routerCounts),
      rttsUs: fc.array(fc.integer({ min: 1_000, max: 150_000 }), { minLength: pairs, maxLength: pairs }),
    });
  });

/** How areas are drawn: every side transit, a flag per datacenter shared by its sides, or a flag per side. */
type TransitMode = 'all' | 'perDatacenter' | 'perSide';

function stateArb(shape: Shape): fc.Arbitrary<State> {
  const datacenters = shape.routerCounts.length;
  const pairs = pairCount(datacenters);
  const routers = sum(shape.routerCounts);
  return fc
    .record({
      // Sparse federations give long paths, dense ones many alternatives.
      densityPercent: fc.constantFrom(15, 30, 50, 100),
      draws: fc.array(fc.record({ draw: fc.integer({ min: 0, max: 99 }), transit: fc.tuple(fc.boolean(), fc.boolean()) }), { minLength: pairs, maxLength: pairs }),
      mode: fc.constantFrom<TransitMode>('all', 'perDatacenter', 'perSide'),
      datacenterTransit: fc.array(fc.boolean(), { minLength: datacenters, maxLength: datacenters }),
      failed: fc.option(fc.array(fc.integer({ min: 0, max: 3 }).map((n) => n === 0), { minLength: routers, maxLength: routers }), { nil: undefined, freq: 2 }),
    })
    .map(({ densityPercent, draws, mode, datacenterTransit, failed }) => ({
      areas: draws.map(({ draw, transit }, index) => {
        if (draw >= densityPercent) return null;
        if (mode === 'all') return [true, true] as const;
        if (mode === 'perSide') return transit;
        const [lower, higher] = pairOf(index);
        return [datacenterTransit[lower], datacenterTransit[higher]] as const;
      }),
      failed: failed ?? Array<boolean>(routers).fill(false),
    }));
}

function pairOf(index: number): [number, number] {
  let higher = 1;
  while (pairIndex(0, higher + 1) <= index) higher++;
  return [index - pairIndex(0, higher), higher];
}

function build(shape: Shape, state: State): Federation {
  const datacenters = shape.routerCounts.map((_, i) => `dc${i + 1}`);
  const index = new Map<string, number>();
  const routers = new Map<string, ModelRouter[]>();
  datacenters.forEach((datacenter, i) => {
    const list: ModelRouter[] = [];
    for (let j = 0; j < shape.routerCounts[i]; j++) {
      const name = `r${j + 1}.${datacenter}`;
      list.push({ name, address: `10.${i + 1}.0.${j + 1}:8300`, datacenter, failed: state.failed[index.size] });
      index.set(name, index.size);
    }
    routers.set(datacenter, list);
  });
  const areas: ModelArea[] = [];
  state.areas.forEach((transit, i) => {
    if (transit === null) return;
    const [lower, higher] = pairOf(i);
    areas.push({ datacenters: [datacenters[lower], datacenters[higher]], transit });
  });
  // A datacenter sees every router from the place of its first router (its routers share one view).
  const observer = (datacenter: string) => index.get(routers.get(datacenter)![0].name)!;
  return { datacenters, routers, areas, rttNs: (from, to) => shape.rttsUs[pairIndex(observer(from), index.get(to.name)!)] * 1_000 };
}

const federationArb = shapeArb.chain((shape) => stateArb(shape).map((state) => ({ shape, state })));

// --- what the model knows of a federation

const neighboursOf = (f: Federation, datacenter: string) => new Set(sidesOf(f, datacenter).map((side) => side.peer));
const sideTransit = (f: Federation, datacenter: string, peer: string) => sidesOf(f, datacenter).find((side) => side.peer === peer)!.transit;
/** Carries traffic between any two of its areas. */
const fullyTransit = (f: Federation, datacenter: string) => sidesOf(f, datacenter).every((side) => side.transit);
/** Every datacenter's areas agree on transit, so "carries transit" is a property of the datacenter. */
const uniformTransit = (f: Federation) => f.datacenters.every((dc) => new Set(sidesOf(f, dc).map((side) => side.transit)).size <= 1);
const allAlive = (f: Federation) => [...f.routers.values()].every((list) => list.every((r) => !r.failed));

function upperMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
/** §3.8: a datacenter's distance to a neighbour, failed routers counted. */
const distance = (f: Federation, from: string, to: string) => upperMedian(f.routers.get(to)!.map((r) => f.rttNs(from, r)!));
/** A transit hop leaves through the nearest living router of the neighbour. */
const nearest = (f: Federation, from: string, to: string) => Math.min(...f.routers.get(to)!.filter((r) => !r.failed).map((r) => f.rttNs(from, r)!));

/** What the table should estimate for a route: nearest routers to each datacenter crossed, the last one's distance to the target. */
function pathCost(f: Federation, from: string, path: readonly string[]): number {
  const walk = [from, ...path];
  let cost = 0;
  for (let i = 0; i < walk.length - 2; i++) cost += nearest(f, walk[i], walk[i + 1]);
  return cost + distance(f, walk[walk.length - 2], walk[walk.length - 1]);
}

/**
 * The cheapest cost every datacenter can have to `target` under the table's rules, when all routers
 * live and transit is uniform: the target's neighbours reach it directly at their distance (a direct
 * route wins however much a detour would save, so a plain shortest path over all areas is not what is
 * meant); every other datacenter through a neighbour that carries transit, at `hop` to it plus the
 * neighbour's own cost. A Dijkstra backwards from the target's neighbours. (Split horizon never
 * forbids what it picks: a neighbour whose route crosses us is dearer than us, so settled after us.)
 */
function cheapestCosts(f: Federation, target: string, hop: (from: string, to: string) => number): Map<string, number> {
  const direct = neighboursOf(f, target);
  const cost = new Map([...direct].map((dc) => [dc, distance(f, dc, target)]));
  const settled = new Set([target]);
  for (;;) {
    let next: string | undefined;
    for (const [dc, c] of cost) if (!settled.has(dc) && (next === undefined || c < cost.get(next)!)) next = dc;
    if (next === undefined) return cost;
    settled.add(next);
    if (!fullyTransit(f, next)) continue;
    for (const from of neighboursOf(f, next)) {
      if (settled.has(from) || direct.has(from)) continue;
      const c = hop(from, next) + cost.get(next)!;
      if (c < (cost.get(from) ?? Infinity)) cost.set(from, c);
    }
  }
}

/**
 * Datacenters `from` has a path to whose every intermediate carries transit between all its areas,
 * within MAX_HOPS. Only those are promised a route: a datacenter with transit on just the two areas
 * of some path may still route to the target through a third, non-transit area (its best route,
 * say a direct one), and then it advertises nothing, as distance vectors advertise only their best.
 */
function transitReachable(f: Federation, from: string): Set<string> {
  const hops = new Map([[from, 0]]);
  const queue = [from];
  while (queue.length > 0) {
    const at = queue.shift()!;
    if (hops.get(at)! >= MAX_HOPS) continue;
    for (const next of neighboursOf(f, at)) {
      if (hops.has(next)) continue;
      hops.set(next, hops.get(at)! + 1);
      if (fullyTransit(f, next)) queue.push(next);
    }
  }
  hops.delete(from);
  return new Set(hops.keys());
}

function ensure(condition: boolean, rule: string, from: string, target: string, route: Route | undefined): void {
  if (!condition) throw new Error(`${rule}\n  ${from} → ${target}: ${JSON.stringify(route)}`);
}

/** What holds of any fixed point, whatever the transit flags and failures. */
function checkSound(f: Federation, routes: RoutesByDatacenter): void {
  for (const from of f.datacenters) {
    const neighbours = neighboursOf(f, from);
    for (const [target, route] of routes.get(from)!) {
      const { path } = route;
      const walk = [from, ...path];
      const fail = (ok: boolean, rule: string) => ensure(ok, rule, from, target, route);
      fail(route.datacenter === target && path[path.length - 1] === target && target !== from, 'a route ends at its target, never the source');
      fail(path.length >= 1 && path.length <= MAX_HOPS, 'a path is 1 to MAX_HOPS datacenters');
      fail(new Set(walk).size === walk.length, 'no datacenter twice on a path, and never the source');
      fail(walk.slice(1).every((dc, i) => neighboursOf(f, walk[i]).has(dc)), 'a path is a walk over areas, from a neighbour of the source');
      fail(route.areaId === areaIdOf(from, path[0]), "a route leaves through our side of the area to the path's first datacenter");
      fail(
        path.slice(0, -1).every((dc, i) => sideTransit(f, dc, walk[i]) && sideTransit(f, dc, walk[i + 2])),
        'every datacenter crossed is transit on the area it is entered by and the one it is left by',
      );
      fail(new Set(route.nextHops.map((hop) => hop.address)).size === route.nextHops.length, 'no router twice in the next hops');
      fail(route.nextHops.every((hop) => neighbours.has(hop.datacenter) && hop.areaId === areaIdOf(from, hop.datacenter)), 'next hops are routers of neighbours, through their area');
      fail(route.nextHops.every((hop, i) => i === 0 || hop.alive <= route.nextHops[i - 1].alive), 'living next hops first');
      fail(route.reachable === route.nextHops.some((hop) => hop.alive), 'reachable when a next hop lives');
      if (route.reachable) fail(forwardingWalk(routes, from, target).join('>') === path.join('>'), 'a request crosses exactly the path, its first living hop at each step');
      fail(
        route.nextHops.every((hop) => hop.datacenter === target || routes.get(hop.datacenter)!.get(target)?.path.includes(from) === false),
        'a fallback next hop leads to the target without coming back',
      );
    }
    for (const peer of neighbours) {
      const route = routes.get(from)!.get(peer);
      const living = f.routers.get(peer)!.some((r) => !r.failed);
      // With all of the peer's routers failed nobody reaches it, so no transit route can either.
      ensure(route !== undefined && route.path.length === 1 && route.reachable === living, 'a neighbour is routed directly', from, peer, route);
    }
  }
}

/** What holds when every router lives. */
function checkCompleteAndCheapest(f: Federation, routes: RoutesByDatacenter): void {
  const uniform = uniformTransit(f);
  for (const from of f.datacenters) {
    const own = routes.get(from)!;
    const promised = transitReachable(f, from);
    for (const target of promised) ensure(own.get(target)?.reachable === true, 'a route to every datacenter over transit datacenters', from, target, own.get(target));
    if (uniform) {
      // Transit is then a property of each datacenter, and the promise is exact.
      for (const [target, route] of own) ensure(promised.has(target), 'no route beyond transit datacenters', from, target, route);
    }
    for (const [target, route] of own) ensure(route.rttNs === pathCost(f, from, route.path), 'the estimate is the cost of the path', from, target, route);
  }
  if (!uniform) return;
  for (const target of f.datacenters) {
    const cheapest = cheapestCosts(f, target, (from, to) => nearest(f, from, to));
    // The same over medians at every hop (the datacenter distances of §3.8): never cheaper, as the nearest router is never farther than the median.
    const overMedians = cheapestCosts(f, target, (from, to) => distance(f, from, to));
    for (const from of f.datacenters) {
      if (from === target) continue;
      const route = routes.get(from)!.get(target);
      ensure((route?.rttNs ?? Infinity) === (cheapest.get(from) ?? Infinity), 'the cheapest route the rules allow', from, target, route);
      ensure((route?.rttNs ?? Infinity) <= (overMedians.get(from) ?? Infinity), 'no dearer than the cheapest path over median distances', from, target, route);
    }
  }
}

describe('random federations (model)', () => {
  it('converge, and the routes at the fixed point are sound, complete and the cheapest', () => {
    let transitRoutes = 0;
    fc.assert(
      fc.property(federationArb, ({ shape, state }) => {
        const f = build(shape, state);
        const { routes } = converge(f); // throws past MAX_ROUNDS
        checkSound(f, routes);
        if (allAlive(f)) checkCompleteAndCheapest(f, routes);
        for (const own of routes.values()) for (const route of own.values()) if (route.path.length > 1) transitRoutes++;
      }),
      { seed: 0xc0a5, numRuns: 400 },
    );
    // The generator must exercise transit, not only adjacency.
    expect(transitRoutes).toBeGreaterThan(1_000);
  });

  it('settle, after areas, transit flags and routers change under converged routes, where a federation formed afresh would', () => {
    // From converged routes, each area may appear or vanish or flip a side's transit flag, and routers fail or recover:
    // stale advertisements must be withdrawn, never keep a datacenter reachable in a loop.
    const changeArb = federationArb.chain(({ shape, state }) =>
      fc
        .record({
          edits: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: state.areas.length, maxLength: state.areas.length }),
          failed: fc.array(fc.integer({ min: 0, max: 3 }).map((n) => n === 0), { minLength: state.failed.length, maxLength: state.failed.length }),
        })
        .map(({ edits, failed }) => {
          const areas = state.areas.map((transit, i): readonly [boolean, boolean] | null => {
            if (edits[i] === 0) return transit === null ? [true, true] : null;
            if (transit === null) return null;
            if (edits[i] === 1) return [!transit[0], transit[1]];
            if (edits[i] === 2) return [transit[0], !transit[1]];
            return transit;
          });
          return { shape, before: state, after: { areas, failed } };
        }),
    );
    fc.assert(
      fc.property(changeArb, ({ shape, before, after }) => {
        const settled = converge(build(shape, before));
        const changed = build(shape, after);
        const resettled = converge(changed, settled.tags); // throws past MAX_ROUNDS
        checkSound(changed, resettled.routes);
        expect(resettled.routes).toEqual(converge(changed).routes);
      }),
      { seed: 0xa7ea5, numRuns: 300 },
    );
  });
});
