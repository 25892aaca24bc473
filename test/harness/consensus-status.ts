/** A consensus server's own Status (ClusterService), asked of it alone: no leader-following, no retry. */
import { credentials } from '@grpc/grpc-js';

import { ClusterServiceClient, RaftRole, StatusResponse } from '../../services/gen/consulate/consensus/v1/cluster';
import { callUnary } from '../../services/lib/grpc-client';

export async function consensusStatus(grpcAddress: string, timeoutMs = 1_000): Promise<StatusResponse> {
  const client = new ClusterServiceClient(grpcAddress, credentials.createInsecure());
  try {
    return await callUnary(client.status.bind(client), {}, { timeoutMs, idempotent: false });
  } finally {
    client.close();
  }
}

/** The first of the servers at `grpcAddresses` that says it leads (asked one by one), with its Status; undefined when none does. */
export async function selfDeclaredLeader(grpcAddresses: readonly string[], timeoutMs = 1_000): Promise<{ index: number; status: StatusResponse } | undefined> {
  for (const [index, address] of grpcAddresses.entries()) {
    const status = await consensusStatus(address, timeoutMs).catch(() => undefined);
    if (status?.role === RaftRole.RAFT_ROLE_LEADER) return { index, status };
  }
  return undefined;
}
