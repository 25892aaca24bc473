/**
 * `make demo`: walks the two seed guides, network segments and network areas, against the cluster
 * `make up` runs. Each command is printed as the guides print theirs, `(dc1) $ consulate members`,
 * followed by its real output (bin/consulate, a process per command, as an operator would run it),
 * and each step checks its own expectation before the next one starts.
 *
 *   node dist/deploy/demo.js [--state-dir=.consulate]
 *
 * Every address comes from <state>/topology.json, the file `make up` writes, so the demo follows
 * any subnet `make up` was given. `(dcN)` means CONSULATE_HTTP_ADDR points at dcN's catalog.
 * Where gossip needs time (members right after `make up`, an area's RTT estimates) a step re-runs
 * its command for a bounded while and prints the last run.
 *
 * Re-runnable: an area left by an earlier run is reused (and said so), the area join and the
 * service registration repeat harmlessly. Exit 0 when every step held; 1 when no cluster is
 * running or a step failed (named on stderr); 2 on bad arguments.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

import { PACKAGE_ROOT } from '../services/lib/version';
import { PORTS, SEGMENTS } from './topology';
import { isAlive } from './up';
import type { TopologyFile } from './up';

const CONSULATE_BIN = join(PACKAGE_ROOT, 'bin', 'consulate');
/** One CLI command's limit; `consulate join` itself gives up after 30 s. */
const COMMAND_TIMEOUT_MS = 40_000;
/** One HTTP request's limit (the catalog probe, the curl-equivalent steps). */
const HTTP_TIMEOUT_MS = 10_000;
/**
 * How long a step waits for gossip: members to converge after `make up` (clients retry-join every
 * 2 s), area members to get RTT estimates after the join (a few probe rounds).
 */
const CONVERGENCE_WAIT_MS = 30_000;
const RETRY_EVERY_MS = 1_000;

/** The service the areas guide registers in dc2 and then reads from dc1. */
const DEMO_SERVICE = { node: 'web-1', service: 'web', port: 80, tags: ['v1'] } as const;

export class DemoError extends Error {
  override readonly name = 'DemoError';
}

/** What the demo knows of the running cluster, all from the topology file. */
export interface Cluster {
  readonly topologyFile: string;
  readonly datacenters: readonly string[];
  /** The address of `host` in `datacenter` (127.0.1.101 for node-alpha-1 of dc1 under `make up`). */
  address(datacenter: string, host: string): string;
  /** The HTTP API of the datacenter's catalog: http://127.0.N.10:8500. */
  catalog(datacenter: string): string;
}

export function clusterFromTopology(topologyFile: string, topology: TopologyFile): Cluster {
  const addresses = new Map(topology.processes.map((p) => [`${p.datacenter}/${p.host}`, p.address]));
  const address = (datacenter: string, host: string) => {
    const found = addresses.get(`${datacenter}/${host}`);
    if (found === undefined) throw new DemoError(`${topologyFile} has no host ${host} in ${datacenter}: it was written by another version of 'make up'; restart the cluster`);
    return found;
  };
  return { topologyFile, datacenters: topology.datacenters, address, catalog: (datacenter) => `http://${address(datacenter, 'catalog')}:${PORTS.catalogHttp}` };
}

/**
 * The running cluster, or a DemoError saying why there is none and what to do: no topology file,
 * one still starting, one whose supervisor is gone, fewer than two datacenters, or catalogs that
 * do not answer.
 */
export async function findCluster(stateDir: string): Promise<Cluster> {
  const file = join(stateDir, 'topology.json');
  const shown = relative(process.cwd(), file) || file;
  const start = "Start one with 'make up' (or 'make up DETACH=1') and run 'make demo' again once it prints 'Consulate is up'.";
  if (!existsSync(file)) throw new DemoError(`No Consulate cluster is running: ${shown} does not exist. ${start}`);
  let topology: TopologyFile;
  try {
    topology = JSON.parse(readFileSync(file, 'utf8')) as TopologyFile;
  } catch (err) {
    throw new DemoError(`${shown} cannot be read (${(err as Error).message}). ${start}`);
  }
  if (!isAlive(topology.supervisorPid)) throw new DemoError(`No Consulate cluster is running: ${shown} names supervisor pid ${topology.supervisorPid}, which has exited. ${start}`);
  if (!topology.healthy) throw new DemoError(`The cluster in ${shown} is still starting. Run 'make demo' again once 'make up' prints 'Consulate is up'.`);
  for (const datacenter of ['dc1', 'dc2']) {
    if (!topology.datacenters.includes(datacenter)) throw new DemoError(`The areas guide needs dc1 and dc2; this cluster runs ${topology.datacenters.join(', ')}. Restart it with 'make down' and 'make up' (DCS=2 is the default).`);
  }
  const cluster = clusterFromTopology(shown, topology);
  for (const datacenter of ['dc1', 'dc2']) {
    const url = `${cluster.catalog(datacenter)}/v1/status/leader`;
    const answer = await httpRequest('GET', url).catch((err: Error) => err);
    if (answer instanceof Error || answer.status !== 200) {
      const why = answer instanceof Error ? answer.message : `HTTP ${answer.status}: ${answer.body.trim()}`;
      throw new DemoError(`${datacenter}'s catalog does not answer at ${url} (${why}). Is 'make up' still running? Its log: ${topology.processes.find((p) => p.datacenter === datacenter && p.role === 'catalog')?.logFile ?? 'in .consulate/up/logs'}`);
    }
  }
  return cluster;
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

async function httpRequest(method: 'GET' | 'PUT', url: string, body?: string): Promise<HttpAnswer> {
  try {
    const response = await fetch(url, { method, body, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    return { status: response.status, body: await response.text() };
  } catch (err) {
    // fetch's own message is "fetch failed"; the reason is its cause (ECONNREFUSED, a timeout).
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(cause?.code ?? cause?.message ?? (err as Error).message);
  }
}

/** One command's outcome. */
export interface CommandRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** What a step expects of a command's outcome: undefined when it holds, else what did not. */
export type Expectation = (run: CommandRun) => string | undefined;

// ---------------------------------------------------------------------------------------------
// Reading the CLI's tables (columnize: every column starts where its header does).

export type Row = Readonly<Record<string, string>>;

/** A columnized table as rows keyed by header; cells may be empty (a column's start is its header's). */
export function parseTable(text: string): Row[] {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) return [];
  const columns = [...lines[0].matchAll(/\S+/g)].map((match) => ({ name: match[0], start: match.index ?? 0 }));
  return lines.slice(1).map((line) => Object.fromEntries(columns.map((column, i) => [column.name, line.slice(column.start, columns[i + 1]?.start ?? line.length).trim()])));
}

/** The first expected row (every given column equal) that `rows` lack, described; undefined when none is missing. */
export function missingRow(rows: readonly Row[], expected: readonly Row[]): string | undefined {
  for (const want of expected) {
    if (!rows.some((row) => Object.entries(want).every(([column, value]) => row[column] === value))) {
      return `no row with ${Object.entries(want).map(([column, value]) => `${column}=${value}`).join(' ')}`;
    }
  }
  return undefined;
}

/** A Go duration as `operator area members` prints RTT (`0s`, `594.191µs`, `2.96ms`); `unknown` and the rest are not. */
export function isGoDuration(text: string): boolean {
  return /^(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))+$/.test(text);
}

// ---------------------------------------------------------------------------------------------
// The walk-through.

class Walkthrough {
  /** The step under way, named in the failure message. */
  private current: string | undefined;
  private steps = 0;

  constructor(
    readonly cluster: Cluster,
    private readonly write: (text: string) => void,
  ) {}

  get completed(): number {
    return this.steps;
  }

  heading(title: string, source: string): void {
    this.write(`\n${title}\n${'='.repeat(title.length)}\n(${source})\n\n`);
  }

  say(text: string): void {
    this.write(`${text}\n`);
  }

  async step(name: string, explanation: string, body: () => Promise<void>): Promise<void> {
    this.current = name;
    this.write(`\n${explanation}\n\n`);
    await body();
    this.steps++;
  }

  fail(why: string): never {
    throw new DemoError(`step "${this.current ?? 'start'}" failed: ${why}`);
  }

  /**
   * Runs `consulate args` against `datacenter`'s catalog until `expect` holds, for up to `waitMs`
   * (0: once), printing the command and its last output; fails the step if it never holds.
   */
  async consulate(datacenter: string, args: readonly string[], expect: Expectation, waitMs = 0): Promise<CommandRun> {
    const deadline = Date.now() + waitMs;
    let announced = false;
    for (;;) {
      const run = await runConsulate(args, this.cluster.catalog(datacenter));
      const why = expect(run);
      if (why === undefined || Date.now() >= deadline) {
        this.write(`(${datacenter}) $ consulate ${args.map(shellWord).join(' ')}\n${asPrinted(run.stdout + run.stderr)}`);
        if (why !== undefined) this.fail(`${why}${waitMs > 0 ? ` (still so after ${waitMs / 1000} s)` : ''}`);
        return run;
      }
      if (!announced) {
        this.write(`  (not there yet: ${why}; retrying for up to ${waitMs / 1000} s)\n`);
        announced = true;
      }
      await sleep(RETRY_EVERY_MS);
    }
  }

  /** An HTTP request printed as the curl command that makes it, with the answer; fails the step unless 200. */
  async curl(datacenter: string, method: 'GET' | 'PUT', path: string, body?: unknown): Promise<string> {
    const url = `${this.cluster.catalog(datacenter)}${path}`;
    const data = body === undefined ? undefined : JSON.stringify(body);
    this.write(`(${datacenter}) $ curl ${method === 'GET' ? '' : `-X ${method} `}${shellWord(url)}${data === undefined ? '' : ` -d ${shellWord(data)}`}\n`);
    const answer = await httpRequest(method, url, data).catch((err: Error) => this.fail(`${method} ${url}: ${err.message}`));
    this.write(asPrinted(answer.body));
    if (answer.status !== 200) this.fail(`${method} ${url} answered HTTP ${answer.status}`);
    return answer.body;
  }

  /**
   * The area of `datacenter` whose peer is `peer`, if an earlier run made one. A stale read: the
   * routers' view is enough to know whether an area exists, and this look-up is the demo's own,
   * not a step of the guide.
   */
  async existingArea(datacenter: string, peer: string): Promise<string | undefined> {
    const url = `${this.cluster.catalog(datacenter)}/v1/operator/area?stale`;
    const answer = await httpRequest('GET', url).catch((err: Error) => this.fail(`GET ${url}: ${err.message}`));
    if (answer.status !== 200) this.fail(`GET ${url} answered HTTP ${answer.status}: ${answer.body.trim()}`);
    return (JSON.parse(answer.body) as { ID: string; PeerDatacenter: string }[]).find((area) => area.PeerDatacenter === peer)?.ID;
  }
}

function runConsulate(args: readonly string[], httpAddr: string): Promise<CommandRun> {
  return new Promise((resolve) => {
    // The operator's own CONSULATE_* settings must not redirect the demo's commands.
    const env: NodeJS.ProcessEnv = { ...process.env, CONSULATE_HTTP_ADDR: httpAddr };
    delete env.CONSULATE_GOSSIP_ADDR;
    const child = spawn(process.execPath, [CONSULATE_BIN, ...args], { cwd: PACKAGE_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: COMMAND_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: `${stderr}cannot run ${CONSULATE_BIN}: ${err.message}\n` }));
    child.on('close', (code, signal) => resolve({ code: code ?? -1, stdout, stderr: signal === null ? stderr : `${stderr}(killed by ${signal} after ${COMMAND_TIMEOUT_MS / 1000} s)\n` }));
  });
}

/** A command's output as the guides show it: as printed, ending with a newline. */
function asPrinted(text: string): string {
  return text === '' || text.endsWith('\n') ? text : `${text}\n`;
}

function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Expectations shared by the steps.

function exitsWith(code: number, then: Expectation = () => undefined): Expectation {
  return (run) => (run.code !== code ? `expected exit code ${code}, got ${run.code}${run.stderr.trim() === '' ? '' : ` (${run.stderr.trim()})`}` : then(run));
}

function hasRows(expected: readonly Row[], alsoEvery?: { readonly column: string; readonly value: string }): Expectation {
  return exitsWith(0, (run) => {
    const rows = parseTable(run.stdout);
    const stray = alsoEvery === undefined ? undefined : rows.find((row) => row[alsoEvery.column] !== alsoEvery.value);
    if (stray !== undefined) return `${stray.Node ?? JSON.stringify(stray)} is listed with ${alsoEvery!.column} ${stray[alsoEvery!.column]}, not ${alsoEvery!.value}`;
    return missingRow(rows, expected);
  });
}

// ---------------------------------------------------------------------------------------------
// The segments guide.

const SERVERS = ['server-1', 'server-2', 'server-3'];

async function segmentsGuide(demo: Walkthrough): Promise<void> {
  const { cluster } = demo;
  const dc = 'dc1';
  const [alpha, beta] = SEGMENTS;
  const client = (segment: string) => `node-${segment}-1`;
  demo.heading('Network segments', 'seed guide: Consul Enterprise Network Segments');
  demo.say(
    [
      `Each datacenter's servers take part in every segment: the default pool on ${PORTS.serfLan}, ${SEGMENTS.map((s) => `${s.name} on ${s.port}`).join(', ')}.`,
      'A client belongs to one segment and gossips only with the members of that segment.',
      `(${dc}) means CONSULATE_HTTP_ADDR=${cluster.catalog(dc)}, ${dc}'s catalog.`,
    ].join('\n'),
  );

  await demo.step('segments 1: members of every segment', "The servers are listed once, in every segment (<all>); each client with its segment:", async () => {
    const expected: Row[] = [
      ...SERVERS.map((node) => ({ Node: node, Address: `${cluster.address(dc, node)}:${PORTS.serfLan}`, Status: 'alive', Type: 'server', Segment: '<all>' })),
      ...SEGMENTS.map(({ name }) => ({ Node: client(name), Status: 'alive', Type: 'client', Segment: name })),
    ];
    await demo.consulate(dc, ['members'], hasRows(expected), CONVERGENCE_WAIT_MS);
  });

  for (const segment of SEGMENTS) {
    await demo.step(
      `segments ${segment === alpha ? 2 : 3}: members of segment ${segment.name}`,
      `Segment ${segment.name} alone: its client, and the servers at their ${segment.name} port (${segment.port}):`,
      async () => {
        const expected: Row[] = [
          { Node: client(segment.name), Status: 'alive', Type: 'client', Segment: segment.name },
          ...SERVERS.map((node) => ({ Node: node, Address: `${cluster.address(dc, node)}:${segment.port}`, Status: 'alive', Type: 'server', Segment: segment.name })),
        ];
        await demo.consulate(dc, ['members', `-segment=${segment.name}`], hasRows(expected, { column: 'Segment', value: segment.name }), CONVERGENCE_WAIT_MS);
      },
    );
  }

  const agent = `${cluster.address(dc, client(alpha.name))}:${PORTS.gossip}`;
  const server = cluster.address(dc, 'server-1');
  await demo.step(
    'segments 4: a cross-segment join is refused',
    `${client(alpha.name)} (segment ${alpha.name}; its agent's API at ${agent}) tries to join server-1 at the ${beta.name} port, ${beta.port}.\nThe merge check refuses every member of the wrong segment, with Consul's error:`,
    async () => {
      const refusal = new RegExp(`Member '[^']+' part of wrong segment '${beta.name}' \\(expected '${alpha.name}'\\)`);
      await demo.consulate(dc, ['join', `-gossip-addr=${agent}`, `${server}:${beta.port}`], exitsWith(1, (run) => (refusal.test(run.stderr) ? undefined : `no "${refusal.source.replace(/\\/g, '')}" in the output`)));
    },
  );

  await demo.step('segments 5: a join within the segment succeeds', `The same client joins server-1 at its own segment's port, ${alpha.port}:`, async () => {
    await demo.consulate(dc, ['join', `-gossip-addr=${agent}`, `${server}:${alpha.port}`], exitsWith(0, (run) => (/Successfully joined cluster by contacting \d+ nodes?\./.test(run.stdout) ? undefined : 'no "Successfully joined cluster" line')));
  });
}

// ---------------------------------------------------------------------------------------------
// The areas guide.

async function areasGuide(demo: Walkthrough): Promise<void> {
  const { cluster } = demo;
  const routers = ['router-1', 'router-2'];
  demo.heading('Network areas', 'seed guide: Multiple Datacenters - Advanced Federation with Network Areas');
  demo.say(
    [
      'An area is a relationship between two datacenters: the operator creates it in each of them, then joins',
      "one side's federation routers to the other's. Traffic between the areas is server RPC on 8300, mutual TLS.",
      `(dc1) is ${cluster.catalog('dc1')}, (dc2) is ${cluster.catalog('dc2')}.`,
    ].join('\n'),
  );

  const areaIds = new Map<string, string>();
  for (const [datacenter, peer] of [
    ['dc1', 'dc2'],
    ['dc2', 'dc1'],
  ] as const) {
    const first = datacenter === 'dc1';
    await demo.step(
      `areas ${first ? 1 : 2}: create the area in ${datacenter}`,
      first ? 'A compatible pair of areas must be created, one in each datacenter:' : `And the reciprocal one in ${datacenter}:`,
      async () => {
        const existing = await demo.existingArea(datacenter, peer);
        if (existing !== undefined) {
          demo.say(`${datacenter} already has an area with peer datacenter "${peer}" ("${existing}"), made by an earlier 'make demo' or by hand: reusing it\n(a datacenter has at most one area per peer; creating another would fail).`);
          areaIds.set(datacenter, existing);
          return;
        }
        const created = new RegExp(`^Created area "([0-9a-f-]{36})" with peer datacenter "${peer}"!$`, 'm');
        const run = await demo.consulate(datacenter, ['operator', 'area', 'create', `-peer-datacenter=${peer}`], exitsWith(0, (r) => (created.test(r.stdout) ? undefined : `no 'Created area "<id>" with peer datacenter "${peer}"!' line`)));
        areaIds.set(datacenter, created.exec(run.stdout)![1]);
      },
    );
  }
  const dc1Area = areaIds.get('dc1')!;

  await demo.step('areas 3: list the areas', 'dc1 lists its area, peer datacenter dc2:', async () => {
    await demo.consulate('dc1', ['operator', 'area', 'list'], hasRows([{ Area: dc1Area, PeerDC: 'dc2' }]));
  });

  const dc2Router = cluster.address('dc2', 'router-1');
  await demo.step('areas 4: join the areas', `dc1's routers join dc2's through one of them, router-1 of dc2 (${dc2Router}):`, async () => {
    await demo.consulate('dc1', ['operator', 'area', 'join', '-peer-datacenter=dc2', dc2Router], hasRows([{ Address: dc2Router, Joined: 'true' }]));
  });

  await demo.step('areas 5: area members with RTT', "The area now holds both datacenters' routers, each with its estimated round-trip time from here:", async () => {
    const expected: Row[] = ['dc1', 'dc2'].flatMap((dc) => routers.map((host) => ({ Area: dc1Area, Node: `${host}.${dc}`, Address: `${cluster.address(dc, host)}:${PORTS.routerServer}`, Status: 'alive', DC: dc })));
    const everyRtt: Expectation = (run) => {
      const pending = parseTable(run.stdout).find((row) => !isGoDuration(row.RTT ?? ''));
      return pending === undefined ? undefined : `no RTT estimate for ${pending.Node} yet (${pending.RTT})`;
    };
    await demo.consulate('dc1', ['operator', 'area', 'members'], (run) => hasRows(expected)(run) ?? everyRtt(run), CONVERGENCE_WAIT_MS);
  });

  const node = `${cluster.address('dc2', 'catalog').split('.').slice(0, 3).join('.')}.50`;
  await demo.step('areas 6: register a service in dc2', `A service "${DEMO_SERVICE.service}" on an external node of dc2 (${node}, no agent of its own), through dc2's HTTP API:`, async () => {
    const body = await demo.curl('dc2', 'PUT', '/v1/catalog/register', { Node: DEMO_SERVICE.node, Address: node, Service: { Service: DEMO_SERVICE.service, Port: DEMO_SERVICE.port, Tags: DEMO_SERVICE.tags } });
    if (body.trim() !== 'true') demo.fail(`the registration answered ${body.trim()}, not true`);
  });

  await demo.step('areas 7: dc1 reads the catalog of dc2', `dc1's catalog forwards the request over the area to dc2, which answers with its services, "${DEMO_SERVICE.service}" among them:`, async () => {
    const listed: Expectation = (run) => (run.stdout.split('\n').some((line) => line.trim() === DEMO_SERVICE.service) ? undefined : `"${DEMO_SERVICE.service}" is not listed`);
    await demo.consulate('dc1', ['catalog', 'services', '-datacenter=dc2'], exitsWith(0, listed), CONVERGENCE_WAIT_MS);
  });

  await demo.step('areas 8: the HTTP API with ?dc=dc2', 'The same through the HTTP API: every entry comes from dc2 ("Datacenter": "dc2"):', async () => {
    const body = await demo.curl('dc1', 'GET', `/v1/catalog/service/${DEMO_SERVICE.service}?dc=dc2&pretty`);
    const entries = JSON.parse(body) as { Datacenter?: string; Node?: string }[];
    if (!Array.isArray(entries) || !entries.some((entry) => entry.Node === DEMO_SERVICE.node)) demo.fail(`no entry for node ${DEMO_SERVICE.node}`);
    const stray = entries.find((entry) => entry.Datacenter !== 'dc2');
    if (stray !== undefined) demo.fail(`an entry of ${stray.Node} has "Datacenter": ${JSON.stringify(stray.Datacenter)}, not "dc2"`);
  });
}

// ---------------------------------------------------------------------------------------------

export async function main(argv: readonly string[], write: (text: string) => void = (text) => process.stdout.write(text)): Promise<number> {
  let stateDir = join(PACKAGE_ROOT, '.consulate');
  for (const arg of argv) {
    if (arg.startsWith('--state-dir=')) stateDir = arg.slice('--state-dir='.length);
    else {
      process.stderr.write(`make demo: unknown argument ${arg} (usage: node dist/deploy/demo.js [--state-dir=.consulate])\n`);
      return 2;
    }
  }
  let demo: Walkthrough | undefined;
  try {
    demo = new Walkthrough(await findCluster(stateDir), write);
    write(`Walking the network segments and network areas guides against the cluster in ${demo.cluster.topologyFile}.\n`);
    await segmentsGuide(demo);
    await areasGuide(demo);
    write(`\nBoth guides walked: ${demo.completed} steps, each as expected. Run 'make demo' again to see the areas reused; 'make down' stops the cluster.\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof DemoError)) throw err;
    process.stderr.write(`${demo === undefined ? '' : '\n'}make demo: ${err.message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`make demo: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
