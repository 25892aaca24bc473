/**
 * `/v1/health/*` (reference/consul-compat.md §4.2; agent/health_endpoint.go): a service's
 * instances with their node and checks, a node's checks, a service's checks, and the checks in a
 * state, as blocking reads of the view with the index headers.
 *
 * An instance's Checks are its node's checks (serfHealth among them) then its service's own, and
 * `?passing` keeps only instances whose every check passes (CheckServiceNodes.Filter).
 */
import { Indexed, catalogRows } from '../state/catalog-rows';
import { StoredCheck } from '../state/model';
import { Table, keys } from '../state/keys';
import { blockingRead } from './blocking';
import { CatalogEndpointDeps, instancesOf } from './catalog-endpoint';
import { healthCheckJson, nodeJson, nodeServiceJson } from './consul-shapes';
import { badRequest } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { parseQueryOptions } from './query-options';
import { parseNodeMetaFilter, refuseFilterExpression, satisfiesMetaFilters } from './read-filters';
import { refuseRemoteDatacenter } from './remote-datacenter';

export type HealthEndpointDeps = CatalogEndpointDeps;

export function registerHealthEndpoints(router: HttpRouter, deps: HealthEndpointDeps): void {
  router.on(['GET'], '/v1/health/service/:service', (request) => healthServiceNodes(deps, request));
  router.on(['GET'], '/v1/health/node/:node', (request) => healthNodeChecks(deps, request));
  router.on(['GET'], '/v1/health/checks/:service', (request) => healthServiceChecks(deps, request));
  router.on(['GET'], '/v1/health/state/:state', (request) => healthChecksInState(deps, request));
}

function readOptions(deps: HealthEndpointDeps, query: URLSearchParams) {
  const options = parseQueryOptions(query, deps.datacenter);
  refuseRemoteDatacenter(query, deps.datacenter);
  refuseFilterExpression(query);
  return options;
}

/** getBoolQueryParam: present and empty is true; else strconv.ParseBool. */
function passingParam(query: URLSearchParams): boolean {
  if (!query.has('passing')) return false;
  const value = query.get('passing')!;
  if (value === '') return true;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw badRequest('Invalid value for ?passing');
}

async function healthServiceNodes(deps: HealthEndpointDeps, { query, params }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const tags = query.getAll('tag');
  const name = params.service;
  if (name === '') throw badRequest('Missing service name');
  const onlyPassing = passingParam(query);
  const tables: Table[] = ['nodes', 'services', 'checks'];
  const read = await blockingRead(deps, options, tables, () => {
    const checksByNode = groupByNode(catalogRows.checks(deps.view));
    let entries = instancesOf(deps, name, tags, meta).map(({ node, service }) => {
      const onNode = checksByNode.get(node.row.key) ?? [];
      const serviceId = service.value.ID.toLowerCase();
      // parseCheckServiceNodes: the node-level checks first, then the instance's own.
      const checks = [...onNode.filter((c) => c.value.ServiceID === ''), ...onNode.filter((c) => c.value.ServiceID !== '' && c.value.ServiceID.toLowerCase() === serviceId)];
      return { Node: nodeJson(node), Service: nodeServiceJson(service), Checks: checks.map(healthCheckJson) };
    });
    if (onlyPassing) entries = withEveryCheckPassing(entries);
    return { value: entries, index: deps.view.index(...tables) };
  });
  return { body: read.value, headers: read.headers };
}

async function healthNodeChecks(deps: HealthEndpointDeps, { query, params }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const name = params.node;
  if (name === '') throw badRequest('Missing node name');
  const read = await blockingRead(deps, options, ['checks'], () => ({
    value: catalogRows.nodeChecks(deps.view, name).map(healthCheckJson),
    index: deps.view.index('checks'),
  }));
  return { body: read.value, headers: read.headers };
}

async function healthServiceChecks(deps: HealthEndpointDeps, { query, params }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const name = params.service;
  if (name === '') throw badRequest('Missing service name');
  const wanted = name.toLowerCase();
  const tables: Table[] = meta === undefined ? ['checks'] : ['checks', 'nodes'];
  const read = await blockingRead(deps, options, tables, () => ({
    // Checks are found by the service NAME they carry (state.ServiceChecks), case-insensitively.
    value: onMatchingNodes(deps, catalogRows.checks(deps.view), meta)
      .filter((check) => check.value.ServiceName.toLowerCase() === wanted)
      .map(healthCheckJson),
    index: deps.view.index(...tables),
  }));
  return { body: read.value, headers: read.headers };
}

/**
 * `any`, or a status. Consul does not refuse other states: its status index just holds no such
 * checks, so `/v1/health/state/bogus` is an empty list (agent/consul/health_endpoint.go).
 */
async function healthChecksInState(deps: HealthEndpointDeps, { query, params }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const state = params.state;
  if (state === '') throw badRequest('Missing check state');
  const tables: Table[] = meta === undefined ? ['checks'] : ['checks', 'nodes'];
  const read = await blockingRead(deps, options, tables, () => ({
    // "any" is matched exactly (api.HealthAny); a status through the lower-cased status index.
    value: onMatchingNodes(deps, catalogRows.checks(deps.view), meta)
      .filter((check) => state === 'any' || check.value.Status.toLowerCase() === state.toLowerCase())
      .map(healthCheckJson),
    index: deps.view.index(...tables),
  }));
  return { body: read.value, headers: read.headers };
}

/** The checks of nodes whose meta matches (all of them without a filter). */
function onMatchingNodes<T extends Indexed<StoredCheck> & { nodeKey: string }>(deps: HealthEndpointDeps, checks: T[], meta: Map<string, string> | undefined): T[] {
  if (meta === undefined) return checks;
  return checks.filter((check) => satisfiesMetaFilters(catalogRows.nodeByKey(deps.view, check.nodeKey)?.value.Meta, meta));
}

/** Checks by the key of their node's row, in check ID order. */
function groupByNode(checks: (Indexed<StoredCheck> & { nodeKey: string })[]): Map<string, Indexed<StoredCheck>[]> {
  const byNode = new Map<string, Indexed<StoredCheck>[]>();
  for (const check of checks) {
    const key = `${keys.prefix('nodes')}${check.nodeKey}`;
    let list = byNode.get(key);
    if (list === undefined) byNode.set(key, (list = []));
    list.push(check);
  }
  return byNode;
}

/**
 * structs.CheckServiceNodes.Filter(onlyPassing): an entry with any check not passing is dropped by
 * swapping the last entry into its place, so the order is Consul's, not the input's.
 */
export function withEveryCheckPassing<T extends { Checks: { Status: string }[] }>(entries: T[]): T[] {
  const nodes = [...entries];
  let n = nodes.length;
  for (let i = 0; i < n; i++) {
    if (nodes[i].Checks.every((check) => check.Status === 'passing')) continue;
    nodes[i] = nodes[n - 1];
    n--;
    i--;
  }
  return nodes.slice(0, n);
}

