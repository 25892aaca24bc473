/**
 * The CA and the certificates behind `consulate tls ca create` / `tls cert create`, made the way
 * Consul's tlsutil makes them (GenerateCA, GenerateCert): EC P-256 keys, ECDSA-SHA256 signatures,
 * a random 128-bit serial, key identifiers that are the SHA-256 of the public key, and a server
 * certificate named `server.<dc>.consulate`, the SAN services/lib/tls.ts reads the datacenter from
 * (Consul's verify_server_hostname). deploy/tls/make-certs.sh makes the same with openssl; the
 * two are interchangeable.
 *
 * Node has no X.509 writer, so the certificate is laid out with @peculiar/asn1-x509's ASN.1
 * schema and signed with node:crypto. Tests use these functions too, for deliberately bad
 * material: an expired certificate (`notAfter` in the past), one from another CA (a second
 * `createCa()`), one for another datacenter.
 */
import { KeyObject, X509Certificate, createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';

import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  NameConstraints,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Consul's `-domain` default is `consul`; ours is the suffix services/lib/tls.ts reads. */
export const DEFAULT_DOMAIN = 'consulate';
/** Consul's `tls ca create -days` default: about 5 years. */
export const DEFAULT_CA_DAYS = 1825;
/** Consul's `tls cert create -days` default: 1 year. */
export const DEFAULT_CERTIFICATE_DAYS = 365;

export interface CaOptions {
  /** Days the CA is valid for from `notBefore`; default 1825. */
  readonly days?: number;
  /** The subject's CN; default `Consulate Agent CA <serial>`, as Consul's `Consul Agent CA <serial>`. */
  readonly commonName?: string;
  /**
   * X.509 name constraints (critical): the CA then only vouches for DNS names under these
   * (Consul's -name-constraint adds the domain and localhost). None by default.
   */
  readonly permittedDnsDomains?: readonly string[];
  /** Default now. */
  readonly notBefore?: Date;
  /** Default `days` after notBefore. */
  readonly notAfter?: Date;
}

/**
 * `server` may act as a server of the datacenter (SAN `server.<dc>.<domain>`); `client` and `cli`
 * are named `client.<dc>.<domain>` / `cli.<dc>.<domain>` and can never pass for a server.
 */
export type CertificateKind = 'server' | 'client' | 'cli';

export interface CertificateOptions {
  /** The issuing CA, as `createCa` returns it or as read from its two files. */
  readonly ca: CertificateAndKey;
  readonly kind: CertificateKind;
  /** Lower-case letters, digits, '-' and '_': what services/lib/tls.ts reads back out of the SAN. */
  readonly datacenter: string;
  /** Default `consulate`. Only `consulate` names a datacenter services/lib/tls.ts recognises. */
  readonly domain?: string;
  /** Server only: adds the SAN `<node>.server.<dc>.<domain>`, as Consul's `-node`. */
  readonly node?: string;
  /** Days the certificate is valid for from `notBefore`; default 365. */
  readonly days?: number;
  /**
   * Default now; when `notAfter` is given and already past, `days` before it, so an expired
   * certificate is simply `{ notAfter: yesterday }`.
   */
  readonly notBefore?: Date;
  /** Default `days` after notBefore. */
  readonly notAfter?: Date;
  /** DNS SANs beyond the kind's own and `localhost`. */
  readonly dnsNames?: readonly string[];
  /** IP SANs beyond `127.0.0.1` (which a `cli` certificate does not get, as in Consul). */
  readonly ips?: readonly string[];
  /**
   * The extended key usages (OIDs) in place of the kind's own, for tests of a peer's checks (a
   * router certificate good for `serverAuth` only); the CLI never sets it. `[]` leaves the
   * extension out.
   */
  readonly extendedKeyUsages?: readonly string[];
}

/** Options that cannot make a valid certificate. */
export class CertificateError extends Error {
  override readonly name: string = 'CertificateError';
}

/** The issuing CA cannot sign: not a CA, not a readable certificate or key, or a key not its own. */
export class CaError extends CertificateError {
  override readonly name = 'CaError';
}

const DAY_MS = 86_400_000;
const DATACENTER = /^[a-z0-9_-]+$/;
const DNS_NAME = /^[a-z0-9-]+(\.[a-z0-9-]+)*$/i;
const ID_CE_NAME = '2.5.4.3'; // commonName

/** Whether `text` is a DNS name (letters, digits and '-' in dot-separated labels), e.g. a -domain. */
export function isDnsName(text: string): boolean {
  return DNS_NAME.test(text);
}

/** The name a certificate of this kind carries as its CN and as a DNS SAN: `server.dc1.consulate`. */
export function certificateName(kind: CertificateKind, datacenter: string, domain: string = DEFAULT_DOMAIN): string {
  return `${kind}.${datacenter}.${domain}`;
}

/** A new self-signed CA: basicConstraints CA:TRUE (critical), keyCertSign, cRLSign, digitalSignature. */
export function createCa(options: CaOptions = {}): CertificateAndKey {
  const { privateKey, publicKey } = newKeyPair();
  const serial = randomSerial();
  const commonName = options.commonName || `Consulate Agent CA ${BigInt(`0x${Buffer.from(serial).toString('hex')}`)}`;
  const subject = nameWithCommonName(commonName);
  const keyId = keyIdentifier(publicKey);
  const extensions = [
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true })),
    extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature)),
    extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyId)),
    extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyId) })),
  ];
  const permitted = options.permittedDnsDomains ?? [];
  if (permitted.length > 0) {
    const subtrees = new GeneralSubtrees(permitted.map((domain) => new GeneralSubtree({ base: new GeneralName({ dNSName: domain }) })));
    extensions.push(extension(id_ce_nameConstraints, true, new NameConstraints({ permittedSubtrees: subtrees })));
  }
  const validity = validityOf(options, DEFAULT_CA_DAYS);
  const certPem = signCertificate({ serial, issuer: subject, subject, validity, publicKey, extensions }, privateKey);
  return { certPem, keyPem: exportKey(privateKey) };
}

/** A new certificate of `kind` for `datacenter`, signed by `ca`. */
export function createCertificate(options: CertificateOptions): CertificateAndKey {
  const domain = options.domain ?? DEFAULT_DOMAIN;
  if (!DATACENTER.test(options.datacenter)) {
    throw new CertificateError(`datacenter "${options.datacenter}" must be lower-case letters, digits, '-' or '_': the datacenter is read back out of the certificate's name`);
  }
  if (!isDnsName(domain)) throw new CertificateError(`domain "${domain}" is not a DNS name`);
  if (options.node && options.kind !== 'server') throw new CertificateError('-node requires -server');

  const name = certificateName(options.kind, options.datacenter, domain);
  // Consul's order: the additional names first, then the node's, the kind's own, localhost.
  const dnsNames = (options.dnsNames ?? []).map((dns) => dns.trim()).filter((dns) => dns !== '');
  if (options.node) dnsNames.push(`${options.node}.${name}`);
  dnsNames.push(name, 'localhost');
  const ips = (options.ips ?? []).map((ip) => ip.trim()).filter((ip) => ip !== '').map(ipAddress);
  if (options.kind !== 'cli') ips.push('127.0.0.1');
  const sans = [...dnsNames.map((dns) => new GeneralName({ dNSName: dns })), ...ips.map((ip) => new GeneralName({ iPAddress: ip }))];
  const validity = validityOf(options, DEFAULT_CERTIFICATE_DAYS);

  // The options are sound; now the CA.
  const ca = readCa(options.ca);
  const { privateKey, publicKey } = newKeyPair();
  const extensions = [
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
    // digitalSignature only: an EC key signs the handshake, it never enciphers a key (RFC 5480 §3).
    extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
  ];
  // Consul's sets, in its order: a client agent serves its HTTPS API with its certificate too.
  const purposes = options.extendedKeyUsages ?? { server: [id_kp_serverAuth, id_kp_clientAuth], client: [id_kp_clientAuth, id_kp_serverAuth], cli: [] }[options.kind];
  if (purposes.length > 0) extensions.push(extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([...purposes])));
  extensions.push(extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdentifier(publicKey))));
  if (ca.keyId !== undefined) {
    extensions.push(extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ca.keyId) })));
  }
  extensions.push(extension(id_ce_subjectAltName, false, new SubjectAlternativeName(sans)));

  const certPem = signCertificate({ serial: randomSerial(), issuer: ca.subject, subject: nameWithCommonName(name), validity, publicKey, extensions }, ca.privateKey);
  // As Consul's tlsutil.Verify after GenerateCert: never hand out a certificate the CA does not vouch for.
  const made = new X509Certificate(certPem);
  if (!made.checkIssued(ca.certificate) || !made.verify(ca.certificate.publicKey)) {
    throw new CaError('the new certificate does not verify against the CA');
  }
  return { certPem, keyPem: exportKey(privateKey) };
}

interface IssuingCa {
  readonly certificate: X509Certificate;
  readonly subject: Name;
  readonly keyId: ArrayBuffer | undefined;
  readonly privateKey: KeyObject;
}

function readCa(ca: CertificateAndKey): IssuingCa {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(ca.certPem);
  } catch (err) {
    throw new CaError(`the CA certificate is not a PEM certificate (${(err as Error).message})`);
  }
  if (!certificate.ca) throw new CaError(`the CA certificate (${certificate.subject.replace(/\n/g, ', ')}) is not a CA: it lacks basicConstraints CA:TRUE`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(ca.keyPem);
  } catch (err) {
    throw new CaError(`the CA key is not a readable private key (${(err as Error).message})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) throw new CaError('the CA key does not belong to the CA certificate');
  signatureAlgorithm(privateKey); // refuses a key type we cannot sign with, before any work
  const parsed = AsnConvert.parse(certificate.raw, Certificate).tbsCertificate;
  const skid = parsed.extensions?.find((ext) => ext.extnID === id_ce_subjectKeyIdentifier);
  // The issuer's own key identifier, whichever way it was computed (openssl's is a SHA-1).
  const keyId = skid === undefined ? undefined : AsnConvert.parse(skid.extnValue, SubjectKeyIdentifier).buffer;
  return { certificate, subject: parsed.subject, keyId, privateKey };
}

interface Unsigned {
  readonly serial: ArrayBuffer;
  readonly issuer: Name;
  readonly subject: Name;
  readonly validity: Validity;
  readonly publicKey: KeyObject;
  readonly extensions: Extension[];
}

function signCertificate(unsigned: Unsigned, signer: KeyObject): string {
  const { algorithm, hash } = signatureAlgorithm(signer);
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: unsigned.serial,
    signature: algorithm,
    issuer: unsigned.issuer,
    validity: unsigned.validity,
    subject: unsigned.subject,
    subjectPublicKeyInfo: AsnConvert.parse(unsigned.publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
    extensions: new Extensions(unsigned.extensions),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = sign(hash, tbsDer, { key: signer, dsaEncoding: 'der' });
  const der = AsnConvert.serialize(new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: toArrayBuffer(signature) }));
  // Parsing it back with Node's (OpenSSL's) reader checks the encoding; toString() is the PEM.
  return new X509Certificate(Buffer.from(der)).toString();
}

/** The signature algorithm for the CA's key: ECDSA with the curve's hash, as Go picks, or RSA with SHA-256. */
function signatureAlgorithm(key: KeyObject): { algorithm: AlgorithmIdentifier; hash: string } {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  // ECDSA identifiers carry no parameters (RFC 5758 §3.2); RSA's carry NULL (RFC 4055 §5).
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1') return { algorithm: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }), hash: 'sha256' };
  if (key.asymmetricKeyType === 'ec' && curve === 'secp384r1') return { algorithm: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.3' }), hash: 'sha384' };
  if (key.asymmetricKeyType === 'rsa') return { algorithm: new AlgorithmIdentifier({ algorithm: '1.2.840.113549.1.1.11', parameters: null }), hash: 'sha256' };
  throw new CaError(`the CA key is ${key.asymmetricKeyType}${curve ? ` (${curve})` : ''}: use an EC P-256, EC P-384 or RSA key`);
}

function newKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/** SEC1 `EC PRIVATE KEY`, as Consul writes its keys (x509.MarshalECPrivateKey). */
function exportKey(privateKey: KeyObject): string {
  return privateKey.export({ type: 'sec1', format: 'pem' }) as string;
}

/** Consul's keyID: the SHA-256 of the DER public key (RFC 5280 §4.2.1.2 allows any unique value). */
function keyIdentifier(publicKey: KeyObject): ArrayBuffer {
  return toArrayBuffer(createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest());
}

/** A positive DER INTEGER below 2^128, as Consul's GenerateSerialNumber. */
function randomSerial(): ArrayBuffer {
  let bytes = randomBytes(16);
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  return toArrayBuffer(bytes[0] >= 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : bytes);
}

function nameWithCommonName(commonName: string): Name {
  return new Name([new RelativeDistinguishedName([new AttributeTypeAndValue({ type: ID_CE_NAME, value: new AttributeValue({ utf8String: commonName }) })])]);
}

function validityOf(options: { days?: number; notBefore?: Date; notAfter?: Date }, defaultDays: number): Validity {
  const days = options.days ?? defaultDays;
  if (!Number.isSafeInteger(days) || days < 1) throw new CertificateError(`days must be a whole number of days, at least 1 (got ${days})`);
  const now = Date.now();
  const notAfterGiven = options.notAfter?.getTime();
  const notBefore = options.notBefore?.getTime() ?? (notAfterGiven !== undefined && notAfterGiven <= now ? notAfterGiven - days * DAY_MS : now);
  const notAfter = notAfterGiven ?? notBefore + days * DAY_MS;
  if (Number.isNaN(notBefore) || Number.isNaN(notAfter)) throw new CertificateError('notBefore and notAfter must be valid dates');
  if (notAfter <= notBefore) throw new CertificateError(`notAfter (${new Date(notAfter).toISOString()}) must be later than notBefore (${new Date(notBefore).toISOString()})`);
  return new Validity({ notBefore: new Date(notBefore), notAfter: new Date(notAfter) });
}

/** An IP SAN: IPv4 (an IPv4-mapped IPv6 address too, as Go writes it) or IPv6. */
function ipAddress(text: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  const ip = mapped === null ? text : mapped[1];
  // isIP takes a zone (`fe80::1%eth0`), which a certificate cannot carry.
  if (isIP(ip) === 0 || ip.includes('%')) throw new CertificateError(`"${text}" is not an IP address`);
  return ip;
}

function extension(extnID: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
