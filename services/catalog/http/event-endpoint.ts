/**
 * `/v1/event/fire/:name` and `/v1/event/list` (agent/event_endpoint.go), over this catalog's
 * user events (user-events.ts). A fire with `?dc=` for another datacenter travels as every
 * request does and is fired there.
 *
 * The list's index is Consul's: the last event's UUID folded to 64 bits, 1 when there is none.
 * It does not grow, so a blocking list waits only while `?index=` is that very value, and answers
 * when its list's index moves (an event of its name kept) or at the end of `wait`.
 */
import { UserEvent } from '../../gen/consulate/catalog/v1/event';
import { UserEvents, UserEventError, eventsIndex } from '../user-events';
import { badRequest } from './http-errors';
import { HttpRouter } from './http-server';
import { JITTER_FRACTION, parseQueryOptions } from './query-options';

/** A payload is at most what gossip carries (512 bytes with the name); more is refused there. */
const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_INDEX = 2n ** 64n - 1n;

export interface EventDeps {
  readonly datacenter: string;
  readonly events: Pick<UserEvents, 'fire' | 'list' | 'waitForEvent'>;
}

/** Consul's UserEvent as JSON: Payload base64, null when empty. */
export interface UserEventJson {
  readonly ID: string;
  readonly Name: string;
  readonly Payload: string | null;
  readonly NodeFilter: string;
  readonly ServiceFilter: string;
  readonly TagFilter: string;
  readonly Version: number;
  readonly LTime: number;
}

export function registerEventEndpoints(router: HttpRouter, deps: EventDeps): void {
  router.on(['PUT'], '/v1/event/fire/*name', async (request) => {
    const name = request.params.name;
    if (name === '') throw badRequest('Missing name');
    const payload = await request.body(MAX_PAYLOAD_BYTES);
    const query = request.query;
    try {
      const event = await deps.events.fire({ name, payload, nodeFilter: query.get('node') ?? '', serviceFilter: query.get('service') ?? '', tagFilter: query.get('tag') ?? '' });
      return { body: toJson(event) };
    } catch (err) {
      // Consul answers a refused event with a 500 and the agent's text.
      if (err instanceof UserEventError) return { status: 500, body: err.message, contentType: 'text/plain; charset=utf-8' };
      throw err;
    }
  });

  router.on(['GET'], '/v1/event/list', async (request) => {
    const query = new URLSearchParams(request.query);
    const index = minIndexOf(query.get('index'));
    query.delete('index');
    const { waitMs } = parseQueryOptions(query, deps.datacenter);
    const name = request.query.get('name') ?? undefined;
    let events = deps.events.list(name);
    // Consul waits until this list's own index moves: an event of another name wakes, and waits again.
    const deadline = Date.now() + waitMs + Math.floor(Math.random() * (waitMs / JITTER_FRACTION));
    const signal = index === 0n ? undefined : request.signal();
    while (index !== 0n && eventsIndex(events) === index && Date.now() < deadline && !signal!.aborted) {
      await deps.events.waitForEvent(deadline - Date.now(), signal);
      events = deps.events.list(name);
    }
    return { body: events.map(toJson), headers: { 'X-Consul-Index': String(eventsIndex(events)) } };
  });
}

/** `?index=` as Consul's uint64; 0 when absent. */
function minIndexOf(value: string | null): bigint {
  if (value === null) return 0n;
  if (!/^\d+$/.test(value) || BigInt(value) > MAX_INDEX) throw badRequest('Invalid index');
  return BigInt(value);
}

export function toJson(event: UserEvent): UserEventJson {
  return {
    ID: event.id,
    Name: event.name,
    Payload: event.payload.length === 0 ? null : Buffer.from(event.payload).toString('base64'),
    NodeFilter: event.nodeFilter,
    ServiceFilter: event.serviceFilter,
    TagFilter: event.tagFilter,
    Version: event.version,
    LTime: Number(event.ltime),
  };
}
