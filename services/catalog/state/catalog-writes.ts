/**
 * Consul's `/v1/catalog/register` and `/v1/catalog/deregister` as consensus transactions: the
 * checks of `Catalog.Register` (agent/consul/catalog_endpoint.go: nodePreApply, servicePreApply,
 * checkPreApply, vetRegisterWithACL) and the upserts of the state store's ensureRegistrationTxn
 * (agent/consul/state/catalog.go), with Consul's error texts, then one txn per write.
 *
 * The mechanism is write-plan.ts's: the view is brought up to the leader, the write is planned
 * against it, and the txn compares the mod revision of every row the plan read (0 for a row it
 * found absent), so two catalogs cannot interleave their read-decide-write; a failed compare
 * plans again once the view has the txn's revision.
 *
 * Like Consul, a write that changes nothing (same node, same service, same checks) writes nothing:
 * no ModifyIndex moves and no blocking query wakes.
 */
import { goQuote, parseGoDuration } from '../../lib/go-text';
import { keys } from './keys';
import { CheckStatus, SERF_HEALTH, StoredCheck, StoredNode, StoredService, TaggedAddress } from './model';
import { Committed, WriteDeps, WritePlan, commitPlan } from './write-plan';

// ---- Requests, as Consul's structs.RegisterRequest and DeregisterRequest carry them. ----

export interface ServiceRegistration {
  readonly Kind?: string;
  readonly ID?: string;
  readonly Service?: string;
  readonly Tags?: readonly string[];
  readonly Address?: string;
  readonly TaggedAddresses?: Readonly<Record<string, TaggedAddress>>;
  readonly Meta?: Readonly<Record<string, string>>;
  readonly Port?: number;
  readonly Weights?: { readonly Passing: number; readonly Warning: number };
  readonly EnableTagOverride?: boolean;
}

/** A check definition's fields that decide the check's Type (structs.CheckType.Type()). */
export interface CheckDefinition {
  readonly HTTP?: string;
  readonly TCP?: string;
  readonly UDP?: string;
  readonly GRPC?: string;
  readonly H2PING?: string;
  readonly OSService?: string;
  readonly AliasNode?: string;
  readonly AliasService?: string;
  readonly DockerContainerID?: string;
  readonly ScriptArgs?: readonly string[];
  /** Go durations: a string ("10s") or nanoseconds. */
  readonly Interval?: string | number;
  readonly TTL?: string | number;
}

export interface CheckRegistration {
  readonly Node?: string;
  readonly CheckID?: string;
  readonly Name?: string;
  readonly Status?: string;
  readonly Notes?: string;
  readonly Output?: string;
  readonly ServiceID?: string;
  readonly Type?: string;
  readonly Definition?: CheckDefinition;
}

export interface RegisterRequest {
  readonly Datacenter?: string;
  readonly ID?: string;
  readonly Node?: string;
  readonly Address?: string;
  readonly TaggedAddresses?: Readonly<Record<string, string>>;
  readonly NodeMeta?: Readonly<Record<string, string>>;
  readonly Service?: ServiceRegistration;
  readonly Check?: CheckRegistration;
  readonly Checks?: readonly CheckRegistration[];
  readonly SkipNodeUpdate?: boolean;
}

export interface DeregisterRequest {
  readonly Datacenter?: string;
  readonly Node?: string;
  readonly ServiceID?: string;
  readonly CheckID?: string;
}

/**
 * A refused write, with Consul's text. Consul answers these with 500: they are plain RPC errors
 * to agent/http.go's mapping, not BadRequestErrors. `reason` is for the gRPC API: 'invalid', the
 * request can never succeed as sent; 'conflict', the catalog's current state refuses it (a check
 * for an unregistered service, a node name a live node holds).
 */
export class CatalogWriteError extends Error {
  override readonly name = 'CatalogWriteError';
  constructor(
    message: string,
    readonly status = 500,
    readonly reason: 'invalid' | 'conflict' = 'invalid',
  ) {
    super(message);
  }
}

// ---- Register ----

/**
 * A register or deregister request as sent (an HTTP body, an encoded gRPC message): its rows go
 * to consensus in one txn, which the consensus store caps at 1.5 MiB (maxRequestBytes); 1 MiB
 * leaves room for keys and compares.
 */
export const MAX_CATALOG_WRITE_BYTES = 1024 * 1024;

/** Checks in one registration: with the node, the service and what they read, one txn stays under its 128 operations. */
export const MAX_CHECKS_PER_REGISTRATION = 120;

/** Registers per Consul's Catalog.Register: one txn, or none when nothing changes. */
export function register(deps: WriteDeps, request: RegisterRequest, localDatacenter: string): Promise<Committed<void>> {
  return commitPlan(deps, (plan) => {
    planRegister(plan, request, localDatacenter);
    return { value: undefined, commit: true };
  });
}

/** Stages a registration in `plan`; throws CatalogWriteError with Consul's text when refused. */
export function planRegister(plan: WritePlan, request: RegisterRequest, localDatacenter: string): void {
  const node = request.Node ?? '';
  const id = request.ID ?? '';
  const address = request.Address ?? '';
  const skipNodeUpdate = request.SkipNodeUpdate === true;

  // Catalog.Register: nodePreApply, then the address rule.
  if (node === '') throw new CatalogWriteError('Must provide node');
  if (id !== '') {
    const bad = uuidError(id);
    if (bad !== undefined) throw new CatalogWriteError(`Bad node ID: ${bad}`);
  }
  if (address === '' && !skipNodeUpdate) throw new CatalogWriteError('Must provide address if SkipNodeUpdate is not set');

  const service = request.Service === undefined ? undefined : preApplyService(request.Service);

  // The single Check joins Checks, last (Consul appends it), with the node and ID filled in.
  const checks = [...(request.Checks ?? []), ...(request.Check === undefined ? [] : [request.Check])].map((check) => preApplyCheck(check, node));
  if (checks.length > MAX_CHECKS_PER_REGISTRATION) {
    throw new CatalogWriteError(`a registration here carries at most ${MAX_CHECKS_PER_REGISTRATION} checks (one consensus transaction); this one has ${checks.length}: register them in several requests`, 400);
  }

  // vetRegisterWithACL runs with ACLs off too, so its texts are what clients see. It knows the
  // node's services by their exact ID.
  for (const check of checks) {
    if (!equalFold(check.Node, node)) throw new CatalogWriteError(`Node '${check.Node}' for check '${check.CheckID}' doesn't match register request node '${node}'`);
    if (check.ServiceID === '' || (service !== undefined && service.ID === check.ServiceID)) continue;
    if (read<StoredService>(plan, keys.service(node, check.ServiceID))?.ID !== check.ServiceID) {
      throw new CatalogWriteError(`Unknown service ID '${check.ServiceID}' for check ID '${check.CheckID}'`, 500, 'conflict');
    }
  }

  // ensureRegistrationTxn: the node, then the service, then the checks.
  const storedNode: StoredNode = {
    ID: id,
    Node: node,
    Address: address,
    Datacenter: request.Datacenter || localDatacenter,
    TaggedAddresses: sortedRecord(request.TaggedAddresses),
    Meta: sortedRecord(request.NodeMeta),
  };
  const existingNode = read<StoredNode>(plan, keys.node(node));
  if (existingNode === undefined || changesNode(storedNode, existingNode, skipNodeUpdate)) ensureNode(plan, storedNode, existingNode);

  if (service !== undefined) {
    const metaError = metadataError(service.Meta);
    if (metaError !== undefined) throw new CatalogWriteError(`failed inserting service: Invalid Service Meta for node ${node} and serviceID ${service.ID}: ${metaError}`);
    if (service.ID === '') throw new CatalogWriteError('failed inserting service: failed inserting service: object is missing a value for this index');
    const key = keys.service(node, service.ID);
    const existing = read<StoredService>(plan, key);
    if (existing === undefined || !sameRow(existing, service)) write(plan, key, service);
  }

  for (const check of checks) {
    if (check.CheckID === '') throw new CatalogWriteError(`failed inserting check on node ${goQuote(check.Node)}: failed inserting check: object is missing a value for this index`);
    let stored: StoredCheck = { ...check.stored, Status: (check.stored.Status || 'critical') as CheckStatus };
    if (check.ServiceID !== '') {
      // The state store finds the service case-insensitively (its index lower-cases IDs); the
      // plan sees this request's service once staged.
      const owner = read<StoredService>(plan, keys.service(node, check.ServiceID));
      if (owner === undefined) throw new CatalogWriteError(`failed inserting check on node ${goQuote(check.Node)}: Missing service registration`, 500, 'conflict');
      stored = { ...stored, ServiceName: owner.Service, ServiceTags: [...owner.Tags] };
    }
    const key = keys.check(node, check.CheckID);
    const existing = read<StoredCheck>(plan, key);
    if (existing === undefined || !sameRow(existing, stored)) write(plan, key, stored);
  }
}

/** structs.RegisterRequest.ChangesNode: whether the request's node differs from the stored one. */
function changesNode(wanted: StoredNode, existing: StoredNode, skipNodeUpdate: boolean): boolean {
  if (skipNodeUpdate) return false;
  return (
    wanted.ID !== existing.ID ||
    !equalFold(wanted.Node, existing.Node) ||
    wanted.Address !== existing.Address ||
    wanted.Datacenter !== existing.Datacenter ||
    !sameRow(wanted.TaggedAddresses, existing.TaggedAddresses ?? {}) ||
    !sameRow(wanted.Meta, existing.Meta ?? {})
  );
}

/**
 * ensureNodeTxn: a node ID names one node. Registering a known ID under another name renames
 * that node (the old one goes, with its services and checks); a name whose holder has another
 * ID and a healthy serfHealth is reserved.
 */
function ensureNode(plan: WritePlan, node: StoredNode, existing: StoredNode | undefined): void {
  if (node.ID !== '') {
    // Found untracked, then read through the plan: one compare, not one per node of the DC.
    const candidate = plan.scan(keys.prefix('nodes'), { track: false }).find(([, row]) => decode<StoredNode>(row.value).ID.toLowerCase() === node.ID.toLowerCase());
    const byId = candidate === undefined ? undefined : read<StoredNode>(plan, candidate[0]);
    if (byId !== undefined && byId.ID.toLowerCase() === node.ID.toLowerCase()) {
      if (!equalFold(byId.Node, node.Node)) {
        const reserved = reservedNameError(plan, node, false);
        if (reserved !== undefined) throw new CatalogWriteError(`failed inserting node: Error while renaming Node ID: ${goQuote(node.ID)} (${node.Address}): ${reserved}`, 500, 'conflict');
        plan.deletePrefix(keys.nodeServices(byId.Node));
        plan.deletePrefix(keys.nodeChecks(byId.Node));
        plan.delete(keys.node(byId.Node));
      }
    } else {
      const reserved = reservedNameError(plan, node, true);
      if (reserved !== undefined) throw new CatalogWriteError(`failed inserting node: Error while renaming Node ID: ${goQuote(node.ID)}: ${reserved}`, 500, 'conflict');
    }
  }
  if (existing !== undefined && sameRow(existing, node)) return;
  write(plan, keys.node(node.Node), node);
}

/** ensureNoNodeWithSimilarNameTxn: the node holding this name under another ID, if still healthy. */
function reservedNameError(plan: WritePlan, node: StoredNode, allowClashWithoutId: boolean): string | undefined {
  const holder = read<StoredNode>(plan, keys.node(node.Node));
  if (holder === undefined || holder.ID === node.ID) return undefined;
  const serfHealth = read<StoredCheck>(plan, keys.check(holder.Node, SERF_HEALTH.CheckID));
  // No serfHealth: an external registration, safe to take over; a critical one: a dead node.
  const healthy = serfHealth !== undefined && serfHealth.Status !== 'critical';
  if (!(holder.ID === '' && allowClashWithoutId) && healthy) return `Node name ${node.Node} is reserved by node ${holder.ID} with name ${holder.Node} (${holder.Address})`;
  return undefined;
}

/** servicePreApply: the ID defaults to the name; a name is needed with an ID; no wildcard address. */
function preApplyService(input: ServiceRegistration): StoredService {
  const kind = input.Kind ?? '';
  if (kind !== '') throw new CatalogWriteError(`Consulate does not support service kind ${goQuote(kind)} yet: register a typical service (no Kind)`, 400);
  const name = input.Service ?? '';
  const id = input.ID || name;
  if (id !== '' && name === '') throw new CatalogWriteError('Must provide service name (Service.Service) when service ID is provided');
  const address = input.Address ?? '';
  if (address === '0.0.0.0' || address === '::' || address === '[::]') throw new CatalogWriteError('Invalid service address');
  const taggedAddresses: Record<string, TaggedAddress> = {};
  for (const [tag, value] of Object.entries(input.TaggedAddresses ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) taggedAddresses[tag] = { Address: value?.Address ?? '', Port: value?.Port ?? 0 };
  return {
    ID: id,
    Service: name,
    Tags: [...(input.Tags ?? [])],
    Address: address,
    TaggedAddresses: taggedAddresses,
    Meta: sortedRecord(input.Meta),
    Port: input.Port ?? 0,
    // structs.NodeService.ToServiceNode: missing or invalid weights become {1, 1}.
    Weights: input.Weights !== undefined && validWeights(input.Weights) ? { Passing: input.Weights.Passing, Warning: input.Weights.Warning } : { Passing: 1, Warning: 1 },
    EnableTagOverride: input.EnableTagOverride === true,
  };
}

function validWeights(weights: { readonly Passing: number; readonly Warning: number }): boolean {
  return weights.Passing >= 1 && weights.Warning >= 0 && weights.Passing <= 65535 && weights.Warning <= 65535;
}

interface PreparedCheck {
  readonly Node: string;
  readonly CheckID: string;
  readonly ServiceID: string;
  readonly stored: StoredCheck;
}

/** checkPreApply and the Node/Type fill-ins of Catalog.Register. */
function preApplyCheck(input: CheckRegistration, requestNode: string): PreparedCheck {
  const node = input.Node || requestNode;
  const checkId = input.CheckID || input.Name || '';
  const serviceId = input.ServiceID ?? '';
  const stored: StoredCheck = {
    Node: node,
    CheckID: checkId,
    Name: input.Name ?? '',
    Status: (input.Status ?? '') as CheckStatus,
    Notes: input.Notes ?? '',
    Output: input.Output ?? '',
    ServiceID: serviceId,
    ServiceName: '',
    ServiceTags: [],
    Type: input.Type || checkTypeOf(input.Definition),
  };
  return { Node: node, CheckID: checkId, ServiceID: serviceId, stored };
}

/** structs.CheckType.Type() of a check registered with a definition: what the agent would run. */
export function checkTypeOf(definition: CheckDefinition | undefined): string {
  if (definition === undefined) return '';
  const interval = durationNs(definition.Interval);
  const every = (field: string | undefined) => field !== undefined && field !== '' && interval > 0;
  if (every(definition.GRPC)) return 'grpc';
  if (every(definition.HTTP)) return 'http';
  if (durationNs(definition.TTL) > 0) return 'ttl';
  if (every(definition.TCP)) return 'tcp';
  if (every(definition.UDP)) return 'udp';
  if (definition.AliasNode || definition.AliasService) return 'alias';
  const script = (definition.ScriptArgs?.length ?? 0) > 0 && interval > 0;
  if (script && definition.DockerContainerID) return 'docker';
  if (script) return 'script';
  if (every(definition.H2PING)) return 'h2ping';
  if (every(definition.OSService)) return 'os_service';
  return '';
}

function durationNs(value: string | number | undefined): number {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || value === '') return 0;
  return parseGoDuration(value).ns ?? 0;
}

/** structs.validateMetadata for a service (agent/structs/structs.go), Consul's texts. */
export function metadataError(meta: Readonly<Record<string, string>>): string | undefined {
  const entries = Object.entries(meta);
  if (entries.length > 64) return 'Node metadata cannot contain more than 64 key/value pairs';
  for (const [key, value] of entries) {
    let problem: string | undefined;
    if (key === '') problem = 'Key cannot be blank';
    else if (!/^[a-zA-Z0-9_-]+$/.test(key)) problem = 'Key contains invalid characters';
    else if (key.length > 128) problem = 'Key is too long (limit: 128 characters)';
    else if (key.startsWith('consul-')) problem = "Key prefix 'consul-' is reserved for internal use";
    else if (Buffer.byteLength(value) > 512) problem = 'Value is too long (limit: 512 characters)';
    if (problem !== undefined) return `Couldn't load metadata pair ('${key}', '${value}'): ${problem}`;
  }
  return undefined;
}

/** hashicorp/go-uuid ParseUUID's error for a node ID, or undefined when it parses. */
export function uuidError(id: string): string | undefined {
  const bytes = Buffer.from(id, 'utf8');
  if (bytes.length !== 36) return 'uuid string is wrong length';
  if (bytes[8] !== 0x2d || bytes[13] !== 0x2d || bytes[18] !== 0x2d || bytes[23] !== 0x2d) return 'uuid is improperly formatted';
  const hex = Buffer.concat([bytes.subarray(0, 8), bytes.subarray(9, 13), bytes.subarray(14, 18), bytes.subarray(19, 23), bytes.subarray(24, 36)]);
  for (const byte of hex) {
    if (/[0-9a-fA-F]/.test(String.fromCharCode(byte))) continue;
    // encoding/hex.InvalidByteError prints the byte with %#U.
    const code = `U+${byte.toString(16).toUpperCase().padStart(4, '0')}`;
    return byte >= 0x20 && byte < 0x7f ? `encoding/hex: invalid byte: ${code} '${String.fromCharCode(byte)}'` : `encoding/hex: invalid byte: ${code}`;
  }
  return undefined;
}

// ---- Deregister ----

/**
 * Deregisters per fsm applyDeregister's order: a ServiceID removes the service and its checks;
 * else a CheckID removes the check; else the node goes with all its services and checks.
 * Something already gone is not an error, as in Consul.
 *
 * A service's checks are the rows the plan saw; a check another catalog registered for the
 * service just before our txn is not among them. So once the txn has applied, the view is looked
 * at again and such a check is removed by a second txn (none is sent when there is none).
 */
export async function deregister(deps: WriteDeps, request: DeregisterRequest): Promise<Committed<void>> {
  const plan = (p: WritePlan) => {
    planDeregister(p, request);
    return { value: undefined, commit: true };
  };
  const committed = await commitPlan(deps, plan);
  if ((request.ServiceID ?? '') === '') return committed;
  const again = new WritePlan(deps.view);
  planDeregister(again, request);
  return again.hasWrites ? commitPlan(deps, plan) : committed;
}

/** Stages a deregistration in `plan`; throws CatalogWriteError with Consul's text when refused. */
export function planDeregister(plan: WritePlan, request: DeregisterRequest): void {
  const node = request.Node ?? '';
  if (node === '') throw new CatalogWriteError('Must provide node');
  const serviceId = request.ServiceID ?? '';
  const checkId = request.CheckID ?? '';
  if (serviceId !== '') {
    plan.delete(keys.service(node, serviceId));
    // The checks index matches service IDs case-insensitively, as keys do.
    for (const [key, row] of plan.scan(keys.nodeChecks(node))) {
      if (equalFold(decode<StoredCheck>(row.value).ServiceID, serviceId)) plan.delete(key);
    }
    return;
  }
  if (checkId !== '') {
    plan.delete(keys.check(node, checkId));
    return;
  }
  if (read<StoredNode>(plan, keys.node(node)) === undefined) return;
  // Ranges, not the rows we saw: whatever was added under the node meanwhile goes too.
  plan.deletePrefix(keys.nodeServices(node));
  plan.deletePrefix(keys.nodeChecks(node));
  plan.delete(keys.node(node));
}

// ---- Helpers ----

function decode<T>(value: Uint8Array): T {
  return JSON.parse(Buffer.from(value).toString('utf8')) as T;
}

/** A row as the plan sees it (its own staged change, else the view's, remembered for the compare). */
function read<T>(plan: WritePlan, key: string): T | undefined {
  const row = plan.get(key);
  return row === undefined ? undefined : decode<T>(row.value);
}

function write(plan: WritePlan, key: string, value: StoredNode | StoredService | StoredCheck): void {
  plan.put(key, Buffer.from(JSON.stringify(value)));
}

function equalFold(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

function sortedRecord<T>(record: Readonly<Record<string, T>> | undefined): Record<string, T> {
  const out: Record<string, T> = {};
  for (const key of Object.keys(record ?? {}).sort()) out[key] = record![key];
  return out;
}

/** Deep equality with object keys in any order (Go's reflect.DeepEqual on the stored fields). */
export function sameRow(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}
