// `consulate tls ca create` / `tls cert create` as Consul's command/tls/ca/create and
// command/tls/cert/create: files in the current directory, the index that moves past existing
// files, no overwriting, Consul's messages and exit codes.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadTlsMaterial } from '../../services/lib/tls';
import { main } from '../main';

const DAY_MS = 86_400_000;
const WARNING = `==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.
`;

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const io = { env: {}, stdout: (text: string) => (out.stdout += text), stderr: (text: string) => (out.stderr += text) };
  const code = await main(['tls', ...argv], io);
  return { code, ...out };
}

function certificate(file: string): X509Certificate {
  return new X509Certificate(readFileSync(file));
}

describe('consulate tls', () => {
  const startDir = process.cwd();
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'consulate-tls-command-'));
    process.chdir(dir);
  });
  afterEach(() => {
    process.chdir(startDir);
    rmSync(dir, { recursive: true, force: true });
  });

  describe('ca create', () => {
    test('writes consulate-agent-ca.pem and its key, as Consul writes consul-agent-ca.pem', async () => {
      expect(await run('ca', 'create')).toEqual({ code: 0, stdout: '==> Saved consulate-agent-ca.pem\n==> Saved consulate-agent-ca-key.pem\n', stderr: '' });
      const ca = certificate('consulate-agent-ca.pem');
      expect(ca.ca).toBe(true);
      expect(ca.subject).toMatch(/^CN=Consulate Agent CA \d+$/);
      expect(Date.parse(ca.validTo) - Date.parse(ca.validFrom)).toBe(1825 * DAY_MS);
      expect(statSync('consulate-agent-ca-key.pem').mode & 0o077).toBe(0);
      expect(readdirSync(dir).sort()).toEqual(['consulate-agent-ca-key.pem', 'consulate-agent-ca.pem']);
    });

    test('never replaces an existing CA, with Consul\'s text', async () => {
      await run('ca', 'create');
      const before = readFileSync('consulate-agent-ca.pem', 'utf8');
      expect(await run('ca', 'create')).toEqual({ code: 1, stdout: '', stderr: 'consulate-agent-ca.pem already exists.\n' });
      expect(readFileSync('consulate-agent-ca.pem', 'utf8')).toBe(before);
      renameSync('consulate-agent-ca.pem', 'elsewhere.pem');
      expect(await run('ca', 'create')).toEqual({ code: 1, stdout: '', stderr: 'consulate-agent-ca-key.pem already exists.\n' });
      expect(existsSync('consulate-agent-ca.pem')).toBe(false);
    });

    test('takes -domain, -days, -common-name and name constraints', async () => {
      const result = await run('ca', 'create', '-domain=foo', '-days', '30', '-common-name', 'Test CA', '-name-constraint', '-additional-name-constraint=bar');
      expect(result).toEqual({ code: 0, stdout: '==> Saved foo-agent-ca.pem\n==> Saved foo-agent-ca-key.pem\n', stderr: '' });
      const ca = certificate('foo-agent-ca.pem');
      expect(ca.subject).toBe('CN=Test CA');
      expect(Date.parse(ca.validTo) - Date.parse(ca.validFrom)).toBe(30 * DAY_MS);
      const text = spawnSync('openssl', ['x509', '-noout', '-text', '-in', 'foo-agent-ca.pem'], { encoding: 'utf8' }).stdout;
      expect(text).toMatch(/Name Constraints: critical\s+Permitted:\s+DNS:bar\s+DNS:foo\s+DNS:localhost\n/);
    });

    test('refuses bad flags and arguments', async () => {
      expect(await run('ca', 'create', '-days=0')).toMatchObject({ code: 1, stderr: '-days must be at least 1 (got 0)\n' });
      expect(await run('ca', 'create', '-domain=../up')).toMatchObject({ code: 1, stderr: '-domain "../up" is not a DNS name\n' });
      expect(await run('ca', 'create', '-dayz=3')).toMatchObject({ code: 1, stderr: 'flag provided but not defined: -dayz\n' });
      expect(await run('ca', 'create', 'extra')).toMatchObject({ code: 1, stderr: 'Too many arguments (expected 0, got 1)\n' });
      expect(readdirSync(dir)).toEqual([]);
    });
  });

  describe('cert create', () => {
    beforeEach(async () => {
      expect((await run('ca', 'create')).code).toBe(0);
    });

    test('-server -dc dc1 writes dc1-server-consulate-0.pem, which a router loads as dc1', async () => {
      expect(await run('cert', 'create', '-server', '-dc', 'dc1')).toEqual({
        code: 0,
        stdout: `${WARNING}==> Using consulate-agent-ca.pem and consulate-agent-ca-key.pem\n==> Saved dc1-server-consulate-0.pem\n==> Saved dc1-server-consulate-0-key.pem\n`,
        stderr: '',
      });
      const material = loadTlsMaterial({ caFile: 'consulate-agent-ca.pem', certFile: 'dc1-server-consulate-0.pem', keyFile: 'dc1-server-consulate-0-key.pem' });
      expect(material.datacenter).toBe('dc1');
      expect(material.certificate.subjectAltName).toBe('DNS:server.dc1.consulate, DNS:localhost, IP Address:127.0.0.1');
      expect(Date.parse(material.certificate.validTo) - Date.parse(material.certificate.validFrom)).toBe(365 * DAY_MS);
      expect(statSync('dc1-server-consulate-0-key.pem').mode & 0o077).toBe(0);
      // Written through a temporary file, which does not stay behind.
      expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    });

    test('the index moves past any file of a pair that exists', async () => {
      await run('cert', 'create', '-server', '-dc', 'dc1');
      expect((await run('cert', 'create', '-server', '-dc', 'dc1')).stdout).toContain('==> Saved dc1-server-consulate-1.pem\n==> Saved dc1-server-consulate-1-key.pem\n');
      writeFileSync('dc1-server-consulate-2-key.pem', 'a key without its certificate');
      expect((await run('cert', 'create', '-server', '-dc', 'dc1')).stdout).toContain('==> Saved dc1-server-consulate-3.pem\n');
      expect(readFileSync('dc1-server-consulate-2-key.pem', 'utf8')).toBe('a key without its certificate');
      // Another datacenter starts at 0.
      expect((await run('cert', 'create', '-server', '-dc', 'dc2')).stdout).toContain('==> Saved dc2-server-consulate-0.pem\n');
    });

    test('-client writes dc1-client-consulate-0.pem, which names no datacenter', async () => {
      expect(await run('cert', 'create', '-client', '-dc', 'dc1')).toEqual({
        code: 0,
        stdout: '==> Using consulate-agent-ca.pem and consulate-agent-ca-key.pem\n==> Saved dc1-client-consulate-0.pem\n==> Saved dc1-client-consulate-0-key.pem\n',
        stderr: '',
      });
      const material = loadTlsMaterial({ caFile: 'consulate-agent-ca.pem', certFile: 'dc1-client-consulate-0.pem', keyFile: 'dc1-client-consulate-0-key.pem' });
      expect(material.datacenter).toBeUndefined();
      expect(material.certificate.subjectAltName).toBe('DNS:client.dc1.consulate, DNS:localhost, IP Address:127.0.0.1');
    });

    test('-cli needs no -dc: dc1, as Consul\'s default', async () => {
      expect((await run('cert', 'create', '-cli')).stdout).toContain('==> Saved dc1-cli-consulate-0.pem\n');
      expect(certificate('dc1-cli-consulate-0.pem').subjectAltName).toBe('DNS:cli.dc1.consulate, DNS:localhost');
    });

    test('takes additional names and addresses, -node and -days', async () => {
      const result = await run(
        'cert', 'create', '-server', '-dc=dc2', '-node=router-a', '-days=30',
        '-additional-dnsname', 'router.example', '-additional-dnsname=other.example', '-additional-ipaddress=10.0.0.7', '-additional-ipaddress', '::1',
      );
      expect(result.code).toBe(0);
      const cert = certificate('dc2-server-consulate-0.pem');
      expect(cert.subjectAltName?.split(', ')).toEqual([
        'DNS:router.example', 'DNS:other.example', 'DNS:router-a.server.dc2.consulate', 'DNS:server.dc2.consulate', 'DNS:localhost',
        'IP Address:10.0.0.7', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:127.0.0.1',
      ]);
      expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(30 * DAY_MS);
    });

    test('-ca and -key point at a CA elsewhere; -domain picks its default name', async () => {
      mkdirSync('pki');
      renameSync('consulate-agent-ca.pem', 'pki/root.pem');
      renameSync('consulate-agent-ca-key.pem', 'pki/root-key.pem');
      const result = await run('cert', 'create', '-client', '-dc', 'dc1', '-ca', 'pki/root.pem', '-key', 'pki/root-key.pem');
      expect(result.stdout).toBe('==> Using pki/root.pem and pki/root-key.pem\n==> Saved dc1-client-consulate-0.pem\n==> Saved dc1-client-consulate-0-key.pem\n');
      expect(certificate('dc1-client-consulate-0.pem').checkIssued(certificate('pki/root.pem'))).toBe(true);

      expect((await run('ca', 'create', '-domain', 'example')).code).toBe(0);
      expect((await run('cert', 'create', '-server', '-dc', 'dc1', '-domain', 'example')).stdout).toContain(
        '==> Using example-agent-ca.pem and example-agent-ca-key.pem\n==> Saved dc1-server-example-0.pem\n',
      );
      expect(certificate('dc1-server-example-0.pem').subjectAltName).toBe('DNS:server.dc1.example, DNS:localhost, IP Address:127.0.0.1');
    });

    test('a missing CA or key is Consul\'s error, and nothing is written', async () => {
      rmSync('consulate-agent-ca-key.pem');
      expect(await run('cert', 'create', '-server', '-dc', 'dc1')).toEqual({ code: 1, stdout: '', stderr: 'Error reading CA key: open consulate-agent-ca-key.pem: no such file or directory\n' });
      rmSync('consulate-agent-ca.pem');
      expect(await run('cert', 'create', '-server', '-dc', 'dc1')).toEqual({ code: 1, stdout: '', stderr: 'Error reading CA: open consulate-agent-ca.pem: no such file or directory\n' });
      expect(readdirSync(dir)).toEqual([]);
    });

    test('a CA key that is not the CA\'s is refused before anything is written', async () => {
      mkdirSync('other');
      process.chdir('other');
      await run('ca', 'create');
      process.chdir(dir);
      const result = await run('cert', 'create', '-server', '-dc', 'dc1', '-key', 'other/consulate-agent-ca-key.pem');
      expect(result).toEqual({ code: 1, stdout: '', stderr: 'the CA key does not belong to the CA certificate (CA consulate-agent-ca.pem, key other/consulate-agent-ca-key.pem)\n' });
      expect(existsSync('dc1-server-consulate-0.pem')).toBe(false);
    });

    test('usage errors exit 1 with Consul\'s texts', async () => {
      const cases: [string[], string][] = [
        [[], 'Please provide either -server, -client, or -cli'],
        [['-server', '-client', '-dc', 'dc1'], 'Please provide either -server, -client, or -cli'],
        [['-server', '-cli', '-dc', 'dc1'], 'Please provide either -server, -client, or -cli'],
        [['-client', '-dc', 'dc1', '-node', 'n1'], '-node requires -server'],
        [['-server', '-dc', 'dc1', '-ca', ''], 'Please provide the ca'],
        [['-server', '-dc', 'dc1', '-key='], 'Please provide the key'],
        [['-server'], 'Please provide the datacenter with -dc: the certificate is named server.<dc>.consulate'],
        [['-client', '-dc='], 'Please provide the datacenter with -dc: the certificate is named client.<dc>.consulate'],
        [['-server', '-dc', 'DC1'], 'datacenter "DC1" must be lower-case letters, digits, \'-\' or \'_\': the datacenter is read back out of the certificate\'s name'],
        [['-server', '-dc', 'dc1', '-additional-ipaddress', 'nope'], '"nope" is not an IP address'],
        [['-server', '-dc', 'dc1', '-days', '0'], '-days must be at least 1 (got 0)'],
        [['-server', '-dc', 'dc1', '-days', 'x'], 'invalid value "x" for flag -days: parse error'],
        [['-server', '-dc', 'dc1', 'extra'], 'Too many arguments (expected 0, got 1)'],
      ];
      for (const [args, message] of cases) {
        expect({ args, ...(await run('cert', 'create', ...args)) }).toEqual({ args, code: 1, stdout: '', stderr: `${message}\n` });
      }
      expect(readdirSync(dir).sort()).toEqual(['consulate-agent-ca-key.pem', 'consulate-agent-ca.pem']);
    });
  });

  describe('the command tree', () => {
    test('a group without its subcommand prints its help to stderr and exits 1', async () => {
      for (const argv of [[], ['nope'], ['ca'], ['cert'], ['cert', 'renew']]) {
        const result = await run(...argv);
        expect(result.code).toBe(1);
        expect(result.stderr).toMatch(/^Usage: consulate tls/);
      }
    });

    test('-help at every level prints the usage to stdout and exits 0', async () => {
      for (const [argv, usage] of [
        [[], 'Usage: consulate tls <subcommand>'],
        [['ca'], 'Usage: consulate tls ca <subcommand>'],
        [['ca', 'create'], 'Usage: consulate tls ca create [options]'],
        [['cert', 'create'], 'Usage: consulate tls cert create [options]'],
      ] as [string[], string][]) {
        const result = await run(...argv, '-help');
        expect(result).toMatchObject({ code: 0, stderr: '' });
        expect(result.stdout).toContain(usage);
      }
      expect((await run('cert', 'create', '-help')).stdout).toContain('  -additional-dnsname <value>');
    });
  });
});
