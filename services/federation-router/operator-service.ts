/**
 * gRPC adapters for consulate.router.v1.OperatorService and ForwardService, the router's
 * in-datacenter API on 8330: areas (stored in consensus through area-store.ts, so any router of the
 * datacenter answers), area and WAN members and joins (this router's pools), the datacenters it
 * reaches, and forwarding.
 */
import { ServerErrorResponse, handleUnaryCall, status as GrpcStatus } from '@grpc/grpc-js';

import { areaIdProblem } from '../lib/area-id';
import { WithoutCalls } from '../lib/call-stream';
import { callCancellation } from '../lib/cancellation';
import { Area as AreaMessage, AreaMember, ForwardServiceServer, ForwardServiceService, OperatorServiceServer, ReadOptions } from '../gen/consulate/router/v1/operator';
import { ConsensusClient, statusWithConsensus } from '../lib/consensus-client';
import { RoleContext } from '../lib/role-process';
import { Area, AreaError, AreaStore } from './area-store';
import { AreaMemberView, Federation, WAN_AREA } from './federation';
import { Forwarder, UNDECODABLE, deadlineMsOf } from './forwarder';
import { forwardFailure, refusal, serveForwardWatch } from './federation-service';
import { ForwardEnvelope, asBuffer, encodedMethod, readForwardRequest } from './forward-wire';

/** Consul's blocking-query wait: 5 minutes by default, 10 at most. */
const DEFAULT_WAIT_MS = 5 * 60_000;
const MAX_WAIT_MS = 10 * 60_000;

/** A handler of one area's calls, run only for an ID that can name an area: INVALID_ARGUMENT before anything is looked up otherwise (reliability.md S4). */
function withAreaId<Request extends { id: string }, Response>(handler: handleUnaryCall<Request, Response>): handleUnaryCall<Request, Response> {
  return (call, callback) => {
    const problem = areaIdProblem(call.request.id);
    if (problem !== undefined) return callback(failure(GrpcStatus.INVALID_ARGUMENT, problem));
    handler(call, callback);
  };
}

export interface OperatorDeps {
  readonly context: Pick<RoleContext<never>, 'roleInfo'>;
  readonly consensus: Pick<ConsensusClient, 'probe'>;
  readonly datacenter: string;
  readonly store: AreaStore;
  readonly federation: Federation;
  readonly forwarder: Pick<Forwarder, 'tryOrder'>;
}

export function operatorService(deps: OperatorDeps): OperatorServiceServer {
  const { store, federation, forwarder } = deps;
  return {
    status: statusWithConsensus(deps.context.roleInfo, deps.consensus),
    createArea(call, callback) {
      const area = call.request.area;
      if (area === undefined) return callback(failure(GrpcStatus.INVALID_ARGUMENT, 'Must provide an area'));
      if (area.id !== '') return callback(failure(GrpcStatus.INVALID_ARGUMENT, 'ID must be empty when creating an area'));
      store.create({ peerDatacenter: area.peerDatacenter, retryJoin: area.retryJoin, useTls: area.useTls, transit: area.transit }).then(
        (created) => callback(null, { id: created.id, index: BigInt(created.index) }),
        (err: Error) => callback(areaFailure(err)),
      );
    },
    listAreas(call, callback) {
      read(store, call.request.options).then(
        (meta) => callback(null, { areas: store.areas().map(toMessage), ...meta }),
        (err: Error) => callback(areaFailure(err)),
      );
    },
    getArea: withAreaId((call, callback) => {
      read(store, call.request.options).then(
        (meta) => {
          const area = store.area(call.request.id);
          callback(null, { areas: area === undefined ? [] : [toMessage(area)], ...meta });
        },
        (err: Error) => callback(areaFailure(err)),
      );
    }),
    updateArea: withAreaId((call, callback) => {
      store.update(call.request.id, { useTls: call.request.useTls, transit: call.request.transit }).then(
        (updated) => callback(null, { id: updated.id, index: BigInt(updated.index) }),
        (err: Error) => callback(areaFailure(err)),
      );
    }),
    deleteArea: withAreaId((call, callback) => {
      store.delete(call.request.id).then(
        (deleted) => callback(null, { index: BigInt(deleted.index) }),
        (err: Error) => callback(areaFailure(err)),
      );
    }),
    joinArea: withAreaId((call, callback) => {
      known(store, call.request.id)
        .then(() => federation.join(call.request.id, call.request.addresses))
        .then(
          (results) => callback(null, { results }),
          (err: Error) => callback(areaFailure(err)),
        );
    }),
    areaMembers: withAreaId((call, callback) => {
      known(store, call.request.id)
        .then(() => federation.members(call.request.id).map(toMember))
        .then(
          (members) => callback(null, { members }),
          (err: Error) => callback(areaFailure(err)),
        );
    }),
    wanMembers(_call, callback) {
      callback(null, { members: federation.members(WAN_AREA).map(toMember) });
    },
    joinWan(call, callback) {
      federation.join(WAN_AREA, call.request.addresses).then(
        (results) => callback(null, { results }),
        (err: Error) => callback(areaFailure(err)),
      );
    },
    datacenterCoordinates(_call, callback) {
      const maps = federation.datacenterMaps().map((map) => ({
        datacenter: map.datacenter,
        areaId: map.areaId,
        coordinates: map.coordinates.map(({ node, coord }) => ({ node, segment: '', coord: { vec: [...coord.vec], error: coord.error, adjustment: coord.adjustment, height: coord.height } })),
      }));
      callback(null, { maps });
    },
    datacenters(_call, callback) {
      const routes = federation.routes();
      const names = federation.datacenters();
      callback(null, {
        datacenters: names,
        routes: names.map((name) => {
          const route = routes.get(name);
          if (route === undefined) return { datacenter: name, path: [name], areaId: '', rttNs: 0n, reachable: true, nextHops: [] };
          const rttNs = Number.isFinite(route.rttNs) ? BigInt(Math.round(route.rttNs)) : -1n;
          return { datacenter: name, path: [...route.path], areaId: route.areaId, rttNs, reachable: route.reachable, nextHops: forwarder.tryOrder(route.nextHops).map((hop) => hop.name) };
        }),
      });
    },
  };
}

/** ForwardService as the router serves it: Forward's messages left encoded (forward-wire.ts). */
export const FORWARD_SERVICE = { ...ForwardServiceService, forward: encodedMethod(ForwardServiceService.forward) };

export function forwardService(forwarder: Forwarder): WithoutCalls<ForwardServiceServer, 'forward'> & { forward: handleUnaryCall<Buffer, Buffer> } {
  return {
    forward(call, callback) {
      let request: ForwardEnvelope;
      try {
        request = readForwardRequest(call.request);
      } catch {
        return callback(refusal(GrpcStatus.INTERNAL, UNDECODABLE));
      }
      forwarder.forwardEncoded(request, deadlineMsOf(call), [], undefined, callCancellation(call)).then(
        (answer) => callback(null, asBuffer(answer)),
        (err: Error) => callback(forwardFailure(err)),
      );
    },
    forwardWatch(call) {
      serveForwardWatch(call, forwarder, call.request.forward, [], undefined);
    },
  };
}

/**
 * Resolves once the mirror holds area `id`, catching up with the store first when it does not: an
 * area just created (through this router or another) may not have reached the mirror's watch yet,
 * and a script's `create` then `join` must find it. NOT_FOUND when the store has no such area.
 */
async function known(store: AreaStore, id: string): Promise<void> {
  if (store.area(id) !== undefined) return;
  await store.catchUp();
  if (store.area(id) === undefined) throw AreaError.unknown(id);
}

/** Waits as a blocking query says, and catches up for the default and `consistent` modes. */
async function read(store: AreaStore, options: ReadOptions | undefined): Promise<{ index: bigint; knownLeader: boolean; lastContactMs: bigint }> {
  const minIndex = Number(options?.minIndex ?? 0n);
  if (minIndex > 0) await store.waitForIndex(minIndex, Math.min(MAX_WAIT_MS, options?.waitMs || DEFAULT_WAIT_MS));
  if (options?.stale !== true) await store.catchUp();
  return { index: BigInt(store.index), knownLeader: store.isLoaded, lastContactMs: BigInt(options?.stale === true ? Math.max(0, Date.now() - store.lastContactMs) : 0) };
}

function toMessage(area: Area): AreaMessage {
  return { id: area.id, peerDatacenter: area.peerDatacenter, retryJoin: [...area.retryJoin], useTls: area.useTls, transit: area.transit };
}

function toMember(member: AreaMemberView): AreaMember {
  return { ...member, rttNs: BigInt(member.rttNs) };
}

function areaFailure(err: Error): ServerErrorResponse {
  if (err instanceof AreaError) {
    const code = { invalid: GrpcStatus.INVALID_ARGUMENT, exists: GrpcStatus.ALREADY_EXISTS, 'not-found': GrpcStatus.NOT_FOUND, precondition: GrpcStatus.FAILED_PRECONDITION }[err.kind];
    return failure(code, err.message);
  }
  return failure(GrpcStatus.UNAVAILABLE, err.message);
}

function failure(code: GrpcStatus, details: string): ServerErrorResponse {
  return Object.assign(new Error(details), { code, details });
}
