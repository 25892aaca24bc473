/**
 * `/v1/status/leader` and `/v1/status/peers` (reference/consul-compat.md §4.6) from the consensus
 * Cluster API. Consul shows servers by their RPC address, ip:8300; our Raft runs on 8310, so a
 * server's address here is its consensus host with port 8300.
 */
import { ConsensusClient } from '../../lib/consensus-client';
import { HttpRouter } from './http-server';

export interface StatusDeps {
  readonly datacenter: string;
  readonly consensus: Pick<ConsensusClient, 'cluster'>;
}

/** How long the consensus servers, together, have to answer. */
export const CLUSTER_CALL_TIMEOUT_MS = 5_000;
/** Consul's RPC port, where it shows servers. */
const SERVER_RPC_PORT = 8300;

/** Consul's text when no server can be reached (structs.ErrNoServers). */
export const NO_SERVERS = 'No known Consul servers';

/** A consensus server's gRPC address as Consul shows a server: ip:8300. */
export function serverRpcAddress(grpcAddress: string): string {
  const at = grpcAddress.lastIndexOf(':');
  return `${at < 0 ? grpcAddress : grpcAddress.slice(0, at)}:${SERVER_RPC_PORT}`;
}

export function registerStatusEndpoints(router: HttpRouter, deps: StatusDeps): void {
  router.on(['GET'], '/v1/status/leader', async () => {
    const status = await deps.consensus.cluster('status', {}, { timeoutMs: CLUSTER_CALL_TIMEOUT_MS }).catch(noServers);
    return { body: status.leaderAddress === '' ? '' : serverRpcAddress(status.leaderAddress) };
  });

  router.on(['GET'], '/v1/status/peers', async () => {
    const list = await deps.consensus.cluster('memberList', {}, { timeoutMs: CLUSTER_CALL_TIMEOUT_MS }).catch(noServers);
    return { body: list.members.filter((member) => !member.learner).map((member) => serverRpcAddress(member.address)) };
  });
}

function noServers(err: Error): never {
  throw new Error(`${NO_SERVERS} (${err.message})`);
}
