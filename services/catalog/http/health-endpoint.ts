/**
 * `/v1/health/*` (reference/consul-compat.md §4.2; agent/health_endpoint.go): a service's
 * instances with their node and checks, a node's checks, a service's checks, and the checks in a
 * state, as blocking reads of the view (state/catalog-reads.ts) with the index headers.
 *
 * An instance's Checks are its node's checks (serfHealth among them) then its service's own, and
 * `?passing` keeps only instances whose every check passes (CheckServiceNodes.Filter).
 */
import { CHECKS_TABLES, NODE_CHECKS_TABLES, SERVICE_HEALTH_TABLES, checksInState, withEveryCheckPassing as everyCheckPassing, nodeChecks, serviceChecks, serviceHealth } from '../state/catalog-reads';
import { Indexed } from '../state/catalog-rows';
import { StoredCheck } from '../state/model';
import { blockingRead, withSignal } from './blocking';
import { CatalogEndpointDeps } from './catalog-endpoint';
import { healthCheckJson, nodeJson, nodeServiceJson } from './consul-shapes';
import { badRequest } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { parseQueryOptions } from './query-options';
import { parseNodeMetaFilter, refuseFilterExpression } from './read-filters';

export type HealthEndpointDeps = CatalogEndpointDeps;

export function registerHealthEndpoints(router: HttpRouter, deps: HealthEndpointDeps): void {
  router.on(['GET'], '/v1/health/service/:service', (request) => healthServiceNodes(deps, request));
  router.on(['GET'], '/v1/health/node/:node', (request) => healthNodeChecks(deps, request));
  router.on(['GET'], '/v1/health/checks/:service', (request) => healthServiceChecks(deps, request));
  router.on(['GET'], '/v1/health/state/:state', (request) => healthChecksInState(deps, request));
}

function readOptions(deps: HealthEndpointDeps, query: URLSearchParams) {
  const options = parseQueryOptions(query, deps.datacenter);
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

async function healthServiceNodes(deps: HealthEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const tags = query.getAll('tag');
  const name = params.service;
  if (name === '') throw badRequest('Missing service name');
  const onlyPassing = passingParam(query);
  const read = await blockingRead(deps, withSignal(options, signal), SERVICE_HEALTH_TABLES, () => {
    const { value, index } = serviceHealth(deps.view, name, tags, meta, onlyPassing);
    return { value: value.map((entry) => ({ Node: nodeJson(entry.node), Service: nodeServiceJson(entry.service), Checks: entry.checks.map(healthCheckJson) })), index };
  });
  return { body: read.value, headers: read.headers };
}

async function healthNodeChecks(deps: HealthEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const name = params.node;
  if (name === '') throw badRequest('Missing node name');
  const read = await blockingRead(deps, withSignal(options, signal), NODE_CHECKS_TABLES, () => checksJson(nodeChecks(deps.view, name)));
  return { body: read.value, headers: read.headers };
}

async function healthServiceChecks(deps: HealthEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const name = params.service;
  if (name === '') throw badRequest('Missing service name');
  const read = await blockingRead(deps, withSignal(options, signal), CHECKS_TABLES(meta), () => checksJson(serviceChecks(deps.view, name, meta)));
  return { body: read.value, headers: read.headers };
}

/** `any`, or a status; other states are an empty list, as Consul answers them (state/catalog-reads.ts). */
async function healthChecksInState(deps: HealthEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = readOptions(deps, query);
  const meta = parseNodeMetaFilter(query);
  const state = params.state;
  if (state === '') throw badRequest('Missing check state');
  const read = await blockingRead(deps, withSignal(options, signal), CHECKS_TABLES(meta), () => checksJson(checksInState(deps.view, state, meta)));
  return { body: read.value, headers: read.headers };
}

function checksJson({ value, index }: { value: Indexed<StoredCheck>[]; index: number }) {
  return { value: value.map(healthCheckJson), index };
}

/** structs.CheckServiceNodes.Filter(onlyPassing) on Consul's JSON entries (state/catalog-reads.ts). */
export function withEveryCheckPassing<T extends { Checks: { Status: string }[] }>(entries: T[]): T[] {
  return everyCheckPassing(entries, (entry) => entry.Checks.every((check) => check.Status === 'passing'));
}
