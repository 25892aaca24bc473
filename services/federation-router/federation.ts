/**
 * The router's pools: one SWIM pool per network area of this datacenter and the WAN pool, all over
 * gRPC on 8300 (pool-transport.ts), run by the same core and shell as the LAN pools
 * (services/lib/swim-pool.ts). This follows the areas in the store (area-store.ts): a new area
 * gets a pool that floods in this datacenter's other routers and keeps trying its RetryJoin
 * addresses until one join works; a deleted area's pool is left gracefully, so the peer sees our
 * routers as `left`. From the pools it keeps the route table (routing/route-table.ts) and the
 * transit advertisements this router makes in each transit area.
 */
import { MemberInfo, serfStatus } from '../lib/swim/types';
import { Logger } from '../lib/log';
import { JoinResult, SwimPool } from '../lib/swim-pool';
import { SwimTimings } from '../lib/swim/config';
import { Coordinate, distanceNs } from '../lib/vivaldi/coordinate';
import { Area, AreaError, AreaStore } from './area-store';
import { joinAddressProblem } from './join-address';
import { PeerClients } from './peer-clients';
import { RpcPoolTransport, poolKey } from './pool-transport';
import { PoolSnapshot, ROUTES_TAG, Route, RouterMember, advertisement, computeRoutes, datacentersByDistance } from './routing/route-table';

export const WAN_AREA = 'wan';
/** How often routers of this datacenter missing from a pool are joined, and routes recomputed. */
const FLOOD_INTERVAL_MS = 5_000;
const RETRY_JOIN_INTERVAL_MS = 10_000;
const ROUTES_INTERVAL_MS = 1_000;
/** An advertisement whose routes are unchanged and only RTTs moved is refreshed at most this often. */
const READVERTISE_RTT_MS = 15_000;
/** A router's address in a pool: an IPv4 or bracketed IPv6 address and a port. */
const ROUTER_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;
/** Consul's default port for an area join address without one. */
export const SERVER_RPC_PORT = 8300;

export interface FederationOptions {
  readonly datacenter: string;
  readonly node: string;
  readonly nodeId: string;
  readonly version: string;
  /** ip:port of this router's 8300. */
  readonly address: string;
  readonly timings: SwimTimings;
  readonly logger: Logger;
}

/** Consul's api.SerfMember. */
export interface AreaMemberView {
  readonly id: string;
  readonly name: string;
  readonly addr: string;
  readonly port: number;
  readonly datacenter: string;
  readonly role: string;
  readonly build: string;
  readonly protocol: number;
  readonly status: string;
  /** ns; 0 for ourselves, -1 when there is no estimate. */
  readonly rttNs: number;
}

/** Consul's structs.DatacenterMap: one datacenter's routers in one pool. */
export interface DatacenterCoordinates {
  readonly datacenter: string;
  /** `wan` or the area's UUID. */
  readonly areaId: string;
  readonly coordinates: readonly { readonly node: string; readonly coord: Coordinate }[];
}

interface PoolEntry {
  readonly key: string;
  readonly areaId: string;
  area: Area | undefined;
  readonly pool: SwimPool;
  readonly transport: RpcPoolTransport;
  retryJoinDone: boolean;
  advertised: string;
  advertisedAtMs: number;
}

export class Federation {
  private readonly byArea = new Map<string, PoolEntry>();
  private readonly byKey = new Map<string, PoolEntry>();
  private routeTable = new Map<string, Route>();
  /** Datacenters this one is adjacent to: an area's peer, or a datacenter with a router in the WAN pool that has not left. */
  private adjacentDatacenters = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private unsubscribe: () => void = () => undefined;
  private readonly failedListeners = new Set<(address: string) => void>();
  private stopped = false;

  constructor(
    private readonly options: FederationOptions,
    private readonly store: AreaStore,
    private readonly peers: PeerClients,
  ) {}

  start(): void {
    this.openPool(WAN_AREA, undefined);
    this.unsubscribe = this.store.subscribe(() => this.reconcile());
    this.reconcile();
    this.timers.push(setInterval(() => this.floodJoin(), FLOOD_INTERVAL_MS));
    this.timers.push(setInterval(() => this.retryJoins(), RETRY_JOIN_INTERVAL_MS));
    this.timers.push(setInterval(() => this.refreshRoutes(), ROUTES_INTERVAL_MS));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all([...this.byArea.values()].map((entry) => this.closePool(entry, 1_000)));
  }

  /** The pool a call on 8300 names, if the caller's datacenter may speak in it. */
  poolFor(key: string, callerDatacenter: string): RpcPoolTransport | { error: string } {
    const entry = this.byKey.get(key);
    if (entry === undefined) return { error: `no pool "${key}" on this router (no area with the caller's datacenter ${callerDatacenter})` };
    if (entry.area !== undefined && callerDatacenter !== this.options.datacenter && callerDatacenter !== entry.area.peerDatacenter)
      return { error: `datacenter ${callerDatacenter} is not part of the area with ${entry.area.peerDatacenter}` };
    return entry.transport;
  }

  /** Told the address of every router a pool declares failed. */
  onRouterFailed(listener: (address: string) => void): void {
    this.failedListeners.add(listener);
  }

  /**
   * Whether a router of `datacenter` may send requests here: ours, the peer of one of our areas
   * (the operator made it), or in the WAN pool with us. A datacenter that only holds a certificate
   * from the same CA is not: areas keep datacenters apart, and Consul checks no more than the CA.
   */
  adjacent(datacenter: string): boolean {
    return datacenter === this.options.datacenter || this.adjacentDatacenters.has(datacenter);
  }

  routes(): ReadonlyMap<string, Route> {
    return this.routeTable;
  }

  /**
   * The route to `datacenter` from the table, which is recomputed on every member event and area
   * change (and each second): a request for an unknown datacenter costs a lookup, not a recompute.
   */
  route(datacenter: string): Route | undefined {
    return this.routeTable.get(datacenter);
  }

  datacenters(): string[] {
    return datacentersByDistance(this.options.datacenter, this.routeTable);
  }

  members(areaId: string): AreaMemberView[] {
    const entry = this.byArea.get(areaId);
    if (entry === undefined) throw AreaError.unknown(areaId);
    const rttTo = rttEstimator(entry.pool);
    return entry.pool
      .members()
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((member) => {
        const [host, port] = splitAddress(member.address);
        const rttNs = rttTo(member);
        return {
          id: member.tags.id ?? '',
          name: member.name,
          addr: host,
          port: Number(member.tags.port ?? port),
          datacenter: member.tags.dc ?? '',
          role: 'server',
          build: member.tags.build ?? '',
          protocol: Number(member.tags.vsn ?? 2),
          status: serfStatus(member.state),
          rttNs: rttNs === undefined ? -1 : Math.round(rttNs),
        };
      });
  }

  /**
   * Consul's Router.GetDatacenterMaps: for each pool (the WAN and every area), the coordinate of
   * each router that has not left, grouped by datacenter, node names without `.<dc>`. Ordered by
   * pool, then datacenter, then node, where Consul's map order is random.
   */
  datacenterMaps(): DatacenterCoordinates[] {
    const maps: DatacenterCoordinates[] = [];
    for (const areaId of [...this.byArea.keys()].sort()) {
      const { pool } = this.byArea.get(areaId)!;
      const self = pool.localMember().name;
      const known = pool.coordinates();
      const byDatacenter = new Map<string, { node: string; coord: Coordinate }[]>();
      for (const member of pool.members()) {
        if (serfStatus(member.state) === 'left') continue;
        const coord = member.name === self ? pool.coordinate() : known.get(member.name);
        if (coord === undefined) continue;
        const datacenter = member.tags.dc ?? '';
        const list = byDatacenter.get(datacenter) ?? [];
        list.push({ node: member.name.endsWith(`.${datacenter}`) ? member.name.slice(0, -datacenter.length - 1) : member.name, coord });
        byDatacenter.set(datacenter, list);
      }
      for (const datacenter of [...byDatacenter.keys()].sort()) {
        maps.push({ datacenter, areaId, coordinates: byDatacenter.get(datacenter)!.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)) });
      }
    }
    return maps;
  }

  async join(areaId: string, addresses: readonly string[]): Promise<JoinResult[]> {
    const entry = this.byArea.get(areaId);
    if (entry === undefined) throw AreaError.unknown(areaId);
    // An address that cannot be one is reported against its row, never dialled.
    const problems = addresses.map(joinAddressProblem);
    const dialled = addresses.filter((_, i) => problems[i] === undefined);
    const results = dialled.length === 0 ? [] : await entry.pool.join(dialled.map(withDefaultPort));
    let next = 0;
    return addresses.map((address, i) => {
      const problem = problems[i];
      if (problem !== undefined) return { address, joined: false, error: `invalid address: ${problem}` };
      const result = results[next++];
      // Consul reports the address as given.
      return { ...result, address, error: result.error.replace(/^Failed to join [^:]+:\d+: /, '') };
    });
  }

  /** Applies the areas in the store: a pool for each, none for the deleted. */
  private reconcile(): void {
    if (this.stopped) return;
    const areas = new Map(this.store.areas().map((area) => [area.id, area]));
    for (const [id, entry] of this.byArea) {
      if (id === WAN_AREA) continue;
      const area = areas.get(id);
      if (area === undefined) {
        this.options.logger.info({ area: id, peer: entry.area?.peerDatacenter }, `area ${id} was deleted: leaving its pool`);
        void this.closePool(entry, 3_000);
      } else {
        entry.area = area;
      }
    }
    for (const area of areas.values()) {
      if (this.byArea.has(area.id)) continue;
      const entry = this.openPool(area.id, area);
      if (entry !== undefined) this.options.logger.info({ area: area.id, peer: area.peerDatacenter, transit: area.transit }, `joined area ${area.id} with peer datacenter ${area.peerDatacenter}`);
    }
    this.floodJoin();
    this.retryJoins();
    this.refreshRoutes();
  }

  private openPool(areaId: string, area: Area | undefined): PoolEntry | undefined {
    const key = poolKey(this.options.datacenter, area?.peerDatacenter);
    if (this.byKey.has(key)) {
      this.options.logger.warn({ area: areaId, key }, `area ${areaId} duplicates the pool ${key}; ignored`);
      return undefined;
    }
    const transport = new RpcPoolTransport(key, this.options.address, this.peers, this.options.logger);
    const [, port] = splitAddress(this.options.address);
    const pool = new SwimPool(transport, {
      segment: areaId,
      name: `${this.options.node}.${this.options.datacenter}`,
      tags: { role: 'consul', dc: this.options.datacenter, id: this.options.nodeId, port: String(port), build: this.options.version, vsn: '2' },
      timings: this.options.timings,
      validateMembers: (members) => this.validateMembers(area, members),
      logger: this.options.logger,
    });
    pool.subscribe((event) => {
      if (event.type === 'member-failed') for (const listener of this.failedListeners) listener(event.member.address);
      if (event.type === 'member-join' || event.type === 'member-failed' || event.type === 'member-leave' || event.type === 'member-update' || event.type === 'member-reap') this.refreshRoutes();
    });
    const entry: PoolEntry = { key, areaId, area, pool, transport, retryJoinDone: false, advertised: '', advertisedAtMs: 0 };
    this.byArea.set(areaId, entry);
    this.byKey.set(key, entry);
    return entry;
  }

  private async closePool(entry: PoolEntry, leaveTimeoutMs: number): Promise<void> {
    this.byArea.delete(entry.areaId);
    this.byKey.delete(entry.key);
    try {
      await entry.pool.leave(leaveTimeoutMs);
    } finally {
      await entry.pool.stop();
      this.refreshRoutes();
    }
  }

  /** Only routers, and in an area only the two datacenters of the pair (Consul's area rule). */
  private validateMembers(area: Area | undefined, members: readonly MemberInfo[]): string | undefined {
    for (const member of members) {
      if (!ROUTER_ADDRESS.test(member.address)) return `Member '${member.name}' has an address that is not ip:port ('${member.address}')`;
      const datacenter = member.tags.dc;
      if (member.tags.role !== 'consul' || datacenter === undefined) return `Non-server in server-only area: member '${member.name}' is not a router`;
      if (area !== undefined && datacenter !== this.options.datacenter && datacenter !== area.peerDatacenter)
        return `Member '${member.name}' of datacenter '${datacenter}' is not part of the area with datacenter '${area.peerDatacenter}'`;
    }
    return undefined;
  }

  /** Joins this datacenter's other live routers into every pool they are not alive in. */
  private floodJoin(): void {
    if (this.stopped) return;
    const others = this.store.routers().filter((router) => router.address !== this.options.address);
    for (const entry of this.byArea.values()) {
      const alive = new Set(entry.pool.members().filter((m) => m.state === 'alive' || m.state === 'suspect').map((m) => m.address));
      const missing = others.filter((router) => !alive.has(router.address)).map((router) => router.address);
      if (missing.length === 0) continue;
      void entry.pool.join(missing).then((results) => {
        for (const result of results.filter((r) => !r.joined)) this.options.logger.warn({ area: entry.areaId, address: result.address }, `cannot join this datacenter's router ${result.address} into ${entry.areaId}: ${result.error}`);
      });
    }
  }

  /** An area's RetryJoin addresses are tried until one join works (Consul's background retry). */
  private retryJoins(): void {
    for (const entry of this.byArea.values()) {
      const addresses = entry.area?.retryJoin ?? [];
      if (entry.retryJoinDone || addresses.length === 0) continue;
      void entry.pool.join(addresses.map(withDefaultPort)).then((results) => {
        if (results.some((result) => result.joined)) {
          entry.retryJoinDone = true;
          this.options.logger.info({ area: entry.areaId, addresses }, `area ${entry.areaId}: retry join succeeded`);
        } else {
          this.options.logger.warn({ area: entry.areaId, errors: results.map((r) => r.error) }, `area ${entry.areaId}: retry join failed: ${results.map((r) => r.error).join('; ')}`);
        }
      });
    }
  }

  private snapshots(): PoolSnapshot[] {
    const snapshots: PoolSnapshot[] = [];
    for (const entry of this.byArea.values()) {
      const rttTo = rttEstimator(entry.pool);
      const members: RouterMember[] = entry.pool.members().map((member) => ({
        name: member.name,
        address: member.address,
        datacenter: member.tags.dc ?? '',
        status: serfStatus(member.state),
        rttNs: rttTo(member),
        routesTag: member.tags[ROUTES_TAG],
      }));
      snapshots.push({ areaId: entry.areaId, peer: entry.area?.peerDatacenter, transit: entry.area?.transit ?? false, members });
    }
    return snapshots;
  }

  /** Recomputes the route table, and re-advertises transit routes where they changed. */
  private refreshRoutes(): Map<string, Route> {
    const snapshots = this.snapshots();
    this.routeTable = computeRoutes(this.options.datacenter, snapshots);
    this.adjacentDatacenters = adjacentIn(snapshots);
    const now = Date.now();
    for (const snapshot of snapshots) {
      const entry = this.byArea.get(snapshot.areaId);
      if (entry === undefined || snapshot.peer === undefined) continue;
      const next = advertisement(snapshot, snapshots, this.routeTable);
      if (next === entry.advertised) continue;
      const samePaths = pathsOf(next) === pathsOf(entry.advertised);
      if (samePaths && now - entry.advertisedAtMs < READVERTISE_RTT_MS) continue;
      entry.advertised = next;
      entry.advertisedAtMs = now;
      const tags = { ...entry.pool.localMember().tags };
      if (next === '') delete tags[ROUTES_TAG];
      else tags[ROUTES_TAG] = next;
      entry.pool.setTags(tags);
      if (!samePaths) this.options.logger.info({ area: entry.areaId, routes: next }, `area ${entry.areaId}: advertising transit routes [${next}]`);
    }
    return this.routeTable;
  }
}

/** Each area's peer, and each datacenter with a router in the WAN pool that has not left. */
function adjacentIn(snapshots: readonly PoolSnapshot[]): Set<string> {
  const adjacent = new Set<string>();
  for (const snapshot of snapshots) {
    if (snapshot.peer !== undefined) adjacent.add(snapshot.peer);
    else for (const member of snapshot.members) if (member.status !== 'left' && member.datacenter !== '') adjacent.add(member.datacenter);
  }
  return adjacent;
}

/** RTT estimates from this router's coordinate in `pool`: 0 to itself, undefined without a coordinate. */
function rttEstimator(pool: SwimPool): (member: MemberInfo) => number | undefined {
  const self = pool.localMember().name;
  const mine = pool.coordinate();
  const coordinates = pool.coordinates();
  return (member) => {
    if (member.name === self) return 0;
    const theirs = coordinates.get(member.name);
    return theirs === undefined ? undefined : distanceNs(mine, theirs);
  };
}

function pathsOf(advertised: string): string {
  return advertised
    .split(',')
    .map((entry) => entry.split(':')[1] ?? '')
    .join(',');
}

/** `IP`, `IP:port`, `host` or `host:port`; Consul's port for areas is the server RPC port. */
export function withDefaultPort(address: string): string {
  return /:\d+$/.test(address) ? address : `${address}:${SERVER_RPC_PORT}`;
}

function splitAddress(address: string): [string, number] {
  const match = /^(.*):(\d+)$/.exec(address);
  return match === null ? [address, 0] : [match[1].replace(/^\[|\]$/g, ''), Number(match[2])];
}
