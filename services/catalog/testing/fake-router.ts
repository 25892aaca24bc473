/**
 * A federation router's in-datacenter API in memory, for the catalog's unit tests: the
 * OperatorService (areas with an index and blocking reads, area members, the WAN pool and its
 * joins, the datacenters list)
 * and the ForwardService (answered by a function the test sets) behind a real RoleGrpcServer on a
 * free loopback port, so the catalog's RouterClient talks real gRPC to it. It keeps the rules the
 * contract states (one area per peer datacenter, `[]` for an unknown area, NOT_FOUND "No path to
 * datacenter"), with Consul's router texts where Consul has them (§3.5), and nothing more.
 *
 *   const router = await startFakeRouter('dc1');
 *   router.forwardAnswer = (request) => ({ response: { status: 200, headers: {}, body: Buffer.from('[]') }, path: ['dc2'] });
 *   const routers = new RouterClient([router.address], tracer);
 *   await router.close();
 */
import { randomUUID } from 'node:crypto';

import { Metadata, ServerWritableStream, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import {
  Area,
  AreaMember,
  AreaMembersRequest,
  AreaMembersResponse,
  CreateAreaRequest,
  CreateAreaResponse,
  DatacenterCoordinatesRequest,
  DatacenterCoordinatesResponse,
  DatacentersRequest,
  DatacentersResponse,
  DeleteAreaRequest,
  DeleteAreaResponse,
  ForwardRequest,
  ForwardResponse,
  ForwardServiceServer,
  ForwardServiceService,
  ForwardWatchRequest,
  ForwardWatchResponse,
  GetAreaRequest,
  GetAreaResponse,
  JoinAreaRequest,
  JoinAreaResponse,
  JoinResult,
  JoinWanRequest,
  JoinWanResponse,
  ListAreasRequest,
  ListAreasResponse,
  OperatorServiceServer,
  OperatorServiceService,
  ReadOptions,
  UpdateAreaRequest,
  UpdateAreaResponse,
  WanMembersRequest,
  WanMembersResponse,
  protobufFileName,
} from '../../gen/consulate/router/v1/operator';
import { areaIdProblem } from '../../lib/area-id';
import { WithoutCalls } from '../../lib/call-stream';
import { RoleGrpcServer } from '../../lib/grpc-server';
import { createLogger } from '../../lib/log';
import { ROUTER_ANSWER_TRAILER } from '../../lib/watch-relay';

/** A gRPC error as a handler answers it. */
export interface Refusal {
  readonly code: GrpcStatus;
  readonly details: string;
}

export interface FakeRouter {
  readonly address: string;
  readonly datacenter: string;
  /** The areas by ID, as stored. */
  readonly areas: Map<string, Area>;
  /** Each area's pool; an area starts with this router alone. */
  readonly members: Map<string, AreaMember[]>;
  /** The WAN pool: this router alone at first (`router-1.<dc>`); a test adds the others it needs. */
  wan: AreaMember[];
  /** Every address a JoinWan was asked to join through, in order. */
  readonly wanJoins: string[];
  /** The areas' index (X-Consul-Index): every write moves it. */
  index: bigint;
  datacenters: DatacentersResponse;
  /** What DatacenterCoordinates answers: no pool coordinates unless a test sets some. */
  coordinates: DatacenterCoordinatesResponse;
  /** What Forward answers; a Refusal fails the call. Default: NOT_FOUND "No path to datacenter". */
  forwardAnswer: (request: ForwardRequest) => ForwardResponse | Refusal | Promise<ForwardResponse | Refusal>;
  /** Every forwarded request, in order. */
  readonly forwarded: ForwardRequest[];
  /**
   * How ForwardWatch answers: the test writes the watch's messages to `call` and ends it (with
   * ROUTER_ANSWER_TRAILER on a status that is the router's answer). Default: NOT_FOUND "No path to
   * datacenter", as the router's answer.
   */
  forwardWatchAnswer: (request: ForwardRequest, call: ServerWritableStream<ForwardWatchRequest, ForwardWatchResponse>) => void;
  /** Every forwarded watch, in order. */
  readonly watches: ForwardRequest[];
  /** Forward calls whose caller cancelled them before they were answered. */
  forwardsCancelled: number;
  /** The deadline of each forwarded request (ms since the epoch; Infinity for none), in order. */
  readonly forwardDeadlines: number[];
  /** Every call by method name, in order (`createArea`, `forward`, ...). */
  readonly calls: string[];
  /** The ReadOptions of the last ListAreas or GetArea. */
  lastReadOptions: ReadOptions | undefined;
  /** When set, every Operator call fails with it (a router that cannot reach its consensus). */
  operatorRefusal: Refusal | undefined;
  close(): Promise<void>;
}

const NO_PATH: Refusal = { code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' };
/** A blocking ListAreas or GetArea waits at most this long here, whatever it asks. */
const MAX_TEST_WAIT_MS = 5_000;

export async function startFakeRouter(datacenter: string): Promise<FakeRouter> {
  const waiters = new Set<() => void>();
  const self = (): AreaMember => ({ id: randomUUID(), name: `router-1.${datacenter}`, addr: '127.0.0.1', port: 8300, datacenter, role: 'server', build: '0.1.0', protocol: 2, status: 'alive', rttNs: 0n });
  const state: Omit<FakeRouter, 'address' | 'close'> = {
    datacenter,
    areas: new Map(),
    members: new Map(),
    wan: [self()],
    wanJoins: [],
    index: 1n,
    datacenters: { datacenters: [datacenter], routes: [{ datacenter, path: [], areaId: '', rttNs: 0n, reachable: true, nextHops: [] }] },
    coordinates: { maps: [] },
    forwardAnswer: () => NO_PATH,
    forwarded: [],
    forwardWatchAnswer: (_, call) => call.emit('error', { ...NO_PATH, metadata: routerAnswer() }),
    watches: [],
    forwardDeadlines: [],
    forwardsCancelled: 0,
    calls: [],
    lastReadOptions: undefined,
    operatorRefusal: undefined,
  };
  const changed = () => {
    state.index++;
    for (const wake of waiters) wake();
  };
  /** Resolves once the index passes `options.minIndex`, or its wait runs out. */
  const blockOn = async (options: ReadOptions | undefined) => {
    state.lastReadOptions = options;
    if (options === undefined || options.minIndex === 0n || state.index > options.minIndex) return;
    const waitMs = Math.min(options.waitMs || MAX_TEST_WAIT_MS, MAX_TEST_WAIT_MS);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      waiters.add(done);
    });
  };
  // The real router's answers: INVALID_ARGUMENT for an ID that is not a UUID, before anything is
  // looked up, and Consul's text for a well-formed ID it has no area for.
  const unknownArea = (id: string): Refusal => {
    const problem = areaIdProblem(id);
    return problem === undefined ? { code: GrpcStatus.NOT_FOUND, details: `area ID "${id}" does not exist` } : { code: GrpcStatus.INVALID_ARGUMENT, details: problem };
  };
  // An address with "unreachable" in it times out, as Consul's join reports it (the router's text,
  // without memberlist's `Failed to join <addr>: ` prefix).
  const joinResults = (addresses: readonly string[]): JoinResult[] =>
    addresses.map((address) => {
      const target = address.includes(':') ? address : `${address}:8300`;
      return address.includes('unreachable') ? { address, joined: false, error: `failed to connect to "${target}": dial tcp ${target}: i/o timeout` } : { address, joined: true, error: '' };
    });

  /** A unary handler: its answer, or a Refusal as the call's error. */
  function unary<Req, Res>(name: string, answer: (request: Req) => Res | Refusal | Promise<Res | Refusal>, operator = true) {
    return (call: { request: Req; getDeadline(): Date | number; on(event: 'cancelled', listener: () => void): unknown }, callback: (err: Partial<ServiceError> | null, response?: Res) => void) => {
      state.calls.push(name);
      if (name === 'forward') {
        const deadline = call.getDeadline();
        state.forwardDeadlines.push(deadline instanceof Date ? deadline.getTime() : deadline);
        call.on('cancelled', () => state.forwardsCancelled++);
      }
      void (async () => {
        if (operator && state.operatorRefusal !== undefined) return callback(state.operatorRefusal);
        const result = await answer(call.request);
        if (isRefusal(result)) return callback(result);
        callback(null, result);
      })();
    };
  }

  const operator: Partial<OperatorServiceServer> = {
    createArea: unary<CreateAreaRequest, CreateAreaResponse>('createArea', ({ area }) => {
      if (area === undefined || area.peerDatacenter === '') return { code: GrpcStatus.INVALID_ARGUMENT, details: 'Must provide a peer datacenter' };
      if (area.id !== '') return { code: GrpcStatus.INVALID_ARGUMENT, details: 'ID must be empty when creating an area' };
      if (area.peerDatacenter === datacenter) return { code: GrpcStatus.FAILED_PRECONDITION, details: `Cannot create an area with the local datacenter "${datacenter}"` };
      if ([...state.areas.values()].some((a) => a.peerDatacenter === area.peerDatacenter)) {
        return { code: GrpcStatus.ALREADY_EXISTS, details: `An area with peer datacenter "${area.peerDatacenter}" already exists` };
      }
      const id = randomUUID();
      state.areas.set(id, { ...area, id });
      state.members.set(id, [self()]);
      changed();
      return { id, index: state.index };
    }),
    listAreas: unary<ListAreasRequest, ListAreasResponse>('listAreas', async ({ options }) => {
      await blockOn(options);
      return { areas: [...state.areas.values()], index: state.index, knownLeader: true, lastContactMs: 0n };
    }),
    getArea: unary<GetAreaRequest, GetAreaResponse>('getArea', async ({ id, options }) => {
      await blockOn(options);
      const area = state.areas.get(id);
      return { areas: area === undefined ? [] : [area], index: state.index, knownLeader: true, lastContactMs: 0n };
    }),
    updateArea: unary<UpdateAreaRequest, UpdateAreaResponse>('updateArea', ({ id, useTls, transit }) => {
      const area = state.areas.get(id);
      if (area === undefined) return unknownArea(id);
      state.areas.set(id, { ...area, useTls: useTls ?? area.useTls, transit: transit ?? area.transit });
      changed();
      return { id, index: state.index };
    }),
    deleteArea: unary<DeleteAreaRequest, DeleteAreaResponse>('deleteArea', ({ id }) => {
      if (!state.areas.delete(id)) return unknownArea(id);
      state.members.delete(id);
      changed();
      return { index: state.index };
    }),
    joinArea: unary<JoinAreaRequest, JoinAreaResponse>('joinArea', ({ id, addresses }) => {
      if (!state.areas.has(id)) return unknownArea(id);
      return { results: joinResults(addresses) };
    }),
    areaMembers: unary<AreaMembersRequest, AreaMembersResponse>('areaMembers', ({ id }) => {
      const members = state.members.get(id);
      return members === undefined ? unknownArea(id) : { members };
    }),
    wanMembers: unary<WanMembersRequest, WanMembersResponse>('wanMembers', () => ({ members: state.wan })),
    joinWan: unary<JoinWanRequest, JoinWanResponse>('joinWan', ({ addresses }) => {
      state.wanJoins.push(...addresses);
      return { results: joinResults(addresses) };
    }),
    datacenters: unary<DatacentersRequest, DatacentersResponse>('datacenters', () => state.datacenters),
    datacenterCoordinates: unary<DatacenterCoordinatesRequest, DatacenterCoordinatesResponse>('datacenterCoordinates', () => state.coordinates),
  };
  const forward: WithoutCalls<ForwardServiceServer> = {
    forward: unary<ForwardRequest, ForwardResponse>(
      'forward',
      (request) => {
        state.forwarded.push(request);
        return state.forwardAnswer(request);
      },
      false,
    ),
    forwardWatch: (call) => {
      const request = call.request.forward!;
      state.watches.push(request);
      state.forwardWatchAnswer(request, call);
    },
  };

  const server = new RoleGrpcServer({
    logger: createLogger({ role: 'federation-router', datacenter, node: 'router-1', level: 'silent' }),
    tracer: trace.getTracer('test'),
    shutdownGraceMs: 100,
    services: [
      { definition: OperatorServiceService, implementation: operator as OperatorServiceServer, protoFile: protobufFileName },
      { definition: ForwardServiceService, implementation: forward, protoFile: protobufFileName, callStream: true },
    ],
  });
  const address = await server.listen('127.0.0.1', 0);
  server.setServing(true);
  return Object.assign(state as FakeRouter, {
    address,
    close: async () => {
      for (const wake of waiters) wake();
      await server.shutdown();
    },
  });
}

function isRefusal(value: unknown): value is Refusal {
  return typeof value === 'object' && value !== null && 'code' in value && 'details' in value && !('response' in value);
}

/** The trailers that mark a status as the router's answer (lib/watch-relay.ts). */
export function routerAnswer(): Metadata {
  const metadata = new Metadata();
  metadata.set(ROUTER_ANSWER_TRAILER, '1');
  return metadata;
}
