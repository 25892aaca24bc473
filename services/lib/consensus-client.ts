/**
 * How the other roles (catalog, router) and tools talk to a datacenter's consensus servers.
 * Writes and linearizable reads must reach the leader: a follower refuses them with UNAVAILABLE
 * and the leader in the `consulate-leader` trailer, and this client follows that hint, or tries
 * the next server when there is none, until the call's deadline. It never retries a write whose
 * outcome is unknown (leadership lost mid-commit): that error reaches the caller. KV and Lease calls
 * travel as frames on one open Calls stream per service and server (call-stream.ts): a grpc-js unary
 * round trip costs several times a frame each way here.
 */
import { Metadata, ServiceError, handleUnaryCall, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { ClusterServiceClient, MemberListRequest, MemberListResponse, StatusRequest, StatusResponse } from '../gen/consulate/consensus/v1/cluster';
import { DependencyStatus, RoleInfo } from '../gen/consulate/common/v1/role';
import {
  CompactRequest,
  CompactResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KVServiceClient,
  KVServiceService,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../gen/consulate/consensus/v1/kv';
import {
  LeaseGrantRequest,
  LeaseGrantResponse,
  LeaseKeepAliveRequest,
  LeaseKeepAliveResponse,
  LeaseRevokeRequest,
  LeaseRevokeResponse,
  LeaseServiceClient,
  LeaseServiceService,
  LeaseTimeToLiveRequest,
  LeaseTimeToLiveResponse,
} from '../gen/consulate/consensus/v1/lease';
import { CallStreamClient, UnaryMethod } from './call-stream';
import { Clock, systemClock } from './clock';
import { checks, field } from './config';
import { dependencyStatus } from './dependency-status';
import { callUnary, createRoleClient } from './grpc-client';

/** How long a status probe of one server may take. */
export const STATUS_PROBE_TIMEOUT_MS = 1_000;
export const LEADER_TRAILER = 'consulate-leader';

/**
 * A refusal for not leading carries the trailer (consensus/grpc-errors.ts): the leader's address,
 * or '' when none is known. undefined: no refusal (a transport failure, or an unknown outcome).
 */
function leaderHint(err: ServiceError): string | undefined {
  if (err.code !== GrpcStatus.UNAVAILABLE) return undefined;
  const values = (err.metadata ?? new Metadata()).get(LEADER_TRAILER);
  if (values.length === 0) return undefined;
  return String(values[0]).split('=')[1] ?? '';
}

interface Server {
  readonly cluster: ClusterServiceClient;
  readonly kv: KVServiceClient;
  readonly lease: LeaseServiceClient;
  /** The KV and Lease methods, each service on one open Calls stream to the server (unary calls to a server without it). */
  readonly streams: readonly CallStreamClient[];
  readonly kvMethods: { readonly [M in KvMethod]: UnaryMethod<RequestOf<M>, ResponseOf<M>> };
  readonly leaseMethods: { readonly [M in LeaseMethod]: UnaryMethod<LeaseCalls[M][0], LeaseCalls[M][1]> };
}

interface KvCalls {
  put: [PutRequest, PutResponse];
  range: [RangeRequest, RangeResponse];
  deleteRange: [DeleteRangeRequest, DeleteRangeResponse];
  txn: [TxnRequest, TxnResponse];
  compact: [CompactRequest, CompactResponse];
}
type KvMethod = keyof KvCalls;
type RequestOf<M extends KvMethod> = KvCalls[M][0];
type ResponseOf<M extends KvMethod> = KvCalls[M][1];

interface LeaseCalls {
  leaseGrant: [LeaseGrantRequest, LeaseGrantResponse];
  leaseKeepAlive: [LeaseKeepAliveRequest, LeaseKeepAliveResponse];
  leaseRevoke: [LeaseRevokeRequest, LeaseRevokeResponse];
  leaseTimeToLive: [LeaseTimeToLiveRequest, LeaseTimeToLiveResponse];
}
type LeaseMethod = keyof LeaseCalls;

interface ClusterCalls {
  status: [StatusRequest, StatusResponse];
  memberList: [MemberListRequest, MemberListResponse];
}
type ClusterMethod = keyof ClusterCalls;

/**
 * A write whose connection broke after it was sent (the leader died, a connection was reset): it
 * may or may not be applied. Consul's text for the same case; `code` and `details` stay those of
 * the gRPC failure, so callers that map codes keep working.
 */
export class OutcomeUnknownError extends Error {
  override readonly name = 'OutcomeUnknownError';
  readonly code: GrpcStatus;
  readonly details: string;
  readonly metadata: Metadata;

  constructor(cause: ServiceError) {
    super(`leadership lost while committing log: the write may or may not have been applied (${cause.details || cause.message})`);
    this.code = cause.code;
    this.details = this.message;
    this.metadata = cause.metadata ?? new Metadata();
  }
}

export class ConsensusClient {
  private readonly servers = new Map<string, Server>();
  private leader: string | undefined;
  /** Where to start when no leader is known; moves on after every failure. */
  private cursor = 0;

  constructor(
    private readonly addresses: readonly string[],
    private readonly tracer: Tracer,
    private readonly clock: Clock = systemClock,
  ) {
    if (addresses.length === 0) throw new RangeError('a consensus client needs at least one server address');
  }

  /** Asks every server for its status at once; one entry per server, reachable or not. */
  async probe(): Promise<DependencyStatus[]> {
    return Promise.all(
      this.addresses.map((address) =>
        dependencyStatus('consensus', address, async () => {
          const client = this.server(address).cluster;
          return (await callUnary(client.status.bind(client), {}, { timeoutMs: STATUS_PROBE_TIMEOUT_MS, idempotent: true })).info;
        }),
      ),
    );
  }

  /** Runs a KV call on the leader (see `onLeader`), on the Calls stream to it. */
  async kv<M extends KvMethod>(method: M, request: RequestOf<M>, options: { timeoutMs: number; idempotent: boolean }): Promise<ResponseOf<M>> {
    return this.onLeader<RequestOf<M>, ResponseOf<M>>((server) => server.kvMethods, method, request, options);
  }

  /** Runs a Lease call on the leader, as `kv` runs KV calls (on the Lease Calls stream): only the leader keeps leases alive. */
  async lease<M extends LeaseMethod>(method: M, request: LeaseCalls[M][0], options: { timeoutMs: number; idempotent: boolean }): Promise<LeaseCalls[M][1]> {
    return this.onLeader<LeaseCalls[M][0], LeaseCalls[M][1]>((server) => server.leaseMethods, method, request, options);
  }

  /**
   * Runs a read-only Cluster call on `options.address`, or on each server in turn until one
   * answers; rejects with the last failure when none does within `timeoutMs`.
   */
  async cluster<M extends ClusterMethod>(method: M, request: ClusterCalls[M][0], options: { timeoutMs: number; address?: string }): Promise<ClusterCalls[M][1] & { answeredBy: string }> {
    const deadline = this.clock.nowMs() + options.timeoutMs;
    const targets = options.address !== undefined ? [options.address] : this.addresses.map((_, i) => this.addresses[(this.cursor + i) % this.addresses.length]);
    let failure: unknown;
    for (const target of targets) {
      const remaining = deadline - this.clock.nowMs();
      if (remaining <= 0) break;
      const client = this.server(target).cluster;
      const invoke = (client[method] as unknown as (...args: unknown[]) => unknown).bind(client) as Parameters<typeof callUnary<ClusterCalls[M][0], ClusterCalls[M][1]>>[0];
      try {
        return { ...(await callUnary(invoke, request, { timeoutMs: remaining, idempotent: true, maxAttempts: 1 })), answeredBy: target };
      } catch (err) {
        failure = err;
      }
    }
    throw failure ?? new Error(`no consensus server answered within ${options.timeoutMs} ms`);
  }

  /**
   * Runs a call on the leader within `timeoutMs`, following leader hints. `idempotent` calls
   * (reads) are also retried after a transport failure; writes only after a refusal, which
   * guarantees they did not happen.
   */
  private async onLeader<Req, Res>(clientOf: (server: Server) => object, method: string, request: Req, options: { timeoutMs: number; idempotent: boolean }): Promise<Res> {
    const deadline = this.clock.nowMs() + options.timeoutMs;
    let target = this.leader ?? this.addresses[this.cursor % this.addresses.length];
    let attempt = 0;
    for (;;) {
      const client = clientOf(this.server(target)) as Record<string, unknown>;
      const remaining = deadline - this.clock.nowMs();
      try {
        const invoke = (client[method] as (...args: unknown[]) => unknown).bind(client) as Parameters<typeof callUnary<Req, Res>>[0];
        const response = await callUnary(invoke, request, { timeoutMs: Math.max(1, remaining), idempotent: options.idempotent, maxAttempts: 1 });
        this.leader = target;
        return response;
      } catch (err) {
        const failure = err as ServiceError;
        const hint = leaderHint(failure);
        // grpc-js fails a call at once, unsent, while the channel waits to reconnect: as safe to
        // retry elsewhere as a refusal.
        const neverSent = failure.code === GrpcStatus.UNAVAILABLE && (failure.details ?? '').startsWith('No connection established');
        const refused = hint !== undefined || neverSent;
        const transportFailure = failure.code === GrpcStatus.UNAVAILABLE && !refused;
        if (refused || transportFailure) {
          // Whatever happens to this call, the next one starts elsewhere.
          this.leader = undefined;
          this.cursor++;
        }
        // A write sent to a server that then went away may or may not have been applied: say so.
        if (!options.idempotent && transportFailure) throw new OutcomeUnknownError(failure);
        if (!(refused || (options.idempotent && transportFailure))) throw err;
        attempt++;
        if (this.clock.nowMs() + backoffMs(attempt) >= deadline) throw err;
        target = hint !== undefined && hint !== '' ? hint : this.addresses[this.cursor % this.addresses.length];
        await this.clock.sleep(backoffMs(attempt));
      }
    }
  }

  close(): void {
    for (const server of this.servers.values()) {
      for (const stream of server.streams) stream.close();
      server.cluster.close();
      server.kv.close();
      server.lease.close();
    }
    this.servers.clear();
  }

  private server(address: string): Server {
    let server = this.servers.get(address);
    if (server === undefined) {
      const kv = createRoleClient(KVServiceClient, address, { tracer: this.tracer });
      const lease = createRoleClient(LeaseServiceClient, address, { tracer: this.tracer });
      const kvCalls = new CallStreamClient({ client: kv, tracer: this.tracer, peer: address });
      const leaseCalls = new CallStreamClient({ client: lease, tracer: this.tracer, peer: address });
      server = {
        cluster: createRoleClient(ClusterServiceClient, address, { tracer: this.tracer }),
        kv,
        lease,
        streams: [kvCalls, leaseCalls],
        kvMethods: {
          range: kvCalls.method(KVServiceService.range, kv.range.bind(kv)),
          put: kvCalls.method(KVServiceService.put, kv.put.bind(kv)),
          deleteRange: kvCalls.method(KVServiceService.deleteRange, kv.deleteRange.bind(kv)),
          txn: kvCalls.method(KVServiceService.txn, kv.txn.bind(kv)),
          compact: kvCalls.method(KVServiceService.compact, kv.compact.bind(kv)),
        },
        leaseMethods: {
          leaseGrant: leaseCalls.method(LeaseServiceService.leaseGrant, lease.leaseGrant.bind(lease)),
          leaseKeepAlive: leaseCalls.method(LeaseServiceService.leaseKeepAlive, lease.leaseKeepAlive.bind(lease)),
          leaseRevoke: leaseCalls.method(LeaseServiceService.leaseRevoke, lease.leaseRevoke.bind(lease)),
          leaseTimeToLive: leaseCalls.method(LeaseServiceService.leaseTimeToLive, lease.leaseTimeToLive.bind(lease)),
        },
      };
      this.servers.set(address, server);
    }
    return server;
  }
}

/** Short waits while an election settles (150-300 ms on our defaults). */
function backoffMs(attempt: number): number {
  return Math.min(200, 10 * 2 ** Math.min(attempt, 5));
}

/** The config field for the consensus servers a role talks to (catalog, router). */
export function consensusAddrsField() {
  return field.list({
    key: 'consensus_addrs',
    flag: 'consensus-addr',
    usage: "A consensus server's gRPC address, host:port; repeat for each server of the datacenter.",
    default: [],
    check: (addresses) => (addresses.length === 0 ? 'at least one consensus server is needed: pass -consensus-addr=127.0.1.1:8310 once per server' : checks.hostPorts(addresses)),
  });
}

/** A Status handler answering with this process's info and every consensus server's status. */
export function statusWithConsensus(roleInfo: () => RoleInfo, consensus: Pick<ConsensusClient, 'probe'>): handleUnaryCall<unknown, { info: RoleInfo; dependencies: DependencyStatus[] }> {
  return (_call, callback) => {
    consensus.probe().then(
      (dependencies) => callback(null, { info: roleInfo(), dependencies }),
      (err: Error) => callback(err),
    );
  };
}
