/**
 * gRPC adapter for consulate.catalog.v1.EventService: Consul's user events on user-events.ts, as
 * the HTTP endpoints use it. Fire's refusals are INVALID_ARGUMENT with Consul's texts (the gossip
 * agent's for an event too large); List and Watch are this catalog's own, as an agent's list is.
 * A watcher that stops reading is let go once 1 MiB waits for it (RESOURCE_EXHAUSTED): events
 * are small and rare, and that much unread is a client that is gone.
 */
import { ServerWritableStream, status as GrpcStatus } from '@grpc/grpc-js';

import { EventServiceServer, EventServiceWatchRequest, EventServiceWatchResponse } from '../../gen/consulate/catalog/v1/event';
import { Logger } from '../../lib/log';
import { GossipAnswerError, GossipUnavailableError } from '../gossip-client';
import { UserEventError, UserEvents, eventsIndex } from '../user-events';
import { StatusError, invalidArgument, unary } from './status';

const MAX_UNREAD_BYTES = 1024 * 1024;

export interface EventServiceDeps {
  readonly events: Pick<UserEvents, 'fire' | 'list' | 'subscribe'>;
  readonly logger: Logger;
}

export function eventService(deps: EventServiceDeps): EventServiceServer {
  const { events, logger } = deps;
  return {
    fire: unary(logger, async (call) => {
      const { name, payload, nodeFilter, serviceFilter, tagFilter } = call.request;
      try {
        return { event: await events.fire({ name, payload: Buffer.from(payload), nodeFilter, serviceFilter, tagFilter }) };
      } catch (err) {
        if (err instanceof UserEventError) throw invalidArgument(err.message);
        if (err instanceof GossipAnswerError) throw new StatusError(err.code, err.message);
        if (err instanceof GossipUnavailableError) throw new StatusError(GrpcStatus.UNAVAILABLE, err.message);
        throw err;
      }
    }),

    list: unary(logger, async (call) => {
      const listed = events.list(call.request.name);
      return { events: listed, index: eventsIndex(listed) };
    }),

    watch(call: ServerWritableStream<EventServiceWatchRequest, EventServiceWatchResponse>) {
      const { name } = call.request;
      const unsubscribe = events.subscribe((event) => {
        if (event === undefined) return end({ code: GrpcStatus.UNAVAILABLE, details: 'the catalog is stopping: watch again on another' });
        if (name !== '' && event.name !== name) return;
        if (call.writableLength > MAX_UNREAD_BYTES) return end({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: `the watcher left ${call.writableLength} bytes of events unread: watch again, and read` });
        call.write({ event });
      });
      const end = (status: { code: GrpcStatus; details: string }) => {
        unsubscribe();
        call.emit('error', status);
      };
      call.on('cancelled', unsubscribe);
      call.on('close', unsubscribe);
    },
  };
}
