/**
 * The reconciler with real processes: gossip events become catalog state (DESIGN.md data flows 3
 * and 4; reference/consul-compat.md §2.6-2.8, §4.6, §4.7), the seed guide's walk-through.
 *
 *   server-1      consensus (one-server Raft) and gossip -server, segments alpha:8303, beta:8304
 *   node-alpha-1  gossip client, -segment=alpha, joins server-1:8303
 *   node-beta-1   gossip client, -segment=beta, joins server-1:8304
 *   catalog-a/b   two catalogs: exactly one runs the reconciler (a consensus lease); each is
 *                 given a dead gossip address first, so its member watch fails over to server-1
 *
 * Then: the active catalog is SIGKILLed and the other takes over; node-alpha-1 is SIGKILLed
 * (serfHealth turns critical with Consul's output); node-beta-1 gets SIGTERM, and clients leave on
 * terminate (Consul's leave_on_terminate), so it is deregistered.
 * `-gossip-profile=local`: these claims are about the catalog, not failure-detection timings.
 */
import { RoleProcess, eventually, freeLoopbackAddress, logRecords, startRole, stopAll } from '../harness/processes';

const PROFILE = '-gossip-profile=local';

interface CatalogNode {
  readonly Node: string;
  readonly Address: string;
  readonly ID?: string;
  readonly Meta: Record<string, string>;
}

interface Check {
  readonly CheckID: string;
  readonly Name: string;
  readonly Status: string;
  readonly Output: string;
}

const serverHost = freeLoopbackAddress();
let consensus: RoleProcess;
let serverGossip: RoleProcess;
let alpha: RoleProcess;
let beta: RoleProcess;
const catalogs: RoleProcess[] = [];

function http(catalog: RoleProcess): string {
  return `http://${catalog.address}:8500`;
}

async function getJson<T>(catalog: RoleProcess, path: string): Promise<{ status: number; body: T; text: string }> {
  const response = await fetch(`${http(catalog)}${path}`, { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  let body: T = undefined as T;
  try {
    body = JSON.parse(text) as T;
  } catch {
    // not JSON: the text says why
  }
  return { status: response.status, body, text };
}

async function catalogNodes(catalog: RoleProcess): Promise<CatalogNode[]> {
  const response = await getJson<CatalogNode[]>(catalog, '/v1/catalog/nodes');
  if (response.status !== 200) throw new Error(`/v1/catalog/nodes answered ${response.status}: ${response.text}`);
  return response.body;
}

/** The node's serfHealth in `/v1/health/node/:node`. */
async function serfHealth(catalog: RoleProcess, node: string): Promise<Check | undefined> {
  const response = await getJson<Check[]>(catalog, `/v1/health/node/${node}`);
  if (response.status !== 200) throw new Error(`/v1/health/node/${node} answered ${response.status}: ${response.text}`);
  return response.body.find((check) => check.CheckID === 'serfHealth');
}

function isActive(catalog: RoleProcess): boolean {
  return logRecords(catalog).some((record) => String(record.msg).startsWith('reconciler: active'));
}

function activeCatalog(): RoleProcess {
  const active = catalogs.filter((c) => c.child.exitCode === null && c.child.signalCode === null && isActive(c));
  if (active.length !== 1) throw new Error(`expected one active reconciler, found ${active.length}`);
  return active[0];
}

beforeAll(async () => {
  consensus = await startRole({ role: 'consensus', node: 'server-1', address: serverHost, args: [`-initial-peer=server-1=${serverHost}:8310`] });
  serverGossip = await startRole({ role: 'gossip', node: 'server-1', address: serverHost, args: ['-server', '-segments=alpha:8303', '-segments=beta:8304', PROFILE] });
  alpha = await startRole({ role: 'gossip', node: 'node-alpha-1', args: ['-segment=alpha', `-join=${serverHost}:8303`, PROFILE] });
  beta = await startRole({ role: 'gossip', node: 'node-beta-1', args: ['-segment=beta', `-join=${serverHost}:8304`, PROFILE] });
  // Nothing listens on the first gossip address: the member watch must move on to server-1's.
  const deadGossip = `${freeLoopbackAddress()}:8320`;
  for (const name of ['catalog-a', 'catalog-b']) {
    catalogs.push(await startRole({ role: 'catalog', node: name, args: [`-consensus-addr=${consensus.grpc}`, `-gossip-addr=${deadGossip}`, `-gossip-addr=${serverGossip.grpc}`] }));
  }
});

afterAll(async () => {
  await stopAll();
});

describe('gossip into the catalog (§4.7)', () => {
  test('exactly one catalog runs the reconciler', async () => {
    await eventually('a catalog to win the reconciler election', () => catalogs.some(isActive) || undefined, 15_000);
    // Give the other time to (wrongly) win too.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(catalogs.filter(isActive)).toHaveLength(1);
  });

  test("clients appear in /v1/catalog/nodes with their segment in node meta and serfHealth passing (Consul's output)", async () => {
    const catalog = activeCatalog();
    const nodes = await eventually(
      'server-1, node-alpha-1 and node-beta-1 in the catalog',
      async () => {
        const listed = await catalogNodes(catalog);
        return ['server-1', 'node-alpha-1', 'node-beta-1'].every((name) => listed.some((n) => n.Node === name)) ? listed : undefined;
      },
      20_000,
    );
    const byName = new Map(nodes.map((n) => [n.Node, n]));
    expect(byName.get('node-alpha-1')).toMatchObject({ Address: alpha.address, Meta: { 'consul-network-segment': 'alpha' } });
    expect(byName.get('node-beta-1')).toMatchObject({ Address: beta.address, Meta: { 'consul-network-segment': 'beta' } });
    expect(byName.get('server-1')).toMatchObject({ Address: serverHost, Meta: { 'consul-network-segment': '' } });
    for (const node of ['server-1', 'node-alpha-1', 'node-beta-1']) {
      expect(await eventually(`serfHealth of ${node}`, () => serfHealth(catalog, node), 10_000)).toMatchObject({ Name: 'Serf Health Status', Status: 'passing', Output: 'Agent alive and reachable' });
    }
    // The gossip agent's node ID (its `id` tag) is the catalog node's ID.
    const members = (await getJson<{ Name: string; Tags: Record<string, string> }[]>(catalog, '/v1/agent/members?segment=_all')).body;
    expect(byName.get('node-alpha-1')?.ID).toBe(members.find((m) => m.Name === 'node-alpha-1')?.Tags.id);
  });

  test('the server is registered with the consul service on 8300 (§4.1)', async () => {
    const response = await getJson<{ Services: Record<string, unknown> }>(activeCatalog(), '/v1/catalog/node/server-1');
    expect(response.body.Services.consul).toMatchObject({ ID: 'consul', Service: 'consul', Port: 8300 });
    const instances = (await getJson<{ Node: string; ServicePort: number }[]>(activeCatalog(), '/v1/catalog/service/consul')).body;
    expect(instances.map((i) => `${i.Node}:${i.ServicePort}`)).toEqual(['server-1:8300']);
  });

  test('/v1/agent/members?segment=alpha lists only alpha: its client and the server (§2.6)', async () => {
    for (const catalog of catalogs) {
      const response = await getJson<{ Name: string; Port: number; Status: number; Tags: Record<string, string> }[]>(catalog, '/v1/agent/members?segment=alpha');
      expect(response.status).toBe(200);
      expect(response.body.map((m) => m.Name).sort()).toEqual(['node-alpha-1', 'server-1']);
      expect(response.body.find((m) => m.Name === 'server-1')).toMatchObject({ Port: 8303, Status: 1, Tags: { role: 'consul', segment: 'alpha' } });
    }
    const wan = await getJson(catalogs[0], '/v1/agent/members?wan=1&segment=alpha');
    expect(wan).toMatchObject({ status: 400, text: 'Cannot provide a segment with wan=true' });
  });

  test('/v1/operator/segment is ["","alpha","beta"] (§2.7); /v1/status names the Raft leader as ip:8300 (§4.6)', async () => {
    expect((await getJson(catalogs[0], '/v1/operator/segment')).body).toEqual(['', 'alpha', 'beta']);
    expect((await getJson(catalogs[0], '/v1/status/leader')).body).toBe(`${serverHost}:8300`);
    expect((await getJson(catalogs[0], '/v1/status/peers')).body).toEqual([`${serverHost}:8300`]);
  });

  test('when the active catalog dies (SIGKILL), the other takes the reconciler over within the lease TTL', async () => {
    const dead = activeCatalog();
    const survivor = catalogs.find((c) => c !== dead)!;
    dead.child.kill('SIGKILL');
    await dead.exited;
    const killedAt = Date.now();
    await eventually('the surviving catalog to become the reconciler', () => isActive(survivor) || undefined, 15_000);
    // TTL 5 s, a try every second, and the consensus leader's lease check.
    expect(Date.now() - killedAt).toBeLessThan(10_000);
  });

  test("a client killed with SIGKILL turns serfHealth critical, with Consul's output; its node stays", async () => {
    const catalog = activeCatalog();
    alpha.child.kill('SIGKILL');
    await alpha.exited;
    const check = await eventually(
      'serfHealth of node-alpha-1 to turn critical',
      async () => {
        const found = await serfHealth(catalog, 'node-alpha-1');
        return found?.Status === 'critical' ? found : undefined;
      },
      30_000,
    );
    expect(check).toMatchObject({ Status: 'critical', Output: 'Agent not live or unreachable' });
    expect((await catalogNodes(catalog)).map((n) => n.Node)).toContain('node-alpha-1');
    expect(await serfHealth(catalog, 'node-beta-1')).toMatchObject({ Status: 'passing' });
  });

  test('a client that leaves gracefully (SIGTERM: clients leave on terminate) is deregistered', async () => {
    const catalog = activeCatalog();
    await beta.stop();
    await eventually(
      'node-beta-1 to leave the catalog',
      async () => ((await catalogNodes(catalog)).some((n) => n.Node === 'node-beta-1') ? undefined : true),
      20_000,
    );
    expect(await serfHealth(catalog, 'node-beta-1')).toBeUndefined();
    const actions = logRecords(catalog).map((r) => String(r.msg));
    expect(actions).toContainEqual(expect.stringMatching(/^reconciler: deregistered node-beta-1: the member left/));
    expect(actions).toContainEqual(expect.stringMatching(/^reconciler: marked serfHealth critical on node-alpha-1/));
  });
});
