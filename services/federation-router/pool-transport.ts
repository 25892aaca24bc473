/**
 * A SWIM pool's transport over 8300: datagrams become unary `Packet` calls and push/pull streams
 * become `PushPull` calls, both to the FederationService of the router at the member's address,
 * over mutual TLS. One gRPC server on 8300 serves every pool; `pool` in each call says which (see
 * poolKey), and the receiving side hands the bytes to that pool's handlers.
 */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { Logger } from '../lib/log';
import { ExchangeError, PoolTransport } from '../lib/swim-pool';
import { Peer, PeerClients } from './peer-clients';

/** A packet that cannot be delivered in this long is lost, as a datagram would be. */
const PACKET_DEADLINE_MS = 2_000;

/**
 * The name both sides give an area's pool: the two datacenters, sorted. Each datacenter has its
 * own ID for its side of the pair, so the ID cannot name the pool on the wire.
 */
export function poolKey(datacenterA: string, datacenterB: string | undefined): string {
  if (datacenterB === undefined) return 'wan';
  return `area:${[datacenterA, datacenterB].sort().join(':')}`;
}

export class RpcPoolTransport implements PoolTransport {
  readonly dropped = { packets: 0, streams: 0 };
  private packetHandler: (from: string, bytes: Uint8Array) => void = () => undefined;
  private streamHandler: (from: string, request: Uint8Array) => Uint8Array = () => new Uint8Array(0);
  private closed = false;

  constructor(
    readonly pool: string,
    readonly address: string,
    private readonly peers: PeerClients,
    private readonly logger: Logger,
  ) {}

  onPacket(handler: (from: string, bytes: Uint8Array) => void): void {
    this.packetHandler = handler;
  }

  onStream(handler: (from: string, request: Uint8Array) => Uint8Array): void {
    this.streamHandler = handler;
  }

  /** A packet that arrived on 8300 for this pool. */
  deliverPacket(from: string, bytes: Uint8Array): void {
    if (!this.closed) this.packetHandler(from, bytes);
  }

  /** A push/pull that arrived on 8300 for this pool; the answer goes back in the reply. */
  answerStream(from: string, request: Uint8Array): Uint8Array {
    if (this.closed) throw new Error(`pool ${this.pool} is closed`);
    return this.streamHandler(from, request);
  }

  sendPacket(to: string, bytes: Uint8Array): void {
    if (this.closed) return;
    let client: Peer;
    try {
      client = this.peers.gossip(to);
    } catch (err) {
      // A member's address is whatever its alive message said: one grpc-js cannot dial ("a\nb",
      // "") throws here, and from the pool's tick timer that would take the router down. The
      // packet is lost, as a datagram to a bad address would be; SWIM then fails the member.
      this.logger.debug({ pool: this.pool, to }, `gossip packet to ${JSON.stringify(to)} lost: ${(err as Error).message}`);
      return;
    }
    client.packet({ pool: this.pool, from: this.address, packet: Buffer.from(bytes) }, this.peers.metadata(), { deadline: Date.now() + PACKET_DEADLINE_MS }, (err: ServiceError | null) => {
      if (err !== null) this.logger.debug({ pool: this.pool, to, code: err.code }, `gossip packet to ${to} lost: ${err.details}`);
    });
  }

  exchange(to: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.peers.gossip(to).pushPull({ pool: this.pool, from: this.address, frame: Buffer.from(request) }, this.peers.metadata(), { deadline: Date.now() + timeoutMs }, (err, response) => {
        if (err !== null) reject(exchangeError(to, err));
        else resolve(new Uint8Array(response.frame));
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Consul's wording for a join that could not reach the address (`dial tcp ...` as Go says it). */
function exchangeError(to: string, err: ServiceError): ExchangeError {
  const details = (err.details || err.message).replace(/\.? ?Resolution note:.*$/s, '').trim();
  // Refused: the router's host answered and nothing listens on 8300 (the pool suspects it at once).
  if (/ECONNREFUSED/.test(details)) return new ExchangeError(`failed to connect to "${to}": dial tcp ${to}: connect: connection refused`, true);
  if (/EHOSTUNREACH|ENETUNREACH/.test(details)) return new ExchangeError(`failed to connect to "${to}": dial tcp ${to}: connect: no route to host`);
  if (err.code === GrpcStatus.DEADLINE_EXCEEDED) return new ExchangeError(`failed to connect to "${to}": dial tcp ${to}: i/o timeout`);
  return new ExchangeError(`failed to connect to "${to}": ${details}`);
}
