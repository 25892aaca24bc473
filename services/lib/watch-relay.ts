/**
 * A watch of another datacenter (a catalog's server stream: KVService.WatchPrefix,
 * HealthService.WatchServiceHealth) crosses the same hops as a forwarded request: catalog →
 * router → router(s) on 8300 → the remote catalog. Each hop reads the stream of the next one and
 * writes every message on to its own caller as it came (encoded once, by the remote catalog), and
 * ends its caller's stream as the remote one ended.
 *
 * Backpressure holds end to end: when a caller reads slowly its stream stops draining, the hop
 * pauses reading the next one, and so on down to the remote catalog, which computes no new answer
 * while its stream does not drain (catalog/grpc/watches.ts). Each hop holds at most what its
 * streams' own limits let in (a writable's high-water mark, HTTP/2's flow-control window), never
 * a queue that grows with the rate the watched keys change at.
 *
 * A router marks a status it ends a stream with as its answer (ROUTER_ANSWER_TRAILER): the remote
 * catalog's status, or a refusal such as `No path to datacenter`. A status without the mark is a
 * failure to reach or keep that router: the caller may try another router when no message came yet.
 */
import { ClientReadableStream, Metadata, status as GrpcStatus } from '@grpc/grpc-js';

import { Cancellation } from './cancellation';

/** Set on the status a router ends a call with when that status is its answer, not a failure to reach it. */
export const ROUTER_ANSWER_TRAILER = 'consulate-router-answer';

/** Where a hop writes the messages it reads. */
export interface WatchSink {
  /** Writes one message; false when the reader is behind, and reading pauses until the sink's 'drain'. */
  write(message: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/** How a watch's stream ended. */
export interface WatchEnd {
  readonly code: GrpcStatus;
  readonly details: string;
  readonly trailers: Metadata;
  /** Messages that came before the end. */
  readonly messages: number;
}

/**
 * Reads `stream` into `sink` until it ends, and resolves with its status; never rejects.
 * Aborting `signal` cancels the stream (it then ends CANCELLED).
 */
export function relayWatch<T>(stream: ClientReadableStream<T>, bytesOf: (message: T) => Buffer, sink: WatchSink, signal?: Cancellation): Promise<WatchEnd> {
  return new Promise((resolve) => {
    let messages = 0;
    const cancel = () => stream.cancel();
    if (signal?.aborted === true) cancel();
    else signal?.addEventListener('abort', cancel, { once: true });
    stream.on('data', (message: T) => {
      messages++;
      if (!sink.write(bytesOf(message))) {
        stream.pause();
        sink.once('drain', () => stream.resume());
      }
    });
    // The status says how it ended; without a listener an error status would be thrown.
    stream.on('error', () => undefined);
    stream.on('status', (status) => {
      signal?.removeEventListener('abort', cancel);
      resolve({ code: status.code, details: status.details, trailers: status.metadata, messages });
    });
  });
}

/** Whether a router ended the stream with its answer. */
export function isRouterAnswer(end: WatchEnd): boolean {
  return end.code === GrpcStatus.OK || end.trailers.get(ROUTER_ANSWER_TRAILER).length > 0;
}

/** `trailers`' entries whose names pass `allowed`, text values only, as a new Metadata. */
export function copyTrailers(trailers: Metadata, allowed: RegExp): Metadata {
  const out = new Metadata();
  for (const [name, value] of Object.entries(trailers.getMap())) if (allowed.test(name) && typeof value === 'string') out.set(name, value);
  return out;
}
