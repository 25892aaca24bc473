/**
 * Clients for other routers' 8300, always mutual TLS: we present our certificate, and accept a
 * server only if our CA issued its certificate and it names a router (`server.<dc>.consulate`);
 * when we know which datacenter we are calling (a forwarded request to a known member), it must
 * be that one, whatever address we dialled. Every call says which datacenter we are in, in the
 * `consulate-datacenter` metadata, which the other side checks against our certificate.
 */
import { X509Certificate } from 'node:crypto';
import { PeerCertificate, checkServerIdentity } from 'node:tls';

import { ChannelCredentials, Metadata, credentials as grpcCredentials } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { FederationServiceClient } from '../gen/consulate/router/v1/federation';
import { createRoleClient } from '../lib/grpc-client';
import { TlsMaterial, datacenterOf, serverName } from '../lib/tls';

export const DATACENTER_METADATA = 'consulate-datacenter';
/** Clients kept open at most: members come and go, and a hostile one could name many addresses. */
export const MAX_CLIENTS = 256;

export class PeerClients {
  private readonly clients = new Map<string, FederationServiceClient>();

  constructor(
    private readonly material: TlsMaterial,
    private readonly datacenter: string,
    private readonly tracer: Tracer,
  ) {}

  /** For gossip: any router of our CA, untraced (a span per SWIM packet would drown the traces). */
  gossip(address: string): FederationServiceClient {
    return this.client(address, undefined, false);
  }

  /** For forwarded requests: a router of `datacenter`, whatever address we dialled; traced. */
  forwarding(address: string, datacenter: string): FederationServiceClient {
    return this.client(address, datacenter, true);
  }

  private client(address: string, datacenter: string | undefined, traced: boolean): FederationServiceClient {
    const key = `${address}|${datacenter ?? '*'}|${traced}`;
    let client = this.clients.get(key);
    if (client !== undefined) {
      // Most recently used last, so the least recently used is the first to go.
      this.clients.delete(key);
      this.clients.set(key, client);
    } else {
      if (this.clients.size >= MAX_CLIENTS) {
        const [oldest, evicted] = this.clients.entries().next().value!;
        this.clients.delete(oldest);
        evicted.close();
      }
      client = createRoleClient(FederationServiceClient, address, {
        tracer: this.tracer,
        traced,
        credentials: routerCredentials(this.material, datacenter),
        // The name we ask for (SNI) and verify; the address we dial is only where it lives.
        channelOptions: { 'grpc.ssl_target_name_override': serverName(datacenter ?? this.datacenter), 'grpc.default_authority': serverName(datacenter ?? this.datacenter) },
      });
      this.clients.set(key, client);
    }
    return client;
  }

  /** The metadata every call carries. */
  metadata(): Metadata {
    const metadata = new Metadata();
    metadata.set(DATACENTER_METADATA, this.datacenter);
    return metadata;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
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
