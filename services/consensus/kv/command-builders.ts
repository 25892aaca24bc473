/**
 * Short constructors for commands and requests, for tests, the simulator and tools that write
 * to the store, so `put('a', '1')` reads as etcdctl does rather than as a page of protobuf
 * fields. Strings are UTF-8; pass a Uint8Array for arbitrary bytes.
 */
import { Command } from '../../gen/consulate/consensus/v1/command';
import {
  Compare,
  Compare_Result,
  Compare_Target,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  RequestOp,
} from '../../gen/consulate/consensus/v1/kv';
import { WatchRequest } from '../../gen/consulate/consensus/v1/watch';

export type Bytes = string | Uint8Array;

export function bytes(b: Bytes): Buffer {
  return typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b);
}

/** The range_end that makes a range every key >= its key. */
export const FROM_KEY = '\0';

export function putRequest(key: Bytes, value: Bytes, options: { lease?: bigint; prevKv?: boolean } = {}): PutRequest {
  return { key: bytes(key), value: bytes(value), lease: options.lease ?? 0n, prevKv: options.prevKv ?? false };
}

export function deleteRequest(key: Bytes, rangeEnd: Bytes = '', options: { prevKv?: boolean } = {}): DeleteRangeRequest {
  return { key: bytes(key), rangeEnd: bytes(rangeEnd), prevKv: options.prevKv ?? false };
}

export function rangeRequest(
  key: Bytes,
  rangeEnd: Bytes = '',
  options: { limit?: number; revision?: number | bigint; keysOnly?: boolean; countOnly?: boolean } = {},
): RangeRequest {
  return {
    key: bytes(key),
    rangeEnd: bytes(rangeEnd),
    limit: BigInt(options.limit ?? 0),
    revision: BigInt(options.revision ?? 0),
    consistency: 0,
    keysOnly: options.keysOnly ?? false,
    countOnly: options.countOnly ?? false,
  };
}

export function watchRequest(key: Bytes, rangeEnd: Bytes = '', options: { startRevision?: number | bigint; prevKv?: boolean } = {}): WatchRequest {
  return { key: bytes(key), rangeEnd: bytes(rangeEnd), startRevision: BigInt(options.startRevision ?? 0), prevKv: options.prevKv ?? false };
}

export const command = {
  put: (key: Bytes, value: Bytes, options?: { lease?: bigint; prevKv?: boolean }): Command => ({ op: { $case: 'put', value: putRequest(key, value, options) } }),
  delete: (key: Bytes, rangeEnd?: Bytes, options?: { prevKv?: boolean }): Command => ({ op: { $case: 'deleteRange', value: deleteRequest(key, rangeEnd, options) } }),
  txn: (compare: Compare[], success: RequestOp[], failure: RequestOp[] = []): Command => ({ op: { $case: 'txn', value: { compare, success, failure } } }),
  compact: (revision: number | bigint): Command => ({ op: { $case: 'compact', value: { revision: BigInt(revision) } } }),
  grant: (ttl: number | bigint, id: number | bigint = 0): Command => ({ op: { $case: 'leaseGrant', value: { ttl: BigInt(ttl), id: BigInt(id) } } }),
  revoke: (id: number | bigint): Command => ({ op: { $case: 'leaseRevoke', value: { id: BigInt(id) } } }),
};

export const op = {
  range: (...args: Parameters<typeof rangeRequest>): RequestOp => ({ request: { $case: 'requestRange', value: rangeRequest(...args) } }),
  put: (...args: Parameters<typeof putRequest>): RequestOp => ({ request: { $case: 'requestPut', value: putRequest(...args) } }),
  delete: (...args: Parameters<typeof deleteRequest>): RequestOp => ({ request: { $case: 'requestDeleteRange', value: deleteRequest(...args) } }),
};

type Result = 'EQUAL' | 'NOT_EQUAL' | 'GREATER' | 'LESS';

const RESULTS: Record<Result, Compare_Result> = {
  EQUAL: Compare_Result.RESULT_EQUAL,
  NOT_EQUAL: Compare_Result.RESULT_NOT_EQUAL,
  GREATER: Compare_Result.RESULT_GREATER,
  LESS: Compare_Result.RESULT_LESS,
};

/** Compares as clientv3 writes them: `compare.version('k', 'EQUAL', 0)` is "k does not exist". */
export const compare = {
  version: (key: Bytes, result: Result, version: number | bigint): Compare => ({
    key: bytes(key),
    result: RESULTS[result],
    target: Compare_Target.TARGET_VERSION,
    targetUnion: { $case: 'version', value: BigInt(version) },
  }),
  create: (key: Bytes, result: Result, revision: number | bigint): Compare => ({
    key: bytes(key),
    result: RESULTS[result],
    target: Compare_Target.TARGET_CREATE,
    targetUnion: { $case: 'createRevision', value: BigInt(revision) },
  }),
  mod: (key: Bytes, result: Result, revision: number | bigint): Compare => ({
    key: bytes(key),
    result: RESULTS[result],
    target: Compare_Target.TARGET_MOD,
    targetUnion: { $case: 'modRevision', value: BigInt(revision) },
  }),
  value: (key: Bytes, result: Result, value: Bytes): Compare => ({
    key: bytes(key),
    result: RESULTS[result],
    target: Compare_Target.TARGET_VALUE,
    targetUnion: { $case: 'value', value: bytes(value) },
  }),
  lease: (key: Bytes, result: Result, lease: number | bigint): Compare => ({
    key: bytes(key),
    result: RESULTS[result],
    target: Compare_Target.TARGET_LEASE,
    targetUnion: { $case: 'lease', value: BigInt(lease) },
  }),
};
