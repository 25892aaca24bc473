/**
 * `/v1/kv/*key` (reference/consul-compat.md §4.3; agent/kvs_endpoint.go): GET reads one key, a
 * prefix (`recurse`), or key names (`keys`, cut at `separator`), or the bare value (`raw`), as
 * blocking queries; PUT writes (`flags`, `cas`, `acquire`, `release`) and answers true/false;
 * DELETE deletes one key, a prefix (`recurse`) or one key by `cas`. Every write is one consensus
 * Txn (state/kv-apply.ts). Absent keys are a 404 with an empty body and the index headers.
 */
import { ConsensusClient } from '../../lib/consensus-client';
import { MAX_KV_VALUE_BYTES, kvKeyProblem } from '../state/model';
import { DirEntry, listKvEntries, listKvKeys, readKvEntry } from '../state/kv-reads';
import { KvDeleteOp, KvPutOp, deleteKv, putKv } from '../state/kv-apply';
import { LockDelays } from '../state/lock-delay';
import { ReadDeps, blockingRead, withSignal } from './blocking';
import { goValuesEncode, parseGoUint64 } from '../../lib/go-text';
import { HttpError, badRequest } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter, toJson } from './http-server';
import { parseQueryOptions } from './query-options';

export interface KvEndpointDeps extends ReadDeps {
  readonly datacenter: string;
  readonly consensus: Pick<ConsensusClient, 'kv'>;
  readonly lockDelays: LockDelays;
}

/** Consul's 413 for a value over kv_max_value_size (agent/kvs_endpoint.go KVSPut). */
export function valueTooLarge(length: number): HttpError {
  return new HttpError(413, `Request body(${length} bytes) too large, max size: ${MAX_KV_VALUE_BYTES} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.`);
}

export function registerKvEndpoints(router: HttpRouter, deps: KvEndpointDeps): void {
  router.on(['GET'], '/v1/kv/*key', (request) => getKv(deps, checkKey(request)));
  router.on(['PUT'], '/v1/kv/*key', (request) => putKvEndpoint(deps, checkKey(request)));
  router.on(['DELETE'], '/v1/kv/*key', (request) => deleteKvEndpoint(deps, checkKey(request)));
}

/** Consul's 400 for a key its KV endpoint refuses (path traversal, a leading '/'; and NUL). */
function checkKey(request: HttpRequest): HttpRequest {
  const problem = request.params.key === '' ? undefined : kvKeyProblem(request.params.key);
  if (problem !== undefined) throw badRequest(problem);
  return request;
}

const EMPTY = Buffer.alloc(0);

async function getKv(deps: KvEndpointDeps, { query, params, signal }: HttpRequest): Promise<HttpResult> {
  const options = parseQueryOptions(query, deps.datacenter);
  const key = params.key;
  if (query.has('keys')) {
    // Both spellings: Consul's API once had "seperator", and still takes it.
    let separator = '';
    if (query.has('seperator')) separator = query.get('seperator')!;
    if (query.has('separator')) separator = query.get('separator')!;
    const read = await blockingRead(deps, withSignal(options, signal), ['kvs'], () => listKvKeys(deps.view, key, separator));
    // The root never 404s: it lists nothing.
    if (read.value.length === 0 && key !== '') return { status: 404, body: EMPTY, headers: read.headers };
    return { body: read.value, headers: read.headers };
  }
  if (query.has('recurse')) {
    const read = await blockingRead(deps, withSignal(options, signal), ['kvs'], () => listKvEntries(deps.view, key));
    if (read.value.length === 0) return { status: 404, body: EMPTY, headers: read.headers };
    return { body: read.value, headers: read.headers };
  }
  if (key === '') throw badRequest('Missing key name');
  const read = await blockingRead(deps, withSignal(options, signal), ['kvs'], () => readKvEntry(deps.view, key));
  const { entry, raw } = read.value;
  if (entry === undefined) return { status: 404, body: EMPTY, headers: read.headers };
  if (query.has('raw')) {
    // Consul's headers against a stored value being run as a page (agent/kvs_endpoint.go).
    return { body: Buffer.from(raw ?? EMPTY), contentType: 'text/plain', headers: { ...read.headers, 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff', 'Content-Security-Policy': 'sandbox' } };
  }
  if (query.has('pretty')) return { body: [entry], headers: read.headers };
  return { body: entryJson(entry), contentType: 'application/json', headers: read.headers };
}

/** An entry's JSON answer, encoded once for every read of it (entries are shared: readKvEntry). */
const jsonOfEntry = new WeakMap<DirEntry, Buffer>();

function entryJson(entry: DirEntry): Buffer {
  let json = jsonOfEntry.get(entry);
  if (json === undefined) jsonOfEntry.set(entry, (json = Buffer.from(toJson([entry]))));
  return json;
}

/** conflictingFlags: two of `flags` at once is a 400 naming the whole query, as Consul does. */
function refuseConflictingFlags(query: URLSearchParams, flags: readonly string[]): void {
  if (flags.filter((flag) => query.has(flag)).length > 1) throw badRequest(`Conflicting flags: ${goValuesEncode(query)}\n`);
}

/** strconv.ParseUint of a query parameter; Consul answers a bad one with a 500 and Go's text. */
function uint64Param(query: URLSearchParams, name: string): bigint {
  const parsed = parseGoUint64(query.get(name) ?? '');
  if (parsed.error !== undefined) throw new Error(parsed.error);
  return parsed.value;
}

async function putKvEndpoint(deps: KvEndpointDeps, request: HttpRequest): Promise<HttpResult> {
  const { query, params } = request;
  parseQueryOptions(query, deps.datacenter);
  const key = params.key;
  if (key === '') throw badRequest('Missing key name');
  refuseConflictingFlags(query, ['cas', 'acquire', 'release']);
  const flags = query.has('flags') ? uint64Param(query, 'flags') : 0n;
  let op: KvPutOp = { kind: 'set' };
  if (query.has('cas')) op = { kind: 'cas', index: uint64Param(query, 'cas') };
  if (query.has('acquire')) op = { kind: 'lock', session: query.get('acquire')! };
  if (query.has('release')) op = { kind: 'unlock', session: query.get('release')! };
  const value = await request.body(MAX_KV_VALUE_BYTES, valueTooLarge);
  const { value: done } = await putKv(deps, { key, flags, value }, op);
  return { body: done };
}

async function deleteKvEndpoint(deps: KvEndpointDeps, { query, params }: HttpRequest): Promise<HttpResult> {
  parseQueryOptions(query, deps.datacenter);
  const key = params.key;
  refuseConflictingFlags(query, ['recurse', 'cas']);
  const recurse = query.has('recurse');
  if (!recurse && key === '') throw badRequest('Missing key name');
  const op: KvDeleteOp = query.has('cas') ? { kind: 'delete-cas', index: uint64Param(query, 'cas') } : recurse ? { kind: 'delete-tree' } : { kind: 'delete' };
  const { value: done } = await deleteKv(deps, key, op);
  return { body: done };
}
