import { Metadata, Server, ServerCredentials, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { CertificateAndKey, createCa, createCertificate } from '../../cli/tls/make-certificates';
import { TlsFileOptions, makeCertDir, writeTlsFiles } from '../../test/harness/tls';
import { FederationServiceServer, FederationServiceService } from '../gen/consulate/router/v1/federation';
import { CLIENT_AUTH, loadTlsMaterial } from '../lib/tls';
import { DATACENTER_METADATA, PeerClients } from './peer-clients';

const DAY_MS = 86_400_000;
/** Generous: the machine is shared; a refusal comes back as soon as the handshake fails. */
const CALL_TIMEOUT_MS = 10_000;
jest.setTimeout(30_000);

// The client side of 8300: a router of dc1 dialling another router checks what the server
// presents, as Consul's verify_outgoing + verify_server_hostname do (reference/reliability.md §4.1;
// CVE-2019-9764: hostname verification silently skipped; §6.4 S1 "server.dc2 when dc1 expected",
// "client cert posing as server"). Each fake router below is an in-process TLS gRPC server that
// answers Ping with whatever certificate it is given:
//
//   PeerClients of dc1 ──mTLS──▶ fake router (server.dc2 / server.dc3 / client.dc2 / other CA / expired)
describe('PeerClients: which servers a router accepts on 8300', () => {
  const dir = makeCertDir();
  const ca = createCa();
  const peers = new PeerClients(loadTlsMaterial(writeTlsFiles(dir, 'dc1-router', ca, { datacenter: 'dc1' })), 'dc1', trace.getTracer('test'));
  const servers: Server[] = [];

  afterAll(async () => {
    peers.close();
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.tryShutdown(() => resolve()))));
  });

  /** A fake router presenting a certificate of `issuer`, requiring a client certificate of our CA. */
  async function fakeRouter(name: string, issuer: CertificateAndKey, options: TlsFileOptions): Promise<{ address: string; calls: Metadata[] }> {
    const pair = createCertificate({ ...options, ca: issuer, kind: options.kind ?? 'server' });
    const calls: Metadata[] = [];
    const server = new Server();
    const implementation: Pick<FederationServiceServer, 'ping'> = {
      ping(call, callback) {
        calls.push(call.metadata);
        callback(null, { node: name, datacenter: options.datacenter });
      },
    };
    server.addService(FederationServiceService, implementation as FederationServiceServer);
    const credentials = ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ private_key: Buffer.from(pair.keyPem), cert_chain: Buffer.from(pair.certPem) }], true);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, bound) => (err ? reject(err) : resolve(bound))));
    servers.push(server);
    return { address: `127.0.0.1:${port}`, calls };
  }

  /**
   * Ping through PeerClients: as a forwarded request does when `datacenter` is given (the server
   * must be of it), as gossip does otherwise (any router of our CA).
   */
  function ping(address: string, datacenter?: string): Promise<{ ok: true; node: string } | { ok: false; code: GrpcStatus; details: string }> {
    const client = datacenter === undefined ? peers.gossip(address) : peers.forwarding(address, datacenter);
    return new Promise((resolve) => {
      client.ping({}, peers.metadata(), { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (err: ServiceError | null, answer) => {
        resolve(err === null ? { ok: true, node: answer.node } : { ok: false, code: err.code, details: err.details });
      });
    });
  }

  test('a router of the expected datacenter is reached, and is told which datacenter calls', async () => {
    const dc2 = await fakeRouter('dc2-router', ca, { datacenter: 'dc2' });
    expect(await ping(dc2.address, 'dc2')).toEqual({ ok: true, node: 'dc2-router' });
    expect(await ping(dc2.address)).toEqual({ ok: true, node: 'dc2-router' });
    expect(dc2.calls.map((metadata) => metadata.get(DATACENTER_METADATA))).toEqual([['dc1'], ['dc1']]);
  });

  test('a router of another datacenter than the one expected is refused (server.dc3 when dc2 expected)', async () => {
    const dc3 = await fakeRouter('dc3-router', ca, { datacenter: 'dc3' });
    expect(await ping(dc3.address, 'dc2')).toMatchObject({ ok: false, code: GrpcStatus.UNAVAILABLE, details: expect.stringMatching(/server\.dc2\.consulate\. is not in the cert's altnames: DNS:server\.dc3\.consulate/) });
    expect(dc3.calls).toHaveLength(0);
    // Gossip dials by address, before the datacenter is known: any router of our CA will do.
    expect(await ping(dc3.address)).toEqual({ ok: true, node: 'dc3-router' });
  });

  test.each<[string, () => CertificateAndKey, TlsFileOptions, RegExp, RegExp]>([
    ["a client certificate of our CA posing as dc2's router (CVE-2019-9764)", () => ca, { datacenter: 'dc2', kind: 'client' }, /is not in the cert's altnames: DNS:client\.dc2\.consulate/, /not a router's/],
    ['a dc2 router certificate from another CA', () => createCa(), { datacenter: 'dc2' }, /self[- ]signed|unable to (get|verify)/i, /self[- ]signed|unable to (get|verify)/i],
    ['an expired dc2 router certificate of our CA', () => ca, { datacenter: 'dc2', notAfter: new Date(Date.now() - DAY_MS) }, /certificate has expired/, /certificate has expired/],
    // OpenSSL checks a server's extended key usage on the client side (not a client's on ours: tls-listener.ts does).
    ['a dc2 router certificate of our CA for client authentication only', () => ca, { datacenter: 'dc2', extendedKeyUsages: [CLIENT_AUTH] }, /unsuitable certificate purpose/, /unsuitable certificate purpose/],
  ])('%s is refused, by forwarding (dc2 expected) and by gossip (any router)', async (name, issuer, options, expectingDc2, expectingAny) => {
    const server = await fakeRouter(name.replace(/\W+/g, '-'), issuer(), options);
    expect(await ping(server.address, 'dc2')).toMatchObject({ ok: false, code: GrpcStatus.UNAVAILABLE, details: expect.stringMatching(expectingDc2) });
    expect(await ping(server.address)).toMatchObject({ ok: false, code: GrpcStatus.UNAVAILABLE, details: expect.stringMatching(expectingAny) });
    expect(server.calls).toHaveLength(0);
  });
});
