/**
 * Consul's user events (agent/user_event.go), with this catalog as the agent: `fire` checks an
 * event as Consul's validateUserEventParams does, gives it a UUID and fires it through a server
 * gossip agent as the gossip user event `consul:event:<name>`, its payload the UserEvent message
 * (proto/consulate/catalog/v1/event.proto); every catalog watches the user events of one server
 * gossip agent (gossip-client.ts moves the watch on when an agent goes away) and keeps the last
 * 256 it accepts, oldest first, for `/v1/event/list`.
 *
 * An event is accepted as Consul's shouldProcessUserEvent does: its version at most 1, its node
 * filter matching this catalog's node name, its service filter matching the ID of a service
 * registered on this catalog's node (with a tag matching its tag filter). The filters are Go
 * regular expressions, run with an RE2 engine as Go runs them (lib/go-text.ts): in linear time,
 * whoever wrote them.
 * A server agent is in every segment and receives an event fired on all of them once per
 * segment: the copies share the event's ID and are kept once.
 */
import { randomUUID } from 'node:crypto';

import { UserEvent } from '../gen/consulate/catalog/v1/event';
import { UserEvent as GossipUserEvent } from '../gen/consulate/gossip/v1/membership';
import { compileGoRegexp, regexpProblem } from '../lib/go-text';
import { Logger } from '../lib/log';
import { GossipClient, MemberWatch } from './gossip-client';

/** Consul's userEventName prefix: the gossip events that are user events of the catalog. */
export const USER_EVENT_PREFIX = 'consul:event:';
/** Consul's userEventMaxVersion. */
export const USER_EVENT_VERSION = 1;
/** Consul's eventBuf: how many events an agent keeps. */
export const MAX_KEPT_EVENTS = 256;

/** What a caller fires: a name, an optional payload and the three filters. */
export interface FireParams {
  readonly name: string;
  readonly payload: Buffer;
  readonly nodeFilter: string;
  readonly serviceFilter: string;
  readonly tagFilter: string;
}

/** A refused event, with Consul's text. */
export class UserEventError extends Error {
  override readonly name = 'UserEventError';
}

export interface UserEventsDeps {
  readonly gossip: Pick<GossipClient, 'fireEvent' | 'watchEvents'>;
  /** This catalog's node name: what a node filter is matched against. */
  readonly node: string;
  /** The services registered on this catalog's node, for service and tag filters. */
  readonly localServices: () => readonly { readonly ID: string; readonly Tags: readonly string[] }[];
  readonly logger: Logger;
}

export class UserEvents {
  private readonly kept: UserEvent[] = [];
  private readonly keptIds = new Set<string>();
  private readonly listeners = new Set<(event: UserEvent | undefined) => void>();
  private watch: MemberWatch | undefined;
  private stopped = false;

  constructor(private readonly deps: UserEventsDeps) {}

  /** Starts receiving events. */
  start(): void {
    this.watch = this.deps.gossip.watchEvents({
      onEvent: (event) => this.receive(event),
      onBroken: (agent, reason, next, planned) =>
        planned
          ? this.deps.logger.debug({ agent }, `the user event watch on ${agent} reached its deadline; watching again`)
          : this.deps.logger.warn({ agent, reason, next }, `the user event watch on ${agent} broke (${reason}); watching ${next}: events fired meanwhile are not listed here`),
    });
  }

  stop(): void {
    this.watch?.cancel();
    this.watch = undefined;
    this.stopped = true;
    for (const listener of [...this.listeners]) listener(undefined);
  }

  /** Checks and fires an event; answers it as Consul's `PUT /v1/event/fire` does (LTime 0). */
  async fire(params: FireParams): Promise<UserEvent> {
    const problem = paramsProblem(params);
    if (problem !== undefined) throw new UserEventError(problem);
    const event: UserEvent = {
      id: randomUUID(),
      name: params.name,
      payload: params.payload,
      nodeFilter: params.nodeFilter,
      serviceFilter: params.serviceFilter,
      tagFilter: params.tagFilter,
      version: USER_EVENT_VERSION,
      ltime: 0n,
    };
    await this.deps.gossip.fireEvent(USER_EVENT_PREFIX + params.name, UserEvent.encode(event).finish());
    this.deps.logger.debug({ event: event.id, name: event.name }, `fired user event ${event.name} (${event.id})`);
    return event;
  }

  /** The events kept, oldest first; only those named `name` when it is given. */
  list(name?: string): UserEvent[] {
    return name === undefined || name === '' ? [...this.kept] : this.kept.filter((event) => event.name === name);
  }

  /**
   * Calls `listener` with each event kept from now on, and with undefined once when the catalog
   * stops; returns the unsubscribe.
   */
  subscribe(listener: (event: UserEvent | undefined) => void): () => void {
    if (this.stopped) {
      queueMicrotask(() => listener(undefined));
      return () => undefined;
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves at the next event kept, or after `timeoutMs`, or when `signal` aborts. */
  waitForEvent(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      if (signal?.aborted) return resolve();
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.subscribe(done);
      signal?.addEventListener('abort', done);
    });
  }

  private receive(gossiped: GossipUserEvent): void {
    if (!gossiped.name.startsWith(USER_EVENT_PREFIX)) return;
    let event: UserEvent;
    try {
      event = UserEvent.decode(gossiped.payload);
    } catch (err) {
      this.deps.logger.warn({ name: gossiped.name, reason: (err as Error).message }, `ignored user event ${gossiped.name}: its payload is not a UserEvent (${(err as Error).message})`);
      return;
    }
    if (event.id === '') {
      this.deps.logger.warn({ name: gossiped.name }, `ignored user event ${gossiped.name}: it has no ID`);
      return;
    }
    if (this.keptIds.has(event.id)) return;
    const refused = this.refusal(event);
    if (refused !== undefined) {
      this.deps.logger.debug({ event: event.id, name: event.name, reason: refused }, `user event ${event.name} not for this catalog: ${refused}`);
      return;
    }
    const kept = { ...event, ltime: gossiped.ltime };
    this.kept.push(kept);
    this.keptIds.add(event.id);
    if (this.kept.length > MAX_KEPT_EVENTS) this.keptIds.delete(this.kept.shift()!.id);
    for (const listener of [...this.listeners]) listener(kept);
  }

  /** Why this catalog does not keep `event` (shouldProcessUserEvent), or undefined. */
  private refusal(event: UserEvent): string | undefined {
    if (event.version > USER_EVENT_VERSION) return `version ${event.version} is newer than ${USER_EVENT_VERSION}`;
    if (event.nodeFilter !== '' && !goMatcher(event.nodeFilter)(this.deps.node)) return `node ${this.deps.node} does not match ${event.nodeFilter}`;
    if (event.serviceFilter === '') return undefined;
    const service = goMatcher(event.serviceFilter);
    const tag = event.tagFilter === '' ? undefined : goMatcher(event.tagFilter);
    const found = this.deps.localServices().some((local) => service(local.ID) && (tag === undefined || local.Tags.some(tag)));
    return found ? undefined : `no service of node ${this.deps.node} matches ${event.serviceFilter}${event.tagFilter === '' ? '' : ` with a tag matching ${event.tagFilter}`}`;
  }
}

/**
 * Consul's index for an event list (uuidToUint64): the two halves of the last event's UUID
 * XORed, 1 for an empty list so that a watch does not spin.
 */
export function eventsIndex(events: readonly UserEvent[]): bigint {
  const last = events.at(-1);
  return last === undefined ? 1n : eventIdToIndex(last.id);
}

/** Consul's IDToIndex: an event's UUID as a uint64, its two halves XORed (0n for an ID that is not a UUID). */
export function eventIdToIndex(id: string): bigint {
  const hex = id.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) return 0n;
  return BigInt(`0x${hex.slice(0, 16)}`) ^ BigInt(`0x${hex.slice(16, 32)}`);
}

/**
 * The first of an event's filters that does not compile as a Go regular expression, in Consul's
 * order (node, service, tag), with Go's error text; undefined when all do. The agent
 * (validateUserEventParams) and `consulate event` word it each their own way.
 */
export function badFilter(filters: { readonly nodeFilter: string; readonly serviceFilter: string; readonly tagFilter: string }): { what: 'node' | 'service' | 'tag'; problem: string } | undefined {
  for (const [filter, what] of [
    [filters.nodeFilter, 'node'],
    [filters.serviceFilter, 'service'],
    [filters.tagFilter, 'tag'],
  ] as const) {
    const problem = regexpProblem(filter);
    if (problem !== undefined) return { what, problem };
  }
  return undefined;
}

/** Consul's validateUserEventParams, its texts. */
function paramsProblem(params: FireParams): string | undefined {
  if (params.name === '') return 'User event missing name';
  if (params.tagFilter !== '' && params.serviceFilter === '') return 'Cannot provide tag filter without service filter';
  const bad = badFilter(params);
  return bad === undefined ? undefined : `Invalid ${bad.what} filter: ${bad.problem}`;
}

/** Go's regexp.MatchString for `pattern`; a pattern that does not compile matches nothing, as in Consul. */
function goMatcher(pattern: string): (text: string) => boolean {
  const compiled = compileGoRegexp(pattern);
  return 'error' in compiled ? () => false : compiled.matches;
}
