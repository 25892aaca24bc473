/**
 * The checks the gRPC layer runs before proposing, with etcd's messages (api/v3rpc/rpctypes) and
 * limits (--max-txn-ops, --max-request-bytes, MaxLeaseTTL).
 */
import { command, compare, deleteRequest, op, putRequest, rangeRequest, watchRequest } from './command-builders';
import { KvError } from './errors';
import { DEFAULT_KV_LIMITS, kvLimits } from './limits';
import { validateCommand, validateDeleteRange, validateLeaseGrant, validateLeaseRevoke, validatePut, validateRange, validateTxn, validateWatch } from './validation';

const limits = DEFAULT_KV_LIMITS;

function errorOf(check: () => unknown): KvError {
  try {
    check();
  } catch (error) {
    if (error instanceof KvError) return error;
    throw error;
  }
  throw new Error('expected a KvError');
}

describe('keys and values', () => {
  test('an empty key is "etcdserver: key is not provided" (INVALID_ARGUMENT) for put, range, delete and watch', () => {
    for (const check of [
      () => validatePut(putRequest('', 'v'), limits),
      () => validateRange(rangeRequest(''), limits),
      () => validateDeleteRange(deleteRequest(''), limits),
      () => validateWatch(watchRequest(''), limits),
    ]) {
      const error = errorOf(check);
      expect([error.code, error.message]).toEqual(['INVALID_ARGUMENT', 'etcdserver: key is not provided']);
    }
  });

  test('a key over 1.5 KiB is "etcdserver: request is too large", naming the limit', () => {
    validatePut(putRequest('k'.repeat(1536), 'v'), limits);
    const error = errorOf(() => validatePut(putRequest('k'.repeat(1537), 'v'), limits));
    expect([error.code, error.message]).toEqual(['INVALID_ARGUMENT', 'etcdserver: request is too large']);
    expect(error.detail).toBe('the key is 1537 bytes; the limit is 1536 (maxKeyBytes)');
  });

  test('a value over 512 KiB + 1 KiB (a Consul value and its catalog envelope) is "etcdserver: request is too large"', () => {
    validatePut(putRequest('k', Buffer.alloc(512 * 1024 + 1024)), limits);
    expect(errorOf(() => validatePut(putRequest('k', Buffer.alloc(512 * 1024 + 1024 + 1)), limits)).message).toBe('etcdserver: request is too large');
  });

  test('limits are the server\'s own: a smaller maxValueBytes refuses earlier', () => {
    expect(() => validatePut(putRequest('k', 'abcdef'), kvLimits({ maxValueBytes: 5 }))).toThrow(KvError);
  });
});

describe('txn', () => {
  test('more than 128 ops in a branch, or 128 compares, is "etcdserver: too many operations in txn request"', () => {
    const ops = (n: number) => Array.from({ length: n }, (_, i) => op.put(`k${i}`, 'v'));
    validateTxn({ compare: [], success: ops(128), failure: ops(128) }, limits);
    for (const txn of [command.txn([], ops(129)), command.txn([], [], ops(129)), command.txn(Array.from({ length: 129 }, () => compare.version('a', 'EQUAL', 0)), [])]) {
      const error = errorOf(() => validateCommand(txn, limits));
      expect([error.code, error.message]).toEqual(['INVALID_ARGUMENT', 'etcdserver: too many operations in txn request']);
    }
  });

  test('a txn carrying more than maxRequestBytes in all is too large, though each value fits', () => {
    const big = Buffer.alloc(400 * 1024);
    const txn = command.txn([], [op.put('a', big), op.put('b', big), op.put('c', big), op.put('d', big)]);
    expect(errorOf(() => validateCommand(txn, limits)).detail).toContain('maxRequestBytes');
  });

  test('duplicate keys are refused before proposing, per branch', () => {
    expect(errorOf(() => validateCommand(command.txn([], [op.put('a', '1'), op.put('a', '2')]), limits)).message).toBe('etcdserver: duplicate key given in txn request');
    // The same key in both branches is fine: only one runs.
    validateCommand(command.txn([], [op.put('a', '1')], [op.put('a', '2')]), limits);
  });
});

describe('leases', () => {
  test('a TTL below the minimum is raised to it, as etcd does; above MaxLeaseTTL is "etcdserver: too large lease TTL" (OUT_OF_RANGE)', () => {
    expect(validateLeaseGrant({ ttl: 0n, id: 0n }, kvLimits({ minLeaseTtlSeconds: 5 }))).toEqual({ ttl: 5n, id: 0n });
    expect(validateLeaseGrant({ ttl: 60n, id: 3n }, limits)).toEqual({ ttl: 60n, id: 3n });
    const error = errorOf(() => validateLeaseGrant({ ttl: 9_000_000_001n, id: 0n }, limits));
    expect([error.code, error.message]).toEqual(['OUT_OF_RANGE', 'etcdserver: too large lease TTL']);
  });

  test('validateCommand returns the grant to propose, TTL raised', () => {
    expect(validateCommand(command.grant(0), kvLimits({ minLeaseTtlSeconds: 3 }))).toEqual(command.grant(3));
  });

  test('a negative lease id is refused; revoking id 0 is "etcdserver: requested lease not found"', () => {
    expect(errorOf(() => validateLeaseGrant({ ttl: 10n, id: -1n }, limits)).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => validateLeaseRevoke({ id: 0n })).message).toBe('etcdserver: requested lease not found');
  });
});

describe('limits config', () => {
  test('a bad field throws naming the field and the fix', () => {
    expect(() => kvLimits({ maxWatchers: 0 })).toThrow('kv limits: maxWatchers is 0; set it to a whole number of at least 1 (default 100000)');
    expect(() => kvLimits({ maxValueBytes: 2 * 1024 * 1024 })).toThrow('raise maxRequestBytes');
  });
});
