/**
 * `/v1/catalog/*` (reference/consul-compat.md §4.1; agent/catalog_endpoint.go): register and
 * deregister as one consensus txn each (state/catalog-writes.ts), answering `true`; nodes,
 * services, a service's instances and a node's services as blocking reads of the view, with the
 * index headers on every answer; `/v1/catalog/datacenters` from the federation routers (§3.8).
 * `?dc=` of another datacenter never gets here: the HTTP server forwards it (remote-datacenter.ts).
 *
 * Bodies are decoded as Consul's Go decoder does (go-decode.ts): a malformed body or a field of
 * the wrong type is a 400 `Request decode failed: <Go's error>`. Consul's own refusals of a
 * registration (`Must provide node`, ...) are 500s, as Consul answers them.
 */
import { ConsensusClient } from '../../lib/consensus-client';
import { Logger } from '../../lib/log';
import { RouterClient, knownDatacenters } from '../router-client';
import { LIST_SERVICES_TABLES, NODE_SERVICES_TABLES, SERVICE_NODES_TABLES, listNodes, listServices, nodeServices, serviceNodes } from '../state/catalog-reads';
import { CatalogWriteError, DeregisterRequest, MAX_CATALOG_WRITE_BYTES, RegisterRequest, deregister, register } from '../state/catalog-writes';
import { refuseOtherDatacenter } from '../state/errors';
import { ReadDeps, blockingRead, withSignal } from './blocking';
import { nodeJson, nodeServiceJson, serviceNodeJson } from './consul-shapes';
import { GoJsonError, GoType, decodeGoJson, go } from './go-decode';
import { parseGoDuration } from '../../lib/go-text';
import { HttpError, badRequest } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { parseQueryOptions } from './query-options';
import { parseNodeMetaFilter, refuseFilterExpression } from './read-filters';

export interface CatalogEndpointDeps extends ReadDeps {
  readonly datacenter: string;
  readonly consensus: Pick<ConsensusClient, 'kv'>;
}

/** A register or deregister body (state/catalog-writes.ts MAX_CATALOG_WRITE_BYTES). */
export const MAX_CATALOG_WRITE_BODY_BYTES = MAX_CATALOG_WRITE_BYTES;

// ---- The Go types the bodies decode into (agent/structs), for Go's error texts. ----

const weights = go.pointer('structs.Weights', { Passing: go.int(), Warning: go.int() });
const serviceAddress = go.struct('structs.ServiceAddress', { Address: go.string(), Port: go.int() });
const nodeService = go.pointer('structs.NodeService', {
  Kind: go.string('structs.ServiceKind'),
  ID: go.string(),
  Service: go.string(),
  Tags: go.slice(go.string()),
  Address: go.string(),
  TaggedAddresses: go.map(serviceAddress),
  Meta: go.map(go.string()),
  Port: go.int(),
  SocketPath: go.string(),
  Weights: weights,
  EnableTagOverride: go.bool(),
  Proxy: go.any(),
  Connect: go.any(),
});
/** HealthCheckDefinition has its own UnmarshalJSON: durations are Go duration strings or nanoseconds. */
const DURATION_FIELDS = ['Interval', 'Timeout', 'DeregisterCriticalServiceAfter', 'TTL'] as const;
const checkDefinition = go.struct('structs.HealthCheckDefinition', {
  HTTP: go.string(),
  TLSServerName: go.string(),
  TLSSkipVerify: go.bool(),
  Header: go.map(go.slice(go.string())),
  Method: go.string(),
  Body: go.string(),
  TCP: go.string(),
  UDP: go.string(),
  H2PING: go.string(),
  OSService: go.string(),
  OutputMaxSize: go.int('uint'),
  ScriptArgs: go.slice(go.string()),
  DockerContainerID: go.string(),
  Shell: go.string(),
  GRPC: go.string(),
  GRPCUseTLS: go.bool(),
  AliasNode: go.string(),
  AliasService: go.string(),
  ...Object.fromEntries(DURATION_FIELDS.map((field) => [field, go.any()])),
});
const healthCheck = go.pointer('structs.HealthCheck', {
  Node: go.string(),
  CheckID: go.string('types.CheckID'),
  Name: go.string(),
  Status: go.string(),
  Notes: go.string(),
  Output: go.string(),
  ServiceID: go.string(),
  ServiceName: go.string(),
  ServiceTags: go.slice(go.string()),
  Type: go.string(),
  ExposedPort: go.int(),
  Definition: checkDefinition,
});
const registerRequestType: GoType = go.struct('structs.RegisterRequest', {
  Datacenter: go.string(),
  ID: go.string('types.NodeID'),
  Node: go.string(),
  Address: go.string(),
  TaggedAddresses: go.map(go.string()),
  NodeMeta: go.map(go.string()),
  Service: nodeService,
  Check: healthCheck,
  Checks: go.slice(healthCheck, 'structs.HealthChecks'),
  SkipNodeUpdate: go.bool(),
  Token: go.string(),
});
const deregisterRequestType: GoType = go.struct('structs.DeregisterRequest', {
  Datacenter: go.string(),
  Node: go.string(),
  ServiceID: go.string(),
  CheckID: go.string('types.CheckID'),
  Token: go.string(),
});

type DecodedCheck = { Definition: Record<string, unknown> } & Record<string, unknown>;

/** decodeBody with Consul's 400 (agent/catalog_endpoint.go CatalogRegister). */
function decodeBody<T>(body: Buffer, type: GoType): T {
  try {
    const value = decodeGoJson(body, type) as T & { Check?: DecodedCheck; Checks?: (DecodedCheck | undefined)[] };
    // HealthCheckDefinition.UnmarshalJSON parses its durations as it decodes: a bad one fails the body.
    for (const check of [value?.Check, ...(value?.Checks ?? [])]) {
      for (const field of DURATION_FIELDS) {
        const duration = check?.Definition?.[field];
        if (typeof duration === 'string') {
          const parsed = parseGoDuration(duration);
          if (parsed.error !== undefined) throw new GoJsonError(parsed.error);
        }
      }
    }
    return value;
  } catch (err) {
    if (err instanceof GoJsonError) throw badRequest(`Request decode failed: ${err.message}`);
    throw err;
  }
}

function writeRefused(err: unknown): never {
  if (err instanceof CatalogWriteError) throw new HttpError(err.status, err.message);
  throw err;
}

export function registerCatalogEndpoints(router: HttpRouter, deps: CatalogEndpointDeps): void {
  router.on(['PUT'], '/v1/catalog/register', (request) => catalogRegister(deps, request));
  router.on(['PUT'], '/v1/catalog/deregister', (request) => catalogDeregister(deps, request));
  router.on(['GET'], '/v1/catalog/nodes', (request) => catalogNodes(deps, request));
  router.on(['GET'], '/v1/catalog/services', (request) => catalogServices(deps, request));
  router.on(['GET'], '/v1/catalog/service/:service', (request) => catalogServiceNodes(deps, request));
  router.on(['GET'], '/v1/catalog/node/:node', (request) => catalogNodeServices(deps, request));
}

/**
 * A register or deregister may name its datacenter in the body; Consul forwards on it. Ours do
 * not travel yet (a client sends `?dc=`, which does): another is one we have no path to.
 */
const refuseRemoteWrite = refuseOtherDatacenter;

async function catalogRegister(deps: CatalogEndpointDeps, request: HttpRequest): Promise<HttpResult> {
  const body = decodeBody<RegisterRequest & { Checks?: (RegisterRequest['Check'] | undefined)[] }>(await request.body(MAX_CATALOG_WRITE_BODY_BYTES), registerRequestType);
  refuseRemoteWrite(body.Datacenter, deps.datacenter);
  // A `null` in Checks is a nil *HealthCheck: nothing to register.
  const checks = body.Checks?.filter((check) => check !== undefined);
  await register(deps, { ...body, Checks: checks }, deps.datacenter).catch(writeRefused);
  return { body: true };
}

async function catalogDeregister(deps: CatalogEndpointDeps, request: HttpRequest): Promise<HttpResult> {
  const body = decodeBody<DeregisterRequest>(await request.body(MAX_CATALOG_WRITE_BODY_BYTES), deregisterRequestType);
  refuseRemoteWrite(body.Datacenter, deps.datacenter);
  await deregister(deps, body).catch(writeRefused);
  return { body: true };
}

/** The query options of a read, then `filter`. */
function readOptions(deps: CatalogEndpointDeps, query: URLSearchParams) {
  const options = parseQueryOptions(query, deps.datacenter);
  refuseFilterExpression(query);
  return options;
}

async function catalogNodes(deps: CatalogEndpointDeps, { query, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  // `near` sorts by network distance; nodes have no coordinates here yet, so the order stays by name.
  const meta = parseNodeMetaFilter(query);
  const read = await blockingRead(deps, withSignal(options, signal), ['nodes'], () => {
    const { value, index } = listNodes(deps.view, meta);
    return { value: value.map(nodeJson), index };
  });
  return { body: read.value, headers: read.headers };
}

async function catalogServices(deps: CatalogEndpointDeps, { query, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const read = await blockingRead(deps, withSignal(options, signal), LIST_SERVICES_TABLES(meta), () => {
    const { value, index } = listServices(deps.view, meta);
    // A map in Go's order, the names sorted.
    return { value: Object.fromEntries(value.map(({ name, tags }) => [name, tags])), index };
  });
  return { body: read.value, headers: read.headers };
}

async function catalogServiceNodes(deps: CatalogEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const tags = query.getAll('tag');
  const name = params.service;
  if (name === '') throw badRequest('Missing service name');
  const read = await blockingRead(deps, withSignal(options, signal), SERVICE_NODES_TABLES, () => {
    const { value, index } = serviceNodes(deps.view, name, tags, meta);
    return { value: value.map(({ node, service }) => serviceNodeJson(node, service)), index };
  });
  return { body: read.value, headers: read.headers };
}

async function catalogNodeServices(deps: CatalogEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const name = params.node;
  if (name === '') throw badRequest('Missing node name');
  const read = await blockingRead(deps, withSignal(options, signal), NODE_SERVICES_TABLES, () => {
    const { value, index } = nodeServices(deps.view, name);
    // An unknown node: a null body with a 200, as Consul answers a nil NodeServices.
    if (value === undefined) return { value: null, index };
    const services: Record<string, ReturnType<typeof nodeServiceJson>> = {};
    for (const service of value.services) services[service.value.ID] = nodeServiceJson(service);
    return { value: { Node: nodeJson(value.node), Services: services }, index };
  });
  return { body: read.value, headers: read.headers };
}

export interface DatacentersDeps {
  readonly datacenter: string;
  readonly routers: Pick<RouterClient, 'configured' | 'datacenters'>;
  readonly logger: Logger;
}

/**
 * `/v1/catalog/datacenters` (§3.8): the routers' list, nearest first, in Consul's order. Without
 * a router, or none answering, only our own (Consul's Catalog.ListDatacenters with no WAN and no
 * areas): the endpoint is a reachability probe and does not fail.
 */
export function registerDatacentersEndpoint(router: HttpRouter, deps: DatacentersDeps): void {
  router.on(['GET'], '/v1/catalog/datacenters', async () => ({ body: await knownDatacenters(deps.datacenter, deps.routers, deps.logger) }));
  // Beyond Consul: how each datacenter is reached (adjacent, or through transit areas), nearest first.
  router.on(['GET'], '/v1/operator/routes', async () => ({ body: await knownRoutes(deps) }));
}

/** A route as `/v1/operator/routes` shows it (Go field names, RTT in nanoseconds, -1 unknown). */
export interface ApiRoute {
  readonly Datacenter: string;
  readonly Path: string[];
  readonly AreaID: string;
  readonly RTT: number;
  readonly Reachable: boolean;
  readonly NextHops: string[];
}

async function knownRoutes(deps: DatacentersDeps): Promise<ApiRoute[]> {
  const local: ApiRoute = { Datacenter: deps.datacenter, Path: [], AreaID: '', RTT: 0, Reachable: true, NextHops: [] };
  if (!deps.routers.configured) return [local];
  const { routes } = await deps.routers.datacenters();
  return routes.map((route) =>
    route.datacenter === deps.datacenter
      ? local
      : { Datacenter: route.datacenter, Path: [...route.path], AreaID: route.areaId, RTT: Number(route.rttNs), Reachable: route.reachable, NextHops: [...route.nextHops] },
  );
}
