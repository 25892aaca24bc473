// `consulate members` through the catalog's /v1/agent/members (reference/consul-compat.md §2.5,
// §2.6): Consul's columns, labels, sorting and exit codes from the HTTP answer, which source a
// command line picks, and the fall back to the gossip agent when no catalog answers. `-wan`: the
// WAN pool from a fake federation router behind the catalog's real agent endpoint, in the table
// `consul members -wan` prints.
import { trace } from '@opentelemetry/api';

import { registerAgentEndpoints } from '../../services/catalog/http/agent-endpoint';
import { RouterClient } from '../../services/catalog/router-client';
import { FakeRouter, startFakeRouter } from '../../services/catalog/testing/fake-router';
import { HttpHarness, startHttp } from '../../services/catalog/testing/http-harness';
import { Member } from '../../services/gen/consulate/gossip/v1/membership';
import { AreaMember } from '../../services/gen/consulate/router/v1/operator';
import { ServedCatalog, captureIo, closedPort, serveCatalog } from '../testing/served-catalog';
import { makeMembersCommand, memberSource, membersCommand, membersTable, rowOfAgentMember } from './members';

const VERSION_TAGS = { build: '0.1.0:abc', vsn: '2', vsn_min: '2', vsn_max: '3', dc: 'dc1' };

function member(name: string, address: string, port: number, statusCode: number, tags: Record<string, string>): Member {
  return { name, address, port, tags: { ...VERSION_TAGS, ...tags }, status: ['none', 'alive', 'leaving', 'left', 'failed'][statusCode], statusCode, segment: tags.segment ?? '', incarnation: 0n };
}

const MEMBERS = [
  member('node-beta-1', '10.0.2.1', 8301, 1, { role: 'node', segment: 'beta' }),
  member('server-1', '10.0.0.1', 8301, 1, { role: 'consul', segment: '' }),
  member('node-default-1', '10.0.3.1', 8301, 4, { role: 'node', segment: '' }),
  member('node-alpha-1', '10.0.1.1', 8301, 1, { role: 'node', segment: 'alpha' }),
  member('odd', 'fe80::1', 8301, 1, { segment: '' }),
];

const rows = (text: string) => text.split('\n').map((line) => line.trim().split(/\s+/));

describe('membersTable over /v1/agent/members answers', () => {
  const agentMembers = MEMBERS.map((m) => rowOfAgentMember({ Name: m.name, Addr: m.address, Port: m.port, Tags: m.tags, Status: m.statusCode }));

  test('servers once as <all>, clients by segment (<default> for none), sorted by label then name; status from the serf number', () => {
    expect(rows(membersTable(agentMembers, '_all', /.*/, false)!)).toEqual([
      ['Node', 'Address', 'Status', 'Type', 'Build', 'Protocol', 'DC', 'Segment'],
      ['server-1', '10.0.0.1:8301', 'alive', 'server', '0.1.0', '2', 'dc1', '<all>'],
      ['node-default-1', '10.0.3.1:8301', 'failed', 'client', '0.1.0', '2', 'dc1', '<default>'],
      ['odd', '[fe80::1]:8301', 'alive', 'unknown'],
      ['node-alpha-1', '10.0.1.1:8301', 'alive', 'client', '0.1.0', '2', 'dc1', 'alpha'],
      ['node-beta-1', '10.0.2.1:8301', 'alive', 'client', '0.1.0', '2', 'dc1', 'beta'],
    ]);
  });

  test('-status filters on the status text; nothing left is undefined (exit 2); -detailed lists sorted tags', () => {
    expect(membersTable(agentMembers, '_all', /^left$/, false)).toBeUndefined();
    expect(rows(membersTable(agentMembers, '_all', /fail/, true)!)).toEqual([
      ['Node', 'Address', 'Status', 'Tags'],
      ['node-default-1', '10.0.3.1:8301', 'failed', 'build=0.1.0:abc,dc=dc1,role=node,segment=,vsn=2,vsn_max=3,vsn_min=2'],
    ]);
  });
});

describe('memberSource', () => {
  const source = (flags: [string, string][], env: NodeJS.ProcessEnv = {}) => memberSource(new Map(flags), env);

  test('-http-addr, then -gossip-addr, then the environment; else the catalog at the default address, then the gossip agent', () => {
    expect(source([['http-addr', 'h:8500']])).toBe('http');
    expect(source([['http-addr', 'h:8500'], ['gossip-addr', 'g:8320']])).toBe('http');
    expect(source([['gossip-addr', 'g:8320']], { CONSULATE_HTTP_ADDR: 'h:8500' })).toBe('gossip');
    expect(source([], { CONSULATE_HTTP_ADDR: 'h:8500' })).toBe('http');
    expect(source([], { CONSUL_HTTP_ADDR: 'h:8500' })).toBe('http');
    expect(source([], { CONSULATE_GOSSIP_ADDR: 'g:8320' })).toBe('gossip');
    expect(source([])).toBe('http-else-gossip');
  });
});

describe('runs', () => {
  let catalog: ServedCatalog;

  beforeEach(async () => {
    catalog = await serveCatalog();
    catalog.members = MEMBERS;
  });

  afterEach(() => catalog.close());

  async function run(args: string[], env: NodeJS.ProcessEnv = {}, command = membersCommand) {
    const { io, out } = captureIo(env);
    const code = await command.run(args, io);
    return { code, ...out };
  }

  test('-http-addr or CONSULATE_HTTP_ADDR: the catalog answers, with Consul\'s table', async () => {
    for (const [args, env] of [[[`-http-addr=${catalog.base}`], {}] as const, [[], { CONSULATE_HTTP_ADDR: catalog.base }] as const]) {
      const answer = await run([...args, '-segment=_all'], env);
      expect(answer).toMatchObject({ code: 0, stderr: '' });
      expect(rows(answer.stdout.trimEnd()).map((r) => r[0])).toEqual(['Node', 'server-1', 'node-default-1', 'odd', 'node-alpha-1', 'node-beta-1']);
    }
    expect((await run([`-http-addr=${catalog.base}`, '-status=left'])).code).toBe(2);
  });

  test("the catalog's refusals are Consul's: -wan with a segment", async () => {
    const answer = await run([`-http-addr=${catalog.base}`, '-wan', '-segment=alpha']);
    expect(answer).toMatchObject({ code: 1, stderr: 'Error retrieving members: Unexpected response code: 400 (Cannot provide a segment with wan=true)\n' });
  });

  test('an explicit catalog address that does not answer is an error; only the default address falls back to the gossip agent', async () => {
    const http = await closedPort();
    const gossip = await closedPort();
    const explicit = await run([`-http-addr=127.0.0.1:${http}`]);
    expect(explicit).toMatchObject({ code: 1, stderr: `Error retrieving members: Get "http://127.0.0.1:${http}/v1/agent/members": dial tcp 127.0.0.1:${http}: connect: connection refused\n` });

    const fallback = await run([], {}, makeMembersCommand({ httpAddress: `http://127.0.0.1:${http}`, gossipAddress: `127.0.0.1:${gossip}` }));
    expect(fallback).toMatchObject({ code: 1, stderr: `Error retrieving members: dial tcp 127.0.0.1:${gossip}: connect: connection refused (is a gossip agent running there? set -gossip-addr)\n` });

    const defaultAnswers = await run([], {}, makeMembersCommand({ httpAddress: catalog.base, gossipAddress: `127.0.0.1:${gossip}` }));
    expect(defaultAnswers.code).toBe(0);
  });
});

describe('-wan: the federation routers\' WAN pool, as `consul members -wan` prints it (§2.5, §1.3)', () => {
  let router: FakeRouter;
  let routers: RouterClient;
  let catalog: HttpHarness;

  const wanMember = (node: string, datacenter: string, addr: string, status: string): AreaMember => ({ id: `${node}-${datacenter}`, name: `${node}.${datacenter}`, addr, port: 8300, datacenter, role: 'server', build: '0.1.0:abc', protocol: 2, status, rttNs: 0n });

  beforeAll(async () => {
    router = await startFakeRouter('dc1');
    router.wan = [wanMember('router-2', 'dc2', '127.0.2.21', 'failed'), wanMember('router-1', 'dc1', '127.0.1.20', 'alive'), wanMember('router-1', 'dc2', '127.0.2.20', 'alive'), wanMember('router-2', 'dc1', '127.0.1.21', 'alive')];
    routers = new RouterClient([router.address], trace.getTracer('test'));
    catalog = await startHttp((http) =>
      registerAgentEndpoints(http, { datacenter: 'dc1', node: 'catalog', nodeId: '', address: '127.0.0.1', gossip: { members: async () => [], join: async () => ({ joined: 0, results: [] }), forceLeave: async () => undefined }, routers }),
    );
  });

  afterAll(async () => {
    await catalog.close();
    routers.close();
    await router.close();
  });

  async function run(args: string[]) {
    const { io, out } = captureIo();
    const code = await membersCommand.run(args, io);
    return { code, ...out };
  }

  test('Node <node>.<dc>, Address ip:8300, Type server, Build up to the colon, Partition default, Segment <all>; sorted by name', async () => {
    const answer = await run([`-http-addr=http://${catalog.address}`, '-wan']);
    expect(answer).toMatchObject({ code: 0, stderr: '' });
    expect(answer.stdout).toBe(
      [
        'Node          Address          Status  Type    Build  Protocol  DC   Partition  Segment',
        'router-1.dc1  127.0.1.20:8300  alive   server  0.1.0  2         dc1  default    <all>',
        'router-1.dc2  127.0.2.20:8300  alive   server  0.1.0  2         dc2  default    <all>',
        'router-2.dc1  127.0.1.21:8300  alive   server  0.1.0  2         dc1  default    <all>',
        'router-2.dc2  127.0.2.21:8300  failed  server  0.1.0  2         dc2  default    <all>',
        '',
      ].join('\n'),
    );
  });

  test('-status filters, and -detailed lists the WAN tags', async () => {
    const failed = await run([`-http-addr=http://${catalog.address}`, '-wan', '-status=failed', '-detailed']);
    expect(failed.code).toBe(0);
    expect(rows(failed.stdout.trimEnd())).toEqual([
      ['Node', 'Address', 'Status', 'Tags'],
      ['router-2.dc2', '127.0.2.21:8300', 'failed', 'build=0.1.0:abc,dc=dc2,id=router-2-dc2,port=8300,role=consul,segment=,vsn=2'],
    ]);
    expect((await run([`-http-addr=http://${catalog.address}`, '-wan', '-status=left'])).code).toBe(2);
  });

  test('a gossip agent holds no WAN pool: -wan with -gossip-addr says where it is', async () => {
    const answer = await run([`-gossip-addr=127.0.0.1:${await closedPort()}`, '-wan']);
    expect(answer.code).toBe(1);
    expect(answer.stderr).toMatch(/^Error retrieving members: a gossip agent holds no WAN pool: the federation routers run it/);
  });
});
