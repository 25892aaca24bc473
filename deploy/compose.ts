/**
 * Writes compose.yaml from deploy/topology.ts, so `docker compose up` runs exactly the processes
 * `make up` runs, with the same names, ports and flags; only the addresses differ (a Docker
 * network per datacenter instead of 127.0.N.0/24). compose.yaml is committed, and a unit test
 * fails when it no longer matches what this generator writes.
 *
 *   node dist/deploy/compose.js               prints compose.yaml
 *   node dist/deploy/compose.js compose.yaml  writes it (`make compose`)
 *   node dist/deploy/compose.js --check       exits 1 when the committed compose.yaml is stale
 *
 * The file must also load in Debian's docker-compose 1.29.2, which CI uses to validate it: no
 * top-level `name:` or `include:`, no `healthcheck.start_interval` (toolchain.md §B3).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Document, isScalar, visit } from 'yaml';

import { PACKAGE_ROOT } from '../services/lib/version';
import { ProcessSpec, datacenterName, renderFlags, servesPort, tlsFileName, topology } from './topology';

/** compose.yaml runs dc1, dc2 and dc3: the same cluster as `make up DCS=3`. */
export const COMPOSE_DATACENTERS = 3;

export const IMAGE = 'consulate:dev';
export const JAEGER_IMAGE = 'jaegertracing/jaeger:2.11.0';
/** The only network that crosses datacenters; only federation routers join it (DESIGN.md "Ports"). */
export const WAN_NETWORK = 'wan';
export const CERTS_SERVICE = 'certs';
export const JAEGER_SERVICE = 'jaeger';

const TLS_VOLUME = 'tls';
const TLS_DIR = '/tls';
const DATA_DIR = '/data';
const JAEGER_OTLP_GRPC_PORT = 4317;
const JAEGER_UI_PORT = 16686;
const MAKE_CERTS_SCRIPT = 'deploy/tls/make-certs.sh';
const HEALTHCHECK_SCRIPT = 'dist/deploy/healthcheck.js';

type Condition = 'service_started' | 'service_healthy' | 'service_completed_successfully';

export interface ComposeService {
  build?: { context: string; dockerfile: string };
  image: string;
  entrypoint?: string[];
  command?: string[];
  hostname?: string;
  network_mode?: string;
  networks?: string[] | Record<string, { aliases: string[] }>;
  ports?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  tmpfs?: string[];
  healthcheck?: { test: string[]; interval: string; timeout: string; retries: number; start_period: string } | { disable: true };
  depends_on?: Record<string, { condition: Condition }>;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  networks: Record<string, Record<string, never>>;
  volumes: Record<string, Record<string, never>>;
}

/** The compose service of one process: "dc1-server-1-consensus". */
export function serviceName(spec: ProcessSpec): string {
  return `${spec.datacenter}-${spec.host}-${spec.role}`;
}

/** A host's DNS name on its datacenter's network (and on `wan` for routers): "dc1-server-1". */
export function hostName(spec: Pick<ProcessSpec, 'datacenter' | 'host'>): string {
  return `${spec.datacenter}-${spec.host}`;
}

export function composeFile(datacenters: number): ComposeFile {
  const processes = topology(datacenters);
  const dcNetworks = Array.from({ length: datacenters }, (_, i) => datacenterName(i + 1));
  const services: Record<string, ComposeService> = {
    // First, and the only service that builds: docker-compose 1.29.2 makes images in service
    // order, and every other service runs the image this one tags.
    [CERTS_SERVICE]: certsService(dcNetworks),
    [JAEGER_SERVICE]: jaegerService(dcNetworks),
  };
  const volumes: ComposeFile['volumes'] = { [TLS_VOLUME]: {} };
  // Processes of one host share its network namespace, as they would share a machine; the first
  // one listed for the host (consensus, on a server) owns it.
  const hostOwners = new Map<string, ProcessSpec>();
  for (const spec of processes) {
    const owner = hostOwners.get(hostName(spec)) ?? spec;
    hostOwners.set(hostName(spec), owner);
    services[serviceName(spec)] = roleService(spec, owner, processes);
    if (keepsState(spec)) volumes[dataVolume(spec)] = {};
  }
  const networks: ComposeFile['networks'] = {};
  for (const name of [...dcNetworks, WAN_NETWORK]) networks[name] = {};
  return { services, networks, volumes };
}

function certsService(datacenters: string[]): ComposeService {
  return {
    build: { context: '.', dockerfile: 'deploy/Dockerfile' },
    image: IMAGE,
    entrypoint: ['bash', MAKE_CERTS_SCRIPT],
    command: [TLS_DIR, ...datacenters],
    network_mode: 'none',
    volumes: [`${TLS_VOLUME}:${TLS_DIR}`],
    // The image's HEALTHCHECK probes a role's gRPC port; this one-shot has none.
    healthcheck: { disable: true },
  };
}

function jaegerService(datacenters: string[]): ComposeService {
  return {
    image: JAEGER_IMAGE,
    // The image already listens on every interface; said here so a change of default cannot
    // silently cut every role off from its trace collector.
    environment: { JAEGER_LISTEN_HOST: '0.0.0.0' },
    ports: [`127.0.0.1:${JAEGER_UI_PORT}:${JAEGER_UI_PORT}`, `127.0.0.1:${JAEGER_OTLP_GRPC_PORT}:${JAEGER_OTLP_GRPC_PORT}`],
    networks: datacenters,
  };
}

function roleService(spec: ProcessSpec, owner: ProcessSpec, processes: readonly ProcessSpec[]): ComposeService {
  const isRouter = spec.role === 'federation-router';
  const dependsOn: ComposeService['depends_on'] = { [JAEGER_SERVICE]: { condition: 'service_started' } };
  if (isRouter) dependsOn[CERTS_SERVICE] = { condition: 'service_completed_successfully' };
  if (owner !== spec) dependsOn[serviceName(owner)] = { condition: 'service_started' };
  for (const target of flagTargets(spec, processes)) dependsOn[serviceName(target)] = { condition: 'service_healthy' };

  const service: ComposeService = {
    image: IMAGE,
    command: [
      spec.role,
      `-datacenter=${spec.datacenter}`,
      `-node=${spec.host}`,
      // Inside its own network namespace a process may take every address, like a real host.
      '-bind=0.0.0.0',
      `-data-dir=${DATA_DIR}`,
      `-grpc-port=${spec.grpcPort}`,
      ...renderFlags(
        spec.flags,
        (host) => hostName({ datacenter: spec.datacenter, host }),
        (file) => `${TLS_DIR}/${tlsFileName(file, spec.datacenter)}`,
      ),
    ],
  };
  if (owner === spec) {
    const aliases = () => ({ aliases: [hostName(spec)] });
    service.hostname = hostName(spec);
    service.networks = isRouter ? { [spec.datacenter]: aliases(), [WAN_NETWORK]: aliases() } : { [spec.datacenter]: aliases() };
  } else {
    service.network_mode = `service:${serviceName(owner)}`;
  }
  service.environment = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://${JAEGER_SERVICE}:${JAEGER_OTLP_GRPC_PORT}`,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
  };
  const volumes = keepsState(spec) ? [`${dataVolume(spec)}:${DATA_DIR}`] : [];
  if (isRouter) volumes.push(`${TLS_VOLUME}:${TLS_DIR}:ro`);
  if (volumes.length > 0) service.volumes = volumes;
  if (!keepsState(spec)) service.tmpfs = [DATA_DIR];
  service.healthcheck = {
    test: ['CMD', 'node', HEALTHCHECK_SCRIPT, `127.0.0.1:${spec.grpcPort}`],
    interval: '5s',
    timeout: '5s',
    retries: 12,
    start_period: '10s',
  };
  service.depends_on = dependsOn;
  return service;
}

/**
 * The processes a process names in its flags and must wait for (catalog and routers name the
 * consensus servers). Peers of the same role are not waited for: consensus servers name each
 * other as initial peers and start together.
 */
function flagTargets(spec: ProcessSpec, processes: readonly ProcessSpec[]): ProcessSpec[] {
  return spec.flags.flatMap((flag) => {
    if (!('hostPort' in flag) || flag.waitFor === false) return [];
    const [host, port] = flag.hostPort;
    const target = processes.find((p) => p.datacenter === spec.datacenter && p.host === host && servesPort(p, port));
    if (target === undefined) throw new Error(`${serviceName(spec)}: -${flag.name} names ${host}:${port}, which no process of ${spec.datacenter} serves`);
    return target.role === spec.role ? [] : [target];
  });
}

/** Consensus keeps the Raft log, which must outlive a container; the other roles rebuild their state. */
function keepsState(spec: ProcessSpec): boolean {
  return spec.role === 'consensus';
}

function dataVolume(spec: ProcessSpec): string {
  return `${serviceName(spec)}-data`;
}

const HEADER = [
  '# Generated by `node dist/deploy/compose.js compose.yaml` (`make compose`) from deploy/topology.ts.',
  '# Do not edit by hand: change deploy/topology.ts or deploy/compose.ts and regenerate; a unit test',
  '# fails when this file and the generator disagree.',
  '#',
  '#   docker compose up --build     every datacenter, Jaeger UI on http://127.0.0.1:16686',
  '',
].join('\n');

export function renderCompose(datacenters: number = COMPOSE_DATACENTERS): string {
  const doc = new Document(composeFile(datacenters), { version: '1.1', aliasDuplicateObjects: false });
  // Short lists of plain values (commands, healthcheck tests) read best on one line.
  visit(doc, {
    Seq(_, seq) {
      if (seq.items.every(isScalar)) seq.flow = true;
    },
  });
  // YAML 1.1, the version docker-compose 1.29.2's parser speaks, so strings it would read as
  // booleans or numbers are quoted.
  return HEADER + doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

export const COMMITTED_COMPOSE_PATH = join(PACKAGE_ROOT, 'compose.yaml');

function main(args: readonly string[]): number {
  if (args.length === 0) {
    process.stdout.write(renderCompose());
    return 0;
  }
  if (args[0] === '--check' && args.length <= 2) {
    const path = args[1] ?? COMMITTED_COMPOSE_PATH;
    if (existsSync(path) && readFileSync(path, 'utf8') === renderCompose()) return 0;
    process.stderr.write(`${path} is not what deploy/topology.ts generates: run 'make compose' and commit the result\n`);
    return 1;
  }
  if (args.length === 1 && !args[0].startsWith('-')) {
    writeFileSync(args[0], renderCompose());
    return 0;
  }
  process.stderr.write('usage: node dist/deploy/compose.js [PATH | --check [PATH]]\n');
  return 2;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
