/**
 * How the catalog reaches its datacenter's federation routers (`-router-addr`, repeatable): the
 * Operator and Forward APIs on 8330 (proto/consulate/router/v1/operator.proto). Every call has a
 * deadline; a call that cannot reach a router goes to the next one, starting from the last that
 * answered, so losing one router costs one timeout at most. A router's own answer (an unknown
 * area, `No path to datacenter`, `Remote DC has no server currently reachable`) is final: the
 * other routers of the datacenter share its areas and its routes, and would say the same.
 *
 * A call that must not run twice (an area create, a forwarded write) moves on only when it
 * provably never left: a connection dropped mid-call may have been served, and Consul does not
 * retry a forwarded write on another server either (reference/consul-compat.md §3.6).
 *
 * Forwards travel on one `Calls` stream per router (lib/call-stream.ts): a unary call per
 * request would cost grpc-js several times more on a path that crosses three processes.
 */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import {
  AreaMembersRequest,
  AreaMembersResponse,
  CreateAreaRequest,
  CreateAreaResponse,
  DatacenterCoordinatesResponse,
  DatacentersResponse,
  DeleteAreaRequest,
  DeleteAreaResponse,
  ForwardRequest,
  ForwardResponse,
  ForwardServiceClient,
  GetAreaRequest,
  GetAreaResponse,
  JoinAreaRequest,
  JoinAreaResponse,
  JoinWanRequest,
  JoinWanResponse,
  ListAreasRequest,
  ListAreasResponse,
  OperatorServiceClient,
  UpdateAreaRequest,
  UpdateAreaResponse,
  WanMembersResponse,
} from '../gen/consulate/router/v1/operator';
import { StreamedMethod } from '../lib/call-stream';
import { Cancellation } from '../lib/cancellation';
import { Clock, systemClock } from '../lib/clock';
import { checks, field } from '../lib/config';
import { RoleClients, callUnary } from '../lib/grpc-client';
import { GRPC_SERVER_DEFAULTS } from '../lib/grpc-server';
import { Logger } from '../lib/log';
import { WatchEnd, WatchSink, isRouterAnswer, relayWatch } from '../lib/watch-relay';
import { FORWARD_METHOD } from './forward-messages';
import { JITTER_FRACTION } from './state/consistent-read';

/** An Operator call that reads or writes the areas in consensus. */
export const ROUTER_CALL_TIMEOUT_MS = 5_000;
/** An area or WAN join reaches the peer datacenter's routers over 8300 (memberlist's TCP timeout is 10 s). */
export const AREA_JOIN_TIMEOUT_MS = 15_000;

/** Consul's own text for a datacenter with a route but no usable server (structs.ErrDCNotAvailable, §3.7). */
export const NO_SERVER_REACHABLE = 'Remote DC has no server currently reachable';

/** The texts a router answers UNAVAILABLE with itself (Consul's errors), unlike a failed connection. */
const ROUTER_UNAVAILABLE_ANSWERS = [NO_SERVER_REACHABLE, 'No cluster leader'];

/**
 * The deadline of a blocking call: its wait, the wait/16 of jitter the answering side may add
 * (Consul's blockingQuery), and `marginMs` for the trip there and back.
 */
export function blockingTimeoutMs(waitMs: number, marginMs: number): number {
  return Math.ceil(waitMs + waitMs / JITTER_FRACTION + marginMs);
}

/** The catalog's config field: its datacenter's federation routers. */
export function routerAddrsField() {
  return field.list({
    key: 'router_addrs',
    flag: 'router-addr',
    usage:
      "A federation router's Operator and Forward API, host:port (8330); repeat for each router of the datacenter. Without one there is no federation: ?dc= of another datacenter answers No path to datacenter, /v1/operator/area answers 500.",
    default: [],
    check: checks.hostPorts,
  });
}

/** No router could be reached (or none is configured): the text names each one tried and why. */
export class RouterUnavailableError extends Error {
  override readonly name = 'RouterUnavailableError';
  constructor(
    message: string,
    /** The request was lost on its way through a router, which may have carried it out. */
    readonly mayHaveApplied = false,
    /** The call's deadline passed before an answer came. */
    readonly timedOut = false,
  ) {
    super(message);
  }
}

/**
 * A forwarded request that does not block: our router, the remote one, and the remote catalog,
 * which may itself wait for its view to catch up or plan a write again.
 */
export const FORWARD_TIMEOUT_MS = 30_000;

/**
 * Forwards in flight at once, from both APIs (blocking queries hold theirs for minutes): half the
 * streams a router takes on one connection, the rest left to Operator calls.
 */
export const MAX_FORWARDS_IN_FLIGHT = GRPC_SERVER_DEFAULTS.maxConcurrentStreams / 2;

/** Counts forwards in flight against a limit shared by the HTTP and gRPC APIs of one catalog. */
export class ForwardSlots {
  private taken = 0;

  constructor(readonly limit: number = MAX_FORWARDS_IN_FLIGHT) {}

  get inFlight(): number {
    return this.taken;
  }

  /** Takes a slot; false when all are taken (the caller answers "retry later"). */
  tryTake(): boolean {
    if (this.taken >= this.limit) return false;
    this.taken++;
    return true;
  }

  release(): void {
    this.taken--;
  }
}

/** A router answered, with an error of its own (its text: Consul's where Consul has one). */
export class RouterAnswerError extends Error {
  override readonly name = 'RouterAnswerError';
  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

export interface RouterCallOptions {
  /** For the whole call, every router tried included. */
  readonly timeoutMs: number;
  /** Safe to send again to another router after a connection failed mid-call (reads, idempotent writes). */
  readonly repeatable: boolean;
  /**
   * Changes nothing, even when not repeatable (a blocking read is not sent twice, since a second
   * one would wait again): lost on its way, it failed, and carried out nothing.
   */
  readonly readOnly?: boolean;
  /** Aborted when the caller is gone (its call cancelled): the call in flight is cancelled, no other router tried. */
  readonly signal?: Cancellation;
}

export class RouterClient {
  private readonly operators: RoleClients<OperatorServiceClient>;
  private readonly forwarders: StreamedMethod<ForwardServiceClient, ForwardRequest, ForwardResponse>;
  /** ForwardWatch streams, on a connection of their own: a watch holds its stream for as long as it lasts. */
  private readonly watchers: RoleClients<ForwardServiceClient>;
  /** The router that answered last: calls start there. */
  private preferred = 0;
  private closed = false;

  constructor(
    readonly addresses: readonly string[],
    tracer: Tracer,
    private readonly clock: Clock = systemClock,
  ) {
    this.operators = new RoleClients(OperatorServiceClient, { tracer });
    this.forwarders = new StreamedMethod(new RoleClients(ForwardServiceClient, { tracer }), FORWARD_METHOD, (client) => client.forward.bind(client), tracer);
    this.watchers = new RoleClients(ForwardServiceClient, { tracer });
  }

  get configured(): boolean {
    return this.addresses.length > 0;
  }

  createArea(request: CreateAreaRequest): Promise<CreateAreaResponse> {
    return this.operator(request, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: false }, (c) => c.createArea.bind(c));
  }

  /** A blocking query when `options.minIndex` is set: the deadline covers its wait. */
  listAreas(request: ListAreasRequest): Promise<ListAreasResponse> {
    return this.operator(request, { timeoutMs: readTimeoutMs(request), repeatable: true }, (c) => c.listAreas.bind(c));
  }

  getArea(request: GetAreaRequest): Promise<GetAreaResponse> {
    return this.operator(request, { timeoutMs: readTimeoutMs(request), repeatable: true }, (c) => c.getArea.bind(c));
  }

  updateArea(request: UpdateAreaRequest): Promise<UpdateAreaResponse> {
    return this.operator(request, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: true }, (c) => c.updateArea.bind(c));
  }

  deleteArea(request: DeleteAreaRequest): Promise<DeleteAreaResponse> {
    return this.operator(request, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: true }, (c) => c.deleteArea.bind(c));
  }

  joinArea(request: JoinAreaRequest): Promise<JoinAreaResponse> {
    return this.operator(request, { timeoutMs: AREA_JOIN_TIMEOUT_MS, repeatable: true }, (c) => c.joinArea.bind(c));
  }

  areaMembers(request: AreaMembersRequest): Promise<AreaMembersResponse> {
    return this.operator(request, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: true }, (c) => c.areaMembers.bind(c));
  }

  /** The WAN pool as the answering router sees it: every datacenter's routers that joined it, as `<node>.<dc>`. */
  wanMembers(): Promise<WanMembersResponse> {
    return this.operator({}, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: true }, (c) => c.wanMembers.bind(c));
  }

  /**
   * `consul join -wan`: the answering router joins the WAN pool through `addresses` (port 8300 when
   * none is given); its datacenter's other routers follow by flood join. A join may run twice.
   */
  joinWan(request: JoinWanRequest): Promise<JoinWanResponse> {
    return this.operator(request, { timeoutMs: AREA_JOIN_TIMEOUT_MS, repeatable: true }, (c) => c.joinWan.bind(c));
  }

  /** The routers' coordinates in the WAN pool and in each area's pool, by pool and datacenter (§3.8). */
  datacenterCoordinates(): Promise<DatacenterCoordinatesResponse> {
    return this.operator({}, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: true }, (c) => c.datacenterCoordinates.bind(c));
  }

  /** The datacenters the routers reach, nearest first (Consul's order, §3.8). */
  datacenters(): Promise<DatacentersResponse> {
    return this.operator({}, { timeoutMs: ROUTER_CALL_TIMEOUT_MS, repeatable: true }, (c) => c.datacenters.bind(c));
  }

  /** One catalog request to another datacenter; the caller knows how long it may take and whether it may run twice. */
  forward(request: ForwardRequest, options: RouterCallOptions): Promise<ForwardResponse> {
    return this.call(request, options, (address) => this.forwarders.get(address));
  }

  /**
   * A watch of another datacenter (ForwardService.ForwardWatch, lib/watch-relay.ts): its messages
   * go to `sink` as they come, and it resolves with how the remote watch ended, as a router
   * answered it. The next router is tried while none has answered and no message has come; a
   * watch that breaks after its first message rejects with RouterUnavailableError (its caller
   * watches again from the last index it saw). Aborting `signal` cancels it down the route.
   */
  async forwardWatch(request: ForwardRequest, sink: WatchSink, signal?: AbortSignal): Promise<WatchEnd> {
    this.requireRouters();
    const failures: string[] = [];
    for (let i = 0; i < this.addresses.length; i++) {
      const at = (this.preferred + i) % this.addresses.length;
      const address = this.addresses[at];
      if (signal?.aborted === true) break;
      const end = await relayWatch(this.watchers.get(address).forwardWatch({ forward: request }), (message) => Buffer.from(message.message), sink, signal);
      if (isRouterAnswer(end)) {
        this.preferred = at;
        return end;
      }
      if (end.messages > 0) throw new RouterUnavailableError(`The watch through the federation router ${address} broke (${end.details}): watch again from the last index`);
      failures.push(`${address}: ${end.details}`);
    }
    if (signal?.aborted === true) throw new RouterUnavailableError('the watch was cancelled by its caller');
    throw new RouterUnavailableError(`No federation router could answer: ${failures.join('; ')}`);
  }

  close(): void {
    this.closed = true;
    this.operators.close();
    this.forwarders.close();
    this.watchers.close();
  }

  private operator<Req, Res>(request: Req, options: RouterCallOptions, method: (client: OperatorServiceClient) => UnaryMethod<Req, Res>): Promise<Res> {
    return this.call(request, options, (address) => method(this.operators.get(address)));
  }

  /** Calls one method on the routers in turn, from the one that answered last, until one answers. */
  private async call<Req, Res>(request: Req, options: RouterCallOptions, method: (address: string) => UnaryMethod<Req, Res>): Promise<Res> {
    this.requireRouters();
    const failures: string[] = [];
    // One deadline for the call: a router that used some of it leaves the next only the rest.
    const deadlineMs = this.clock.nowMs() + options.timeoutMs;
    for (let i = 0; i < this.addresses.length; i++) {
      const at = (this.preferred + i) % this.addresses.length;
      const address = this.addresses[at];
      const remainingMs = deadlineMs - this.clock.nowMs();
      if (remainingMs <= 0) break;
      if (options.signal?.aborted === true) throw new RouterUnavailableError('the call was cancelled by its caller');
      try {
        const response = await callUnary(method(address), request, { timeoutMs: remainingMs, idempotent: true, maxAttempts: 1, clock: this.clock, signal: options.signal });
        this.preferred = at;
        return response;
      } catch (err) {
        const failure = err as ServiceError;
        const outcome = classify(failure);
        if (outcome === 'answer') throw new RouterAnswerError(failure.code, failure.details || failure.message);
        if (outcome === 'lost' && !options.repeatable) {
          if (options.readOnly === true) throw new RouterUnavailableError(`No answer through the federation router ${describe(failure, address)}`, false, failure.code === GrpcStatus.DEADLINE_EXCEEDED);
          throw new RouterUnavailableError(`The request was lost on its way through the federation router ${describe(failure, address)}; it may have been carried out, so it was not sent to another router`, true);
        }
        failures.push(describe(failure, address));
      }
    }
    if (failures.length === 0) throw new RouterUnavailableError('No federation router could answer before the deadline', false, true);
    throw new RouterUnavailableError(`No federation router could answer: ${failures.join('; ')}`, false, this.clock.nowMs() >= deadlineMs);
  }

  private requireRouters(): void {
    if (this.addresses.length === 0) throw new RouterUnavailableError('No federation router is configured for this catalog: start it with -router-addr=HOST:8330, once per federation router of its datacenter');
    if (this.closed) throw new RouterUnavailableError('the router client is closed (the catalog is stopping)');
  }
}

type UnaryMethod<Req, Res> = Parameters<typeof callUnary<Req, Res>>[0];

/** A ListAreas or GetArea with a min index waits on the router; without one it answers at once. */
function readTimeoutMs(request: ListAreasRequest | GetAreaRequest): number {
  const options = request.options;
  return options !== undefined && options.minIndex > 0n ? blockingTimeoutMs(options.waitMs, ROUTER_CALL_TIMEOUT_MS) : ROUTER_CALL_TIMEOUT_MS;
}

/**
 * What a failed call tells: the router's own answer; a request that never left (grpc-js's pick
 * of a connection failed: "No connection established"); or one lost on the way (a connection
 * dropped, a deadline passed), which the router may or may not have served. An UNAVAILABLE is
 * the router's answer when it carries one of Consul's texts, matched by substring as Consul's
 * IsErr* helpers match them.
 */
function classify(err: ServiceError): 'answer' | 'unsent' | 'lost' {
  const details = err.details ?? '';
  if (err.code === GrpcStatus.UNAVAILABLE && ROUTER_UNAVAILABLE_ANSWERS.some((text) => details.includes(text))) return 'answer';
  if (err.code === GrpcStatus.UNAVAILABLE && details.includes('No connection established')) return 'unsent';
  if (err.code === GrpcStatus.UNAVAILABLE || err.code === GrpcStatus.DEADLINE_EXCEEDED) return 'lost';
  return 'answer';
}

/** A failed call in a line: the router, and what went wrong without grpc-js's "14 UNAVAILABLE:" prefix. */
function describe(err: ServiceError, address: string): string {
  if (classify(err) === 'unsent') return `${address}: unreachable (${err.details})`;
  if (err.code === GrpcStatus.DEADLINE_EXCEEDED) return `${address}: no answer before the deadline`;
  return `${address}: ${err.details || err.message}`;
}

/** No federation router (no -router-addr): every other datacenter has no path. */
export const NO_ROUTERS: Pick<RouterClient, 'configured' | 'forward' | 'forwardWatch' | 'datacenters'> = {
  configured: false,
  forward: () => Promise.reject(new Error('no federation router is configured')),
  forwardWatch: () => Promise.reject(new Error('no federation router is configured')),
  datacenters: () => Promise.reject(new Error('no federation router is configured')),
};

/**
 * The datacenters the routers know, nearest first (Consul's order, §3.8); ours alone without a
 * router or an answer from one: the list is a reachability probe and does not fail. Both APIs
 * answer with it (/v1/catalog/datacenters, CatalogService.ListDatacenters).
 */
export async function knownDatacenters(datacenter: string, routers: Pick<RouterClient, 'configured' | 'datacenters'>, logger: Logger): Promise<string[]> {
  if (!routers.configured) return [datacenter];
  try {
    const { datacenters } = await routers.datacenters();
    if (datacenters.length > 0) return datacenters;
    logger.warn('the federation router listed no datacenter: answering with ours alone');
  } catch (err) {
    logger.warn({ reason: (err as Error).message }, `no federation router answered for the list of datacenters, answering with ours alone: ${(err as Error).message}`);
  }
  return [datacenter];
}
