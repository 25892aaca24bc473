/**
 * The floor under a forwarded read: its three hops (dc1 catalog → dc1 router, router → router on
 * mutual TLS, dc2 router → dc2 catalog) and back, with none of the work the roles do, two ways:
 *
 *   - `grpc-js streams`: one bidirectional grpc-js stream per hop, raw bytes each way; the relays
 *     write each message on as it comes. What grpc-js and the kernel cost, nothing of ours.
 *   - `Calls streams`: the same hops as unary calls on our Calls streams (services/lib/call-stream.ts,
 *     RoleGrpcServer, RoleClients; a ForwardedHttpService.Serve each, its bytes passed on): what
 *     our transport adds, without routing, HTTP or the catalog.
 *
 * Four processes on their own 127.0.0.x addresses (this one is the client), the message sizes of
 * a forwarded `GET /v1/catalog/service/web?stale` (120 bytes out, 460 back), sequential calls;
 * p50 and the CPU each process spends per call (utime + stime from /proc), the two ways taking
 * turns. `make bench-federation` measures the real read on the same machine: its gap above these
 * floors is the roles' own work.
 *
 *   node dist/bench/federation/floor.js [--requests=10000] [--warmup=5000] [--rounds=2]
 */
import { ChildProcess, fork } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import { ChannelCredentials, Client, Metadata, Server, ServerCredentials, ServerDuplexStream, credentials } from '@grpc/grpc-js';

import { createCa, createCertificate } from '../../cli/tls/make-certificates';
import { ForwardedHttpServiceClient, ForwardedHttpServiceService, protobufFileName } from '../../services/gen/consulate/catalog/v1/forwarded';
import { encodedMethod } from '../../services/federation-router/forward-wire';
import { StreamedMethod, encodedUnary } from '../../services/lib/call-stream';
import { RoleClients } from '../../services/lib/grpc-client';
import { RoleGrpcServer } from '../../services/lib/grpc-server';
import { TRACING_OFF } from '../../services/lib/grpc-tracing';
import { createLogger } from '../../services/lib/log';
import { REPO } from './federated-pair';

const VARIANTS = ['grpc-js streams', 'Calls streams'] as const;
type Variant = (typeof VARIANTS)[number];
/** B relays plaintext in, TLS out; C TLS in, plaintext out; D answers. */
const HOSTS = { B: '127.0.0.2', C: '127.0.0.3', D: '127.0.0.4' } as const;
type Hop = keyof typeof HOSTS;
const STREAM_PATH = '/consulate.bench.v1.Floor/Relay';
const REQUEST = Buffer.alloc(120, 0x42);
const ANSWER = Buffer.alloc(460, 0x41);
const SERVE = encodedMethod(ForwardedHttpServiceService.serve);
const same = (bytes: Buffer): Buffer => bytes;
/** As the roles run in every benchmark: tracing off (OTEL_SDK_DISABLED, grpc-tracing.ts). */
const tracer = TRACING_OFF;
/** The dc2 router's name, as peer-clients.ts asks for it over TLS. */
const TLS_NAME = { 'grpc.ssl_target_name_override': 'server.dc2.consulate', 'grpc.default_authority': 'server.dc2.consulate' };

interface Tls {
  readonly server: ServerCredentials;
  readonly client: ChannelCredentials;
}

/** Sends a message and calls back with the answer. */
type Call = (message: Buffer, answered: (answer: Buffer) => void) => void;

// ---------------------------------------------------------------------------------------------
// One hop's two ends, each way

async function serveStream(host: string, creds: ServerCredentials, onMessage: Call): Promise<string> {
  const server = new Server();
  server.register(STREAM_PATH, (stream: ServerDuplexStream<Buffer, Buffer>) => stream.on('data', (m: Buffer) => onMessage(m, (a) => stream.write(a))), same, same, 'bidi');
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:0`, creds, (err, bound) => (err ? reject(err) : resolve(bound))));
  return `${host}:${port}`;
}

/** One stream, one call in flight at a time (the benchmark's calls are sequential). */
function streamTo(address: string, creds: ChannelCredentials, options: object = {}): Call {
  const stream = new Client(address, creds, options).makeBidiStreamRequest(STREAM_PATH, same, same, new Metadata());
  let waiting: ((answer: Buffer) => void) | undefined;
  stream.on('data', (answer: Buffer) => waiting?.(answer));
  stream.on('error', (err: Error) => console.error(`stream to ${address}: ${err.message}`));
  return (message, answered) => {
    waiting = answered;
    stream.write(message);
  };
}

async function serveCalls(host: string, creds: ServerCredentials | undefined, onMessage: Call): Promise<string> {
  const logger = createLogger({ role: 'catalog', datacenter: 'dc2', node: `floor-${host}`, level: 'warn' });
  const implementation = { serve: (call: { request: Buffer }, callback: (err: null, answer: Buffer) => void) => onMessage(call.request, (answer) => callback(null, answer)) };
  const server = new RoleGrpcServer({ logger, tracer, credentials: creds, services: [{ definition: { ...ForwardedHttpServiceService, serve: SERVE }, implementation, protoFile: protobufFileName, callStream: true } as never] });
  const address = await server.listen(host, 0);
  server.setServing(true);
  return address;
}

function callsTo(address: string, creds?: ChannelCredentials, channelOptions?: object): Call {
  const method = new StreamedMethod(new RoleClients(ForwardedHttpServiceClient, { tracer, credentials: creds, channelOptions }), SERVE, (client) => encodedUnary(client, SERVE), tracer).get(address);
  return (message, answered) =>
    void method(message, new Metadata(), { deadline: Date.now() + 10_000 }, (err, answer) => {
      if (err !== null) console.error(`call to ${address}: ${err.message}`);
      else answered(answer);
    });
}

/** A relay (B, C) or the answering end (D) of one variant; resolves with the address it serves on. */
async function startHop(variant: Variant, hop: Hop, next: string, tls: Tls): Promise<string> {
  const tlsIn = hop === 'C';
  const tlsOut = hop === 'B';
  if (variant === 'grpc-js streams') {
    const onward = hop === 'D' ? undefined : streamTo(next, tlsOut ? tls.client : credentials.createInsecure(), tlsOut ? TLS_NAME : {});
    return serveStream(HOSTS[hop], tlsIn ? tls.server : ServerCredentials.createInsecure(), onward ?? ((_m, answer) => answer(ANSWER)));
  }
  const onward = hop === 'D' ? undefined : callsTo(next, tlsOut ? tls.client : undefined, tlsOut ? TLS_NAME : undefined);
  return serveCalls(HOSTS[hop], tlsIn ? tls.server : undefined, onward ?? ((_m, answer) => answer(ANSWER)));
}

// ---------------------------------------------------------------------------------------------
// The benchmark

function tlsFrom(env: NodeJS.ProcessEnv): Tls {
  const { ca, pair } = JSON.parse(env.FLOOR_TLS!) as { ca: { certPem: string }; pair: { certPem: string; keyPem: string } };
  return {
    server: ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ private_key: Buffer.from(pair.keyPem), cert_chain: Buffer.from(pair.certPem) }], true),
    client: credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(pair.keyPem), Buffer.from(pair.certPem)),
  };
}

/** CPU time of a process so far, in µs. */
function cpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function arg(name: string, fallback: number): number {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = found === undefined ? fallback : Number(found.slice(name.length + 3));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  return value;
}

interface Measured {
  readonly variant: Variant;
  readonly round: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly cpuUsPerCall: Record<'client' | Hop, number>;
}

async function measure(variant: Variant, round: number, call: () => Promise<void>, pids: Record<Hop, number>, requests: number): Promise<Measured> {
  const hops = Object.keys(HOSTS) as Hop[];
  const before = { client: process.cpuUsage(), hops: hops.map((hop) => cpuUs(pids[hop])) };
  const latencies: number[] = [];
  for (let i = 0; i < requests; i++) {
    const start = performance.now();
    await call();
    latencies.push((performance.now() - start) * 1_000);
  }
  const client = process.cpuUsage(before.client);
  const perCall = (us: number) => Math.round(us / requests);
  latencies.sort((a, b) => a - b);
  return {
    variant,
    round,
    p50Us: Math.round(latencies[Math.floor(requests / 2)]),
    p90Us: Math.round(latencies[Math.floor(requests * 0.9)]),
    cpuUsPerCall: { client: perCall(client.user + client.system), ...(Object.fromEntries(hops.map((hop, i) => [hop, perCall(cpuUs(pids[hop]) - before.hops[i])])) as Record<Hop, number>) },
  };
}

async function main(): Promise<void> {
  const requests = arg('requests', 10_000);
  const warmup = arg('warmup', 5_000);
  const rounds = arg('rounds', 2);
  const ca = createCa();
  const env = { ...process.env, FLOOR_TLS: JSON.stringify({ ca, pair: createCertificate({ ca, kind: 'server', datacenter: 'dc2' }) }) };
  const children: ChildProcess[] = [];
  process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));
  const start = (variant: Variant, hop: Hop, next: string) => {
    const child = fork(__filename, ['--hop', variant, hop, next], { env, execArgv: [] });
    children.push(child);
    return new Promise<{ pid: number; address: string }>((resolve, reject) => {
      child.once('message', (address) => resolve({ pid: child.pid!, address: String(address) }));
      child.once('exit', (code) => reject(new Error(`${variant} ${hop} exited (${code}) before it listened`)));
    });
  };
  const calls = new Map<Variant, { call: () => Promise<void>; pids: Record<Hop, number> }>();
  for (const variant of VARIANTS) {
    const d = await start(variant, 'D', '');
    const c = await start(variant, 'C', d.address);
    const b = await start(variant, 'B', c.address);
    const first = variant === 'grpc-js streams' ? streamTo(b.address, credentials.createInsecure()) : callsTo(b.address);
    const call = () => new Promise<void>((resolve) => first(REQUEST, () => resolve()));
    for (let i = 0; i < warmup; i++) await call();
    calls.set(variant, { call, pids: { B: b.pid, C: c.pid, D: d.pid } });
  }
  const results: Measured[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const variant of round % 2 === 1 ? VARIANTS : [...VARIANTS].reverse()) {
      const { call, pids } = calls.get(variant)!;
      const result = await measure(variant, round, call, pids, requests);
      results.push(result);
      const cpu = result.cpuUsPerCall;
      console.log(`${variant.padEnd(16)} round ${round}: p50 ${result.p50Us} µs, p90 ${result.p90Us} µs; CPU per call: client ${cpu.client}, relay B ${cpu.B}, relay C ${cpu.C}, end D ${cpu.D} µs`);
    }
  }
  const out = join(REPO, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `federation-floor-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`);
  const machine = `${cpus().length} CPUs (${cpus()[0]?.model.trim()}), node ${process.version}`;
  writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), machine, requests, warmup, rounds, requestBytes: REQUEST.length, answerBytes: ANSWER.length, results }, null, 2) + '\n');
  console.log(`\nwritten: ${file}`);
}

if (process.argv[2] === '--hop') {
  const [variant, hop, next] = process.argv.slice(3) as [Variant, Hop, string];
  startHop(variant, hop, next, tlsFrom(process.env)).then(
    (address) => process.send!(address),
    (err: Error) => {
      console.error(`${variant} ${hop}: ${err.message}`);
      process.exit(1);
    },
  );
} else {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      console.error(`bench-federation floor failed: ${err.stack ?? err.message}`);
      process.exit(1);
    },
  );
}
