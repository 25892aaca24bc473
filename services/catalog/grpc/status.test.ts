/**
 * grpc/status.ts: each state error gets the code of the table in that file (the gRPC litmus test,
 * reference/toolchain.md B1), with its text unchanged.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

import { CatalogWriteError } from '../state/catalog-writes';
import { NoLeaderError, NoPathToDatacenterError, TooManyWaitersError, ViewBehindError, WriteConflictError } from '../state/errors';
import { KvApplyError } from '../state/kv-apply';
import { SessionError } from '../state/sessions';
import { INDEX_TRAILER, notFound, toServiceError } from './status';

const cases: [Error, GrpcStatus][] = [
  [new CatalogWriteError('Must provide node'), GrpcStatus.INVALID_ARGUMENT],
  [new CatalogWriteError("Unknown service ID 'x' for check ID 'y'", 500, 'conflict'), GrpcStatus.FAILED_PRECONDITION],
  [new SessionError("Invalid Behavior setting 'x'"), GrpcStatus.INVALID_ARGUMENT],
  [new SessionError('Missing node registration', 'precondition'), GrpcStatus.FAILED_PRECONDITION],
  [new KvApplyError('missing session', 'missing-session'), GrpcStatus.INVALID_ARGUMENT],
  [new KvApplyError('invalid session "x"', 'invalid-session'), GrpcStatus.FAILED_PRECONDITION],
  [new NoLeaderError(), GrpcStatus.UNAVAILABLE],
  [new ViewBehindError('Not ready to serve consistent reads'), GrpcStatus.UNAVAILABLE],
  [new WriteConflictError('the keys this write reads kept changing under it (10 attempts); retry'), GrpcStatus.ABORTED],
  [new TooManyWaitersError('too many blocking queries on this catalog (50000); retry later'), GrpcStatus.RESOURCE_EXHAUSTED],
  [new NoPathToDatacenterError(), GrpcStatus.NOT_FOUND],
  [new Error('a bug'), GrpcStatus.INTERNAL],
];

test.each(cases.map(([err, code]) => [`${err.name}: ${err.message}`, GrpcStatus[code], err, code] as const))('%s → %s', (_name, _code, err, code) => {
  const failure = toServiceError(err);
  expect({ code: failure.code, details: failure.details }).toEqual({ code, details: err.message });
});

test("a consensus call's own status passes through, said to come from consensus", () => {
  const failure = toServiceError(Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded'), { code: GrpcStatus.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }));
  expect({ code: failure.code, details: failure.details }).toEqual({ code: GrpcStatus.DEADLINE_EXCEEDED, details: 'consensus: Deadline exceeded' });
});

test('NOT_FOUND carries the index in the consulate-index trailer', () => {
  const failure = toServiceError(notFound('key "x" doesn\'t exist', 42));
  expect(failure.metadata?.get(INDEX_TRAILER)).toEqual(['42']);
});
