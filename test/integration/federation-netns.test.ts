/**
 * Two datacenters in two network namespaces, joined by one veth pair, as two sites joined by one
 * link. Inside each namespace a whole datacenter (consensus, catalog, two routers) on that
 * namespace's own loopback; only the routers bind the link's addresses. What this holds:
 *
 * - Between datacenters only TCP 8300 carries traffic (reference/consul-compat.md §1.2, §3.10:
 *   area gossip and forwarded requests "use only TCP 8300"): nftables counters on the veth, in
 *   both directions, count TCP 8300 and everything else apart; the rest stays at zero.
 * - A cut link makes the other datacenter's routers `failed` (§3.4: failure detection runs over
 *   8300) and `?dc=` requests fail fast with Consul's `Remote DC has no server currently reachable`
 *   (§3.7), not after the forwarding deadline; a healed link brings the routers back `alive` and
 *   the requests through.
 *
 *        cst-dc1-<pid>                                    cst-dc2-<pid>
 *   consensus 127.0.1.1:8310                          consensus 127.0.2.1:8310
 *   catalog   127.0.1.10:8500                         catalog   127.0.2.10:8500
 *   router-1  10.231.k.1 ─┐   veth cst1 ══ cst2   ┌─ router-1  10.231.k.2
 *   router-2  10.231.k.3 ─┘   (counters, cut)     └─ router-2  10.231.k.4
 *
 * Needs root, `ip netns` and nft: skipped, with the reason printed, where they are missing.
 */
import { CliResult, FederatedDatacenter, consulate, createdAreaId, startDatacenter } from '../harness/federation';
import { InsideResponse, LinkCounters, LinkedNamespaces, NamespaceSide, createLinkedNamespaces, cutLink, fetchInside, healLink, installLinkCounters, linkUp, netnsUnavailableReason, otherPackets, readLinkCounters } from '../harness/netns';
import { eventually, stopAll } from '../harness/processes';
import { makeRouterTls } from '../harness/tls';

const unavailable = netnsUnavailableReason();
if (unavailable !== undefined) console.warn(`federation-netns.test.ts skipped: ${unavailable}`);
const describeWithNetns = unavailable === undefined ? describe : describe.skip;

/** Consul's FORWARD_TIMEOUT_MS for a plain read is 30 s; failing fast means well inside it. */
const FAIL_FAST_BOUND_MS = 10_000;
const NO_SERVER = 'Remote DC has no server currently reachable';

describeWithNetns('two datacenters in two network namespaces, one link between them', () => {
  let link: LinkedNamespaces;
  let side1: NamespaceSide;
  let side2: NamespaceSide;
  let dc1: FederatedDatacenter;
  let dc2: FederatedDatacenter;
  let cut = false;

  beforeAll(async () => {
    link = await createLinkedNamespaces(['dc1', 'dc2'], 2);
    [side1, side2] = link.sides;
    // Counters first, then the link up: every packet that ever crosses is counted.
    for (const side of link.sides) await installLinkCounters(side);
    for (const side of link.sides) await linkUp(side);
    const tls = makeRouterTls(['dc1', 'dc2']);
    // One datacenter at a time: eight processes on two shared cores.
    dc1 = await startDatacenter('dc1', tls, { wrap: side1.wrap, addresses: { consensus: '127.0.1.1', catalog: '127.0.1.10', routers: side1.addresses } });
    dc2 = await startDatacenter('dc2', tls, { wrap: side2.wrap, addresses: { consensus: '127.0.2.1', catalog: '127.0.2.10', routers: side2.addresses } });
  }, 180_000);

  afterAll(async () => {
    if (cut) for (const side of link.sides) await healLink(side).catch(() => undefined);
    await stopAll();
    await link?.destroy();
  });

  test('areas form over the link, dc1 reads dc2 with ?dc=dc2, and only TCP 8300 crossed', async () => {
    createdAreaId(await consulate(dc1, ['operator', 'area', 'create', '-peer-datacenter=dc2'], side1.wrap));
    createdAreaId(await consulate(dc2, ['operator', 'area', 'create', '-peer-datacenter=dc1'], side2.wrap));
    // dc2's routers open the area's pool once they read the area from consensus: retry until then.
    await eventually(
      "dc1's area to join dc2's router",
      async () => (await consulate(dc1, ['operator', 'area', 'join', '-peer-datacenter=dc2', side2.addresses[0]], side1.wrap)).stdout.includes(' true '),
      30_000,
    );
    const members = await eventually('dc1 to see all four routers alive', async () => everyRouter(await areaMembers(dc1, side1), 'alive'), 90_000);
    console.log(`dc1's area members once joined:\n${members}`);

    const registered = await fetchInside(side2.wrap, `${dc2.httpAddr}/v1/catalog/register`, {
      method: 'PUT',
      body: JSON.stringify({ Node: 'web-dc2', Address: '10.0.2.5', Service: { Service: 'web', Port: 80 } }),
    });
    expect(registered).toMatchObject({ status: 200, body: 'true' });
    const remote = await readWebFromDc1();
    expect(remote.status).toBe(200);
    expect(JSON.parse(remote.body)).toMatchObject([{ Node: 'web-dc2', Address: '10.0.2.5', Datacenter: 'dc2', ServiceName: 'web' }]);
    // dc1's own catalog has no such service: the answer above is dc2's.
    expect(JSON.parse((await fetchInside(side1.wrap, `${dc1.httpAddr}/v1/catalog/service/web`)).body)).toEqual([]);

    for (const side of link.sides) {
      const counters = await readLinkCounters(side);
      report(side, counters);
      expect(counters.packets.tcp8300_in).toBeGreaterThan(0);
      expect(counters.packets.tcp8300_out).toBeGreaterThan(0);
      expect({ other: otherPackets(counters), seen: counters.otherSeen }).toEqual({ other: 0, seen: [] });
    }
  });

  test('a cut link makes dc2 failed and ?dc=dc2 fail fast; healing brings it back', async () => {
    const before = await readLinkCounters(side1);
    for (const side of link.sides) await cutLink(side);
    cut = true;
    const cutAt = Date.now();
    const failedMembers = await eventually("dc1 to see dc2's routers failed", async () => everyRemoteRouter(await areaMembers(dc1, side1), 'failed'), 90_000);
    console.log(`link cut; dc1 saw dc2's routers failed after ${Date.now() - cutAt} ms:\n${failedMembers}`);

    // Every dc1 router has the same view once the pool has converged; ask a few times, so both
    // routers of dc1 and the catalog's router rotation are exercised.
    const failures: InsideResponse[] = [];
    for (let i = 0; i < 4; i++) failures.push(await readWebFromDc1());
    console.log(`?dc=dc2 with the link cut: ${failures.map((f) => `${f.status} "${f.body.trim()}" in ${Math.round(f.ms)} ms`).join('; ')}`);
    for (const failure of failures) {
      expect(failure.status).toBe(500);
      expect(failure.body).toMatch(new RegExp(`^(${NO_SERVER}|No path to datacenter)`));
      expect(failure.ms).toBeLessThan(FAIL_FAST_BOUND_MS);
    }

    for (const side of link.sides) await healLink(side);
    cut = false;
    const healedAt = Date.now();
    const aliveMembers = await eventually("dc1 to see dc2's routers alive again", async () => everyRouter(await areaMembers(dc1, side1), 'alive'), 120_000);
    console.log(`link healed; dc1 saw all routers alive after ${Date.now() - healedAt} ms:\n${aliveMembers}`);
    const again = await eventually(
      '?dc=dc2 to answer from dc2 again',
      async () => {
        const answer = await readWebFromDc1();
        return answer.status === 200 ? answer : undefined;
      },
      60_000,
    );
    console.log(`?dc=dc2 answered again ${Date.now() - healedAt} ms after the heal (request ${Math.round(again.ms)} ms)`);
    expect(JSON.parse(again.body)).toMatchObject([{ Node: 'web-dc2', Datacenter: 'dc2', ServiceName: 'web' }]);

    // Over the cut and the heal, still nothing but TCP 8300 on the link.
    for (const side of link.sides) {
      const counters = await readLinkCounters(side);
      report(side, counters);
      expect(counters.packets.tcp8300_in + counters.packets.tcp8300_out).toBeGreaterThan(side === side1 ? before.packets.tcp8300_in + before.packets.tcp8300_out : 0);
      expect({ other: otherPackets(counters), seen: counters.otherSeen }).toEqual({ other: 0, seen: [] });
    }
  });

  function readWebFromDc1() {
    return fetchInside(side1.wrap, `${dc1.httpAddr}/v1/catalog/service/web?dc=dc2`, { timeoutMs: 60_000 });
  }
});

function ok(result: CliResult): string {
  if (result.code !== 0) throw new Error(`consulate exited ${result.code}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

interface MemberRow {
  readonly node: string;
  readonly status: string;
}

/** `consulate operator area members` in `dc`: the table, and its rows' node and status. */
async function areaMembers(dc: FederatedDatacenter, side: NamespaceSide): Promise<{ table: string; rows: MemberRow[] }> {
  const peer = dc.name === 'dc1' ? 'dc2' : 'dc1';
  const table = ok(await consulate(dc, ['operator', 'area', 'members', `-peer-datacenter=${peer}`], side.wrap));
  const rows = table
    .trim()
    .split('\n')
    .slice(1)
    .flatMap((line) => {
      const match = /^\S+\s+(\S+)\s+\S+\s+(alive|leaving|left|failed)\s/.exec(line);
      return match === null ? [] : [{ node: match[1], status: match[2] }];
    });
  return { table, rows };
}

const ROUTERS = ['router-1.dc1', 'router-2.dc1', 'router-1.dc2', 'router-2.dc2'];

function everyRouter(members: { table: string; rows: MemberRow[] }, status: string): string | undefined {
  return ROUTERS.every((node) => members.rows.some((row) => row.node === node && row.status === status)) ? members.table : undefined;
}

/** dc2's routers have `status` and dc1's own are alive. */
function everyRemoteRouter(members: { table: string; rows: MemberRow[] }, status: string): string | undefined {
  const has = (node: string, wanted: string) => members.rows.some((row) => row.node === node && row.status === wanted);
  return has('router-1.dc2', status) && has('router-2.dc2', status) && has('router-1.dc1', 'alive') && has('router-2.dc1', 'alive') ? members.table : undefined;
}

function report(side: NamespaceSide, counters: LinkCounters): void {
  const lines = Object.entries(counters.packets).map(([name, packets]) => `  ${name.padEnd(16)} ${String(packets).padStart(7)} packets ${String(counters.bytes[name]).padStart(9)} bytes`);
  console.log(`nftables counters on ${side.veth} in ${side.name} (${side.datacenter}):\n${lines.join('\n')}\n  arp (arp family, not IP) ${counters.arpPackets} packets${counters.otherSeen.length > 0 ? `\n  other TCP/UDP seen: ${counters.otherSeen.join(', ')}` : ''}`);
}
