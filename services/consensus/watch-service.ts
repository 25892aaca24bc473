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

import { WatchRequest, WatchResponse, WatchServiceServer } from '../gen/consulate/consensus/v1/watch';
import { ConsensusNode } from './consensus-node';
import { toServiceError } from './grpc-errors';
import { KvError } from './kv/errors';
import { DEFAULT_KV_LIMITS } from './kv/limits';
import { validateWatch } from './kv/validation';
import { RevisionEvents } from './kv/watch-hub';

export function watchService(node: ConsensusNode): WatchServiceServer {
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
          writable = call.write({ header: { revision: group.revision, raftTerm: BigInt(term), member: id }, events: [...group.events] }) && writable;
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
