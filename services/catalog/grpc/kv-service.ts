/**
 * gRPC adapter for consulate.catalog.v1.KVService: Consul's `/v1/kv` and `/v1/txn` on
 * state/kv-reads.ts, state/kv-apply.ts and state/kv-txn.ts, as the HTTP endpoints use them, and
 * WatchPrefix on watches.ts. A cas or lock that does not hold answers `succeeded: false`, as
 * Consul answers `false` (kv.proto says why).
 */
import { ServerWritableStream } from '@grpc/grpc-js';

import { GetResponse, KVServiceServer, KVVerb, TxnRequest, TxnResponse, WatchPrefixRequest, WatchPrefixResponse } from '../../gen/consulate/catalog/v1/kv';
import { goQuote } from '../../lib/go-text';
import { refuseOtherDatacenter } from '../state/errors';
import { KvPutOp, deleteKv, putKv } from '../state/kv-apply';
import { getKv, listKv, listKvKeys } from '../state/kv-reads';
import { KvVerb } from '../state/kv-writes';
import { MAX_TXN_BYTES, MAX_TXN_OPS, TxnOp, TxnOutcome, readTxn, writeTxn, writesAnything } from '../state/kv-txn';
import { MAX_KV_VALUE_BYTES, kvKeyProblem } from '../state/model';
import { CatalogApiDeps } from './catalog-api';
import { kvEntryMessage } from './proto-shapes';
import { queryRead, readOptionsOf } from './query';
import { invalidArgument, notFound, unary } from './status';

const VERBS: Readonly<Partial<Record<KVVerb, KvVerb>>> = {
  [KVVerb.KV_VERB_SET]: 'set',
  [KVVerb.KV_VERB_CAS]: 'cas',
  [KVVerb.KV_VERB_LOCK]: 'lock',
  [KVVerb.KV_VERB_UNLOCK]: 'unlock',
  [KVVerb.KV_VERB_GET]: 'get',
  [KVVerb.KV_VERB_GET_OR_EMPTY]: 'get-or-empty',
  [KVVerb.KV_VERB_GET_TREE]: 'get-tree',
  [KVVerb.KV_VERB_CHECK_SESSION]: 'check-session',
  [KVVerb.KV_VERB_CHECK_INDEX]: 'check-index',
  [KVVerb.KV_VERB_CHECK_NOT_EXISTS]: 'check-not-exists',
  [KVVerb.KV_VERB_DELETE]: 'delete',
  [KVVerb.KV_VERB_DELETE_CAS]: 'delete-cas',
  [KVVerb.KV_VERB_DELETE_TREE]: 'delete-tree',
};

/** A key Consul's KV endpoint refuses (path traversal, a leading '/', NUL): INVALID_ARGUMENT naming it. */
function refuseBadKey(key: string): void {
  const problem = key === '' ? undefined : kvKeyProblem(key);
  if (problem !== undefined) throw invalidArgument(`key ${goQuote(key)}: ${problem}`);
}

/** Consul's text for a value over the limit (agent/txn_endpoint.go; KVSPut says it of the body). */
function refuseLargeValue(key: string, value: Uint8Array): void {
  if (value.length > MAX_KV_VALUE_BYTES) throw invalidArgument(`Value for key ${goQuote(key)} is too large (${value.length} > ${MAX_KV_VALUE_BYTES} bytes)`);
}

export function kvService(deps: CatalogApiDeps): KVServiceServer {
  const { view, logger } = deps;
  return {
    get: unary(logger, async (call): Promise<GetResponse> => {
      const { key, recurse, keys, separator, query } = call.request;
      refuseBadKey(key);
      if (keys) {
        const read = await queryRead(deps, call, query, ['kvs'], () => listKvKeys(view, key, separator));
        return { entries: [], keys: read.value, meta: read.meta };
      }
      if (recurse) {
        const read = await queryRead(deps, call, query, ['kvs'], () => {
          const { value, index } = listKv(view, key);
          return { value: value.map((entry) => kvEntryMessage(entry)), index };
        });
        return { entries: read.value, keys: [], meta: read.meta };
      }
      if (key === '') throw invalidArgument('Missing key name');
      const read = await queryRead(deps, call, query, ['kvs'], () => getKv(view, key));
      // Consul's words for a key that is not there (its txn `get` verb).
      if (read.value === undefined) throw notFound(`key ${goQuote(key)} doesn't exist`, Number(read.meta.index));
      return { entries: [kvEntryMessage(read.value)], keys: [], meta: read.meta };
    }),

    put: unary(logger, async (call) => {
      const { key, value, flags, condition, datacenter } = call.request;
      refuseOtherDatacenter(datacenter, deps.datacenter);
      if (key === '') throw invalidArgument('Missing key name');
      refuseBadKey(key);
      refuseLargeValue(key, value);
      let op: KvPutOp = { kind: 'set' };
      if (condition?.$case === 'cas') op = { kind: 'cas', index: condition.value };
      if (condition?.$case === 'acquire') op = { kind: 'lock', session: condition.value };
      if (condition?.$case === 'release') op = { kind: 'unlock', session: condition.value };
      const { value: succeeded, revision } = await putKv(deps, { key, flags, value }, op);
      return { succeeded, index: BigInt(revision) };
    }),

    delete: unary(logger, async (call) => {
      const { key, recurse, cas, datacenter } = call.request;
      refuseOtherDatacenter(datacenter, deps.datacenter);
      if (recurse && cas !== undefined) throw invalidArgument('Conflicting flags: recurse and cas: delete a prefix, or one key by cas');
      if (!recurse && key === '') throw invalidArgument('Missing key name');
      refuseBadKey(key);
      const op = cas !== undefined ? ({ kind: 'delete-cas', index: cas } as const) : recurse ? ({ kind: 'delete-tree' } as const) : ({ kind: 'delete' } as const);
      const { value: succeeded, revision } = await deleteKv(deps, key, op);
      return { succeeded, index: BigInt(revision) };
    }),

    txn: unary(logger, async (call): Promise<TxnResponse> => {
      const ops = txnOps(call.request);
      const response = (outcome: TxnOutcome): TxnResponse => ({
        results: outcome.results.map(({ entry, withValue }) => kvEntryMessage(entry, { withValue })),
        errors: outcome.errors.map((error) => ({ opIndex: error.OpIndex, what: error.What })),
        index: BigInt(outcome.revision),
      });
      if (writesAnything(ops)) {
        refuseOtherDatacenter(call.request.query?.datacenter, deps.datacenter);
        return response(await writeTxn(deps, ops));
      }
      const options = readOptionsOf(call.request.query, call, deps.datacenter);
      const { outcome } = await readTxn(deps, ops, options);
      return response(outcome);
    }),

    watchPrefix(call: ServerWritableStream<WatchPrefixRequest, WatchPrefixResponse>) {
      const { prefix, query } = call.request;
      void deps.watches.serve(call, {
        query,
        tables: ['kvs'],
        compute: () => {
          const { value, index } = listKv(view, prefix);
          return { value: value.map((entry) => kvEntryMessage(entry)), index };
        },
        message: (entries, index) => ({ entries, index }),
        encode: (message) => WatchPrefixResponse.encode(message).finish(),
      });
    },
  };
}

/** The request's ops as state/kv-txn.ts runs them, with Consul's limits and texts (txn_endpoint.go convertOps). */
function txnOps(request: TxnRequest): TxnOp[] {
  const bytes = TxnRequest.encode(request).finish().length;
  if (bytes > MAX_TXN_BYTES) throw invalidArgument(`Request body(${bytes} bytes) too large, max size: ${MAX_TXN_BYTES} bytes`);
  if (request.ops.length > MAX_TXN_OPS) throw invalidArgument(`Transaction contains too many operations (${request.ops.length} > ${MAX_TXN_OPS})`);
  return request.ops.map((op, at) => {
    const verb = VERBS[op.verb];
    if (verb === undefined) throw invalidArgument(`operation ${at} has no verb: set one of KVVerb's values`);
    refuseLargeValue(op.key, op.value);
    return { kv: { Verb: verb, Key: op.key, Value: op.value, Flags: op.flags, Index: op.index, Session: op.session } };
  });
}
