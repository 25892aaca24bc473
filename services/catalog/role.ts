/**
 * The catalog role: Consul's data model on the consensus store, the HTTP API on 8500 and the
 * public gRPC API on 8502. A watch-fed view of the store (state/) answers every read; writes go to
 * consensus as one transaction each. The gRPC Status asks every consensus server for theirs.
 */
import { CatalogServiceService, protobufFileName } from '../gen/consulate/catalog/v1/catalog';
import { checks, field } from '../lib/config';
import { ConsensusClient, consensusAddrsField } from '../lib/consensus-client';
import { RoleGrpcServer } from '../lib/grpc-server';
import { RoleDefinition } from '../lib/role-process';
import { catalogService } from './catalog-service';
import { CatalogHttpServer } from './http/http-server';
import { catalogRouter } from './http/routes';
import { CatalogView } from './state/view';
import { ViewSync } from './state/view-sync';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the public gRPC API.', default: 8502, check: checks.port }),
  httpPort: field.int({ key: 'ports.http', flag: 'http-port', usage: "Port of the Consul-compatible HTTP API.", default: 8500, check: checks.port }),
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
    const view = new CatalogView();
    const sync = new ViewSync(view, consensus, context.config.consensusAddrs, context.tracer, context.logger);
    const http = new CatalogHttpServer({ router: catalogRouter({ datacenter: context.config.datacenter, node: context.config.node, view, sync, consensus, logger: context.logger }), logger: context.logger, tracer: context.tracer });
    const grpc = await server.listen(context.config.bind, context.config.grpcPort);
    const httpAddress = await http.listen(context.config.bind, context.config.httpPort);
    // The view loads in the background: reads wait for it (bounded), the process is up at once.
    void sync.start();
    server.setServing(true);
    return {
      listeners: { grpc, http: httpAddress },
      async stop() {
        await http.close();
        sync.stop();
        await server.shutdown();
        consensus.close();
      },
    };
  },
};
