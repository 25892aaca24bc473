/**
 * dc1 and dc2 federated as the network-areas guide does it, with the real processes of
 * test/harness/federation.ts (per datacenter: one consensus server, a catalog on 8500 that
 * forwards `?dc=` through its routers, and the routers on 8330 / 8300 with mutual TLS): reciprocal
 * areas over HTTP, a join of dc1's area to dc2's router-1, `web` registered in dc2, then wait until
 * dc1 lists every router of both datacenters alive and `GET /v1/catalog/service/web?dc=dc2` from
 * dc1 answers 200. Every wait is bounded. The harness is test code that tsc compiles into
 * dist/test/harness/ because this file imports it; it finds the repository from package.json.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';

import { PACKAGE_ROOT } from '../../services/lib/version';
import { Endpoint, agentFrom, httpCall, httpOk } from '../catalog/http-client';
import { tracingEnv } from '../children';
import { FederatedDatacenter, startDatacenter } from '../../test/harness/federation';
import { RoleProcess, eventually, stopAll } from '../../test/harness/processes';
import { RouterTls, makeRouterTls } from '../../test/harness/tls';

export const REPO = PACKAGE_ROOT;
/** The source address of every request this benchmark sends (the catalogs admit 200 connections per client IP). */
export const CLIENT_IP = '127.0.0.1';
export const SETUP_TIMEOUT_MS = 60_000;
export const SERVICE = 'web';

export interface FederatedPair {
  readonly profile: string;
  readonly dc1: FederatedDatacenter;
  readonly dc2: FederatedDatacenter;
  /** dc1's area with peer datacenter dc2, and dc2's with dc1. */
  readonly dc1AreaId: string;
  readonly dc2AreaId: string;
  readonly dc1Http: Endpoint;
  readonly dc2Http: Endpoint;
  /** For setup, polling and the failure window; the measurements make their own. */
  readonly control: Agent;
  /** SIGKILL → setup done, ms; for the notes. */
  readonly setupMs: number;
}

/** Every role process of every pair started in this run, for the exit handler and the log copies. */
const started: { processes: RoleProcess[]; dirs: string[] } = { processes: [], dirs: [] };
let tls: RouterTls | undefined;

export function endpointOf(dc: FederatedDatacenter): Endpoint {
  const url = new URL(dc.httpAddr);
  return { host: url.hostname, port: Number(url.port) };
}

export function processesOf(dc: FederatedDatacenter): RoleProcess[] {
  return [dc.consensus, dc.catalog, ...dc.routers];
}

export interface MemberRow {
  readonly Name: string;
  readonly Addr: string;
  readonly Datacenter: string;
  readonly Status: string;
  readonly RTT: number;
}

export async function areaMembers(to: Endpoint, agent: Agent, areaId: string, timeoutMs = 2_000): Promise<MemberRow[]> {
  return JSON.parse((await httpOk(to, agent, 'GET', `/v1/operator/area/${areaId}/members`, undefined, timeoutMs)).body.toString()) as MemberRow[];
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

async function createArea(to: Endpoint, agent: Agent, peer: string): Promise<string> {
  const answer = JSON.parse((await httpOk(to, agent, 'POST', '/v1/operator/area', json({ PeerDatacenter: peer }))).body.toString()) as { ID?: string };
  if (typeof answer.ID !== 'string') throw new Error(`POST /v1/operator/area answered no ID: ${JSON.stringify(answer)}`);
  return answer.ID;
}

/**
 * Starts dc1 and dc2 with `routers` routers each on `profile` timings and federates them. On
 * failure what was started is left for `stopPairs` (every caller's finally).
 */
export async function startPair(profile: string, routers: number, log: (line: string) => void): Promise<FederatedPair> {
  const t0 = performance.now();
  tls ??= makeRouterTls(['dc1', 'dc2']);
  log(`[${profile}] starting dc1 and dc2: consensus x1, catalog x1, routers x${routers} each, -gossip-profile=${profile}`);
  const [dc1, dc2] = await Promise.all([startDatacenter('dc1', tls, { routers, gossipProfile: profile, env: tracingEnv() }), startDatacenter('dc2', tls, { routers, gossipProfile: profile, env: tracingEnv() })]);
  for (const dc of [dc1, dc2]) for (const p of processesOf(dc)) { started.processes.push(p); started.dirs.push(p.dataDir); }
  const dc1Http = endpointOf(dc1);
  const dc2Http = endpointOf(dc2);
  const control = agentFrom(CLIENT_IP, 8);

  // The areas are kept in consensus by the routers, which register there in the background:
  // retried until the router takes them (bounded).
  const dc1AreaId = await eventually('dc1 to create its area with dc2', () => createArea(dc1Http, control, 'dc2').catch(() => undefined), SETUP_TIMEOUT_MS);
  const dc2AreaId = await eventually('dc2 to create its area with dc1', () => createArea(dc2Http, control, 'dc1').catch(() => undefined), SETUP_TIMEOUT_MS);
  const joinTo = dc2.routers[0].address;
  const joined = JSON.parse((await httpOk(dc1Http, control, 'PUT', `/v1/operator/area/${dc1AreaId}/join`, json([joinTo]))).body.toString()) as { Address: string; Joined: boolean; Error: string }[];
  if (!joined.every((j) => j.Joined)) throw new Error(`PUT /v1/operator/area/${dc1AreaId}/join ["${joinTo}"]: ${JSON.stringify(joined)}`);
  await httpOk(dc2Http, control, 'PUT', '/v1/catalog/register', json({ Node: 'web-dc2', Address: '10.0.2.5', Service: { Service: SERVICE, Port: 80 } }));

  const expected = 2 * routers;
  await eventually(`dc1 to list ${expected} routers alive in its area with dc2`, async () => {
    const rows = await areaMembers(dc1Http, control, dc1AreaId).catch(() => []);
    return (rows.length === expected && rows.every((r) => r.Status === 'alive')) || undefined;
  }, SETUP_TIMEOUT_MS);
  await eventually(`GET /v1/catalog/service/${SERVICE}?dc=dc2 from dc1 to answer 200`, async () => {
    const answer = await httpCall(dc1Http, control, 'GET', `/v1/catalog/service/${SERVICE}?dc=dc2`, undefined, 5_000).catch(() => undefined);
    return (answer?.status === 200 && answer.body.toString().includes('"web-dc2"')) || undefined;
  }, SETUP_TIMEOUT_MS);
  const setupMs = Math.round(performance.now() - t0);
  log(`[${profile}] federated in ${setupMs} ms: dc1 ${dc1.httpAddr} (area ${dc1AreaId}), dc2 ${dc2.httpAddr} (area ${dc2AreaId}), joined through ${joinTo}:8300`);
  return { profile, dc1, dc2, dc1AreaId, dc2AreaId, dc1Http, dc2Http, control, setupMs };
}

/** The harness's stopAll (SIGTERM, then SIGKILL after 10 s), bounded; then the data dirs go. */
export async function stopPairs(): Promise<void> {
  await Promise.race([stopAll(), new Promise((r) => setTimeout(r, 20_000))]);
  for (const p of started.processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const dir of started.dirs) rmSync(dir, { recursive: true, force: true });
  started.processes = started.processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
  started.dirs = [];
}

/** This process's own children, from /proc: also those a datacenter still starting has spawned. */
function childPidsSync(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) pids.push(Number(entry));
    } catch { /* gone */ }
  }
  return pids;
}

/**
 * Last resort ('exit' handler): SIGKILL by PID every role still running, those of a datacenter
 * interrupted while starting included (only this process's children); temp dirs removed.
 */
export function killAllSync(): void {
  const pids = new Set(started.processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => p.pid));
  for (const pid of childPidsSync()) pids.add(pid);
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const dir of started.dirs) rmSync(dir, { recursive: true, force: true });
  if (tls) rmSync(tls.dir, { recursive: true, force: true });
}

/** Each role's output, from the harness's memory, for the logs kept on trouble. */
export function roleLogs(pair: Pick<FederatedPair, 'dc1' | 'dc2'>): { name: string; text: string }[] {
  return [pair.dc1, pair.dc2].flatMap((dc) => processesOf(dc).map((p) => ({ name: `${dc.name}-${p.role}-${p.address}.log`, text: p.lines.join('\n') + '\n' })));
}
