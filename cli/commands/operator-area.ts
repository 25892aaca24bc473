/**
 * `consulate operator area create|list|update|delete|join|members`: Consul Enterprise's
 * `consul operator area` (reference/consul-compat.md §3.3) over the catalog's `/v1/operator/area`
 * API, with its outputs to the letter (`Created area "<id>" with peer datacenter "<dc>"!`, the
 * columnized tables, `(none)`). An area is picked by `-id` or by `-peer-datacenter` (looked up in
 * the list: a datacenter has at most one area per peer). Beyond Consul: `-transit` on create and
 * update, and a Transit column in `list` once some area is transit.
 */
import { formatGoDuration } from '../../services/lib/go-text';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { columnize } from '../columns';
import { Command, CommandIo, ParsedCommand, commandGroup, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi } from '../http-api';

/** api.Area, as `/v1/operator/area` answers it. */
interface ApiArea {
  readonly ID: string;
  readonly PeerDatacenter: string;
  readonly RetryJoin: string[] | null;
  readonly UseTLS: boolean;
  readonly Transit?: boolean;
}

/** api.SerfMember. */
interface ApiAreaMember {
  readonly Name: string;
  readonly Addr: string;
  readonly Port: number;
  readonly Datacenter: string;
  readonly Build: string;
  readonly Protocol: number;
  readonly Status: string;
  /** Nanoseconds; negative while the router has no estimate. */
  readonly RTT: number;
}

/** api.AreaJoinResponse. */
interface ApiJoinResult {
  readonly Address: string;
  readonly Joined: boolean;
  readonly Error: string;
}

const AREA_PATH = '/v1/operator/area';

const ID_FLAG: FlagSpec = { name: 'id', kind: 'string', usage: 'The ID of the area. Either -id or -peer-datacenter picks the area.' };
const PEER_FLAG: FlagSpec = { name: 'peer-datacenter', kind: 'string', usage: 'The peer datacenter of the area. Either -id or -peer-datacenter picks the area.' };
const USE_TLS_FLAG: FlagSpec = { name: 'use-tls', kind: 'bool', usage: "Whether the area's gossip uses TLS when it can (kept for Consul compatibility: area traffic here is always mutual TLS)." };
const TRANSIT_FLAG: FlagSpec = {
  name: 'transit',
  kind: 'bool',
  usage: "Beyond Consul: requests between this datacenter's transit areas may pass through this datacenter (routing past adjacent datacenters). Off by default.",
};

/** One subcommand: its flags, its help, and what it does once they parse. */
function areaCommand(name: string, synopsis: string, usage: string, flags: FlagSpec[], run: (api: HttpApi, parsed: ParsedCommand, io: CommandIo) => Promise<number>): Command {
  const allFlags = [...HTTP_FLAGS, ...flags];
  const help = `Usage: consulate operator area ${name} [options]${usage === '' ? '' : ` ${usage}`}

  ${synopsis}.

Options:

${flagUsage(allFlags)}`;
  return {
    synopsis,
    help: () => help,
    async run(args, io) {
      const parsed = parseCommandFlags(allFlags, help, args, io);
      if (typeof parsed === 'number') return parsed;
      return run(new HttpApi(parsed.values, io.env), parsed, io);
    },
  };
}

const createCommand = areaCommand(
  'create',
  'Creates a network area with a peer datacenter',
  '',
  [
    { ...PEER_FLAG, usage: 'The peer datacenter of the new area (required). A datacenter has at most one area per peer.' },
    { name: 'retry-join', kind: 'list', usage: "An address of a router of the peer datacenter to keep trying to join; repeatable. The port defaults to 8300." },
    USE_TLS_FLAG,
    TRANSIT_FLAG,
  ],
  async (api, { values, positionals }, io) => {
    if (positionals.length > 0) return tooMany(io, positionals.length);
    const peer = (values.get('peer-datacenter') as string | undefined) ?? '';
    if (peer === '') {
      io.stderr('Must provide -peer-datacenter\n');
      return 1;
    }
    const area = { PeerDatacenter: peer, RetryJoin: (values.get('retry-join') as string[] | undefined) ?? [], UseTLS: values.get('use-tls') === true, Transit: values.get('transit') === true };
    try {
      const { body } = await api.request<{ ID: string }>('POST', AREA_PATH, { body: area });
      io.stdout(`Created area "${body.ID}" with peer datacenter "${peer}"!\n`);
      return 0;
    } catch (err) {
      io.stderr(`Error creating area: ${(err as Error).message}\n`);
      return 1;
    }
  },
);

const listCommand = areaCommand('list', 'Lists the network areas of the datacenter', '', [], async (api, { positionals }, io) => {
  if (positionals.length > 0) return tooMany(io, positionals.length);
  let areas: ApiArea[];
  try {
    areas = (await api.request<ApiArea[]>('GET', AREA_PATH)).body;
  } catch (err) {
    io.stderr(`Error listing areas: ${(err as Error).message}\n`);
    return 1;
  }
  // The Transit column only once some area uses it: otherwise the table is Consul's own.
  const transit = areas.some((area) => area.Transit === true);
  const rows = [['Area', 'PeerDC', 'RetryJoin', ...(transit ? ['Transit'] : [])]];
  for (const area of areas) rows.push([area.ID, area.PeerDatacenter, none((area.RetryJoin ?? []).join(',')), ...(transit ? [String(area.Transit === true)] : [])]);
  io.stdout(`${columnize(rows)}\n`);
  return 0;
});

const updateCommand = areaCommand(
  'update',
  'Updates the settings of a network area',
  '',
  [ID_FLAG, PEER_FLAG, USE_TLS_FLAG, TRANSIT_FLAG],
  async (api, { values, positionals }, io) => {
    if (positionals.length > 0) return tooMany(io, positionals.length);
    // Only what the command line names changes: the API leaves the rest as it is.
    const changes: { UseTLS?: boolean; Transit?: boolean } = {};
    if (values.has('use-tls')) changes.UseTLS = values.get('use-tls') === true;
    if (values.has('transit')) changes.Transit = values.get('transit') === true;
    if (Object.keys(changes).length === 0) {
      io.stderr('Must provide -use-tls or -transit\n');
      return 1;
    }
    return withArea(api, values, io, 'Error updating area', async (id) => {
      const { body } = await api.request<{ ID: string }>('PUT', `${AREA_PATH}/${encodeURIComponent(id)}`, { body: changes });
      io.stdout(`Updated area "${body.ID || id}"\n`);
      return 0;
    });
  },
);

const deleteCommand = areaCommand('delete', 'Deletes a network area', '', [ID_FLAG, PEER_FLAG], async (api, { values, positionals }, io) => {
  if (positionals.length > 0) return tooMany(io, positionals.length);
  return withArea(api, values, io, 'Error deleting area', async (id) => {
    await api.request('DELETE', `${AREA_PATH}/${encodeURIComponent(id)}`);
    io.stdout(`Deleted area "${id}"!\n`);
    return 0;
  });
});

const joinCommand = areaCommand('join', "Joins the area's routers to routers of the peer datacenter", 'ADDRESSES...', [ID_FLAG, PEER_FLAG], async (api, { values, positionals }, io) => {
  if (positionals.length === 0) {
    io.stderr('At least one address to join must be specified.\n');
    return 1;
  }
  return withArea(api, values, io, 'Error joining area', async (id) => {
    const { body } = await api.request<ApiJoinResult[]>('PUT', `${AREA_PATH}/${encodeURIComponent(id)}/join`, { body: positionals });
    const rows = [['Address', 'Joined', 'Error']];
    for (const result of body) rows.push([result.Address, String(result.Joined), none(result.Error)]);
    io.stdout(`${columnize(rows)}\n`);
    // As `consul join`: a failure only when no address could be joined.
    return body.some((result) => result.Joined) ? 0 : 1;
  });
});

const membersCommand = areaCommand(
  'members',
  "Lists the members of the datacenter's network areas",
  '',
  [
    { ...ID_FLAG, usage: 'The ID of the area to list; every area when neither -id nor -peer-datacenter is given.' },
    { ...PEER_FLAG, usage: 'The peer datacenter of the area to list; every area when neither -id nor -peer-datacenter is given.' },
  ],
  async (api, { values, positionals }, io) => {
    if (positionals.length > 0) return tooMany(io, positionals.length);
    const prefix = 'Error retrieving members';
    let ids: string[];
    if (values.has('id') || values.has('peer-datacenter')) {
      const picked = await pickArea(api, values, io, prefix);
      if (typeof picked === 'number') return picked;
      ids = [picked];
    } else {
      try {
        ids = (await api.request<ApiArea[]>('GET', AREA_PATH)).body.map((area) => area.ID);
      } catch (err) {
        io.stderr(`${prefix}: ${(err as Error).message}\n`);
        return 1;
      }
    }
    const rows = [['Area', 'Node', 'Address', 'Status', 'Build', 'Protocol', 'DC', 'RTT']];
    try {
      for (const id of ids) {
        const { body } = await api.request<ApiAreaMember[]>('GET', `${AREA_PATH}/${encodeURIComponent(id)}/members`);
        const members = [...body].sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
        for (const m of members) rows.push([id, m.Name, hostPort(m.Addr, m.Port), m.Status, m.Build, String(m.Protocol), m.Datacenter, rtt(m.RTT)]);
      }
    } catch (err) {
      io.stderr(`${prefix}: ${(err as Error).message}\n`);
      return 1;
    }
    io.stdout(`${columnize(rows)}\n`);
    return 0;
  },
);

/** Runs `action` on the area the flags pick; an API failure is `<prefix>: <error>`, exit 1. */
async function withArea(api: HttpApi, values: ReadonlyMap<string, unknown>, io: CommandIo, prefix: string, action: (id: string) => Promise<number>): Promise<number> {
  const picked = await pickArea(api, values, io, prefix);
  if (typeof picked === 'number') return picked;
  try {
    return await action(picked);
  } catch (err) {
    io.stderr(`${prefix}: ${(err as Error).message}\n`);
    return 1;
  }
}

/** The area's ID, from `-id`, or from the list by `-peer-datacenter`; an exit code when there is none. */
async function pickArea(api: HttpApi, values: ReadonlyMap<string, unknown>, io: CommandIo, prefix: string): Promise<string | number> {
  const id = (values.get('id') as string | undefined) ?? '';
  const peer = (values.get('peer-datacenter') as string | undefined) ?? '';
  if (id !== '' && peer !== '') {
    io.stderr('Only one of -id or -peer-datacenter may be given\n');
    return 1;
  }
  if (id !== '') return id;
  if (peer === '') {
    io.stderr('Must provide -id or -peer-datacenter\n');
    return 1;
  }
  let areas: ApiArea[];
  try {
    areas = (await api.request<ApiArea[]>('GET', AREA_PATH)).body;
  } catch (err) {
    io.stderr(`${prefix}: ${(err as Error).message}\n`);
    return 1;
  }
  const area = areas.find((a) => a.PeerDatacenter === peer);
  if (area === undefined) {
    io.stderr(`${prefix}: no area with peer datacenter "${peer}"\n`);
    return 1;
  }
  return area.ID;
}

/** Consul's placeholder for an empty cell. */
function none(text: string): string {
  return text === '' ? '(none)' : text;
}

/** A Go time.Duration's String(); an RTT not estimated yet (negative) is "unknown". */
function rtt(nanoseconds: number): string {
  return nanoseconds < 0 ? 'unknown' : formatGoDuration(nanoseconds);
}

/** net.JoinHostPort: an IPv6 address in brackets. */
function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function tooMany(io: CommandIo, count: number): number {
  io.stderr(`Too many arguments (expected 0, got ${count})\n`);
  return 1;
}

const SUBCOMMANDS: Record<string, Command> = { create: createCommand, delete: deleteCommand, join: joinCommand, list: listCommand, members: membersCommand, update: updateCommand };

export const operatorAreaCommand: Command = commandGroup({
  synopsis: 'Manages network areas',
  usage: 'Usage: consulate operator area <subcommand> [options]',
  description: `Manages network areas: operator-made federation between pairs of datacenters. Create an area
  in each of the two datacenters (each names the other as its peer datacenter), then join one
  side's routers to the other's.`,
  subcommands: SUBCOMMANDS,
});
