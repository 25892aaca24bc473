/** A consensus server's own Status (ClusterService), asked of it alone: no leader-following, no retry. */
import { credentials } from '@grpc/grpc-js';

import { ClusterServiceClient, StatusResponse } from '../../services/gen/consulate/consensus/v1/cluster';
import { callUnary } from '../../services/lib/grpc-client';

export async function consensusStatus(grpcAddress: string, timeoutMs = 1_000): Promise<StatusResponse> {
  const client = new ClusterServiceClient(grpcAddress, credentials.createInsecure());
  try {
    return await callUnary(client.status.bind(client), {}, { timeoutMs, idempotent: false });
  } finally {
    client.close();
  }
}
