/**
 * How a catalog gRPC call ends: its answer, or a status code chosen by the gRPC litmus test
 * (reference/toolchain.md B1, "Status codes") with Consul's text as the message:
 *
 * | what happened                                                   | code                |
 * |-----------------------------------------------------------------|---------------------|
 * | a request that can never succeed as sent ("Must provide node")  | INVALID_ARGUMENT    |
 * | the catalog's state refuses it: a check for an unregistered     | FAILED_PRECONDITION |
 * |   service, a reserved node name, a session's missing node, a    |                     |
 * |   lock for a session that does not exist                        |                     |
 * | one named thing that does not exist (a node, a key, a session)  | NOT_FOUND + index   |
 * | another datacenter with no path there ("No path to datacenter") | NOT_FOUND           |
 * | no consensus leader ("No cluster leader"), the view behind it,  | UNAVAILABLE         |
 * |   the catalog shutting down: retry the same call                |                     |
 * | a write whose rows kept changing under it: retry the write      | ABORTED             |
 * | a limit of this catalog (blocking queries, watches)             | RESOURCE_EXHAUSTED  |
 *
 * A call for another datacenter is forwarded before any handler runs (remote-datacenter.ts, which
 * has the table of how forwarding fails: the same codes, with Consul's texts).
 *
 * A cas or lock that does not hold is no error: the answer says `succeeded: false`, as Consul's
 * `false` (kv.proto). A NOT_FOUND read carries its index in the `consulate-index` trailer, so a
 * client can block (min_index) until the thing appears.
 */
import { Metadata, ServerErrorResponse, ServerUnaryCall, handleUnaryCall, status as GrpcStatus } from '@grpc/grpc-js';

import { Logger } from '../../lib/log';
import { CatalogWriteError } from '../state/catalog-writes';
import { NoLeaderError, NoPathToDatacenterError, TooManyWaitersError, ViewBehindError, WriteConflictError } from '../state/errors';
import { KvApplyError } from '../state/kv-apply';
import { SessionError } from '../state/sessions';

/** The trailer with the index of a NOT_FOUND read. */
export const INDEX_TRAILER = 'consulate-index';

/** An error that already knows its status (the adapters' own refusals). */
export class StatusError extends Error {
  override readonly name = 'StatusError';
  constructor(
    readonly code: GrpcStatus,
    message: string,
    readonly trailers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export const invalidArgument = (message: string) => new StatusError(GrpcStatus.INVALID_ARGUMENT, message);

/** One named thing is not there; `index` is what a blocking read would wait past. */
export const notFound = (message: string, index: number) => new StatusError(GrpcStatus.NOT_FOUND, message, { [INDEX_TRAILER]: String(index) });

/** The status for `err`; undefined code means a bug or an unexpected failure (INTERNAL). */
export function toServiceError(err: unknown): ServerErrorResponse {
  const metadata = new Metadata();
  const error = (code: GrpcStatus, details: string): ServerErrorResponse => ({ name: GrpcStatus[code], message: details, code, details, metadata });
  if (err instanceof StatusError) {
    for (const [key, value] of Object.entries(err.trailers)) metadata.set(key, value);
    return error(err.code, err.message);
  }
  if (err instanceof CatalogWriteError) return error(err.reason === 'conflict' ? GrpcStatus.FAILED_PRECONDITION : GrpcStatus.INVALID_ARGUMENT, err.message);
  if (err instanceof SessionError) return error(err.reason === 'precondition' ? GrpcStatus.FAILED_PRECONDITION : GrpcStatus.INVALID_ARGUMENT, err.message);
  if (err instanceof KvApplyError) return error(err.reason === 'invalid-session' ? GrpcStatus.FAILED_PRECONDITION : GrpcStatus.INVALID_ARGUMENT, err.message);
  if (err instanceof NoLeaderError || err instanceof ViewBehindError) return error(GrpcStatus.UNAVAILABLE, err.message);
  if (err instanceof WriteConflictError) return error(GrpcStatus.ABORTED, err.message);
  if (err instanceof TooManyWaitersError) return error(GrpcStatus.RESOURCE_EXHAUSTED, err.message);
  if (err instanceof NoPathToDatacenterError) return error(GrpcStatus.NOT_FOUND, err.message);
  // A consensus call's own status (UNAVAILABLE when a write's outcome is unknown, a deadline, a
  // lease gone): the same code, said to come from consensus.
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'number' && code > GrpcStatus.OK && code <= GrpcStatus.UNAUTHENTICATED) return error(code, `consensus: ${(err as { details?: string }).details ?? (err as Error).message}`);
  return error(GrpcStatus.INTERNAL, err instanceof Error ? err.message : String(err));
}

/** A unary handler from an async function: its value, or its error as a status (INTERNAL logged). */
export function unary<Req, Res>(logger: Logger, handler: (call: ServerUnaryCall<Req, Res>) => Promise<Res>): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handler(call).then(
      (response) => callback(null, response),
      (err: unknown) => {
        const failure = toServiceError(err);
        if (failure.code === GrpcStatus.INTERNAL) logger.error({ err, method: call.getPath() }, `${call.getPath()} failed: ${failure.details}`);
        callback(failure);
      },
    );
  };
}
