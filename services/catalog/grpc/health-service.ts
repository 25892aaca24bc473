/**
 * gRPC adapter for consulate.catalog.v1.HealthService: Consul's `/v1/health` on
 * state/catalog-reads.ts, as the HTTP endpoints use it, and WatchServiceHealth on watches.ts.
 */
import { ServerWritableStream } from '@grpc/grpc-js';

import { HealthStatus } from '../../gen/consulate/catalog/v1/catalog';
import { HealthServiceServer, ServiceHealthEntry, WatchServiceHealthRequest, WatchServiceHealthResponse } from '../../gen/consulate/catalog/v1/health';
import { CHECKS_TABLES, HealthEntry, NODE_CHECKS_TABLES, SERVICE_HEALTH_TABLES, checksInState, nodeChecks, serviceHealth } from '../state/catalog-reads';
import { CatalogApiDeps, metaFilterOf } from './catalog-api';
import { checkMessage, nodeMessage, serviceMessage, statusText } from './proto-shapes';
import { queryRead } from './query';
import { invalidArgument, toServiceError, unary } from './status';

export function healthService(deps: CatalogApiDeps): HealthServiceServer {
  const { view, logger } = deps;
  /** Health.ServiceNodes as messages. */
  const serviceEntries = (request: { service: string; tags: string[]; nodeMeta: Record<string, string>; passingOnly: boolean }) => {
    if (request.service === '') throw invalidArgument('Missing service name');
    const meta = metaFilterOf(request.nodeMeta);
    return () => {
      const { value, index } = serviceHealth(view, request.service, request.tags, meta, request.passingOnly);
      return { value: value.map(entryMessage), index };
    };
  };

  return {
    serviceHealth: unary(logger, async (call) => {
      const read = await queryRead(deps, call, call.request.query, SERVICE_HEALTH_TABLES, serviceEntries(call.request));
      return { entries: read.value, meta: read.meta };
    }),

    nodeHealth: unary(logger, async (call) => {
      const { node, query } = call.request;
      if (node === '') throw invalidArgument('Missing node name');
      const read = await queryRead(deps, call, query, NODE_CHECKS_TABLES, () => {
        const { value, index } = nodeChecks(view, node);
        return { value: value.map(checkMessage), index };
      });
      return { checks: read.value, meta: read.meta };
    }),

    checksInState: unary(logger, async (call) => {
      const { state, nodeMeta, query } = call.request;
      // Unspecified is Consul's "any".
      const text = state === HealthStatus.HEALTH_STATUS_UNSPECIFIED ? 'any' : statusText(state);
      if (text === undefined || text === '') throw invalidArgument(`unknown check state ${state}: use HEALTH_STATUS_PASSING, HEALTH_STATUS_WARNING, HEALTH_STATUS_CRITICAL, or leave it unset for any`);
      const meta = metaFilterOf(nodeMeta);
      const read = await queryRead(deps, call, query, CHECKS_TABLES(meta), () => {
        const { value, index } = checksInState(view, text, meta);
        return { value: value.map(checkMessage), index };
      });
      return { checks: read.value, meta: read.meta };
    }),

    watchServiceHealth(call: ServerWritableStream<WatchServiceHealthRequest, WatchServiceHealthResponse>) {
      let compute: ReturnType<typeof serviceEntries>;
      try {
        compute = serviceEntries(call.request);
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      void deps.watches.serve(call, {
        query: call.request.query,
        tables: SERVICE_HEALTH_TABLES,
        compute,
        message: (entries, index) => ({ entries, index }),
        encode: (message) => WatchServiceHealthResponse.encode(message).finish(),
      });
    },
  };
}

function entryMessage(entry: HealthEntry): ServiceHealthEntry {
  return { node: nodeMessage(entry.node), service: serviceMessage(entry.service), checks: entry.checks.map(checkMessage) };
}
