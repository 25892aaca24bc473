/**
 * What the catalog and the router need from their datacenter's consensus servers. Today that is
 * their status; the KV, Watch and Lease calls join with the consensus issue.
 */
import { handleUnaryCall } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { ClusterServiceClient } from '../gen/consulate/consensus/v1/cluster';
import { DependencyStatus, RoleInfo } from '../gen/consulate/common/v1/role';
import { checks, field } from './config';
import { callUnary, createRoleClient } from './grpc-client';
import { dependencyStatus } from './dependency-status';

/** How long a status probe of one server may take. */
export const STATUS_PROBE_TIMEOUT_MS = 1_000;

export class ConsensusClient {
  private readonly clients: Map<string, ClusterServiceClient>;

  constructor(addresses: readonly string[], tracer: Tracer) {
    this.clients = new Map(addresses.map((address) => [address, createRoleClient(ClusterServiceClient, address, { tracer })]));
  }

  /** Asks every server for its status at once; one entry per server, reachable or not. */
  async probe(): Promise<DependencyStatus[]> {
    return Promise.all(
      [...this.clients].map(([address, client]) =>
        dependencyStatus('consensus', address, async () => (await callUnary(client.status.bind(client), {}, { timeoutMs: STATUS_PROBE_TIMEOUT_MS, idempotent: true })).info),
      ),
    );
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }
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
