/**
 * A real consensus server in the test's process, for tests of what sits on consensus (the
 * router's area store, the shared prefix watch): one Raft node on a MemoryLogStore (no disk),
 * electing itself in a few milliseconds, serving the real KV, Watch and Lease adapters over gRPC
 * on 127.0.0.1 and an ephemeral port. So the txn compares, revisions, watch events and leases a
 * test sees are the consensus role's own, not a fake's idea of them.
 *
 *   const consensus = await startInProcessConsensus();
 *   const client = new ConsensusClient([consensus.address], trace.getTracer('test'));
 *   ...
 *   await consensus.stop();
 */
import { trace } from '@opentelemetry/api';

import { ConsensusNode } from '../../services/consensus/consensus-node';
import { kvService, leaseService } from '../../services/consensus/kv-service';
import { raftConfig } from '../../services/consensus/raft/config';
import { MemoryLogStore } from '../../services/consensus/storage/memory-log-store';
import { TRANSPORT_LIMITS } from '../../services/consensus/transport';
import { watchGrpcService } from '../../services/consensus/watch-service';
import { KVServiceService, protobufFileName as kvProto } from '../../services/gen/consulate/consensus/v1/kv';
import { LeaseServiceService, protobufFileName as leaseProto } from '../../services/gen/consulate/consensus/v1/lease';
import { SystemClock } from '../../services/lib/clock';
import { RoleGrpcServer } from '../../services/lib/grpc-server';
import { createLogger } from '../../services/lib/log';

export interface InProcessConsensus {
  /** host:port of its gRPC API (the first listener). */
  readonly address: string;
  readonly node: ConsensusNode;
  /** One more gRPC listener on the same node: a second "server" a test can take away alone. */
  addListener(): Promise<{ address: string }>;
  /** Closes one listener at once, cutting its streams (watches) as a crashed server would. */
  stopListener(address: string): Promise<void>;
  stop(): Promise<void>;
}

/** Ticks this short elect the single server within a few tens of milliseconds. */
const TICK_MS = 5;
const LEADER_WAIT_MS = 5_000;

export interface InProcessConsensusOptions {
  /** Serve KV and Lease calls on Calls streams too, as the consensus role does. Default true; false acts as an older server. */
  readonly callStreams?: boolean;
}

export async function startInProcessConsensus(options: InProcessConsensusOptions = {}): Promise<InProcessConsensus> {
  const logger = createLogger({ role: 'consensus', datacenter: 'dc1', node: 'consensus-1', level: 'silent' });
  const node = await ConsensusNode.open({
    raft: raftConfig({ id: 'consensus-1', random: Math.random, electionTicks: 3, heartbeatTicks: 1 }),
    tickMs: TICK_MS,
    store: new MemoryLogStore(),
    // One server: nobody to send to; its address only ever appears in leader hints, which a
    // lone leader never gives.
    sender: { setMembers: () => undefined, send: () => undefined },
    clock: new SystemClock(),
    logger,
    initialMembers: [{ id: 'consensus-1', address: '127.0.0.1:1', learner: false }],
    snapshotEntries: 10_000,
    maxPending: 1_000,
  });
  const listeners = new Map<string, RoleGrpcServer>();
  const addListener = async () => {
    const server = new RoleGrpcServer({
      logger,
      tracer: trace.getTracer('test'),
      // The role's own limit (Raft snapshots travel on its port).
      maxMessageBytes: TRANSPORT_LIMITS.maxMessageBytes,
      shutdownGraceMs: 0,
      services: [
        { definition: KVServiceService, implementation: kvService(node), protoFile: kvProto, callStream: options.callStreams ?? true },
        watchGrpcService(node),
        { definition: LeaseServiceService, implementation: leaseService(node), protoFile: leaseProto, callStream: options.callStreams ?? true },
      ],
    });
    const address = await server.listen('127.0.0.1', 0);
    server.setServing(true);
    listeners.set(address, server);
    return { address };
  };
  const stopListener = async (address: string) => {
    const server = listeners.get(address);
    listeners.delete(address);
    await server?.shutdown();
  };

  const { address } = await addListener();
  node.start();
  const deadline = Date.now() + LEADER_WAIT_MS;
  while (node.status().role !== 'leader') {
    if (Date.now() > deadline) throw new Error(`the in-process consensus server elected no leader within ${LEADER_WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, TICK_MS));
  }
  return {
    address,
    node,
    addListener,
    stopListener,
    async stop() {
      await Promise.all([...listeners.keys()].map(stopListener));
      await node.stop();
    },
  };
}
