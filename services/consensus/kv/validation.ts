/**
 * Request checks, in two tiers.
 *
 * `commandError` is structural: what makes a command meaningless whatever the limits (an empty
 * key, a compare with no target, a txn that changes one key twice, a lease TTL outside etcd's
 * bounds). `apply` runs it on every command, since it gives the same answer on every server.
 *
 * `validate*` are what the gRPC layer calls BEFORE proposing: the structural checks plus the
 * limits of limits.ts (key, value, request sizes; ops per txn). They throw a `KvError`, which the
 * adapter maps to a status. `apply` never checks limits: servers may disagree on them (see limits.ts).
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
  TxnRequest,
} from '../../gen/consulate/consensus/v1/kv';
import { LeaseGrantRequest, LeaseRevokeRequest } from '../../gen/consulate/consensus/v1/lease';
import { WatchRequest } from '../../gen/consulate/consensus/v1/watch';
import { KvError, kvErrors } from './errors';
import { KeyRange, inKeyRange, keyOf, keyRangeOf } from './key-range';
import { KvLimits, MAX_LEASE_TTL_SECONDS, MIN_LEASE_TTL_SECONDS } from './limits';

const MAX_INT64 = (1n << 63n) - 1n;

// ---- Structural checks: apply runs these; the same answer on every server. ----

/** Why `command` can never succeed, or undefined. */
export function commandError(command: Command): KvError | undefined {
  const op = command.op;
  switch (op?.$case) {
    case 'put':
      return putError(op.value);
    case 'deleteRange':
      return deleteRangeError(op.value);
    case 'txn':
      return txnError(op.value);
    case 'compact':
      return undefined;
    case 'leaseGrant':
      return leaseGrantError(op.value);
    case 'leaseRevoke':
      return undefined;
    default:
      return kvErrors.invalidRequest('the command names no operation');
  }
}

function putError(request: PutRequest): KvError | undefined {
  if (request.key.length === 0) return kvErrors.keyNotProvided('a put needs a key');
  if (request.lease < 0n) return kvErrors.leaseNotFound(request.lease);
  return undefined;
}

function rangeError(request: RangeRequest): KvError | undefined {
  return request.key.length === 0 ? kvErrors.keyNotProvided('a range needs a key; use "\\0" with range_end "\\0" for every key') : undefined;
}

function deleteRangeError(request: DeleteRangeRequest): KvError | undefined {
  return request.key.length === 0 ? kvErrors.keyNotProvided('a delete needs a key; use "\\0" with range_end "\\0" for every key') : undefined;
}

function compareError(compare: Compare, index: number): KvError | undefined {
  const result = compare.result;
  if (result !== Compare_Result.RESULT_EQUAL && result !== Compare_Result.RESULT_NOT_EQUAL && result !== Compare_Result.RESULT_GREATER && result !== Compare_Result.RESULT_LESS) {
    return kvErrors.invalidRequest(`compare ${index} has result ${result}; use EQUAL, NOT_EQUAL, GREATER or LESS`);
  }
  const target = compare.target;
  if (
    target !== Compare_Target.TARGET_VERSION &&
    target !== Compare_Target.TARGET_CREATE &&
    target !== Compare_Target.TARGET_MOD &&
    target !== Compare_Target.TARGET_VALUE &&
    target !== Compare_Target.TARGET_LEASE
  ) {
    return kvErrors.invalidRequest(`compare ${index} has target ${target}; use VERSION, CREATE, MOD, VALUE or LEASE`);
  }
  return undefined;
}

function opError(op: RequestOp, where: string): KvError | undefined {
  const request = op.request;
  switch (request?.$case) {
    case 'requestRange':
      return rangeError(request.value);
    case 'requestPut':
      return putError(request.value);
    case 'requestDeleteRange':
      return deleteRangeError(request.value);
    default:
      return kvErrors.invalidRequest(`${where} names no request`);
  }
}

/**
 * etcd's checkIntervals, per branch: no key put twice, and no key both put and inside a deleted
 * range. (Deleted ranges may overlap each other.) Each key then changes at most once per revision.
 */
function duplicateKeyError(ops: readonly RequestOp[], branch: string): KvError | undefined {
  const puts = new Set<string>();
  const deletes: KeyRange[] = [];
  for (const op of ops) {
    const request = op.request;
    if (request?.$case === 'requestPut') {
      const key = keyOf(request.value.key);
      if (puts.has(key)) return kvErrors.duplicateKey(`the ${branch} branch puts ${JSON.stringify(key)} twice`);
      puts.add(key);
    } else if (request?.$case === 'requestDeleteRange') {
      deletes.push(keyRangeOf(request.value.key, request.value.rangeEnd));
    }
  }
  if (deletes.length > 0) {
    for (const key of puts) {
      if (deletes.some((range) => inKeyRange(range, key))) return kvErrors.duplicateKey(`the ${branch} branch both puts and deletes ${JSON.stringify(key)}`);
    }
  }
  return undefined;
}

function txnError(request: TxnRequest): KvError | undefined {
  for (let i = 0; i < request.compare.length; i++) {
    const error = compareError(request.compare[i], i);
    if (error !== undefined) return error;
  }
  for (const [branch, ops] of [['success', request.success], ['failure', request.failure]] as const) {
    for (let i = 0; i < ops.length; i++) {
      const error = opError(ops[i], `${branch} op ${i}`);
      if (error !== undefined) return error;
    }
    const duplicate = duplicateKeyError(ops, branch);
    if (duplicate !== undefined) return duplicate;
  }
  return undefined;
}

function leaseGrantError(request: LeaseGrantRequest): KvError | undefined {
  if (request.id < 0n) return kvErrors.invalidRequest(`lease id ${request.id} is negative; use a positive id, or 0 to let the server choose`);
  if (request.ttl > BigInt(MAX_LEASE_TTL_SECONDS)) return kvErrors.leaseTtlTooLarge(request.ttl, MAX_LEASE_TTL_SECONDS);
  if (request.ttl < BigInt(MIN_LEASE_TTL_SECONDS)) return kvErrors.invalidRequest(`lease ttl ${request.ttl} s is below ${MIN_LEASE_TTL_SECONDS} s`);
  return undefined;
}

// ---- Before proposing: structure and limits. These throw. ----

function fail(error: KvError | undefined): void {
  if (error !== undefined) throw error;
}

function checkKey(key: Uint8Array, limits: KvLimits, what: string): void {
  if (key.length > limits.maxKeyBytes) throw kvErrors.requestTooLarge(`${what} is ${key.length} bytes; the limit is ${limits.maxKeyBytes} (maxKeyBytes)`);
}

function checkValue(value: Uint8Array, limits: KvLimits): void {
  if (value.length > limits.maxValueBytes) throw kvErrors.requestTooLarge(`the value is ${value.length} bytes; the limit is ${limits.maxValueBytes} (maxValueBytes)`);
}

function checkRequestBytes(bytes: number, limits: KvLimits): void {
  if (bytes > limits.maxRequestBytes) throw kvErrors.requestTooLarge(`the request carries ${bytes} bytes of keys and values; the limit is ${limits.maxRequestBytes} (maxRequestBytes)`);
}

function rangeLimits(request: RangeRequest | DeleteRangeRequest, limits: KvLimits): number {
  checkKey(request.key, limits, 'the key');
  checkKey(request.rangeEnd, limits, 'the range end');
  return request.key.length + request.rangeEnd.length;
}

function putLimits(request: PutRequest, limits: KvLimits): number {
  checkKey(request.key, limits, 'the key');
  checkValue(request.value, limits);
  return request.key.length + request.value.length;
}

export function validateRange(request: RangeRequest, limits: KvLimits): void {
  fail(rangeError(request));
  rangeLimits(request, limits);
}

export function validatePut(request: PutRequest, limits: KvLimits): void {
  fail(putError(request));
  checkRequestBytes(putLimits(request, limits), limits);
}

export function validateDeleteRange(request: DeleteRangeRequest, limits: KvLimits): void {
  fail(deleteRangeError(request));
  rangeLimits(request, limits);
}

export function validateTxn(request: TxnRequest, limits: KvLimits): void {
  // etcd counts each list against --max-txn-ops on its own.
  for (const [what, count] of [['compares', request.compare.length], ['success ops', request.success.length], ['failure ops', request.failure.length]] as const) {
    if (count > limits.maxTxnOps) throw kvErrors.tooManyOps(`the txn has ${count} ${what}; the limit is ${limits.maxTxnOps} (maxTxnOps)`);
  }
  fail(txnError(request));
  let bytes = 0;
  for (const compare of request.compare) {
    checkKey(compare.key, limits, 'a compare key');
    bytes += compare.key.length;
    if (compare.targetUnion?.$case === 'value') {
      checkValue(compare.targetUnion.value, limits);
      bytes += compare.targetUnion.value.length;
    }
  }
  for (const op of [...request.success, ...request.failure]) {
    const r = op.request!;
    bytes += r.$case === 'requestPut' ? putLimits(r.value, limits) : rangeLimits(r.value, limits);
  }
  checkRequestBytes(bytes, limits);
}

/** Checks a grant and returns the one to propose: a TTL below `minLeaseTtlSeconds` raised to it, as etcd does. */
export function validateLeaseGrant(request: LeaseGrantRequest, limits: KvLimits): LeaseGrantRequest {
  const minimum = BigInt(limits.minLeaseTtlSeconds);
  const normalized = request.ttl < minimum ? Object.assign({}, request, { ttl: minimum }) : request;
  fail(leaseGrantError(normalized));
  return normalized;
}

export function validateLeaseRevoke(request: LeaseRevokeRequest): void {
  if (request.id <= 0n || request.id > MAX_INT64) throw kvErrors.leaseNotFound(request.id);
}

export function validateWatch(request: WatchRequest, limits: KvLimits): void {
  if (request.key.length === 0) throw kvErrors.keyNotProvided('a watch needs a key; use "\\0" with range_end "\\0" for every key');
  checkKey(request.key, limits, 'the key');
  checkKey(request.rangeEnd, limits, 'the range end');
}

/** Checks a command and returns the one to propose (see validateLeaseGrant). */
export function validateCommand(command: Command, limits: KvLimits): Command {
  const op = command.op;
  switch (op?.$case) {
    case 'put':
      validatePut(op.value, limits);
      return command;
    case 'deleteRange':
      validateDeleteRange(op.value, limits);
      return command;
    case 'txn':
      validateTxn(op.value, limits);
      return command;
    case 'compact':
      // Any revision is well-formed; apply answers compacted or future, as etcd does.
      return command;
    case 'leaseGrant':
      return { op: { $case: 'leaseGrant', value: validateLeaseGrant(op.value, limits) } };
    case 'leaseRevoke':
      validateLeaseRevoke(op.value);
      return command;
    default:
      throw kvErrors.invalidRequest('the command names no operation');
  }
}
