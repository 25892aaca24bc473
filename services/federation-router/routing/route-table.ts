/**
 * The route table, pure: from what this router sees in its pools (each area's pool and the WAN
 * pool: members, their status, the RTT to each, and the routes each advertises) to how every other
 * datacenter is reached. No sockets, timers or clocks: the shell (../federation.ts) feeds it a
 * snapshot and acts on the answer, and the tests drive it with generated topologies.
 *
 * Consul's rules (consul-compat.md §3.5, §3.8), kept:
 * - A datacenter is adjacent when a router of it is in one of our pools (for an area, only the
 *   area's peer datacenter counts). Members that left do not count; failed ones keep the
 *   datacenter known but are tried last, and a datacenter whose routers have all failed is known
 *   and unreachable ("Remote DC has no server currently reachable"), unless transit reaches it.
 * - A datacenter's distance in a pool is the upper median of the RTTs to its routers; across
 *   pools, the minimum; the datacenter list is sorted by name, then stably by distance.
 *
 * Beyond Consul, transit: a router advertises, into each of its datacenter's transit areas, the
 * datacenters it reaches through its *other* transit areas (a tag on its member, see
 * `advertisement`). A router that hears such an advertisement from a peer router may route
 * through it. Paths carry every datacenter they cross, so a path through us is never taken (no
 * loops), a route is never advertised back into the datacenter it goes through (split horizon),
 * and paths stop at MAX_HOPS datacenters. A direct route wins over a transit one unless none of its
 * routers is alive and a transit route's is; among transit routes the living first, then the lowest
 * estimated RTT (first hop plus the advertised rest), then the shortest.
 */

/** Datacenters a request may cross, the target included. */
export const MAX_HOPS = 8;
/** The member tag carrying a router's transit advertisement. */
export const ROUTES_TAG = 'rt';

export type MemberStatus = 'alive' | 'leaving' | 'left' | 'failed';

export interface RouterMember {
  /** `<node>.<dc>`. */
  readonly name: string;
  /** ip:port on 8300. */
  readonly address: string;
  readonly datacenter: string;
  readonly status: MemberStatus;
  /** Estimated RTT from this router, in nanoseconds; undefined when there is no estimate yet. */
  readonly rttNs: number | undefined;
  /** The member's ROUTES_TAG, if any. */
  readonly routesTag?: string;
}

export interface PoolSnapshot {
  /** An area's ID, or "wan". */
  readonly areaId: string;
  /** The area's peer datacenter; undefined for the WAN pool. */
  readonly peer: string | undefined;
  /** This datacenter lets traffic pass between this area and its other transit areas. */
  readonly transit: boolean;
  readonly members: readonly RouterMember[];
}

/** One router a request may be sent to, to reach a datacenter. */
export interface NextHop {
  readonly name: string;
  readonly address: string;
  /** The next hop's datacenter: the target when adjacent, a transit datacenter otherwise. */
  readonly datacenter: string;
  readonly areaId: string;
  readonly alive: boolean;
}

export interface Route {
  readonly datacenter: string;
  /** The datacenters crossed to get there, ending with `datacenter`. */
  readonly path: readonly string[];
  /** The area the first hop leaves through. */
  readonly areaId: string;
  /** Estimated RTT along the path; +Infinity when unknown. */
  readonly rttNs: number;
  /** Routers to try, in order: the living first, nearest first. */
  readonly nextHops: readonly NextHop[];
  readonly reachable: boolean;
}

export interface AdvertisedRoute {
  readonly rttNs: number;
  /** From the advertiser's next datacenter to the target. */
  readonly path: readonly string[];
}

interface Candidate {
  readonly route: Omit<Route, 'nextHops' | 'reachable'>;
  readonly hops: readonly NextHop[];
  readonly direct: boolean;
}

/** Every datacenter this router can reach, by name; the local datacenter is not in it. */
export function computeRoutes(localDatacenter: string, pools: readonly PoolSnapshot[]): Map<string, Route> {
  const candidates = new Map<string, Candidate[]>();
  const consider = (candidate: Candidate) => {
    const list = candidates.get(candidate.route.datacenter) ?? [];
    list.push(candidate);
    candidates.set(candidate.route.datacenter, list);
  };

  for (const pool of pools) {
    for (const [datacenter, members] of adjacentByDatacenter(localDatacenter, pool)) {
      consider({
        route: { datacenter, path: [datacenter], areaId: pool.areaId, rttNs: upperMedian(members.map((m) => m.rttNs ?? Infinity)) },
        hops: nextHops(members, pool.areaId),
        direct: true,
      });
    }
  }
  for (const pool of pools) {
    if (pool.peer === undefined) continue;
    for (const member of pool.members) {
      if (member.datacenter !== pool.peer || member.status === 'left' || member.routesTag === undefined) continue;
      for (const advertised of parseAdvertisement(member.routesTag)) {
        const path = [member.datacenter, ...advertised.path];
        if (path.length > MAX_HOPS || path.includes(localDatacenter) || new Set(path).size !== path.length) continue;
        const datacenter = path[path.length - 1];
        consider({
          route: { datacenter, path, areaId: pool.areaId, rttNs: (member.rttNs ?? Infinity) + advertised.rttNs },
          hops: nextHops([member], pool.areaId),
          direct: false,
        });
      }
    }
  }

  const routes = new Map<string, Route>();
  for (const [datacenter, list] of candidates) {
    // The best candidate names the route; the routers of the others stay as fallbacks, in rank order.
    const ranked = rank(list);
    const nextHops = dedupe(ranked.flatMap((candidate) => candidate.hops)).sort((a, b) => Number(b.alive) - Number(a.alive));
    routes.set(datacenter, { ...ranked[0].route, nextHops, reachable: nextHops.some((hop) => hop.alive) });
  }
  return routes;
}

/**
 * Consul's `GetDatacentersByDistance`: the local datacenter first, then every other by RTT (the
 * minimum over pools of the per-pool upper median), names breaking ties and ordering the unknown.
 */
export function datacentersByDistance(localDatacenter: string, routes: ReadonlyMap<string, Route>): string[] {
  const names = [...routes.keys()].sort();
  const rtt = (name: string) => routes.get(name)!.rttNs;
  return [localDatacenter, ...names.sort((a, b) => compareRtt(rtt(a), rtt(b)))];
}

/**
 * What this router tells its peers in `area` it can carry traffic to: nothing unless the area is
 * transit; otherwise every reachable route leaving through another transit area, not through the
 * area's peer, short enough to take one more hop.
 */
export function advertisement(area: PoolSnapshot, pools: readonly PoolSnapshot[], routes: ReadonlyMap<string, Route>): string {
  if (area.peer === undefined || !area.transit) return '';
  const transitAreas = new Set(pools.filter((p) => p.peer !== undefined && p.transit && p.areaId !== area.areaId).map((p) => p.areaId));
  const entries: string[] = [];
  for (const route of [...routes.values()].sort((a, b) => (a.datacenter < b.datacenter ? -1 : 1))) {
    if (!route.reachable || !transitAreas.has(route.areaId) || route.path.includes(area.peer) || route.path.length >= MAX_HOPS) continue;
    const rttUs = Number.isFinite(route.rttNs) ? Math.round(route.rttNs / 1_000) : -1;
    entries.push(`${rttUs}:${route.path.join('>')}`);
  }
  return entries.join(',');
}

/** Reads a ROUTES_TAG; malformed entries (another version, a hostile peer) are skipped. */
export function parseAdvertisement(tag: string): AdvertisedRoute[] {
  const routes: AdvertisedRoute[] = [];
  for (const entry of tag.split(',')) {
    const match = /^(-1|\d{1,15}):([a-z0-9_-]+(?:>[a-z0-9_-]+){0,15})$/.exec(entry);
    if (match === null) continue;
    const rttUs = Number(match[1]);
    routes.push({ rttNs: rttUs < 0 ? Infinity : rttUs * 1_000, path: match[2].split('>') });
  }
  return routes;
}

function adjacentByDatacenter(localDatacenter: string, pool: PoolSnapshot): Map<string, RouterMember[]> {
  const byDatacenter = new Map<string, RouterMember[]>();
  for (const member of pool.members) {
    if (member.status === 'left' || member.datacenter === localDatacenter) continue;
    if (pool.peer !== undefined && member.datacenter !== pool.peer) continue;
    const list = byDatacenter.get(member.datacenter) ?? [];
    list.push(member);
    byDatacenter.set(member.datacenter, list);
  }
  return byDatacenter;
}

function nextHops(members: readonly RouterMember[], areaId: string): NextHop[] {
  return [...members]
    .sort((a, b) => compareRtt(a.rttNs ?? Infinity, b.rttNs ?? Infinity) || (a.name < b.name ? -1 : 1))
    .map((m) => ({ name: m.name, address: m.address, datacenter: m.datacenter, areaId, alive: m.status === 'alive' }));
}

/**
 * The candidates to one datacenter, best first. Direct ones by the nearest pool (Consul's minimum
 * over pools, failed members counted, §3.8), ahead of transit ones unless none of them has a living
 * router and a transit one has. A request leaves through the first living hop, so the path must be
 * that hop's: else loop prevention and split horizon read a path the traffic does not take, and two
 * datacenters that lost their routers to a third keep it "reachable" through each other's stale
 * advertisements, forwarding in a loop. Transit ones: the living first, then cheapest, then shortest.
 */
function rank(candidates: readonly Candidate[]): Candidate[] {
  const direct = candidates.filter((c) => c.direct).sort((a, b) => compareRtt(a.route.rttNs, b.route.rttNs));
  const transit = candidates
    .filter((c) => !c.direct)
    .sort((a, b) => Number(hasLivingHop(b)) - Number(hasLivingHop(a)) || compareRtt(a.route.rttNs, b.route.rttNs) || a.route.path.length - b.route.path.length);
  return direct.some(hasLivingHop) || !transit.some(hasLivingHop) ? [...direct, ...transit] : [...transit, ...direct];
}

function hasLivingHop(candidate: Candidate): boolean {
  return candidate.hops.some((hop) => hop.alive);
}

/** Ascending; +Infinity (unknown) last and equal to itself. */
function compareRtt(a: number, b: number): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

/** Consul's `rtts[len/2]` of the sorted RTTs. */
function upperMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function dedupe(hops: readonly NextHop[]): NextHop[] {
  const seen = new Set<string>();
  return hops.filter((hop) => !seen.has(hop.address) && seen.add(hop.address));
}
