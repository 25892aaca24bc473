/**
 * The consensus role: one of a datacenter's 3 or 5 servers holding its replicated state, a Raft
 * log (raft/) whose state machine is a revisioned KV store (kv/), stored in a write-ahead log (storage/),
 * served over gRPC on 8310: Raft between servers, and KV, Watch, Lease and Cluster for the
 * other roles. A new cluster bootstraps from `-initial-peer` (the same list on every server); a
 * server started without it and without state waits to be added (ClusterService.MemberAdd).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { ClusterServiceService, protobufFileName as clusterProto } from '../gen/consulate/consensus/v1/cluster';
import { KVServiceService, protobufFileName as kvProto } from '../gen/consulate/consensus/v1/kv';
import { LeaseServiceService, protobufFileName as leaseProto } from '../gen/consulate/consensus/v1/lease';
import { RaftServiceService, protobufFileName as raftProto } from '../gen/consulate/consensus/v1/raft';
import { checks, field } from '../lib/config';
import { formatGoDuration } from '../lib/go-text';
import { RoleGrpcServer } from '../lib/grpc-server';
import { RoleMetrics } from '../lib/metrics';
import { RoleDefinition } from '../lib/role-process';
import { AUTO_COMPACTION_MODES, AutoCompactionPolicy, AutoCompactionSettings, parseAutoCompaction } from './auto-compaction';
import { clusterService } from './cluster-service';
import { ConsensusNode, ConsensusNodeMetrics } from './consensus-node';
import { kvService, leaseService } from './kv-service';
import { raftConfig } from './raft/config';
import { Member } from './raft/types';
import { raftService } from './raft-service';
import { LmdbLogStore } from './storage/lmdb-log-store';
import { LogStore } from './storage/log-store';
import { WalLogStore } from './storage/wal-log-store';
import { RaftTransport, TRANSPORT_LIMITS } from './transport';
import { watchGrpcService } from './watch-service';

const PEER = /^([A-Za-z0-9][A-Za-z0-9._-]*)=([^=\s]+:\d+)$/;

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the gRPC API: Raft peers, KV, Watch, Lease and Cluster.', default: 8310, check: checks.port }),
  initialPeers: field.list({
    key: 'initial_peers',
    flag: 'initial-peer',
    usage: 'A server of a new cluster as id=host:port, this one included; repeat for each. The same list on every server. Ignored once this server has state.',
    default: [],
    check: (peers) => peers.map((peer) => (PEER.test(peer) ? undefined : `"${peer}" is not id=host:port (e.g. server-1=127.0.1.1:8310)`)).find((problem) => problem !== undefined),
  }),
  tickMs: field.int({ key: 'raft.tick_ms', flag: 'raft-tick-ms', usage: 'Milliseconds per Raft tick.', default: 25, check: (v) => (v >= 1 && v <= 1000 ? undefined : 'use 1-1000 ms') }),
  electionTicks: field.int({
    key: 'raft.election_ticks',
    flag: 'raft-election-ticks',
    usage: 'Ticks without a leader before an election; each waits a random [n, 2n) ticks (default 150-300 ms).',
    default: 6,
    check: (v) => (v >= 3 ? undefined : 'use at least 3'),
  }),
  heartbeatTicks: field.int({ key: 'raft.heartbeat_ticks', flag: 'raft-heartbeat-ticks', usage: 'Ticks between leader heartbeats.', default: 2, check: (v) => (v >= 1 ? undefined : 'use at least 1') }),
  snapshotEntries: field.int({
    key: 'raft.snapshot_entries',
    flag: 'raft-snapshot-entries',
    usage: 'Applied entries between snapshots of the state machine (the log is compacted at each; etcd --snapshot-count).',
    default: 100_000,
    check: (v) => (v >= 10 ? undefined : 'use at least 10'),
  }),
  logStore: field.string({
    key: 'raft.log_store',
    flag: 'raft-log-store',
    usage: 'Where the Raft log is kept: wal (segment files, one fdatasync per write) or lmdb (two syncs per write). A data directory keeps the kind it was started with.',
    default: 'wal',
    check: (v) => (v === 'wal' || v === 'lmdb' ? undefined : `unknown log store "${v}": use wal or lmdb`),
  }),
  pipelineLeaderWrites: field.bool({
    key: 'raft.pipeline_leader_writes',
    flag: 'raft-pipeline-leader-writes',
    usage: "A leader writes its log off the event loop while it goes on serving, and a write commits once a quorum has it on disk, the leader's own copy or not (Raft thesis 10.2.1). false: the leader waits for its own disk first.",
    default: true,
  }),
  // etcd's flags and meanings; the default differs (etcd's is off): README.md says why.
  autoCompactionMode: field.string({
    key: 'auto_compaction.mode',
    flag: 'auto-compaction-mode',
    usage: 'How -auto-compaction-retention counts the KV history kept: periodic (a duration) or revision (a number of revisions).',
    default: 'periodic',
    check: (v) => ((AUTO_COMPACTION_MODES as readonly string[]).includes(v) ? undefined : `unknown mode "${v}": use periodic or revision`),
  }),
  autoCompactionRetention: field.string({
    key: 'auto_compaction.retention',
    flag: 'auto-compaction-retention',
    usage: 'KV history the leader keeps before compacting the rest: periodic, a duration (5m, 1h) or whole hours; revision, a count. 0 turns it off.',
    default: '5m',
  }),
};

export const consensusRole: RoleDefinition<typeof fields> = {
  role: 'consensus',
  synopsis: "Runs a consensus server: the datacenter's replicated state (Raft and a revisioned KV store).",
  fields,
  async start(context) {
    const { config, logger, clock } = context;
    const initialMembers: Member[] = config.initialPeers.map((peer) => {
      const [, id, address] = PEER.exec(peer)!;
      return { id, address, learner: false };
    });
    if (initialMembers.length > 0 && !initialMembers.some((member) => member.id === config.node)) {
      throw new Error(`-initial-peer lists ${initialMembers.map((m) => m.id).join(', ')} but not this server (-node=${config.node}); list every server of the new cluster, this one included`);
    }
    if (new Set(initialMembers.map((member) => member.id)).size !== initialMembers.length) throw new Error('-initial-peer names a server twice');
    if (config.heartbeatTicks >= config.electionTicks) throw new Error(`-raft-heartbeat-ticks (${config.heartbeatTicks}) must be less than -raft-election-ticks (${config.electionTicks})`);
    const autoCompaction = parseAutoCompaction(config.autoCompactionMode, config.autoCompactionRetention);
    if (autoCompaction.error !== undefined) throw new Error(autoCompaction.error);

    const logStore = config.logStore === 'lmdb' ? 'lmdb' : 'wal';
    const raftDir = join(config.dataDir, 'raft');
    logger.info(
      { event: 'raft-log-store', kind: logStore, dir: raftDir, pipelineLeaderWrites: config.pipelineLeaderWrites },
      `raft log: ${logStore === 'wal' ? 'write-ahead log segments' : 'lmdb'} in ${raftDir}; ${config.pipelineLeaderWrites ? 'a leader writes its own copy in the background' : 'a leader waits for its own disk'}`,
    );
    const advertised = initialMembers.find((member) => member.id === config.node)?.address ?? `${config.bind}:${config.grpcPort}`;
    const transport = new RaftTransport(config.node, advertised, clock, logger);
    const raftMetrics = registerRaftMetrics(context.metrics);
    const node = await ConsensusNode.open({
      raft: raftConfig({ id: config.node, random: Math.random, electionTicks: config.electionTicks, heartbeatTicks: config.heartbeatTicks }),
      tickMs: config.tickMs,
      store: openLogStore(logStore, raftDir),
      sender: transport,
      clock,
      logger,
      initialMembers,
      snapshotEntries: config.snapshotEntries,
      // The servers of a cluster would otherwise all encode a snapshot at the same index at once.
      snapshotSpread: 0.25,
      maxPending: 10_000,
      metrics: raftMetrics.hooks,
      autoCompaction: new AutoCompactionPolicy(autoCompaction.settings),
      pipelineLeaderWrites: config.pipelineLeaderWrites,
    });
    logger.info({ event: 'auto-compaction-config', ...autoCompaction.settings }, autoCompactionText(autoCompaction.settings));
    raftMetrics.observe(node);
    const server = new RoleGrpcServer({
      logger,
      tracer: context.tracer,
      maxMessageBytes: TRANSPORT_LIMITS.maxMessageBytes,
      services: [
        { definition: ClusterServiceService, implementation: clusterService(context, node), protoFile: clusterProto },
        { definition: KVServiceService, implementation: kvService(node), protoFile: kvProto, callStream: true },
        watchGrpcService(node),
        { definition: LeaseServiceService, implementation: leaseService(node), protoFile: leaseProto, callStream: true },
        { definition: RaftServiceService, implementation: raftService(node, transport, config.node, logger), protoFile: raftProto, traced: false },
      ],
    });
    const grpc = await server.listen(config.bind, config.grpcPort);
    node.start();
    node.done.catch(() => {
      // The loop logged why; a server that cannot persist or whose invariants broke must stop.
      process.exit(1);
    });
    server.setServing(true);
    return {
      listeners: { grpc },
      async stop() {
        await server.shutdown();
        await node.stop();
        transport.close();
      },
    };
  },
};

/**
 * The server's log store, of the kind asked for, refusing a directory the other kind wrote: a server
 * that started over an empty log there would have forgotten its term, its vote and its entries.
 * Both commit on the main thread: for lmdb measured 1.9 ms against 3.6 ms p50 per put on one
 * server (the hand-off to lmdb's writer thread costs more than it frees); for the WAL, 0.16 against
 * 0.26 ms per save (storage/README.md). Batching comes from the node's loop either way. A leader's
 * saves go to libuv's pool instead (SaveOptions.offThread, -raft-pipeline-leader-writes): there the
 * event loop has follower acknowledgements to step while its own disk writes.
 */
function openLogStore(kind: 'wal' | 'lmdb', dataDir: string): LogStore {
  const written = existsSync(join(dataDir, 'log', 'data.mdb')) ? 'lmdb' : existsSync(join(dataDir, 'wal')) ? 'wal' : undefined;
  if (written !== undefined && written !== kind) {
    throw new Error(`the Raft log in ${dataDir} was written by the ${written} store: start this server with -raft-log-store=${written}`);
  }
  return kind === 'lmdb' ? new LmdbLogStore({ dataDir, commitMode: 'sync' }) : new WalLogStore({ dataDir, commitMode: 'sync' });
}

/**
 * The Raft series (etcd's and Consul's in spirit): commit latency per write, fsync latency, leader
 * changes seen, fed by the node's hooks; role, term and indexes read from the node at each scrape
 * once `observe` has it (the hooks must exist before the node opens).
 */
function registerRaftMetrics(metrics: RoleMetrics): { hooks: ConsensusNodeMetrics; observe(node: ConsensusNode): void } {
  const commit = metrics.histogram({ name: 'consulate_raft_commit_duration_seconds', help: 'From a proposal on this leader to its entry applied here (committed by a majority, fsynced): Consul raft.commitTime.' });
  const fsync = metrics.histogram({ name: 'consulate_raft_fsync_duration_seconds', help: 'Writing a batch of Raft entries and hard state to disk, fsync included: etcd disk_wal_fsync_duration_seconds.' });
  const leaderChanges = metrics.counter({ name: 'consulate_raft_leader_changes_total', help: 'Leaders this server has seen take over (a new leader id, or one after a time without a leader): etcd leader_changes_seen_total.' });
  const autoCompactions = metrics.counter({ name: 'consulate_kv_auto_compactions_total', help: 'Auto-compactions of the KV history this server proposed as leader and saw applied (-auto-compaction-mode).' });
  let node: ConsensusNode | undefined;
  metrics.gauge({ name: 'consulate_raft_is_leader', help: '1 while this server is the Raft leader, else 0.', collect: (g) => g.set(node?.status().role === 'leader' ? 1 : 0) });
  metrics.gauge({ name: 'consulate_raft_term', help: "This server's current Raft term.", collect: (g) => g.set(node?.status().term ?? 0) });
  metrics.gauge({ name: 'consulate_raft_commit_index', help: 'The highest log index this server knows to be committed.', collect: (g) => g.set(node?.status().commit ?? 0) });
  metrics.gauge({ name: 'consulate_raft_applied_index', help: 'The highest log index applied to the KV state machine here.', collect: (g) => g.set(node?.status().appliedIndex ?? 0) });
  metrics.gauge({ name: 'consulate_kv_compact_revision', help: 'The KV store\'s last compacted revision here: reads and watches below it fail compacted (0: never).', collect: (g) => g.set(Number(node?.kv.compactRevision ?? 0n)) });
  metrics.gauge({ name: 'consulate_kv_retained_revisions', help: 'Key revisions (puts and deletes) the KV store holds here, history included: what compaction frees.', collect: (g) => g.set(node?.kv.retainedRevisions ?? 0) });
  return {
    hooks: {
      startCommitTimer: () => commit.startTimer(),
      startSyncTimer: () => fsync.startTimer(),
      leaderChanged: () => leaderChanges.inc(),
      autoCompacted: () => autoCompactions.inc(),
    },
    observe(opened) {
      node = opened;
    },
  };
}

function autoCompactionText(settings: AutoCompactionSettings): string {
  switch (settings.mode) {
    case 'off':
      return 'auto-compaction is off (-auto-compaction-retention=0): the KV history grows until a KV.Compact';
    case 'periodic':
      return `auto-compaction: the leader keeps ${formatGoDuration(settings.retentionMs * 1e6)} of KV history`;
    case 'revision':
      return `auto-compaction: the leader keeps the last ${settings.retentionRevisions} revisions of KV history`;
  }
}
