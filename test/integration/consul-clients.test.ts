/**
 * Real Consul clients against a real cluster (DESIGN.md "Who uses it": existing Consul clients
 * through the Consul-compatible HTTP API; reference/consul-compat.md §4, toolchain.md §B7):
 *
 *   server-1..3   consensus, a three-server Raft
 *   server-1      gossip -server, segments alpha:8303 and beta:8304
 *   node-alpha-1  gossip client in segment alpha (the reconciler registers it, serfHealth passing)
 *   catalog       HTTP on <its address>:8500 over all three servers, -gossip-addr server-1:8320;
 *                 its host runs a gossip client under the same node name, default segment, as
 *                 every Consul host runs an agent: that is "the agent's node" of sessions created
 *                 without a Node, and of /v1/agent/self
 *
 * The npm `consul` package (node-consul 2.0.1, its promise API) and Debian's python3-consul
 * (python-consul 0.7.1, test/integration/python/consul_flows.py) each drive: status leader/peers;
 * agent members/self/join; catalog datacenters/register/nodes/services/service/node/deregister;
 * health service (with ?passing)/node/checks/state; KV set/get/recurse/keys/flags/cas/delete and
 * a blocking get woken by a write (node-consul: also its Watch helper); sessions
 * create/info/list/node/renew/destroy (on the agent's node when no Node is given) and a lock taken,
 * refused, released and re-taken, under lock-delay, or freed when a bound check turns critical.
 * Whatever these clients send is what an application sends: each answer is checked against what
 * Consul answers (python-consul: GET for join, lower-case JSON keys, ?dc= or "Datacenter" on
 * every call when given a datacenter, X-Consul-Index read even on a 404).
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { IncomingMessage } from 'node:http';
import { join } from 'node:path';

import Consul from 'consul';

import { UserEventJson } from '../../services/catalog/http/event-endpoint';
import { REPO_ROOT, RoleProcess, eventually, freeLoopbackAddress, startRole, stopAll, waitHealthy } from '../harness/processes';

const PROFILE = '-gossip-profile=local';
/** Debian's interpreter: python3-consul installs for it, not for whichever python3 is on PATH (toolchain.md §B8). */
const DEBIAN_PYTHON = '/usr/bin/python3';
const PYTHON_FLOWS = join(REPO_ROOT, 'test', 'integration', 'python', 'consul_flows.py');

interface CatalogNode {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  Meta: Record<string, string>;
}
interface CatalogServiceNode {
  Node: string;
  Address: string;
  NodeMeta: Record<string, string>;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  ServiceAddress: string;
  ServicePort: number;
  ServiceMeta: Record<string, string>;
}
interface HealthCheck {
  Node: string;
  CheckID: string;
  Name: string;
  Status: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
}
interface ServiceEntry {
  Node: CatalogNode;
  Service: { ID: string; Service: string; Port: number; Tags: string[] };
  Checks: HealthCheck[];
}
interface KvEntry {
  Key: string;
  Value: string | null;
  Flags: number;
  LockIndex: number;
  Session?: string;
  CreateIndex: number;
  ModifyIndex: number;
}
interface SessionInfo {
  ID: string;
  Name: string;
  Node: string;
  LockDelay: number;
  Behavior: string;
  TTL: string;
  NodeChecks: string[] | null;
}
interface Member {
  Name: string;
  Addr: string;
  Port: number;
  Status: number;
  Tags: Record<string, string>;
}

const servers: { id: string; address: string; proc?: RoleProcess }[] = [];
let serverGossip: RoleProcess;
let alpha: RoleProcess;
let catalogAgent: RoleProcess;
let catalog: RoleProcess;
let consul: Consul;

/**
 * A call with its HTTP response too: node-consul hands back `[response, body]` when its `ctx` is an
 * EventEmitter with `includeResponse` (what its own Watch uses for X-Consul-Index). This is also how
 * a `false` body is seen: node-consul's promise otherwise turns `false` into `undefined`.
 */
async function withIndex<T>(call: (options: never) => Promise<unknown>, options: Record<string, unknown>): Promise<{ index: number; body: T }> {
  const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
  const [response, body] = (await call({ ...options, ctx } as never)) as [IncomingMessage, T];
  return { index: Number(response.headers['x-consul-index']), body };
}

/** node-consul's answers, typed as the Consul shapes above (its .d.ts leaves most of them `any`). */
function as<T>(answer: Promise<unknown>): Promise<T> {
  return answer as Promise<T>;
}

function runPythonFlows(): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    // python-consul takes CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN over its arguments: keep the caller's out.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('CONSUL_HTTP_')));
    const args = [PYTHON_FLOWS, catalog.address, '8500', 'node-alpha-1', 'dc1', `${servers[0].address}:8301`];
    execFile(DEBIAN_PYTHON, args, { timeout: 30_000, env }, (err, stdout, stderr) => {
      let out: Record<string, unknown> | undefined;
      try {
        out = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        // no JSON: the process's own words say why
      }
      if (out === undefined || out.error !== undefined) {
        const hint = stderr.includes("No module named 'consul'") ? " (python3-consul is missing: apt-get install python3-consul, as .ci/run does)" : '';
        reject(new Error(`consul_flows.py failed${hint} (${err?.message ?? 'no error'}):\n${String(out?.traceback ?? stdout)}\n${stderr}`));
      } else resolve(out);
    });
  });
}

beforeAll(async () => {
  for (let i = 1; i <= 3; i++) servers.push({ id: `server-${i}`, address: freeLoopbackAddress() });
  const peers = servers.map((s) => `-initial-peer=${s.id}=${s.address}:8310`);
  for (const server of servers) server.proc = await startRole({ role: 'consensus', node: server.id, address: server.address, args: peers, waitHealthy: false });
  for (const server of servers) await waitHealthy(server.proc!);
  const serverHost = servers[0].address;
  serverGossip = await startRole({ role: 'gossip', node: 'server-1', address: serverHost, args: ['-server', '-segments=alpha:8303', '-segments=beta:8304', PROFILE] });
  alpha = await startRole({ role: 'gossip', node: 'node-alpha-1', args: ['-segment=alpha', `-join=${serverHost}:8303`, PROFILE] });
  const catalogHost = freeLoopbackAddress();
  catalogAgent = await startRole({ role: 'gossip', node: 'catalog', address: catalogHost, args: [`-join=${serverHost}:8301`, PROFILE] });
  catalog = await startRole({ role: 'catalog', node: 'catalog', address: catalogHost, args: [...servers.map((s) => `-consensus-addr=${s.address}:8310`), `-gossip-addr=${serverGossip.grpc}`] });
  consul = new Consul({ host: catalog.address, port: 8500 });
  // Sessions below belong to node-alpha-1 and to the agent's node: wait for the reconciler to
  // register both with serfHealth passing.
  for (const node of ['node-alpha-1', 'catalog']) {
    await eventually(
      `${node} in the catalog with serfHealth passing`,
      async () => {
        const checks = await as<HealthCheck[]>(consul.health.node(node)).catch(() => []);
        return checks.some((c) => c.CheckID === 'serfHealth' && c.Status === 'passing') || undefined;
      },
      20_000,
    );
  }
});

afterAll(async () => {
  consul?.destroy();
  await stopAll();
});

describe('the npm consul client (node-consul 2.0.1)', () => {
  test('status: the Raft leader and peers as ip:8300 (§4.6)', async () => {
    const peers = await as<string[]>(consul.status.peers());
    expect([...peers].sort()).toEqual(servers.map((s) => `${s.address}:8300`).sort());
    expect(peers).toContain(await as<string>(consul.status.leader()));
  });

  test('agent: members of the default segment, self (one node ID everywhere), join (PUT)', async () => {
    const members = await as<Member[]>(consul.agent.members());
    expect(members.map((m) => m.Name).sort()).toEqual(['catalog', 'server-1']);
    expect(members.find((m) => m.Name === 'server-1')).toMatchObject({ Addr: servers[0].address, Port: 8301, Status: 1, Tags: { role: 'consul', dc: 'dc1', segment: '', sl_alpha: `${servers[0].address}:8303`, sl_beta: `${servers[0].address}:8304` } });
    const self = await as<{ Config: { Datacenter: string; NodeName: string; NodeID: string }; Member: Member }>(consul.agent.self());
    expect(self.Config).toMatchObject({ Datacenter: 'dc1', NodeName: 'catalog' });
    expect(self.Member).toMatchObject({ Name: 'catalog', Addr: catalogAgent.address, Port: 8301, Tags: { role: 'node', segment: '' } });
    // Consul's Config.NodeID is the agent's node ID: its gossip `id` tag and its catalog node's ID.
    const agentNode = await as<{ Node: CatalogNode }>(consul.catalog.node.services('catalog'));
    expect([self.Config.NodeID, self.Member.Tags.id]).toEqual([agentNode.Node.ID, agentNode.Node.ID]);
    // Joining a member already known is a success (Consul's JoinLAN counts it).
    await expect(consul.agent.join(`${servers[0].address}:8301`)).resolves.toBeUndefined();
  });

  test('catalog: register, nodes, services, service (by tag), node (§4.1)', async () => {
    expect(await consul.catalog.datacenters()).toEqual(['dc1']);
    await consul.catalog.register({
      node: 'js-node',
      address: '10.30.0.7',
      nodemeta: { rack: 'r1' },
      service: { id: 'js-web-1', service: 'js-web', tags: ['v2', 'green'], port: 9090, address: '10.30.0.8', meta: { team: 'web' } },
      check: { checkid: 'service:js-web-1', name: 'js-web alive', status: 'passing', serviceid: 'js-web-1' },
    });
    await consul.catalog.register({
      node: 'js-node',
      address: '10.30.0.7',
      nodemeta: { rack: 'r1' },
      service: { id: 'js-db-1', service: 'js-db', port: 5432 },
      checks: [
        { checkid: 'service:js-db-1', name: 'js-db alive', status: 'warning', serviceid: 'js-db-1' },
        { checkid: 'disk', name: 'disk space', status: 'passing' },
      ],
    });
    // A service on the gossip node, without touching the node the reconciler wrote.
    await consul.catalog.register({ node: 'node-alpha-1', address: alpha.address, skipnodeupdate: true, service: { id: 'api-1', service: 'api', port: 7000 }, check: { checkid: 'service:api-1', name: 'api alive', status: 'passing', serviceid: 'api-1' } });

    const nodes = await as<CatalogNode[]>(consul.catalog.node.list());
    expect(nodes.map((n) => n.Node)).toEqual(['catalog', 'js-node', 'node-alpha-1', 'server-1']);
    expect(nodes.find((n) => n.Node === 'node-alpha-1')).toMatchObject({ Address: alpha.address, Meta: { 'consul-network-segment': 'alpha' } });
    expect(nodes.find((n) => n.Node === 'js-node')).toMatchObject({ Address: '10.30.0.7', Datacenter: 'dc1', Meta: { rack: 'r1' } });
    expect(await consul.catalog.node.list({ 'node-meta': ['rack:r1'] } as never)).toHaveLength(1);

    // Each service's tags are a set (Consul builds them from a map: no order).
    const services = await as<Record<string, string[]>>(consul.catalog.service.list());
    expect(Object.fromEntries(Object.entries(services).map(([name, tags]) => [name, [...tags].sort()]))).toEqual({ api: [], consul: [], 'js-db': [], 'js-web': ['green', 'v2'] });
    const web = await as<CatalogServiceNode[]>(consul.catalog.service.nodes({ service: 'js-web', tag: 'green' }));
    expect(web).toEqual([expect.objectContaining({ Node: 'js-node', Address: '10.30.0.7', NodeMeta: { rack: 'r1' }, ServiceID: 'js-web-1', ServiceName: 'js-web', ServiceTags: ['v2', 'green'], ServiceAddress: '10.30.0.8', ServicePort: 9090, ServiceMeta: { team: 'web' } })]);
    expect(await consul.catalog.service.nodes({ service: 'js-web', tag: 'blue' })).toEqual([]);
    const consulService = await as<CatalogServiceNode[]>(consul.catalog.service.nodes('consul'));
    expect(consulService.map((s) => `${s.Node}:${s.ServicePort}`)).toEqual(['server-1:8300']);

    const node = await as<{ Node: CatalogNode; Services: Record<string, { Service: string; Port: number }> }>(consul.catalog.node.services('js-node'));
    expect(node.Node).toMatchObject({ Node: 'js-node', Address: '10.30.0.7' });
    expect(Object.keys(node.Services).sort()).toEqual(['js-db-1', 'js-web-1']);
    expect(node.Services['js-db-1']).toMatchObject({ Service: 'js-db', Port: 5432 });
  });

  test('health: service with serfHealth and ?passing, node, checks, state; a blocking read woken by a check (§4.2, §4.4)', async () => {
    const api = await as<ServiceEntry[]>(consul.health.service('api'));
    expect(api).toHaveLength(1);
    expect(api[0].Node).toMatchObject({ Node: 'node-alpha-1', Meta: { 'consul-network-segment': 'alpha' } });
    expect(api[0].Checks.map((c) => `${c.CheckID}:${c.Status}`).sort()).toEqual(['serfHealth:passing', 'service:api-1:passing']);
    expect(api[0].Checks.find((c) => c.CheckID === 'serfHealth')).toMatchObject({ Name: 'Serf Health Status', Output: 'Agent alive and reachable' });
    expect((await as<ServiceEntry[]>(consul.health.service({ service: 'api', passing: true }))).map((e) => e.Service.ID)).toEqual(['api-1']);
    // A warning service check keeps the instance out of ?passing.
    expect(await consul.health.service({ service: 'js-db' })).toHaveLength(1);
    expect(await consul.health.service({ service: 'js-db', passing: true })).toEqual([]);

    const onNode = await as<HealthCheck[]>(consul.health.node('js-node'));
    expect(onNode.map((c) => `${c.CheckID}:${c.Status}`)).toEqual(['disk:passing', 'service:js-db-1:warning', 'service:js-web-1:passing']);
    expect(await consul.health.checks('js-db')).toEqual([expect.objectContaining({ CheckID: 'service:js-db-1', ServiceName: 'js-db', Status: 'warning' })]);
    expect((await as<HealthCheck[]>(consul.health.state('warning'))).map((c) => c.CheckID)).toEqual(['service:js-db-1']);
    const passing = await as<HealthCheck[]>(consul.health.state('passing'));
    expect(passing.filter((c) => c.CheckID === 'serfHealth').map((c) => c.Node).sort()).toEqual(['catalog', 'node-alpha-1', 'server-1']);

    const before = await withIndex<ServiceEntry[]>(consul.health.service.bind(consul.health), { service: 'js-web' });
    expect(before.index).toBeGreaterThan(0);
    const started = Date.now();
    const woken = withIndex<ServiceEntry[]>(consul.health.service.bind(consul.health), { service: 'js-web', index: String(before.index), wait: '20s' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await consul.catalog.register({ node: 'js-node', address: '10.30.0.7', nodemeta: { rack: 'r1' }, check: { checkid: 'service:js-web-1', name: 'js-web alive', status: 'critical', serviceid: 'js-web-1' } });
    const after = await woken;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(after.index).toBeGreaterThan(before.index);
    // The node's own checks come with the instance's (§4.2).
    expect(after.body[0].Checks.map((c) => `${c.CheckID}:${c.Status}`).sort()).toEqual(['disk:passing', 'service:js-web-1:critical']);
    expect(await consul.health.service({ service: 'js-web', passing: true })).toEqual([]);
  });

  test('kv: set, get, recurse, keys, raw, flags, cas, delete with cas and recurse (§4.3)', async () => {
    expect(await consul.kv.set('js/config', 'one')).toBe(true);
    expect(await consul.kv.set({ key: 'js/db/url', value: 'postgres://', flags: 42 })).toBe(true);
    expect(await consul.kv.set('js/db/user', Buffer.from('app'))).toBe(true);
    const read = await withIndex<KvEntry>(consul.kv.get.bind(consul.kv), { key: 'js/config' });
    expect(read.body).toMatchObject({ Key: 'js/config', Value: 'one', Flags: 0, LockIndex: 0 });
    expect(read.index).toBe(read.body.ModifyIndex);
    expect(await consul.kv.get({ key: 'js/config', raw: true })).toEqual(Buffer.from('one'));
    const all = await as<KvEntry[]>(consul.kv.get({ key: 'js/', recurse: true }));
    expect(all.map((e) => [e.Key, e.Value, e.Flags])).toEqual([
      ['js/config', 'one', 0],
      ['js/db/url', 'postgres://', 42],
      ['js/db/user', 'app', 0],
    ]);
    expect(await consul.kv.keys('js/')).toEqual(['js/config', 'js/db/url', 'js/db/user']);
    expect(await consul.kv.keys({ key: 'js/', separator: '/' })).toEqual(['js/config', 'js/db/']);
    // A missing key is a 404, which node-consul answers as undefined.
    expect(await consul.kv.get('js/missing')).toBeUndefined();

    const modify = read.body.ModifyIndex;
    const set = consul.kv.set.bind(consul.kv);
    expect((await withIndex<boolean>(set, { key: 'js/config', value: 'two', cas: 0 })).body).toBe(false);
    expect((await withIndex<boolean>(set, { key: 'js/config', value: 'two', cas: modify })).body).toBe(true);
    expect((await withIndex<boolean>(set, { key: 'js/config', value: 'three', cas: modify })).body).toBe(false);
    const updated = await as<KvEntry>(consul.kv.get('js/config'));
    expect([updated.Value, updated.CreateIndex]).toEqual(['two', read.body.CreateIndex]);
    const del = consul.kv.del.bind(consul.kv);
    expect((await withIndex<boolean>(del, { key: 'js/config', cas: modify })).body).toBe(false);
    expect((await withIndex<boolean>(del, { key: 'js/config', cas: updated.ModifyIndex })).body).toBe(true);
    expect(await consul.kv.get('js/config')).toBeUndefined();
    expect(await consul.kv.del({ key: 'js/', recurse: true })).toBe(true);
    expect(await consul.kv.get({ key: 'js/', recurse: true })).toBeUndefined();
  });

  test('kv blocking: index/wait woken by a set; at the wait, the same index comes back (§4.4)', async () => {
    await consul.kv.set('js-watch/me', 'before');
    const get = consul.kv.get.bind(consul.kv);
    const first = await withIndex<KvEntry>(get, { key: 'js-watch/me' });
    let answered = false;
    const started = Date.now();
    const blocked = withIndex<KvEntry>(get, { key: 'js-watch/me', index: String(first.index), wait: '20s' }).then((answer) => {
      answered = true;
      return answer;
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(answered).toBe(false);
    await consul.kv.set('js-watch/me', 'after');
    const woken = await blocked;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(woken.index).toBeGreaterThan(first.index);
    expect(woken.body.Value).toBe('after');

    const timedStart = Date.now();
    const timedOut = await withIndex<KvEntry>(get, { key: 'js-watch/me', index: String(woken.index), wait: '1s' });
    // wait plus at most wait/16 of jitter; nothing changed, so the same index and value.
    expect(Date.now() - timedStart).toBeGreaterThanOrEqual(900);
    expect(Date.now() - timedStart).toBeLessThan(5_000);
    expect([timedOut.index, timedOut.body.Value]).toEqual([woken.index, 'after']);
    await consul.kv.del({ key: 'js-watch/', recurse: true });
  });

  test("blocking through the client's Watch helper: every change to a service's health, in order (§4.4)", async () => {
    const watch = consul.watch({ method: consul.health.service, options: { service: 'js-web', wait: '10s' } });
    const seen: string[] = [];
    const errors: Error[] = [];
    watch.on('change', (entries: ServiceEntry[]) => seen.push(entries.flatMap((e) => e.Checks.filter((c) => c.ServiceID !== '').map((c) => c.Status)).join(',')));
    watch.on('error', (err: Error) => errors.push(err));
    try {
      await eventually('the first answer', () => seen.length > 0 || undefined, 5_000);
      for (const status of ['warning', 'passing']) {
        await consul.catalog.register({ node: 'js-node', address: '10.30.0.7', nodemeta: { rack: 'r1' }, check: { checkid: 'service:js-web-1', name: 'js-web alive', status: status as 'warning' | 'passing', serviceid: 'js-web-1' } });
        await eventually(`the watch to see ${status}`, () => seen[seen.length - 1] === status || undefined, 5_000);
      }
    } finally {
      watch.end();
    }
    // The helper emits on every new index; an unrelated write (another table's) repeats a status.
    expect(seen.filter((status, i) => status !== seen[i - 1])).toEqual(['critical', 'warning', 'passing']);
    expect(errors).toEqual([]);
  });

  test("sessions and a lock: create (on the agent's node and on another), info, list, node, renew, acquire/release, lock-delay, destroy", async () => {
    // No node: the agent's own, as applications usually create them.
    const { ID: holder } = await consul.session.create({ name: 'js-lock', ttl: '15s', lockdelay: '1s' });
    const { ID: other } = await consul.session.create({ name: 'js-other', node: 'node-alpha-1' });
    expect(await consul.session.info(holder)).toMatchObject({ ID: holder, Name: 'js-lock', Node: 'catalog', TTL: '15s', LockDelay: 1e9, Behavior: 'release', NodeChecks: ['serfHealth'] });
    // Consul's defaults: 15 s lock-delay, release.
    expect(await consul.session.info(other)).toMatchObject({ LockDelay: 15e9, Behavior: 'release', TTL: '' });
    const mine = (list: SessionInfo[]) => list.filter((s) => s.ID === holder || s.ID === other).map((s) => s.Name).sort();
    expect(mine(await consul.session.list())).toEqual(['js-lock', 'js-other']);
    expect(mine(await consul.session.node('node-alpha-1'))).toEqual(['js-other']);
    expect(mine(await consul.session.node('catalog'))).toEqual(['js-lock']);
    expect(await as<SessionInfo[]>(consul.session.renew(holder))).toEqual([expect.objectContaining({ ID: holder, TTL: '15s' })]);

    const set = consul.kv.set.bind(consul.kv);
    expect(await consul.kv.set({ key: 'js-lock/leader', value: 'holder', acquire: holder })).toBe(true);
    expect((await withIndex<boolean>(set, { key: 'js-lock/leader', value: 'other', acquire: other })).body).toBe(false);
    expect(await consul.kv.get('js-lock/leader')).toMatchObject({ Value: 'holder', Session: holder, LockIndex: 1 });
    expect((await withIndex<boolean>(set, { key: 'js-lock/leader', value: 'other', release: other })).body).toBe(false);
    expect(await consul.kv.set({ key: 'js-lock/leader', value: 'holder', release: holder })).toBe(true);
    const released = await as<KvEntry>(consul.kv.get('js-lock/leader'));
    expect([released.Session, released.LockIndex]).toEqual([undefined, 1]);
    // Re-taken, then the holder is destroyed: the lock is released and under its 1 s lock-delay.
    expect(await consul.kv.set({ key: 'js-lock/leader', value: 'holder', acquire: holder })).toBe(true);
    await consul.session.destroy(holder);
    expect((await as<KvEntry>(consul.kv.get('js-lock/leader'))).Session).toBeUndefined();
    expect((await withIndex<boolean>(set, { key: 'js-lock/leader', value: 'other', acquire: other })).body).toBe(false);
    await eventually('the lock-delay to pass', async () => (await withIndex<boolean>(set, { key: 'js-lock/leader', value: 'other', acquire: other })).body || undefined, 5_000);
    expect(await consul.kv.get('js-lock/leader')).toMatchObject({ Value: 'other', Session: other, LockIndex: 3 });
    expect(await consul.session.info(holder)).toBeUndefined();
    await consul.session.destroy(other);
    expect(mine(await consul.session.list())).toEqual([]);

    // A session bound to a service's check too (Checks: serfHealth and the check): the check turning
    // critical ends the session, and its lock is released.
    const { ID: bound } = await consul.session.create({ name: 'js-bound', node: 'node-alpha-1', checks: ['serfHealth', 'service:api-1'], lockdelay: '0s' });
    expect(await consul.kv.set({ key: 'js-lock/bound', value: 'x', acquire: bound })).toBe(true);
    await consul.catalog.register({ node: 'node-alpha-1', address: alpha.address, skipnodeupdate: true, check: { checkid: 'service:api-1', name: 'api alive', status: 'critical', serviceid: 'api-1' } });
    await eventually('the bound session to end', async () => ((await consul.session.info(bound)) === undefined ? true : undefined), 5_000);
    const freed = await as<KvEntry>(consul.kv.get('js-lock/bound'));
    expect([freed.Session, freed.LockIndex, freed.Value]).toEqual([undefined, 1, 'x']);
    await consul.kv.del({ key: 'js-lock/', recurse: true });
  });

  test('catalog deregister: a check, a service, then the node with everything on it (§4.1)', async () => {
    await consul.catalog.deregister({ node: 'js-node', checkid: 'disk' });
    expect((await as<HealthCheck[]>(consul.health.node('js-node'))).map((c) => c.CheckID)).toEqual(['service:js-db-1', 'service:js-web-1']);
    await consul.catalog.deregister({ node: 'js-node', serviceid: 'js-db-1' });
    expect(Object.keys((await as<{ Services: Record<string, unknown> }>(consul.catalog.node.services('js-node'))).Services)).toEqual(['js-web-1']);
    await consul.catalog.deregister({ node: 'node-alpha-1', serviceid: 'api-1' });
    await consul.catalog.deregister('js-node');
    // Consul answers an unknown node with a `null` body (node-consul's promise makes that undefined).
    expect((await withIndex<unknown>(consul.catalog.node.services.bind(consul.catalog.node), { node: 'js-node' })).body).toBeNull();
    expect((await as<CatalogNode[]>(consul.catalog.node.list())).map((n) => n.Node)).toEqual(['catalog', 'node-alpha-1', 'server-1']);
    expect(await consul.catalog.service.list()).toEqual({ consul: [] });
    // The gossip node keeps its serfHealth.
    expect((await as<HealthCheck[]>(consul.health.node('node-alpha-1'))).map((c) => `${c.CheckID}:${c.Status}`)).toEqual(['serfHealth:passing']);
  });

  // node-consul decodes Payload from base64 into a string.
  test('event: fire (a payload, a node filter), list by name once gossip brings it back; an event for another node is not listed here', async () => {
    // Fired first: when the second is listed, the server agent's stream has brought this one too.
    const forAlpha = await as<UserEventJson>(consul.event.fire({ name: 'js-deploy', payload: 'elsewhere', node: '^node-alpha' }));
    expect(forAlpha).toMatchObject({ Name: 'js-deploy', NodeFilter: '^node-alpha', Payload: 'elsewhere' });
    const fired = await as<UserEventJson>(consul.event.fire('js-deploy', 'v42'));
    expect(fired).toEqual({ ID: expect.stringMatching(/^[0-9a-f-]{36}$/), Name: 'js-deploy', Payload: 'v42', NodeFilter: '', ServiceFilter: '', TagFilter: '', Version: 1, LTime: 0 });
    const listed = await eventually(
      'the event in the catalog agent\'s list',
      async () => {
        const events = await as<UserEventJson[]>(consul.event.list('js-deploy'));
        return events.some((event) => event.ID === fired.ID) ? events : undefined;
      },
      10_000,
    );
    expect(listed.map((event) => [event.ID, event.Payload])).toEqual([[fired.ID, 'v42']]);
    expect(await as<UserEventJson[]>(consul.event.list('js-nothing'))).toEqual([]);
  });
});

describe("Debian's python3-consul (python-consul 0.7.1)", () => {
  let out: Record<string, Record<string, unknown>>;

  beforeAll(async () => {
    out = (await runPythonFlows()) as Record<string, Record<string, unknown>>;
  });

  test('status and agent: leader among the peers; members of the default segment; self', () => {
    expect(([...(out.status.peers as string[])]).sort()).toEqual(servers.map((s) => `${s.address}:8300`).sort());
    expect(out.status.peers).toContain(out.status.leader);
    expect(out.agent).toEqual({
      members: ['catalog', 'server-1'],
      member_segments: { catalog: '', 'server-1': '' },
      self_datacenter: 'dc1',
      self_node: 'catalog',
      self_member: 'catalog',
      self_node_id_is_member_id: true,
      self_node_id_is_catalog_id: true,
      join: true,
    });
  });

  test('catalog: register (lower-case keys, "Datacenter" in the body), nodes, services, service by tag, node; null for an unknown node', () => {
    expect(out.catalog).toEqual({
      register: true,
      register_dc: true,
      datacenters: ['dc1'],
      index: expect.any(Number),
      nodes: ['catalog', 'node-alpha-1', 'py-node', 'server-1'],
      dc_nodes: ['catalog', 'node-alpha-1', 'py-node', 'server-1'],
      services: { consul: [], 'py-db': [], 'py-web': ['blue', 'v1'] },
      service: [{ Node: 'py-node', Address: '10.20.0.5', ServiceID: 'py-web-1', ServicePort: 8080, ServiceTags: ['v1', 'blue'] }],
      service_tag_blue: ['py-web-1'],
      node_address: '10.20.0.5',
      node_services: ['py-db-1', 'py-web-1'],
      missing_node: null,
    });
    expect(out.catalog.index).toBeGreaterThan(0);
  });

  test('health: service, ?passing=1 drops a critical instance, node, checks, state', () => {
    expect(out.health).toEqual({
      service: [{ Node: 'py-node', Service: 'py-web-1', Checks: ['service:py-web-1'] }],
      service_passing: ['py-web-1'],
      db_passing: [],
      node: [
        ['service:py-db-1', 'critical'],
        ['service:py-web-1', 'passing'],
      ],
      checks: [['service:py-db-1', 'critical']],
      critical: ['service:py-db-1'],
    });
  });

  test('kv: put, get (X-Consul-Index even on a 404), recurse, keys, flags, cas, delete with cas and recurse, a blocking get woken by a put', () => {
    expect(out.kv).toEqual({
      put: true,
      put_flags: true,
      put_dc: true,
      get: { Key: 'py/config', Value: 'one', Flags: 0, index_is_modify: true },
      recurse: [
        ['py/config', 'one', 0],
        ['py/db/url', 'postgres://', 42],
        ['py/db/user', 'app', 0],
      ],
      keys_separator: ['py/config', 'py/db/'],
      keys: ['py/config', 'py/db/url', 'py/db/user'],
      missing: { value: null, index: expect.any(Number) },
      cas_create_existing: false,
      cas_right: true,
      cas_stale: false,
      after_cas: 'two',
      delete_cas_stale: false,
      delete_cas_right: true,
      deleted: true,
      blocking: { value: 'changed', index_grew: true, seconds: expect.any(Number) },
      delete_recurse: true,
      after_delete_recurse: null,
    });
    expect((out.kv.missing as { index: number }).index).toBeGreaterThan(0);
    expect((out.kv.blocking as { seconds: number }).seconds).toBeLessThan(10);
  });

  test('sessions and a lock: create (the agent\'s node; lock_delay and ttl as "Ns" strings), info, renew, list, node, acquire/release, destroy (release and delete behaviours)', () => {
    expect(out.session).toEqual({
      info: { Name: 'py-lock', Node: 'catalog', TTL: '10s', Behavior: 'release', LockDelay: 0 },
      renew: { ID: true, TTL: '10s' },
      list: ['py-lock', 'py-other'],
      node: ['py-other'],
      acquire: true,
      acquire_other: false,
      held: { Session: true, LockIndex: 1, Value: 'me' },
      release_other: false,
      release: true,
      released: { Session: null, LockIndex: 1 },
      acquire_after_release: true,
      destroy_other: true,
      lock_key_after_destroy_delete_behavior: null,
      destroy: true,
      info_after_destroy: null,
    });
  });

  test('catalog deregister (lower-case keys): a service, then the node', () => {
    expect(out.deregister).toEqual({ service: true, services_after: ['py-web-1'], node: true, node_after: null, web_after: [] });
  });

  test('event: fire (a payload, none: null), list by name once gossip brings them back, a blocking list woken by the next', () => {
    expect(out.event.fired).toEqual({ Name: 'py-deploy', Version: 1, LTime: 0, bare_payload: null });
    expect(out.event.listed).toEqual([
      [true, false, 'v7'],
      [false, true, null],
    ]);
    expect(out.event.woken).toEqual(['v7', null, 'v8']);
    expect(out.event.woken_index_moved).toBe(true);
  });
});

// Real processes on 2 shared cores: each test bounds its own waits; this is the backstop.
jest.setTimeout(120_000);
