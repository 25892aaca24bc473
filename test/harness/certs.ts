/**
 * Test certificates made with Debian's openssl: a CA, and leaf certificates with Consulate's
 * `server.<dc>.consulate` SAN, valid, expired or from another CA, for TLS tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makeCertDir(): string {
  return mkdtempSync(join(tmpdir(), 'consulate-certs-'));
}

/** A self-signed CA in `dir`, named `<name>-ca.pem` / `<name>-ca-key.pem`. */
export function makeCa(dir: string, name = 'consulate-agent'): { caFile: string; caKeyFile: string } {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', `/CN=${name} CA`,
    '-keyout', `${name}-ca-key.pem`, '-out', `${name}-ca.pem`], dir);
  return { caFile: join(dir, `${name}-ca.pem`), caKeyFile: join(dir, `${name}-ca-key.pem`) };
}

/** A leaf signed by the CA, with SAN `server.<dc>.consulate` and 127.0.0.1; `days` < 0 makes it expired. */
export function makeLeaf(dir: string, ca: { caFile: string; caKeyFile: string }, name: string, datacenter: string, days = 30): CertFiles {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=DNS:server.${datacenter}.consulate,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=server.${datacenter}.consulate`,
    '-keyout', `${name}-key.pem`, '-out', `${name}.csr`], dir);
  // openssl 3.0 takes a negative -days: notAfter lands before notBefore, an expired certificate.
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', ca.caFile, '-CAkey', ca.caKeyFile, '-CAcreateserial', '-days', String(days), '-extfile', ext, '-out', `${name}.pem`], dir);
  return { caFile: ca.caFile, certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}-key.pem`) };
}
