/**
 * A dc1 catalog as role.ts assembles it for federation, in-process: the whole route table
 * (catalogRouter) behind the real HTTP server with `?dc=` forwarding, a RouterClient to the
 * given router addresses (fake-router.ts, or none), the KV and catalog state on a fake consensus
 * store. Its warnings are kept, to check the log line of each failed forward.
 *
 *   const router = await startFakeRouter('dc1');
 *   const catalog = await serveFederatedCatalog([router.address]);
 *   await fetch(`${catalog.base}/v1/catalog/services?dc=dc2`);      // → router.forwarded
 *   await catalog.close();
 */
import { Tracer, trace } from '@opentelemetry/api';

import { createLogger } from '../../lib/log';
import { GossipClient } from '../gossip-client';
import { CatalogHttpServer } from '../http/http-server';
import { DatacenterForwarding } from '../http/remote-datacenter';
import { CatalogDeps, catalogRouter } from '../http/routes';
import { RouterClient } from '../router-client';
import { LeasedFakeConsensus, kvTestDeps } from './kv-fake';

/** A warning or error line the catalog logged. */
export interface LogLine {
  readonly msg: string;
  readonly datacenter?: string;
  readonly path?: string;
}

export interface FederatedCatalog {
  readonly base: string;
  readonly consensus: LeasedFakeConsensus;
  readonly logs: LogLine[];
  close(): Promise<void>;
}

export interface FederatedCatalogOptions {
  readonly tracer?: Tracer;
  /** DatacenterForwarding's limit of forwards in flight. */
  readonly maxForwardsInFlight?: number;
}

export async function serveFederatedCatalog(routerAddresses: readonly string[], options: FederatedCatalogOptions = {}): Promise<FederatedCatalog> {
  const tracer = options.tracer ?? trace.getTracer('test');
  const logs: LogLine[] = [];
  const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'warn', destination: { write: (line: string) => void logs.push(JSON.parse(line)) } });
  const consensus = new LeasedFakeConsensus();
  const routers = new RouterClient(routerAddresses, tracer);
  const gossip = new GossipClient([], tracer);
  // The KV deps carry a view, a sync and a consensus fake: enough for every family these tests reach.
  const deps = { ...kvTestDeps(consensus), nodeId: '', address: '127.0.0.1', gossip, routers, logger } as unknown as CatalogDeps;
  const server = new CatalogHttpServer({ router: catalogRouter(deps), logger, tracer, remote: new DatacenterForwarding({ datacenter: 'dc1', routers, logger, maxInFlight: options.maxForwardsInFlight }) });
  const base = `http://${await server.listen('127.0.0.1', 0)}`;
  return {
    base,
    consensus,
    logs,
    async close() {
      await server.close();
      routers.close();
      gossip.close();
    },
  };
}
