/**
 * The TLS matrix on 8300 (reference/reliability.md §6.4 S1): the one port that crosses
 * datacenters speaks mutual TLS with router certificates of our CA only, as Consul's servers do
 * with verify_incoming and verify_server_hostname (§4.1; CVE-2019-9764 and CVE-2021-37219 in §4.7).
 * Each bad client is refused, its call fails, the router logs exactly one refusal that names the
 * reason, and nothing it sent is served: its Forward, a PUT of the KV key `secret`, never reaches
 * dc1's catalog. A dc2 router's own certificate, claiming dc2, is the positive control: the same
 * PUT goes through, which shows the observable would have caught a leak.
 *
 *   bad client ──8300 (mTLS)──▶ router-1 of dc1 ──HTTP──▶ catalog of dc1 (KV `secret`)
 */
import { readFileSync } from 'node:fs';
import { connect as http2Connect, constants as http2Constants } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

import { ChannelCredentials, Metadata, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';

import { CertificateAndKey, createCa, createCertificate } from '../../cli/tls/make-certificates';
import { HANDSHAKE_TIMEOUT_MS } from '../../services/federation-router/tls-listener';
import { SERVER_AUTH } from '../../services/lib/tls';
import { FederationServiceClient } from '../../services/gen/consulate/router/v1/federation';
import { FederatedDatacenter, startDatacenter } from '../harness/federation';
import { RoleProcess, eventually, logRecords, stopAll, vmKib } from '../harness/processes';
import { RouterTls, makeRouterTls } from '../harness/tls';

const DAY_MS = 86_400_000;
/** Generous: real processes on 2 shared cores. The matrix asserts outcomes, never timings. */
const CALL_TIMEOUT_MS = 15_000;
const LOG_TIMEOUT_MS = 20_000;
const SECRET = 'original';

let tls: RouterTls;
let dc1: FederatedDatacenter;
let router: RoleProcess;
let routerAddress: string;
/** The KV entry of `secret` as dc1's catalog holds it before the matrix. */
let secretBefore: KvEntry;

interface KvEntry {
  readonly Key: string;
  readonly Value: string;
  readonly ModifyIndex: number;
}

beforeAll(async () => {
  tls = makeRouterTls(['dc1', 'dc2']);
  dc1 = await startDatacenter('dc1', tls, { routers: 1 });
  router = dc1.routers[0];
  routerAddress = `${router.address}:8300`;
  const put = await fetch(`${dc1.httpAddr}/v1/kv/secret`, { method: 'PUT', body: SECRET });
  expect(await put.text()).toBe('true');
  secretBefore = await readSecret();
}, 60_000);

afterAll(() => stopAll());

async function readSecret(): Promise<KvEntry> {
  const response = await fetch(`${dc1.httpAddr}/v1/kv/secret`);
  expect(response.status).toBe(200);
  const [entry] = (await response.json()) as KvEntry[];
  return entry;
}

/** Router certificates a test makes for itself: `kind` server unless said otherwise. */
function certificate(datacenter: string, options: { ca?: CertificateAndKey; kind?: 'server' | 'client'; notBefore?: Date; notAfter?: Date; extendedKeyUsages?: string[] } = {}): CertificateAndKey {
  return createCertificate({ ca: options.ca ?? tls.ca, kind: options.kind ?? 'server', datacenter, notBefore: options.notBefore, notAfter: options.notAfter, extendedKeyUsages: options.extendedKeyUsages });
}

/** TLS to 8300 trusting our CA and presenting `pair`, or no certificate at all. */
function mutualTls(pair?: CertificateAndKey): ChannelCredentials {
  const ca = Buffer.from(tls.ca.certPem);
  return pair === undefined ? credentials.createSsl(ca) : credentials.createSsl(ca, Buffer.from(pair.keyPem), Buffer.from(pair.certPem));
}

/**
 * A client of router-1's 8300 as peer-clients.ts makes one (it asks for `server.dc1.consulate`),
 * but that tries one connection only: no transparent retry and no reconnect before it is closed,
 * so one refused call is one refused connection and one log line.
 */
function federationClient(creds: ChannelCredentials): FederationServiceClient {
  return new FederationServiceClient(routerAddress, creds, {
    'grpc.ssl_target_name_override': 'server.dc1.consulate',
    'grpc.default_authority': 'server.dc1.consulate',
    'grpc.enable_retries': 0,
    'grpc.initial_reconnect_backoff_ms': 120_000,
    'grpc.max_reconnect_backoff_ms': 120_000,
  });
}

function claiming(datacenter: string | undefined): Metadata {
  const metadata = new Metadata();
  if (datacenter !== undefined) metadata.set('consulate-datacenter', datacenter);
  return metadata;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; code: GrpcStatus; details: string };

function outcome<T>(call: (callback: (err: ServiceError | null, value: T) => void) => void): Promise<Outcome<T>> {
  return new Promise((resolve) => call((err, value) => resolve(err === null ? { ok: true, value } : { ok: false, code: err.code, details: err.details })));
}

const deadline = (): { deadline: Date } => ({ deadline: new Date(Date.now() + CALL_TIMEOUT_MS) });

/** A dc2 router asking dc1 to store `value` under `secret`: what no bad client may get served. */
function forwardPut(client: FederationServiceClient, metadata: Metadata, value: string) {
  const forward = { datacenter: 'dc1', request: { method: 'PUT', path: '/v1/kv/secret', rawQuery: '', headers: { 'content-type': 'text/plain' }, body: Buffer.from(value) } };
  return outcome<{ forward?: { response?: { status: number; body: Buffer }; path: string[] } }>((callback) => client.forward({ forward, visited: ['dc2'] }, metadata, deadline(), callback));
}

function ping(client: FederationServiceClient, metadata: Metadata) {
  return outcome<{ node: string; datacenter: string }>((callback) => client.ping({}, metadata, deadline(), callback));
}

/** The router's refusal lines (connections and calls), in order. */
function refusals(): string[] {
  return logRecords(router)
    .map((record) => String(record.msg ?? ''))
    .filter((msg) => msg.startsWith('refused a connection on 8300 from ') || msg.startsWith('refused a call from '));
}

/** Runs `act`, then waits for the one refusal it causes and returns it. */
async function refusalOf(act: () => Promise<void>): Promise<string> {
  const before = refusals().length;
  await act();
  await eventually('the router to log the refusal', () => refusals().length > before || undefined, LOG_TIMEOUT_MS);
  const added = refusals().slice(before);
  expect(added).toHaveLength(1);
  return added[0];
}

async function expectSecretUntouched(): Promise<void> {
  const now = await readSecret();
  expect(Buffer.from(now.Value, 'base64').toString()).toBe(SECRET);
  expect(now.ModifyIndex).toBe(secretBefore.ModifyIndex);
}

// The gRPC clients a bad router would use: refused at the handshake (UNAVAILABLE, the connection
// is closed after it) or, once a router's certificate is accepted, per call (PERMISSION_DENIED).
const handshakeRefusals: ReadonlyArray<{ name: string; creds: () => ChannelCredentials; reason: RegExp }> = [
  { name: '(a) no client certificate: TLS with our CA only', creds: () => mutualTls(), reason: /: no client certificate: port 8300 requires mutual TLS$/ },
  { name: '(b) a dc2 router certificate from another CA', creds: () => mutualTls(certificate('dc2', { ca: createCa() })), reason: /: client certificate "CN=server\.dc2\.consulate" was not issued by our CA$/ },
  { name: '(c) an expired dc2 router certificate from our CA', creds: () => mutualTls(certificate('dc2', { notAfter: new Date(Date.now() - DAY_MS) })), reason: /: client certificate expired on / },
  { name: 'a dc2 router certificate from our CA not valid yet', creds: () => mutualTls(certificate('dc2', { notBefore: new Date(Date.now() + DAY_MS) })), reason: /: client certificate is not valid until / },
  { name: "(d) a client (not a router's) certificate from our CA", creds: () => mutualTls(certificate('dc2', { kind: 'client' })), reason: /: client certificate is not a router's: no server\.<dc>\.consulate name \(DNS:client\.dc2\.consulate, / },
  {
    name: '(d) a dc2 router certificate of our CA for server authentication only',
    creds: () => mutualTls(certificate('dc2', { extendedKeyUsages: [SERVER_AUTH] })),
    reason: /: client certificate is not for client authentication \(extended key usage 1\.3\.6\.1\.5\.5\.7\.3\.1\)$/,
  },
  { name: '(f) plaintext gRPC', creds: () => credentials.createInsecure(), reason: /: plaintext connection: port 8300 accepts mutual TLS only$/ },
];

describe('8300 TLS matrix: every bad client is refused, logged with its reason, and served nothing', () => {
  test.each(handshakeRefusals)('$name', async ({ creds, reason }) => {
    const client = federationClient(creds());
    let answer: Awaited<ReturnType<typeof forwardPut>> | undefined;
    const refusal = await refusalOf(async () => {
      answer = await forwardPut(client, claiming('dc2'), 'written by a refused client');
    });
    client.close();
    expect(answer).toMatchObject({ ok: false, code: GrpcStatus.UNAVAILABLE });
    expect(refusal).toMatch(/^refused a connection on 8300 from 127\.[0-9.]+:\d+: /);
    expect(refusal).toMatch(reason);
    await expectSecretUntouched();
  });

  test('(e) a valid dc2 router certificate claiming another datacenter: every RPC PERMISSION_DENIED', async () => {
    // One accepted connection; the check is per call (Consul's verify_server_hostname on the caller).
    const client = federationClient(mutualTls(certificate('dc2')));
    const calls: ReadonlyArray<[string, string | undefined, () => Promise<Outcome<unknown>>]> = [
      ['Forward', 'dc3', () => forwardPut(client, claiming('dc3'), 'written by dc2 posing as dc3')],
      ['Forward', 'dc1', () => forwardPut(client, claiming('dc1'), 'written by dc2 posing as dc1')],
      ['Forward', undefined, () => forwardPut(client, claiming(undefined), 'written by dc2 claiming nothing')],
      ['Ping', 'dc3', () => ping(client, claiming('dc3'))],
      ['Packet', 'dc3', () => outcome((callback) => client.packet({ pool: 'wan', from: '127.0.0.1:8300', packet: Buffer.from([1, 2, 3]) }, claiming('dc3'), deadline(), callback))],
      ['PushPull', 'dc3', () => outcome((callback) => client.pushPull({ pool: 'wan', from: '127.0.0.1:8300', frame: Buffer.from([1, 2, 3]) }, claiming('dc3'), deadline(), callback))],
    ];
    try {
      for (const [method, claimed, call] of calls) {
        let answer: Outcome<unknown> | undefined;
        const refusal = await refusalOf(async () => {
          answer = await call();
        });
        expect({ method, answer }).toMatchObject({ method, answer: { ok: false, code: GrpcStatus.PERMISSION_DENIED, details: `datacenter "${claimed ?? ''}" does not match the certificate's datacenter "dc2"` } });
        expect(refusal).toMatch(new RegExp(`^refused a call from 127\\.[0-9.]+:\\d+: it claims datacenter "${claimed ?? ''}" but its certificate is for "dc2"$`));
      }
    } finally {
      client.close();
    }
    await expectSecretUntouched();
  });

  test('(i) a valid router certificate of dc3, a datacenter with no area with dc1 and not in its WAN pool: Forward PERMISSION_DENIED (areas keep datacenters apart)', async () => {
    const client = federationClient(mutualTls(certificate('dc3')));
    try {
      const answer = await forwardPut(client, claiming('dc3'), 'written by dc3, not adjacent');
      expect(answer).toEqual({ ok: false, code: GrpcStatus.PERMISSION_DENIED, details: 'datacenter "dc3" is not adjacent to "dc1": no area with it and not in the WAN pool' });
    } finally {
      client.close();
    }
    await eventually('the router to log the refusal', () => logRecords(router).some((record) => String(record.msg).startsWith('refused a request from datacenter dc3: it has no area with dc1')) || undefined, LOG_TIMEOUT_MS);
    await expectSecretUntouched();
  });

  test.each([
    { name: '(g) an HTTP/1.1 request over plain TCP', bytes: 'PUT /v1/kv/secret HTTP/1.1\r\nHost: server.dc1.consulate\r\nContent-Length: 3\r\n\r\nraw' },
    { name: '(g) an HTTP CONNECT (proxy) request over plain TCP', bytes: 'CONNECT server.dc1.consulate:8300 HTTP/1.1\r\nHost: server.dc1.consulate:8300\r\n\r\n' },
    { name: '(g) raw bytes over plain TCP', bytes: 'not a TLS record, not anything at all\n' },
  ])('$name', async ({ bytes }) => {
    let received = Buffer.alloc(0);
    const refusal = await refusalOf(
      () =>
        new Promise<void>((resolve, reject) => {
          const socket = netConnect({ host: router.address, port: 8300 }, () => socket.write(bytes));
          socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
          socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
          // The router closes the connection: there is nothing else to wait for.
          socket.on('close', () => resolve());
        }),
    );
    // At most a TLS alert (content type 21), never an HTTP answer.
    expect(received.length === 0 || received[0] === 21).toBe(true);
    expect(refusal).toMatch(/^refused a connection on 8300 from 127\.[0-9.]+:\d+: plaintext connection: port 8300 accepts mutual TLS only$/);
    await expectSecretUntouched();
  });

  test('a TCP connection that never starts a handshake: closed after the handshake timeout (rpc_handshake_timeout)', async () => {
    const refusal = await refusalOf(
      () =>
        new Promise<void>((resolve) => {
          const socket = netConnect({ host: router.address, port: 8300 });
          socket.on('error', () => undefined);
          socket.on('close', () => resolve());
        }),
    );
    expect(refusal).toMatch(new RegExp(`^refused a connection on 8300 from 127\\.[0-9.]+:\\d+: no TLS handshake within ${HANDSHAKE_TIMEOUT_MS / 1000}s$`));
    expect(HANDSHAKE_TIMEOUT_MS).toBe(5_000); // Consul's rpc_handshake_timeout
  });

  test('TLS 1.1 with a valid dc2 router certificate: refused at the handshake (tls_min_version tls12)', async () => {
    const pair = certificate('dc2');
    const refusal = await refusalOf(
      () =>
        new Promise<void>((resolve) => {
          const socket = tlsConnect({
            host: router.address,
            port: 8300,
            servername: 'server.dc1.consulate',
            ca: tls.ca.certPem,
            cert: pair.certPem,
            key: pair.keyPem,
            minVersion: 'TLSv1',
            maxVersion: 'TLSv1.1',
            // OpenSSL 3 allows TLS < 1.2 only at security level 0; the point is that the router does not.
            ciphers: 'DEFAULT:@SECLEVEL=0',
          });
          socket.on('secureConnect', () => socket.destroy(new Error('the router accepted TLS 1.1')));
          socket.on('error', () => undefined);
          socket.on('close', () => resolve());
        }),
    );
    expect(refusal).toMatch(/^refused a connection on 8300 from 127\.[0-9.]+:\d+: TLS handshake failed: .*unsupported protocol/i);
    await expectSecretUntouched();
  });
});

/**
 * reliability.md S8's 1,000 idle connections, where this process may open that many files (its
 * soft limit comes with the machine); 300 where it may not, which shows the same cap.
 */
const FLOOD_CONNECTIONS = openFilesLimit() >= 2_000 ? 1_000 : 300;

function openFilesLimit(): number {
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return match === null ? 0 : match[1] === 'unlimited' ? Infinity : Number(match[1]);
}

describe('8300 under a connection flood (rpc_max_conns_per_client, rpc_handshake_timeout)', () => {
  test(`${FLOOD_CONNECTIONS} idle connections from one address: 100 held, the rest refused, all closed by the handshake timeout; another router is served meanwhile`, async () => {
    const flooder = '127.0.0.77';
    const sockets = Array.from({ length: FLOOD_CONNECTIONS }, () => {
      const socket = netConnect({ host: router.address, port: 8300, localAddress: flooder });
      const entry = { socket, closed: false };
      socket.on('error', () => undefined);
      socket.on('close', () => (entry.closed = true));
      return entry;
    });
    try {
      // The router holds at most 100 of them open; the others are refused at once, with a log line.
      await eventually(`${FLOOD_CONNECTIONS - 100} flood connections refused`, () => sockets.filter((s) => s.closed).length >= FLOOD_CONNECTIONS - 100 || undefined, LOG_TIMEOUT_MS);
      expect(sockets.filter((s) => !s.closed).length).toBeLessThanOrEqual(100);
      const floodLines = () => logRecords(router).filter((record) => String(record.msg).startsWith(`refused connections on 8300 from ${flooder}: it already holds 100`));
      await eventually('the per-client refusal logged', () => floodLines().length > 0 || undefined, LOG_TIMEOUT_MS);
      // Once, not 200 times: a flood does not flood the log.
      expect(floodLines()).toHaveLength(1);
      // A router elsewhere is still served while the flood holds its 100.
      const client = federationClient(mutualTls(certificate('dc2')));
      try {
        expect(await ping(client, claiming('dc2'))).toEqual({ ok: true, value: { node: 'router-1', datacenter: 'dc1' } });
      } finally {
        client.close();
      }
      // None of them ever handshakes: the router closes every one at its handshake timeout.
      await eventually('every flood connection closed', () => sockets.every((s) => s.closed) || undefined, 60_000);
    } finally {
      for (const { socket } of sockets) socket.destroy();
    }
  });
});

describe('8300 under an HTTP/2 rapid reset (CVE-2023-44487, reliability.md S8)', () => {
  /** CI's length; S8 asks for 30 s, which `RAPID_RESET_MS=30000` runs. */
  const FLOOD_MS = Number(process.env.RAPID_RESET_MS ?? 5_000);

  test(`a trusted peer opening and resetting streams as fast as it can for ${FLOOD_MS / 1000} s, reconnecting whenever it is sent away: the router stays up and another router's Pings keep succeeding`, async () => {
    const pair = certificate('dc2');
    const legit = federationClient(mutualTls(certificate('dc2')));
    const pings: { ok: boolean; ms: number }[] = [];
    let flooding = true;
    const pinger = (async () => {
      while (flooding) {
        const started = performance.now();
        const answer = await ping(legit, claiming('dc2'));
        pings.push({ ok: answer.ok, ms: performance.now() - started });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const rssBefore = vmKib(router.pid, 'VmRSS');
    const floodStarted = Date.now();
    const flood = { sessions: 0, stalled: 0, reset: 0, goaways: new Map<number, number>() };
    while (Date.now() - floodStarted < FLOOD_MS && flood.sessions < 10_000) {
      await floodOneSession(pair, floodStarted + FLOOD_MS, flood);
    }
    const floodMs = Date.now() - floodStarted;
    flooding = false;
    await pinger;
    legit.close();
    const latencies = pings.map((p) => p.ms).sort((a, b) => a - b);
    const succeeded = pings.filter((p) => p.ok).length;
    console.log(
      `rapid reset: ${flood.reset} streams opened and reset at once in ${floodMs} ms (${Math.round(flood.reset / (floodMs / 1000))}/s) over ${flood.sessions} connections (${flood.stalled} of them stalled); ` +
        `GOAWAY codes the router sent: ${JSON.stringify(Object.fromEntries(flood.goaways))}; ` +
        `another router's Pings meanwhile: ${succeeded} of ${pings.length} succeeded, p99 ${latencies[Math.floor(latencies.length * 0.99)]?.toFixed(0)} ms (S8: < 500); ` +
        `router RSS ${rssBefore} → ${vmKib(router.pid, 'VmRSS')} KiB, peak ${vmKib(router.pid, 'VmHWM')} KiB`,
    );
    expect(router.child.exitCode).toBeNull();
    expect(flood.reset).toBeGreaterThan(1_000);
    expect(pings.length).toBeGreaterThan(0);
    expect(succeeded / pings.length).toBeGreaterThanOrEqual(0.99);
    // And the router still serves a fresh client.
    const after = federationClient(mutualTls(certificate('dc2')));
    try {
      expect(await ping(after, claiming('dc2'))).toEqual({ ok: true, value: { node: 'router-1', datacenter: 'dc1' } });
    } finally {
      after.close();
    }
  });
});

/**
 * One HTTP/2 connection to router-1's 8300 (from its own address: the connection cap is per client
 * address) that opens Ping streams and resets each at once (HEADERS and RST_STREAM in one write),
 * at most 100 in flight, until the router sends it away or the connection stalls, or `until`.
 */
async function floodOneSession(pair: CertificateAndKey, until: number, flood: { sessions: number; stalled: number; reset: number; goaways: Map<number, number> }): Promise<void> {
  const session = http2Connect(`https://${routerAddress}`, {
    createConnection: () =>
      tlsConnect({ socket: netConnect({ host: router.address, port: 8300, localAddress: '127.0.0.78' }), ca: tls.ca.certPem, cert: pair.certPem, key: pair.keyPem, servername: 'server.dc1.consulate', ALPNProtocols: ['h2'] }),
  });
  flood.sessions++;
  session.on('goaway', (code: number) => flood.goaways.set(code, (flood.goaways.get(code) ?? 0) + 1));
  session.on('error', () => undefined);
  const usable = () => !session.destroyed && !session.closed;
  const connected = await new Promise<boolean>((resolve) => {
    session.once('connect', () => resolve(true));
    session.once('close', () => resolve(false));
  });
  let inFlight = 0;
  let lastProgress = Date.now();
  // A connection that stops making progress (no stream closes for a second) is dropped for a new
  // one. Each stalls after about 58,000 streams in this client's own nghttp2 (its outbound queue
  // holds the last 100, its socket nothing), not because the router stopped reading.
  while (connected && usable() && Date.now() < until && Date.now() - lastProgress < 1_000) {
    while (inFlight < 100 && usable()) {
      const stream = session.request({ ':method': 'POST', ':path': '/consulate.router.v1.FederationService/Ping', 'content-type': 'application/grpc', te: 'trailers', 'consulate-datacenter': 'dc2' });
      inFlight++;
      stream.on('error', () => undefined);
      stream.once('close', () => {
        inFlight--;
        flood.reset++;
        lastProgress = Date.now();
      });
      stream.close(http2Constants.NGHTTP2_CANCEL);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (usable() && Date.now() - lastProgress >= 1_000) flood.stalled++;
  session.destroy();
}

describe('8300 positive control', () => {
  test("(h) a dc2 router's certificate claiming dc2, dc2 the peer of an area of dc1, is served: Ping, and the Forward every bad client was refused", async () => {
    const refusedBefore = refusals().length;
    const created = await fetch(`${dc1.httpAddr}/v1/operator/area`, { method: 'POST', body: JSON.stringify({ PeerDatacenter: 'dc2' }) });
    expect(created.status).toBe(200);
    const client = federationClient(mutualTls(certificate('dc2')));
    try {
      expect(await ping(client, claiming('dc2'))).toEqual({ ok: true, value: { node: 'router-1', datacenter: 'dc1' } });
      // The router takes the new area from its mirror of the store within moments.
      const answer = await eventually(
        'dc1 to serve dc2 once the area exists',
        async () => {
          const attempt = await forwardPut(client, claiming('dc2'), 'written by dc2');
          return attempt.ok || attempt.code !== GrpcStatus.PERMISSION_DENIED ? attempt : undefined;
        },
        LOG_TIMEOUT_MS,
      );
      expect(answer).toMatchObject({ ok: true, value: { forward: { path: ['dc1'], response: { status: 200 } } } });
      if (answer.ok) expect(answer.value.forward?.response?.body.toString()).toBe('true');
    } finally {
      client.close();
    }
    const after = await readSecret();
    expect(Buffer.from(after.Value, 'base64').toString()).toBe('written by dc2');
    expect(after.ModifyIndex).toBeGreaterThan(secretBefore.ModifyIndex);
    expect(refusals().slice(refusedBefore)).toEqual([]);
  });
});
