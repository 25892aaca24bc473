/**
 * A follower that was down while the others took 10,000 writes (reliability.md P6; etcd's
 * BlackholeUntilSnapshot): the leader has compacted its log past what the follower holds, so the
 * follower comes back through InstallSnapshot, as real processes with a low
 * `-raft-snapshot-entries`. While it catches up, a linearizable read sent to it is never answered
 * from its old state (a follower serves none: it refuses with a hint to the leader, which the client
 * follows); once caught up it holds exactly the leader's data.
 */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { RaftRole } from '../../services/gen/consulate/consensus/v1/cluster';
import { Consistency } from '../../services/gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../services/lib/consensus-client';
import { consensusStatus } from '../harness/consensus-status';
import { RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

const tracer = trace.getTracer('test');
const WRITES = 10_000;
const SNAPSHOT_ENTRIES = 1_000;
const servers: { id: string; address: string; proc: RoleProcess }[] = [];

const args = () => [...servers.map((s) => `-initial-peer=${s.id}=${s.address}:8310`), `-raft-snapshot-entries=${SNAPSHOT_ENTRIES}`];

const statusOf = (address: string) => consensusStatus(`${address}:8310`);

/** The p6/ keys as one server has them: serializable, from its own state. */
async function keysOn(address: string): Promise<Map<string, string>> {
  const client = new ConsensusClient([`${address}:8310`], tracer);
  try {
    const response = await client.kv('range', { key: Buffer.from('p6/'), rangeEnd: Buffer.from('p60'), limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_SERIALIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: 10_000, idempotent: true });
    return new Map(response.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
  } finally {
    client.close();
  }
}

beforeAll(async () => {
  for (let i = 1; i <= 3; i++) servers.push({ id: `server-${i}`, address: freeLoopbackAddress(), proc: undefined as unknown as RoleProcess });
  for (const server of servers) server.proc = await startRole({ role: 'consensus', node: server.id, address: server.address, args: args(), waitHealthy: false });
  for (const server of servers) await eventually(`${server.id} serving`, async () => (await statusOf(server.address).catch(() => undefined)) !== undefined, 20_000);
});

afterAll(async () => {
  await stopAll();
});

test(`a follower down for ${WRITES.toLocaleString('en-US')} writes comes back by snapshot, answers no linearizable read from its old state, and ends with the leader's data (P6)`, async () => {
  const leaderId = await eventually('a leader', async () => (await statusOf(servers[0].address).catch(() => undefined))?.leader || undefined, 10_000);
  const follower = servers.find((s) => s.id !== leaderId)!;
  const client = new ConsensusClient(servers.filter((s) => s !== follower).map((s) => `${s.address}:8310`), tracer);
  try {
    await client.kv('put', { key: Buffer.from('p6/00000'), value: Buffer.from('before'), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: false });
    await eventually('the follower has the first write', async () => ((await keysOn(follower.address)).get('p6/00000') === 'before' ? true : undefined), 10_000);
    await follower.proc.stop();

    // 64 writers at once; the last value of p6/00000 is written last.
    let next = 1;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let n = next++; n < WRITES; n = next++) {
          await client.kv('put', { key: Buffer.from(`p6/${String(n).padStart(5, '0')}`), value: Buffer.from(String(n)), lease: 0n, prevKv: false }, { timeoutMs: 10_000, idempotent: false });
        }
      }),
    );
    await client.kv('put', { key: Buffer.from('p6/00000'), value: Buffer.from('after'), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: false });
    const leader = servers.find((s) => s.id === leaderId)!;
    const target = Number((await statusOf(leader.address)).commitIndex);

    follower.proc = await startRole({ role: 'consensus', node: follower.id, address: follower.address, dataDir: follower.proc.dataDir, args: args(), waitHealthy: false });
    const direct = new ConsensusClient([`${follower.address}:8310`], tracer);
    const refusals = new Set<string>();
    let answered = 0;
    try {
      // Linearizable reads at the follower until it has caught up: never answered from its old state.
      await eventually(
        'the follower caught up',
        async () => {
          const outcome = await direct
            .kv('range', { key: Buffer.from('p6/00000'), rangeEnd: Buffer.alloc(0), limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LINEARIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: 2_000, idempotent: false })
            .then(
              (response) => response.kvs[0]?.value.toString(),
              (err: ServiceError) => `${GrpcStatus[err.code]}`,
            );
          if (outcome === 'before') throw new Error('the follower served a linearizable read from its old state');
          if (outcome === 'after') answered++;
          else if (outcome !== undefined) refusals.add(outcome);
          const status = await statusOf(follower.address).catch(() => undefined);
          return status !== undefined && Number(status.appliedIndex) >= target && status.role === RaftRole.RAFT_ROLE_FOLLOWER ? true : undefined;
        },
        60_000,
      );
    } finally {
      direct.close();
    }
    // It came back through a snapshot: its log on the leader was long compacted.
    expect(follower.proc.lines.some((line) => line.includes('"event":"snapshot-installed"'))).toBe(true);
    const [mine, theirs] = await Promise.all([keysOn(follower.address), keysOn(leader.address)]);
    expect(mine.size).toBe(WRITES);
    expect(mine).toEqual(theirs);
    expect(mine.get('p6/00000')).toBe('after');
    console.log(`P6: follower down for ${WRITES} writes (snapshots every ${SNAPSHOT_ENTRIES} entries) caught up to index ${target}; linearizable reads sent to it meanwhile: ${answered} answered with the new value (through the leader's hint), refused: ${[...refusals].join(', ') || 'none'}`);
  } finally {
    client.close();
  }
});
