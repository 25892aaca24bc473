// /v1/coordinate/... (reference/consul-compat.md §2.6, §3.8; agent/coordinate_endpoint.go
// filterCoordinates), from a scripted gossip agent and scripted routers.
import { NodeCoordinate } from '../../gen/consulate/gossip/v1/membership';
import { DatacenterCoordinatesResponse, DatacenterMap } from '../../gen/consulate/router/v1/operator';
import { registerCoordinateEndpoints } from './coordinate-endpoint';
import { Served, serveRouter } from './testing/serve-router';

const coord = (x: number) => ({ vec: [x, 0, 0, 0, 0, 0, 0, 0], error: 1.5, adjustment: 0.001, height: 0.0001 });
const COORDINATES: NodeCoordinate[] = [
  { node: 'server-1', segment: '', coord: coord(1) },
  { node: 'server-1', segment: 'alpha', coord: coord(2) },
  { node: 'node-alpha-1', segment: 'alpha', coord: coord(3) },
  { node: 'server-1', segment: 'beta', coord: coord(4) },
  { node: 'node-beta-1', segment: 'beta', coord: coord(5) },
];

const AREA = '8b0ee2f4-0000-4000-8000-000000000000';
/** As the router answers (federation.ts datacenterMaps): by pool, then datacenter, names without `.<dc>`. */
const MAPS: DatacenterMap[] = [
  { datacenter: 'dc1', areaId: AREA, coordinates: [{ node: 'router-1', segment: '', coord: coord(6) }] },
  { datacenter: 'dc2', areaId: AREA, coordinates: [{ node: 'router-1', segment: '', coord: coord(7) }] },
  { datacenter: 'dc1', areaId: 'wan', coordinates: [{ node: 'router-1', segment: '', coord: coord(8) }, { node: 'router-2', segment: '', coord: coord(9) }] },
];

let served: Served;
const asked: string[] = [];
/** The routers as the endpoint sees them: configured or not, and their answer. */
const routers: { configured: boolean; datacenterCoordinates: () => Promise<DatacenterCoordinatesResponse> } = {
  configured: true,
  datacenterCoordinates: async () => ({ maps: MAPS }),
};

beforeAll(async () => {
  served = await serveRouter((router) =>
    registerCoordinateEndpoints(router, {
      datacenter: 'dc1',
      gossip: {
        coordinates: async (segment) => {
          asked.push(segment);
          return COORDINATES;
        },
      },
      routers,
    }),
  );
});

afterAll(async () => {
  await served.close();
});

const names = (body: unknown) => (body as { Node: string; Segment: string }[]).map((c) => `${c.Node}/${c.Segment}`);

describe('/v1/coordinate/nodes', () => {
  test("Consul's shape, sorted by node then segment; every segment without ?segment (servers once per segment)", async () => {
    const response = await served.request('/v1/coordinate/nodes');
    expect(response.status).toBe(200);
    expect(response.headers.get('x-consul-index')).toBe('1');
    const body = response.json() as unknown[];
    expect(names(body)).toEqual(['node-alpha-1/alpha', 'node-beta-1/beta', 'server-1/', 'server-1/alpha', 'server-1/beta']);
    expect(body[0]).toEqual({ Node: 'node-alpha-1', Segment: 'alpha', Coord: { Vec: [3, 0, 0, 0, 0, 0, 0, 0], Error: 1.5, Adjustment: 0.001, Height: 0.0001 } });
    expect(asked.at(-1)).toBe('_all');
  });

  test('?segment=alpha keeps alpha only; ?segment= (empty) the default segment only; _all every one', async () => {
    expect(names((await served.request('/v1/coordinate/nodes?segment=alpha')).json())).toEqual(['node-alpha-1/alpha', 'server-1/alpha']);
    expect(names((await served.request('/v1/coordinate/nodes?segment=')).json())).toEqual(['server-1/']);
    expect(names((await served.request('/v1/coordinate/nodes?segment=_all')).json())).toHaveLength(5);
  });

  test("bad blocking parameters get Consul's 400s", async () => {
    expect(await served.request('/v1/coordinate/nodes?index=x')).toMatchObject({ status: 400, text: 'Invalid index' });
    expect(await served.request('/v1/coordinate/nodes?wait=forever')).toMatchObject({ status: 400, text: 'Invalid wait time' });
  });
});

describe('/v1/coordinate/node/:node', () => {
  test("one node's coordinates, one per segment", async () => {
    expect(names((await served.request('/v1/coordinate/node/server-1')).json())).toEqual(['server-1/', 'server-1/alpha', 'server-1/beta']);
  });

  test('a node without a coordinate: 404, empty body', async () => {
    expect(await served.request('/v1/coordinate/node/nobody')).toMatchObject({ status: 404, text: '' });
  });
});

describe('/v1/coordinate/datacenters', () => {
  test("the routers' pools in Consul's DatacenterMap shape: one entry per pool and datacenter, no LAN segment", async () => {
    routers.configured = true;
    const response = await served.request('/v1/coordinate/datacenters');
    expect(response.status).toBe(200);
    const body = response.json() as { Datacenter: string; AreaID: string; Coordinates: { Node: string }[] }[];
    expect(body.map((m) => `${m.Datacenter}/${m.AreaID}/${m.Coordinates.map((c) => c.Node).join(',')}`)).toEqual([`dc1/${AREA}/router-1`, `dc2/${AREA}/router-1`, 'dc1/wan/router-1,router-2']);
    expect(body[1]).toEqual({ Datacenter: 'dc2', AreaID: AREA, Coordinates: [{ Node: 'router-1', Segment: '', Coord: { Vec: [7, 0, 0, 0, 0, 0, 0, 0], Error: 1.5, Adjustment: 0.001, Height: 0.0001 } }] });
  });

  test('no federation router configured: no pool, []; a router that fails: 500 with its text', async () => {
    routers.configured = false;
    expect((await served.request('/v1/coordinate/datacenters')).json()).toEqual([]);
    routers.configured = true;
    const answer = routers.datacenterCoordinates;
    routers.datacenterCoordinates = () => Promise.reject(new Error('No cluster leader'));
    try {
      expect(await served.request('/v1/coordinate/datacenters')).toMatchObject({ status: 500, text: 'No cluster leader' });
    } finally {
      routers.datacenterCoordinates = answer;
    }
  });
});
