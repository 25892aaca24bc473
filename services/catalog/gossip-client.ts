/**
 * How the catalog reaches its datacenter's server gossip agents (`-gossip-addr`, repeatable): the
 * Membership API on 8320. Every call has a deadline; a call that cannot reach an agent (refused,
 * timed out) goes to the next one, starting from the last that answered, so losing one server
 * costs one timeout at most. An agent's own answer (an unknown segment, a refused join) is final:
 * asking another would only repeat it.
 *
 * A member watch (the reconciler's) and a user event watch (user-events.ts) live as long as their
 * caller wants them: when a stream breaks it is opened again on the next agent, after a short
 * backoff, and the caller is told, since the new stream starts afresh.
 */
import { ClientReadableStream, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { JoinResponse, Member, MemberEvent, MembershipServiceClient, NodeCoordinate, UserEvent, WatchEventsResponse, WatchMembersResponse } from '../gen/consulate/gossip/v1/membership';
import { Clock, TimerHandle, systemClock } from '../lib/clock';
import { checks, field } from '../lib/config';
import { RoleClients, callUnary } from '../lib/grpc-client';

/** One attempt of a read on one agent. */
export const GOSSIP_CALL_TIMEOUT_MS = 3_000;
/** A join pushes and pulls state with the address (memberlist's TCP timeout is 10 s on LAN). */
export const GOSSIP_JOIN_TIMEOUT_MS = 15_000;
/** A healthy watch is still re-opened this often: every stream has a deadline. */
export const WATCH_MAX_MS = 10 * 60_000;
const WATCH_RETRY_MIN_MS = 200;
const WATCH_RETRY_MAX_MS = 5_000;

/** Consul's segment meaning "every segment" (api.AllSegments). */
export const ALL_SEGMENTS = '_all';

/** The catalog's config field: its datacenter's server gossip agents. */
export function gossipAddrsField() {
  return field.list({
    key: 'gossip_addrs',
    flag: 'gossip-addr',
    usage: "A server gossip agent's Membership API, host:port (8320); repeat for each server of the datacenter. Without one there is no reconciler and no /v1/agent API.",
    default: [],
    check: checks.hostPorts,
  });
}

/** No agent could be reached: the text names each one tried and why. */
export class GossipUnavailableError extends Error {
  override readonly name = 'GossipUnavailableError';
}

/** An agent answered, with an error of its own (Consul's text where Consul has one). */
export class GossipAnswerError extends Error {
  override readonly name = 'GossipAnswerError';
  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

export interface MemberWatchListener {
  /** One event of the current stream: CURRENT × n, SYNCED, then changes. */
  onEvent(event: MemberEvent, agent: string): void;
  /** The stream from `agent` broke; the next one (on `next`) starts with a new snapshot. */
  onBroken(agent: string, reason: string, next: string): void;
}

export interface UserEventWatchListener {
  /** One user event, as the agent received it. */
  onEvent(event: UserEvent): void;
  /**
   * The stream from `agent` ended; the next one (on `next`) starts with the events from then on.
   * `planned`: it only reached its deadline, and is opened again at once on the same agent.
   */
  onBroken(agent: string, reason: string, next: string, planned: boolean): void;
}

export interface MemberWatch {
  cancel(): void;
}

export class GossipClient {
  private readonly clients: RoleClients<MembershipServiceClient>;
  /** The agent that answered last: calls start there. */
  private preferred = 0;
  private closed = false;

  constructor(
    readonly addresses: readonly string[],
    tracer: Tracer,
    private readonly clock: Clock = systemClock,
  ) {
    this.clients = new RoleClients(MembershipServiceClient, { tracer });
  }

  get configured(): boolean {
    return this.addresses.length > 0;
  }

  async members(segment: string): Promise<Member[]> {
    return (await this.call(GOSSIP_CALL_TIMEOUT_MS, { segment }, (c) => c.members.bind(c))).members;
  }

  async join(addresses: readonly string[], segment: string): Promise<JoinResponse> {
    return this.call(GOSSIP_JOIN_TIMEOUT_MS, { addresses: [...addresses], segment }, (c) => c.join.bind(c));
  }

  async forceLeave(node: string, prune: boolean): Promise<void> {
    await this.call(GOSSIP_CALL_TIMEOUT_MS, { node, prune }, (c) => c.forceLeave.bind(c));
  }

  async segments(): Promise<string[]> {
    return (await this.call(GOSSIP_CALL_TIMEOUT_MS, {}, (c) => c.segments.bind(c))).segments;
  }

  async coordinates(segment: string): Promise<NodeCoordinate[]> {
    return (await this.call(GOSSIP_CALL_TIMEOUT_MS, { segment }, (c) => c.coordinates.bind(c))).coordinates;
  }

  /** Whether each agent runs as a server; undefined for one that does not answer. */
  async agentKinds(): Promise<{ address: string; server: boolean | undefined }[]> {
    return Promise.all(
      this.addresses.map(async (address) => {
        const client = this.clients.get(address);
        const status = await callUnary(client.status.bind(client), {}, { timeoutMs: GOSSIP_CALL_TIMEOUT_MS, idempotent: true, clock: this.clock }).catch(() => undefined);
        return { address, server: status?.server };
      }),
    );
  }

  /** Watches `segment`'s members on one agent at a time, moving on when a stream breaks. */
  watchMembers(segment: string, listener: MemberWatchListener): MemberWatch {
    return this.watch(
      (client) => client.watchMembers({ segment }, { deadline: new Date(this.clock.nowMs() + WATCH_MAX_MS) }),
      (response: WatchMembersResponse, agent) => {
        if (response.event === undefined) return false;
        listener.onEvent(response.event, agent);
        return true;
      },
      (agent, reason, next) => listener.onBroken(agent, reason, next),
    );
  }

  /**
   * A user event on every pool of the agent that answers; resolves with its Lamport time. An
   * event too large for gossip (512 bytes of name and payload) is the agent's INVALID_ARGUMENT.
   */
  async fireEvent(name: string, payload: Uint8Array): Promise<bigint> {
    return (await this.call(GOSSIP_CALL_TIMEOUT_MS, { name, payload: Buffer.from(payload) }, (c) => c.fireEvent.bind(c))).ltime;
  }

  /**
   * The user events one agent receives from now on, on one agent at a time as watchMembers is. A
   * server agent is in every segment and sees an event fired on all of them once per segment.
   */
  watchEvents(listener: UserEventWatchListener): MemberWatch {
    return this.watch(
      (client) => client.watchEvents({}, { deadline: new Date(this.clock.nowMs() + WATCH_MAX_MS) }),
      (response: WatchEventsResponse) => {
        if (response.event === undefined) return false;
        listener.onEvent(response.event);
        return true;
      },
      (agent, reason, next, planned) => listener.onBroken(agent, reason, next, planned),
    );
  }

  /**
   * A server stream opened on one agent at a time, from the one that answered last: when it
   * breaks it is opened on the next agent after a backoff (at once when it only reached its
   * deadline, on the same agent). `onData` says whether a message was one that counts.
   */
  private watch<Response>(
    open: (client: MembershipServiceClient) => ClientReadableStream<Response>,
    onData: (response: Response, agent: string) => boolean,
    onBroken: (agent: string, reason: string, next: string, planned: boolean) => void,
  ): MemberWatch {
    this.requireAgents();
    let cancelled = false;
    let current: ClientReadableStream<Response> | undefined;
    let timer: TimerHandle | undefined;
    let index = this.preferred;
    let failures = 0;
    const start = () => {
      timer = undefined;
      if (cancelled || this.closed) return;
      const address = this.addresses[index % this.addresses.length];
      const stream = open(this.clients.get(address));
      current = stream;
      stream.on('data', (response: Response) => {
        if (cancelled || current !== stream) return;
        if (onData(response, address)) failures = 0;
      });
      const broken = (reason: string, planned: boolean) => {
        if (cancelled || current !== stream) return;
        current = undefined;
        // A stream that reached its deadline was healthy: re-open it on the same agent at once.
        if (planned) failures = 0;
        else {
          index++;
          failures++;
        }
        const next = this.addresses[index % this.addresses.length];
        onBroken(address, reason, next, planned);
        const delay = planned ? 0 : Math.min(WATCH_RETRY_MAX_MS, WATCH_RETRY_MIN_MS * 2 ** Math.min(failures - 1, 5));
        timer = this.clock.setTimeout(start, delay);
      };
      stream.on('error', (err: ServiceError) => broken(describe(err, address), err.code === GrpcStatus.DEADLINE_EXCEEDED));
      stream.on('end', () => broken('the agent ended the stream', false));
    };
    start();
    return {
      cancel: () => {
        cancelled = true;
        if (timer !== undefined) this.clock.clear(timer);
        current?.cancel();
        current = undefined;
      },
    };
  }

  close(): void {
    this.closed = true;
    this.clients.close();
  }

  /** Calls one method on the agents in turn, from the one that answered last, until one answers. */
  private async call<Req, Res>(timeoutMs: number, request: Req, method: (client: MembershipServiceClient) => UnaryMethod<Req, Res>): Promise<Res> {
    this.requireAgents();
    const failures: string[] = [];
    for (let i = 0; i < this.addresses.length; i++) {
      const at = (this.preferred + i) % this.addresses.length;
      const address = this.addresses[at];
      try {
        const response = await callUnary(method(this.clients.get(address)), request, { timeoutMs, idempotent: true, maxAttempts: 1, clock: this.clock });
        this.preferred = at;
        return response;
      } catch (err) {
        const failure = err as ServiceError;
        if (failure.code !== GrpcStatus.UNAVAILABLE && failure.code !== GrpcStatus.DEADLINE_EXCEEDED) throw new GossipAnswerError(failure.code, failure.details || failure.message);
        failures.push(describe(failure, address));
      }
    }
    throw new GossipUnavailableError(`No gossip agent answered: ${failures.join('; ')}`);
  }

  private requireAgents(): void {
    if (this.addresses.length === 0) throw new GossipUnavailableError('No gossip agent is configured for this catalog: start it with -gossip-addr=HOST:8320, once per server gossip agent of its datacenter');
    if (this.closed) throw new GossipUnavailableError('the gossip client is closed (the catalog is stopping)');
  }
}

type UnaryMethod<Req, Res> = Parameters<typeof callUnary<Req, Res>>[0];

/** A failed call in a line: the agent, and what went wrong without grpc-js's "14 UNAVAILABLE:" prefix. */
function describe(err: ServiceError, address: string): string {
  if (err.code === GrpcStatus.UNAVAILABLE) return `${address}: unreachable (${err.details || 'connection refused'})`;
  if (err.code === GrpcStatus.DEADLINE_EXCEEDED) return `${address}: no answer before the deadline`;
  return `${address}: ${err.details || err.message}`;
}
