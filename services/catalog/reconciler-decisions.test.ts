// The reconciler's decisions, event by event (reference/consul-compat.md §4.7: Consul's
// leader.go reconcileMember / handleAliveMember / handleFailedMember / handleDeregisterMember /
// reconcileReaped; §2.8: node meta consul-network-segment).
import { Member, MemberEventType } from '../gen/consulate/gossip/v1/membership';
import { CatalogEntry, consulService, decide, ignoreReason, intentOf, reapedNodes, serfHealthCheck } from './reconciler-decisions';
import { StoredNode } from './state/model';

const DC = 'dc1';
const ALPHA_ID = '0b1f6a3c-2222-4b5e-9c1d-3e4f5a6b7c8d';
const SERVER_ID = '7d3c1b2a-1111-4a5b-8c9d-0e1f2a3b4c5d';

function member(overrides: Partial<Member> & { tags?: Record<string, string> } = {}): Member {
  return {
    name: 'node-alpha-1',
    address: '127.0.1.101',
    port: 8301,
    status: 'alive',
    statusCode: 1,
    segment: 'alpha',
    incarnation: 1n,
    ...overrides,
    tags: { role: 'node', dc: DC, segment: 'alpha', id: ALPHA_ID, build: '0.1.0', vsn: '2', vsn_min: '2', vsn_max: '3', ...overrides.tags },
  };
}

function server(overrides: Partial<Member> = {}): Member {
  return member({ name: 'server-1', address: '127.0.1.1', segment: '', ...overrides, tags: { role: 'consul', segment: '', id: SERVER_ID, port: '8300', raft_vsn: '3', ...overrides.tags } });
}

function registered(m: Member, status: 'passing' | 'critical' = 'passing', node: Partial<StoredNode> = {}): CatalogEntry {
  return {
    node: { ID: m.tags.id, Node: m.name, Address: m.address, Datacenter: DC, TaggedAddresses: {}, Meta: { 'consul-network-segment': m.tags.segment }, ...node },
    serfHealth: serfHealthCheck(m.name, status),
    consulService: m.tags.role === 'consul' ? consulService(m) : undefined,
  };
}

describe('intentOf: what an event or a listed member asks of the catalog (§4.7 table)', () => {
  test.each([
    ['CURRENT', 'alive', 'alive'],
    ['JOIN', 'alive', 'alive'],
    ['UPDATE', 'alive', 'alive'],
    ['FAILED', 'failed', 'failed'],
    ['CURRENT', 'failed', 'failed'],
    ['LEAVE', 'left', 'left'],
    ['CURRENT', 'left', 'left'],
    ['REAP', 'failed', 'reaped'],
    ['REAP', 'left', 'reaped'],
    ['UPDATE', 'leaving', undefined],
  ] as const)('%s of a member with status %p → %p', (type, status, intent) => {
    expect(intentOf(MemberEventType[`MEMBER_EVENT_TYPE_${type}`], status)).toBe(intent);
  });
});

describe('which members the reconciler handles', () => {
  test('clients of every segment and servers of the default pool', () => {
    expect(ignoreReason(member(), DC)).toBeUndefined();
    expect(ignoreReason(member({ segment: '', tags: { segment: '' } }), DC)).toBeUndefined();
    expect(ignoreReason(server(), DC)).toBeUndefined();
  });

  test('a server seen in a segment pool is left to the default pool (it carries that segment in its tags there)', () => {
    expect(ignoreReason(server({ segment: 'alpha', tags: { segment: 'alpha' } }), DC)).toMatch(/segment alpha's pool/);
  });

  test("another datacenter's member, or an agent that is not Consul's, is ignored", () => {
    expect(ignoreReason(member({ tags: { dc: 'dc2' } }), DC)).toMatch(/datacenter dc2/);
    expect(ignoreReason(member({ tags: { role: 'router' } }), DC)).toMatch(/not a Consul agent/);
  });
});

describe('alive, join, update: handleAliveMember', () => {
  test('a new client is registered: Node = name, Address = IP, ID = id tag, segment meta, serfHealth passing', () => {
    const action = decide(member(), 'alive', {}, DC);
    expect(action).toMatchObject({
      kind: 'register',
      node: { ID: ALPHA_ID, Node: 'node-alpha-1', Address: '127.0.1.101', Datacenter: DC, TaggedAddresses: {}, Meta: { 'consul-network-segment': 'alpha' } },
      check: { Node: 'node-alpha-1', CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', Output: 'Agent alive and reachable', ServiceID: '' },
    });
    expect(action.kind === 'register' && action.service).toBeUndefined();
  });

  test('a client of the default segment gets an empty consul-network-segment (Consul: "" for default)', () => {
    const action = decide(member({ name: 'node-default-1', segment: '', tags: { segment: '' } }), 'alive', {}, DC);
    expect(action.kind === 'register' && action.node.Meta).toEqual({ 'consul-network-segment': '' });
  });

  test('a server also gets the consul service on its RPC port (8300), with its protocol meta', () => {
    const action = decide(server(), 'alive', {}, DC);
    expect(action.kind).toBe('register');
    if (action.kind !== 'register') return;
    expect(action.service).toMatchObject({ ID: 'consul', Service: 'consul', Port: 8300, Weights: { Passing: 1, Warning: 1 }, Meta: { raft_version: '3', version: '0.1.0', non_voter: 'false' } });
  });

  test('nothing is written when the catalog already says so (same address, ID, segment; serfHealth passing)', () => {
    expect(decide(member(), 'alive', registered(member()), DC)).toMatchObject({ kind: 'none' });
    expect(decide(server(), 'alive', registered(server()), DC)).toMatchObject({ kind: 'none' });
  });

  test('a server whose consul service is missing is registered again', () => {
    expect(decide(server(), 'alive', { ...registered(server()), consulService: undefined }, DC)).toMatchObject({ kind: 'register' });
  });

  test.each([
    ['the address moved', registered(member(), 'passing', { Address: '127.0.1.99' }), /address moved from 127.0.1.99/],
    ['serfHealth is critical (the node came back)', registered(member(), 'critical'), /serfHealth was critical/],
    ['the segment meta differs', registered(member(), 'passing', { Meta: { 'consul-network-segment': 'beta' } }), /registration differed/],
    ['serfHealth is missing', { node: registered(member()).node }, /serfHealth was missing/],
  ])('it is registered again when %s', (_what, entry, reason) => {
    const action = decide(member(), 'alive', entry, DC);
    expect(action.kind).toBe('register');
    expect(action.reason).toMatch(reason);
  });

  test("what the node's own agent registered stays: tagged addresses and other meta (newer Consul)", () => {
    const entry = registered(member(), 'critical', { TaggedAddresses: { lan: '127.0.1.101' }, Meta: { rack: 'r1', 'consul-network-segment': 'alpha' } });
    const action = decide(member(), 'alive', entry, DC);
    expect(action.kind === 'register' && action.node).toMatchObject({ TaggedAddresses: { lan: '127.0.1.101' }, Meta: { rack: 'r1', 'consul-network-segment': 'alpha' } });
  });
});

describe('failed: handleFailedMember', () => {
  test("serfHealth turns critical with Consul's output; the node is not touched (SkipNodeUpdate)", () => {
    const action = decide(member({ status: 'failed', statusCode: 4 }), 'failed', registered(member()), DC);
    expect(action).toMatchObject({ kind: 'mark-critical', node: 'node-alpha-1', check: { CheckID: 'serfHealth', Status: 'critical', Output: 'Agent not live or unreachable' } });
  });

  test('a node the catalog does not have is not registered just to be critical (newer Consul)', () => {
    expect(decide(member({ status: 'failed' }), 'failed', {}, DC)).toMatchObject({ kind: 'none', reason: 'failed, but not in the catalog' });
  });

  test('nothing is written when serfHealth is already critical', () => {
    expect(decide(member({ status: 'failed' }), 'failed', registered(member(), 'critical'), DC)).toMatchObject({ kind: 'none' });
  });
});

describe('left and reaped: handleDeregisterMember', () => {
  test.each(['left', 'reaped'] as const)('%s deregisters the node', (intent) => {
    expect(decide(member({ status: 'left', statusCode: 3 }), intent, registered(member()), DC)).toMatchObject({ kind: 'deregister', node: 'node-alpha-1' });
  });

  test('a node the catalog does not have needs nothing', () => {
    expect(decide(member({ status: 'left' }), 'left', {}, DC)).toMatchObject({ kind: 'none' });
  });

  test('a name now registered under another node ID is not this member to remove', () => {
    const entry = registered(member(), 'passing', { ID: '99999999-9999-4999-8999-999999999999' });
    expect(decide(member({ status: 'left' }), 'left', entry, DC)).toMatchObject({ kind: 'none' });
  });
});

describe('reconcileReaped: catalog nodes with serfHealth that no member has', () => {
  test('only names no member has, in any state, compared case-insensitively', () => {
    const members = [member(), member({ name: 'node-beta-1', status: 'failed' }), server({ name: 'Server-1' })];
    expect(reapedNodes(members, ['node-alpha-1', 'node-beta-1', 'server-1', 'node-gone-1'])).toEqual(['node-gone-1']);
  });

  test('no members at all reaps every node the reconciler owns', () => {
    expect(reapedNodes([], ['a', 'b'])).toEqual(['a', 'b']);
  });
});
