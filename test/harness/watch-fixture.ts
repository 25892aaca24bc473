/**
 * The fixture of the WatchService tests: a consensus server in this process (a fresh one for each
 * test), a KV client to write with and a WatchService client, over real gRPC.
 */
import { trace } from '@opentelemetry/api';

import { InProcessConsensus, startInProcessConsensus } from './in-process-consensus';
import { WatchServiceClient } from '../../services/gen/consulate/consensus/v1/watch';
import { ConsensusClient } from '../../services/lib/consensus-client';
import { createRoleClient } from '../../services/lib/grpc-client';

export interface WatchFixture {
  readonly consensus: InProcessConsensus;
  readonly watchClient: WatchServiceClient;
  /** Puts `value` at `key`; the revision it made. */
  put(key: string, value: string): Promise<number>;
  compact(revision: number): Promise<unknown>;
}

/** Registers the fixture's beforeEach / afterEach; its fields are the current test's. */
export function useWatchFixture(): WatchFixture {
  const tracer = trace.getTracer('test');
  let consensus: InProcessConsensus;
  let client: ConsensusClient;
  let watchClient: WatchServiceClient;
  beforeEach(async () => {
    consensus = await startInProcessConsensus();
    client = new ConsensusClient([consensus.address], tracer);
    watchClient = createRoleClient(WatchServiceClient, consensus.address, { tracer });
  });
  afterEach(async () => {
    watchClient.close();
    client.close();
    await consensus.stop();
  });
  return {
    get consensus() {
      return consensus;
    },
    get watchClient() {
      return watchClient;
    },
    async put(key, value) {
      const response = await client.kv('put', { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: true });
      return Number(response.header?.revision ?? 0n);
    },
    compact: (revision) => client.kv('compact', { revision: BigInt(revision) }, { timeoutMs: 5_000, idempotent: true }),
  };
}
