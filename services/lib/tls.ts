/**
 * Mutual TLS material for gRPC: the CA, this process's certificate and key, checked when loaded
 * (parseable, issued by the CA, within its validity period, key matching the certificate) so a
 * misconfiguration stops the process at start with a message that says which file is wrong, not
 * with a handshake failure later. Certificates name their datacenter as Consul's do with
 * verify_server_hostname: a server of dc1 carries the DNS SAN `server.dc1.consulate`.
 * Node's TLS floor is 1.2 (tls.DEFAULT_MIN_VERSION), which is what we require.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkServerIdentity as tlsCheckServerIdentity, PeerCertificate } from 'node:tls';

import { ChannelCredentials, ServerCredentials, credentials as grpcCredentials } from '@grpc/grpc-js';

import { Clock, systemClock } from './clock';

export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly certificate: X509Certificate;
  /** The datacenter named by the certificate's `server.<dc>.consulate` SAN, if it has one. */
  readonly datacenter: string | undefined;
}

export class TlsConfigError extends Error {
  override readonly name = 'TlsConfigError';
}

const SERVER_NAME_SUFFIX = '.consulate';

/** The DNS name a server of `datacenter` presents, as Consul's `server.<dc>.<domain>`. */
export function serverName(datacenter: string): string {
  return `server.${datacenter}${SERVER_NAME_SUFFIX}`;
}

/** The datacenter in a certificate's `server.<dc>.consulate` DNS SAN, or undefined. */
export function datacenterOf(certificate: X509Certificate): string | undefined {
  for (const entry of (certificate.subjectAltName ?? '').split(',')) {
    const match = /^\s*DNS:server\.([a-z0-9_-]+)\.consulate\s*$/.exec(entry);
    if (match !== null) return match[1];
  }
  return undefined;
}

export const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/**
 * Why `certificate` may not be used for `purpose` (SERVER_AUTH or CLIENT_AUTH), or undefined when
 * it may: Go's crypto/x509 rule, which Consul's TLS follows. OpenSSL applies it to a server's
 * certificate on the client side; the 8300 listener checks a client's chain itself, so it applies
 * it there (tls-listener.ts). Without an extended key usage extension a certificate is good for
 * any purpose; with one, it must list `purpose` or anyExtendedKeyUsage.
 */
export function purposeProblem(certificate: X509Certificate, purpose: typeof SERVER_AUTH | typeof CLIENT_AUTH): string | undefined {
  const usages = certificate.keyUsage as string[] | undefined;
  if (usages === undefined || usages.includes(purpose) || usages.includes(ANY_EXTENDED_KEY_USAGE)) return undefined;
  const name = purpose === CLIENT_AUTH ? 'client' : 'server';
  return `certificate is not for ${name} authentication (extended key usage ${usages.join(', ')})`;
}

export function loadTlsMaterial(files: TlsFiles, clock: Clock = systemClock): TlsMaterial {
  const ca = readPem(files.caFile, 'CA certificate (ca_file)');
  const cert = readPem(files.certFile, 'certificate (cert_file)');
  const key = readPem(files.keyFile, 'key (key_file)');
  const caCertificate = parseCertificate(ca, files.caFile);
  const certificate = parseCertificate(cert, files.certFile);
  if (!certificate.checkIssued(caCertificate) || !certificate.verify(caCertificate.publicKey)) {
    throw new TlsConfigError(`${files.certFile} was not issued by the CA in ${files.caFile}: make the certificate with this CA, or point ca_file at the CA that issued it`);
  }
  const nowMs = clock.nowMs();
  if (Date.parse(certificate.validTo) < nowMs) throw new TlsConfigError(`${files.certFile} expired on ${certificate.validTo}: issue a new certificate`);
  if (Date.parse(certificate.validFrom) > nowMs) throw new TlsConfigError(`${files.certFile} is not valid until ${certificate.validFrom}: check the clock or issue a new certificate`);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsConfigError(`${files.keyFile} is not a readable private key (${(err as Error).message})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) throw new TlsConfigError(`${files.keyFile} does not belong to the certificate in ${files.certFile}`);
  return { ca, cert, key, certificate, datacenter: datacenterOf(certificate) };
}

/** Server credentials that demand and verify a client certificate issued by our CA. */
export function mutualTlsServerCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(material.ca, [{ private_key: material.key, cert_chain: material.cert }], true);
}

/**
 * Client credentials presenting our certificate; when `expectedDatacenter` is given the server
 * must present `server.<dc>.consulate` for it, whatever address we dialled.
 */
export function mutualTlsChannelCredentials(material: TlsMaterial, expectedDatacenter?: string): ChannelCredentials {
  return grpcCredentials.createSsl(material.ca, material.key, material.cert, {
    checkServerIdentity(_host: string, peer: PeerCertificate) {
      if (expectedDatacenter === undefined) return undefined;
      return tlsCheckServerIdentity(serverName(expectedDatacenter), peer);
    },
  });
}

/**
 * Channel options that make a client ask for (SNI) and verify `server.<dc>.consulate`, rather
 * than the IP address it dials; pass them with `mutualTlsChannelCredentials(material, dc)`.
 */
export function tlsChannelOptions(expectedDatacenter: string): { 'grpc.ssl_target_name_override': string; 'grpc.default_authority': string } {
  const name = serverName(expectedDatacenter);
  return { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name };
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsConfigError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function parseCertificate(pem: Buffer, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new TlsConfigError(`${path} is not a PEM certificate (${(err as Error).message})`);
  }
}
