/**
 * One mapping from the consensus role's errors to gRPC statuses (reference/toolchain.md B1,
 * "Status codes"): retry the same call → UNAVAILABLE; fix the request → INVALID_ARGUMENT etc.
 * A refusal for not leading carries the leader in the `consulate-leader` trailer ("id=host:port")
 * so clients go there directly.
 */
import { Metadata, ServerErrorResponse, status as GrpcStatus } from '@grpc/grpc-js';

import { LEADER_TRAILER } from '../lib/consensus-client';
import { InvariantViolation } from '../lib/invariant';
import { NotLeaderError, OutcomeUnknownError, OverloadedError } from './consensus-node';
import { KvError } from './kv/errors';
import { ProposalError } from './raft/raft';

/** On a watch ended by a compaction: the compact revision (watch again after it). */
export const COMPACT_REVISION_TRAILER = 'consulate-compact-revision';
/** On a watch cancelled for falling behind: the first revision it did not get (watch again from it). */
export const RESUME_REVISION_TRAILER = 'consulate-resume-revision';

/** An error that already knows its gRPC status. */
export class StatusError extends Error {
  override readonly name = 'StatusError';
  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

export function toServiceError(err: unknown): ServerErrorResponse {
  const metadata = new Metadata();
  const error = (code: GrpcStatus, details: string): ServerErrorResponse => ({ name: GrpcStatus[code], message: details, code, details, metadata });
  if (err instanceof NotLeaderError) {
    // Always present on a refusal, empty when no leader is known: it tells the client the request
    // was not carried out, so even a write may be retried elsewhere.
    metadata.set(LEADER_TRAILER, err.leader === '' ? '' : `${err.leader}=${err.leaderAddress}`);
    return error(GrpcStatus.UNAVAILABLE, err.message);
  }
  if (err instanceof StatusError) return error(err.code, err.message);
  if (err instanceof OutcomeUnknownError) return error(GrpcStatus.UNAVAILABLE, err.message);
  if (err instanceof OverloadedError) return error(GrpcStatus.RESOURCE_EXHAUSTED, err.message);
  if (err instanceof KvError) {
    if (err.compactRevision !== undefined) metadata.set(COMPACT_REVISION_TRAILER, err.compactRevision.toString());
    if (err.resumeRevision !== undefined) metadata.set(RESUME_REVISION_TRAILER, err.resumeRevision.toString());
    return error(GrpcStatus[err.code], err.detail === undefined ? err.message : `${err.message} (${err.detail})`);
  }
  if (err instanceof ProposalError) {
    const code = { 'not-leader': GrpcStatus.UNAVAILABLE, transferring: GrpcStatus.UNAVAILABLE, 'too-many-uncommitted': GrpcStatus.RESOURCE_EXHAUSTED, 'config-pending': GrpcStatus.UNAVAILABLE, 'config-refused': GrpcStatus.FAILED_PRECONDITION, 'learner-behind': GrpcStatus.UNAVAILABLE }[err.reason];
    return error(code, err.message);
  }
  if (err instanceof InvariantViolation) return error(GrpcStatus.INTERNAL, `internal invariant broken: ${err.message}`);
  return error(GrpcStatus.INTERNAL, err instanceof Error ? err.message : String(err));
}

/** Milliseconds until the call's deadline, capped; the default when the caller set none. */
export function timeLeftMs(deadline: Date | number | undefined, capMs: number): number {
  if (deadline === undefined || deadline === Infinity) return capMs;
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Math.max(1, Math.min(capMs, at - Date.now()));
}
