/** gRPC adapter for consulate.consensus.v1.ClusterService. */
import { ClusterServiceServer } from '../gen/consulate/consensus/v1/cluster';
import { RoleContext } from '../lib/role-process';

export function clusterService(context: Pick<RoleContext<never>, 'roleInfo'>): ClusterServiceServer {
  return {
    status(_call, callback) {
      callback(null, { info: context.roleInfo() });
    },
  };
}
