/**
 * Every HTTP route of the catalog, in one place: each endpoint family registers its own routes
 * (one file per family, reference/consul-compat.md §3-4), all sharing one CatalogDeps. `?dc=` of
 * another datacenter is not a route's business: the server forwards it (remote-datacenter.ts).
 */
import { Logger } from '../../lib/log';
import { ConsensusClient } from '../../lib/consensus-client';
import { RoleMetrics } from '../../lib/metrics';
import { GossipClient } from '../gossip-client';
import { RouterClient } from '../router-client';
import { LockDelays } from '../state/lock-delay';
import { CatalogView } from '../state/view';
import { ViewSync } from '../state/view-sync';
import { UserEvents } from '../user-events';
import { registerAgentEndpoints } from './agent-endpoint';
import { registerAreaEndpoints } from './area-endpoint';
import { BlockingQueries } from './blocking';
import { registerCatalogEndpoints, registerDatacentersEndpoint } from './catalog-endpoint';
import { registerCoordinateEndpoints } from './coordinate-endpoint';
import { registerEventEndpoints } from './event-endpoint';
import { registerHealthEndpoints } from './health-endpoint';
import { HttpRouter } from './http-server';
import { registerKvEndpoints } from './kv-endpoint';
import { registerOperatorEndpoints } from './operator-endpoint';
import { registerSessionEndpoints } from './session-endpoint';
import { registerStatusEndpoints } from './status-endpoint';
import { registerTxnEndpoints } from './txn-endpoint';

export interface CatalogDeps {
  readonly datacenter: string;
  /** This catalog's node name (what `/v1/agent/self` and `near=_agent` mean). */
  readonly node: string;
  /** This catalog's node ID (a UUID kept in its data directory) and the address it binds to. */
  readonly nodeId: string;
  readonly address: string;
  readonly view: CatalogView;
  readonly sync: ViewSync;
  readonly consensus: ConsensusClient;
  /** The datacenter's server gossip agents (`-gossip-addr`). */
  readonly gossip: GossipClient;
  /** The datacenter's federation routers (`-router-addr`): areas and the datacenters list. */
  readonly routers: RouterClient;
  /** The user events this catalog fires and keeps (`/v1/event/...`). */
  readonly events: UserEvents;
  /** Keys under a lock-delay after their session ended (this catalog's, in memory, as Consul's leader keeps them). */
  readonly lockDelays: LockDelays;
  readonly logger: Logger;
  /** Counts HTTP blocking queries in progress, for the metrics; none counted without it (endpoint tests). */
  readonly blockingQueries?: BlockingQueries;
  /** The catalog's Prometheus registry, for `/v1/agent/metrics?format=prometheus`. */
  readonly metrics?: Pick<RoleMetrics, 'text'>;
}

export function catalogRouter(deps: CatalogDeps): HttpRouter {
  const router = new HttpRouter();
  registerDatacentersEndpoint(router, deps);
  registerCatalogEndpoints(router, deps);
  registerHealthEndpoints(router, deps);
  registerAgentEndpoints(router, deps);
  registerStatusEndpoints(router, deps);
  registerOperatorEndpoints(router, deps);
  registerAreaEndpoints(router, deps);
  registerCoordinateEndpoints(router, deps);
  registerEventEndpoints(router, deps);
  registerKvEndpoints(router, deps);
  registerSessionEndpoints(router, deps);
  registerTxnEndpoints(router, deps);
  return router;
}
