import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ManualClock } from './clock';
import { X509Certificate } from 'node:crypto';

import { CLIENT_AUTH, SERVER_AUTH, TlsConfigError, datacenterOf, loadTlsMaterial, purposeProblem, serverName } from './tls';
import { createCa, createCertificate } from '../../cli/tls/make-certificates';
import { makeCertDir, writeTlsFiles } from '../../test/harness/tls';

const DAY_MS = 86_400_000;

// The checks at load time that Consul's verify_incoming / verify_server_hostname rely on
// (reference/consul-compat.md §3.10): our CA, in date, key matching, datacenter in the SAN.
describe('loadTlsMaterial', () => {
  const dir = makeCertDir();
  const ca = createCa();
  const other = createCa();
  const good = writeTlsFiles(dir, 'dc1-server', ca, { datacenter: 'dc1' });

  test('loads a valid certificate and reads its datacenter', () => {
    const material = loadTlsMaterial(good);
    expect(material.datacenter).toBe('dc1');
    expect(datacenterOf(material.certificate)).toBe('dc1');
    expect(serverName('dc2')).toBe('server.dc2.consulate');
  });

  test('refuses a certificate from another CA', () => {
    const foreign = writeTlsFiles(dir, 'foreign', other, { datacenter: 'dc1' });
    expect(() => loadTlsMaterial({ ...foreign, caFile: good.caFile })).toThrow(/was not issued by the CA/);
  });

  test('refuses an expired certificate, and one not yet valid', () => {
    const expired = writeTlsFiles(dir, 'expired', ca, { datacenter: 'dc1', notAfter: new Date(Date.now() - DAY_MS) });
    expect(() => loadTlsMaterial(expired)).toThrow(/expired on/);
    expect(() => loadTlsMaterial(good, new ManualClock(Date.parse('2001-01-01T00:00:00Z')))).toThrow(/is not valid until/);
  });

  test('refuses a key that is not the certificate\'s', () => {
    const another = writeTlsFiles(dir, 'another', ca, { datacenter: 'dc1' });
    expect(() => loadTlsMaterial({ ...good, keyFile: another.keyFile })).toThrow(/does not belong to the certificate/);
  });

  test('names the file that cannot be read or parsed', () => {
    expect(() => loadTlsMaterial({ ...good, caFile: join(dir, 'missing.pem') })).toThrow(new TlsConfigError(`cannot read the CA certificate (ca_file) ${join(dir, 'missing.pem')}: ENOENT`));
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate');
    expect(() => loadTlsMaterial({ ...good, certFile: junk })).toThrow(/is not a PEM certificate/);
  });
});

// Go's crypto/x509 rule for the extended key usage, which Node's TLS does not apply.
describe('purposeProblem', () => {
  const ca = createCa();
  const made = (kind: 'server' | 'cli', extendedKeyUsages?: string[]) => new X509Certificate(createCertificate({ ca, kind, datacenter: 'dc1', extendedKeyUsages }).certPem);

  test("a router certificate as `tls cert create -server` makes it serves both ends", () => {
    expect([purposeProblem(made('server'), CLIENT_AUTH), purposeProblem(made('server'), SERVER_AUTH)]).toEqual([undefined, undefined]);
  });

  test('no extended key usage extension: good for anything; anyExtendedKeyUsage: likewise', () => {
    expect(purposeProblem(made('cli'), CLIENT_AUTH)).toBeUndefined();
    expect(purposeProblem(made('server', ['2.5.29.37.0']), SERVER_AUTH)).toBeUndefined();
  });

  test('one purpose only: refused for the other, naming what it is for', () => {
    expect(purposeProblem(made('server', [SERVER_AUTH]), CLIENT_AUTH)).toBe(`certificate is not for client authentication (extended key usage ${SERVER_AUTH})`);
    expect(purposeProblem(made('server', [CLIENT_AUTH]), SERVER_AUTH)).toBe(`certificate is not for server authentication (extended key usage ${CLIENT_AUTH})`);
  });
});
