/**
 * The catalog role: Consul's data model on the consensus store, the HTTP API on 8500 and the
 * public gRPC API on 8502. The data model, HTTP API and reconciler arrive with the catalog issue;
 * today the process serves its status on 8502, and that status asks every consensus server of
 * the datacenter for theirs, so the catalog → consensus path is real (and traced) from day one.
 */
import { CatalogServiceService, protobufFileName } from '../gen/consulate/catalog/v1/catalog';
import { checks, field } from '../lib/config';
import { ConsensusClient, consensusAddrsField } from '../lib/consensus-client';
import { RoleGrpcServer } from '../lib/grpc-server';
import { RoleDefinition } from '../lib/role-process';
import { catalogService } from './catalog-service';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the public gRPC API.', default: 8502, check: checks.port }),
  consensusAddrs: consensusAddrsField(),
};

export const catalogRole: RoleDefinition<typeof fields> = {
  role: 'catalog',
  synopsis: "Runs a catalog: Consul's HTTP API and the gRPC API over the datacenter's consensus store.",
  fields,
  async start(context) {
    const consensus = new ConsensusClient(context.config.consensusAddrs, context.tracer);
    const server = new RoleGrpcServer({
      logger: context.logger,
      tracer: context.tracer,
      services: [{ definition: CatalogServiceService, implementation: catalogService(context, consensus), protoFile: protobufFileName }],
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
