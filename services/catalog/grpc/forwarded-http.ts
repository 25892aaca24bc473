/**
 * ForwardedHttpService (8502): the HTTP API requests a federation router brings from another
 * datacenter, served by the HTTP API's own `serve` (routes, handlers, spans, metrics), in process.
 * The router carries them on one Calls stream (lib/call-stream.ts) instead of an HTTP exchange
 * each. The answer is the HTTP answer, whatever its status; a gRPC error means it was not served.
 * Only the headers that cross datacenters (lib/forwarded-headers.ts) reach the handlers and go
 * back: the router passes both on without decoding them.
 */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { ForwardedHttpServiceServer, ForwardedHttpServiceService, protobufFileName } from '../../gen/consulate/catalog/v1/forwarded';
import { HttpRequest as ForwardedRequest, HttpResponse as ForwardedResponse } from '../../gen/consulate/router/v1/operator';
import { WithoutCalls } from '../../lib/call-stream';
import { SERVE_METHOD } from '../forward-messages';
import { returningHeaders, travellingHeaders } from '../../lib/forwarded-headers';
import { GrpcService } from '../../lib/grpc-server';
import { EncodedAnswer, RawRequest } from '../http/http-server';

/** The service, and `closeAll` to end the requests in flight (their blocking waits) at shutdown. */
export function forwardedHttpService(http: { serve(request: RawRequest): Promise<EncodedAnswer> }): { service: GrpcService; closeAll(): void } {
  const inFlight = new Set<LazyAbort>();
  const implementation: WithoutCalls<ForwardedHttpServiceServer> = {
    serve(call, callback) {
      const request = call.request.request;
      if (request === undefined) return callback(failure(GrpcStatus.INVALID_ARGUMENT, 'a ServeRequest needs an HTTP request'));
      // The router's call cancelled (its caller went away), or the catalog stopping: the request's blocking wait ends.
      const cancelled = new LazyAbort();
      inFlight.add(cancelled);
      const abort = () => cancelled.abort();
      call.once('cancelled', abort);
      http.serve(rawRequest(request, () => cancelled.signal)).then(
        (answer) => callback(null, { response: forwardedResponse(answer) }),
        (err: Error) => callback(failure(GrpcStatus.INTERNAL, err.message)),
      ).finally(() => {
        inFlight.delete(cancelled);
        call.removeListener('cancelled', abort);
      });
    },
  };
  return {
    // Serve's messages by hand (forward-messages.ts): one of each for every request from another datacenter.
    service: { definition: { ...ForwardedHttpServiceService, serve: SERVE_METHOD }, implementation, protoFile: protobufFileName, callStream: true },
    closeAll: () => {
      for (const request of inFlight) request.abort();
    },
  };
}

/**
 * An AbortController made only when its signal is asked for (a blocking read waits on it) or it is
 * aborted: most forwarded requests never need one, and each costs several µs in Node 20.
 */
class LazyAbort {
  private controller: AbortController | undefined;

  get signal(): AbortSignal {
    return (this.controller ??= new AbortController()).signal;
  }

  abort(): void {
    (this.controller ??= new AbortController()).abort();
  }
}

function rawRequest(request: ForwardedRequest, signal: () => AbortSignal): RawRequest {
  const headers = travellingHeaders(request.headers);
  headers['content-length'] = String(request.body.length);
  return {
    method: request.method,
    url: request.rawQuery === '' ? request.path : `${request.path}?${request.rawQuery}`,
    headers,
    body: (limit, tooLarge) => (request.body.length > limit ? Promise.reject(tooLarge(request.body.length)) : Promise.resolve(request.body)),
    signal,
  };
}

/** The answer with the headers that travel back. */
function forwardedResponse(answer: EncodedAnswer): ForwardedResponse {
  return { status: answer.status, headers: returningHeaders(answer.headers), body: answer.body };
}

function failure(code: GrpcStatus, details: string): Partial<ServiceError> {
  return { code, details, message: details };
}
