/** gRPC adapter for consulate.catalog.v1.CatalogService. */
import { CatalogServiceServer } from '../gen/consulate/catalog/v1/catalog';
import { ConsensusClient, statusWithConsensus } from '../lib/consensus-client';
import { RoleContext } from '../lib/role-process';

export function catalogService(context: Pick<RoleContext<never>, 'roleInfo'>, consensus: Pick<ConsensusClient, 'probe'>): CatalogServiceServer {
  return {
    status: statusWithConsensus(context.roleInfo, consensus),
  };
}
