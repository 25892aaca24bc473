/**
 * The network-areas seed guide end to end, with three datacenters as real processes in a hub and
 * spoke (dc1–dc2 and dc2–dc3), driven through the CLI as an operator would: reciprocal areas, a
 * join, members with RTT, a catalog query for dc2 answered by dc2, over HTTP and over the gRPC API
 * (8502) with the generated stubs; a service of the same name in both keeps each datacenter's rows
 * apart. Then what Consul cannot do:
 * dc1 → dc3 has no path until dc2 allows transit on both of its areas. Then a remote router is
 * killed and requests fail over to that datacenter's other router.
 */
import { Metadata, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';

import { CatalogServiceClient } from '../../services/gen/consulate/catalog/v1/catalog';
import { GetRequest, KVServiceClient, PutRequest, WatchPrefixRequest, WatchPrefixResponse } from '../../services/gen/consulate/catalog/v1/kv';
import { Consistency, QueryOptions } from '../../services/gen/consulate/catalog/v1/query';
import { ForwardServiceClient, OperatorServiceClient, Route } from '../../services/gen/consulate/router/v1/operator';
import { callUnary } from '../../services/lib/grpc-client';
import { CliResult, FederatedDatacenter, consulate, createdAreaId, startDatacenter } from '../harness/federation';
import { eventually, logRecords, stopAll } from '../harness/processes';
import { makeRouterTls } from '../harness/tls';

jest.setTimeout(180_000);

let dc1: FederatedDatacenter;
let dc2: FederatedDatacenter;
let dc3: FederatedDatacenter;

beforeAll(async () => {
  const tls = makeRouterTls(['dc1', 'dc2', 'dc3']);
  [dc1, dc2, dc3] = await Promise.all([startDatacenter('dc1', tls), startDatacenter('dc2', tls), startDatacenter('dc3', tls)]);
});

afterAll(async () => {
  await stopAll();
});

function ok(result: CliResult): string {
  if (result.code !== 0) throw new Error(`consulate exited ${result.code}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

function routerAddress(dc: FederatedDatacenter, i: number): string {
  return dc.routers[i].address;
}

/** How a router reaches each datacenter (the Operator API's Datacenters). */
async function routesOf(address: string): Promise<Route[]> {
  const client = new OperatorServiceClient(`${address}:8330`, credentials.createInsecure());
  try {
    return await new Promise<Route[]>((resolve, reject) => client.datacenters({}, (err, answer) => (err ? reject(err) : resolve(answer.routes))));
  } finally {
    client.close();
  }
}

async function http(dc: FederatedDatacenter, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const response = await fetch(`${dc.httpAddr}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: response.status, text: await response.text() };
}

describe('network areas, as the seed guide walks them', () => {
  test('reciprocal areas, a join, members with RTT, and a query answered by the other datacenter', async () => {
    const created = createdAreaId(await consulate(dc1, ['operator', 'area', 'create', '-peer-datacenter=dc2']));
    createdAreaId(await consulate(dc2, ['operator', 'area', 'create', '-peer-datacenter=dc1']));
    expect(ok(await consulate(dc1, ['operator', 'area', 'list']))).toBe(`Area                                  PeerDC  RetryJoin\n${created}  dc2     (none)\n`);

    // Consul's rules: one area per peer datacenter, none with itself.
    const again = await consulate(dc1, ['operator', 'area', 'create', '-peer-datacenter=dc2']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('An area with peer datacenter "dc2" already exists');
    const self = await consulate(dc1, ['operator', 'area', 'create', '-peer-datacenter=dc1']);
    expect(self.code).toBe(1);
    expect(self.stderr).toContain('Cannot create an area with the local datacenter "dc1"');

    const joined = ok(await consulate(dc1, ['operator', 'area', 'join', '-peer-datacenter=dc2', routerAddress(dc2, 0)]));
    expect(joined).toBe(`Address${' '.repeat(routerAddress(dc2, 0).length - 5)}Joined  Error\n${routerAddress(dc2, 0)}  true    (none)\n`);

    // Both routers of both datacenters, alive, with an RTT once probes have run.
    const members = await eventually(
      'dc1 to see four alive routers with RTTs',
      async () => {
        const out = ok(await consulate(dc1, ['operator', 'area', 'members', '-peer-datacenter=dc2']));
        const rows = out.trim().split('\n').slice(1);
        return rows.length === 4 && rows.every((row) => / alive .* (0s|[\d.]+(µs|ms|s))$/.test(row)) ? out : undefined;
      },
      60_000,
    );
    expect(members.split('\n')[0]).toMatch(/^Area\s+Node\s+Address\s+Status\s+Build\s+Protocol\s+DC\s+RTT$/);
    for (const dc of [dc1, dc2]) for (const [i] of dc.routers.entries()) expect(members).toContain(`router-${i + 1}.${dc.name}  ${routerAddress(dc, i)}:8300  alive`);

    // A service registered in dc2, asked for from dc1.
    expect((await http(dc2, 'PUT', '/v1/catalog/register', { Node: 'web-dc2', Address: '10.0.2.5', Service: { Service: 'web', Port: 80 } })).status).toBe(200);
    expect(ok(await consulate(dc1, ['catalog', 'services', '-datacenter=dc2']))).toContain('web');
    const remote = await http(dc1, 'GET', '/v1/catalog/service/web?dc=dc2');
    expect(remote.status).toBe(200);
    expect(JSON.parse(remote.text)).toMatchObject([{ Node: 'web-dc2', Datacenter: 'dc2', ServiceName: 'web' }]);
    // A write travels too: a KV put in dc2 through dc1, read back in dc2.
    expect((await http(dc1, 'PUT', '/v1/kv/from-dc1?dc=dc2', 'hello')).text).toBe('true');
    expect(JSON.parse((await http(dc2, 'GET', '/v1/kv/from-dc1')).text)[0].Value).toBe(Buffer.from('"hello"').toString('base64'));
    expect(JSON.parse((await http(dc1, 'GET', '/v1/catalog/datacenters')).text)).toEqual(['dc1', 'dc2']);
  });

  test('a service of the same name in both datacenters: each answers with its own, and reads of the other leave the local rows untouched (S10)', async () => {
    // web-dc2 is registered in dc2 by the test before; dc1 gets a web of its own.
    expect((await http(dc1, 'PUT', '/v1/catalog/register', { Node: 'web-dc1', Address: '10.0.1.5', Service: { Service: 'web', Port: 8080 } })).status).toBe(200);
    const localBefore = await http(dc1, 'GET', '/v1/catalog/service/web');
    for (let i = 0; i < 5; i++) {
      const remote = JSON.parse((await http(dc1, 'GET', '/v1/catalog/service/web?dc=dc2')).text) as { Node: string; Datacenter: string; ServicePort: number }[];
      expect(remote.map((row) => [row.Node, row.Datacenter, row.ServicePort])).toEqual([['web-dc2', 'dc2', 80]]);
    }
    // The same rows, to their CreateIndex and ModifyIndex.
    const localAfter = await http(dc1, 'GET', '/v1/catalog/service/web');
    expect(localAfter.text).toBe(localBefore.text);
    expect((JSON.parse(localAfter.text) as { Node: string; Datacenter: string }[]).map((row) => [row.Node, row.Datacenter])).toEqual([['web-dc1', 'dc1']]);
    // And dc2's own catalog still has only its web.
    expect((JSON.parse((await http(dc2, 'GET', '/v1/catalog/service/web')).text) as { Node: string }[]).map((row) => row.Node)).toEqual(['web-dc2']);
    expect((await http(dc1, 'PUT', '/v1/catalog/deregister', { Node: 'web-dc1' })).status).toBe(200);
  });

  test("gRPC (8502): dc1's catalog forwards calls naming dc2 through the routers, answered by dc2", async () => {
    // The areas of the test before: dc1 and dc2 reach each other; web-dc2 is registered in dc2 only.
    const catalogApi = new CatalogServiceClient(dc1.catalog.grpc, credentials.createInsecure());
    const kv = new KVServiceClient(dc1.catalog.grpc, credentials.createInsecure());
    type Unary<Req, Res> = Parameters<typeof callUnary<Req, Res>>[0];
    const call = <Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs = 15_000) => callUnary(method, request, { timeoutMs, idempotent: false });
    const refusal = <Req, Res>(method: Unary<Req, Res>, request: Req) =>
      call(method, request).then(
        () => Promise.reject(new Error('the call succeeded; a refusal was expected')),
        (err: ServiceError) => err,
      );
    const query = (datacenter: string, more: Partial<QueryOptions> = {}): QueryOptions => ({ consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: undefined, datacenter, ...more });
    const get = (key: string, datacenter: string, more: Partial<QueryOptions> = {}, timeoutMs?: number) =>
      call(kv.get.bind(kv), { query: query(datacenter, more), key, recurse: false, keys: false, separator: '' } satisfies GetRequest, timeoutMs);
    const put = (key: string, value: string, datacenter: string) => call(kv.put.bind(kv), { key, value: Buffer.from(value), flags: 0n, condition: undefined, datacenter } satisfies PutRequest);
    try {
      // The datacenters the routers know, as /v1/catalog/datacenters lists them.
      expect((await call(catalogApi.listDatacenters.bind(catalogApi), {})).datacenters).toEqual(['dc1', 'dc2']);

      // A read: dc2's nodes, which dc1 does not have.
      const remote = await call(catalogApi.listNodes.bind(catalogApi), { query: query('dc2'), nodeMeta: {} });
      expect(remote.nodes.map((node) => [node.name, node.datacenter])).toContainEqual(['web-dc2', 'dc2']);
      const local = await call(catalogApi.listNodes.bind(catalogApi), { query: query(''), nodeMeta: {} });
      expect(local.nodes.map((node) => node.name)).not.toContain('web-dc2');

      // A write lands in dc2, not in dc1; read back through dc1 and in dc2 itself.
      const written = await put('grpc/from-dc1', 'over grpc', 'dc2');
      expect(written.succeeded).toBe(true);
      expect(JSON.parse((await http(dc2, 'GET', '/v1/kv/grpc/from-dc1')).text)[0].Value).toBe(Buffer.from('over grpc').toString('base64'));
      expect((await http(dc1, 'GET', '/v1/kv/grpc/from-dc1')).status).toBe(404);
      const [entry] = (await get('grpc/from-dc1', 'dc2')).entries;
      expect([Buffer.from(entry.value).toString(), entry.modifyIndex]).toEqual(['over grpc', written.index]);

      // dc2's NOT_FOUND comes back as dc2 gave it, its index in the trailer.
      const missing = await refusal(kv.get.bind(kv), { query: query('dc2'), key: 'grpc/nope', recurse: false, keys: false, separator: '' });
      expect({ code: missing.code, details: missing.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'key "grpc/nope" doesn\'t exist' });
      expect(Number(missing.metadata.get('consulate-index')[0])).toBeGreaterThanOrEqual(Number(written.index));

      // A blocking read through the routers waits in dc2 and wakes on dc2's write.
      const blocked = get('grpc/from-dc1', 'dc2', { minIndex: written.index }, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await http(dc2, 'PUT', '/v1/kv/grpc/from-dc1', 'changed in dc2')).text).toBe('true');
      const woken = await blocked;
      expect(Buffer.from(woken.entries[0].value).toString()).toBe('"changed in dc2"');
      expect(woken.meta!.index).toBeGreaterThan(written.index);

      // No route: the same error as HTTP's, as a status code.
      const unknown = await refusal(catalogApi.listNodes.bind(catalogApi), { query: query('dc9'), nodeMeta: {} });
      expect({ code: unknown.code, details: unknown.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });

      // A watch of dc2 through dc1's catalog: dc2's answer first, then dc2's writes as they land.
      const watchesOpen = async (dc: FederatedDatacenter): Promise<number> => {
        const text = await (await fetch(`http://${dc.catalog.address}:9502/metrics`)).text();
        return Number(/^consulate_catalog_watches_open (\d+)/m.exec(text)?.[1] ?? NaN);
      };
      const watch = kv.watchPrefix({ prefix: 'grpc/', query: query('dc2') });
      const seen: WatchPrefixResponse[] = [];
      let ended: ServiceError | undefined;
      watch.on('data', (message: WatchPrefixResponse) => seen.push(message));
      watch.on('error', (err: ServiceError) => (ended = err));
      await eventually("dc2's answer through the watch", async () => (seen.length >= 1 ? true : undefined), 15_000);
      expect(seen[0].entries.map((e) => [e.key, Buffer.from(e.value).toString()])).toEqual([['grpc/from-dc1', '"changed in dc2"']]);
      expect(await watchesOpen(dc2)).toBe(1);
      expect((await http(dc2, 'PUT', '/v1/kv/grpc/second', 'written in dc2')).text).toBe('true');
      await eventually("dc2's write through the watch", async () => (seen.length >= 2 ? true : undefined), 15_000);
      expect(seen[1].entries.map((e) => e.key)).toEqual(['grpc/from-dc1', 'grpc/second']);
      expect(seen[1].index).toBeGreaterThan(seen[0].index);
      // A client that goes away ends the watch in dc2 too: cancelled down the route.
      watch.cancel();
      await eventually('dc2 to close the watch', async () => ((await watchesOpen(dc2)) === 0 ? true : undefined), 15_000);
      expect(ended?.code).toBe(GrpcStatus.CANCELLED);

      // No route for a watch either: the same status as a call's.
      const nowhere = kv.watchPrefix({ prefix: 'grpc/', query: query('dc9') });
      const refused = await new Promise<ServiceError>((resolve) => (nowhere.on('data', () => undefined), nowhere.on('error', resolve)));
      expect({ code: refused.code, details: refused.details }).toEqual({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    } finally {
      catalogApi.close();
      kv.close();
    }
  });

  test('an HTTP client that goes away ends the blocking query it left waiting in the other datacenter', async () => {
    const waiting = async (dc: FederatedDatacenter): Promise<number> => {
      const text = await (await fetch(`http://${dc.catalog.address}:9502/metrics`)).text();
      return Number(/^consulate_catalog_blocking_queries_waiting (\d+)/m.exec(text)?.[1] ?? NaN);
    };
    expect((await http(dc1, 'PUT', '/v1/kv/http/parked?dc=dc2', 'v1')).text).toBe('true');
    const index = Number((await fetch(`${dc1.httpAddr}/v1/kv/http/parked?dc=dc2`)).headers.get('x-consul-index'));
    const client = new AbortController();
    const parked = fetch(`${dc1.httpAddr}/v1/kv/http/parked?dc=dc2&index=${index}&wait=120s`, { signal: client.signal }).then(() => 'answered', (err: Error) => err.name);
    await eventually('the forwarded query to wait in dc2', async () => ((await waiting(dc2)) === 1 ? true : undefined), 15_000);
    client.abort();
    expect(await parked).toBe('AbortError');
    // Cancelled down the route: dc1's catalog, its router, dc2's router, dc2's catalog. Before, it
    // waited out its 120 s.
    await eventually('dc2 to stop waiting', async () => ((await waiting(dc2)) === 0 ? true : undefined), 15_000);
  });

  test('dc1 → dc3 has no path until dc2 allows transit on both of its areas', async () => {
    createdAreaId(await consulate(dc2, ['operator', 'area', 'create', '-peer-datacenter=dc3']));
    // dc3 joins through RetryJoin, in the background, instead of an explicit join.
    createdAreaId(await consulate(dc3, ['operator', 'area', 'create', '-peer-datacenter=dc2', `-retry-join=${routerAddress(dc2, 1)}`]));
    expect((await http(dc3, 'PUT', '/v1/catalog/register', { Node: 'db-dc3', Address: '10.0.3.5', Service: { Service: 'db', Port: 5432 } })).status).toBe(200);
    await eventually('dc2 to reach dc3', async () => (await http(dc2, 'GET', '/v1/catalog/services?dc=dc3')).status === 200 || undefined, 60_000);

    const refused = await consulate(dc1, ['catalog', 'services', '-datacenter=dc3']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('No path to datacenter');
    expect(await http(dc1, 'GET', '/v1/catalog/services?dc=dc3')).toEqual({ status: 500, text: 'No path to datacenter' });

    // One transit area is not enough: traffic must be allowed in and out of dc2.
    ok(await consulate(dc2, ['operator', 'area', 'update', '-peer-datacenter=dc1', '-transit=true']));
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect((await http(dc1, 'GET', '/v1/catalog/services?dc=dc3')).status).toBe(500);
    ok(await consulate(dc2, ['operator', 'area', 'update', '-peer-datacenter=dc3', '-transit=true']));

    const services = await eventually('dc1 to reach dc3 through dc2', async () => {
      const answer = await http(dc1, 'GET', '/v1/catalog/services?dc=dc3');
      return answer.status === 200 ? answer.text : undefined;
    }, 60_000);
    expect(JSON.parse(services)).toHaveProperty('db');
    expect(ok(await consulate(dc1, ['catalog', 'nodes', '-datacenter=dc3']))).toContain('db-dc3');
    // The datacenter list includes dc3, and the router says how it is reached.
    // dc1 first; dc2 and dc3 by RTT, which depends on the estimates so far (a dc2 router without
    // one yet makes dc2's upper median unknown, and dc3 through the other router sorts ahead).
    const listed = JSON.parse((await http(dc1, 'GET', '/v1/catalog/datacenters')).text) as string[];
    expect(listed[0]).toBe('dc1');
    expect([...listed].sort()).toEqual(['dc1', 'dc2', 'dc3']);
    const routes = await routesOf(routerAddress(dc1, 0));
    expect(routes.find((route) => route.datacenter === 'dc3')?.path).toEqual(['dc2', 'dc3']);
    expect(routes.find((route) => route.datacenter === 'dc2')?.path).toEqual(['dc2']);
    // The operator sees it too: dc3 through dc2.
    const table = ok(await consulate(dc1, ['catalog', 'datacenters', '-routes'])).split('\n');
    expect(table[0]).toMatch(/^Datacenter\s+Path\s+Area\s+RTT\s+Reachable\s+Routers$/);
    expect(table.find((row) => row.startsWith('dc1 '))).toMatch(/^dc1\s+\(local\)\s+-\s+0s\s+true\s+-$/);
    expect(table.find((row) => row.startsWith('dc3 '))).toMatch(/^dc3\s+dc2 > dc3\s+[0-9a-f-]{36}\s+\S+\s+true\s+router-\d\.dc2/);

    // Transit off again: no path, as before.
    ok(await consulate(dc2, ['operator', 'area', 'update', '-peer-datacenter=dc3', '-transit=false']));
    await eventually('dc1 to lose its path to dc3', async () => (await http(dc1, 'GET', '/v1/catalog/services?dc=dc3')).text === 'No path to datacenter' || undefined, 60_000);
  });

  test("a remote router killed: requests fail over to that datacenter's other router", async () => {
    // Kill, without warning, the router of dc2 that dc1's router-1 tries first, then send requests
    // through dc1's router-1 (its Forward API, as dc1's catalog does) and through the catalog.
    for (let i = 0; i < 5; i++) expect((await http(dc1, 'GET', '/v1/catalog/service/web?dc=dc2')).status).toBe(200);
    const firstChoice = (await routesOf(routerAddress(dc1, 0))).find((route) => route.datacenter === 'dc2')?.nextHops[0];
    const victim = dc2.routers.find((_, i) => firstChoice === `router-${i + 1}.dc2`)!;
    victim.child.kill('SIGKILL');
    await victim.exited;

    const forwardClient = new ForwardServiceClient(`${routerAddress(dc1, 0)}:8330`, credentials.createInsecure());
    const forward = () =>
      new Promise<number>((resolve, reject) =>
        forwardClient.forward({ datacenter: 'dc2', request: { method: 'GET', path: '/v1/catalog/service/web', rawQuery: '', headers: {}, body: Buffer.alloc(0) } }, new Metadata(), { deadline: Date.now() + 10_000 }, (err, answer) =>
          err ? reject(err) : resolve(answer.response?.status ?? 0),
        ),
      );
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push(await forward(), (await http(dc1, 'GET', '/v1/catalog/service/web?dc=dc2')).status);
    forwardClient.close();
    expect(statuses).toEqual(Array(20).fill(200));
    const failovers = logRecords(dc1.routers[0]).filter((record) => String(record.msg).startsWith(`router ${firstChoice} of dc2 failed a forwarded request`));
    expect(failovers.length).toBeGreaterThan(0);
    // And the area shows it failed, once its peers' probes give up on it.
    await eventually(`dc1 to see ${firstChoice} failed`, async () => / failed /.test(ok(await consulate(dc1, ['operator', 'area', 'members', '-peer-datacenter=dc2'])).split('\n').find((row) => row.includes(firstChoice!)) ?? '') || undefined, 60_000);
  });

  test('a watch of dc2 through its last router: the router killed, the watch ends UNAVAILABLE saying to watch again', async () => {
    // After the test before, one router of dc2 is left: every watch of dc2 goes through it.
    const last = dc2.routers.find((router) => router.child.exitCode === null && router.child.signalCode === null)!;
    const watchClient = new ForwardServiceClient(`${routerAddress(dc1, 0)}:8330`, credentials.createInsecure());
    const message = Buffer.from(WatchPrefixRequest.encode({ prefix: 'failover/', query: { consistency: Consistency.CONSISTENCY_DEFAULT, minIndex: 0n, maxStale: undefined, datacenter: 'dc2' } }).finish());
    const stream = watchClient.forwardWatch({ forward: { datacenter: 'dc2', grpc: { method: '/consulate.catalog.v1.KVService/WatchPrefix', message, readOnly: true } } });
    let messages = 0;
    let ended: ServiceError | undefined;
    stream.on('data', () => messages++);
    stream.on('error', (err: ServiceError) => (ended = err));
    try {
      await eventually('the watch to start', async () => (messages > 0 ? true : undefined), 15_000);
      last.child.kill('SIGKILL');
      await last.exited;
      await eventually('the watch to end', async () => ended, 15_000);
      expect(ended!.code).toBe(GrpcStatus.UNAVAILABLE);
      expect(ended!.details).toMatch(/^the watch through router router-\d\.dc2 of dc2 broke \(.*\): watch again from the last index$/);
    } finally {
      stream.cancel();
      watchClient.close();
    }
  });
});
