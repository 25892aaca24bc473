/**
 * `PUT /v1/txn` (agent/txn_endpoint.go): the body's limits and decoding, with Consul's texts, then
 * the transaction as state/kv-txn.ts runs it: up to 128 KV operations, all or nothing. Any failed
 * op fails the whole transaction: 409 with `{"Results": null, "Errors": [{"OpIndex", "What"}]}`.
 */
import { ConsensusClient } from '../../lib/consensus-client';
import { dirEntry } from '../state/kv-reads';
import { MAX_TXN_BYTES, MAX_TXN_OPS, TxnOp, TxnOutcome, readTxn, writeTxn, writesAnything } from '../state/kv-txn';
import { LockDelays } from '../state/lock-delay';
import { MAX_KV_VALUE_BYTES } from '../state/model';
import { ReadDeps } from './blocking';
import { GoJsonError, decodeGoJson, go } from './go-decode';
import { goQuote } from '../../lib/go-text';
import { HttpError } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { parseQueryOptions } from './query-options';

export { MAX_TXN_OPS } from '../state/kv-txn';

export interface TxnEndpointDeps extends ReadDeps {
  readonly datacenter: string;
  readonly consensus: Pick<ConsensusClient, 'kv'>;
  readonly lockDelays: LockDelays;
}

/** txn_max_req_len's default (raft.SuggestedMaxDataSize), the whole body. */
export const TXN_MAX_REQ_LEN = MAX_TXN_BYTES;
const TXN_LIMIT_DOCS = 'https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len';

/** api.TxnOps, decoded as lib.DecodeJSON does (unknown fields refused). */
const TXN_OPS_TYPE = go.slice(
  go.struct('api.TxnOp', {
    KV: go.pointer('api.KVTxnOp', {
      Verb: go.string('api.KVOp'),
      Key: go.string(),
      Value: go.bytes(),
      Flags: go.uint64(),
      Index: go.uint64(),
      Session: go.string(),
      Namespace: go.string(),
      Partition: go.string(),
    }),
    Node: go.any(),
    Service: go.any(),
    Check: go.any(),
  }),
  'api.TxnOps',
);

interface DecodedKvOp {
  Verb: string;
  Key: string;
  Value?: Buffer;
  Flags: bigint;
  Index: bigint;
  Session: string;
}

export function registerTxnEndpoints(router: HttpRouter, deps: TxnEndpointDeps): void {
  router.on(['PUT'], '/v1/txn', (request) => txn(deps, request));
}

async function txn(deps: TxnEndpointDeps, request: HttpRequest): Promise<HttpResult> {
  const ops = await convertOps(request);
  const { query } = request;

  if (!writesAnything(ops)) {
    // Txn.Read: at the asked consistency, never blocking, with LastContact and KnownLeader only.
    const options = parseQueryOptions(query, deps.datacenter);
    const { outcome, knownLeader, lastContactMs } = await readTxn(deps, ops, options);
    const body = {
      ...response(outcome),
      // structs.TxnReadResponse embeds QueryMeta, so its fields are in the body too.
      Index: 0,
      LastContact: lastContactMs * 1e6,
      KnownLeader: knownLeader,
      ConsistencyLevel: '',
      NotModified: false,
      Backend: 0,
      ResultsFilteredByACLs: false,
    };
    return { status: outcome.errors.length > 0 ? 409 : 200, body, headers: { 'X-Consul-LastContact': String(lastContactMs), 'X-Consul-KnownLeader': String(knownLeader) } };
  }

  const outcome = await writeTxn(deps, ops);
  return { status: outcome.errors.length > 0 ? 409 : 200, body: response(outcome) };
}

/** txn_endpoint.go convertOps: the body's limits, its decoding, and Consul's texts for both. */
async function convertOps(request: HttpRequest): Promise<TxnOp[]> {
  const declared = request.headers['content-length'] !== undefined;
  const body = await request.body(TXN_MAX_REQ_LEN, (length) =>
    declared
      ? new HttpError(413, `Request body(${length} bytes) too large, max size: ${TXN_MAX_REQ_LEN} bytes. See ${TXN_LIMIT_DOCS}.`)
      : new HttpError(413, `Request body too large, max size: ${TXN_MAX_REQ_LEN} bytes. See ${TXN_LIMIT_DOCS}.`),
  );
  let decoded: ({ KV?: DecodedKvOp; Node?: unknown; Service?: unknown; Check?: unknown } | undefined)[];
  try {
    decoded = (decodeGoJson(body, TXN_OPS_TYPE, { disallowUnknownFields: true }) as typeof decoded | undefined) ?? [];
  } catch (err) {
    if (err instanceof GoJsonError) throw new HttpError(400, `Failed to parse body: ${err.message}`);
    throw err;
  }
  if (decoded.length > MAX_TXN_OPS) throw new HttpError(413, `Transaction contains too many operations (${decoded.length} > ${MAX_TXN_OPS})`);
  const ops: TxnOp[] = [];
  for (const op of decoded) {
    if (op === undefined) continue;
    if (op.KV !== undefined) {
      const kv = op.KV;
      const size = kv.Value?.length ?? 0;
      if (size > MAX_KV_VALUE_BYTES) throw new HttpError(413, `Value for key ${goQuote(kv.Key)} is too large (${size} > ${MAX_KV_VALUE_BYTES} bytes)`);
      ops.push({ kv: { Verb: kv.Verb, Key: kv.Key, Value: kv.Value ?? Buffer.alloc(0), Flags: kv.Flags, Index: kv.Index, Session: kv.Session } });
    } else if (op.Node !== undefined && op.Node !== null) ops.push({ unsupported: 'Node' });
    else if (op.Service !== undefined && op.Service !== null) ops.push({ unsupported: 'Service' });
    else if (op.Check !== undefined && op.Check !== null) ops.push({ unsupported: 'Check' });
    // An op with nothing in it is dropped, as convertOps drops it (later OpIndexes shift).
  }
  return ops;
}

/** structs.TxnResponse: results with the committed indexes, or the errors and no results. */
function response(outcome: TxnOutcome) {
  if (outcome.errors.length > 0) return { Results: null, Errors: outcome.errors };
  return {
    Results: outcome.results.map(({ entry, withValue }) => ({ KV: dirEntry(entry.key, entry.kv, entry.createIndex, entry.modifyIndex, { withValue }) })),
    Errors: null,
  };
}
