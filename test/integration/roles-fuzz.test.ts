/**
 * Malformed protobuf to every unary gRPC method of the consensus (8310), catalog (8502) and gossip
 * (8320) roles (reference/reliability.md §6.4 S5; the router's own services have
 * federation-fuzz.test.ts). Each method gets the same fast-check sample, fixed seed: random bytes,
 * short and long, and field soup (random field numbers, wire types and lengths, so that a good share
 * decodes into requests with strange values). Every call must end with a status other than
 * UNKNOWN (a handler that threw something it did not mean to) and none may hang; afterwards every
 * process is the same one, alive and healthy. Outcomes only, no timings.
 *
 * Left out, because a random request would act on the world rather than be refused: membership
 * changes and leadership transfer (consensus), joins, leaves and force-leaves (gossip: a join to a
 * random address would dial it), compaction.
 */
import { Client, Metadata, ServiceDefinition, credentials, status as GrpcStatus } from '@grpc/grpc-js';
import fc from 'fast-check';

import { CatalogServiceService } from '../../services/gen/consulate/catalog/v1/catalog';
import { ForwardedHttpServiceService } from '../../services/gen/consulate/catalog/v1/forwarded';
import { HealthServiceService } from '../../services/gen/consulate/catalog/v1/health';
import { KVServiceService as CatalogKvService } from '../../services/gen/consulate/catalog/v1/kv';
import { SessionServiceService } from '../../services/gen/consulate/catalog/v1/session';
import { ClusterServiceService } from '../../services/gen/consulate/consensus/v1/cluster';
import { KVServiceService as ConsensusKvService } from '../../services/gen/consulate/consensus/v1/kv';
import { LeaseServiceService } from '../../services/gen/consulate/consensus/v1/lease';
import { MembershipServiceService } from '../../services/gen/consulate/gossip/v1/membership';
import { checkHealth } from '../../services/lib/health-probe';
import { RoleProcess, freeLoopbackAddress, startRole, stopAll } from '../harness/processes';

const CASES_PER_METHOD = 100;
const SEED = 20261202;
const DEADLINE_MS = 3_000;
const HANG_MARGIN_MS = 5_000;
const LEFT_OUT = /\/(MemberAdd|MemberRemove|MemberPromote|TransferLeadership|Compact|Join|Leave|ForceLeave)$/;

let consensus: RoleProcess;
let gossip: RoleProcess;
let catalog: RoleProcess;

beforeAll(async () => {
  const serverHost = freeLoopbackAddress();
  consensus = await startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] });
  gossip = await startRole({ role: 'gossip', node: 'server-1', address: serverHost, args: ['-server'] });
  catalog = await startRole({ role: 'catalog', node: 'catalog', args: [`-consensus-addr=${consensus.grpc}`, `-gossip-addr=${gossip.grpc}`] });
});

afterAll(async () => {
  await stopAll();
});

/** Field soup: tags with random field numbers and wire types, length-delimited ones with random lengths. */
const fieldSoup = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 0, max: 5 }), fc.uint8Array({ maxLength: 24 })), { maxLength: 8 })
  .map((fields) => Buffer.concat(fields.map(([field, wireType, bytes]) => Buffer.concat([Buffer.from([(field << 3) | wireType]), wireType === 2 ? Buffer.from([bytes.length]) : Buffer.alloc(0), bytes]))));
const payloads = fc.sample(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 64, maxLength: 2_048 }), fieldSoup, fieldSoup), { seed: SEED, numRuns: CASES_PER_METHOD });

function unaryMethods(...services: ServiceDefinition[]): { path: string }[] {
  return services.flatMap((service) => Object.values(service)).filter((method) => !method.requestStream && !method.responseStream && !LEFT_OUT.test(method.path));
}

/** One raw call: the bytes as they are, the answer's status (or 'hung'). */
function rawCall(client: Client, path: string, payload: Uint8Array): Promise<string> {
  const identity = (bytes: Buffer) => bytes;
  return new Promise((resolve) => {
    const guard = setTimeout(() => resolve('hung'), DEADLINE_MS + HANG_MARGIN_MS);
    client.makeUnaryRequest(path, identity, identity, Buffer.from(payload), new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (err) => {
      clearTimeout(guard);
      resolve(err === null ? 'OK' : err.code === GrpcStatus.UNKNOWN ? `UNKNOWN: ${err.details}` : GrpcStatus[err.code]);
    });
  });
}

test.each([
  { role: 'consensus', services: () => [ClusterServiceService, ConsensusKvService, LeaseServiceService], proc: () => consensus },
  { role: 'catalog', services: () => [CatalogServiceService, HealthServiceService, CatalogKvService, SessionServiceService, ForwardedHttpServiceService], proc: () => catalog },
  { role: 'gossip', services: () => [MembershipServiceService], proc: () => gossip },
])('S5: $role: malformed requests to every unary method end with a status (never UNKNOWN), none hangs, the process survives', async ({ role, services, proc }) => {
  const target = proc();
  const pid = target.child.pid;
  const client = new Client(target.grpc, credentials.createInsecure());
  const methods = unaryMethods(...services());
  const outcomes: Record<string, number> = {};
  const violations: string[] = [];
  try {
    for (const method of methods) {
      for (const payload of payloads) {
        const outcome = await rawCall(client, method.path, payload);
        outcomes[outcome.split(':')[0]] = (outcomes[outcome.split(':')[0]] ?? 0) + 1;
        if (outcome === 'hung' || outcome.startsWith('UNKNOWN')) violations.push(`${method.path} ${Buffer.from(payload.subarray(0, 48)).toString('hex')}: ${outcome}`);
      }
    }
  } finally {
    client.close();
  }
  console.log(`S5 ${role}: ${methods.length} methods × ${payloads.length} requests (seed ${SEED}): ${JSON.stringify(outcomes)}`);
  expect(violations.slice(0, 10)).toEqual([]);
  expect({ exit: target.child.exitCode, signal: target.child.signalCode, pid: target.child.pid }).toEqual({ exit: null, signal: null, pid });
  expect((await checkHealth(target.grpc, 5_000)).answer).toBe('SERVING');
});
