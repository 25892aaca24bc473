/**
 * The federation-router role: network areas, the WAN pool, the route table and cross-datacenter
 * forwarding, over mutual TLS on 8300. Areas, pools and forwarding arrive with the
 * federation-router issue; today the process serves its status on the in-datacenter Operator API
 * port (8330), asking the consensus servers that will hold its areas for theirs. It does not open
 * 8300 yet: that port will only ever speak mutual TLS, and there is nothing to serve on it today.
 */
import { OperatorServiceService, protobufFileName } from '../gen/consulate/router/v1/operator';
import { checks, field } from '../lib/config';
import { ConsensusClient, consensusAddrsField } from '../lib/consensus-client';
import { RoleGrpcServer } from '../lib/grpc-server';
import { RoleDefinition } from '../lib/role-process';
import { operatorService } from './operator-service';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the in-datacenter Operator and Forward API.', default: 8330, check: checks.port }),
  consensusAddrs: consensusAddrsField(),
};

export const federationRouterRole: RoleDefinition<typeof fields> = {
  role: 'federation-router',
  synopsis: 'Runs a federation router: network areas and forwarding between datacenters over mutual TLS on 8300.',
  fields,
  async start(context) {
    const consensus = new ConsensusClient(context.config.consensusAddrs, context.tracer);
    const server = new RoleGrpcServer({
      logger: context.logger,
      tracer: context.tracer,
      services: [{ definition: OperatorServiceService, implementation: operatorService(context, consensus), protoFile: protobufFileName }],
    });
    const grpc = await server.listen(context.config.bind, context.config.grpcPort);
    server.setServing(true);
    return {
      listeners: { grpc },
      async stop() {
        await server.shutdown();
        consensus.close();
      },
    };
  },
};
