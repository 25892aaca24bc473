/**
 * Clients for other routers' 8300, always mutual TLS: we present our certificate, and accept a
 * server only if our CA issued its certificate and it names a router (`server.<dc>.consulate`);
 * when we know which datacenter we are calling (a forwarded request to a known member), it must
 * be that one, whatever address we dialled. Every call says which datacenter we are in, in the
 * `consulate-datacenter` metadata, which the other side checks against our certificate.
 * Forwarded requests and SWIM packets travel on one `Calls` stream per router (lib/call-stream.ts),
 * on the same connection: a unary call each costs grpc-js several times more (an idle router's
 * gossip alone took 4 % of a core as unary calls).
 */
import { X509Certificate } from 'node:crypto';
import { PeerCertificate, checkServerIdentity } from 'node:tls';

import { ChannelCredentials, ClientReadableStream, Metadata, credentials as grpcCredentials } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import {
  FederationServiceClient,
  FederationServiceForwardWatchRequest,
  FederationServiceForwardWatchResponse,
  FederationServiceService,
  PacketRequest,
  PacketResponse,
  PingRequest,
  PingResponse,
  PushPullRequest,
  PushPullResponse,
} from '../gen/consulate/router/v1/federation';
import { CallStreamClient, UnaryMethod, encodedUnary } from '../lib/call-stream';
import { createRoleClient } from '../lib/grpc-client';
import { TlsMaterial, datacenterOf, serverName } from '../lib/tls';
import { encodedMethod } from './forward-wire';

export const DATACENTER_METADATA = 'consulate-datacenter';
/** Clients kept open at most: members come and go, and a hostile one could name many addresses. */
export const MAX_CLIENTS = 256;

/** FederationService.Forward with its messages left encoded (forward-wire.ts). */
const FORWARD = encodedMethod(FederationServiceService.forward);

/** Another router's FederationService, its unary methods carried on its `Calls` stream. */
export interface Peer {
  /** An encoded FederationServiceForwardRequest; the answer an encoded FederationServiceForwardResponse. */
  readonly forward: UnaryMethod<Buffer, Buffer>;
  /** A stream of its own on the same connection. */
  readonly forwardWatch: (request: FederationServiceForwardWatchRequest, metadata: Metadata) => ClientReadableStream<FederationServiceForwardWatchResponse>;
  readonly packet: UnaryMethod<PacketRequest, PacketResponse>;
  readonly pushPull: UnaryMethod<PushPullRequest, PushPullResponse>;
  readonly ping: UnaryMethod<PingRequest, PingResponse>;
}

interface Entry {
  readonly client: FederationServiceClient;
  readonly calls: CallStreamClient;
  readonly peer: Peer;
}

export class PeerClients {
  private readonly clients = new Map<string, Entry>();
  /** The key of the entry used last: the last in `clients`. */
  private lastKey: string | undefined;

  constructor(
    private readonly material: TlsMaterial,
    private readonly datacenter: string,
    private readonly tracer: Tracer,
  ) {}

  /** For gossip: any router of our CA, untraced (a span per SWIM packet would drown the traces). */
  gossip(address: string): Peer {
    return this.entry(address, undefined, false).peer;
  }

  /** For forwarded requests: a router of `datacenter`, whatever address we dialled; traced. */
  forwarding(address: string, datacenter: string): Peer {
    return this.entry(address, datacenter, true).peer;
  }

  private entry(address: string, datacenter: string | undefined, traced: boolean): Entry {
    const key = `${address}|${datacenter ?? '*'}|${traced}`;
    let entry = this.clients.get(key);
    if (entry !== undefined) {
      // Most recently used last, so the least recently used is the first to go (already so when
      // it was the last one used: a run of forwards to one router).
      if (key !== this.lastKey) {
        this.clients.delete(key);
        this.clients.set(key, entry);
      }
    } else {
      if (this.clients.size >= MAX_CLIENTS) {
        const [oldest, evicted] = this.clients.entries().next().value!;
        this.clients.delete(oldest);
        // Its calls in flight finish first.
        evicted.calls.retire(() => evicted.client.close());
      }
      const client = createRoleClient(FederationServiceClient, address, {
        tracer: this.tracer,
        traced,
        credentials: routerCredentials(this.material, datacenter),
        // The name we ask for (SNI) and verify; the address we dial is only where it lives.
        channelOptions: { 'grpc.ssl_target_name_override': serverName(datacenter ?? this.datacenter), 'grpc.default_authority': serverName(datacenter ?? this.datacenter) },
      });
      const calls = new CallStreamClient({ client, tracer: this.tracer, peer: address, traced });
      const peer: Peer = {
        forward: calls.method(FORWARD, encodedUnary(client, FORWARD)),
        forwardWatch: (request, metadata) => client.forwardWatch(request, metadata),
        packet: calls.method(FederationServiceService.packet, client.packet.bind(client)),
        pushPull: calls.method(FederationServiceService.pushPull, client.pushPull.bind(client)),
        ping: calls.method(FederationServiceService.ping, client.ping.bind(client)),
      };
      entry = { client, calls, peer };
      this.clients.set(key, entry);
    }
    this.lastKey = key;
    return entry;
  }

  /** The metadata every call carries. */
  metadata(): Metadata {
    const metadata = new Metadata();
    metadata.set(DATACENTER_METADATA, this.datacenter);
    return metadata;
  }

  close(): void {
    for (const entry of this.clients.values()) close(entry);
    this.clients.clear();
    this.lastKey = undefined;
  }
}

function close(entry: Entry): void {
  entry.calls.close();
  entry.client.close();
}

function routerCredentials(material: TlsMaterial, expectedDatacenter: string | undefined): ChannelCredentials {
  return grpcCredentials.createSsl(material.ca, material.key, material.cert, {
    checkServerIdentity(_host: string, peer: PeerCertificate) {
      if (expectedDatacenter !== undefined) return checkServerIdentity(serverName(expectedDatacenter), peer);
      if (peer.raw === undefined || datacenterOf(new X509Certificate(peer.raw)) === undefined) return new Error('the server presented a certificate that is not a router\'s (no server.<dc>.consulate name)');
      return undefined;
    },
  });
}
