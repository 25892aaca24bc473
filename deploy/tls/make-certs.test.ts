// make-certs.sh makes what the routers load on 8300 (services/lib/tls.ts): a CA and, per
// datacenter, a server certificate with Consul's server.<dc>.<domain> SAN (verify_server_hostname).
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCRIPT = join(__dirname, 'make-certs.sh');
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function makeCerts(dir: string, ...datacenters: string[]): void {
  execFileSync('bash', [SCRIPT, dir, ...datacenters], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function certificate(dir: string, name: string): X509Certificate {
  return new X509Certificate(readFileSync(join(dir, name)));
}

describe('make-certs.sh', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'consulate-make-certs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('each datacenter gets an EC P-256 server certificate from the CA, for server and client auth', () => {
    makeCerts(dir, 'dc1', 'dc2');
    const ca = certificate(dir, 'consulate-agent-ca.pem');
    expect(ca.ca).toBe(true);
    for (const dc of ['dc1', 'dc2']) {
      const cert = certificate(dir, `${dc}-server-consulate-0.pem`);
      expect(cert.checkIssued(ca)).toBe(true);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.subjectAltName?.split(', ')).toEqual([`DNS:server.${dc}.consulate`, 'DNS:localhost', 'IP Address:127.0.0.1']);
      expect(cert.keyUsage).toEqual(expect.arrayContaining([SERVER_AUTH, CLIENT_AUTH]));
      const key = createPrivateKey(readFileSync(join(dir, `${dc}-server-consulate-0-key.pem`)));
      expect(cert.checkPrivateKey(key)).toBe(true);
      expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      // Readable by the user that made it (the image's non-root user), by no one else.
      expect(statSync(join(dir, `${dc}-server-consulate-0-key.pem`)).mode & 0o777).toBe(0o600);
    }
  });

  test('a second run keeps the CA and the certificates it already signed', () => {
    makeCerts(dir, 'dc1', 'dc2');
    const caBefore = certificate(dir, 'consulate-agent-ca.pem').fingerprint256;
    const dc1Before = certificate(dir, 'dc1-server-consulate-0.pem').fingerprint256;
    makeCerts(dir, 'dc1', 'dc2', 'dc3');
    expect(certificate(dir, 'consulate-agent-ca.pem').fingerprint256).toBe(caBefore);
    expect(certificate(dir, 'dc1-server-consulate-0.pem').fingerprint256).toBe(dc1Before);
    expect(certificate(dir, 'dc3-server-consulate-0.pem').checkIssued(certificate(dir, 'consulate-agent-ca.pem'))).toBe(true);
  });

  test('a certificate from another CA is reissued by this one', () => {
    makeCerts(dir, 'dc1');
    const other = mkdtempSync(join(tmpdir(), 'consulate-make-certs-other-'));
    try {
      makeCerts(other, 'dc1');
      execFileSync('cp', [join(other, 'dc1-server-consulate-0.pem'), join(other, 'dc1-server-consulate-0-key.pem'), dir]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
    makeCerts(dir, 'dc1');
    expect(certificate(dir, 'dc1-server-consulate-0.pem').checkIssued(certificate(dir, 'consulate-agent-ca.pem'))).toBe(true);
  });

  test('a CA certificate without its key is an error, not a new CA', () => {
    makeCerts(dir, 'dc1');
    unlinkSync(join(dir, 'consulate-agent-ca-key.pem'));
    const run = spawnSync('bash', [SCRIPT, dir, 'dc1'], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('found only one of');
  });

  test('a datacenter name the SAN cannot carry is a usage error', () => {
    const run = spawnSync('bash', [SCRIPT, dir, 'DC 1'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
  });
});
