/** gRPC adapter for consulate.consensus.v1.KVService and LeaseService: validate, run on the node, map errors. */
import { ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';

import { Command } from '../gen/consulate/consensus/v1/command';
import { Consistency, KVServiceServer, ResponseHeader } from '../gen/consulate/consensus/v1/kv';
import { LeaseServiceServer } from '../gen/consulate/consensus/v1/lease';
import { WithoutCalls } from '../lib/call-stream';
import { ConsensusNode } from './consensus-node';
import { toServiceError, timeLeftMs } from './grpc-errors';
import { DEFAULT_KV_LIMITS } from './kv/limits';
import { validateCommand, validateRange } from './kv/validation';

/** The longest a write or a linearizable read waits on Raft, whatever deadline the caller set. */
export const MAX_WAIT_MS = 10_000;

export function unary<Req, Res>(handler: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    handler(call.request, call).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err)),
    );
  };
}

function header(node: ConsensusNode, revision: bigint): ResponseHeader {
  const { term, id } = node.headerInfo();
  return { revision, raftTerm: BigInt(term), member: id };
}

/** `value` with the header at `revision`. Not `{ ...value, header }`, which is slow in V8 (test/checkers/hot-path-spread.test.ts). */
function withHeader<T extends object>(node: ConsensusNode, value: T, revision: bigint): T & { header: ResponseHeader } {
  return Object.assign({}, value, { header: header(node, revision) });
}

/** Proposes `command` and returns the response of the $case it asked for. */
async function write<C extends NonNullable<Command['op']>['$case']>(node: ConsensusNode, command: Command, kind: C, deadline: Date | number | undefined) {
  const checked = validateCommand(command, DEFAULT_KV_LIMITS);
  const result = await node.propose(checked, timeLeftMs(deadline, MAX_WAIT_MS));
  if (!result.ok) throw result.error;
  if (result.response.$case !== kind) throw new Error(`applied a ${kind} and got a ${result.response.$case} response`);
  return { revision: result.revision, value: result.response.value as Extract<typeof result.response, { $case: C }>['value'] };
}

export function kvService(node: ConsensusNode): WithoutCalls<KVServiceServer> {
  return {
    range: unary(async (request, call) => {
      validateRange(request, DEFAULT_KV_LIMITS);
      if (request.consistency !== Consistency.CONSISTENCY_SERIALIZABLE) {
        await node.linearizableRead(request.consistency === Consistency.CONSISTENCY_LEASE ? 'lease' : 'read-index', timeLeftMs(call.getDeadline(), MAX_WAIT_MS));
      }
      const outcome = node.kv.range(request);
      if (!outcome.ok) throw outcome.error;
      return withHeader(node, outcome.response, outcome.revision);
    }),
    put: unary(async (request, call) => {
      const { revision, value } = await write(node, { op: { $case: 'put', value: request } }, 'put', call.getDeadline());
      return withHeader(node, value, revision);
    }),
    deleteRange: unary(async (request, call) => {
      const { revision, value } = await write(node, { op: { $case: 'deleteRange', value: request } }, 'deleteRange', call.getDeadline());
      return withHeader(node, value, revision);
    }),
    txn: unary(async (request, call) => {
      const { revision, value } = await write(node, { op: { $case: 'txn', value: request } }, 'txn', call.getDeadline());
      return withHeader(node, value, revision);
    }),
    compact: unary(async (request, call) => {
      const { revision } = await write(node, { op: { $case: 'compact', value: request } }, 'compact', call.getDeadline());
      return { header: header(node, revision) };
    }),
  };
}

export function leaseService(node: ConsensusNode): WithoutCalls<LeaseServiceServer> {
  return {
    leaseGrant: unary(async (request, call) => {
      const { revision, value } = await write(node, { op: { $case: 'leaseGrant', value: request } }, 'leaseGrant', call.getDeadline());
      return withHeader(node, value, revision);
    }),
    leaseRevoke: unary(async (request, call) => {
      const { revision } = await write(node, { op: { $case: 'leaseRevoke', value: request } }, 'leaseRevoke', call.getDeadline());
      return { header: header(node, revision) };
    }),
    leaseKeepAlive: unary(async (request) => {
      const ttl = node.keepLeaseAlive(request.id);
      // etcd answers an unknown lease with TTL 0 on the keepalive stream, not an error.
      return { header: header(node, node.kv.revision), id: request.id, ttl: ttl ?? 0n };
    }),
    leaseTimeToLive: unary(async (request) => {
      const lease = node.kv.lease(request.id);
      const remaining = node.leaseRemainingSeconds(request.id);
      return {
        header: header(node, node.kv.revision),
        id: request.id,
        ttl: lease === undefined ? -1n : (remaining ?? lease.ttl),
        grantedTtl: lease?.ttl ?? 0n,
        keys: request.keys && lease !== undefined ? [...lease.keys] : [],
      };
    }),
  };
}
