/**
 * The one description of a Consulate deployment on one machine, from which `make up` starts
 * processes and compose.yaml is written, so the two cannot drift. DESIGN.md "Local topology":
 * datacenter N lives on 127.0.N.0/24, every host has its own address and the standard ports.
 *
 *   host            address       runs
 *   server-1..3     127.0.N.1-3   consensus (8310, a 3-server Raft cluster), gossip server (8320;
 *                                 LAN pool 8301, segment alpha 8303, beta 8304)
 *   catalog         127.0.N.10    catalog (HTTP 8500, gRPC 8502; asks server-1..3's gossip on 8320),
 *                                 and a gossip client of its own (8320, LAN 8301)
 *   router-1, -2    127.0.N.20-21 federation-router (8330 in the datacenter; 8300, mutual TLS, between
 *                                 datacenters; forwards to the catalog's 8500 and 8502)
 *   node-alpha-1    127.0.N.101   gossip client in segment alpha (8301), joins the servers' 8303
 *   node-beta-1     127.0.N.102   gossip client in segment beta (8301), joins the servers' 8304
 */

export type Role = 'consensus' | 'gossip' | 'catalog' | 'federation-router';

export interface ProcessSpec {
  readonly datacenter: string;
  /** The host's name in its datacenter, also each process's node name: "server-1". */
  readonly host: string;
  readonly role: Role;
  /** The gRPC port the process serves health and its API on. */
  readonly grpcPort: number;
  /** Role flags other than -datacenter, -node, -bind and -data-dir; host names stand for addresses. */
  readonly flags: readonly HostFlag[];
}

/**
 * A flag whose value may name other hosts: `{ hostPort: ['server-1', 8310] }` is resolved per
 * target; `prefix` goes before the address (`-initial-peer=server-1=127.0.1.1:8310`). The named
 * host is a start dependency (compose's depends_on) unless `waitFor` is false.
 */
export type HostFlag =
  | { readonly name: string; readonly value: string }
  | { readonly name: string; readonly hostPort: readonly [string, number]; readonly prefix?: string; readonly waitFor?: boolean }
  | { readonly name: string; readonly tlsFile: TlsFile };

/** The TLS files a router presents on 8300; where they live is the deployment's business. */
export type TlsFile = 'ca' | 'cert' | 'key';

/** The names `consulate tls ca create` and `consulate tls cert create -server -dc <dc>` give them. */
export function tlsFileName(file: TlsFile, datacenter: string): string {
  switch (file) {
    case 'ca':
      return 'consulate-agent-ca.pem';
    case 'cert':
      return `${datacenter}-server-consulate-0.pem`;
    case 'key':
      return `${datacenter}-server-consulate-0-key.pem`;
  }
}

export const MAX_DATACENTERS = 9;

export const PORTS = { consensus: 8310, gossip: 8320, serfLan: 8301, catalogGrpc: 8502, catalogHttp: 8500, routerGrpc: 8330, routerServer: 8300 } as const;

/** The network segments of every datacenter, and their ports on server nodes (DESIGN.md). */
export const SEGMENTS = [
  { name: 'alpha', port: 8303 },
  { name: 'beta', port: 8304 },
] as const;

const SERVERS = ['server-1', 'server-2', 'server-3'];

export function datacenterName(index: number): string {
  return `dc${index}`;
}

/** Every process of datacenters dc1..dcN, in start order (consensus first). */
export function topology(datacenters: number): ProcessSpec[] {
  if (!Number.isInteger(datacenters) || datacenters < 1 || datacenters > MAX_DATACENTERS) {
    throw new RangeError(`DCS must be a whole number from 1 to ${MAX_DATACENTERS}, got ${datacenters}`);
  }
  const processes: ProcessSpec[] = [];
  for (let index = 1; index <= datacenters; index++) processes.push(...datacenter(datacenterName(index)));
  return processes;
}

function datacenter(dc: string): ProcessSpec[] {
  const consensusAddrs: HostFlag[] = SERVERS.map((host) => ({ name: 'consensus-addr', hostPort: [host, PORTS.consensus] as const }));
  // Every server of a new cluster gets the same list of its peers, itself included (Raft bootstrap).
  const initialPeers: HostFlag[] = SERVERS.map((host) => ({ name: 'initial-peer', hostPort: [host, PORTS.consensus] as const, prefix: `${host}=` }));
  const out: ProcessSpec[] = [];
  for (const host of SERVERS) out.push({ datacenter: dc, host, role: 'consensus', grpcPort: PORTS.consensus, flags: initialPeers });
  // Every server gossip is in the default pool and in segments alpha and beta (the seed guide's
  // layout), and retry-joins the other servers; a client retry-joins the servers at its segment's port.
  const segmentFlags: HostFlag[] = SEGMENTS.map(({ name, port }) => ({ name: 'segments', value: `${name}:${port}` }));
  const joinEvery = (port: number): HostFlag[] => [...SERVERS.map((host) => ({ name: 'retry-join', hostPort: [host, port] as const })), { name: 'retry-interval', value: '2s' }];
  for (const host of SERVERS) out.push({ datacenter: dc, host, role: 'gossip', grpcPort: PORTS.gossip, flags: [{ name: 'server', value: 'true' }, ...segmentFlags, ...joinEvery(PORTS.serfLan)] });
  // The catalog's reconciler and /v1/agent API ask the server gossip agents (they see every segment).
  const gossipAddrs: HostFlag[] = SERVERS.map((host) => ({ name: 'gossip-addr', hostPort: [host, PORTS.gossip] as const }));
  // Requests for other datacenters (`?dc=`) and the area endpoints go through the routers.
  const routerAddrs: HostFlag[] = ['router-1', 'router-2'].map((host) => ({ name: 'router-addr', hostPort: [host, PORTS.routerGrpc] as const }));
  out.push({ datacenter: dc, host: 'catalog', role: 'catalog', grpcPort: PORTS.catalogGrpc, flags: [...consensusAddrs, ...gossipAddrs, ...routerAddrs] });
  // Every Consul host runs an agent: the catalog's host too, so a session created through this
  // catalog without a Node lands on a registered node, as it would on a Consul agent.
  out.push({ datacenter: dc, host: 'catalog', role: 'gossip', grpcPort: PORTS.gossip, flags: joinEvery(PORTS.serfLan) });
  // Routers keep areas in consensus, forward what other datacenters ask to the catalog, and meet
  // other datacenters' routers on 8300 with the datacenter's certificate. Their pools use the LAN
  // timings: on one machine Consul's WAN timings would only make failure detection slower.
  const routerFlags: HostFlag[] = [
    ...consensusAddrs,
    // Not start dependencies: the catalog waits for the routers (-router-addr), not the reverse.
    // HTTP requests from other datacenters go to 8500, gRPC calls to 8502.
    { name: 'catalog-addr', hostPort: ['catalog', PORTS.catalogHttp], waitFor: false },
    { name: 'catalog-grpc-addr', hostPort: ['catalog', PORTS.catalogGrpc], waitFor: false },
    { name: 'ca-file', tlsFile: 'ca' },
    { name: 'cert-file', tlsFile: 'cert' },
    { name: 'key-file', tlsFile: 'key' },
    { name: 'gossip-profile', value: 'lan' },
  ];
  for (const host of ['router-1', 'router-2']) out.push({ datacenter: dc, host, role: 'federation-router', grpcPort: PORTS.routerGrpc, flags: routerFlags });
  for (const { name, port } of SEGMENTS) out.push({ datacenter: dc, host: `node-${name}-1`, role: 'gossip', grpcPort: PORTS.gossip, flags: [{ name: 'segment', value: name }, ...joinEvery(port)] });
  return out;
}

/** Whether `spec` listens on `port`: its gRPC port, or for a gossip agent its LAN and segment ports. */
export function servesPort(spec: ProcessSpec, port: number): boolean {
  return spec.grpcPort === port || (spec.role === 'catalog' && port === PORTS.catalogHttp) || (spec.role === 'gossip' && (port === PORTS.serfLan || SEGMENTS.some((s) => s.port === port)));
}

/** The last octet of every host's address, the same in every datacenter. */
export const HOST_OCTETS: Readonly<Record<string, number>> = {
  'server-1': 1,
  'server-2': 2,
  'server-3': 3,
  catalog: 10,
  'router-1': 20,
  'router-2': 21,
  'node-alpha-1': 101,
  'node-beta-1': 102,
};

/**
 * The loopback address of a host under `make up`: <subnet>.<dc number>.<octet>, with subnet
 * "127.0" as DESIGN.md has it (tests pick another so they never meet a running `make up`).
 */
export function loopbackAddress(datacenter: string, host: string, subnet = '127.0'): string {
  const index = Number(datacenter.replace(/^dc/, ''));
  const octet = HOST_OCTETS[host];
  if (!Number.isInteger(index) || index < 1 || octet === undefined) throw new Error(`no address for host ${host} of ${datacenter}`);
  return `${subnet}.${index}.${octet}`;
}

/** Flags as command-line arguments, with host names resolved by `resolve` and TLS files by `tlsPath`. */
export function renderFlags(flags: readonly HostFlag[], resolve: (host: string) => string, tlsPath: (file: TlsFile) => string): string[] {
  return flags.map((flag) => {
    if ('value' in flag) return `-${flag.name}=${flag.value}`;
    if ('tlsFile' in flag) return `-${flag.name}=${tlsPath(flag.tlsFile)}`;
    return `-${flag.name}=${flag.prefix ?? ''}${resolve(flag.hostPort[0])}:${flag.hostPort[1]}`;
  });
}
