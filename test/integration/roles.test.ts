/**
 * Every role as a real process: it starts, answers gRPC health, writes one clear startup line,
 * serves its Status, and stops cleanly on SIGTERM. Bad configuration exits 1 with the reason.
 */
import { credentials } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { CatalogServiceClient } from '../../services/gen/consulate/catalog/v1/catalog';
import { ClusterServiceClient } from '../../services/gen/consulate/consensus/v1/cluster';
import { MembershipServiceClient, MembershipServiceService } from '../../services/gen/consulate/gossip/v1/membership';
import { OperatorServiceClient } from '../../services/gen/consulate/router/v1/operator';
import { makeRouterTls } from '../harness/tls';
import { CallStreamClient } from '../../services/lib/call-stream';
import { callUnary } from '../../services/lib/grpc-client';
import { checkHealth } from '../../services/lib/health-probe';
import { RoleProcess, freeLoopbackAddress, logRecords, startRole, stopAll } from '../harness/processes';

type Unary<Res> = (req: object, cb: (err: Error | null, res: Res) => void) => unknown;

function call<Res>(method: Unary<Res>, client: object): Promise<Res> {
  return new Promise((resolve, reject) => method.call(client, {}, (err, res) => (err ? reject(err) : resolve(res))));
}

afterAll(stopAll);

describe('each role process', () => {
  let consensus: RoleProcess;

  beforeAll(async () => {
    consensus = await startRole({ role: 'consensus', node: 'server-1' });
  });

  test('consensus: health, one startup line, Status', async () => {
    expect((await checkHealth(consensus.grpc, 2_000)).answer).toBe('SERVING');
    expect((await checkHealth(consensus.grpc, 2_000, 'consulate.consensus.v1.ClusterService')).answer).toBe('SERVING');
    const started = logRecords(consensus).filter((record) => record.event === 'started');
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ level: 'info', role: 'consensus', dc: 'dc1', node: 'server-1', listeners: { grpc: consensus.grpc } });
    expect(started[0].msg).toBe(`consulate consensus running in dc1 as server-1: grpc=${consensus.grpc} metrics=${consensus.address}:9310`);

    const client = new ClusterServiceClient(consensus.grpc, credentials.createInsecure());
    const status = await call(client.status as Unary<{ info?: { role: string; node: string; listeners: Record<string, string> } }>, client);
    client.close();
    expect(status.info).toMatchObject({ role: 'consensus', node: 'server-1', listeners: { grpc: consensus.grpc } });
  });

  test('gossip: server flag reported in Status; the Membership API on its Calls stream too', async () => {
    const gossip = await startRole({ role: 'gossip', node: 'server-1', args: ['-server'] });
    const client = new MembershipServiceClient(gossip.grpc, credentials.createInsecure());
    const status = await call(client.status as Unary<{ server: boolean; info?: { role: string } }>, client);
    expect(status).toMatchObject({ server: true, info: { role: 'gossip' } });
    const calls = new CallStreamClient({ client, tracer: trace.getTracer('test'), peer: gossip.grpc });
    const members = calls.method(MembershipServiceService.members, client.members.bind(client));
    const listed = await callUnary(members, { segment: '' }, { timeoutMs: 5_000, idempotent: false });
    expect(listed.members.map((member) => [member.name, member.status])).toEqual([['server-1', 'alive']]);
    calls.close();
    client.close();
    expect(await gossip.stop()).toBe(0);
  });

  test('catalog and router: Status asks every consensus server, and says which is unreachable', async () => {
    const unreachable = `${freeLoopbackAddress()}:8310`;
    const consensusArgs = [`-consensus-addr=${consensus.grpc}`, `-consensus-addr=${unreachable}`];
    const catalog = await startRole({ role: 'catalog', args: consensusArgs });
    const router = await startRole({ role: 'federation-router', args: [...consensusArgs, ...makeRouterTls(['dc1']).args('dc1')] });
    const catalogClient = new CatalogServiceClient(catalog.grpc, credentials.createInsecure());
    const routerClient = new OperatorServiceClient(router.grpc, credentials.createInsecure());
    type WithDeps = { info?: { role: string }; dependencies: { address: string; reachable: boolean; error: string; info?: { node: string } }[] };
    for (const [client, role] of [[catalogClient, 'catalog'], [routerClient, 'federation-router']] as const) {
      const status = await call(client.status as Unary<WithDeps>, client);
      expect(status.info?.role).toBe(role);
      expect(status.dependencies).toHaveLength(2);
      expect(status.dependencies[0]).toMatchObject({ address: consensus.grpc, reachable: true, error: '', info: { node: 'server-1' } });
      expect(status.dependencies[1]).toMatchObject({ address: unreachable, reachable: false });
      expect(status.dependencies[1].error).toMatch(/^(UNAVAILABLE|DEADLINE_EXCEEDED): /);
      client.close();
    }
    expect(await catalog.stop()).toBe(0);
    expect(await router.stop()).toBe(0);
  });

  test('SIGTERM: NOT_SERVING, then a clean stop with exit 0 and a last log line', async () => {
    const gossip = await startRole({ role: 'gossip' });
    expect(await gossip.stop()).toBe(0);
    const events = logRecords(gossip).map((record) => record.event).filter((event) => event !== undefined);
    expect(events).toEqual(['started', 'stopping', 'stopped']);
    expect((await checkHealth(gossip.grpc, 500)).answer).toBe('UNREACHABLE');
  });

  test('bad configuration exits 1 and names each field and its fix', async () => {
    const proc = await startRole({ role: 'catalog', args: ['-datacenter=DC One', '-grpc-port=99999'], waitHealthy: false });
    expect(await proc.exited).toBe(1);
    const output = proc.lines.join('\n');
    expect(output).toContain('-datacenter ("datacenter"): datacenter can only contain lowercase alphanumeric, - or _ characters.');
    expect(output).toContain('-grpc-port ("ports.grpc"): port 99999 is out of range: use 1-65535');
    expect(output).toContain('-consensus-addr ("consensus_addrs"): at least one consensus server is needed');
  });

  test('consensus: a data directory keeps the log store it was started with; an unknown store is refused', async () => {
    const lmdb = await startRole({ role: 'consensus', node: 'server-1', args: ['-raft-log-store=lmdb'] });
    expect(lmdb.lines.join('\n')).toContain(`raft log: lmdb in ${lmdb.dataDir}/raft`);
    expect(await lmdb.stop()).toBe(0);
    const wal = await startRole({ role: 'consensus', node: 'server-1', dataDir: lmdb.dataDir, waitHealthy: false });
    expect(await wal.exited).toBe(1);
    expect(wal.lines.join('\n')).toContain(`the Raft log in ${lmdb.dataDir}/raft was written by the lmdb store: start this server with -raft-log-store=lmdb`);
    const unknown = await startRole({ role: 'consensus', node: 'server-1', args: ['-raft-log-store=btree'], waitHealthy: false });
    expect(await unknown.exited).toBe(1);
    expect(unknown.lines.join('\n')).toContain('-raft-log-store ("raft.log_store"): unknown log store "btree": use wal or lmdb');
  });

  test('a port already taken fails the start with the address in the message', async () => {
    const second = await startRole({ role: 'consensus', address: consensus.address, waitHealthy: false });
    expect(await second.exited).toBe(1);
    expect(second.lines.join('\n')).toContain(`cannot listen on ${consensus.grpc}`);
  });
});
