/**
 * gRPC adapter for consulate.catalog.v1.CatalogService: Consul's `/v1/catalog` on
 * state/catalog-writes.ts and state/catalog-reads.ts, as the HTTP endpoints use them.
 */
import {
  CatalogServiceServer,
  CheckRegistration,
  DeregisterRequest,
  GetNodeResponse,
  GetServiceResponse,
  ListNodesResponse,
  ListServicesResponse,
  RegisterRequest,
  ServiceRegistration,
} from '../../gen/consulate/catalog/v1/catalog';
import { statusWithConsensus } from '../../lib/consensus-client';
import { goQuote } from '../../lib/go-text';
import { NO_ROUTERS, knownDatacenters } from '../router-client';
import { LIST_SERVICES_TABLES, NODE_SERVICES_TABLES, SERVICE_NODES_TABLES, listNodes, listServices, nodeServices, serviceNodes } from '../state/catalog-reads';
import { CheckRegistration as StateCheck, MAX_CATALOG_WRITE_BYTES, RegisterRequest as StateRegister, ServiceRegistration as StateService, deregister, register } from '../state/catalog-writes';
import { refuseOtherDatacenter } from '../state/errors';
import { CatalogApiDeps, metaFilterOf } from './catalog-api';
import { nodeMessage, serviceMessage, statusText } from './proto-shapes';
import { queryRead } from './query';
import { invalidArgument, notFound, unary } from './status';

export function catalogService(deps: CatalogApiDeps): CatalogServiceServer {
  const { view, logger } = deps;
  return {
    status: statusWithConsensus(deps.context.roleInfo, deps.consensus),

    register: unary(logger, async (call) => {
      refuseOversized(RegisterRequest.encode(call.request).finish().length, 'registration');
      refuseOtherDatacenter(call.request.datacenter, deps.datacenter);
      const { revision } = await register(deps, registration(call.request), deps.datacenter);
      return { index: BigInt(revision) };
    }),

    deregister: unary(logger, async (call) => {
      const request = call.request;
      refuseOversized(DeregisterRequest.encode(request).finish().length, 'deregistration');
      refuseOtherDatacenter(request.datacenter, deps.datacenter);
      const { revision } = await deregister(deps, { Node: request.node, ServiceID: request.serviceId, CheckID: request.checkId });
      return { index: BigInt(revision) };
    }),

    // The routers' list, nearest first, as /v1/catalog/datacenters answers it.
    listDatacenters: unary(logger, async () => ({ datacenters: await knownDatacenters(deps.datacenter, deps.routers ?? NO_ROUTERS, logger) })),

    listNodes: unary(logger, async (call): Promise<ListNodesResponse> => {
      const meta = metaFilterOf(call.request.nodeMeta);
      const read = await queryRead(deps, call, call.request.query, ['nodes'], () => {
        const { value, index } = listNodes(view, meta);
        return { value: value.map(nodeMessage), index };
      });
      return { nodes: read.value, meta: read.meta };
    }),

    listServices: unary(logger, async (call): Promise<ListServicesResponse> => {
      const meta = metaFilterOf(call.request.nodeMeta);
      const read = await queryRead(deps, call, call.request.query, LIST_SERVICES_TABLES(meta), () => listServices(view, meta));
      return { services: read.value, meta: read.meta };
    }),

    getService: unary(logger, async (call): Promise<GetServiceResponse> => {
      const { service, tags, nodeMeta, query } = call.request;
      if (service === '') throw invalidArgument('Missing service name');
      const meta = metaFilterOf(nodeMeta);
      const read = await queryRead(deps, call, query, SERVICE_NODES_TABLES, () => {
        const { value, index } = serviceNodes(view, service, tags, meta);
        return { value: value.map((instance) => ({ node: nodeMessage(instance.node), service: serviceMessage(instance.service) })), index };
      });
      return { instances: read.value, meta: read.meta };
    }),

    getNode: unary(logger, async (call): Promise<GetNodeResponse> => {
      const { node, query } = call.request;
      if (node === '') throw invalidArgument('Missing node name');
      const read = await queryRead(deps, call, query, NODE_SERVICES_TABLES, () => nodeServices(view, node));
      if (read.value === undefined) throw notFound(`node ${goQuote(node)} is not registered`, Number(read.meta.index));
      return { node: nodeMessage(read.value.node), services: read.value.services.map(serviceMessage), meta: read.meta };
    }),
  };
}

/** A write whose rows would not fit one consensus transaction (state/catalog-writes.ts). */
function refuseOversized(bytes: number, what: string): void {
  if (bytes > MAX_CATALOG_WRITE_BYTES) throw invalidArgument(`${what} of ${bytes} bytes too large, max size: ${MAX_CATALOG_WRITE_BYTES} bytes (one consensus transaction): register in several requests`);
}

/** The request as Consul's RegisterRequest, which state/catalog-writes.ts validates with Consul's texts. */
function registration(request: RegisterRequest): StateRegister {
  return {
    Datacenter: request.datacenter,
    ID: request.id,
    Node: request.node,
    Address: request.address,
    TaggedAddresses: request.taggedAddresses,
    NodeMeta: request.nodeMeta,
    ...(request.service === undefined ? {} : { Service: serviceRegistration(request.service) }),
    Checks: request.checks.map(checkRegistration),
    SkipNodeUpdate: request.skipNodeUpdate,
  };
}

function serviceRegistration(service: ServiceRegistration): StateService {
  return {
    ID: service.id,
    Service: service.name,
    Tags: service.tags,
    Address: service.address,
    TaggedAddresses: Object.fromEntries(Object.entries(service.taggedAddresses).map(([name, { address, port }]) => [name, { Address: address, Port: port }])),
    Meta: service.meta,
    Port: service.port,
    ...(service.weights === undefined ? {} : { Weights: { Passing: service.weights.passing, Warning: service.weights.warning } }),
    EnableTagOverride: service.enableTagOverride,
  };
}

function checkRegistration(check: CheckRegistration, at: number): StateCheck {
  const status = statusText(check.status);
  if (status === undefined) throw invalidArgument(`check ${at} has an unknown status (${check.status}): use HEALTH_STATUS_PASSING, HEALTH_STATUS_WARNING or HEALTH_STATUS_CRITICAL`);
  return { Node: check.node, CheckID: check.checkId, Name: check.name, Status: status, Notes: check.notes, Output: check.output, ServiceID: check.serviceId, Type: check.type };
}
