/**
 * `consulate tls ca create` and `consulate tls cert create`: Consul's `consul tls` commands
 * (command/tls/ca/create, command/tls/cert/create), with their file names, messages and exit
 * codes, writing into the current directory. The certificates themselves come from
 * cli/tls/make-certificates.ts. Two differences from Consul: `-domain` defaults to `consulate`,
 * and `-server` / `-client` need `-dc`, because a router rejects a server whose certificate names
 * another datacenter and a silent `dc1` default would make exactly that.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { Command, CommandIo, parseCommandFlags } from '../command';
import type * as MakeCertificates from '../tls/make-certificates';

/** Loaded on first use: the ASN.1 library costs ~30 ms at start, which every role process would pay. */
function makeCertificates(): typeof MakeCertificates {
  return require('../tls/make-certificates') as typeof MakeCertificates;
}

// Kept here, not read from make-certificates, so building the command list loads no ASN.1 code.
const DEFAULT_DOMAIN = 'consulate';
/** Consul tries `-0` up to `-10000` for a free certificate file name. */
const MAX_FILE_INDEX = 10_000;
const HELP_FLAGS = ['-h', '-help', '--help'];

const CA_CREATE_FLAGS: FlagSpec[] = [
  { name: 'days', kind: 'int', usage: 'Number of days the CA is valid for.', defaultText: '1825 (approximately 5 years)' },
  { name: 'domain', kind: 'string', usage: 'The DNS domain of the cluster; names the files (<domain>-agent-ca.pem) and, with -name-constraint, the permitted domain.', defaultText: DEFAULT_DOMAIN },
  { name: 'common-name', kind: 'string', usage: 'Common Name of the CA.', defaultText: 'Consulate Agent CA <serial>' },
  { name: 'name-constraint', kind: 'bool', usage: 'Enables X.509 name constraints for the CA: it then only signs certificates for localhost, -domain and the domains given with -additional-name-constraint.' },
  { name: 'additional-name-constraint', kind: 'list', usage: 'A further DNS domain the CA may sign for, with -name-constraint; repeatable.' },
];

const CA_CREATE_HELP = `Usage: consulate tls ca create [options]

  Create a new Consulate CA:

  $ consulate tls ca create
  ==> Saved consulate-agent-ca.pem
  ==> Saved consulate-agent-ca-key.pem

Options:

${flagUsage(CA_CREATE_FLAGS)}`;

const caCreateCommand: Command = {
  synopsis: 'Create a new Consulate CA',
  help: () => CA_CREATE_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(CA_CREATE_FLAGS, CA_CREATE_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const v = parsed.values;
    if (parsed.positionals.length > 0) return fail(io, `Too many arguments (expected 0, got ${parsed.positionals.length})`);
    const domain = (v.get('domain') as string | undefined) ?? DEFAULT_DOMAIN;
    const days = (v.get('days') as number | undefined) ?? 1825;
    if (days < 1) return fail(io, `-days must be at least 1 (got ${days})`);
    const { CertificateError, createCa, isDnsName } = makeCertificates();
    if (!isDnsName(domain)) return fail(io, `-domain "${domain}" is not a DNS name`);

    const certFile = `${domain}-agent-ca.pem`;
    const keyFile = `${domain}-agent-ca-key.pem`;
    // Consul's texts; an existing CA is never replaced, that would orphan every certificate it signed.
    for (const file of [certFile, keyFile]) if (existsSync(file)) return fail(io, `${file} already exists.`);

    const constraints = v.get('name-constraint') === true ? [...((v.get('additional-name-constraint') as string[] | undefined) ?? []), domain, 'localhost'] : [];
    let ca;
    try {
      ca = createCa({ days, commonName: v.get('common-name') as string | undefined, permittedDnsDomains: constraints });
    } catch (err) {
      if (err instanceof CertificateError) return fail(io, err.message);
      throw err;
    }
    return saveBoth(io, { file: certFile, data: ca.certPem, mode: 0o666 }, { file: keyFile, data: ca.keyPem, mode: 0o600 });
  },
};

const CERT_CREATE_FLAGS: FlagSpec[] = [
  { name: 'ca', kind: 'string', usage: 'Provide path to the ca.', defaultText: '#DOMAIN#-agent-ca.pem' },
  { name: 'key', kind: 'string', usage: 'Provide path to the key.', defaultText: '#DOMAIN#-agent-ca-key.pem' },
  { name: 'server', kind: 'bool', usage: 'Generate server certificate.' },
  { name: 'client', kind: 'bool', usage: 'Generate client certificate.' },
  { name: 'cli', kind: 'bool', usage: 'Generate cli certificate.' },
  { name: 'node', kind: 'string', usage: 'When generating a server cert and this is set an additional dns name is included of the form <node>.server.<datacenter>.<domain>.' },
  { name: 'days', kind: 'int', usage: 'Provide number of days the certificate is valid for from now on.', defaultText: '365' },
  { name: 'dc', kind: 'string', usage: 'Provide the datacenter; required with -server and -client (the certificate is named server.<dc>.<domain>).', defaultText: 'dc1 with -cli' },
  { name: 'domain', kind: 'string', usage: 'Provide the domain. Routers read the datacenter from server.<dc>.consulate.', defaultText: DEFAULT_DOMAIN },
  { name: 'additional-dnsname', kind: 'list', usage: 'Provide an additional dnsname for Subject Alternative Names. localhost is always included. This flag may be provided multiple times.' },
  { name: 'additional-ipaddress', kind: 'list', usage: 'Provide an additional ipaddress for Subject Alternative Names. 127.0.0.1 is always included. This flag may be provided multiple times.' },
];

const CERT_CREATE_HELP = `Usage: consulate tls cert create [options]

  Create a new certificate

  $ consulate tls cert create -server -dc dc1
  ==> WARNING: Server Certificates grants authority to become a
      server and access all state in the cluster including root keys
      and all ACL tokens. Do not distribute them to production hosts
      that are not server nodes. Store them as securely as CA keys.
  ==> Using consulate-agent-ca.pem and consulate-agent-ca-key.pem
  ==> Saved dc1-server-consulate-0.pem
  ==> Saved dc1-server-consulate-0-key.pem
  $ consulate tls cert create -client -dc dc1
  ==> Using consulate-agent-ca.pem and consulate-agent-ca-key.pem
  ==> Saved dc1-client-consulate-0.pem
  ==> Saved dc1-client-consulate-0-key.pem

Options:

${flagUsage(CERT_CREATE_FLAGS)}`;

const SERVER_WARNING = `==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.`;

const certCreateCommand: Command = {
  synopsis: 'Create a new certificate',
  help: () => CERT_CREATE_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(CERT_CREATE_FLAGS, CERT_CREATE_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const v = parsed.values;
    if (parsed.positionals.length > 0) return fail(io, `Too many arguments (expected 0, got ${parsed.positionals.length})`);
    const domain = (v.get('domain') as string | undefined) ?? DEFAULT_DOMAIN;
    const caFlag = (v.get('ca') as string | undefined) ?? '#DOMAIN#-agent-ca.pem';
    const keyFlag = (v.get('key') as string | undefined) ?? '#DOMAIN#-agent-ca-key.pem';
    if (caFlag === '') return fail(io, 'Please provide the ca');
    if (keyFlag === '') return fail(io, 'Please provide the key');
    const kinds = (['server', 'client', 'cli'] as const).filter((kind) => v.get(kind) === true);
    if (kinds.length !== 1) return fail(io, 'Please provide either -server, -client, or -cli');
    const kind = kinds[0];
    const node = v.get('node') as string | undefined;
    if (node !== undefined && node !== '' && kind !== 'server') return fail(io, '-node requires -server');
    const dc = v.get('dc') as string | undefined;
    if ((dc === undefined || dc === '') && kind !== 'cli') return fail(io, `Please provide the datacenter with -dc: the certificate is named ${kind}.<dc>.${domain}`);
    const datacenter = dc === undefined || dc === '' ? 'dc1' : dc;
    const days = (v.get('days') as number | undefined) ?? 365;
    if (days < 1) return fail(io, `-days must be at least 1 (got ${days})`);

    const prefix = `${datacenter}-${kind}-${domain}`;
    const files = freeFileNames(prefix);
    if (files === undefined) return fail(io, "Could not find a filename that doesn't already exist");

    const caFile = caFlag.replace('#DOMAIN#', domain);
    const caKeyFile = keyFlag.replace('#DOMAIN#', domain);
    const caPem = readForCommand(caFile);
    if (caPem instanceof Error) return fail(io, `Error reading CA: ${caPem.message}`);
    const caKeyPem = readForCommand(caKeyFile);
    if (caKeyPem instanceof Error) return fail(io, `Error reading CA key: ${caKeyPem.message}`);

    const { CaError, CertificateError, createCertificate } = makeCertificates();
    let made;
    try {
      made = createCertificate({
        ca: { certPem: caPem, keyPem: caKeyPem },
        kind,
        datacenter,
        domain,
        node: node === '' ? undefined : node,
        days,
        dnsNames: v.get('additional-dnsname') as string[] | undefined,
        ips: v.get('additional-ipaddress') as string[] | undefined,
      });
    } catch (err) {
      if (err instanceof CaError) return fail(io, `${err.message} (CA ${caFile}, key ${caKeyFile})`);
      if (err instanceof CertificateError) return fail(io, err.message);
      throw err;
    }
    if (kind === 'server') io.stdout(`${SERVER_WARNING}\n`);
    io.stdout(`==> Using ${caFile} and ${caKeyFile}\n`);
    return saveBoth(io, { file: files.certFile, data: made.certPem, mode: 0o666 }, { file: files.keyFile, data: made.keyPem, mode: 0o600 });
  },
};

/** The first `<prefix>-<i>.pem` / `<prefix>-<i>-key.pem` pair of which neither file exists, as Consul. */
function freeFileNames(prefix: string): { certFile: string; keyFile: string } | undefined {
  for (let i = 0; i <= MAX_FILE_INDEX; i++) {
    const certFile = `${prefix}-${i}.pem`;
    const keyFile = `${prefix}-${i}-key.pem`;
    if (!existsSync(certFile) && !existsSync(keyFile)) return { certFile, keyFile };
  }
  return undefined;
}

/** The file's text, or an error worded as Go's os.ReadFile words it (`open x.pem: no such file or directory`). */
function readForCommand(path: string): string | Error {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return new Error(`open ${path}: no such file or directory`);
    if (code === 'EACCES') return new Error(`open ${path}: permission denied`);
    if (code === 'EISDIR') return new Error(`read ${path}: is a directory`);
    return err as Error;
  }
}

interface NewFile {
  readonly file: string;
  readonly data: string;
  /** Before the umask, as Go's os.WriteFile: 0666 for a certificate, 0600 for a key. */
  readonly mode: number;
}

/** Writes the certificate, then its key, each announced as Consul does (`==> Saved x.pem`). */
function saveBoth(io: CommandIo, cert: NewFile, key: NewFile): number {
  for (const { file, data, mode } of [cert, key]) {
    try {
      writeNewFile(file, data, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return fail(io, `${file} already exists.`);
      return fail(io, `Error writing ${file}: ${(err as Error).message}`);
    }
    io.stdout(`==> Saved ${file}\n`);
  }
  return 0;
}

/**
 * Writes `path` whole or not at all, and never over an existing file: the data goes to a
 * temporary file beside it, which is then hard-linked into place (link(2) fails with EEXIST
 * rather than replace, where rename(2) would replace).
 */
function writeNewFile(path: string, data: string, mode: number): void {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(temporary, data, { mode, flag: 'wx' });
  try {
    linkSync(temporary, path);
  } finally {
    unlinkSync(temporary);
  }
}

function fail(io: CommandIo, message: string): number {
  io.stderr(`${message}\n`);
  return 1;
}

/**
 * A command that only groups subcommands (`tls`, `tls ca`, `tls cert`): as mitchellh/cli, with
 * no known subcommand it prints its help to stderr and exits 1; -help prints it to stdout, exit 0.
 */
function commandGroup(synopsis: string, usage: string, subcommands: Record<string, Command>): Command {
  const width = Math.max(...Object.keys(subcommands).map((name) => name.length));
  const help = `${usage}\n\nSubcommands:\n\n${Object.entries(subcommands)
    .map(([name, c]) => `    ${name.padEnd(width)}    ${c.synopsis}`)
    .join('\n')}`;
  return {
    synopsis,
    help: () => help,
    async run(args, io) {
      if (args.length === 1 && HELP_FLAGS.includes(args[0])) {
        io.stdout(`${help}\n`);
        return 0;
      }
      const sub = args.length === 0 ? undefined : subcommands[args[0]];
      if (sub === undefined) return fail(io, help);
      return sub.run(args.slice(1), io);
    },
  };
}

const caCommand = commandGroup(
  'Helpers for CAs',
  `Usage: consulate tls ca <subcommand> [options] [filename-prefix]

  This command has subcommands for interacting with Certificate Authorities.

  Create a CA

    $ consulate tls ca create`,
  { create: caCreateCommand },
);

const certCommand = commandGroup(
  'Helpers for certificates',
  `Usage: consulate tls cert <subcommand> [options] [filename-prefix]

  This command has subcommands for interacting with certificates.

  Create a server certificate

    $ consulate tls cert create -server -dc dc1

  Create a client certificate

    $ consulate tls cert create -client -dc dc1`,
  { create: certCreateCommand },
);

export const tlsCommand = commandGroup(
  'Builtin helpers for creating CAs and certificates',
  `Usage: consulate tls <subcommand> <subcommand> [options]

  This command has subcommands for interacting with Consulate TLS: the CA and the certificates
  the federation routers present on 8300 (mutual TLS).

  Create a CA

    $ consulate tls ca create

  Create a server certificate

    $ consulate tls cert create -server -dc dc1

  Create a client certificate

    $ consulate tls cert create -client -dc dc1`,
  { ca: caCommand, cert: certCommand },
);
