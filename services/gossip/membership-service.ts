/** gRPC adapter for consulate.gossip.v1.MembershipService: decode, ask the agent, map errors, encode. */
import { ServerErrorResponse, ServerWritableStream, status as GrpcStatus } from '@grpc/grpc-js';

import {
  Member,
  MemberEventType,
  MembershipServiceServer,
  WatchEventsRequest,
  WatchEventsResponse,
  WatchMembersRequest,
  WatchMembersResponse,
} from '../gen/consulate/gossip/v1/membership';
import { WithoutCalls } from '../lib/call-stream';
import { MemberInfo, SERF_STATUS_CODE, SwimEvent, serfStatus } from '../lib/swim/types';
import { RoleContext } from '../lib/role-process';
import { GossipAgent } from './agent';
import { Keyring } from './keyring';
import { ALL_SEGMENTS } from './segments';

/** Watches one agent serves at once; more are refused with RESOURCE_EXHAUSTED. */
export const MAX_WATCHES = 256;
/** Addresses one Join may name. */
export const MAX_JOIN_ADDRESSES = 64;

export interface MembershipDeps {
  readonly context: Pick<RoleContext<never>, 'roleInfo'>;
  readonly agent: GossipAgent;
  readonly keyring: Keyring | undefined;
  /** Leaves every pool, then stops the process (`consul leave`). */
  readonly leaveAndStop: () => Promise<void>;
  /** Open watch streams; the role ends them when it stops, so shutdown need not wait them out. */
  readonly openStreams: Set<{ end(): void }>;
}

export function membershipService(deps: MembershipDeps): WithoutCalls<MembershipServiceServer> {
  const { agent } = deps;
  let watches = 0;

  const startWatch = (call: ServerWritableStream<unknown, unknown>): (() => void) | undefined => {
    if (watches >= MAX_WATCHES) {
      call.emit('error', failure(GrpcStatus.RESOURCE_EXHAUSTED, `too many watches on this agent (${MAX_WATCHES}); close some and retry`));
      return undefined;
    }
    watches++;
    deps.openStreams.add(call);
    return () => {
      watches--;
      deps.openStreams.delete(call);
    };
  };

  return {
    status(_call, callback) {
      callback(null, { info: deps.context.roleInfo(), server: agent.options.server });
    },

    members(call, callback) {
      const listed = agent.members(call.request.segment);
      if ('error' in listed) return callback(failure(GrpcStatus.NOT_FOUND, listed.error));
      callback(null, { members: listed.map(({ member, segment }) => toMember(member, segment)) });
    },

    join(call, callback) {
      const { addresses, segment } = call.request;
      if (addresses.length === 0) return callback(failure(GrpcStatus.INVALID_ARGUMENT, 'no addresses to join: give at least one host:port'));
      if (addresses.length > MAX_JOIN_ADDRESSES) return callback(failure(GrpcStatus.INVALID_ARGUMENT, `too many addresses to join at once (${addresses.length}); the limit is ${MAX_JOIN_ADDRESSES}`));
      agent.join(addresses, segment).then(
        (results) => {
          if ('error' in results) return callback(failure(GrpcStatus.NOT_FOUND, results.error));
          callback(null, { results, joined: results.filter((r) => r.joined).length });
        },
        (err: Error) => callback(failure(GrpcStatus.INTERNAL, err.message)),
      );
    },

    leave(_call, callback) {
      deps.leaveAndStop().then(
        () => callback(null, {}),
        (err: Error) => callback(failure(GrpcStatus.INTERNAL, err.message)),
      );
    },

    forceLeave(call, callback) {
      const error = agent.forceLeave(call.request.node, call.request.prune);
      if (error !== undefined) return callback(failure(GrpcStatus.NOT_FOUND, error));
      callback(null, {});
    },

    segments(_call, callback) {
      callback(null, { segments: agent.segments() });
    },

    coordinates(call, callback) {
      const coordinates = agent.coordinates(call.request.segment);
      if ('error' in coordinates) return callback(failure(GrpcStatus.NOT_FOUND, coordinates.error));
      callback(null, {
        coordinates: coordinates.map(({ node, segment, coordinate }) => ({ node, segment, coord: { vec: [...coordinate.vec], error: coordinate.error, adjustment: coordinate.adjustment, height: coordinate.height } })),
      });
    },

    watchMembers(call: ServerWritableStream<WatchMembersRequest, WatchMembersResponse>) {
      const segment = call.request.segment;
      const snapshot = agent.members(segment);
      if ('error' in snapshot) {
        call.emit('error', failure(GrpcStatus.NOT_FOUND, snapshot.error));
        return;
      }
      const release = startWatch(call as ServerWritableStream<unknown, unknown>);
      if (release === undefined) return;
      const wanted = (poolSegment: string) => segment === ALL_SEGMENTS || poolSegment === segment || (!agent.options.server && segment === '');
      for (const { member, segment: from } of snapshot) call.write({ event: { type: MemberEventType.MEMBER_EVENT_TYPE_CURRENT, member: toMember(member, from) } });
      call.write({ event: { type: MemberEventType.MEMBER_EVENT_TYPE_SYNCED } });
      const unsubscribe = agent.subscribe((poolSegment, event) => {
        const type = memberEventType(event);
        if (type === undefined || !wanted(poolSegment) || !('member' in event)) return;
        call.write({ event: { type, member: toMember(event.member, poolSegment) } });
      });
      const end = () => {
        unsubscribe();
        release();
      };
      call.on('cancelled', end);
      call.on('close', end);
    },

    fireEvent(call, callback) {
      const { name, payload } = call.request;
      if (name === '') return callback(failure(GrpcStatus.INVALID_ARGUMENT, 'an event needs a name'));
      const fired = agent.fireEvent(name, new Uint8Array(payload));
      if ('error' in fired) return callback(failure(GrpcStatus.INVALID_ARGUMENT, fired.error));
      callback(null, { ltime: BigInt(fired.ltime) });
    },

    watchEvents(call: ServerWritableStream<WatchEventsRequest, WatchEventsResponse>) {
      const release = startWatch(call as ServerWritableStream<unknown, unknown>);
      if (release === undefined) return;
      const unsubscribe = agent.subscribe((_segment, event) => {
        if (event.type !== 'user-event') return;
        call.write({ event: { name: event.name, payload: Buffer.from(event.payload), ltime: BigInt(event.ltime) } });
      });
      const end = () => {
        unsubscribe();
        release();
      };
      call.on('cancelled', end);
      call.on('close', end);
    },

    listKeys(_call, callback) {
      const keyring = deps.keyring;
      if (keyring === undefined) return callback(noEncryption());
      const keys = keyring.list();
      callback(null, { keys, primaryKey: keys[0] ?? '' });
    },

    installKey(call, callback) {
      keyringOp(deps.keyring, (keyring) => keyring.install(call.request.key), callback);
    },

    useKey(call, callback) {
      keyringOp(deps.keyring, (keyring) => keyring.use(call.request.key), callback);
    },

    removeKey(call, callback) {
      keyringOp(deps.keyring, (keyring) => keyring.remove(call.request.key), callback);
    },
  };
}

function keyringOp(keyring: Keyring | undefined, op: (keyring: Keyring) => void, callback: (err: ServerErrorResponse | null, value?: object) => void): void {
  if (keyring === undefined) return callback(noEncryption());
  try {
    op(keyring);
  } catch (err) {
    return callback(failure(GrpcStatus.INVALID_ARGUMENT, (err as Error).message));
  }
  callback(null, {});
}

function noEncryption(): ServerErrorResponse {
  return failure(GrpcStatus.FAILED_PRECONDITION, 'Gossip encryption is not enabled on this agent: start it with -encrypt=KEY (make one with `consulate keygen`)');
}

/** A member as the API shows it: Consul's status word and number, the address split from the port. */
export function toMember(member: MemberInfo, segment: string): Member {
  const at = member.address.lastIndexOf(':');
  const status = serfStatus(member.state);
  return {
    name: member.name,
    address: at < 0 ? member.address : member.address.slice(0, at),
    port: at < 0 ? 0 : Number(member.address.slice(at + 1)),
    tags: { ...member.tags },
    status,
    statusCode: SERF_STATUS_CODE[status],
    segment,
    incarnation: BigInt(member.incarnation),
  };
}

function memberEventType(event: SwimEvent): MemberEventType | undefined {
  switch (event.type) {
    case 'member-join':
      return MemberEventType.MEMBER_EVENT_TYPE_JOIN;
    case 'member-update':
      return MemberEventType.MEMBER_EVENT_TYPE_UPDATE;
    case 'member-failed':
      return MemberEventType.MEMBER_EVENT_TYPE_FAILED;
    case 'member-leave':
      return MemberEventType.MEMBER_EVENT_TYPE_LEAVE;
    case 'member-reap':
      return MemberEventType.MEMBER_EVENT_TYPE_REAP;
    default:
      return undefined;
  }
}

function failure(code: GrpcStatus, details: string): ServerErrorResponse {
  return Object.assign(new Error(details), { code, details });
}
