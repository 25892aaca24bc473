/**
 * Malformed and oversized messages at the federation router's gRPC ports
 * (reference/reliability.md §6.4 S5 and S6; CVE-2021-3121, CVE-2024-37168; the threat model's
 * "ill-formatted messages are discarded").
 *
 *   fuzzer ──8330 (plaintext, in-DC)───────────────▶ OperatorService, ForwardService ┐
 *   fuzzer ──8300 (mutual TLS, a dc2 router's cert,                                 ├─ router-1 of dc1
 *                  claiming dc2)──────────────────▶ FederationService               ┘
 *
 * Every payload goes out as raw bytes through grpc-js `makeUnaryRequest` with identity
 * serializers (as services/lib/health-probe.ts sends its hand-made bytes), so the router's own
 * decoders see exactly what fast-check made: random bytes, truncated messages and varints, huge
 * and negative length prefixes, wrong wire types, bad field numbers, deep group nesting, unknown
 * fields, valid messages with garbage after them, and (to the SWIM pools behind Packet and
 * PushPull) well-formed gossip that carries hostile addresses. One fixed seed per service: a
 * failing case is reproducible from the seed printed with the distribution.
 *
 * The same decoder the router runs classifies each payload here first (the generated one,
 * services/gen; for Forward, which a router passes on undecoded, its reader of the request's head,
 * forward-wire.ts), so the outcome can be asserted exactly: bytes that do not decode are refused by grpc-js with
 * INTERNAL "Error deserializing request"; bytes that do get an answer from the handler, never
 * UNKNOWN (a handler that threw); unknown fields change nothing; no call hangs (each has a
 * deadline, and only a blocking ListAreas/GetArea may reach it). Outcomes only, no timings: real
 * processes on 2 shared cores. Afterwards the router is the same process, alive, and answers.
 */

import { ChannelCredentials, Client, Metadata, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';
import fc from 'fast-check';

import { createCertificate } from '../../cli/tls/make-certificates';
import { UnaryAnswer, UnaryCall } from '../../services/gen/consulate/common/v1/call_stream';
import {
  FederationServiceCallsRequest,
  FederationServiceCallsResponse,
  FederationServiceForwardRequest,
  FederationServiceService,
  PacketRequest,
  PingResponse,
  PushPullRequest,
} from '../../services/gen/consulate/router/v1/federation';
import {
  AreaMembersRequest,
  CreateAreaRequest,
  DeleteAreaRequest,
  ForwardRequest,
  ForwardServiceCallsRequest,
  ForwardServiceCallsResponse,
  ForwardServiceService,
  GetAreaRequest,
  JoinAreaRequest,
  JoinWanRequest,
  ListAreasRequest,
  OperatorServiceService,
  StatusResponse,
  UpdateAreaRequest,
} from '../../services/gen/consulate/router/v1/operator';
import { readFederationForward, readForwardRequest } from '../../services/federation-router/forward-wire';
import { checkHealth } from '../../services/lib/health-probe';
import { Message, PushPullMember } from '../../services/lib/swim/messages';
import { encodePacket, encodeStreamFrame } from '../../services/lib/swim/wire-codec';
import { FederatedDatacenter, startDatacenter } from '../harness/federation';
import { RoleProcess, eventually, logRecords, stopAll, vmKib } from '../harness/processes';
import { RouterTls, makeRouterTls } from '../harness/tls';

/** Cases per service (reliability.md asks 100,000 in the nightly run; this is the CI share). */
const CASES_PER_SERVICE = 2_000;
/** Calls in flight at once: enough to keep the router busy, few enough for 2 shared cores. */
const CONCURRENCY = 8;
/** Generous: real processes on 2 shared cores. Only reaching it is asserted, never the time taken. */
const CALL_DEADLINE_MS = 15_000;
/** A decoded blocking read (min_index set) may wait minutes by design: it gets this, and may reach it. */
const BLOCKING_DEADLINE_MS = 1_000;
/** If grpc-js never calls back this long after the deadline, the call hung. */
const HANG_MARGIN_MS = 10_000;
const SEEDS = { OperatorService: 0x5e5_0001, ForwardService: 0x5e5_0002, FederationService: 0x5e5_0003 } as const;
const MIB = 1024 * 1024;
/** S6: one message 16 times grpc-js's default 4 MiB receive limit, which the router keeps. */
const OVERSIZED_BYTES = 64 * MIB;
/** S6: the router's RSS, and its peak, may grow by less than 2× the 4 MiB receive limit per message. */
const RSS_GROWTH_LIMIT_BYTES = 2 * 4 * MIB;
const DESERIALIZE_FAILURE = 'Error deserializing request';
/** An area ID no area has: calls that need an area answer NOT_FOUND and change nothing. */
const NO_AREA = '00000000-0000-4000-8000-000000000000';

let tls: RouterTls;
let dc1: FederatedDatacenter;
let router: RoleProcess;
let inDatacenter: Client;
let fromDc2: Client;

beforeAll(async () => {
  tls = makeRouterTls(['dc1', 'dc2']);
  dc1 = await startDatacenter('dc1', tls, { routers: 1 });
  router = dc1.routers[0];
  inDatacenter = new Client(router.grpc, credentials.createInsecure(), { 'grpc.enable_retries': 0 });
  fromDc2 = new Client(`${router.address}:8300`, dc2RouterCredentials(), {
    // Asks for dc1's router by name, as peer-clients.ts does, whatever address it dials.
    'grpc.ssl_target_name_override': 'server.dc1.consulate',
    'grpc.default_authority': 'server.dc1.consulate',
    'grpc.enable_retries': 0,
  });
  // dc2 is the peer of an area of dc1, so the router takes its Forwards (it refuses a datacenter
  // it is not adjacent to before anything else): they reach the code under test.
  const created = await fetch(`${dc1.httpAddr}/v1/operator/area`, { method: 'POST', body: JSON.stringify({ PeerDatacenter: 'dc2' }) });
  expect(created.status).toBe(200);
  const control = FederationServiceForwardRequest.encode({ forward: { datacenter: 'dc-nowhere', request: catalogGet }, visited: ['dc2'] }).finish();
  await eventually('the router to take dc2 as adjacent', async () => (await rawCall(fromDc2, FederationServiceService.forward.path, control, claimingDc2(), CALL_DEADLINE_MS)).code === GrpcStatus.NOT_FOUND || undefined, 20_000);
}, 60_000);

afterAll(async () => {
  inDatacenter?.close();
  fromDc2?.close();
  await stopAll();
});

/** A legitimate dc2 router: our CA's `server.dc2.consulate` certificate, presented on 8300. */
function dc2RouterCredentials(): ChannelCredentials {
  const pair = createCertificate({ ca: tls.ca, kind: 'server', datacenter: 'dc2' });
  return credentials.createSsl(Buffer.from(tls.ca.certPem), Buffer.from(pair.keyPem), Buffer.from(pair.certPem));
}

/** Every call on 8300 says which datacenter it comes from, matching its certificate. */
function claimingDc2(): Metadata {
  const metadata = new Metadata();
  metadata.set('consulate-datacenter', 'dc2');
  return metadata;
}

// ---------------------------------------------------------------------------------------------
// Protobuf wire bytes, written by hand so they can be wrong on purpose

const WIRE = { varint: 0, fixed64: 1, len: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const;

/** The base-128 varint of `value` taken as uint64: a negative number takes 10 bytes, as in int64. */
function varint(value: bigint): number[] {
  let rest = BigInt.asUintN(64, value);
  const out: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    out.push(rest === 0n ? low : low | 0x80);
  } while (rest !== 0n);
  return out;
}

function tag(field: number, wireType: number): number[] {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

function bytes(...parts: ArrayLike<number>[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => Array.from(part)));
}

/** Field numbers our messages use (all ≤ 10), plus a few more. */
const knownField = fc.integer({ min: 1, max: 12 });
/** Field numbers no message here declares, up to protobuf's largest (2^29 − 1). */
const unknownField = fc.oneof(fc.integer({ min: 16, max: 2_047 }), fc.integer({ min: 2_048, max: 2 ** 29 - 2 }));
const garbage = (maxLength: number) => fc.uint8Array({ minLength: 1, maxLength });

/** A correctly encoded field of any wire type: what an unknown field looks like when it is valid. */
const wellFormedField = (field: fc.Arbitrary<number>): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.tuple(field, fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n })).map(([f, v]) => bytes(tag(f, WIRE.varint), varint(v))),
    fc.tuple(field, fc.uint8Array({ minLength: 8, maxLength: 8 })).map(([f, v]) => bytes(tag(f, WIRE.fixed64), v)),
    fc.tuple(field, fc.uint8Array({ maxLength: 64 })).map(([f, v]) => bytes(tag(f, WIRE.len), varint(BigInt(v.length)), v)),
    fc.tuple(field, fc.uint8Array({ minLength: 4, maxLength: 4 })).map(([f, v]) => bytes(tag(f, WIRE.fixed32), v)),
    fc.tuple(field, fc.uint8Array({ maxLength: 8 })).map(([f, v]) => bytes(tag(f, WIRE.startGroup), tag(f + 1, WIRE.len), varint(BigInt(v.length)), v, tag(f, WIRE.endGroup))),
  );

interface Malformed {
  readonly kind: string;
  readonly bytes: Uint8Array;
}

/** Every kind of malformation, made from `base` (a valid request of the method). */
function malformations(base: Uint8Array): fc.Arbitrary<Malformed>[] {
  const as = (kind: string) => (payload: Uint8Array): Malformed => ({ kind, bytes: payload });
  const prefix = fc.nat({ max: base.length }).map((n) => base.subarray(0, n));
  return [
    fc.uint8Array({ maxLength: 512 }).map(as('random bytes')),
    garbage(128).map((tail) => bytes(base, tail)).map(as('valid + garbage appended')),
    // A cut anywhere, or a whole message followed by the start of another field cut short.
    (base.length > 1 ? fc.integer({ min: 1, max: base.length - 1 }).map((n) => base.subarray(0, n)) : fc.constant(bytes(base, tag(1, WIRE.len), [5]))).map(as('truncated message')),
    fc
      .tuple(prefix, knownField, fc.uint8Array({ minLength: 1, maxLength: 11 }))
      .map(([head, field, continuation]) => bytes(head, tag(field, WIRE.varint), continuation.map((b) => b | 0x80)))
      .map(as('truncated varint')),
    // A varint of 11 bytes or more: longer than any 64-bit value.
    fc.tuple(prefix, knownField, fc.integer({ min: 10, max: 40 })).map(([head, field, n]) => bytes(head, tag(field, WIRE.varint), new Array(n).fill(0xff), [0x01])).map(as('overlong varint')),
    fc
      .tuple(
        prefix,
        knownField,
        fc.constantFrom(2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, -1n, -(2n ** 31n), 4n * BigInt(MIB)),
        fc.uint8Array({ maxLength: 32 }),
      )
      .map(([head, field, length, tail]) => bytes(head, tag(field, WIRE.len), varint(length), tail))
      .map(as('huge or negative length')),
    fc
      .tuple(prefix, knownField, fc.integer({ min: 0, max: 7 }), fc.constantFrom<number[]>(varint(300n), new Array(8).fill(0x41), [3, 0x61, 0x62, 0x63], new Array(4).fill(0x42), []))
      .map(([head, field, wireType, payload]) => bytes(head, tag(field, wireType), payload))
      .map(as('wrong wire type')),
    // Field 0, and field numbers past 2^29 − 1 whose tag overflows 32 bits.
    fc
      .tuple(prefix, fc.constantFrom(0n, 2n ** 29n, 2n ** 32n, 2n ** 61n - 1n), fc.integer({ min: 0, max: 5 }), garbage(16))
      .map(([head, field, wireType, tail]) => bytes(head, varint((field << 3n) | BigInt(wireType)), tail))
      .map(as('bad field number')),
    // Start groups nested deeper than any stack, closed or not.
    fc
      .tuple(prefix, fc.integer({ min: 1, max: 200_000 }), fc.constantFrom('open', 'closed', 'mismatched'))
      .map(([head, depth, end]) => {
        const field = 13;
        const closing = end === 'open' ? [] : end === 'closed' ? Array(depth).fill(tag(field, WIRE.endGroup)).flat() : tag(field + 1, WIRE.endGroup);
        return bytes(head, Array(depth).fill(tag(field, WIRE.startGroup)).flat(), closing);
      })
      .map(as('deep groups')),
    // Valid unknown fields before, between or after the base: must change nothing.
    fc
      .tuple(fc.array(wellFormedField(unknownField), { maxLength: 4 }), fc.array(wellFormedField(unknownField), { minLength: 1, maxLength: 4 }))
      .map(([before, after]) => bytes(...before, base, ...after))
      .map(as('unknown fields')),
  ];
}

/** Text a peer could put in an address: control characters, spaces, brackets, schemes, nothing. */
const hostileAddress = fc.oneof(
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 40 }).map((host) => `${host}:8300`),
  fc.constantFrom('\n', 'a\nb:8300', '127.0.0.1:8300\n', ' :8300', '[::1', 'unix:/nonexistent', 'dns:///x:1', '%:1', '127.0.0.1:99999999', ':'),
);
const fuzzNode = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 }).map((suffix) => `fuzz-${suffix}`);
/** What the WAN pool takes for a router (federation.ts validateMembers): role consul and a datacenter. */
const routerTags = { role: 'consul', dc: 'dc2', port: '8300', vsn: '2', id: 'fuzz' };

/** Well-formed SWIM packets to the WAN pool that name hostile addresses, from a hostile `from`. */
function hostilePackets(): fc.Arbitrary<Uint8Array> {
  const message: fc.Arbitrary<Message> = fc.oneof(
    fc.record({ type: fc.constant('alive' as const), node: fuzzNode, address: hostileAddress, incarnation: fc.integer({ min: 1, max: 1_000 }), tags: fc.constant(routerTags) }),
    fc.record({ type: fc.constant('indirect-ping' as const), seqNo: fc.nat(), target: fuzzNode, targetAddress: hostileAddress, nack: fc.boolean() }),
    fc.record({ type: fc.constant('ping' as const), seqNo: fc.nat(), node: fc.constantFrom('router-1.dc1', 'fuzz-nobody') }),
  );
  return fc
    .tuple(fc.oneof(hostileAddress, fc.constant('127.0.0.1:9')), fc.array(message, { minLength: 1, maxLength: 3 }))
    .map(([from, messages]) => PacketRequest.encode({ pool: 'wan', from, packet: Buffer.from(encodePacket(messages)) }).finish());
}

/** Well-formed push/pulls to the WAN pool whose members live at hostile addresses. */
function hostilePushPulls(): fc.Arbitrary<Uint8Array> {
  const member: fc.Arbitrary<PushPullMember> = fc.record({ node: fuzzNode, address: hostileAddress, incarnation: fc.integer({ min: 1, max: 1_000 }), state: fc.constantFrom('alive' as const, 'suspect' as const, 'dead' as const, 'left' as const), tags: fc.constant(routerTags) });
  return fc
    .tuple(fc.oneof(hostileAddress, fc.constant('127.0.0.1:9')), fc.boolean(), fc.array(member, { minLength: 1, maxLength: 3 }))
    .map(([from, join, members]) => PushPullRequest.encode({ pool: 'wan', from, frame: Buffer.from(encodeStreamFrame({ type: 'push-pull-request', state: { join, members, memberLtime: 0, eventLtime: 0 } })) }).finish());
}

// ---------------------------------------------------------------------------------------------
// The methods, each with a harmless valid request the malformations start from

interface FuzzMethod {
  readonly service: keyof typeof SEEDS;
  readonly name: string;
  readonly path: string;
  /** The router's own decoder for the request (what grpc-js calls before the handler). */
  readonly decode: (bytes: Buffer) => unknown;
  /** A valid request that changes nothing, and the status the router answers it with. */
  readonly base: Uint8Array;
  readonly baseCode: GrpcStatus;
  /** Well-formed requests with hostile contents, beside the generic malformations. */
  readonly hostile?: fc.Arbitrary<Uint8Array>;
  /** True when the decoded request is a blocking query that may wait past any deadline we give. */
  readonly blocks?: (decoded: unknown) => boolean;
}

const blockingRead = (decoded: unknown): boolean => ((decoded as ListAreasRequest | GetAreaRequest).options?.minIndex ?? 0n) > 0n;
const catalogGet = { method: 'GET', path: '/v1/catalog/nodes', rawQuery: '', headers: {}, body: Buffer.alloc(0) };

const OPERATOR_METHODS: FuzzMethod[] = [
  method('OperatorService', OperatorServiceService.status, new Uint8Array(0), GrpcStatus.OK),
  // A create that names an ID is refused before anything is written.
  method('OperatorService', OperatorServiceService.createArea, CreateAreaRequest.encode(CreateAreaRequest.fromPartial({ area: { id: NO_AREA, peerDatacenter: 'dc9' } })).finish(), GrpcStatus.INVALID_ARGUMENT),
  { ...method('OperatorService', OperatorServiceService.listAreas, ListAreasRequest.encode(ListAreasRequest.fromPartial({ options: { stale: true } })).finish(), GrpcStatus.OK), blocks: blockingRead },
  { ...method('OperatorService', OperatorServiceService.getArea, GetAreaRequest.encode(GetAreaRequest.fromPartial({ id: NO_AREA, options: { stale: true } })).finish(), GrpcStatus.OK), blocks: blockingRead },
  method('OperatorService', OperatorServiceService.updateArea, UpdateAreaRequest.encode(UpdateAreaRequest.fromPartial({ id: NO_AREA, transit: true })).finish(), GrpcStatus.NOT_FOUND),
  method('OperatorService', OperatorServiceService.deleteArea, DeleteAreaRequest.encode(DeleteAreaRequest.fromPartial({ id: NO_AREA })).finish(), GrpcStatus.NOT_FOUND),
  method('OperatorService', OperatorServiceService.joinArea, JoinAreaRequest.encode(JoinAreaRequest.fromPartial({ id: NO_AREA, addresses: ['127.0.0.1:9'] })).finish(), GrpcStatus.NOT_FOUND),
  method('OperatorService', OperatorServiceService.areaMembers, AreaMembersRequest.encode(AreaMembersRequest.fromPartial({ id: NO_AREA })).finish(), GrpcStatus.NOT_FOUND),
  method('OperatorService', OperatorServiceService.datacenters, new Uint8Array(0), GrpcStatus.OK),
  method('OperatorService', OperatorServiceService.wanMembers, new Uint8Array(0), GrpcStatus.OK),
  // No address: joins nothing. A payload that decodes to addresses joins them within the pool's
  // stream timeout (1 s with the `local` profile) and reports each as failed.
  method('OperatorService', OperatorServiceService.joinWan, JoinWanRequest.encode(JoinWanRequest.fromPartial({ addresses: [] })).finish(), GrpcStatus.OK),
];

const FORWARD_METHODS: FuzzMethod[] = [
  method('ForwardService', { path: ForwardServiceService.forward.path, requestDeserialize: readForwardRequest }, ForwardRequest.encode(ForwardRequest.fromPartial({ datacenter: 'dc-nowhere', request: catalogGet })).finish(), GrpcStatus.NOT_FOUND),
];

const FEDERATION_METHODS: FuzzMethod[] = [
  {
    // A ping for no member of the WAN pool: dropped by the pool, answered OK.
    ...method('FederationService', FederationServiceService.packet, PacketRequest.encode({ pool: 'wan', from: '127.0.0.1:9', packet: Buffer.from(encodePacket([{ type: 'ping', seqNo: 1, node: 'fuzz-nobody' }])) }).finish(), GrpcStatus.OK),
    hostile: hostilePackets(),
  },
  {
    // A push/pull with no member in it: the pool answers with its own state.
    ...method('FederationService', FederationServiceService.pushPull, PushPullRequest.encode({ pool: 'wan', from: '127.0.0.1:9', frame: Buffer.from(encodeStreamFrame({ type: 'push-pull-request', state: { join: false, members: [], memberLtime: 0, eventLtime: 0 } })) }).finish(), GrpcStatus.OK),
    hostile: hostilePushPulls(),
  },
  method('FederationService', { path: FederationServiceService.forward.path, requestDeserialize: readFederationForward }, FederationServiceForwardRequest.encode({ forward: { datacenter: 'dc-nowhere', request: catalogGet }, visited: ['dc2'] }).finish(), GrpcStatus.NOT_FOUND),
  method('FederationService', FederationServiceService.ping, new Uint8Array(0), GrpcStatus.OK),
];

function method(service: FuzzMethod['service'], definition: { path: string; requestDeserialize: (bytes: Buffer) => unknown }, base: Uint8Array, baseCode: GrpcStatus): FuzzMethod {
  return { service, name: definition.path.split('/')[2], path: definition.path, decode: definition.requestDeserialize, base, baseCode };
}

interface FuzzCase {
  readonly method: FuzzMethod;
  readonly kind: string;
  readonly bytes: Uint8Array;
}

function cases(methods: readonly FuzzMethod[], seed: number): FuzzCase[] {
  const arbitrary = fc.constantFrom(...methods).chain((m) =>
    fc.oneof(...malformations(m.base), ...(m.hostile === undefined ? [] : [m.hostile.map((payload): Malformed => ({ kind: 'hostile gossip', bytes: payload }))])).map((malformed): FuzzCase => ({ method: m, ...malformed })),
  );
  return fc.sample(arbitrary, { seed, numRuns: CASES_PER_SERVICE });
}

// ---------------------------------------------------------------------------------------------
// Calls

interface Answer {
  /** The gRPC status, or 'hung' when grpc-js never called back. */
  readonly code: GrpcStatus | 'hung';
  readonly details: string;
  readonly body?: Buffer;
}

function rawCall(client: Client, path: string, payload: Uint8Array, metadata: Metadata, deadlineMs: number): Promise<Answer> {
  return new Promise((resolve) => {
    const guard = setTimeout(() => resolve({ code: 'hung', details: `no status ${HANG_MARGIN_MS} ms after the deadline` }), deadlineMs + HANG_MARGIN_MS);
    client.makeUnaryRequest(
      path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      Buffer.from(payload),
      metadata,
      { deadline: Date.now() + deadlineMs },
      (err: ServiceError | null, body?: Buffer) => {
        clearTimeout(guard);
        resolve(err === null ? { code: GrpcStatus.OK, details: '', body } : { code: err.code, details: err.details });
      },
    );
  });
}

function clientFor(fuzzMethod: FuzzMethod): { client: Client; metadata: () => Metadata } {
  return fuzzMethod.service === 'FederationService' ? { client: fromDc2, metadata: claimingDc2 } : { client: inDatacenter, metadata: () => new Metadata() };
}

interface Outcome {
  readonly fuzz: FuzzCase;
  readonly decodes: boolean;
  readonly blocking: boolean;
  readonly answer: Answer;
}

/** Whether the router's own decoder takes the payload, and whether it then is a blocking read. */
function classify(fuzz: FuzzCase): { decodes: boolean; blocking: boolean } {
  let decoded: unknown;
  try {
    decoded = fuzz.method.decode(Buffer.from(fuzz.bytes));
  } catch {
    return { decodes: false, blocking: false };
  }
  return { decodes: true, blocking: fuzz.method.blocks?.(decoded) === true };
}

async function send(fuzz: FuzzCase): Promise<Outcome> {
  const { decodes, blocking } = classify(fuzz);
  const { client, metadata } = clientFor(fuzz.method);
  const answer = await rawCall(client, fuzz.method.path, fuzz.bytes, metadata(), blocking ? BLOCKING_DEADLINE_MS : CALL_DEADLINE_MS);
  return { fuzz, decodes, blocking, answer };
}

/** Runs `work` over `items`, `limit` at a time, in order of start. */
async function inPool<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** What is wrong with one outcome, or undefined. */
function violation({ fuzz, decodes, blocking, answer }: Outcome): string | undefined {
  const { code, details } = answer;
  if (code === 'hung') return 'no status at all';
  if (!decodes) return code === GrpcStatus.INTERNAL && details === DESERIALIZE_FAILURE ? undefined : `undecodable, yet answered ${GrpcStatus[code]} "${details}"`;
  if (details === DESERIALIZE_FAILURE) return 'decodes here, yet the router could not deserialize it';
  if (code === GrpcStatus.UNKNOWN) return `the handler threw: UNKNOWN "${details}"`;
  if (code === GrpcStatus.DEADLINE_EXCEEDED && !blocking) return 'reached its deadline without being a blocking query';
  if (fuzz.kind === 'unknown fields' && code !== fuzz.method.baseCode) return `unknown fields changed the answer from ${GrpcStatus[fuzz.method.baseCode]} to ${GrpcStatus[code]} "${details}"`;
  return undefined;
}

function codeName(code: GrpcStatus | 'hung'): string {
  return code === 'hung' ? 'HUNG' : GrpcStatus[code];
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function report(service: string, seed: number, outcomes: readonly Outcome[]): string {
  const blocking = outcomes.filter((o) => o.blocking);
  const lines = [
    `${service}: ${outcomes.length} cases, seed 0x${seed.toString(16)}, ${outcomes.filter((o) => o.decodes).length} decode`,
    `  status: ${JSON.stringify(countBy(outcomes, (o) => codeName(o.answer.code)))}`,
    `  decoded blocking reads (deadline ${BLOCKING_DEADLINE_MS} ms): ${blocking.length} ${JSON.stringify(countBy(blocking, (o) => codeName(o.answer.code)))}`,
  ];
  const methods = [...new Set(outcomes.map((o) => o.fuzz.method.name))];
  for (const name of methods) lines.push(`  ${name}: ${JSON.stringify(countBy(outcomes.filter((o) => o.fuzz.method.name === name), (o) => codeName(o.answer.code)))}`);
  const kinds = [...new Set(outcomes.map((o) => o.fuzz.kind))].sort();
  for (const kind of kinds) {
    const ofKind = outcomes.filter((o) => o.fuzz.kind === kind);
    lines.push(`  [${kind}] ${ofKind.length} (${ofKind.filter((o) => o.decodes).length} decode): ${JSON.stringify(countBy(ofKind, (o) => codeName(o.answer.code)))}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The router, checked after each run

/** The router that started is still running and logged no crash (role-process.ts logs one as fatal, then exits 1). */
function expectRouterAlive(): void {
  const fatal = logRecords(router).filter((record) => record.level === 'fatal' || record.level === 60 || String(record.msg ?? '').startsWith('crashed'));
  expect({ exitCode: router.child.exitCode, signal: router.child.signalCode, fatal }).toEqual({ exitCode: null, signal: null, fatal: [] });
  expect(() => process.kill(router.pid, 0)).not.toThrow();
}

/** Alive, and answers on both ports. */
async function expectRouterHealthy(): Promise<void> {
  expectRouterAlive();
  const status = await rawCall(inDatacenter, OperatorServiceService.status.path, new Uint8Array(0), new Metadata(), CALL_DEADLINE_MS);
  expect(status.code).toBe(GrpcStatus.OK);
  expect(StatusResponse.decode(status.body!).info).toMatchObject({ role: 'federation-router', datacenter: 'dc1', node: 'router-1' });
  const ping = await rawCall(fromDc2, FederationServiceService.ping.path, new Uint8Array(0), claimingDc2(), CALL_DEADLINE_MS);
  expect(ping.code).toBe(GrpcStatus.OK);
  expect(PingResponse.decode(ping.body!)).toEqual({ node: 'router-1', datacenter: 'dc1' });
  expect((await checkHealth(router.grpc, 5_000)).answer).toBe('SERVING');
}

// ---------------------------------------------------------------------------------------------

describe('S5: malformed protobuf to every unary method of the router (fast-check, fixed seeds)', () => {
  test.each([
    { service: 'OperatorService' as const, methods: OPERATOR_METHODS, port: 8330 },
    { service: 'ForwardService' as const, methods: FORWARD_METHODS, port: 8330 },
    { service: 'FederationService' as const, methods: FEDERATION_METHODS, port: 8300 },
  ])('$service on $port: every call ends with a status, none hangs, the router survives', async ({ service, methods }) => {
    // The valid requests the malformations start from answer as the table says.
    for (const m of methods) {
      const { client, metadata } = clientFor(m);
      const answer = await rawCall(client, m.path, m.base, metadata(), CALL_DEADLINE_MS);
      expect({ method: m.name, code: codeName(answer.code), details: answer.details }).toMatchObject({ method: m.name, code: codeName(m.baseCode) });
    }
    const seed = SEEDS[service];
    const outcomes = await inPool(cases(methods, seed), CONCURRENCY, send);
    console.log(report(service, seed, outcomes));
    // A crash first: every call after it fails, which would only bury it.
    expectRouterAlive();
    const violations = outcomes.flatMap((outcome) => {
      const problem = violation(outcome);
      return problem === undefined ? [] : [`${outcome.fuzz.method.name} [${outcome.fuzz.kind}] ${Buffer.from(outcome.fuzz.bytes.subarray(0, 64)).toString('hex')}: ${problem}`];
    });
    expect({ service, violations: violations.slice(0, 20), count: violations.length }).toEqual({ service, violations: [], count: 0 });
    // Every method of the service was called.
    expect(new Set(outcomes.map((o) => o.fuzz.method.name)).size).toBe(methods.length);
    await expectRouterHealthy();
  });
});

// ---------------------------------------------------------------------------------------------
// The same requests as frames on a Calls stream (services/lib/call-stream.ts)

type CallsFrame = { call?: UnaryCall; calls: UnaryCall[] };
type AnswersFrame = { answer?: UnaryAnswer; answers: UnaryAnswer[] };

/** One Calls stream with raw frames: `call` sends one call and waits for its answer (or the stream's end). */
function callsStream(client: Client, path: string): { call(method: string, payload: Uint8Array, metadata: Record<string, string>, deadlineMs: number): Promise<Answer>; end(): void } {
  const codec = path === FederationServiceService.calls.path ? { encode: FederationServiceCallsRequest.encode, decode: FederationServiceCallsResponse.decode } : { encode: ForwardServiceCallsRequest.encode, decode: ForwardServiceCallsResponse.decode };
  const stream = client.makeBidiStreamRequest(
    path,
    (frame: CallsFrame) => Buffer.from(codec.encode(frame).finish()),
    (bytes: Buffer): AnswersFrame => codec.decode(bytes),
    new Metadata(),
  );
  const waiting = new Map<bigint, (answer: Answer) => void>();
  let ended: Answer | undefined;
  stream.on('data', (frame: AnswersFrame) => {
    for (const answer of [...(frame.answer === undefined ? [] : [frame.answer]), ...frame.answers]) {
      waiting.get(answer.id)?.({ code: answer.code, details: answer.details, body: answer.message });
      waiting.delete(answer.id);
    }
  });
  stream.on('error', () => undefined);
  stream.on('status', (status: { code: GrpcStatus; details: string }) => {
    ended = { code: status.code, details: `the stream ended: ${status.details}` };
    for (const resolve of waiting.values()) resolve(ended);
    waiting.clear();
  });
  let nextId = 1n;
  return {
    call(method, payload, metadata, deadlineMs) {
      if (ended !== undefined) return Promise.resolve(ended);
      const id = nextId++;
      return new Promise((resolve) => {
        const guard = setTimeout(() => resolve({ code: 'hung', details: `no answer ${HANG_MARGIN_MS} ms after the deadline` }), deadlineMs + HANG_MARGIN_MS);
        waiting.set(id, (answer) => {
          clearTimeout(guard);
          resolve(answer);
        });
        stream.write({ call: { id, method, message: Buffer.from(payload), metadata, timeoutMs: BigInt(deadlineMs), cancel: false }, calls: [] });
      });
    },
    end: () => stream.end(),
  };
}

describe('S5 on the Calls streams: the same malformed requests as frames on one open stream', () => {
  test.each([
    { service: 'ForwardService' as const, methods: FORWARD_METHODS, calls: ForwardServiceService.calls.path },
    { service: 'FederationService' as const, methods: FEDERATION_METHODS, calls: FederationServiceService.calls.path },
  ])('$service.Calls: every call is answered on the stream, which stays open; the router survives', async ({ service, methods, calls }) => {
    const { client } = clientFor(methods[0]);
    const metadata: Record<string, string> = service === 'FederationService' ? { 'consulate-datacenter': 'dc2' } : {};
    const stream = callsStream(client, calls);
    const seed = SEEDS[service] + 0x100;
    const outcomes = await inPool(cases(methods, seed), CONCURRENCY, async (fuzz): Promise<Outcome> => {
      const { decodes, blocking } = classify(fuzz);
      const answer = await stream.call(fuzz.method.path, fuzz.bytes, metadata, blocking ? BLOCKING_DEADLINE_MS : CALL_DEADLINE_MS);
      return { fuzz, decodes, blocking, answer };
    });
    console.log(report(`${service}.Calls`, seed, outcomes));
    expectRouterAlive();
    const violations = outcomes.flatMap((outcome) => {
      const problem = outcome.answer.details.startsWith('the stream ended') ? outcome.answer.details : violation(outcome);
      return problem === undefined ? [] : [`${outcome.fuzz.method.name} [${outcome.fuzz.kind}] ${Buffer.from(outcome.fuzz.bytes.subarray(0, 64)).toString('hex')}: ${problem}`];
    });
    expect({ service, violations: violations.slice(0, 20), count: violations.length }).toEqual({ service, violations: [], count: 0 });
    // The stream is still open and serves a valid call.
    const base = methods.find((m) => m.name === 'Forward')!;
    expect((await stream.call(base.path, base.base, metadata, CALL_DEADLINE_MS)).code).toBe(base.baseCode);
    stream.end();
    await expectRouterHealthy();
  });

  test.each([
    { service: 'ForwardService' as const, calls: ForwardServiceService.calls.path, client: () => inDatacenter },
    { service: 'FederationService' as const, calls: FederationServiceService.calls.path, client: () => fromDc2 },
  ])('$service.Calls: frames that are not a Calls message end their stream with a status; the router survives', async ({ service, calls, client }) => {
    const frames = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 512 }), { seed: SEEDS[service] + 0x200, numRuns: 200 });
    const ends = await inPool(frames, CONCURRENCY, (bytes) => rawStreamEnd(client(), calls, bytes));
    const codes = countBy(ends, (end) => codeName(end.code));
    console.log(`${service}.Calls, 200 random frames: ${JSON.stringify(codes)}`);
    expect(ends.filter((end) => end.code === 'hung')).toEqual([]);
    await expectRouterHealthy();
  });
});

/** Sends `bytes` as the one frame of a fresh Calls stream, half-closes, and waits for the stream's status. */
function rawStreamEnd(client: Client, path: string, bytes: Uint8Array): Promise<Answer> {
  return new Promise((resolve) => {
    const stream = client.makeBidiStreamRequest(path, (frame: Buffer) => frame, (answer: Buffer) => answer, path === FederationServiceService.calls.path ? claimingDc2() : new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS });
    const guard = setTimeout(() => resolve({ code: 'hung', details: 'no status' }), CALL_DEADLINE_MS + HANG_MARGIN_MS);
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('status', (status: { code: GrpcStatus; details: string }) => {
      clearTimeout(guard);
      resolve({ code: status.code, details: status.details });
    });
    stream.write(Buffer.from(bytes));
    stream.end();
  });
}

describe('S6: one 64 MiB message (grpc-js max receive 4 MiB, CVE-2024-37168)', () => {
  const body = Buffer.alloc(OVERSIZED_BYTES, 0x61);
  // Valid requests, so only the size refuses them: through 8300 the Forward would be a dc2
  // router's KV write served by dc1's catalog.
  const oversized = {
    8330: () => ({ client: inDatacenter, path: ForwardServiceService.forward.path, metadata: new Metadata(), payload: ForwardRequest.encode({ datacenter: 'dc2', request: { method: 'PUT', path: '/v1/kv/s6-oversized', rawQuery: '', headers: {}, body } }).finish() }),
    8300: () => ({ client: fromDc2, path: FederationServiceService.forward.path, metadata: claimingDc2(), payload: FederationServiceForwardRequest.encode({ forward: { datacenter: 'dc1', request: { method: 'PUT', path: '/v1/kv/s6-oversized', rawQuery: '', headers: {}, body } }, visited: ['dc2'] }).finish() }),
  } as const;

  test.each([8330, 8300] as const)('Forward on %d: RESOURCE_EXHAUSTED, router RSS and peak RSS grow by less than 8 MiB, still healthy', async (port) => {
    const { client, path, metadata, payload } = oversized[port]();
    expect(payload.length).toBeGreaterThan(OVERSIZED_BYTES);
    const rssBefore = vmKib(router.pid, 'VmRSS');
    const peakBefore = vmKib(router.pid, 'VmHWM');
    const answer = await rawCall(client, path, payload, metadata, 60_000);
    const rssAfter = vmKib(router.pid, 'VmRSS');
    const peakAfter = vmKib(router.pid, 'VmHWM');
    console.log(`S6 on ${port}: ${codeName(answer.code)} "${answer.details}"; router RSS ${rssBefore} → ${rssAfter} KiB (${rssAfter - rssBefore} KiB), peak ${peakBefore} → ${peakAfter} KiB (${peakAfter - peakBefore} KiB)`);
    expect(answer.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    // S6's figure: under 2× the 4 MiB limit, so the message was refused from its length prefix
    // and never buffered (the 64 MiB the brief allows would pass even if it had been).
    expect((rssAfter - rssBefore) * 1024).toBeLessThan(RSS_GROWTH_LIMIT_BYTES);
    expect((peakAfter - peakBefore) * 1024).toBeLessThan(RSS_GROWTH_LIMIT_BYTES);
    // Nothing of it reached the catalog.
    expect((await fetch(`${dc1.httpAddr}/v1/kv/s6-oversized`)).status).toBe(404);
    await expectRouterHealthy();
  });
});
