/**
 * Every HTTP route of the catalog, in one place: each endpoint family registers its own routes
 * (one file per family, reference/consul-compat.md §4), all sharing one CatalogDeps.
 */
import { Logger } from '../../lib/log';
import { ConsensusClient } from '../../lib/consensus-client';
import { CatalogView } from '../state/view';
import { ViewSync } from '../state/view-sync';
import { HttpRouter } from './http-server';

export interface CatalogDeps {
  readonly datacenter: string;
  /** This catalog's node name (what `/v1/agent/self` and `near=_agent` mean). */
  readonly node: string;
  readonly view: CatalogView;
  readonly sync: ViewSync;
  readonly consensus: ConsensusClient;
  readonly logger: Logger;
}

export function catalogRouter(deps: CatalogDeps): HttpRouter {
  const router = new HttpRouter();
  // Until areas exist (the federation-router issue) the only datacenter known is our own
  // (Consul's Catalog.ListDatacenters with no WAN and no areas).
  router.on(['GET'], '/v1/catalog/datacenters', async () => ({ body: [deps.datacenter] }));
  return router;
}
