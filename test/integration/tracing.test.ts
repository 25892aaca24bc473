/**
 * One trace across role processes: a call into the catalog's Status makes the catalog ask a
 * consensus server for its status; the OTLP receiver must get the catalog's SERVER span, its
 * CLIENT span to consensus and consensus's SERVER span, in one trace, parented in that order,
 * each under its role's service.name. And a read of another datacenter: one trace through both
 * datacenters' catalogs and routers. Real processes, real OTLP/HTTP export, no auto-instrumentation.
 */
jest.setTimeout(120_000);
import { Metadata, credentials } from '@grpc/grpc-js';

import { CatalogServiceClient } from '../../services/gen/consulate/catalog/v1/catalog';
import { OTLP_KIND, OtlpReceiver, ReceivedSpan } from '../harness/otlp-receiver';
import { FederatedDatacenter, startDatacenter } from '../harness/federation';
import { eventually, startRole, stopAll } from '../harness/processes';
import { makeRouterTls } from '../harness/tls';

const receiver = new OtlpReceiver();
let endpoint: string;

beforeAll(async () => {
  endpoint = await receiver.start();
});

afterAll(async () => {
  await stopAll();
  await receiver.stop();
});

test('catalog → consensus is one trace with client and server spans under each service.name', async () => {
  const env = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '100' };
  const consensus = await startRole({ role: 'consensus', datacenter: 'dc3', node: 'server-1', env });
  const catalog = await startRole({ role: 'catalog', datacenter: 'dc3', node: 'catalog', env, args: [`-consensus-addr=${consensus.grpc}`] });

  // The test is the caller: its traceparent must become the root of the catalog's spans.
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const callerSpanId = '00f067aa0ba902b7';
  const metadata = new Metadata();
  metadata.set('traceparent', `00-${traceId}-${callerSpanId}-01`);
  const client = new CatalogServiceClient(catalog.grpc, credentials.createInsecure());
  await new Promise((resolve, reject) => client.status({}, metadata, (err, res) => (err ? reject(err) : resolve(res))));
  client.close();

  const inTrace = (predicate: (span: ReceivedSpan) => boolean) => receiver.spans.find((span) => span.traceId === traceId && predicate(span));
  const catalogServer = await eventually('the catalog SERVER span', () =>
    inTrace((span) => span.serviceName === 'consulate-catalog' && span.kind === OTLP_KIND.SERVER && span.name === 'consulate.catalog.v1.CatalogService/Status'),
  );
  const catalogClient = await eventually('the catalog CLIENT span', () =>
    inTrace((span) => span.serviceName === 'consulate-catalog' && span.kind === OTLP_KIND.CLIENT && span.name === 'consulate.consensus.v1.ClusterService/Status'),
  );
  const consensusServer = await eventually('the consensus SERVER span', () =>
    inTrace((span) => span.serviceName === 'consulate-consensus' && span.kind === OTLP_KIND.SERVER && span.name === 'consulate.consensus.v1.ClusterService/Status'),
  );

  expect(catalogServer.parentSpanId).toBe(callerSpanId);
  expect(catalogClient.parentSpanId).toBe(catalogServer.spanId);
  expect(consensusServer.parentSpanId).toBe(catalogClient.spanId);
  expect(catalogServer.resource).toMatchObject({ 'service.name': 'consulate-catalog', datacenter: 'dc3', 'service.instance.id': 'dc3/catalog' });
  expect(consensusServer.resource).toMatchObject({ 'service.name': 'consulate-consensus', datacenter: 'dc3' });
  expect(catalogClient.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'consulate.consensus.v1.ClusterService', 'rpc.method': 'Status', 'server.address': consensus.grpc });
  expect(consensusServer.attributes).toMatchObject({ 'rpc.grpc.status_code': 0 });

  // Health probes are not traced: only our services make spans.
  expect(receiver.spans.filter((span) => span.name.startsWith('grpc.health'))).toEqual([]);
});

test('a read of another datacenter is one trace: catalog (dc1) → router (dc1) → router (dc2) → catalog (dc2) → consensus (dc2)', async () => {
  const env = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '100' };
  const tls = makeRouterTls(['dc1', 'dc2']);
  const [dc1, dc2] = await Promise.all([startDatacenter('dc1', tls, { routers: 1, env }), startDatacenter('dc2', tls, { routers: 1, env })]);
  const post = async (dc: FederatedDatacenter, path: string, body: unknown) => (await fetch(`${dc.httpAddr}${path}`, { method: path.endsWith('/join') ? 'PUT' : 'POST', body: JSON.stringify(body) })).json() as Promise<{ ID: string }>;
  const area = await post(dc1, '/v1/operator/area', { PeerDatacenter: 'dc2' });
  await post(dc2, '/v1/operator/area', { PeerDatacenter: 'dc1' });
  await post(dc1, `/v1/operator/area/${area.ID}/join`, [dc2.routers[0].address]);
  await eventually('dc1 to reach dc2', async () => (await fetch(`${dc1.httpAddr}/v1/catalog/nodes?dc=dc2`)).status === 200 || undefined, 30_000);

  const traceId = '0af7651916cd43dd8448eb211c80319c';
  const callerSpanId = 'b7ad6b7169203331';
  const answer = await fetch(`${dc1.httpAddr}/v1/catalog/service/web?dc=dc2`, { headers: { traceparent: `00-${traceId}-${callerSpanId}-01` } });
  expect(answer.status).toBe(200);

  const span = (service: string, datacenter: string, kind: number, name: (n: string) => boolean) =>
    eventually(`the ${service} ${kind === OTLP_KIND.SERVER ? 'SERVER' : 'CLIENT'} span in ${datacenter}`, () =>
      receiver.spans.find((s) => s.traceId === traceId && s.serviceName === service && s.resource.datacenter === datacenter && s.kind === kind && name(s.name)),
    );
  const catalog1 = await span('consulate-catalog', 'dc1', OTLP_KIND.SERVER, (n) => n === 'HTTP GET /v1/catalog/service/:service');
  const router1 = await span('consulate-federation-router', 'dc1', OTLP_KIND.SERVER, (n) => n === 'consulate.router.v1.ForwardService/Forward');
  const router2 = await span('consulate-federation-router', 'dc2', OTLP_KIND.SERVER, (n) => n === 'consulate.router.v1.FederationService/Forward');
  const catalog2 = await span('consulate-catalog', 'dc2', OTLP_KIND.SERVER, (n) => n === 'HTTP GET /v1/catalog/service/:service');
  const consensus2 = await span('consulate-consensus', 'dc2', OTLP_KIND.SERVER, () => true);
  const byId = new Map(receiver.spans.filter((s) => s.traceId === traceId).map((s) => [s.spanId, s]));
  /** Walks up from `child` to see whether `ancestor` is above it. */
  const under = (child: ReceivedSpan, ancestor: ReceivedSpan) => {
    for (let s: ReceivedSpan | undefined = child; s !== undefined; s = byId.get(s.parentSpanId)) if (s.parentSpanId === ancestor.spanId) return true;
    return false;
  };
  expect(catalog1.parentSpanId).toBe(callerSpanId);
  expect(under(router1, catalog1)).toBe(true);
  expect(under(router2, router1)).toBe(true);
  expect(under(catalog2, router2)).toBe(true);
  expect(under(consensus2, catalog2)).toBe(true);
  // Gossip between routers makes no spans.
  expect(receiver.spans.filter((s) => /FederationService\/(Packet|PushPull)/.test(s.name))).toEqual([]);
});
