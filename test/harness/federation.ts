/**
 * Federated datacenters as real processes, for the federation tests and the federation benchmark:
 * per datacenter one consensus server (or a Raft cluster of them), a catalog (HTTP 8500, gRPC 8502)
 * that forwards through its routers, and one or more routers (8330 in the datacenter, 8300 mutual TLS
 * between datacenters), each on its own loopback address. Areas are not made here: the tests make
 * them, as an operator would.
 */
import { spawn } from 'node:child_process';

import { fetchInside } from './netns';
import { CONSULATE_BIN, REPO_ROOT, RoleProcess, StartOptions, eventually, freeLoopbackAddress, startRole, waitHealthy } from './processes';
import { RouterTls } from './tls';

export interface FederatedDatacenter {
  readonly name: string;
  /** The first consensus server (the only one unless `consensusServers` asked for more). */
  readonly consensus: RoleProcess;
  /** Every consensus server, `consensus` first. */
  readonly consensusServers: RoleProcess[];
  readonly catalog: RoleProcess;
  readonly routers: RoleProcess[];
  /** http://<catalog>:8500 */
  readonly httpAddr: string;
}

export interface DatacenterOptions {
  /** Routers in the datacenter (2 by default, so one can be lost). */
  readonly routers?: number;
  /**
   * Consensus servers in the datacenter (1 by default). More form one Raft cluster (each lists all
   * as -initial-peer; the catalog and routers get every one as -consensus-addr), so its leader can
   * be lost. Each on a free loopback address: not with `addresses`.
   */
  readonly consensusServers?: number;
  /** The routers' pool timings: `local` (default, quick failure detection), `lan` or `wan`. */
  readonly gossipProfile?: string;
  /**
   * Run every process under this prefix (e.g. `ip netns exec dc1`); addresses come from `addresses`.
   * Health probes and the readiness check run under it too: a namespace's loopback is its own.
   */
  readonly wrap?: StartOptions['wrap'];
  /** Fixed addresses (consensus, catalog, routers...) instead of free loopback ones. */
  readonly addresses?: { consensus: string; catalog: string; routers: readonly string[] };
  readonly routerArgs?: readonly string[];
  /** Extra environment for every process (e.g. OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly env?: NodeJS.ProcessEnv;
}

export async function startDatacenter(name: string, tls: RouterTls, options: DatacenterOptions = {}): Promise<FederatedDatacenter> {
  const routerCount = options.routers ?? options.addresses?.routers.length ?? 2;
  const consensusAddress = options.addresses?.consensus ?? freeLoopbackAddress();
  const catalogAddress = options.addresses?.catalog ?? freeLoopbackAddress();
  const routerAddresses = options.addresses?.routers.slice(0, routerCount) ?? Array.from({ length: routerCount }, () => freeLoopbackAddress());
  const serverCount = options.consensusServers ?? 1;
  if (serverCount > 1 && options.addresses !== undefined) throw new Error('startDatacenter: consensusServers > 1 takes free loopback addresses; leave out `addresses`');
  const serverAddresses = [consensusAddress, ...Array.from({ length: serverCount - 1 }, () => freeLoopbackAddress())];
  const initialPeers = serverAddresses.map((address, i) => `-initial-peer=server-${i + 1}=${address}:8310`);
  // Started together, waited on after: no server of a cluster is healthy alone before its peers run.
  const consensusServers = await Promise.all(
    serverAddresses.map((address, i) => startRole({ role: 'consensus', datacenter: name, node: `server-${i + 1}`, address, args: initialPeers, wrap: options.wrap, probeVia: options.wrap, env: options.env, waitHealthy: serverCount === 1 })),
  );
  if (serverCount > 1) for (const server of consensusServers) await waitHealthy(server, 20_000, options.wrap);
  const consensus = consensusServers[0];
  const consensusAddrArgs = consensusServers.map((server) => `-consensus-addr=${server.grpc}`);
  const catalog = await startRole({
    role: 'catalog',
    datacenter: name,
    node: 'catalog',
    address: catalogAddress,
    args: [...consensusAddrArgs, ...routerAddresses.map((address) => `-router-addr=${address}:8330`)],
    wrap: options.wrap,
    env: options.env,
    probeVia: options.wrap,
  });
  const routers = await Promise.all(
    routerAddresses.map((address, i) =>
      startRole({
        role: 'federation-router',
        datacenter: name,
        node: `router-${i + 1}`,
        address,
        args: [...consensusAddrArgs, `-catalog-addr=${catalogAddress}:8500`, `-catalog-grpc-addr=${catalogAddress}:8502`, `-gossip-profile=${options.gossipProfile ?? 'local'}`, ...tls.args(name), ...(options.routerArgs ?? [])],
        wrap: options.wrap,
        env: options.env,
        probeVia: options.wrap,
      }),
    ),
  );
  const httpAddr = `http://${catalogAddress}:8500`;
  // The Raft elects a leader and the catalog's view loads in the background.
  const answers =
    options.wrap === undefined
      ? async () => (await fetch(`${httpAddr}/v1/catalog/nodes`).catch(() => undefined))?.status === 200
      : async () => (await fetchInside(options.wrap!, `${httpAddr}/v1/catalog/nodes`, { timeoutMs: 5_000 })).status === 200;
  await eventually(`${name}'s catalog to answer`, async () => (await answers()) || undefined, 20_000);
  return { name, consensus, consensusServers, catalog, routers, httpAddr };
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `consulate <args>` against a datacenter's HTTP API, as an operator would. */
export function consulate(dc: Pick<FederatedDatacenter, 'httpAddr'>, args: readonly string[], wrap?: readonly string[]): Promise<CliResult> {
  const command = [...(wrap ?? []), process.execPath, CONSULATE_BIN, ...args];
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { cwd: REPO_ROOT, env: { ...process.env, CONSULATE_HTTP_ADDR: dc.httpAddr }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The area ID in `Created area "<id>" with peer datacenter "<dc>"!`. */
export function createdAreaId(result: CliResult): string {
  const match = /^Created area "([0-9a-f-]{36})" with peer datacenter "[^"]+"!$/m.exec(result.stdout);
  if (match === null) throw new Error(`no area created: ${result.stdout}${result.stderr}`);
  return match[1];
}
