/**
 * gRPC adapter for consulate.consensus.v1.WatchService: one server stream per watcher, fed from
 * the node's watch hub. Events go out a revision at a time, never split; when the stream cannot
 * take more (write returns false) we stop pulling until it drains, and the hub's per-watcher
 * limit decides when a watcher that cannot keep up is cancelled (with the revision to resume from).
 *
 * A refusal or a cancellation ends the stream with its status through `call.emit('error')`, which
 * grpc-js sends as the trailers; `call.destroy(error)` sends the client nothing and leaves its
 * stream open forever (grpc-js 1.14: the stream is destroyed before it can end with a status).
 */
import { ServerWritableStream } from '@grpc/grpc-js';

import { Event, WatchRequest, WatchResponse, WatchServiceServer, WatchServiceService, protobufFileName as protoFile } from '../gen/consulate/consensus/v1/watch';
import { GrpcService } from '../lib/grpc-server';
import { ConsensusNode } from './consensus-node';
import { toServiceError } from './grpc-errors';
import { KvError } from './kv/errors';
import { DEFAULT_KV_LIMITS } from './kv/limits';
import { validateWatch } from './kv/validation';
import { RevisionEvents } from './kv/watch-hub';

/**
 * The service as a server registers it. Its definition passes a response that is already encoded
 * (a Buffer) through as it is, so one revision's answer is encoded once for all the watchers it
 * reaches; the implementation writes such Buffers, so the two go together.
 */
export function watchGrpcService(node: ConsensusNode): GrpcService {
  return { definition: WATCH_SERVICE_DEFINITION, implementation: watchService(node), protoFile };
}

const WATCH_SERVICE_DEFINITION: typeof WatchServiceService = {
  watch: {
    ...WatchServiceService.watch,
    responseSerialize: (value: WatchResponse | Buffer): Buffer => (Buffer.isBuffer(value) ? value : WatchServiceService.watch.responseSerialize(value)),
  },
};

/**
 * The last revision encoded: the hub gives every watcher of a key its own list of the same event
 * objects, so a list with the same events (same objects, same order) has the same bytes.
 */
class LastEncoded {
  private revision = -1n;
  private term = -1;
  private member = '';
  private events: readonly Event[] = [];
  private bytes: Buffer = Buffer.alloc(0);

  encode(revision: bigint, term: number, member: string, events: readonly Event[]): Buffer {
    if (revision === this.revision && term === this.term && member === this.member && sameEvents(events, this.events)) return this.bytes;
    this.bytes = WatchServiceService.watch.responseSerialize({ header: { revision, raftTerm: BigInt(term), member }, events: [...events] });
    this.revision = revision;
    this.term = term;
    this.member = member;
    this.events = events;
    return this.bytes;
  }
}

function sameEvents(a: readonly Event[], b: readonly Event[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function watchService(node: ConsensusNode): WatchServiceServer {
  const encoded = new LastEncoded();
  return {
    watch(call: ServerWritableStream<WatchRequest, WatchResponse>) {
      try {
        validateWatch(call.request, DEFAULT_KV_LIMITS);
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      const created = node.kv.watches.watch(call.request);
      if (!created.ok) {
        call.emit('error', toServiceError(created.error));
        return;
      }
      const watchId = created.watchId;
      let writable = true;
      let closed = false;
      const close = (error?: KvError) => {
        if (closed) return;
        closed = true;
        unsubscribe();
        node.kv.watches.cancel(watchId);
        if (error === undefined) call.end();
        else call.emit('error', toServiceError(error));
      };
      const send = (groups: readonly RevisionEvents[]) => {
        const { term, id } = node.headerInfo();
        for (const group of groups) {
          // A Buffer, which WATCH_SERVICE_DEFINITION's serializer passes through.
          writable = call.write(encoded.encode(group.revision, term, id, group.events) as unknown as WatchResponse) && writable;
        }
      };
      const drain = () => {
        while (!closed && writable) {
          const pulled = node.kv.watches.pull(watchId);
          if (pulled.kind === 'cancelled') return close(pulled.error);
          send(pulled.groups);
          if (pulled.caughtUp) return;
        }
      };
      const unsubscribe = node.attachWatchStream(watchId, { woken: drain, cancelled: (error) => close(error) });
      call.on('drain', () => {
        writable = true;
        drain();
      });
      call.on('cancelled', () => close());
      call.on('close', () => close());
      send(created.groups);
      if (!created.caughtUp) drain();
    },
  };
}
