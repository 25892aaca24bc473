/**
 * TLS material for tests that start routers: one CA, and per datacenter a router certificate
 * named as `consulate tls cert create -server -dc <dc>` names it, written to a temporary folder.
 * `bad` makes the certificates a TLS matrix refuses (another CA, expired, another datacenter).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CertificateAndKey, createCa, createCertificate } from '../../cli/tls/make-certificates';

export interface RouterTls {
  readonly dir: string;
  readonly ca: CertificateAndKey;
  readonly caFile: string;
  /** `-ca-file`, `-cert-file` and `-key-file` for a router of `datacenter`. */
  args(datacenter: string): string[];
}

export function makeRouterTls(datacenters: readonly string[]): RouterTls {
  const dir = mkdtempSync(join(tmpdir(), 'consulate-tls-'));
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
