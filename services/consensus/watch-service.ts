/**
 * gRPC adapter for consulate.consensus.v1.WatchService. Watch is one server stream per watcher, fed
 * from the node's watch hub (WatchMany, many watchers on one stream, is watch-many.ts). Events go
 * out a revision at a time, never split; when the stream cannot take more (write returns false) we
 * stop pulling until it drains, and the hub's per-watcher limit decides when a watcher that cannot
 * keep up is cancelled (with the revision to resume from).
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
import { RevisionEvents, sameEvents } from './kv/watch-hub';
import { WatchManyStream } from './watch-many';

/**
 * The service as a server registers it. Its definition passes a response that is already encoded
 * (a Buffer) through as it is, so one revision's answer is encoded once for all the watchers it
 * reaches; the implementation writes such Buffers, so the two go together.
 */
export function watchGrpcService(node: ConsensusNode): GrpcService {
  return { definition: WATCH_SERVICE_DEFINITION, implementation: watchService(node), protoFile };
}

const WATCH_SERVICE_DEFINITION: typeof WatchServiceService = Object.assign({}, WatchServiceService, {
  watch: Object.assign({}, WatchServiceService.watch, {
    responseSerialize: (value: WatchResponse | Buffer): Buffer => (Buffer.isBuffer(value) ? value : WatchServiceService.watch.responseSerialize(value)),
  }),
});

/**
 * Encoded answers of the latest revisions: the hub gives every watcher of a key its own list of the
 * same event objects, so a list with the same events (same objects, same order) has the same bytes.
 * Several revisions are kept, since one wake-up may carry a few to each watcher in turn; per revision,
 * a few lists (watchers of different ranges see different events of one revision).
 */
class EncodedRevisions {
  private static readonly MAX_REVISIONS = 64;
  private static readonly MAX_LISTS_PER_REVISION = 8;
  private readonly byRevision = new Map<bigint, { term: number; member: string; events: readonly Event[]; bytes: Buffer }[]>();

  encode(revision: bigint, term: number, member: string, events: readonly Event[]): Buffer {
    let lists = this.byRevision.get(revision);
    const found = lists?.find((e) => e.term === term && e.member === member && sameEvents(e.events, events));
    if (found !== undefined) return found.bytes;
    const bytes = WatchServiceService.watch.responseSerialize({ header: { revision, raftTerm: BigInt(term), member }, events: [...events] });
    if (lists === undefined) {
      if (this.byRevision.size >= EncodedRevisions.MAX_REVISIONS) this.byRevision.delete(this.byRevision.keys().next().value!);
      this.byRevision.set(revision, (lists = []));
    }
    if (lists.length >= EncodedRevisions.MAX_LISTS_PER_REVISION) lists.shift();
    lists.push({ term, member, events, bytes });
    return bytes;
  }
}

function watchService(node: ConsensusNode): WatchServiceServer {
  const encoded = new EncodedRevisions();
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
    watchMany(call) {
      new WatchManyStream(node, call); // lives as long as the call: its listeners hold it
    },
  };
}
