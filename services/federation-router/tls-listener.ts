/**
 * Port 8300: the only port that crosses datacenters, and it speaks mutual TLS only. We run the TLS
 * handshake ourselves (instead of inside grpc-js) so that every refused peer leaves a log line
 * that says why: a plaintext connection, no client certificate, a certificate from another CA, an
 * expired one, or one that is not a router's (`server.<dc>.consulate`). An accepted connection is
 * handed to the gRPC server, and the datacenter its certificate names is remembered by peer
 * address, so each call can be checked against the datacenter the caller claims.
 */
import { X509Certificate } from 'node:crypto';
import { Socket } from 'node:net';
import { Server as TlsServer, TLSSocket, createServer } from 'node:tls';

import { ConnectionInjector } from '@grpc/grpc-js';

import { Logger } from '../lib/log';
import { CLIENT_AUTH, TlsMaterial, datacenterOf, purposeProblem } from '../lib/tls';

/** A connection must finish its handshake within this (Consul's rpc_handshake_timeout). */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** Connections one IP address may hold open, handshaking or not (Consul's rpc_max_conns_per_client). */
export const MAX_CONNS_PER_CLIENT = 100;
/** A flood of refusals from one address is logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;
/** OpenSSL's complaints when the first bytes are not a TLS record: someone spoke plaintext. */
const PLAINTEXT_ERRORS = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_HTTP_REQUEST', 'ERR_SSL_HTTPS_PROXY_REQUEST', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_UNEXPECTED_EOF_WHILE_READING']);

export class MutualTlsListener {
  /** By `ip:port` of the peer, as grpc-js's `call.getPeer()` names it. */
  private readonly peers = new Map<string, string>();
  private readonly sockets = new Set<TLSSocket>();
  /** Open TCP connections by remote IP, from accept to close (handshaking ones included). */
  private readonly connectionsByIp = new Map<string, number>();
  private readonly lastFloodLog = new Map<string, number>();
  private readonly ca: X509Certificate;
  /** Refusals so far, for tests and metrics. */
  refused = 0;

  private constructor(
    private readonly server: TlsServer,
    private readonly injector: ConnectionInjector,
    material: TlsMaterial,
    private readonly logger: Logger,
  ) {
    this.ca = new X509Certificate(material.ca);
    server.on('connection', (socket: Socket) => this.admit(socket));
    server.on('secureConnection', (socket: TLSSocket) => this.accept(socket));
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      if (PLAINTEXT_ERRORS.has(err.code ?? '')) this.refuse(socket, peer, 'plaintext connection: port 8300 accepts mutual TLS only');
      else if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.refuse(socket, peer, `no TLS handshake within ${HANDSHAKE_TIMEOUT_MS / 1000}s`);
      else this.refuse(socket, peer, `TLS handshake failed: ${err.message.trim()}`);
    });
  }

  static async listen(host: string, port: number, injector: ConnectionInjector, material: TlsMaterial, logger: Logger): Promise<{ listener: MutualTlsListener; address: string }> {
    // The chain is checked in accept(), so that a refusal can say exactly why.
    const server = createServer({ ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.2', noDelay: true, requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['h2'], handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
    const listener = new MutualTlsListener(server, injector, material, logger);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`)));
      server.listen(port, host, () => resolve());
    });
    const bound = server.address();
    const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
    return { listener, address: `${host}:${boundPort}` };
  }

  /** The datacenter of the certificate the peer at `ip:port` presented, if it is connected. */
  datacenterOf(peer: string): string | undefined {
    return this.peers.get(peer);
  }

  async close(): Promise<void> {
    this.injector.destroy();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Every TCP connection, before its handshake: at most MAX_CONNS_PER_CLIENT per address. */
  private admit(socket: Socket): void {
    const ip = socket.remoteAddress ?? '?';
    const open = this.connectionsByIp.get(ip) ?? 0;
    if (open >= MAX_CONNS_PER_CLIENT) {
      this.refused++;
      const now = Date.now();
      if (now - (this.lastFloodLog.get(ip) ?? 0) >= REFUSAL_LOG_INTERVAL_MS) {
        this.lastFloodLog.set(ip, now);
        this.logger.warn({ peer: ip, limit: MAX_CONNS_PER_CLIENT }, `refused connections on 8300 from ${ip}: it already holds ${MAX_CONNS_PER_CLIENT} (the per-client limit); logged at most every ${REFUSAL_LOG_INTERVAL_MS / 1000}s`);
      }
      socket.destroy();
      return;
    }
    this.connectionsByIp.set(ip, open + 1);
    socket.once('close', () => {
      const left = (this.connectionsByIp.get(ip) ?? 1) - 1;
      if (left <= 0) this.connectionsByIp.delete(ip);
      else this.connectionsByIp.set(ip, left);
    });
  }

  private accept(socket: TLSSocket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const reason = this.unauthorized(socket);
    if (reason !== undefined) {
      this.refuse(socket, peer, reason);
      return;
    }
    const datacenter = datacenterOf(new X509Certificate(socket.getPeerCertificate(false).raw))!;
    this.sockets.add(socket);
    this.peers.set(peer, datacenter);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.peers.delete(peer);
    });
    this.logger.debug({ peer, datacenter }, `accepted a router of ${datacenter} from ${peer}`);
    this.injector.injectConnection(socket);
  }

  /**
   * Why a handshaken peer is refused, or undefined when it is a router of our CA. We check the
   * chain ourselves (our CA signs router certificates directly): a bare TLSSocket does not
   * report OpenSSL's verdict, and this way the log names the exact reason.
   */
  private unauthorized(socket: TLSSocket): string | undefined {
    const presented = socket.getPeerCertificate(false);
    if (presented === null || presented.raw === undefined) return 'no client certificate: port 8300 requires mutual TLS';
    const certificate = new X509Certificate(presented.raw);
    if (!certificate.checkIssued(this.ca) || !certificate.verify(this.ca.publicKey)) return `client certificate "${certificate.subject.replace(/\n/g, ', ')}" was not issued by our CA`;
    const now = Date.now();
    if (Date.parse(certificate.validTo) < now) return `client certificate expired on ${certificate.validTo}`;
    if (Date.parse(certificate.validFrom) > now) return `client certificate is not valid until ${certificate.validFrom}`;
    if (datacenterOf(certificate) === undefined) return `client certificate is not a router's: no server.<dc>.consulate name (${certificate.subjectAltName ?? 'no names'})`;
    const purpose = purposeProblem(certificate, CLIENT_AUTH);
    if (purpose !== undefined) return `client ${purpose}`;
    return undefined;
  }

  // No early return on an already destroyed socket: Node destroys the socket before it emits
  // tlsClientError, and each socket is refused once (tlsClientError fires only before the handshake
  // completes, accept() only after).
  private refuse(socket: TLSSocket, peer: string, reason: string): void {
    this.refused++;
    this.logger.warn({ peer, reason }, `refused a connection on 8300 from ${peer}: ${reason}`);
    socket.destroy();
  }
}
