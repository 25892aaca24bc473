/**
 * The demo's own pieces: reading the CLI's columnized tables (reference/consul-compat.md §2.5 and
 * §3.3 outputs), and refusing clearly when there is no cluster to walk the guides against.
 * The walk itself runs against a real `make up` in test/integration/up.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DemoError, findCluster, isGoDuration, missingRow, parseTable } from './demo';
import type { TopologyFile } from './up';

describe('parseTable', () => {
  test('reads `consul members -segment alpha` (§2.5) by header', () => {
    const rows = parseTable(
      [
        'Node     Address           Status  Type    Build      Protocol  DC   Segment',
        'client1  192.168.0.5:8301  alive   client  0.9.3+ent  2         dc1  alpha',
        'server1  192.168.0.4:8303  alive   server  0.9.3+ent  2         dc1  alpha',
        '',
      ].join('\n'),
    );
    expect(rows).toHaveLength(2);
    expect(rows[1]).toEqual({ Node: 'server1', Address: '192.168.0.4:8303', Status: 'alive', Type: 'server', Build: '0.9.3+ent', Protocol: '2', DC: 'dc1', Segment: 'alpha' });
  });

  test('keeps an empty cell empty (columns start where their headers do)', () => {
    const rows = parseTable(['Node        ID        Address      DC', 'catalog     34e6d2e4  127.0.2.10   dc2', 'web-1                 127.0.2.50   dc2'].join('\n'));
    expect(rows[1]).toEqual({ Node: 'web-1', ID: '', Address: '127.0.2.50', DC: 'dc2' });
  });

  test('an empty output has no rows', () => {
    expect(parseTable('')).toEqual([]);
  });
});

describe('missingRow', () => {
  const rows = parseTable(['Address     Joined  Error', '127.0.2.20  true    (none)'].join('\n'));

  test('undefined when every expected row is there', () => {
    expect(missingRow(rows, [{ Address: '127.0.2.20', Joined: 'true' }])).toBeUndefined();
  });

  test('names the first row that is not', () => {
    expect(missingRow(rows, [{ Address: '127.0.2.21', Joined: 'true' }])).toBe('no row with Address=127.0.2.21 Joined=true');
  });
});

test('isGoDuration: the RTTs of `operator area members` (§3.3), not "unknown"', () => {
  for (const rtt of ['0s', '594.191µs', '2.964369ms', '1.5s', '1m2.5s', '850ns']) expect(isGoDuration(rtt)).toBe(true);
  for (const rtt of ['unknown', '', '-1ms', 'ms']) expect(isGoDuration(rtt)).toBe(false);
});

describe('findCluster: a clear refusal when there is nothing to walk the guides against', () => {
  function stateWith(topology: Partial<TopologyFile>): string {
    const dir = mkdtempSync(join(tmpdir(), 'consulate-demo-'));
    const file: TopologyFile = { supervisorPid: process.pid, startedAt: new Date(0).toISOString(), healthy: true, datacenters: ['dc1', 'dc2'], processes: [], ...topology };
    writeFileSync(join(dir, 'topology.json'), JSON.stringify(file));
    return dir;
  }

  function catalogOf(datacenter: string, address: string) {
    return { datacenter, host: 'catalog', role: 'catalog', address, pid: 1, endpoints: { grpc: `${address}:8502` }, logFile: `/logs/${datacenter}-catalog-catalog.log` };
  }

  test('no topology file: start one with make up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'consulate-demo-'));
    await expect(findCluster(dir)).rejects.toThrow(/No Consulate cluster is running: .*topology\.json does not exist\. Start one with 'make up'/);
  });

  test('a topology file left by a supervisor that has exited', async () => {
    const exited = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const dir = stateWith({ supervisorPid: Number(exited.stdout) });
    await expect(findCluster(dir)).rejects.toThrow(`names supervisor pid ${exited.stdout}, which has exited`);
  });

  test('a cluster still starting', async () => {
    await expect(findCluster(stateWith({ healthy: false }))).rejects.toThrow('is still starting');
  });

  test('only dc1: the areas guide needs dc2', async () => {
    await expect(findCluster(stateWith({ datacenters: ['dc1'] }))).rejects.toThrow("The areas guide needs dc1 and dc2; this cluster runs dc1. Restart it with 'make down' and 'make up'");
  });

  test("dc1's catalog does not answer", async () => {
    // Nothing listens on this loopback address: the connection is refused at once.
    const dir = stateWith({ processes: [catalogOf('dc1', '127.254.1.10'), catalogOf('dc2', '127.254.2.10')] });
    const refusal = findCluster(dir);
    await expect(refusal).rejects.toBeInstanceOf(DemoError);
    await expect(refusal).rejects.toThrow("dc1's catalog does not answer at http://127.254.1.10:8500/v1/status/leader (ECONNREFUSED). Is 'make up' still running? Its log: /logs/dc1-catalog-catalog.log");
  });
});
