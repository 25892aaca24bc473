/**
 * How the other roles (catalog, router) and tools talk to a datacenter's consensus servers.
 * Writes and linearizable reads must reach the leader: a follower refuses them with UNAVAILABLE
 * and the leader in the `consulate-leader` trailer, and this client follows that hint, or tries
 * the next server when there is none, until the call's deadline. It never retries a write whose
 * outcome is unknown (leadership lost mid-commit): that error reaches the caller.
 */
import { Metadata, ServiceError, handleUnaryCall, status as GrpcStatus } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { ClusterServiceClient } from '../gen/consulate/consensus/v1/cluster';
import { DependencyStatus, RoleInfo } from '../gen/consulate/common/v1/role';
import {
  CompactRequest,
  CompactResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KVServiceClient,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../gen/consulate/consensus/v1/kv';
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

  /**
   * Runs a KV call on the leader within `timeoutMs`, following leader hints. `idempotent` calls
   * (reads) are also retried after a transport failure; writes only after a refusal, which
   * guarantees they did not happen.
   */
  async kv<M extends KvMethod>(method: M, request: RequestOf<M>, options: { timeoutMs: number; idempotent: boolean }): Promise<ResponseOf<M>> {
    const deadline = this.clock.nowMs() + options.timeoutMs;
    let target = this.leader ?? this.addresses[this.cursor % this.addresses.length];
    let attempt = 0;
    for (;;) {
      const client = this.server(target).kv;
      const remaining = deadline - this.clock.nowMs();
      try {
        const invoke = (client[method] as unknown as (...args: unknown[]) => unknown).bind(client) as Parameters<typeof callUnary<RequestOf<M>, ResponseOf<M>>>[0];
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
      server.cluster.close();
      server.kv.close();
    }
    this.servers.clear();
  }

  private server(address: string): Server {
    let server = this.servers.get(address);
    if (server === undefined) {
      server = { cluster: createRoleClient(ClusterServiceClient, address, { tracer: this.tracer }), kv: createRoleClient(KVServiceClient, address, { tracer: this.tracer }) };
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
