/**
 * Network namespaces for tests that need a real link between datacenters: one namespace per
 * datacenter, each with its own loopback (so in-datacenter processes keep 127.x addresses and
 * their standard ports), and a veth pair between them that is the only way across. nftables
 * counters on the link say what crossed it; a drop rule cuts it without taking the interface down,
 * so addresses, routes and counters stay.
 *
 * Every name made here carries the test process's PID (`cst-<dc>-<pid>`, veths `cst<n>-<pid>`);
 * `destroy()` removes them, and `createLinkedNamespaces` first removes those of an earlier run whose
 * process is gone. Needs root, iproute2 (`ip netns`) and nft; `netnsUnavailableReason` says why not.
 */
import { spawn, spawnSync } from 'node:child_process';

import { REPO_ROOT } from './processes';

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command` (argv, no shell) to the end, `input` on its stdin. Never rejects. */
export function run(command: readonly string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => resolve({ code: null, stdout, stderr: stderr + err.message }));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    // A command that exits without reading its stdin (most do) must not fail the run with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** Like `run`, but a non-zero exit is an error naming the command and what it said. */
export async function runOrThrow(command: readonly string[], input?: string): Promise<string> {
  const result = await run(command, input);
  if (result.code !== 0) throw new Error(`${command.join(' ')} exited ${result.code}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

/**
 * Why namespaces cannot be used here (not root, no `ip`, no `nft`, no CAP_SYS_ADMIN), or
 * undefined when they can: it makes and removes a namespace to find out.
 */
export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const tool of [['ip', '-V'], ['nft', '--version']]) {
    const probe = spawnSync(tool[0], tool.slice(1), { encoding: 'utf8' });
    if (probe.error !== undefined || probe.status !== 0) return `\`${tool[0]}\` is not available (${probe.error?.message ?? probe.stderr.trim()})`;
  }
  const name = `cst-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.status !== 0) return `\`ip netns add\` fails: ${add.stderr.trim()}`;
  const nft = spawnSync('ip', ['netns', 'exec', name, 'nft', 'list', 'ruleset'], { encoding: 'utf8' });
  spawnSync('ip', ['netns', 'del', name]);
  if (nft.status !== 0) return `nft does not work inside a namespace: ${nft.stderr.trim()}`;
  return undefined;
}

export interface NamespaceSide {
  /** The datacenter this side is for. */
  readonly datacenter: string;
  /** `cst-<dc>-<pid>`. */
  readonly name: string;
  /** `['ip', 'netns', 'exec', name]`: run a command inside. */
  readonly wrap: readonly string[];
  /** This side's end of the veth pair. */
  readonly veth: string;
  /** This side's addresses on the veth, without prefix length. */
  readonly addresses: readonly string[];
}

export interface LinkedNamespaces {
  readonly sides: readonly [NamespaceSide, NamespaceSide];
  /** Removes the namespaces (and with them the veth pair); stop the processes inside first. */
  destroy(): Promise<void>;
}

const NAME = /^cst-([a-z0-9]+)-(\d+)\b/;

/**
 * Two namespaces, loopback up, joined by a veth pair in 10.231.<pid % 250>.0/24: side 0 gets
 * .1, .3, .5 ..., side 1 .2, .4, .6 ... (`addressesPerSide` each). IPv6 is off on the veths (the
 * namespace default, set before they exist), so no neighbour discovery or router solicitation
 * ever crosses: what crosses is what the processes send.
 */
export async function createLinkedNamespaces(datacenters: readonly [string, string], addressesPerSide = 1): Promise<LinkedNamespaces> {
  await removeLeftovers();
  const subnet = `10.231.${process.pid % 250}`;
  const sides = datacenters.map((datacenter, i): NamespaceSide => {
    const name = `cst-${datacenter}-${process.pid}`;
    return {
      datacenter,
      name,
      wrap: ['ip', 'netns', 'exec', name],
      veth: `cst${i + 1}-${process.pid}`,
      addresses: Array.from({ length: addressesPerSide }, (_, k) => `${subnet}.${2 * k + i + 1}`),
    };
  }) as unknown as [NamespaceSide, NamespaceSide];
  const destroy = async () => {
    for (const side of sides) await run(['ip', 'netns', 'del', side.name]);
  };
  try {
    for (const side of sides) {
      await runOrThrow(['ip', 'netns', 'add', side.name]);
      await runOrThrow([...side.wrap, 'ip', 'link', 'set', 'lo', 'up']);
      await runOrThrow([...side.wrap, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1']);
    }
    const [a, b] = sides;
    await runOrThrow(['ip', 'link', 'add', a.veth, 'netns', a.name, 'type', 'veth', 'peer', 'name', b.veth, 'netns', b.name]);
    for (const side of sides) {
      await runOrThrow([...side.wrap, 'sysctl', '-q', '-w', `net.ipv6.conf.${side.veth}.disable_ipv6=1`]);
      for (const address of side.addresses) await runOrThrow([...side.wrap, 'ip', 'addr', 'add', `${address}/24`, 'dev', side.veth]);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return { sides, destroy };
}

/** Brings a side's veth up (separately, so counters can be in place before the first packet). */
export async function linkUp(side: NamespaceSide): Promise<void> {
  await runOrThrow([...side.wrap, 'ip', 'link', 'set', side.veth, 'up']);
}

/**
 * Namespaces named like ours: this process's (a retry in the same worker), or an earlier run's
 * whose process is gone. Its processes are what that run started and left behind.
 */
async function removeLeftovers(): Promise<void> {
  const listed = await run(['ip', 'netns', 'list']);
  for (const line of listed.stdout.split('\n')) {
    const match = NAME.exec(line);
    if (match === null) continue;
    const pid = Number(match[2]);
    if (pid !== process.pid && processExists(pid)) continue;
    const name = line.split(' ')[0];
    const pids = await run(['ip', 'netns', 'pids', name]);
    for (const stale of pids.stdout.split('\n').filter((p) => /^\d+$/.test(p))) {
      try {
        process.kill(Number(stale), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run(['ip', 'netns', 'del', name]);
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- what crosses the link: nftables counters ----------------------------------------------------

/** Counters' names: `<what>_<in|out>`; everything on the veth lands in exactly one. */
export const COUNTED = ['tcp8300', 'other_tcp', 'other_udp', 'other_icmp', 'other'] as const;

export interface LinkCounters {
  /** packets by counter name (`tcp8300_in`, `other_udp_out`, ...). */
  readonly packets: Record<string, number>;
  readonly bytes: Record<string, number>;
  /** `<l4proto> . <port>` seen on the veth other than TCP 8300, from the `seen_*` sets. */
  readonly otherSeen: readonly string[];
  /** ARP frames on the veth, from the arp table: inet tables never see ARP. */
  readonly arpPackets: number;
}

const COUNTERS_TABLE = 'cst_link';
const CUT_TABLE = 'cst_cut';

/**
 * Counts every packet on the side's veth, both directions, in the inet family (IPv4 and IPv6):
 * TCP with port 8300 at either end, and everything else by protocol, with the ports of other
 * TCP/UDP kept in a set to show what it was. At priority raw (-300), before anything can drop it.
 * A separate arp table counts ARP, which the inet family does not see.
 */
export async function installLinkCounters(side: NamespaceSide): Promise<void> {
  const rules = (direction: 'in' | 'out') => {
    const dev = direction === 'in' ? `iifname "${side.veth}"` : `oifname "${side.veth}"`;
    return `
    ${dev} tcp dport 8300 counter name "tcp8300_${direction}" return
    ${dev} tcp sport 8300 counter name "tcp8300_${direction}" return
    ${dev} meta l4proto { tcp, udp } add @seen_${direction} { meta l4proto . th sport . th dport }
    ${dev} meta l4proto tcp counter name "other_tcp_${direction}" return
    ${dev} meta l4proto udp counter name "other_udp_${direction}" return
    ${dev} meta l4proto { icmp, ipv6-icmp } counter name "other_icmp_${direction}" return
    ${dev} counter name "other_${direction}" return`;
  };
  const counters = COUNTED.flatMap((name) => [`counter ${name}_in { }`, `counter ${name}_out { }`]).join('\n  ');
  const ruleset = `
table inet ${COUNTERS_TABLE} {
  ${counters}
  set seen_in { type inet_proto . inet_service . inet_service; flags dynamic; size 1024; }
  set seen_out { type inet_proto . inet_service . inet_service; flags dynamic; size 1024; }
  chain input {
    type filter hook input priority raw; policy accept;${rules('in')}
  }
  chain output {
    type filter hook output priority raw; policy accept;${rules('out')}
  }
}
table arp ${COUNTERS_TABLE} {
  counter arp_in { }
  counter arp_out { }
  chain input {
    type filter hook input priority 0; policy accept;
    meta iifname "${side.veth}" counter name "arp_in"
  }
  chain output {
    type filter hook output priority 0; policy accept;
    meta oifname "${side.veth}" counter name "arp_out"
  }
}
`;
  await runOrThrow([...side.wrap, 'nft', '-f', '-'], ruleset);
}

export async function readLinkCounters(side: NamespaceSide): Promise<LinkCounters> {
  const inet = JSON.parse(await runOrThrow([...side.wrap, 'nft', '-j', 'list', 'table', 'inet', COUNTERS_TABLE])) as NftJson;
  const arp = JSON.parse(await runOrThrow([...side.wrap, 'nft', '-j', 'list', 'table', 'arp', COUNTERS_TABLE])) as NftJson;
  const packets: Record<string, number> = {};
  const bytes: Record<string, number> = {};
  let arpPackets = 0;
  const otherSeen: string[] = [];
  for (const object of inet.nftables) {
    if (object.counter !== undefined) {
      packets[object.counter.name] = object.counter.packets;
      bytes[object.counter.name] = object.counter.bytes;
    }
    if (object.set !== undefined) {
      for (const element of object.set.elem ?? []) {
        const [proto, sport, dport] = (element as { concat?: unknown[] }).concat ?? [JSON.stringify(element)];
        otherSeen.push(`${object.set.name}: ${String(proto)} ${String(sport)} -> ${String(dport)}`);
      }
    }
  }
  for (const object of arp.nftables) if (object.counter !== undefined) arpPackets += object.counter.packets;
  return { packets, bytes, otherSeen, arpPackets };
}

/** Packets on the veth that were not TCP 8300, both directions. */
export function otherPackets(counters: LinkCounters): number {
  return COUNTED.filter((name) => name !== 'tcp8300').reduce((sum, name) => sum + counters.packets[`${name}_in`] + counters.packets[`${name}_out`], 0);
}

interface NftJson {
  nftables: Array<{ counter?: { name: string; packets: number; bytes: number }; set?: { name: string; elem?: unknown[] } }>;
}

/**
 * Cuts the link as a pulled cable would look from this side: every packet arriving on the veth
 * is dropped, silently (no reset, no ICMP), so senders learn only by timing out. Dropping on
 * input rather than output keeps local sends from failing at once with EPERM, which a real cut
 * would not do. Cut both sides for a cut in both directions. The counters, at priority raw,
 * still count what is dropped.
 */
export async function cutLink(side: NamespaceSide): Promise<void> {
  await runOrThrow(
    [...side.wrap, 'nft', '-f', '-'],
    `table inet ${CUT_TABLE} {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "${side.veth}" drop
  }
}
`,
  );
}

export async function healLink(side: NamespaceSide): Promise<void> {
  await runOrThrow([...side.wrap, 'nft', 'delete', 'table', 'inet', CUT_TABLE]);
}

// ---- HTTP from inside ------------------------------------------------------------------------

export interface InsideResponse {
  /** 0 when no answer came (the error says why). */
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly error?: string;
  /** From sending the request to the end of the body, measured inside (no process start-up). */
  readonly ms: number;
}

export interface InsideRequest {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** The request is abandoned after this long (default 60 s). */
  readonly timeoutMs?: number;
}

const FETCH_SCRIPT = `
const request = JSON.parse(process.argv[1]);
const started = performance.now();
const done = (answer) => process.stdout.write(JSON.stringify({ ...answer, ms: performance.now() - started }));
fetch(request.url, { method: request.method, headers: request.headers, body: request.body, signal: AbortSignal.timeout(request.timeoutMs) })
  .then(async (res) => done({ status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() }))
  .catch((err) => done({ status: 0, headers: {}, body: '', error: String(err.cause ?? err) }));
`;

/** An HTTP request made by a Node process run under `wrap` (inside a namespace, say). */
export async function fetchInside(wrap: readonly string[], url: string, request: InsideRequest = {}): Promise<InsideResponse> {
  const argument = JSON.stringify({ url, method: request.method ?? 'GET', headers: request.headers, body: request.body, timeoutMs: request.timeoutMs ?? 60_000 });
  const result = await run([...wrap, process.execPath, '-e', FETCH_SCRIPT, argument]);
  try {
    return JSON.parse(result.stdout) as InsideResponse;
  } catch {
    return { status: 0, headers: {}, body: '', error: `the fetch under ${wrap.join(' ')} exited ${result.code}: ${result.stderr}${result.stdout}`, ms: NaN };
  }
}
