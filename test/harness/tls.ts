/**
 * TLS material for tests, made with cli/tls/make-certificates.ts (what `consulate tls ca create` /
 * `tls cert create` run), so tests and operators get the same certificates. `makeRouterTls` is one
 * CA and per datacenter a router certificate named as `consulate tls cert create -server -dc <dc>`
 * names it; `writeTlsFiles` writes any certificate a test needs, good or deliberately bad (from
 * another CA, expired, not valid yet, another datacenter, a client's), as the three files
 * services/lib/tls.ts loads.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CertificateAndKey, CertificateKind, CertificateOptions, createCa, createCertificate } from '../../cli/tls/make-certificates';
import { TlsFiles } from '../../services/lib/tls';

export interface RouterTls {
  readonly dir: string;
  readonly ca: CertificateAndKey;
  readonly caFile: string;
  /** `-ca-file`, `-cert-file` and `-key-file` for a router of `datacenter`. */
  args(datacenter: string): string[];
}

export function makeRouterTls(datacenters: readonly string[]): RouterTls {
  const dir = makeCertDir();
  const ca = createCa();
  const caFile = join(dir, 'consulate-agent-ca.pem');
  writeFileSync(caFile, ca.certPem);
  for (const datacenter of datacenters) writePair(dir, `${datacenter}-server-consulate-0`, createCertificate({ ca, kind: 'server', datacenter }));
  return {
    dir,
    ca,
    caFile,
    args: (datacenter) => [`-ca-file=${caFile}`, `-cert-file=${join(dir, `${datacenter}-server-consulate-0.pem`)}`, `-key-file=${join(dir, `${datacenter}-server-consulate-0-key.pem`)}`],
  };
}

/** Writes `<name>.pem` and `<name>-key.pem`; returns their paths. */
export function writePair(dir: string, name: string, pair: CertificateAndKey): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  writeFileSync(certFile, pair.certPem);
  writeFileSync(keyFile, pair.keyPem, { mode: 0o600 });
  return { certFile, keyFile };
}

/** A fresh temporary folder for certificate files. */
export function makeCertDir(): string {
  return mkdtempSync(join(tmpdir(), 'consulate-tls-'));
}

export type TlsFileOptions = Omit<CertificateOptions, 'ca' | 'kind'> & { readonly kind?: CertificateKind };

/**
 * A certificate issued by `ca` (a server's, `server.<dc>.consulate`, unless `kind` says
 * otherwise), written as `<name>.pem` and `<name>-key.pem`, and the CA's certificate as
 * `<name>-ca.pem`: the files `loadTlsMaterial` reads. An expired one is `{ notAfter: yesterday }`.
 */
export function writeTlsFiles(dir: string, name: string, ca: CertificateAndKey, options: TlsFileOptions): TlsFiles {
  const { certFile, keyFile } = writePair(dir, name, createCertificate({ ...options, ca, kind: options.kind ?? 'server' }));
  const caFile = join(dir, `${name}-ca.pem`);
  writeFileSync(caFile, ca.certPem);
  return { caFile, certFile, keyFile };
}
