/**
 * The structs of Consul's Go `api` package (api/kv.go KVPair, api/catalog.go Node, api/health.go
 * ServiceEntry and HealthCheck, api/agent.go AgentService, api/event.go UserEvent): what `consul watch` decodes from an
 * HTTP answer and encodes again for its output. Fields in Go's order, `omitempty` where Go has it,
 * absent fields as Go's zero values, so `marshalIndent` of these prints what Consul prints.
 */
import { GoMap, GoUint } from './go-json';

type Json = Record<string, unknown>;

const str = (value: unknown): string => (typeof value === 'string' ? value : '');
const num = (value: unknown): number => (typeof value === 'number' ? value : 0);
const uint = (value: unknown): GoUint => new GoUint(typeof value === 'string' && /^\d+$/.test(value) ? value : typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? String(value) : '0');
const bool = (value: unknown): boolean => value === true;
/** A Go slice: null stays null (a nil slice). */
const strings = (value: unknown): string[] | null => (Array.isArray(value) ? value.map(str) : null);
/** A Go map[string]string: null stays null (a nil map). */
const stringMap = (value: unknown): GoMap | null => (value !== null && typeof value === 'object' && !Array.isArray(value) ? new GoMap(Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, str(v)]))) : null);
const hasEntries = (value: unknown): boolean => value !== null && typeof value === 'object' && Object.keys(value as Json).length > 0;
const object = (value: unknown): Json => (value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {});

/** api.KVPair. `Flags` arrives as a decimal string (HttpApi's exactIntegers) to stay exact. */
export function kvPair(raw: unknown) {
  const p = object(raw);
  return {
    Key: str(p.Key),
    CreateIndex: num(p.CreateIndex),
    ModifyIndex: num(p.ModifyIndex),
    LockIndex: num(p.LockIndex),
    Flags: uint(p.Flags),
    // []byte: base64, or null when the value is empty.
    Value: typeof p.Value === 'string' && p.Value !== '' ? p.Value : null,
    Session: str(p.Session),
  };
}

/** api.Node. */
export function node(raw: unknown) {
  const n = object(raw);
  return {
    ID: str(n.ID),
    Node: str(n.Node),
    Address: str(n.Address),
    Datacenter: str(n.Datacenter),
    TaggedAddresses: stringMap(n.TaggedAddresses),
    Meta: stringMap(n.Meta),
    CreateIndex: num(n.CreateIndex),
    ModifyIndex: num(n.ModifyIndex),
  };
}

/** api.AgentService as decoded from a structs.NodeService. */
export function agentService(raw: unknown) {
  const s = object(raw);
  const weights = object(s.Weights);
  const service: Json = {};
  if (str(s.Kind) !== '') service.Kind = str(s.Kind);
  Object.assign(service, { ID: str(s.ID), Service: str(s.Service), Tags: strings(s.Tags), Meta: stringMap(s.Meta), Port: num(s.Port), Address: str(s.Address) });
  if (hasEntries(s.TaggedAddresses)) service.TaggedAddresses = new GoMap(object(s.TaggedAddresses));
  Object.assign(service, { Weights: { Passing: num(weights.Passing), Warning: num(weights.Warning) }, EnableTagOverride: bool(s.EnableTagOverride) });
  if (num(s.CreateIndex) !== 0) service.CreateIndex = num(s.CreateIndex);
  if (num(s.ModifyIndex) !== 0) service.ModifyIndex = num(s.ModifyIndex);
  // Pointers: present in the answer, so non-nil; every field of a typical service's is omitempty
  // but the two struct-valued ones.
  if (s.Proxy !== undefined && s.Proxy !== null) service.Proxy = { MeshGateway: {}, Expose: {} };
  if (s.Connect !== undefined && s.Connect !== null) service.Connect = {};
  return service;
}

/** api.HealthCheck; a check the catalog does not run has a zero Definition. */
export function healthCheck(raw: unknown) {
  const c = object(raw);
  return {
    Node: str(c.Node),
    CheckID: str(c.CheckID),
    Name: str(c.Name),
    Status: str(c.Status),
    Notes: str(c.Notes),
    Output: str(c.Output),
    ServiceID: str(c.ServiceID),
    ServiceName: str(c.ServiceName),
    ServiceTags: strings(c.ServiceTags),
    Type: str(c.Type),
    ExposedPort: num(c.ExposedPort),
    // HealthCheckDefinition.MarshalJSON: the three durations first, as strings.
    Definition: { Interval: '0s', Timeout: '0s', DeregisterCriticalServiceAfter: '0s', HTTP: '', Header: null, Method: '', Body: '', TLSServerName: '', TLSSkipVerify: false, TCP: '', UDP: '', GRPC: '', OSService: '', GRPCUseTLS: false },
    CreateIndex: num(c.CreateIndex),
    ModifyIndex: num(c.ModifyIndex),
  };
}

/** api.ServiceEntry: `/v1/health/service/:service`. */
export function serviceEntry(raw: unknown) {
  const e = object(raw);
  return {
    Node: e.Node === null || e.Node === undefined ? null : node(e.Node),
    Service: e.Service === null || e.Service === undefined ? null : agentService(e.Service),
    Checks: Array.isArray(e.Checks) ? e.Checks.map(healthCheck) : null,
  };
}

/** `/v1/catalog/services`: map[string][]string. */
export function serviceTags(raw: unknown): GoMap {
  return new GoMap(Object.fromEntries(Object.entries(object(raw)).map(([name, tags]) => [name, strings(tags)])));
}

/** api.UserEvent (api/event.go): Payload a []byte, base64 in JSON, null when nil. */
export function userEvent(raw: unknown) {
  const e = object(raw);
  return {
    ID: str(e.ID),
    Name: str(e.Name),
    Payload: typeof e.Payload === 'string' && e.Payload !== '' ? e.Payload : null,
    NodeFilter: str(e.NodeFilter),
    ServiceFilter: str(e.ServiceFilter),
    TagFilter: str(e.TagFilter),
    Version: num(e.Version),
    LTime: uint(e.LTime),
  };
}
