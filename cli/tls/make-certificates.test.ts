// The CA and certificates of `consulate tls` as Consul's tlsutil makes them (GenerateCA,
// GenerateCert), and as services/lib/tls.ts loads them (reference/consul-compat.md §3.10,
// verify_server_hostname: a server of dc1 is `server.dc1.consulate`).
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AsnConvert } from '@peculiar/asn1-schema';
import { AuthorityKeyIdentifier, Certificate, SubjectKeyIdentifier, id_ce_authorityKeyIdentifier, id_ce_subjectKeyIdentifier } from '@peculiar/asn1-x509';

import { ManualClock } from '../../services/lib/clock';
import { TlsFiles, loadTlsMaterial } from '../../services/lib/tls';
import { CaError, CertificateAndKey, CertificateError, certificateName, createCa, createCertificate } from './make-certificates';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY_MS = 86_400_000;
const MAKE_CERTS = join(__dirname, '../../deploy/tls/make-certs.sh');

function x509(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

function extensionValue(pem: string, oid: string): ArrayBuffer | undefined {
  const tbs = AsnConvert.parse(x509(pem).raw, Certificate).tbsCertificate;
  return tbs.extensions?.find((ext) => ext.extnID === oid)?.extnValue.buffer;
}

function subjectKeyId(pem: string): string {
  return Buffer.from(AsnConvert.parse(extensionValue(pem, id_ce_subjectKeyIdentifier)!, SubjectKeyIdentifier).buffer).toString('hex');
}

function authorityKeyId(pem: string): string {
  const akid = AsnConvert.parse(extensionValue(pem, id_ce_authorityKeyIdentifier)!, AuthorityKeyIdentifier);
  return Buffer.from(akid.keyIdentifier!.buffer).toString('hex');
}

function openssl(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: run.status, output: run.stdout + run.stderr };
}

describe('make-certificates', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'consulate-make-certificates-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function write(name: string, ca: CertificateAndKey, leaf: CertificateAndKey): TlsFiles {
    const files = { caFile: join(dir, `${name}-ca.pem`), certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}-key.pem`) };
    writeFileSync(files.caFile, ca.certPem);
    writeFileSync(files.certFile, leaf.certPem);
    writeFileSync(files.keyFile, leaf.keyPem);
    return files;
  }

  describe('createCa', () => {
    test('is a self-signed EC P-256 CA for 1825 days, as Consul\'s GenerateCA', () => {
      const before = Date.now();
      const ca = createCa();
      const cert = x509(ca.certPem);
      expect(cert.ca).toBe(true);
      expect(cert.checkIssued(cert)).toBe(true);
      expect(cert.verify(cert.publicKey)).toBe(true);
      expect(cert.subject).toMatch(/^CN=Consulate Agent CA \d+$/);
      expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(1825 * DAY_MS);
      expect(Date.parse(cert.validFrom)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      const key = createPrivateKey(ca.keyPem);
      expect(cert.checkPrivateKey(key)).toBe(true);
      expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      expect(ca.keyPem).toMatch(/^-----BEGIN EC PRIVATE KEY-----\n/);
      // Consul's CA names itself as its own authority.
      expect(authorityKeyId(ca.certPem)).toBe(subjectKeyId(ca.certPem));
      expect(subjectKeyId(ca.certPem)).toHaveLength(64);
    });

    test('has the extensions and signature algorithm Consul\'s CA has', () => {
      const ca = createCa();
      writeFileSync(join(dir, 'ca.pem'), ca.certPem);
      const { output } = openssl(['x509', '-noout', '-text', '-in', join(dir, 'ca.pem')]);
      expect(output).toContain('Signature Algorithm: ecdsa-with-SHA256');
      expect(output).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
      expect(output).toMatch(/Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
      expect(output).not.toContain('Name Constraints');
    });

    test('takes days, a common name and DNS name constraints', () => {
      const ca = createCa({ days: 30, commonName: 'Test CA', permittedDnsDomains: ['consulate', 'localhost'] });
      const cert = x509(ca.certPem);
      expect(cert.subject).toBe('CN=Test CA');
      expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(30 * DAY_MS);
      writeFileSync(join(dir, 'ca.pem'), ca.certPem);
      const good = createCertificate({ ca, kind: 'server', datacenter: 'dc1' });
      writeFileSync(join(dir, 'good.pem'), good.certPem);
      expect(openssl(['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'good.pem')]).status).toBe(0);
      // The CA signs what it is asked to, but no verifier accepts a name outside its constraints.
      const outside = createCertificate({ ca, kind: 'server', datacenter: 'dc1', dnsNames: ['evil.example'] });
      writeFileSync(join(dir, 'outside.pem'), outside.certPem);
      const verify = openssl(['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'outside.pem')]);
      expect(verify.status).not.toBe(0);
      expect(verify.output).toContain('permitted subtree violation');
    });

    test('serials are random, positive and at most 128 bits', () => {
      const serials = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const serial = BigInt(`0x${x509(createCa().certPem).serialNumber}`);
        expect(serial).toBeGreaterThan(0n);
        expect(serial).toBeLessThan(1n << 128n);
        serials.add(serial.toString());
      }
      expect(serials.size).toBe(20);
    });
  });

  describe('createCertificate', () => {
    const ca = createCa();

    test('a server certificate names its datacenter and loads with loadTlsMaterial', () => {
      const server = createCertificate({ ca, kind: 'server', datacenter: 'dc1' });
      const cert = x509(server.certPem);
      expect(cert.subject).toBe('CN=server.dc1.consulate');
      expect(cert.subjectAltName?.split(', ')).toEqual(['DNS:server.dc1.consulate', 'DNS:localhost', 'IP Address:127.0.0.1']);
      expect(cert.keyUsage).toEqual([SERVER_AUTH, CLIENT_AUTH]);
      expect(cert.ca).toBe(false);
      expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(365 * DAY_MS);
      expect(authorityKeyId(server.certPem)).toBe(subjectKeyId(ca.certPem));
      expect(createPrivateKey(server.keyPem).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      const material = loadTlsMaterial(write('server', ca, server));
      expect(material.datacenter).toBe('dc1');
    });

    test('passes openssl\'s chain check for both TLS roles', () => {
      writeFileSync(join(dir, 'ca.pem'), ca.certPem);
      writeFileSync(join(dir, 'server.pem'), createCertificate({ ca, kind: 'server', datacenter: 'dc1' }).certPem);
      for (const purpose of ['sslserver', 'sslclient']) {
        expect(openssl(['verify', '-purpose', purpose, '-CAfile', join(dir, 'ca.pem'), join(dir, 'server.pem')])).toEqual({ status: 0, output: `${join(dir, 'server.pem')}: OK\n` });
      }
      const { output } = openssl(['x509', '-noout', '-text', '-in', join(dir, 'server.pem')]);
      expect(output).toContain('Signature Algorithm: ecdsa-with-SHA256');
      expect(output).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
      expect(output).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    });

    test('a client certificate is client.<dc>.consulate and names no datacenter to a router', () => {
      const client = createCertificate({ ca, kind: 'client', datacenter: 'dc1' });
      const cert = x509(client.certPem);
      expect(cert.subjectAltName?.split(', ')).toEqual(['DNS:client.dc1.consulate', 'DNS:localhost', 'IP Address:127.0.0.1']);
      // Consul's order and set: a client agent also serves its HTTPS API with it.
      expect(cert.keyUsage).toEqual([CLIENT_AUTH, SERVER_AUTH]);
      expect(loadTlsMaterial(write('client', ca, client)).datacenter).toBeUndefined();
    });

    test('a cli certificate has no IP address and no extended key usage, as Consul\'s', () => {
      const cli = x509(createCertificate({ ca, kind: 'cli', datacenter: 'dc1' }).certPem);
      expect(cli.subjectAltName).toBe('DNS:cli.dc1.consulate, DNS:localhost');
      expect(cli.keyUsage).toBeUndefined();
    });

    test('takes additional names and addresses, and a node name for a server', () => {
      const cert = x509(
        createCertificate({ ca, kind: 'server', datacenter: 'dc2', node: 'router-a', dnsNames: [' router.example ', ''], ips: ['10.1.2.3', '::1', '::ffff:192.0.2.1'] }).certPem,
      );
      expect(cert.subjectAltName?.split(', ')).toEqual([
        'DNS:router.example',
        'DNS:router-a.server.dc2.consulate',
        'DNS:server.dc2.consulate',
        'DNS:localhost',
        'IP Address:10.1.2.3',
        'IP Address:0:0:0:0:0:0:0:1',
        'IP Address:192.0.2.1',
        'IP Address:127.0.0.1',
      ]);
      expect(certificateName('server', 'dc2')).toBe('server.dc2.consulate');
    });

    test('an expired certificate fails to load with its date', () => {
      const yesterday = new Date(Date.now() - DAY_MS);
      const expired = createCertificate({ ca, kind: 'server', datacenter: 'dc1', notAfter: yesterday });
      const cert = x509(expired.certPem);
      expect(Date.parse(cert.validTo)).toBe(Math.floor(yesterday.getTime() / 1000) * 1000);
      expect(Date.parse(cert.validFrom)).toBeLessThan(Date.parse(cert.validTo));
      const files = write('expired', ca, expired);
      expect(() => loadTlsMaterial(files)).toThrow(`${files.certFile} expired on ${cert.validTo}: issue a new certificate`);
    });

    test('a certificate not yet valid fails to load', () => {
      const soon = createCertificate({ ca, kind: 'server', datacenter: 'dc1', notBefore: new Date(Date.now() + DAY_MS) });
      expect(() => loadTlsMaterial(write('soon', ca, soon))).toThrow(/is not valid until/);
      expect(loadTlsMaterial(write('soon', ca, soon), new ManualClock(Date.now() + 2 * DAY_MS)).datacenter).toBe('dc1');
    });

    test('a certificate from another CA fails to load against ours', () => {
      const foreign = createCertificate({ ca: createCa(), kind: 'server', datacenter: 'dc1' });
      expect(() => loadTlsMaterial(write('foreign', ca, foreign))).toThrow(/was not issued by the CA/);
    });

    test('a certificate for another datacenter loads and names that datacenter', () => {
      expect(loadTlsMaterial(write('dc2', ca, createCertificate({ ca, kind: 'server', datacenter: 'dc2' }))).datacenter).toBe('dc2');
    });

    test('refuses what would make a certificate no router could read, or no CA could sign', () => {
      const other = createCa();
      const leaf = createCertificate({ ca, kind: 'server', datacenter: 'dc1' });
      const request: [Parameters<typeof createCertificate>[0], RegExp][] = [
        [{ ca, kind: 'server', datacenter: 'DC 1' }, /datacenter "DC 1" must be lower-case letters/],
        [{ ca, kind: 'server', datacenter: 'dc1', domain: 'a/b' }, /domain "a\/b" is not a DNS name/],
        [{ ca, kind: 'client', datacenter: 'dc1', node: 'n1' }, /-node requires -server/],
        [{ ca, kind: 'server', datacenter: 'dc1', ips: ['10.0.0.300'] }, /"10.0.0.300" is not an IP address/],
        [{ ca, kind: 'server', datacenter: 'dc1', ips: ['fe80::1%eth0'] }, /is not an IP address/],
        [{ ca, kind: 'server', datacenter: 'dc1', days: 0 }, /days must be a whole number of days, at least 1/],
        [{ ca, kind: 'server', datacenter: 'dc1', notBefore: new Date(2_000_000_000_000), notAfter: new Date(1_900_000_000_000) }, /must be later than notBefore/],
      ];
      const badCa: [Parameters<typeof createCertificate>[0], RegExp][] = [
        [{ ca: { certPem: ca.certPem, keyPem: other.keyPem }, kind: 'server', datacenter: 'dc1' }, /the CA key does not belong to the CA certificate/],
        [{ ca: { certPem: leaf.certPem, keyPem: leaf.keyPem }, kind: 'server', datacenter: 'dc1' }, /is not a CA: it lacks basicConstraints CA:TRUE/],
        [{ ca: { certPem: 'junk', keyPem: ca.keyPem }, kind: 'server', datacenter: 'dc1' }, /the CA certificate is not a PEM certificate/],
        [{ ca: { certPem: ca.certPem, keyPem: 'junk' }, kind: 'server', datacenter: 'dc1' }, /the CA key is not a readable private key/],
      ];
      for (const [options, message] of request) {
        expect(() => createCertificate(options)).toThrow(message);
        expect(() => createCertificate(options)).not.toThrow(CaError);
        expect(() => createCertificate(options)).toThrow(CertificateError);
      }
      for (const [options, message] of badCa) {
        expect(() => createCertificate(options)).toThrow(message);
        expect(() => createCertificate(options)).toThrow(CaError);
      }
      // What is wrong with the request is found before the CA is even read.
      expect(() => createCertificate({ ca: { certPem: 'junk', keyPem: 'junk' }, kind: 'server', datacenter: 'DC 1' })).toThrow(/datacenter "DC 1"/);
    });
  });

  // deploy/tls/make-certs.sh makes the same files with openssl: either can issue from the other's CA.
  describe('with deploy/tls/make-certs.sh', () => {
    test('signs with the CA make-certs.sh made (its SHA-1 key identifier kept)', () => {
      execFileSync('bash', [MAKE_CERTS, dir, 'dc1'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const ca = { certPem: readFileSync(join(dir, 'consulate-agent-ca.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'consulate-agent-ca-key.pem'), 'utf8') };
      const server = createCertificate({ ca, kind: 'server', datacenter: 'dc2' });
      expect(authorityKeyId(server.certPem)).toBe(subjectKeyId(ca.certPem));
      expect(loadTlsMaterial(write('ours', ca, server)).datacenter).toBe('dc2');
      // And the same SAN list as the script's own server certificate.
      const scripts = x509(readFileSync(join(dir, 'dc1-server-consulate-0.pem'), 'utf8'));
      const ours = x509(createCertificate({ ca, kind: 'server', datacenter: 'dc1' }).certPem);
      expect(ours.subjectAltName).toBe(scripts.subjectAltName);
      expect(ours.keyUsage).toEqual(scripts.keyUsage);
    });

    test('make-certs.sh keeps a CA made here and issues from it', () => {
      const ca = createCa();
      writeFileSync(join(dir, 'consulate-agent-ca.pem'), ca.certPem);
      writeFileSync(join(dir, 'consulate-agent-ca-key.pem'), ca.keyPem, { mode: 0o600 });
      execFileSync('bash', [MAKE_CERTS, dir, 'dc1'], { stdio: ['ignore', 'ignore', 'pipe'] });
      expect(readFileSync(join(dir, 'consulate-agent-ca.pem'), 'utf8')).toBe(ca.certPem);
      const material = loadTlsMaterial({
        caFile: join(dir, 'consulate-agent-ca.pem'),
        certFile: join(dir, 'dc1-server-consulate-0.pem'),
        keyFile: join(dir, 'dc1-server-consulate-0-key.pem'),
      });
      expect(material.datacenter).toBe('dc1');
    });

    test('signs with an RSA CA, as Consul accepts one', () => {
      const run = openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=RSA CA', '-keyout', join(dir, 'rsa-ca-key.pem'), '-out', join(dir, 'rsa-ca.pem')]);
      expect(run.status).toBe(0);
      const ca = { certPem: readFileSync(join(dir, 'rsa-ca.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'rsa-ca-key.pem'), 'utf8') };
      const server = createCertificate({ ca, kind: 'server', datacenter: 'dc1' });
      writeFileSync(join(dir, 'rsa-server.pem'), server.certPem);
      expect(openssl(['x509', '-noout', '-text', '-in', join(dir, 'rsa-server.pem')]).output).toContain('Signature Algorithm: sha256WithRSAEncryption');
      expect(loadTlsMaterial(write('rsa', ca, server)).datacenter).toBe('dc1');
    });
  });
});
