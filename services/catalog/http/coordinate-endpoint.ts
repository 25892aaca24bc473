/**
 * `/v1/coordinate/...` (reference/consul-compat.md §2.6, §3.8; agent/coordinate_endpoint.go).
 * Consul keeps the coordinates its agents send in the catalog; ours live in the gossip pools, so
 * they are read from a server gossip agent, which knows every segment. A node has one coordinate
 * per segment it is in (servers: every segment), comparable only within that segment.
 *
 * `?segment=` filters as Consul's `filterCoordinates`: absent lists every segment; present (even
 * empty, the default segment) keeps only that one; `_all` lists every segment. There is no index
 * behind gossip coordinates: X-Consul-Index is always 1, so a blocking query (`?index=1`) waits
 * out its `wait` and answers with what is there then (Consul promises no more).
 */
import { NodeCoordinate } from '../../gen/consulate/gossip/v1/membership';
import { ALL_SEGMENTS, GossipClient } from '../gossip-client';
import { RouterClient } from '../router-client';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { JITTER_FRACTION, parseQueryOptions } from './query-options';

export interface CoordinateDeps {
  readonly datacenter: string;
  readonly gossip: Pick<GossipClient, 'coordinates'>;
  readonly routers: Pick<RouterClient, 'configured' | 'datacenterCoordinates'>;
}

/** Consul's structs.Coordinate as JSON. */
export interface CoordinateEntry {
  readonly Node: string;
  readonly Segment: string;
  readonly Coord: { readonly Vec: readonly number[]; readonly Error: number; readonly Adjustment: number; readonly Height: number };
}

const COORDINATE_INDEX = 1;

export function registerCoordinateEndpoints(router: HttpRouter, deps: CoordinateDeps): void {
  router.on(['GET'], '/v1/coordinate/nodes', async (request) => answer(request, deps, () => true));

  router.on(['GET'], '/v1/coordinate/node/:node', async (request) => {
    const node = request.params.node.toLowerCase();
    const result = await answer(request, deps, (c) => c.node.toLowerCase() === node);
    // Consul: a node without a coordinate is a 404 with an empty body.
    return Array.isArray(result.body) && result.body.length === 0 ? { ...result, status: 404, body: Buffer.alloc(0) } : result;
  });

  // Only the WAN and area pools have datacenter coordinates (the LAN is left out, as in Consul);
  // both are the federation routers' pools, so the answer is a router's. Like Consul's
  // Coordinate.ListDatacenters it takes no `dc`. Without a router there is no pool: `[]`.
  router.on(['GET'], '/v1/coordinate/datacenters', async () => {
    if (!deps.routers.configured) return { body: [] };
    const { maps } = await deps.routers.datacenterCoordinates();
    const body: DatacenterMapEntry[] = maps.map((map) => ({ Datacenter: map.datacenter, AreaID: map.areaId, Coordinates: map.coordinates.map(toEntry) }));
    return { body };
  });
}

/** Consul's structs.DatacenterMap as JSON. */
export interface DatacenterMapEntry {
  readonly Datacenter: string;
  readonly AreaID: string;
  readonly Coordinates: readonly CoordinateEntry[];
}

function toEntry(c: NodeCoordinate): CoordinateEntry {
  return { Node: c.node, Segment: c.segment, Coord: { Vec: c.coord?.vec ?? [], Error: c.coord?.error ?? 0, Adjustment: c.coord?.adjustment ?? 0, Height: c.coord?.height ?? 0 } };
}

async function answer(request: HttpRequest, deps: CoordinateDeps, keep: (c: NodeCoordinate) => boolean): Promise<HttpResult> {
  const options = parseQueryOptions(request.query, deps.datacenter);
  if (options.minIndex >= COORDINATE_INDEX) {
    const jitter = Math.floor(Math.random() * (options.waitMs / JITTER_FRACTION));
    await new Promise((resolve) => setTimeout(resolve, options.waitMs + jitter));
  }
  const segment = request.query.get('segment');
  const coordinates = (await deps.gossip.coordinates(ALL_SEGMENTS)).filter((c) => keep(c) && (segment === null || segment === ALL_SEGMENTS || c.segment === segment));
  coordinates.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : a.segment < b.segment ? -1 : a.segment > b.segment ? 1 : 0));
  const body: CoordinateEntry[] = coordinates.map(toEntry);
  return { body, headers: { 'X-Consul-Index': String(COORDINATE_INDEX), 'X-Consul-KnownLeader': 'true', 'X-Consul-LastContact': '0' } };
}
