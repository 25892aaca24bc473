/** gRPC adapter for consulate.router.v1.OperatorService. */
import { OperatorServiceServer } from '../gen/consulate/router/v1/operator';
import { ConsensusClient, statusWithConsensus } from '../lib/consensus-client';
import { RoleContext } from '../lib/role-process';

export function operatorService(context: Pick<RoleContext<never>, 'roleInfo'>, consensus: Pick<ConsensusClient, 'probe'>): OperatorServiceServer {
  return {
    status: statusWithConsensus(context.roleInfo, consensus),
  };
}
