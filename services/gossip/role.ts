/**
 * The gossip role: the agent on every node. SWIM membership, network segments and Vivaldi
 * coordinates arrive with the gossip issue; today the process serves its status and health on
 * the Membership API port.
 */
import { MembershipServiceService, protobufFileName } from '../gen/consulate/gossip/v1/membership';
import { checks, field } from '../lib/config';
import { RoleGrpcServer } from '../lib/grpc-server';
import { RoleDefinition } from '../lib/role-process';
import { membershipService } from './membership-service';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the gRPC Membership API.', default: 8320, check: checks.port }),
  server: field.bool({ key: 'server', flag: 'server', usage: "Run as a server node (in every segment's pool).", default: false }),
};

export const gossipRole: RoleDefinition<typeof fields> = {
  role: 'gossip',
  synopsis: 'Runs a gossip agent: membership and failure detection for this node (SWIM with Lifeguard).',
  fields,
  async start(context) {
    const server = new RoleGrpcServer({
      logger: context.logger,
      tracer: context.tracer,
      services: [{ definition: MembershipServiceService, implementation: membershipService(context, context.config.server), protoFile: protobufFileName }],
    });
    const grpc = await server.listen(context.config.bind, context.config.grpcPort);
    server.setServing(true);
    return { listeners: { grpc }, stop: () => server.shutdown() };
  },
};
