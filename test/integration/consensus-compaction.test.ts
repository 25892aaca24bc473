/**
 * Auto-compaction with real processes: three consensus servers started with
 * `-auto-compaction-mode=revision -auto-compaction-retention=100` (etcd's flags), 500 puts. The
 * leader compacts on its own, through Raft: on every server a read below the compact revision
 * fails with etcd's compacted error, as does a watch from revision 1, at the same compact
 * revision everywhere, while the current values are intact. Only the leader logs the compaction.
 */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { Consistency } from '../../services/gen/consulate/consensus/v1/kv';
import { WatchServiceClient } from '../../services/gen/consulate/consensus/v1/watch';
import { ConsensusClient } from '../../services/lib/consensus-client';
import { createRoleClient } from '../../services/lib/grpc-client';
import { RoleProcess, eventually, freeLoopbackAddress, logRecords, startRole, stopAll } from '../harness/processes';

const tracer = trace.getTracer('test');
const RETENTION = 100;
const cluster: { id: string; address: string; proc: RoleProcess }[] = [];
let client: ConsensusClient;

beforeAll(async () => {
  for (let i = 1; i <= 3; i++) cluster.push({ id: `server-${i}`, address: freeLoopbackAddress(), proc: undefined as unknown as RoleProcess });
  const args = [...cluster.map((s) => `-initial-peer=${s.id}=${s.address}:8310`), '-auto-compaction-mode=revision', `-auto-compaction-retention=${RETENTION}`];
  await Promise.all(cluster.map(async (server) => (server.proc = await startRole({ role: 'consensus', node: server.id, address: server.address, args }))));
  client = new ConsensusClient(cluster.map((s) => `${s.address}:8310`), tracer);
});

afterAll(async () => {
  client?.close();
  await stopAll();
});

/** A read of c/ on one server (serializable: that server's own state), at `revision` (0: latest). */
async function readOn(address: string, revision: number) {
  const one = new ConsensusClient([`${address}:8310`], tracer);
  try {
    return await one.kv('range', { key: Buffer.from('c/'), rangeEnd: Buffer.from('c0'), limit: 0n, revision: BigInt(revision), consistency: Consistency.CONSISTENCY_SERIALIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: 3_000, idempotent: true });
  } finally {
    one.close();
  }
}

/** How a watch of c/ from `startRevision` on one server ends (it must end, not hang). */
function watchEnding(address: string, startRevision: number): Promise<ServiceError> {
  const watchClient = createRoleClient(WatchServiceClient, `${address}:8310`, { tracer });
  const stream = watchClient.watch({ key: Buffer.from('c/'), rangeEnd: Buffer.from('c0'), startRevision: BigInt(startRevision), prevKv: false });
  return new Promise<ServiceError>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the watch from ${startRevision} on ${address} was neither refused nor ended within 5 s`)), 5_000);
    stream.on('data', () => undefined);
    stream.on('error', (error: ServiceError) => {
      clearTimeout(timer);
      resolve(error);
    });
  }).finally(() => {
    stream.cancel();
    watchClient.close();
  });
}

test(`revision mode, retention ${RETENTION}: after 500 puts the leader has compacted, the same on every server; old revisions and watches from them are refused; current values intact`, async () => {
  for (let batch = 0; batch < 25; batch++) {
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        await client.kv('put', { key: Buffer.from(`c/${i % 10}`), value: Buffer.from(`${batch}.${i}`), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: false });
      }),
    );
  }
  const readLatest = () => client.kv('range', { key: Buffer.from('c/'), rangeEnd: Buffer.from('c0'), limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LINEARIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: 5_000, idempotent: true });
  const before = await readLatest();
  const current = Number(before.header?.revision ?? 0n);
  expect(current).toBeGreaterThanOrEqual(501);

  // The leader checks every second and compacts to current - retention once that passed a tenth of
  // the window, so after its next check 1 to 1.1 x retention is kept. A compaction made during the
  // puts may still stand when the puts end (current 501, compacted 390: the next check moves it),
  // so wait for that check. Every server applies a compaction at the same log index.
  const lowest = current - RETENTION - RETENTION / 10;
  const compacted = await eventually(
    `every server compacted to the same revision, at least ${lowest}`,
    async () => {
      const revisions = await Promise.all(
        cluster.map((server) =>
          readOn(server.address, 2).then(
            () => 0,
            (err: ServiceError) => (err.code === GrpcStatus.OUT_OF_RANGE ? Number(err.metadata.get('consulate-compact-revision')[0]) : 0),
          ),
        ),
      );
      return revisions[0] >= lowest && revisions.every((r) => r === revisions[0]) ? revisions[0] : undefined;
    },
    10_000,
  );
  expect(compacted).toBeLessThanOrEqual(current - RETENTION);

  for (const server of cluster) {
    const old = (await readOn(server.address, compacted - 1).catch((err: ServiceError) => err)) as ServiceError;
    expect([old.code, old.details]).toEqual([GrpcStatus.OUT_OF_RANGE, expect.stringContaining('etcdserver: mvcc: required revision has been compacted')]);
    // The compact revision itself still reads (etcd: reads at the compact revision are served).
    expect((await readOn(server.address, compacted)).kvs).toHaveLength(10);
    const watch = await watchEnding(server.address, 1);
    expect([watch.code, watch.details]).toEqual([GrpcStatus.OUT_OF_RANGE, expect.stringContaining('etcdserver: mvcc: required revision has been compacted')]);
  }

  // Every key's latest value, version and create revision are what they were before.
  const latest = await readLatest();
  expect(latest.kvs.map((kv) => kv.key.toString())).toEqual(Array.from({ length: 10 }, (_, i) => `c/${i}`));
  expect(latest.kvs).toEqual(before.kvs);
  for (const kv of latest.kvs) expect([kv.version, kv.createRevision]).toEqual([50n, expect.any(BigInt)]);

  // One server proposed (the leader), and said so; the others only applied.
  const logged = cluster.map((server) => logRecords(server.proc).filter((record) => record.event === 'auto-compaction'));
  expect(logged.filter((records) => records.length > 0)).toHaveLength(1);
  expect(logged.flat()).toContainEqual(expect.objectContaining({ level: 'info', revision: compacted, keyRevisionsDropped: expect.any(Number) }));
  for (const server of cluster) expect(logRecords(server.proc)).toContainEqual(expect.objectContaining({ event: 'auto-compaction-config', msg: `auto-compaction: the leader keeps the last ${RETENTION} revisions of KV history` }));
});
