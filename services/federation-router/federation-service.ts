/**
 * gRPC adapter for consulate.router.v1.FederationService, on 8300. Every call must come over a
 * connection our TLS listener accepted, and the datacenter the caller claims must be the one its
 * certificate names (Consul's verify_server_hostname); otherwise the call is refused and logged.
 */
import { Metadata, ServerErrorResponse, ServerUnaryCall, sendUnaryData, status as GrpcStatus } from '@grpc/grpc-js';

import { WithoutCalls } from '../lib/call-stream';
import { FederationServiceServer } from '../gen/consulate/router/v1/federation';
import { Logger } from '../lib/log';
import { Federation } from './federation';
import { ForwardError, Forwarder, answerMetadata, cancelledSignal, deadlineMsOf } from './forwarder';
import { DATACENTER_METADATA } from './peer-clients';
import { MutualTlsListener } from './tls-listener';

export interface FederationServiceDeps {
  readonly datacenter: string;
  readonly node: string;
  readonly federation: Federation;
  readonly forwarder: Forwarder;
  readonly listener: () => MutualTlsListener | undefined;
  readonly logger: Logger;
}

export function federationService(deps: FederationServiceDeps): WithoutCalls<FederationServiceServer> {
  /** The caller's datacenter, checked; or undefined after answering the call with a refusal. */
  const caller = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<never>): string | undefined => {
    const peer = call.getPeer();
    const certified = deps.listener()?.datacenterOf(peer);
    const claimed = String(call.metadata.get(DATACENTER_METADATA)[0] ?? '');
    if (certified === undefined) {
      callback(refusal(GrpcStatus.UNAUTHENTICATED, 'not a mutual TLS connection'));
      return undefined;
    }
    if (claimed !== certified) {
      deps.logger.warn({ peer, claimed, certified }, `refused a call from ${peer}: it claims datacenter "${claimed}" but its certificate is for "${certified}"`);
      callback(refusal(GrpcStatus.PERMISSION_DENIED, `datacenter "${claimed}" does not match the certificate's datacenter "${certified}"`));
      return undefined;
    }
    return certified;
  };

  return {
    packet(call, callback) {
      const from = caller(call, callback);
      if (from === undefined) return;
      const pool = deps.federation.poolFor(call.request.pool, from);
      if ('error' in pool) return callback(refusal(GrpcStatus.NOT_FOUND, pool.error));
      pool.deliverPacket(call.request.from, call.request.packet);
      callback(null, {});
    },
    pushPull(call, callback) {
      const from = caller(call, callback);
      if (from === undefined) return;
      const pool = deps.federation.poolFor(call.request.pool, from);
      if ('error' in pool) return callback(refusal(GrpcStatus.NOT_FOUND, pool.error));
      try {
        callback(null, { frame: Buffer.from(pool.answerStream(call.request.from, call.request.frame)) });
      } catch (err) {
        callback(refusal(GrpcStatus.UNAVAILABLE, (err as Error).message));
      }
    },
    forward(call, callback) {
      const from = caller(call, callback);
      if (from === undefined) return;
      const request = call.request.forward;
      if (request === undefined) return callback(refusal(GrpcStatus.INVALID_ARGUMENT, 'a forward needs a request'));
      const deadlineMs = deadlineMsOf(call);
      const cancelled = cancelledSignal(call);
      deps.forwarder.forward(request, deadlineMs, call.request.visited, from, cancelled.signal).then(
        (forward) => callback(null, { forward }),
        (err: Error) => callback(forwardFailure(err)),
      ).finally(cancelled.done);
    },
    ping(call, callback) {
      if (caller(call, callback) === undefined) return;
      callback(null, { node: deps.node, datacenter: deps.datacenter });
    },
  };
}

/** A ForwardError travels as the router's answer; anything else as an internal error. */
export function forwardFailure(err: Error): ServerErrorResponse {
  if (err instanceof ForwardError) return refusal(err.code, err.message);
  return refusal(GrpcStatus.INTERNAL, err.message);
}

function refusal(code: GrpcStatus, details: string): ServerErrorResponse {
  const metadata: Metadata = answerMetadata();
  return Object.assign(new Error(details), { code, details, metadata });
}
