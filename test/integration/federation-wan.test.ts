/**
 * WAN federation end to end, with two datacenters as real processes, driven through the CLI as an
 * operator would: `consulate join -wan` in dc1 through a router of dc2 (Consul's `consul join
 * -wan`, reference/consul-compat.md §2.6, §3.4), `consulate members -wan` lists every router of
 * both as `<node>.<dc>` (§1.3, §2.5), and with no area at all a `?dc=dc2` from dc1 is forwarded
 * over the WAN and `/v1/catalog/datacenters` lists both (§3.5, §3.8). Then reciprocal areas as
 * well: a datacenter in the WAN and in an area at the same time still answers (§3.5: "RPCs will
 * be forwarded as long as servers are available in either").
 *
 * Every role here runs with tracing off (OTEL_SDK_DISABLED=true), as the benchmarks run them: its
 * servers, clients, Calls streams and HTTP front then carry no span plumbing at all (TRACING_OFF,
 * services/lib/grpc-tracing.ts), and this suite is that path through real processes. Tracing on is
 * federation.test.ts's and tracing.test.ts's.
 */
import { credentials } from '@grpc/grpc-js';

import { OperatorServiceClient, Route } from '../../services/gen/consulate/router/v1/operator';
import { CliResult, FederatedDatacenter, consulate, createdAreaId, startDatacenter } from '../harness/federation';
import { eventually, logRecords, stopAll } from '../harness/processes';
import { makeRouterTls } from '../harness/tls';

jest.setTimeout(240_000);

let dc1: FederatedDatacenter;
let dc2: FederatedDatacenter;

beforeAll(async () => {
  const tls = makeRouterTls(['dc1', 'dc2']);
  const env = { OTEL_SDK_DISABLED: 'true' };
  [dc1, dc2] = await Promise.all([startDatacenter('dc1', tls, { env }), startDatacenter('dc2', tls, { env })]);
  for (const role of [dc1, dc2].flatMap((dc) => [dc.catalog, ...dc.routers, dc.consensus])) {
    expect(logRecords(role).find((record) => record.event === 'started')?.otlp).toBe('disabled (OTEL_SDK_DISABLED)');
  }
});

afterAll(async () => {
  await stopAll();
});

function ok(result: CliResult): string {
  if (result.code !== 0) throw new Error(`consulate exited ${result.code}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

async function http(dc: FederatedDatacenter, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const response = await fetch(`${dc.httpAddr}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: response.status, text: await response.text() };
}

/** The rows of `consulate members -wan` in `dc` once every one of `routers` is listed alive, else undefined. */
async function wanRowsWhenAlive(dc: FederatedDatacenter, routers: readonly FederatedDatacenter[]): Promise<string | undefined> {
  const result = await consulate(dc, ['members', '-wan']);
  if (result.code !== 0) return undefined;
  const rows = result.stdout.trim().split('\n').slice(1);
  const expected = routers.flatMap((each) => each.routers.map((router, i) => `router-${i + 1}.${each.name}  ${router.address}:8300  alive`));
  return rows.length === expected.length && expected.every((start) => rows.some((row) => row.startsWith(start))) ? result.stdout : undefined;
}

interface DatacenterMapJson {
  Datacenter: string;
  AreaID: string;
  Coordinates: { Node: string; Segment: string; Coord: { Vec: number[]; Error: number; Adjustment: number; Height: number } }[];
}

/** `/v1/coordinate/datacenters` of `dc` for one pool, once both datacenters' two routers have a coordinate in it, else undefined. */
async function poolCoordinates(dc: FederatedDatacenter, areaId: string): Promise<DatacenterMapJson[] | undefined> {
  const answer = await http(dc, 'GET', '/v1/coordinate/datacenters');
  if (answer.status !== 200) return undefined;
  const maps = (JSON.parse(answer.text) as DatacenterMapJson[]).filter((m) => m.AreaID === areaId);
  return maps.length === 2 && maps.every((m) => m.Coordinates.length === 2) ? maps : undefined;
}

/** The route a router of `dc` has to `datacenter`, from its OperatorService. */
async function routeFrom(dc: FederatedDatacenter, datacenter: string): Promise<Route | undefined> {
  const client = new OperatorServiceClient(`${dc.routers[0].address}:8330`, credentials.createInsecure());
  try {
    const answer = await new Promise<{ routes: Route[] }>((resolve, reject) => client.datacenters({}, (err, response) => (err ? reject(err) : resolve(response))));
    return answer.routes.find((route) => route.datacenter === datacenter);
  } finally {
    client.close();
  }
}

describe('the WAN pool, run by the federation routers', () => {
  test('join -wan, members -wan with every router alive, and ?dc= forwarded over the WAN with no area', async () => {
    // Each datacenter's routers find each other in the WAN pool by flood join; dc2 is not known yet.
    await eventually('dc1 to list its own two routers in the WAN pool', () => wanRowsWhenAlive(dc1, [dc1]), 60_000);
    expect(await http(dc1, 'GET', '/v1/catalog/service/x?dc=dc2')).toEqual({ status: 500, text: 'No path to datacenter' });

    expect(ok(await consulate(dc1, ['join', '-wan', dc2.routers[0].address]))).toBe('Successfully joined cluster by contacting 1 nodes.\n');

    const table = await eventually('dc1 to list all four routers alive in the WAN pool', () => wanRowsWhenAlive(dc1, [dc1, dc2]), 90_000);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Node\s+Address\s+Status\s+Type\s+Build\s+Protocol\s+DC\s+Partition\s+Segment$/);
    for (const dc of [dc1, dc2]) {
      for (const [i, router] of dc.routers.entries()) {
        const row = lines.find((line) => line.startsWith(`router-${i + 1}.${dc.name} `));
        expect(row?.split(/\s+/)).toEqual([`router-${i + 1}.${dc.name}`, `${router.address}:8300`, 'alive', 'server', expect.stringMatching(/^\d+\.\d+\.\d+/), '2', dc.name, 'default', '<all>']);
      }
    }
    // Rows sorted by name, as Consul sorts servers of one partition and segment.
    expect(lines.slice(1).map((line) => line.split(/\s+/)[0])).toEqual(['router-1.dc1', 'router-1.dc2', 'router-2.dc1', 'router-2.dc2']);
    // dc2 sees the same pool.
    await eventually('dc2 to list all four routers alive in the WAN pool', () => wanRowsWhenAlive(dc2, [dc1, dc2]), 60_000);

    // /v1/coordinate/datacenters: the WAN pool's coordinates by datacenter, names without `.<dc>` (§3.8).
    const wan = await eventually('dc1 to list the WAN coordinates of both datacenters', () => poolCoordinates(dc1, 'wan'), 60_000);
    expect(wan.map((m) => `${m.Datacenter}:${m.Coordinates.map((c) => c.Node).join(',')}`)).toEqual(['dc1:router-1,router-2', 'dc2:router-1,router-2']);
    expect(wan[1].Coordinates[0]).toMatchObject({ Node: 'router-1', Segment: '', Coord: { Vec: expect.any(Array), Error: expect.any(Number), Height: expect.any(Number) } });
    expect(wan[1].Coordinates[0].Coord.Vec).toHaveLength(8);

    // The HTTP answer is Consul's /v1/agent/members shape.
    const members = JSON.parse((await http(dc1, 'GET', '/v1/agent/members?wan=1')).text) as { Name: string; Port: number; Status: number; Tags: Record<string, string> }[];
    expect(members.find((m) => m.Name === 'router-1.dc2')).toMatchObject({ Port: 8300, Status: 1, Tags: { role: 'consul', dc: 'dc2', port: '8300', vsn: '2' } });
    expect(await http(dc1, 'GET', '/v1/agent/members?wan=1&segment=alpha')).toEqual({ status: 400, text: 'Cannot provide a segment with wan=true' });

    // No area exists: a service of dc2, asked for from dc1, comes over the WAN.
    expect((await http(dc2, 'PUT', '/v1/catalog/register', { Node: 'x-dc2', Address: '10.0.2.7', Service: { Service: 'x', Port: 80 } })).status).toBe(200);
    expect(JSON.parse((await http(dc1, 'GET', '/v1/operator/area')).text)).toEqual([]);
    const remote = await eventually(
      'dc1 to reach dc2 over the WAN',
      async () => {
        const answer = await http(dc1, 'GET', '/v1/catalog/service/x?dc=dc2');
        return answer.status === 200 ? answer.text : undefined;
      },
      60_000,
    );
    expect(JSON.parse(remote)).toMatchObject([{ Node: 'x-dc2', Datacenter: 'dc2', ServiceName: 'x' }]);
    expect(JSON.parse((await http(dc1, 'GET', '/v1/catalog/datacenters')).text)).toEqual(['dc1', 'dc2']);
    expect((await routeFrom(dc1, 'dc2'))?.areaId).toBe('wan');
    // And the other way.
    // And the other way, once dc2's router has its route (route tables are recomputed every second).
    await eventually('dc2 reaches dc1', async () => ((await http(dc2, 'GET', '/v1/catalog/nodes?dc=dc1')).status === 200 ? true : undefined), 10_000);
  });

  test('reciprocal areas too: WAN and an area at the same time, requests still answered (§3.5)', async () => {
    // A RetryJoin address that cannot be one is refused at create, and nothing is created.
    expect(await http(dc1, 'POST', '/v1/operator/area', { PeerDatacenter: 'dc2', RetryJoin: ['router 2.dc2'] })).toEqual({ status: 400, text: 'Invalid RetryJoin address "router 2.dc2": "router 2.dc2" is not an IP address or a host name' });
    expect(JSON.parse((await http(dc1, 'GET', '/v1/operator/area')).text)).toEqual([]);
    const areaId = createdAreaId(await consulate(dc1, ['operator', 'area', 'create', '-peer-datacenter=dc2']));
    createdAreaId(await consulate(dc2, ['operator', 'area', 'create', '-peer-datacenter=dc1']));
    // A join reports an address that cannot be one against its row, and joins the others.
    const joined = JSON.parse((await http(dc1, 'PUT', `/v1/operator/area/${areaId}/join`, ['::1', dc2.routers[1].address])).text) as { Address: string; Joined: boolean; Error: string }[];
    expect(joined).toEqual([
      { Address: '::1', Joined: false, Error: 'invalid address: an IPv6 address goes in brackets: "[::1]" or "[::1]:8300"' },
      { Address: dc2.routers[1].address, Joined: true, Error: '' },
    ]);
    ok(await consulate(dc1, ['operator', 'area', 'join', '-peer-datacenter=dc2', dc2.routers[1].address]));
    await eventually(
      'dc1 to see four alive routers in the area',
      async () => {
        const result = await consulate(dc1, ['operator', 'area', 'members', '-peer-datacenter=dc2']);
        const rows = result.code === 0 ? result.stdout.trim().split('\n').slice(1) : [];
        return (rows.length === 4 && rows.every((row) => / alive /.test(row))) || undefined;
      },
      90_000,
    );

    // Both ways of reaching dc2 at once: every request is answered, the list has each datacenter once.
    for (let i = 0; i < 10; i++) {
      const answer = await http(dc1, 'GET', '/v1/catalog/service/x?dc=dc2');
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.text)).toMatchObject([{ Node: 'x-dc2', Datacenter: 'dc2' }]);
    }
    expect((await http(dc1, 'PUT', '/v1/kv/through-both?dc=dc2', 'hello')).text).toBe('true');
    expect(JSON.parse((await http(dc2, 'GET', '/v1/kv/through-both')).text)[0].Value).toBe(Buffer.from('"hello"').toString('base64'));
    expect(JSON.parse((await http(dc1, 'GET', '/v1/catalog/datacenters')).text)).toEqual(['dc1', 'dc2']);
    // Nearest first: the local datacenter heads its own list (§3.8).
    expect(JSON.parse((await http(dc2, 'GET', '/v1/catalog/datacenters')).text)).toEqual(['dc2', 'dc1']);
    expect((await routeFrom(dc1, 'dc2'))?.reachable).toBe(true);
    // The WAN pool is untouched by the areas.
    expect(await wanRowsWhenAlive(dc1, [dc1, dc2])).toBeDefined();
    // The area's pool has its own coordinates, listed beside the WAN's under the area's ID.
    const inArea = await eventually('dc1 to list the area coordinates of both datacenters', () => poolCoordinates(dc1, areaId), 60_000);
    expect(inArea.map((m) => `${m.Datacenter}:${m.Coordinates.map((c) => c.Node).join(',')}`)).toEqual(['dc1:router-1,router-2', 'dc2:router-1,router-2']);
    expect(await poolCoordinates(dc1, 'wan')).toBeDefined();
  });
});
