/**
 * `consulate catalog datacenters|nodes|services`: Consul's `consul catalog` commands
 * (command/catalog/list/*) over the catalog's HTTP API, with their columns, messages and exit codes.
 */
import type { ApiRoute } from '../../services/catalog/http/catalog-endpoint';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { formatGoDuration } from '../../services/lib/go-text';
import { columnize } from '../columns';
import { Command, CommandIo, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi } from '../http-api';

interface ApiNode {
  readonly ID: string;
  readonly Node: string;
  readonly Address: string;
  readonly Datacenter: string;
  readonly TaggedAddresses: Record<string, string> | null;
  readonly Meta: Record<string, string> | null;
}

/** `-node-meta=key=value`, repeatable, as the API's `node-meta=key:value`. */
function nodeMeta(values: ReadonlyMap<string, unknown>): string[] | undefined {
  const pairs = values.get('node-meta') as string[] | undefined;
  return pairs?.map((pair) => {
    const at = pair.indexOf('=');
    return at < 0 ? `${pair}:` : `${pair.slice(0, at)}:${pair.slice(at + 1)}`;
  });
}

function mapToKv(map: Record<string, string> | null, joiner: string): string {
  return Object.keys(map ?? {})
    .sort()
    .map((key) => `${key}=${map![key]}`)
    .join(joiner);
}

const DC_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'routes', kind: 'bool', usage: 'Beyond Consul: also show how each datacenter is reached (the datacenters crossed, the area, the RTT, the routers tried).' },
];

const DC_HELP = `Usage: consulate catalog datacenters [options]

  Retrieves the list of all known datacenters, sorted by the estimated median round trip time
  from the servers of this datacenter to those of the others.

Options:

${flagUsage(DC_FLAGS)}`;

function routesTable(routes: readonly ApiRoute[]): string {
  const rows = [['Datacenter', 'Path', 'Area', 'RTT', 'Reachable', 'Routers']];
  for (const route of routes) {
    const local = route.Path.length === 0;
    rows.push([
      route.Datacenter,
      local ? '(local)' : route.Path.join(' > '),
      local ? '-' : route.AreaID,
      local ? '0s' : route.RTT < 0 ? 'unknown' : formatGoDuration(route.RTT),
      String(route.Reachable),
      route.NextHops.length === 0 ? '-' : route.NextHops.join(','),
    ]);
  }
  return columnize(rows);
}

const datacentersCommand: Command = {
  synopsis: 'Lists all known datacenters',
  help: () => DC_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(DC_FLAGS, DC_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length > 0) return tooMany(io, parsed.positionals.length);
    const api = new HttpApi(parsed.values, io.env, '');
    try {
      if (parsed.values.get('routes') === true) {
        const { body } = await api.request<ApiRoute[]>('GET', '/v1/operator/routes');
        io.stdout(`${routesTable(body)}\n`);
        return 0;
      }
      const { body } = await api.request<string[]>('GET', '/v1/catalog/datacenters');
      for (const dc of body) io.stdout(`${dc}\n`);
    } catch (err) {
      io.stderr(`Error listing datacenters: ${(err as Error).message}\n`);
    }
    return 0;
  },
};

const NODES_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'detailed', kind: 'bool', usage: 'Output detailed information about the nodes including their addresses and metadata.' },
  { name: 'near', kind: 'string', usage: 'Node name to sort the node list in ascending order based on estimated round-trip time from that node.' },
  { name: 'node-meta', kind: 'list', usage: 'Metadata to filter nodes with the given `key=value` pairs; repeatable.' },
  { name: 'service', kind: 'string', usage: 'Service id or name to filter nodes: only nodes providing it are listed.' },
];

const NODES_HELP = `Usage: consulate catalog nodes [options]

  Retrieves the list nodes registered in a given datacenter. By default, the datacenter of the
  catalog is queried.

Options:

${flagUsage(NODES_FLAGS)}`;

const nodesCommand: Command = {
  synopsis: 'Lists all nodes in the given datacenter',
  help: () => NODES_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(NODES_FLAGS, NODES_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length > 0) return tooMany(io, parsed.positionals.length);
    const api = new HttpApi(parsed.values, io.env);
    const query = { 'node-meta': nodeMeta(parsed.values), near: parsed.values.get('near') as string | undefined };
    const service = parsed.values.get('service') as string | undefined;
    let nodes: ApiNode[];
    try {
      if (service !== undefined && service !== '') {
        const { body } = await api.request<(ApiNode & { NodeMeta: Record<string, string> | null })[]>('GET', `/v1/catalog/service/${encodeURIComponent(service)}`, { query });
        nodes = body.map((s) => ({ ID: s.ID, Node: s.Node, Address: s.Address, Datacenter: s.Datacenter, TaggedAddresses: s.TaggedAddresses, Meta: s.NodeMeta }));
      } else {
        nodes = (await api.request<ApiNode[]>('GET', '/v1/catalog/nodes', { query })).body;
      }
    } catch (err) {
      io.stderr(`${service ? 'Error listing nodes for service' : 'Error listing nodes'}: ${(err as Error).message}\n`);
      return 1;
    }
    if (nodes.length === 0) {
      io.stderr('No nodes match the given query - try expanding your search.\n');
      return 0;
    }
    const detailed = parsed.values.get('detailed') === true;
    const rows = [detailed ? ['Node', 'ID', 'Address', 'DC', 'TaggedAddresses', 'Meta'] : ['Node', 'ID', 'Address', 'DC']];
    for (const node of nodes) {
      if (detailed) rows.push([node.Node, node.ID, node.Address, node.Datacenter, mapToKv(node.TaggedAddresses, ', '), mapToKv(node.Meta, ', ')]);
      // Consul shortens the ID to its first group outside -detailed.
      else rows.push([node.Node, node.ID.indexOf('-') > 0 ? node.ID.slice(0, node.ID.indexOf('-')) : node.ID, node.Address, node.Datacenter]);
    }
    io.stdout(`${columnize(rows)}\n`);
    return 0;
  },
};

const SERVICES_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'node', kind: 'string', usage: 'Node id or name for which to list services.' },
  { name: 'node-meta', kind: 'list', usage: 'Metadata to filter nodes with the given `key=value` pairs; repeatable.' },
  { name: 'tags', kind: 'bool', usage: "Display each service's tags as a comma-separated list beside each service entry." },
];

const SERVICES_HELP = `Usage: consulate catalog services [options]

  Retrieves the list services registered in a given datacenter. By default, the datacenter of
  the catalog is queried.

Options:

${flagUsage(SERVICES_FLAGS)}`;

const servicesCommand: Command = {
  synopsis: 'Lists all registered services in a datacenter',
  help: () => SERVICES_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(SERVICES_FLAGS, SERVICES_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    if (parsed.positionals.length > 0) return tooMany(io, parsed.positionals.length);
    const api = new HttpApi(parsed.values, io.env);
    const node = parsed.values.get('node') as string | undefined;
    const query = { 'node-meta': nodeMeta(parsed.values) };
    let services: Record<string, string[]>;
    try {
      if (node !== undefined && node !== '') {
        const { body } = await api.request<{ Services: Record<string, { Service: string; Tags: string[] | null }> } | null>('GET', `/v1/catalog/node/${encodeURIComponent(node)}`, { query });
        services = {};
        for (const s of Object.values(body?.Services ?? {})) services[s.Service] = [...(services[s.Service] ?? []), ...(s.Tags ?? [])];
      } else {
        services = (await api.request<Record<string, string[]>>('GET', '/v1/catalog/services', { query })).body;
      }
    } catch (err) {
      io.stderr(`${node ? 'Error listing services for node' : 'Error listing services'}: ${(err as Error).message}\n`);
      return 1;
    }
    const names = Object.keys(services).sort();
    if (names.length === 0) {
      io.stderr('No services match the given query - try expanding your search.\n');
      return 0;
    }
    if (parsed.values.get('tags') === true) {
      // Go's tabwriter with padding 6, then TrimSpace, as Consul prints it.
      const width = Math.max(...names.map((n) => n.length));
      const lines = names.map((name) => `${name.padEnd(width + 6)}${[...(services[name] ?? [])].sort().join(',')}`);
      io.stdout(`${lines.join('\n').trim()}\n`);
    } else {
      for (const name of names) io.stdout(`${name}\n`);
    }
    return 0;
  },
};

function tooMany(io: CommandIo, count: number): number {
  io.stderr(`Too many arguments (expected 0, got ${count})\n`);
  return 1;
}

const SUBCOMMANDS: Record<string, Command> = { datacenters: datacentersCommand, nodes: nodesCommand, services: servicesCommand };

const HELP = `Usage: consulate catalog <subcommand> [options] [args]

  Interacts with the catalog: datacenters, nodes and services.

Subcommands:

${Object.entries(SUBCOMMANDS)
  .map(([name, c]) => `    ${name.padEnd(12)} ${c.synopsis}`)
  .join('\n')}`;

/**
 * `consulate catalog` is two commands in one name, told apart by the first argument: a subcommand
 * (datacenters, nodes, services) queries the catalog as `consul catalog` does; anything else
 * (flags, or nothing) runs the catalog role, as `consulate gossip` runs a gossip agent.
 */
export function catalogCommand(role: Command): Command {
  return {
    synopsis: 'Runs a catalog (HTTP API on 8500, gRPC API on 8502), or queries one: catalog datacenters|nodes|services',
    help: () => `${HELP}\n\n${role.help()}`,
    async run(args, io) {
      const sub = args.length === 0 ? undefined : SUBCOMMANDS[args[0]];
      if (sub !== undefined) return sub.run(args.slice(1), io);
      return role.run(args, io);
    },
  };
}
