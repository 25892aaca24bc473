/** gRPC adapter for consulate.consensus.v1.ClusterService. */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { ClusterServiceServer, RaftRole } from '../gen/consulate/consensus/v1/cluster';
import { RoleContext } from '../lib/role-process';

// TODO(consensus issue): answered from the Raft node once it runs in this process.
const notYet = (_call: unknown, callback: (err: ServiceError) => void) =>
  callback({ code: GrpcStatus.UNIMPLEMENTED, details: 'membership changes arrive with the Raft node', name: 'UNIMPLEMENTED', message: '', metadata: undefined as never });

export function clusterService(context: Pick<RoleContext<never>, 'roleInfo'>): ClusterServiceServer {
  return {
    status(_call, callback) {
      callback(null, { info: context.roleInfo(), role: RaftRole.RAFT_ROLE_UNSPECIFIED, term: 0n, leader: '', leaderAddress: '', commitIndex: 0n, appliedIndex: 0n, revision: 0n, members: [] });
    },
    memberList: notYet,
    memberAdd: notYet,
    memberRemove: notYet,
    transferLeadership: notYet,
  };
}
