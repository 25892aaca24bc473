/**
 * `/v1/operator/area` (reference/consul-compat.md §3.2: Consul Enterprise's network areas, all
 * seven endpoints) as adapters over the datacenter's federation routers (OperatorService, through
 * router-client.ts): bodies decoded as Go decodes them into structs.Area, Consul's JSON out
 * (api.Area plus our Transit, api.SerfMember, api.AreaJoinResponse), list and get as blocking
 * reads with the index headers. The areas live in the routers' consensus; the catalog keeps none.
 *
 * A router's refusal keeps its text: INVALID_ARGUMENT (a request that can never succeed) is a 400,
 * anything else a 500, as Consul answers an RPC error. Without a router every endpoint is a 500
 * that says how to configure one.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

import { Area, AreaMember, JoinResult, ReadOptions } from '../../gen/consulate/router/v1/operator';
import { RouterAnswerError, RouterClient } from '../router-client';
import { queryMetaHeaders } from './blocking';
import { GoJsonError, GoType, decodeGoJson, go } from './go-decode';
import { HttpError, badRequest } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { QueryOptions, parseQueryOptions } from './query-options';

export interface AreaDeps {
  readonly datacenter: string;
  readonly routers: Pick<RouterClient, 'createArea' | 'listAreas' | 'getArea' | 'updateArea' | 'deleteArea' | 'joinArea' | 'areaMembers'>;
}

/** api.Area, and Transit (beyond Consul: this datacenter may carry traffic between its transit areas). */
export interface AreaJson {
  readonly ID: string;
  readonly PeerDatacenter: string;
  /** null when empty, as Go writes a nil slice. */
  readonly RetryJoin: string[] | null;
  readonly UseTLS: boolean;
  readonly Transit: boolean;
}

/** api.SerfMember: an area pool's member as the answering router sees it. */
export interface AreaMemberJson {
  readonly ID: string;
  readonly Name: string;
  readonly Addr: string;
  readonly Port: number;
  readonly Datacenter: string;
  readonly Role: string;
  readonly Build: string;
  readonly Protocol: number;
  readonly Status: string;
  /** Nanoseconds (a Go time.Duration): 0 for the router itself, negative when not estimated yet. */
  readonly RTT: bigint;
}

/** api.AreaJoinResponse. */
export interface AreaJoinJson {
  readonly Address: string;
  readonly Joined: boolean;
  readonly Error: string;
}

const AREA_FIELDS: Record<keyof AreaJson, GoType> = {
  ID: go.string('types.AreaID'),
  PeerDatacenter: go.string(),
  RetryJoin: go.slice(go.string()),
  UseTLS: go.bool(),
  Transit: go.bool(),
};
const areaType = go.struct('structs.Area', AREA_FIELDS);
/** The same fields as any JSON: those the body leaves out stay undefined (an update changes only what it names). */
const areaFieldsGiven = go.struct('structs.Area', Object.fromEntries(Object.keys(AREA_FIELDS).map((name) => [name, go.any()])));
const addressesType = go.slice(go.string());

type DecodedArea = { -readonly [K in keyof AreaJson]: AreaJson[K] | undefined };

export function registerAreaEndpoints(router: HttpRouter, deps: AreaDeps): void {
  router.on(['POST'], '/v1/operator/area', async (request) => {
    const area = decode<DecodedArea>(await request.body(), areaType);
    const created = await deps.routers
      .createArea({ area: { id: area.ID ?? '', peerDatacenter: area.PeerDatacenter ?? '', retryJoin: area.RetryJoin ?? [], useTls: area.UseTLS === true, transit: area.Transit === true } })
      .catch(refused);
    return { body: { ID: created.id } };
  });

  router.on(['GET'], '/v1/operator/area', async ({ query }) => {
    const options = parseQueryOptions(query, deps.datacenter);
    const answer = await deps.routers.listAreas({ options: readOptions(options) }).catch(refused);
    return areasRead(answer, options);
  });

  // An array of at most one, `[]` for an unknown ID (terraform reads `[]` as "the area is gone").
  router.on(['GET'], '/v1/operator/area/:id', async ({ query, params }) => {
    const options = parseQueryOptions(query, deps.datacenter);
    const answer = await deps.routers.getArea({ id: areaId(params), options: readOptions(options) }).catch(refused);
    return areasRead(answer, options);
  });

  router.on(['PUT'], '/v1/operator/area/:id', async (request) => {
    const id = areaId(request.params);
    const body = await request.body();
    decode(body, areaType);
    const given = decode<Partial<Record<keyof AreaJson, unknown>>>(body, areaFieldsGiven);
    const updated = await deps.routers.updateArea({ id, useTls: optionalBool(given.UseTLS), transit: optionalBool(given.Transit) }).catch(refused);
    return { body: { ID: updated.id || id } };
  });

  router.on(['DELETE'], '/v1/operator/area/:id', async ({ params }) => {
    await deps.routers.deleteArea({ id: areaId(params) }).catch(refused);
    // Consul's client reads nothing back; its handler writes no body.
    return { body: Buffer.alloc(0) };
  });

  router.on(['PUT'], '/v1/operator/area/:id/join', async (request) => {
    const id = areaId(request.params);
    const addresses = decode<string[] | undefined>(await request.body(), addressesType) ?? [];
    const { results } = await deps.routers.joinArea({ id, addresses }).catch(refused);
    return { body: results.map(joinJson) };
  });

  router.on(['GET'], '/v1/operator/area/:id/members', async ({ params }) => {
    const { members } = await deps.routers.areaMembers({ id: areaId(params) }).catch(refused);
    return { body: members.map(areaMemberJson) };
  });
}

export function areaJson(area: Area): AreaJson {
  return { ID: area.id, PeerDatacenter: area.peerDatacenter, RetryJoin: area.retryJoin.length === 0 ? null : area.retryJoin, UseTLS: area.useTls, Transit: area.transit };
}

export function areaMemberJson(member: AreaMember): AreaMemberJson {
  return {
    ID: member.id,
    Name: member.name,
    Addr: member.addr,
    Port: member.port,
    Datacenter: member.datacenter,
    Role: member.role,
    Build: member.build,
    Protocol: member.protocol,
    Status: member.status,
    RTT: member.rttNs,
  };
}

function joinJson(result: JoinResult): AreaJoinJson {
  return { Address: result.address, Joined: result.joined, Error: result.error };
}

/** ListAreas and GetArea answer alike: the areas, and the meta of a blocking read. */
function areasRead(answer: { areas: Area[]; index: bigint; knownLeader: boolean; lastContactMs: bigint }, options: QueryOptions): HttpResult {
  const meta = { index: Number(answer.index), knownLeader: answer.knownLeader, lastContactMs: Number(answer.lastContactMs) };
  return { body: answer.areas.map(areaJson), headers: queryMetaHeaders(meta, options) };
}

function readOptions(options: QueryOptions): ReadOptions {
  return { minIndex: BigInt(options.minIndex), waitMs: Math.ceil(options.waitMs), stale: options.consistency === 'stale', consistent: options.consistency === 'consistent' };
}

function areaId(params: HttpRequest['params']): string {
  if (params.id === '') throw badRequest('Missing area ID');
  return params.id;
}

/** A bool the body names; JSON null, as Go leaves the field alone, does not. */
function optionalBool(value: unknown): boolean | undefined {
  return typeof value === 'boolean' ? value : undefined;
}

/** decodeBody with Consul's 400 (agent/http.go). */
function decode<T>(body: Buffer, type: GoType): T {
  try {
    return decodeGoJson(body, type) as T;
  } catch (err) {
    if (err instanceof GoJsonError) throw badRequest(`Request decode failed: ${err.message}`);
    throw err;
  }
}

/** The refusals that are not Consul's 500 for an RPC error (§4.8): a request that can never succeed, ACLs, rate limits. */
const REFUSAL_STATUS = new Map<GrpcStatus, number>([
  [GrpcStatus.INVALID_ARGUMENT, 400],
  [GrpcStatus.FAILED_PRECONDITION, 400],
  [GrpcStatus.PERMISSION_DENIED, 403],
  [GrpcStatus.RESOURCE_EXHAUSTED, 429],
]);

/** A router's refusal, with its text. */
function refused(err: unknown): never {
  if (!(err instanceof RouterAnswerError)) throw err;
  throw new HttpError(REFUSAL_STATUS.get(err.code) ?? 500, err.message);
}
