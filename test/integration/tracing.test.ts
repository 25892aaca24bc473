/**
 * One trace across role processes: a call into the catalog's Status makes the catalog ask a
 * consensus server for its status; the OTLP receiver must get the catalog's SERVER span, its
 * CLIENT span to consensus and consensus's SERVER span, in one trace, parented in that order,
 * each under its role's service.name. Real processes, real OTLP/HTTP export, no auto-instrumentation.
 */
import { Metadata, credentials } from '@grpc/grpc-js';

import { CatalogServiceClient } from '../../services/gen/consulate/catalog/v1/catalog';
import { OTLP_KIND, OtlpReceiver, ReceivedSpan } from '../harness/otlp-receiver';
import { eventually, startRole, stopAll } from '../harness/processes';

const receiver = new OtlpReceiver();

afterAll(async () => {
  await stopAll();
  await receiver.stop();
});

test('catalog → consensus is one trace with client and server spans under each service.name', async () => {
  const endpoint = await receiver.start();
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
