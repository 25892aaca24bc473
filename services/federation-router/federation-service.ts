/**
 * gRPC adapter for consulate.router.v1.FederationService, on 8300. Every call must come over a
 * connection our TLS listener accepted, and the datacenter the caller claims must be the one its
 * certificate names (Consul's verify_server_hostname); otherwise the call is refused and logged.
 */
import { Metadata, ServerErrorResponse, ServerUnaryCall, ServerWritableStream, handleUnaryCall, status as GrpcStatus } from '@grpc/grpc-js';

import { WithoutCalls } from '../lib/call-stream';
import { callCancellation } from '../lib/cancellation';
import { FederationServiceServer, FederationServiceService } from '../gen/consulate/router/v1/federation';
import { ForwardRequest } from '../gen/consulate/router/v1/operator';
import { Logger } from '../lib/log';
import { WatchSink, copyTrailers } from '../lib/watch-relay';
import { CATALOG_TRAILERS } from './catalog-grpc';
import { Federation } from './federation';
import { ForwardEnvelope, asBuffer, encodedMethod, federationAnswer, readFederationForward } from './forward-wire';
import { ANSWER_TRAILER, ForwardError, Forwarder, UNDECODABLE, answerMetadata, deadlineMsOf } from './forwarder';
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

/** FederationService as the router serves it: Forward's messages left encoded (forward-wire.ts). */
export const FEDERATION_SERVICE = { ...FederationServiceService, forward: encodedMethod(FederationServiceService.forward) };

/** Its handlers: Forward takes and gives encoded messages. */
export type FederationHandlers = WithoutCalls<FederationServiceServer, 'forward'> & { forward: handleUnaryCall<Buffer, Buffer> };

export function federationService(deps: FederationServiceDeps): FederationHandlers {
  /** The caller's datacenter, checked; or undefined after refusing the call. */
  const caller = (call: Pick<ServerUnaryCall<unknown, unknown>, 'getPeer' | 'metadata'>, refuse: (error: ServerErrorResponse) => void): string | undefined => {
    const peer = call.getPeer();
    const certified = deps.listener()?.datacenterOf(peer);
    const claimed = String(call.metadata.get(DATACENTER_METADATA)[0] ?? '');
    if (certified === undefined) {
      refuse(refusal(GrpcStatus.UNAUTHENTICATED, 'not a mutual TLS connection'));
      return undefined;
    }
    if (claimed !== certified) {
      deps.logger.warn({ peer, claimed, certified }, `refused a call from ${peer}: it claims datacenter "${claimed}" but its certificate is for "${certified}"`);
      refuse(refusal(GrpcStatus.PERMISSION_DENIED, `datacenter "${claimed}" does not match the certificate's datacenter "${certified}"`));
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
      let forward: ForwardEnvelope | undefined;
      let visited: string[];
      try {
        ({ forward, visited } = readFederationForward(call.request));
      } catch {
        return callback(refusal(GrpcStatus.INTERNAL, UNDECODABLE));
      }
      if (forward === undefined) return callback(refusal(GrpcStatus.INVALID_ARGUMENT, 'a forward needs a request'));
      deps.forwarder.forwardEncoded(forward, deadlineMsOf(call), visited, from, callCancellation(call)).then(
        (answer) => callback(null, asBuffer(federationAnswer(answer))),
        (err: Error) => callback(forwardFailure(err)),
      );
    },
    forwardWatch(call) {
      const from = caller(call, (error) => call.emit('error', error));
      if (from === undefined) return;
      serveForwardWatch(call, deps.forwarder, call.request.forward, call.request.visited, from);
    },
    ping(call, callback) {
      if (caller(call, callback) === undefined) return;
      callback(null, { node: deps.node, datacenter: deps.datacenter });
    },
  };
}

/**
 * Serves a ForwardWatch stream (ForwardService's, from our catalog; FederationService's, from
 * another router): the watch's messages go to `call` as they come, and the stream ends as the
 * watch ended, marked as this router's answer (lib/watch-relay.ts). A client that goes away
 * cancels the watch down the route.
 */
export function serveForwardWatch(call: ServerWritableStream<unknown, { message: Buffer }>, forwarder: Forwarder, request: ForwardRequest | undefined, visited: readonly string[], from: string | undefined): void {
  if (request === undefined) {
    call.emit('error', refusal(GrpcStatus.INVALID_ARGUMENT, 'a forwarded watch needs a request'));
    return;
  }
  // Nothing is written once the caller has gone (its cancel aborts the watch behind).
  const sink: WatchSink = { write: (message) => call.cancelled || call.write({ message }), once: (event, listener) => call.once(event, listener) };
  forwarder.forwardWatch(request, visited, from, sink, callCancellation(call)).then(
    (end) => {
      const trailers = copyTrailers(end.trailers, CATALOG_TRAILERS);
      trailers.set(ANSWER_TRAILER, '1');
      if (end.code === GrpcStatus.OK) call.end(trailers);
      else call.emit('error', { code: end.code, details: end.details, metadata: trailers });
    },
    (err: Error) => call.emit('error', forwardFailure(err)),
  );
}

/** A ForwardError travels as the router's answer; anything else as an internal error. */
export function forwardFailure(err: Error): ServerErrorResponse {
  if (err instanceof ForwardError) return refusal(err.code, err.message);
  return refusal(GrpcStatus.INTERNAL, err.message);
}

export function refusal(code: GrpcStatus, details: string): ServerErrorResponse {
  const metadata: Metadata = answerMetadata();
  return Object.assign(new Error(details), { code, details, metadata });
}
