// compose.yaml is generated from the topology and committed; these tests keep it generated, loadable
// by docker-compose 1.29.2, and consistent in what docker-compose does not check (toolchain.md §B3:
// undefined networks and missing files pass `config -q`).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { parse } from 'yaml';

import { PACKAGE_ROOT } from '../services/lib/version';
import { COMMITTED_COMPOSE_PATH, COMPOSE_DATACENTERS, ComposeFile, ComposeService, WAN_NETWORK, renderCompose, serviceName } from './compose';
import { Role, topology } from './topology';

const ROLES: readonly string[] = ['consensus', 'gossip', 'catalog', 'federation-router'] satisfies Role[];
const committed = readFileSync(COMMITTED_COMPOSE_PATH, 'utf8');
const compose = parse(committed) as ComposeFile & Record<string, unknown>;
const services = Object.entries(compose.services);
const roleServices = services.filter(([, service]) => ROLES.includes(service.command?.[0] ?? ''));

function flagValue(service: ComposeService, name: string): string | undefined {
  const prefix = `-${name}=`;
  return service.command?.find((arg) => arg.startsWith(prefix))?.slice(prefix.length);
}

function networksOf(service: ComposeService): string[] {
  if (service.networks === undefined) return [];
  return Array.isArray(service.networks) ? service.networks : Object.keys(service.networks);
}

/** The service whose network namespace a service runs in: itself, or the one `network_mode` names. */
function namespaceOwner(name: string): string {
  const mode = compose.services[name].network_mode;
  return mode?.startsWith('service:') ? mode.slice('service:'.length) : name;
}

describe('compose.yaml', () => {
  test('is what deploy/compose.ts generates from the topology (regenerate with `make compose`)', () => {
    expect(committed).toBe(renderCompose());
  });

  test('loads in docker-compose 1.29.2 (`docker-compose config -q`)', () => {
    const run = spawnSync('docker-compose', ['-f', COMMITTED_COMPOSE_PATH, 'config', '-q'], { cwd: PACKAGE_ROOT, encoding: 'utf8' });
    if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      if (process.env.CONSULATE_SKIP_COMPOSE_CLI === '1') return;
      throw new Error('docker-compose is not on PATH: install it (Debian: apt-get install docker-compose) or set CONSULATE_SKIP_COMPOSE_CLI=1 to skip this check');
    }
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  test('uses nothing docker-compose 1.29.2 rejects', () => {
    expect(compose).not.toHaveProperty('name');
    expect(compose).not.toHaveProperty('include');
    for (const [, service] of services) {
      if (service.healthcheck !== undefined) expect(service.healthcheck).not.toHaveProperty('start_interval');
    }
  });

  test('every network, volume and secret a service names is defined', () => {
    const secrets = (compose.secrets ?? {}) as Record<string, { file?: string }>;
    for (const [name, service] of services) {
      for (const network of networksOf(service)) expect({ service: name, network, defined: network in compose.networks }).toEqual({ service: name, network, defined: true });
      if (service.network_mode?.startsWith('service:')) expect(compose.services).toHaveProperty([namespaceOwner(name)]);
      for (const mount of service.volumes ?? []) {
        const source = mount.split(':')[0];
        if (source.startsWith('.') || source.startsWith('/')) continue;
        expect({ service: name, volume: source, defined: source in compose.volumes }).toEqual({ service: name, volume: source, defined: true });
      }
      for (const secret of ((service as { secrets?: string[] }).secrets ?? [])) expect(secrets).toHaveProperty([secret]);
    }
    for (const secret of Object.values(secrets)) if (secret.file !== undefined) expect(existsSync(join(PACKAGE_ROOT, secret.file))).toBe(true);
  });

  test('every file it refers to exists in the repository, and scripts run in the image are copied into it', () => {
    const imageFiles = new Set<string>();
    for (const [, service] of services) {
      if (service.build !== undefined) {
        const context = join(PACKAGE_ROOT, service.build.context);
        expect(existsSync(context)).toBe(true);
        const dockerfile = join(context, service.build.dockerfile);
        expect(existsSync(dockerfile)).toBe(true);
        // What the final stage copies from the repository is what the running image holds.
        const finalStage = readFileSync(dockerfile, 'utf8').split(/^FROM /m).at(-1) ?? '';
        for (const match of finalStage.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) match[1].split(' ').forEach((source) => imageFiles.add(source));
      }
      for (const mount of service.volumes ?? []) {
        const source = mount.split(':')[0];
        if (source.startsWith('.') || source.startsWith('/')) expect(existsSync(join(PACKAGE_ROOT, source))).toBe(true);
      }
    }
    expect(imageFiles.size).toBeGreaterThan(0);
    for (const [name, service] of services) {
      const test = service.healthcheck !== undefined && 'test' in service.healthcheck ? service.healthcheck.test : [];
      for (const arg of [...(service.entrypoint ?? []), ...(service.command ?? []), ...test]) {
        if (/^dist\/.+\.js$/.test(arg)) {
          // Compiled in the image from its TypeScript source.
          expect({ service: name, source: existsSync(join(PACKAGE_ROOT, arg.replace(/^dist\//, '').replace(/\.js$/, '.ts'))) }).toEqual({ service: name, source: true });
        } else if (/^(deploy|bin)\/\S+$/.test(arg)) {
          expect({ service: name, file: existsSync(join(PACKAGE_ROOT, arg)) }).toEqual({ service: name, file: true });
          expect({ service: name, copied: imageFiles.has(arg) || imageFiles.has(dirname(arg)) }).toEqual({ service: name, copied: true });
        }
      }
    }
  });

  test('every depends_on names a service, and waits for what it must', () => {
    for (const [name, service] of services) {
      for (const target of Object.keys(service.depends_on ?? {})) expect({ service: name, target, defined: target in compose.services }).toEqual({ service: name, target, defined: true });
    }
    for (const [name, service] of roleServices) {
      const role = service.command?.[0];
      const dc = flagValue(service, 'datacenter');
      const consensus = roleServices.filter(([, s]) => s.command?.[0] === 'consensus' && flagValue(s, 'datacenter') === dc).map(([n]) => n);
      if (role === 'catalog' || role === 'federation-router') {
        for (const server of consensus) expect(service.depends_on?.[server]).toEqual({ condition: 'service_healthy' });
      }
      if (role === 'federation-router') expect(service.depends_on?.certs).toEqual({ condition: 'service_completed_successfully' });
      expect({ service: name, jaeger: service.depends_on?.jaeger }).toEqual({ service: name, jaeger: { condition: 'service_started' } });
    }
  });

  test('only federation routers join the wan network, and every router does', () => {
    for (const [name, service] of services) {
      const isRouter = service.command?.[0] === 'federation-router';
      expect({ service: name, onWan: networksOf(service).includes(WAN_NETWORK) }).toEqual({ service: name, onWan: isRouter });
    }
  });

  test('every role process has a healthcheck probing its own gRPC port, and traces to Jaeger over OTLP gRPC', () => {
    for (const [name, service] of roleServices) {
      const port = flagValue(service, 'grpc-port');
      expect({ service: name, test: service.healthcheck !== undefined && 'test' in service.healthcheck ? service.healthcheck.test : undefined }).toEqual({
        service: name,
        test: ['CMD', 'node', 'dist/deploy/healthcheck.js', `127.0.0.1:${port}`],
      });
      expect(service.environment).toEqual({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4317', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' });
      expect(flagValue(service, 'bind')).toBe('0.0.0.0');
    }
  });

  test(`runs topology(${COMPOSE_DATACENTERS}) one to one: one service per process`, () => {
    const fromCompose = roleServices.map(([name, service]) => ({ name, datacenter: flagValue(service, 'datacenter'), host: flagValue(service, 'node'), role: service.command?.[0] }));
    const fromTopology = topology(COMPOSE_DATACENTERS).map((spec) => ({ name: serviceName(spec), datacenter: spec.datacenter, host: spec.host, role: spec.role }));
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect(fromCompose.sort(byName)).toEqual(fromTopology.sort(byName));
  });

  test('every host:port in a flag reaches a process serving that port on a network both share', () => {
    for (const [name, service] of roleServices) {
      const ownNetworks = networksOf(compose.services[namespaceOwner(name)]);
      for (const arg of service.command ?? []) {
        const match = /^-([a-z-]+)=([a-z0-9-]+):(\d+)$/.exec(arg);
        // -segments=alpha:8303 declares a segment's port; it names no host.
        if (match === null || match[1] === 'segments') continue;
        match.shift();
        const [, host, port] = match;
        const owner = Object.entries(compose.services).find(([, s]) => {
          const networks = s.networks !== undefined && !Array.isArray(s.networks) ? s.networks : {};
          return Object.entries(networks).some(([network, { aliases }]) => ownNetworks.includes(network) && aliases.includes(host));
        });
        expect({ service: name, host, reachable: owner !== undefined }).toEqual({ service: name, host, reachable: true });
        // A gossip agent also serves its LAN port (8301) and, on a server, each -segments port.
        const gossipPorts = (s: ComposeService) => (s.command?.[0] === 'gossip' ? ['8301', ...(s.command ?? []).flatMap((a) => /^-segments=[^:]+:(\d+)$/.exec(a)?.slice(1) ?? [])] : []);
        // A catalog also serves its HTTP API (8500 unless -http-port says otherwise).
        const httpPorts = (s: ComposeService) => (s.command?.[0] === 'catalog' ? [flagValue(s, 'http-port') ?? '8500'] : []);
        const servesPort = roleServices.some(([n, s]) => namespaceOwner(n) === owner?.[0] && (flagValue(s, 'grpc-port') === port || gossipPorts(s).includes(port) || httpPorts(s).includes(port)));
        expect({ service: name, target: `${host}:${port}`, served: servesPort }).toEqual({ service: name, target: `${host}:${port}`, served: true });
      }
    }
  });
});
