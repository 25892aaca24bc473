// The topology both `make up` and compose.yaml are made from (DESIGN.md "Local topology").
import { MAX_DATACENTERS, PORTS, loopbackAddress, servesPort, topology } from './topology';

describe('topology', () => {
  test('every datacenter runs 3 consensus servers, 3 server gossips, a catalog with its own gossip agent, 2 routers and 2 gossip clients', () => {
    const processes = topology(2);
    for (const dc of ['dc1', 'dc2']) {
      const roles = processes.filter((p) => p.datacenter === dc).map((p) => p.role);
      expect(roles).toHaveLength(12);
      expect(roles.filter((r) => r === 'consensus')).toHaveLength(3);
      expect(roles.filter((r) => r === 'gossip')).toHaveLength(6);
      expect(roles.filter((r) => r === 'catalog')).toHaveLength(1);
      expect(roles.filter((r) => r === 'federation-router')).toHaveLength(2);
    }
  });

  test('consensus servers come first, so whoever names them starts after them', () => {
    const processes = topology(3);
    for (const dc of ['dc1', 'dc2', 'dc3']) {
      const roles = processes.filter((p) => p.datacenter === dc).map((p) => p.role);
      expect(roles.slice(0, 3)).toEqual(['consensus', 'consensus', 'consensus']);
    }
  });

  test('no two processes share a datacenter, host and role', () => {
    const keys = topology(MAX_DATACENTERS).map((p) => `${p.datacenter}/${p.host}/${p.role}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  test('no two processes share an address and port under make up', () => {
    const endpoints = topology(MAX_DATACENTERS).map((p) => `${loopbackAddress(p.datacenter, p.host)}:${p.grpcPort}`);
    expect(new Set(endpoints).size).toBe(endpoints.length);
    expect(loopbackAddress('dc2', 'router-1')).toBe('127.0.2.20');
  });

  test('flags name only hosts and ports of their own datacenter', () => {
    const processes = topology(2);
    for (const spec of processes) {
      for (const flag of spec.flags) {
        if (!('hostPort' in flag)) continue;
        const [host, port] = flag.hostPort;
        // A gossip join names a server's LAN or segment port; everything else a gRPC port.
        expect(processes.some((p) => p.datacenter === spec.datacenter && p.host === host && servesPort(p, port))).toBe(true);
      }
    }
    expect(processes.find((p) => p.role === 'catalog')?.flags).toContainEqual({ name: 'consensus-addr', hostPort: ['server-1', PORTS.consensus] });
    // The reconciler's gossip agents: every server's, none of the clients' (a client sees one segment).
    const gossipAddrs = processes.find((p) => p.role === 'catalog')!.flags.filter((f) => f.name === 'gossip-addr');
    expect(gossipAddrs).toEqual(['server-1', 'server-2', 'server-3'].map((host) => ({ name: 'gossip-addr', hostPort: [host, PORTS.gossip] })));
    expect(processes.find((p) => p.host === 'node-alpha-1')?.flags).toContainEqual({ name: 'retry-join', hostPort: ['server-1', 8303] });
    expect(processes.find((p) => p.host === 'node-beta-1')?.flags).toContainEqual({ name: 'segment', value: 'beta' });
  });

  test.each([0, MAX_DATACENTERS + 1, 1.5, Number.NaN, -1])('DCS=%p is refused', (dcs) => {
    expect(() => topology(dcs)).toThrow(RangeError);
  });
});
