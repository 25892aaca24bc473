/**
 * Raft messages between consensus servers: one gRPC client stream (RaftService.Send) to each
 * peer, opened on first use and reopened after a failure, with backoff. Raft tolerates lost,
 * duplicated and reordered messages, so the transport never blocks the core: messages to a peer
 * that is down or slow are dropped past a bounded queue, and the core's timers retry.
 * The messages of one Ready leave in one batch per peer, written at once.
 */
import { ClientWritableStream, credentials, status as GrpcStatus } from '@grpc/grpc-js';

import { RaftServiceClient, SendRequest, SendResponse } from '../gen/consulate/consensus/v1/raft';
import { Clock } from '../lib/clock';
import { Logger } from '../lib/log';
import { MessageSender } from './consensus-node';
import { messageToWire } from './raft-codec';
import { Message } from './raft/messages';
import { Member, NodeId } from './raft/types';

export const TRANSPORT_LIMITS = {
  /** Messages queued for one peer while its stream is not writable; older ones are dropped first. */
  maxQueuedPerPeer: 4_096,
  /** Raft messages carry snapshots: allow large ones on this channel only. */
  maxMessageBytes: 256 * 1024 * 1024,
  /** Backoff between attempts to reopen a failed stream. */
  reconnectMinMs: 50,
  reconnectMaxMs: 2_000,
};

interface Peer {
  address: string;
  client: RaftServiceClient;
  stream: ClientWritableStream<SendRequest> | undefined;
  queue: Message[];
  writable: boolean;
  retryAtMs: number;
  backoffMs: number;
  dropped: number;
}

export class RaftTransport implements MessageSender {
  private readonly peers = new Map<NodeId, Peer>();
  /** Addresses learned from messages of servers that are not (yet) members in our log. */
  private readonly learned = new Map<NodeId, string>();
  private members = new Set<NodeId>();

  constructor(
    private readonly selfId: NodeId,
    /** Our own gRPC address, sent with every message so that anyone can answer. */
    private readonly selfAddress: string,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /**
   * A message came from `id` at `address`. A server joining a cluster has no membership in its
   * log until the leader's entries arrive, and must still answer the leader's probes.
   */
  notePeer(id: NodeId, address: string): void {
    if (address === '' || id === this.selfId || this.members.has(id) || this.learned.get(id) === address) return;
    if (this.learned.size >= 64) this.learned.clear();
    this.learned.set(id, address);
    this.peers.get(id)?.client.close();
    this.peers.set(id, this.newPeer(address));
  }

  setMembers(members: readonly Member[]): void {
    const wanted = new Map(members.filter((member) => member.id !== this.selfId).map((member) => [member.id, member.address]));
    this.members = new Set(wanted.keys());
    for (const [id, address] of this.learned) if (!wanted.has(id)) wanted.set(id, address);
    for (const [id, peer] of this.peers) {
      if (wanted.get(id) !== peer.address) {
        this.closePeer(peer);
        this.peers.delete(id);
      }
    }
    for (const [id, address] of wanted) if (!this.peers.has(id)) this.peers.set(id, this.newPeer(address));
  }

  /** Queues a Ready's messages and writes them at once, one batch per peer. */
  send(messages: readonly Message[]): void {
    const touched = new Set<NodeId>();
    for (const message of messages) {
      const peer = this.peers.get(message.to);
      if (peer === undefined) continue; // not a member (any more): nobody to send to
      peer.queue.push(message);
      touched.add(message.to);
      if (peer.queue.length > TRANSPORT_LIMITS.maxQueuedPerPeer) {
        peer.queue.shift();
        if (peer.dropped++ % 1000 === 0) this.logger.warn({ event: 'raft-transport-drop', peer: message.to, address: peer.address }, `dropping Raft messages to ${message.to}: it is not taking them`);
      }
    }
    for (const id of touched) this.flush(id);
  }

  close(): void {
    for (const peer of this.peers.values()) this.closePeer(peer);
    this.peers.clear();
  }

  private newPeer(address: string): Peer {
    const client = new RaftServiceClient(address, credentials.createInsecure(), {
      'grpc.max_send_message_length': TRANSPORT_LIMITS.maxMessageBytes,
      'grpc.max_receive_message_length': TRANSPORT_LIMITS.maxMessageBytes,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.initial_reconnect_backoff_ms': TRANSPORT_LIMITS.reconnectMinMs,
      'grpc.max_reconnect_backoff_ms': TRANSPORT_LIMITS.reconnectMaxMs,
    });
    return { address, client, stream: undefined, queue: [], writable: true, retryAtMs: 0, backoffMs: TRANSPORT_LIMITS.reconnectMinMs, dropped: 0 };
  }

  private flush(id: NodeId): void {
    const peer = this.peers.get(id);
    if (peer === undefined || peer.queue.length === 0 || !peer.writable) return;
    const stream = this.streamOf(id, peer);
    if (stream === undefined) {
      // Reconnecting: what is queued now is stale by the time the peer is back; the core resends.
      peer.queue.length = 0;
      return;
    }
    const batch = peer.queue.splice(0, peer.queue.length);
    let request: SendRequest;
    try {
      request = { messages: batch.map((message) => messageToWire(message, this.selfAddress)) };
    } catch (err) {
      this.logger.error({ err, event: 'raft-encode-failed' }, `cannot encode a Raft message for ${id}: ${(err as Error).message}`);
      return;
    }
    peer.writable = stream.write(request);
    if (!peer.writable) {
      stream.once('drain', () => {
        peer.writable = true;
        if (peer.queue.length > 0) this.flush(id);
      });
    }
  }

  private streamOf(id: NodeId, peer: Peer): ClientWritableStream<SendRequest> | undefined {
    if (peer.stream !== undefined) return peer.stream;
    if (this.clock.nowMs() < peer.retryAtMs) return undefined;
    const stream = peer.client.send((err: { code?: GrpcStatus; details?: string } | null, _response?: SendResponse) => {
      if (peer.stream !== stream) return;
      peer.stream = undefined;
      peer.writable = true;
      if (err !== null && err.code !== GrpcStatus.CANCELLED) {
        peer.retryAtMs = this.clock.nowMs() + peer.backoffMs;
        peer.backoffMs = Math.min(peer.backoffMs * 2, TRANSPORT_LIMITS.reconnectMaxMs);
        this.logger.debug({ event: 'raft-stream-failed', peer: id, address: peer.address, code: err.code }, `Raft stream to ${id} failed: ${err.details ?? ''}`);
      }
    });
    stream.on('error', () => undefined); // reported through the callback above
    peer.stream = stream;
    peer.backoffMs = TRANSPORT_LIMITS.reconnectMinMs;
    return stream;
  }

  private closePeer(peer: Peer): void {
    const stream = peer.stream;
    peer.stream = undefined;
    stream?.end();
    peer.client.close();
  }
}
