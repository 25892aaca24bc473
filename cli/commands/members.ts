/**
 * `consulate members`: Consul's `consul members` (command/members/members.go). Same flags,
 * columns, sorting, labels and exit codes: 0 with rows, 2 when no member matches, 1 on an error
 * (`Error retrieving members: ...`). It asks the catalog's `/v1/agent/members` (HTTP API), as
 * Consul's CLI asks its agent, or a gossip agent's Membership API directly:
 *
 *   -http-addr                      → the catalog
 *   -gossip-addr                    → the gossip agent
 *   CONSULATE_HTTP_ADDR (or CONSUL_) → the catalog;  CONSULATE_GOSSIP_ADDR → the gossip agent
 *   none of them                    → the catalog at http://127.0.0.1:8500 if it answers, else
 *                                     the gossip agent at 127.0.0.1:8320
 */
import { Member } from '../../services/gen/consulate/gossip/v1/membership';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { callUnary } from '../../services/lib/grpc-client';
import { columnize } from '../columns';
import { Command, CommandIo, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi, HttpApiError } from '../http-api';
import { GOSSIP_ADDR_FLAG, callError, gossipAddress, membershipClient } from './gossip-api';

const FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS.filter((flag) => flag.name === 'http-addr'),
  GOSSIP_ADDR_FLAG,
  { name: 'segment', kind: 'string', usage: 'List only members in this network segment; _all lists every segment, each server once.', defaultText: '"_all"' },
  { name: 'wan', kind: 'bool', usage: 'List the members of the WAN pool instead of the LAN.' },
  { name: 'detailed', kind: 'bool', usage: 'Print every tag of each member instead of the summary columns.' },
  { name: 'status', kind: 'string', usage: 'A regular expression over the status (alive, leaving, left, failed).', defaultText: '".*"' },
];

const HELP = `Usage: consulate members [options]

  Outputs the members of the datacenter's gossip pools, from the catalog's HTTP API (or, with
  -gossip-addr, from a gossip agent): the LAN pool of one network segment, or with
  -segment=_all (the default) every segment's, each server shown once as <all>. With -wan, the
  WAN pool the federation routers run, as the catalog's routers see it: every datacenter's
  routers that joined it, named <node>.<dc>.

Options:

${flagUsage(FLAGS)}`;

/** A member as either source gives it; `segment` is the pool the row came from. */
export interface MemberRow {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly status: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly segment: string;
}

/** `/v1/agent/members`'s entries (api.AgentMember). */
export interface AgentMember {
  readonly Name: string;
  readonly Addr: string;
  readonly Port: number;
  readonly Tags: Record<string, string> | null;
  readonly Status: number;
}

/** serf.MemberStatus.String(). */
const STATUS_NAMES = ['none', 'alive', 'leaving', 'left', 'failed'];

export function rowOfAgentMember(member: AgentMember): MemberRow {
  const tags = member.Tags ?? {};
  return { name: member.Name, address: member.Addr, port: member.Port, status: STATUS_NAMES[member.Status] ?? `unknown MemberStatus: ${member.Status}`, tags, segment: tags.segment ?? '' };
}

function rowOfMember(member: Member): MemberRow {
  return { name: member.name, address: member.address, port: member.port, status: member.status, tags: member.tags, segment: member.segment };
}

export type MemberSource = 'http' | 'gossip' | 'http-else-gossip';

/** Where to ask, from the flags given and the environment (see the top of this file). */
export function memberSource(values: ReadonlyMap<string, unknown>, env: NodeJS.ProcessEnv): MemberSource {
  const set = (value: unknown) => typeof value === 'string' && value !== '';
  if (set(values.get('http-addr'))) return 'http';
  if (set(values.get('gossip-addr'))) return 'gossip';
  if (set(env.CONSULATE_HTTP_ADDR) || set(env.CONSUL_HTTP_ADDR)) return 'http';
  if (set(env.CONSULATE_GOSSIP_ADDR)) return 'gossip';
  return 'http-else-gossip';
}

/**
 * Which pool the rows come from: the WAN table has the Partition column Consul's (1.11+) has
 * before Segment, as `consul members -wan` prints it (every router `default`, `<all>`).
 */
export type MemberPool = 'lan' | 'wan';

/**
 * The table for the rows that pass the status filter, or undefined when none does (exit 2):
 * rows sorted by segment label, then name.
 */
export function membersTable(members: readonly MemberRow[], requestedSegment: string, statusRe: RegExp, detailedOutput: boolean, pool: MemberPool = 'lan'): string | undefined {
  const rows = members.filter((m) => statusRe.test(m.status)).map((m) => ({ member: m, label: segmentLabel(m, requestedSegment) }));
  rows.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.member.name < b.member.name ? -1 : a.member.name > b.member.name ? 1 : 0));
  if (rows.length === 0) return undefined;
  return detailedOutput ? detailed(rows.map((r) => r.member)) : standard(rows, pool);
}

const MEMBERS_TIMEOUT_MS = 10_000;

/** Where `members` looks when nothing names an address. */
export interface MemberDefaults {
  readonly httpAddress: string;
  readonly gossipAddress: string;
}

export function makeMembersCommand(defaults: MemberDefaults): Command {
  return {
    synopsis: 'Lists the members of a gossip pool',
    help: () => HELP,
    async run(args, io) {
      const parsed = parseCommandFlags(FLAGS, HELP, args, io);
      if (typeof parsed === 'number') return parsed;
      if (parsed.positionals.length > 0) {
        io.stderr('This command takes no arguments\n');
        return 1;
      }
      const values = parsed.values;
      const segment = (values.get('segment') as string | undefined) ?? '_all';
      let statusRe: RegExp;
      try {
        statusRe = new RegExp((values.get('status') as string | undefined) ?? '.*');
      } catch (err) {
        io.stderr(`Failed to compile status regexp: ${(err as Error).message}\n`);
        return 1;
      }

      let members: MemberRow[] | number;
      const source = memberSource(values, io.env);
      const gossipAt = gossipAddress(values.get('gossip-addr'), { CONSULATE_GOSSIP_ADDR: defaults.gossipAddress, ...io.env });
      if (source === 'gossip') {
        members = await fromGossip(values, segment, io, gossipAt);
      } else {
        const env = source === 'http' ? io.env : { ...io.env, CONSULATE_HTTP_ADDR: defaults.httpAddress };
        const answer = await fromCatalog(new HttpApi(values, env, '', false), values, segment, io, source === 'http-else-gossip');
        members = answer === 'unreachable' ? await fromGossip(values, segment, io, gossipAt) : answer;
      }
      if (typeof members === 'number') return members;

      const table = membersTable(members, segment, statusRe, values.get('detailed') === true, values.get('wan') === true ? 'wan' : 'lan');
      if (table === undefined) return 2;
      io.stdout(`${table}\n`);
      return 0;
    },
  };
}

export const membersCommand: Command = makeMembersCommand({ httpAddress: 'http://127.0.0.1:8500', gossipAddress: '127.0.0.1:8320' });

/** api.Agent.MembersOpts: `?segment=` when not empty, `?wan=1`. 'unreachable' when allowed to fall back. */
async function fromCatalog(api: HttpApi, values: ReadonlyMap<string, unknown>, segment: string, io: CommandIo, mayFallBack: boolean): Promise<MemberRow[] | number | 'unreachable'> {
  const query: Record<string, string> = {};
  if (segment !== '') query.segment = segment;
  if (values.get('wan') === true) query.wan = '1';
  try {
    const { body } = await api.request<AgentMember[]>('GET', '/v1/agent/members', { query, timeoutMs: MEMBERS_TIMEOUT_MS });
    return body.map(rowOfAgentMember);
  } catch (err) {
    // Nothing listens at the default address: no catalog here, ask the gossip agent.
    if (mayFallBack && err instanceof HttpApiError && err.status === 0) return 'unreachable';
    io.stderr(`Error retrieving members: ${(err as Error).message}\n`);
    return 1;
  }
}

async function fromGossip(values: ReadonlyMap<string, unknown>, segment: string, io: CommandIo, address: string): Promise<MemberRow[] | number> {
  if (values.get('wan') === true) {
    if (values.has('segment') && segment !== '' && segment !== '_all') {
      io.stderr('Error retrieving members: Unexpected response code: 400 (Cannot provide a segment with wan=true)\n');
      return 1;
    }
    io.stderr('Error retrieving members: a gossip agent holds no WAN pool: the federation routers run it; ask the catalog (-http-addr), which asks its routers\n');
    return 1;
  }
  const client = membershipClient(address);
  try {
    return (await callUnary(client.members.bind(client), { segment }, { timeoutMs: MEMBERS_TIMEOUT_MS, idempotent: true })).members.map(rowOfMember);
  } catch (err) {
    io.stderr(`Error retrieving members: ${callError(err, address)}\n`);
    return 1;
  } finally {
    client.close();
  }
}

/** `<default>` for the default segment; with _all, a server is in every segment: `<all>`. */
function segmentLabel(member: MemberRow, requested: string): string {
  if (requested === '_all' && member.tags.role === 'consul') return '<all>';
  const segment = member.tags.segment ?? member.segment;
  return segment === '' ? '<default>' : segment;
}

/** net.TCPAddr.String(): an IPv6 address in brackets. */
function hostPort(member: MemberRow): string {
  return member.address.includes(':') ? `[${member.address}]:${member.port}` : `${member.address}:${member.port}`;
}

function standard(rows: { member: MemberRow; label: string }[], pool: MemberPool): string {
  const partitioned = pool === 'wan';
  const table = [['Node', 'Address', 'Status', 'Type', 'Build', 'Protocol', 'DC', ...(partitioned ? ['Partition'] : []), 'Segment']];
  for (const { member, label } of rows) {
    const address = hostPort(member);
    const type = member.tags.role === 'consul' ? 'server' : member.tags.role === 'node' ? 'client' : 'unknown';
    if (type === 'unknown') {
      table.push([member.name, address, member.status, type, '', '', '', ...(partitioned ? [''] : []), '']);
      continue;
    }
    const build = member.tags.build === undefined ? '< 0.3' : member.tags.build.split(':')[0];
    // Consul's `ap` tag, `default` when a member has none.
    const partition = member.tags.ap || 'default';
    table.push([member.name, address, member.status, type, build, member.tags.vsn ?? '', member.tags.dc ?? '', ...(partitioned ? [partition] : []), label]);
  }
  return columnize(table);
}

function detailed(members: MemberRow[]): string {
  const table = [['Node', 'Address', 'Status', 'Tags']];
  for (const member of members) {
    const tags = Object.entries(member.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join(',');
    table.push([member.name, hostPort(member), member.status, tags]);
  }
  return columnize(table);
}
