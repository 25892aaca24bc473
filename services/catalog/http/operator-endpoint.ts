/**
 * `/v1/operator/segment` (reference/consul-compat.md §2.7: every segment name, "" first, from a
 * server gossip agent) and `/v1/operator/raft/configuration` (Consul's
 * RaftConfigurationResponse, from the consensus Cluster API; read on the leader unless `?stale`).
 * `/v1/operator/area` has its own file (area-endpoint.ts).
 */
import { RaftRole } from '../../gen/consulate/consensus/v1/cluster';
import { ConsensusClient } from '../../lib/consensus-client';
import { GossipClient } from '../gossip-client';
import { HttpRouter } from './http-server';
import { CLUSTER_CALL_TIMEOUT_MS, NO_SERVERS, serverRpcAddress } from './status-endpoint';

export interface OperatorDeps {
  readonly datacenter: string;
  readonly gossip: Pick<GossipClient, 'segments'>;
  readonly consensus: Pick<ConsensusClient, 'cluster'>;
}

/** One server of `/v1/operator/raft/configuration`. */
export interface RaftServer {
  readonly ID: string;
  readonly Node: string;
  readonly Address: string;
  readonly Leader: boolean;
  readonly Voter: boolean;
  readonly ProtocolVersion: string;
}

export function registerOperatorEndpoints(router: HttpRouter, deps: OperatorDeps): void {
  router.on(['GET'], '/v1/operator/segment', async () => ({ body: await deps.gossip.segments() }));

  router.on(['GET'], '/v1/operator/raft/configuration', async ({ query }) => {
    let status = await deps.consensus.cluster('status', {}, { timeoutMs: CLUSTER_CALL_TIMEOUT_MS }).catch((err: Error) => {
      throw new Error(`${NO_SERVERS} (${err.message})`);
    });
    if (!query.has('stale') && status.role !== RaftRole.RAFT_ROLE_LEADER) {
      // Consul answers from the leader's configuration; a server without one cannot.
      if (status.leaderAddress === '') throw new Error('No cluster leader');
      status = await deps.consensus.cluster('status', {}, { timeoutMs: CLUSTER_CALL_TIMEOUT_MS, address: status.leaderAddress }).catch(() => {
        throw new Error('No cluster leader');
      });
      if (status.role !== RaftRole.RAFT_ROLE_LEADER) throw new Error('No cluster leader');
    }
    const servers: RaftServer[] = status.members.map((member) => ({
      ID: member.id,
      // Our consensus servers are named after their hosts, as Consul's raft IDs map to node names.
      Node: member.id,
      Address: serverRpcAddress(member.address),
      Leader: member.id === status.leader,
      Voter: !member.learner,
      ProtocolVersion: '3',
    }));
    return { body: { Servers: servers, Index: Number(status.commitIndex) } };
  });
}
