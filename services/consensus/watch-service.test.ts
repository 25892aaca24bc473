/**
 * The Watch adapter over real gRPC (a consensus server in this process,
 * test/harness/in-process-consensus.ts): a watch that cannot be served ends with its status, as
 * etcd's does: from a compacted revision, OUT_OF_RANGE with etcd's text and the compact revision
 * in a trailer. A client must hear it: one left waiting on an open stream never reads again (the
 * catalog's view would stay stale; prefix-watch.test.ts shows it recovering once told).
 */
import { ClientReadableStream, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { InProcessConsensus, startInProcessConsensus } from '../../test/harness/in-process-consensus';
import { WatchResponse, WatchServiceClient } from '../gen/consulate/consensus/v1/watch';
import { ConsensusClient } from '../lib/consensus-client';
import { createRoleClient } from '../lib/grpc-client';

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

async function put(key: string, value: string): Promise<number> {
  const response = await client.kv('put', { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: true });
  return Number(response.header?.revision ?? 0n);
}

const compact = (revision: number) => client.kv('compact', { revision: BigInt(revision) }, { timeoutMs: 5_000, idempotent: true });

/** How the stream ended (within `timeoutMs`), and how many events it delivered before. */
function ending(stream: ClientReadableStream<WatchResponse>, timeoutMs = 5_000): Promise<{ error: ServiceError | undefined; events: number }> {
  let events = 0;
  stream.on('data', (response: WatchResponse) => (events += response.events.length));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stream.cancel();
      resolve({ error: undefined, events });
    }, timeoutMs);
    stream.on('error', (error: ServiceError) => {
      clearTimeout(timer);
      resolve({ error, events });
    });
  });
}

test('a watch from a compacted revision ends at once with OUT_OF_RANGE, etcd\'s text and the compact revision', async () => {
  for (let i = 0; i < 5; i++) await put('/a/x', String(i));
  await compact(4);
  const stream = watchClient.watch({ key: Buffer.from('/a/'), rangeEnd: Buffer.from('/a0'), startRevision: 1n, prevKv: false });
  const { error, events } = await ending(stream);
  expect(events).toBe(0);
  expect(error?.code).toBe(GrpcStatus.OUT_OF_RANGE);
  expect(error?.details).toBe('etcdserver: mvcc: required revision has been compacted (revisions up to 4 were compacted (compact revision 4); watch from 5 or later)');
  expect(error?.metadata.get('consulate-compact-revision')).toEqual(['4']);
});
