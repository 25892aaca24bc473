/**
 * Consul's catalog and health reads on the view (agent/consul/catalog_endpoint.go,
 * health_endpoint.go, state/catalog.go), in the model's shapes, each with the index Consul gives
 * it. The HTTP API prints them as Consul's JSON (http/consul-shapes.ts), the gRPC API as messages
 * (grpc/proto-shapes.ts); both get the same rows in the same order.
 */
import { Indexed, NodeIndexed, catalogRows } from './catalog-rows';
import { Table, keys } from './keys';
import { StoredCheck, StoredNode, StoredService } from './model';
import { CatalogView } from './view';

/** Node meta pairs that must all match exactly (structs.SatisfiesMetaFilters); undefined: no filter. */
export type MetaFilter = ReadonlyMap<string, string> | undefined;

export interface Instance {
  readonly node: Indexed<StoredNode>;
  readonly service: Indexed<StoredService>;
}

export interface HealthEntry extends Instance {
  /** The node's checks, then the instance's own, each in check ID order. */
  readonly checks: readonly Indexed<StoredCheck>[];
}

export interface Computed<T> {
  readonly value: T;
  readonly index: number;
}

export function satisfiesMetaFilters(meta: Readonly<Record<string, string>> | undefined, filters: MetaFilter): boolean {
  if (filters === undefined) return true;
  for (const [key, value] of filters) {
    if (meta === undefined || !Object.prototype.hasOwnProperty.call(meta, key) || meta[key] !== value) return false;
  }
  return true;
}

/** Whether a service has every wanted tag (case-insensitively: state/catalog.go serviceTagsFilter). */
export function hasAllTags(tags: readonly string[] | undefined, wanted: readonly string[]): boolean {
  const have = new Set((tags ?? []).map((tag) => tag.toLowerCase()));
  return wanted.every((tag) => have.has(tag.toLowerCase()));
}

/** The tables a read of nodes filtered by meta watches besides its own. */
export function withNodesWhenFiltered(tables: readonly Table[], meta: MetaFilter): Table[] {
  return meta === undefined ? [...tables] : [...tables, 'nodes'];
}

/** Catalog.ListNodes: the nodes whose meta matches, by name. */
export function listNodes(view: CatalogView, meta: MetaFilter): Computed<Indexed<StoredNode>[]> {
  return { value: catalogRows.nodes(view).filter((node) => satisfiesMetaFilters(node.value.Meta, meta)), index: view.index('nodes') };
}

export const LIST_SERVICES_TABLES = (meta: MetaFilter) => withNodesWhenFiltered(['services'], meta);

/**
 * Catalog.ListServices: each service name with the union of its instances' tags (first seen
 * first), names sorted as Go prints a map's keys. With a meta filter, only instances on matching
 * nodes count (ServicesByNodeMeta, which also watches the nodes table).
 */
export function listServices(view: CatalogView, meta: MetaFilter): Computed<{ name: string; tags: string[] }[]> {
  const tagsByName = new Map<string, Set<string>>();
  for (const service of catalogRows.services(view)) {
    if (meta !== undefined && !satisfiesMetaFilters(catalogRows.nodeByKey(view, service.nodeKey)?.value.Meta, meta)) continue;
    let tags = tagsByName.get(service.value.Service);
    if (tags === undefined) tagsByName.set(service.value.Service, (tags = new Set()));
    for (const tag of service.value.Tags ?? []) tags.add(tag);
  }
  const value = [...tagsByName.keys()].sort().map((name) => ({ name, tags: [...tagsByName.get(name)!] }));
  return { value, index: view.index(...LIST_SERVICES_TABLES(meta)) };
}

/**
 * The instances of a service, by name case-insensitively (Consul's service index lower-cases),
 * carrying every wanted tag, on nodes whose meta matches; in node, then service ID, order.
 */
export function instancesOf(view: CatalogView, name: string, tags: readonly string[], meta: MetaFilter): Instance[] {
  const wanted = name.toLowerCase();
  const out: Instance[] = [];
  for (const service of catalogRows.services(view)) {
    if (service.value.Service.toLowerCase() !== wanted || !hasAllTags(service.value.Tags, tags)) continue;
    // A service whose node is gone is mid-deregistration: not an instance any more.
    const node = catalogRows.nodeByKey(view, service.nodeKey);
    if (node === undefined || !satisfiesMetaFilters(node.value.Meta, meta)) continue;
    out.push({ node, service });
  }
  return out;
}

export const SERVICE_NODES_TABLES: readonly Table[] = ['nodes', 'services'];

/** Catalog.ServiceNodes. */
export function serviceNodes(view: CatalogView, name: string, tags: readonly string[], meta: MetaFilter): Computed<Instance[]> {
  return { value: instancesOf(view, name, tags, meta), index: view.index(...SERVICE_NODES_TABLES) };
}

export const NODE_SERVICES_TABLES: readonly Table[] = ['nodes', 'services'];

/** Catalog.NodeServices: the node and its services by ID; node undefined when not registered. */
export function nodeServices(view: CatalogView, name: string): Computed<{ node: Indexed<StoredNode>; services: Indexed<StoredService>[] } | undefined> {
  const node = catalogRows.node(view, name);
  const index = view.index(...NODE_SERVICES_TABLES);
  return { value: node === undefined ? undefined : { node, services: catalogRows.nodeServices(view, name) }, index };
}

export const SERVICE_HEALTH_TABLES: readonly Table[] = ['nodes', 'services', 'checks'];

/**
 * Health.ServiceNodes: each instance with its node's checks (serfHealth among them), then its
 * own (parseCheckServiceNodes); with `onlyPassing`, Consul's CheckServiceNodes.Filter.
 */
export function serviceHealth(view: CatalogView, name: string, tags: readonly string[], meta: MetaFilter, onlyPassing: boolean): Computed<HealthEntry[]> {
  const checksByNode = groupByNode(catalogRows.checks(view));
  const entries = instancesOf(view, name, tags, meta).map(({ node, service }) => {
    const onNode = checksByNode.get(node.row.key) ?? [];
    const serviceId = service.value.ID.toLowerCase();
    const checks = [...onNode.filter((c) => c.value.ServiceID === ''), ...onNode.filter((c) => c.value.ServiceID !== '' && c.value.ServiceID.toLowerCase() === serviceId)];
    return { node, service, checks };
  });
  const value = onlyPassing ? withEveryCheckPassing(entries, (entry) => entry.checks.every((check) => check.value.Status === 'passing')) : entries;
  return { value, index: view.index(...SERVICE_HEALTH_TABLES) };
}

export const NODE_CHECKS_TABLES: readonly Table[] = ['checks'];

/** Health.NodeChecks: a node's checks in check ID order (none for an unknown node). */
export function nodeChecks(view: CatalogView, node: string): Computed<Indexed<StoredCheck>[]> {
  return { value: catalogRows.nodeChecks(view, node), index: view.index(...NODE_CHECKS_TABLES) };
}

export const CHECKS_TABLES = (meta: MetaFilter) => withNodesWhenFiltered(['checks'], meta);

/** Health.ServiceChecks: checks by the service NAME they carry (state.ServiceChecks), case-insensitively. */
export function serviceChecks(view: CatalogView, name: string, meta: MetaFilter): Computed<NodeIndexed<StoredCheck>[]> {
  const wanted = name.toLowerCase();
  return { value: onMatchingNodes(view, catalogRows.checks(view), meta).filter((check) => check.value.ServiceName.toLowerCase() === wanted), index: view.index(...CHECKS_TABLES(meta)) };
}

/**
 * Health.ChecksInState: `any`, or a status. Consul does not refuse other states: its status index
 * just holds no such checks (agent/consul/health_endpoint.go). "any" is matched exactly
 * (api.HealthAny); a status through the lower-cased status index.
 */
export function checksInState(view: CatalogView, state: string, meta: MetaFilter): Computed<NodeIndexed<StoredCheck>[]> {
  return {
    value: onMatchingNodes(view, catalogRows.checks(view), meta).filter((check) => state === 'any' || check.value.Status.toLowerCase() === state.toLowerCase()),
    index: view.index(...CHECKS_TABLES(meta)),
  };
}

/**
 * structs.CheckServiceNodes.Filter(onlyPassing): an entry with any check not passing is dropped by
 * swapping the last entry into its place, so the order is Consul's, not the input's.
 */
export function withEveryCheckPassing<T>(entries: readonly T[], passing: (entry: T) => boolean): T[] {
  const nodes = [...entries];
  let n = nodes.length;
  for (let i = 0; i < n; i++) {
    if (passing(nodes[i])) continue;
    nodes[i] = nodes[n - 1];
    n--;
    i--;
  }
  return nodes.slice(0, n);
}

/** The checks of nodes whose meta matches (all of them without a filter). */
function onMatchingNodes<T extends NodeIndexed<StoredCheck>>(view: CatalogView, checks: T[], meta: MetaFilter): T[] {
  if (meta === undefined) return checks;
  return checks.filter((check) => satisfiesMetaFilters(catalogRows.nodeByKey(view, check.nodeKey)?.value.Meta, meta));
}

/** Checks by the key of their node's row, in check ID order. */
function groupByNode(checks: NodeIndexed<StoredCheck>[]): Map<string, Indexed<StoredCheck>[]> {
  const byNode = new Map<string, Indexed<StoredCheck>[]>();
  for (const check of checks) {
    const key = `${keys.prefix('nodes')}${check.nodeKey}`;
    let list = byNode.get(key);
    if (list === undefined) byNode.set(key, (list = []));
    list.push(check);
  }
  return byNode;
}
