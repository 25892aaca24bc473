/**
 * The catalog's public gRPC API on 8502 (`consulate.catalog.v1`): CatalogService, HealthService,
 * KVService, SessionService and EventService, thin adapters over the same state functions as the HTTP API
 * (decode, call state/, map the error, encode). What they share, and the list role.ts serves:
 * each service behind remote-datacenter.ts, which sends calls for another datacenter to it.
 */
import { CatalogServiceService, protobufFileName as catalogProto } from '../../gen/consulate/catalog/v1/catalog';
import { EventServiceService, protobufFileName as eventProto } from '../../gen/consulate/catalog/v1/event';
import { HealthServiceService, protobufFileName as healthProto } from '../../gen/consulate/catalog/v1/health';
import { KVServiceService, protobufFileName as kvProto } from '../../gen/consulate/catalog/v1/kv';
import { SessionServiceService, protobufFileName as sessionProto } from '../../gen/consulate/catalog/v1/session';
import { ConsensusClient } from '../../lib/consensus-client';
import { GrpcService } from '../../lib/grpc-server';
import { Logger } from '../../lib/log';
import { RoleContext } from '../../lib/role-process';
import { ForwardSlots, NO_ROUTERS, RouterClient } from '../router-client';
import { ReadDeps } from '../state/consistent-read';
import { LockDelays } from '../state/lock-delay';
import { catalogService } from './catalog-service';
import { EventServiceDeps, eventService } from './event-service';
import { healthService } from './health-service';
import { kvService } from './kv-service';
import { GrpcDatacenterForwarding } from './remote-datacenter';
import { sessionService } from './session-service';
import { Watches } from './watches';

export interface CatalogApiDeps extends ReadDeps {
  readonly datacenter: string;
  /** This catalog's node name: a session created without a node belongs to it, as in Consul. */
  readonly node: string;
  readonly consensus: Pick<ConsensusClient, 'kv' | 'lease' | 'probe'>;
  /** Keys under a lock-delay, shared with the HTTP API. */
  readonly lockDelays: LockDelays;
  readonly watches: Watches;
  readonly logger: Logger;
  readonly context: Pick<RoleContext<never>, 'roleInfo'>;
  /** The datacenter's federation routers, for calls naming another datacenter; none: no path there. */
  readonly routers?: Pick<RouterClient, 'configured' | 'forward' | 'forwardWatch' | 'datacenters'>;
  /** Forwards in flight, shared with the HTTP API; this API's own when not given. */
  readonly forwardSlots?: ForwardSlots;
  /** The user events this catalog fires and keeps, shared with the HTTP API; no EventService without them. */
  readonly events?: EventServiceDeps['events'];
}

/** The five services, for RoleGrpcServer. */
export function catalogApiServices(deps: CatalogApiDeps): GrpcService[] {
  const remote = new GrpcDatacenterForwarding({ datacenter: deps.datacenter, routers: deps.routers ?? NO_ROUTERS, logger: deps.logger, slots: deps.forwardSlots ?? new ForwardSlots() });
  return [
    { definition: CatalogServiceService, implementation: remote.wrap(CatalogServiceService, catalogService(deps)), protoFile: catalogProto },
    { definition: HealthServiceService, implementation: remote.wrap(HealthServiceService, healthService(deps)), protoFile: healthProto },
    { definition: KVServiceService, implementation: remote.wrap(KVServiceService, kvService(deps)), protoFile: kvProto },
    { definition: SessionServiceService, implementation: remote.wrap(SessionServiceService, sessionService(deps)), protoFile: sessionProto },
    ...(deps.events === undefined ? [] : [{ definition: EventServiceService, implementation: remote.wrap(EventServiceService, eventService({ events: deps.events, logger: deps.logger })), protoFile: eventProto }]),
  ];
}

/** Node meta pairs as the state reads filter them; an empty map is no filter. */
export function metaFilterOf(meta: Readonly<Record<string, string>>): Map<string, string> | undefined {
  const entries = Object.entries(meta);
  return entries.length === 0 ? undefined : new Map(entries);
}
