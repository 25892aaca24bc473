/**
 * The consensus role: one of a datacenter's 3 or 5 servers holding its replicated state. Raft and
 * the revisioned KV store arrive with the consensus issue; today the process serves its status
 * and health on the gRPC port so the other roles and the supervisor can find it.
 */
import { ClusterServiceService, protobufFileName } from '../gen/consulate/consensus/v1/cluster';
import { checks, field } from '../lib/config';
import { RoleGrpcServer } from '../lib/grpc-server';
import { RoleDefinition } from '../lib/role-process';
import { clusterService } from './cluster-service';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the gRPC API: Raft peers, KV, Watch, Lease and Cluster.', default: 8310, check: checks.port }),
};

export const consensusRole: RoleDefinition<typeof fields> = {
  role: 'consensus',
  synopsis: "Runs a consensus server: the datacenter's replicated state (Raft and a revisioned KV store).",
  fields,
  async start(context) {
    const server = new RoleGrpcServer({
      logger: context.logger,
      tracer: context.tracer,
      services: [{ definition: ClusterServiceService, implementation: clusterService(context), protoFile: protobufFileName }],
    });
    const grpc = await server.listen(context.config.bind, context.config.grpcPort);
    server.setServing(true);
    return { listeners: { grpc }, stop: () => server.shutdown() };
  },
};
