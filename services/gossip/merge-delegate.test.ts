/**
 * Consul's merge delegates, `agent/consul/merge.go`: reference/consul-compat.md §2.4 (join rules
 * and exact errors, checks in order, first failure wins) and the WAN rule that only servers federate.
 */
import { MemberInfo } from '../lib/swim/types';
import { isConsulServer, lanMergeDelegate, wanMergeDelegate } from './merge-delegate';

const ME = { nodeName: 'client-alpha-1', nodeId: '11111111-1111-1111-1111-111111111111', datacenter: 'dc1', segment: 'alpha' };
const ID_A = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';
// A Consul-shaped build: members whose build is below 0.8.5 (Consulate's own 0.1.0 would be)
// are left out of the duplicate-ID index, exactly as Consul leaves them out.
const BUILD = '1.21.0';

function member(name: string, tags: Record<string, string>, state: MemberInfo['state'] = 'alive'): MemberInfo {
  return { name, address: '127.0.1.1:8303', incarnation: 1, state, tags, stateChangeMs: 0 };
}
const serverTags = (extra: Record<string, string> = {}): Record<string, string> => ({ role: 'consul', dc: 'dc1', segment: 'alpha', id: ID_A, build: BUILD, vsn: '2', port: '8300', ...extra });
const clientTags = (extra: Record<string, string> = {}): Record<string, string> => ({ role: 'node', dc: 'dc1', segment: 'alpha', id: '22222222-2222-2222-2222-222222222222', build: BUILD, vsn: '2', ...extra });

describe('lanMergeDelegate', () => {
  const notify = lanMergeDelegate(ME);

  test('a pool of our datacenter and segment merges', () => {
    expect(notify([member('server-1', serverTags()), member('client-alpha-2', clientTags()), member(ME.nodeName, clientTags({ id: ME.nodeId }))])).toBeUndefined();
    expect(notify([])).toBeUndefined();
  });

  describe('1. node-ID conflicts', () => {
    test("another member with this agent's ID", () => {
      expect(notify([member('impostor', clientTags({ id: ME.nodeId }))])).toBe(`Member 'impostor' has conflicting node ID '${ME.nodeId}' with this agent's ID`);
    });

    test('ourselves under the same name, in any case, is no conflict', () => {
      expect(notify([member('CLIENT-Alpha-1', clientTags({ id: ME.nodeId }))])).toBeUndefined();
    });

    test('two members sharing an ID: the second is named, with the first', () => {
      expect(notify([member('client-a', clientTags({ id: ID_A })), member('client-b', clientTags({ id: ID_A }))])).toBe(`Member 'client-b' has conflicting node ID '${ID_A}' with member 'client-a'`);
    });

    test('members that left are skipped (and, as in Consul, skip the other checks too)', () => {
      expect(notify([member('client-a', clientTags({ id: ID_A }), 'left'), member('client-b', clientTags({ id: ID_A }))])).toBeUndefined();
      expect(notify([member('impostor', clientTags({ id: ME.nodeId }), 'left')])).toBeUndefined();
      expect(notify([member('gone', clientTags({ dc: 'dc2', segment: 'beta' }), 'left')])).toBeUndefined();
      // A failed member is not a left one.
      expect(notify([member('impostor', clientTags({ id: ME.nodeId }), 'dead')])).toMatch(/conflicting node ID/);
    });

    test('a member that left without an ID is still checked for datacenter and segment', () => {
      expect(notify([member('gone', clientTags({ id: '', dc: 'dc2' }), 'left')])).toBe("Member 'gone' part of wrong datacenter 'dc2'");
    });

    test('members with no ID are not indexed; every build with an ID is (Consul skips builds before 0.8.5, consul#3070, which no Consulate pool holds)', () => {
      expect(notify([member('a', clientTags({ id: '' })), member('b', clientTags({ id: '' }))])).toBeUndefined();
      expect(notify([member('first', clientTags({ id: ID_A, build: '0.1.0' })), member('second', clientTags({ id: ID_A, build: '0.1.0' }))])).toBe(`Member 'second' has conflicting node ID '${ID_A}' with member 'first'`);
      expect(notify([member('old', clientTags({ id: ME.nodeId, build: '0.7.0' }))])).toMatch(/with this agent's ID$/);
    });
  });

  describe('2. datacenter', () => {
    test('a client of another datacenter', () => {
      expect(notify([member('client-dc2', clientTags({ dc: 'dc2' }))])).toBe("Member 'client-dc2' part of wrong datacenter 'dc2'");
      expect(notify([member('client-nodc', clientTags({ dc: '' }))])).toBe("Member 'client-nodc' part of wrong datacenter ''");
    });

    test('a server of another datacenter', () => {
      expect(notify([member('server-dc2', serverTags({ dc: 'dc2' }))])).toBe("Member 'server-dc2' part of wrong datacenter 'dc2'");
    });

    test('a member that is neither a Consul client nor a well-formed server is not held to a datacenter', () => {
      expect(notify([member('other-agent', { dc: 'dc2', segment: 'alpha' })])).toBeUndefined();
      expect(notify([member('broken-server', serverTags({ dc: 'dc2', port: 'x' }))])).toBeUndefined();
    });

    test('the datacenter is checked before the segment', () => {
      expect(notify([member('client-dc2', clientTags({ dc: 'dc2', segment: 'beta' }))])).toBe("Member 'client-dc2' part of wrong datacenter 'dc2'");
    });
  });

  describe('3. segment', () => {
    test('a member of another segment', () => {
      expect(notify([member('client-beta-1', clientTags({ segment: 'beta' }))])).toBe("Member 'client-beta-1' part of wrong segment 'beta' (expected 'alpha')");
    });

    test("a server's default pool, joined from a segment (its segment tag is empty)", () => {
      expect(notify([member('server-1', serverTags({ segment: '' }))])).toBe("Member 'server-1' part of wrong segment '' (expected 'alpha')");
      expect(notify([member('server-1', serverTags({ segment: undefined as unknown as string }))])).toBe("Member 'server-1' part of wrong segment '' (expected 'alpha')");
    });

    test('the default segment expects an empty tag', () => {
      const defaultPool = lanMergeDelegate({ ...ME, segment: '' });
      expect(defaultPool([member('server-1', serverTags({ segment: '' }))])).toBeUndefined();
      expect(defaultPool([member('client-alpha-2', clientTags())])).toBe("Member 'client-alpha-2' part of wrong segment 'alpha' (expected '')");
    });

    test('any member is held to the segment, even a non-Consul one', () => {
      expect(notify([member('other-agent', { segment: 'beta' })])).toBe("Member 'other-agent' part of wrong segment 'beta' (expected 'alpha')");
    });
  });

  test('the first failing member wins, in list order', () => {
    const members = [member('ok', clientTags()), member('wrong-segment', clientTags({ id: '3', segment: 'beta' })), member('wrong-dc', clientTags({ id: '4', dc: 'dc2' }))];
    expect(notify(members)).toBe("Member 'wrong-segment' part of wrong segment 'beta' (expected 'alpha')");
  });

  test('each call starts afresh: IDs seen in one merge do not leak into the next', () => {
    expect(notify([member('client-a', clientTags({ id: ID_A }))])).toBeUndefined();
    expect(notify([member('client-b', clientTags({ id: ID_A }))])).toBeUndefined();
  });
});

describe('wanMergeDelegate', () => {
  const notify = wanMergeDelegate();
  const wanServer = (name: string, extra: Record<string, string> = {}): MemberInfo => member(name, serverTags({ segment: '', ...extra }));

  test('servers of any datacenter federate', () => {
    expect(notify([wanServer('server-1.dc1'), wanServer('server-1.dc2', { dc: 'dc2' })])).toBeUndefined();
  });

  test('a client is refused', () => {
    expect(notify([wanServer('server-1.dc1'), member('client-1.dc1', clientTags())])).toBe("Member 'client-1.dc1' is not a server");
  });

  test('a member without a role is refused', () => {
    expect(notify([member('mystery', {})])).toBe("Member 'mystery' is not a server");
  });

  test("a server whose tags do not parse is not a server (Consul's metadata.IsConsulServer)", () => {
    expect(notify([wanServer('s', { port: 'eighty' })])).toBe("Member 's' is not a server");
    expect(notify([wanServer('s', { build: 'unknown' })])).toBe("Member 's' is not a server");
  });
});

describe("isConsulServer: Consul's metadata.IsConsulServer", () => {
  test('role=consul with an integer port and vsn and a build holding a version', () => {
    expect(isConsulServer(serverTags())).toBe(true);
    expect(isConsulServer(serverTags({ build: '1.14.0+ent:abcdef' }))).toBe(true);
    expect(isConsulServer(clientTags())).toBe(false);
  });

  test.each([
    ['port missing', { port: undefined }],
    ['port not a number', { port: '83OO' }],
    ['vsn missing', { vsn: undefined }],
    ['build without a version', { build: 'dev' }],
    ['build missing', { build: undefined }],
    ['expect not a number', { expect: 'three' }],
    ['raft_vsn not a number', { raft_vsn: 'x' }],
    ['wan_join_port not a number', { wan_join_port: '' }],
    ['sl_ tag without a port', { sl_alpha: '10.0.0.1' }],
    ['sl_ tag with a non-numeric port', { sl_alpha: '10.0.0.1:http' }],
    ['ft_ flag not a number', { ft_fs: 'yes' }],
    ['gRPC port tags present but neither valid', { grpc_port: '0', grpc_tls_port: 'x' }],
  ])('refuses: %s', (_, extra) => {
    const tags = serverTags();
    for (const [key, value] of Object.entries(extra)) {
      if (value === undefined) delete tags[key];
      else tags[key] = value;
    }
    expect(isConsulServer(tags)).toBe(false);
  });

  test('accepts well-formed optional tags', () => {
    expect(isConsulServer(serverTags({ expect: '3', raft_vsn: '3', wan_join_port: '8302', sl_alpha: '10.0.0.1:8303', sl_v6: '[::1]:8304', ft_fs: '1', grpc_port: '0', grpc_tls_port: '8503', bootstrap: '1' }))).toBe(true);
  });
});
