/**
 * The consensus client's transport: KV and Lease calls ride open Calls streams to each server,
 * and a server without them (an older version) is served unary calls instead. Against a real
 * consensus server in this process (test/harness/in-process-consensus.ts).
 */
import { trace } from '@opentelemetry/api';

import { InProcessConsensus, startInProcessConsensus } from '../../test/harness/in-process-consensus';
import { Consistency, KVServiceClient } from '../gen/consulate/consensus/v1/kv';
import { LeaseServiceClient } from '../gen/consulate/consensus/v1/lease';
import { ConsensusClient } from './consensus-client';

const range = (key: string) => ({ key: Buffer.from(key), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LEASE, keysOnly: false, countOnly: false });
const put = (key: string, value: string) => ({ key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false });

describe('ConsensusClient KV calls', () => {
  let consensus: InProcessConsensus | undefined;
  let client: ConsensusClient | undefined;

  afterEach(async () => {
    client?.close();
    await consensus?.stop();
    jest.restoreAllMocks();
  });

  it('ride the Calls stream: no unary KV or Lease call is made, and answers and errors come back on it', async () => {
    consensus = await startInProcessConsensus();
    const unaryPut = jest.spyOn(KVServiceClient.prototype, 'put');
    const unaryRange = jest.spyOn(KVServiceClient.prototype, 'range');
    const unaryGrant = jest.spyOn(LeaseServiceClient.prototype, 'leaseGrant');
    client = new ConsensusClient([consensus.address], trace.getTracer('test'));
    await client.kv('put', put('a', '1'), { timeoutMs: 5_000, idempotent: false });
    const read = await client.kv('range', range('a'), { timeoutMs: 5_000, idempotent: true });
    expect(Buffer.from(read.kvs[0].value).toString()).toBe('1');
    // A refusal travels as the call's status: an empty key is invalid.
    await expect(client.kv('put', put('', 'x'), { timeoutMs: 5_000, idempotent: false })).rejects.toMatchObject({ code: 3 });
    const lease = await client.lease('leaseGrant', { ttl: 10n, id: 0n }, { timeoutMs: 5_000, idempotent: false });
    expect((await client.lease('leaseKeepAlive', { id: lease.id }, { timeoutMs: 5_000, idempotent: true })).ttl).toBe(10n);
    expect(unaryPut).not.toHaveBeenCalled();
    expect(unaryRange).not.toHaveBeenCalled();
    expect(unaryGrant).not.toHaveBeenCalled();
  });

  it('fail alone when an answer is over the 4 MiB a client receives; calls beside it are answered', async () => {
    consensus = await startInProcessConsensus();
    client = new ConsensusClient([consensus.address], trace.getTracer('test'));
    const big = Buffer.alloc(500 * 1024, 'v').toString();
    for (let i = 0; i < 9; i++) await client.kv('put', put(`big/${i}`, big), { timeoutMs: 5_000, idempotent: false });
    const all = { ...range('big/'), rangeEnd: Buffer.from('big0') };
    const [tooBig, ...puts] = await Promise.allSettled([
      client.kv('range', all, { timeoutMs: 5_000, idempotent: true }),
      ...Array.from({ length: 5 }, (_, i) => client!.kv('put', put(`small/${i}`, 'x'), { timeoutMs: 5_000, idempotent: false })),
    ]);
    expect(tooBig).toMatchObject({ status: 'rejected', reason: { code: 8 } });
    expect(puts.map((p) => p.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
    // The stream is still up: the next call on it is answered.
    expect((await client.kv('range', range('small/0'), { timeoutMs: 5_000, idempotent: true })).kvs).toHaveLength(1);
  });

  it('fall back to unary calls against a server without Calls (an older version)', async () => {
    consensus = await startInProcessConsensus({ callStreams: false });
    const unaryPut = jest.spyOn(KVServiceClient.prototype, 'put');
    client = new ConsensusClient([consensus.address], trace.getTracer('test'));
    await client.kv('put', put('a', '1'), { timeoutMs: 5_000, idempotent: false });
    await client.kv('put', put('b', '2'), { timeoutMs: 5_000, idempotent: false });
    const read = await client.kv('range', range('b'), { timeoutMs: 5_000, idempotent: true });
    expect(Buffer.from(read.kvs[0].value).toString()).toBe('2');
    expect(unaryPut).toHaveBeenCalledTimes(2);
  });
});
