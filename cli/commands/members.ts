/**
 * `consulate members`: Consul's `consul members` (command/members/members.go) over the gossip
 * agent's Membership API. Same flags, columns, sorting, labels and exit codes: 0 with rows, 2 when
 * no member matches, 1 on an error (`Error retrieving members: ...`).
 */
import { Member } from '../../services/gen/consulate/gossip/v1/membership';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { callUnary } from '../../services/lib/grpc-client';
import { columnize } from '../columns';
import { Command, parseCommandFlags } from '../command';
import { GOSSIP_ADDR_FLAG, callError, gossipAddress, membershipClient } from './gossip-api';

const FLAGS: FlagSpec[] = [
  GOSSIP_ADDR_FLAG,
  { name: 'segment', kind: 'string', usage: 'List only members in this network segment; _all lists every segment, each server once.', defaultText: '"_all"' },
  { name: 'wan', kind: 'bool', usage: 'List the members of the WAN pool instead of the LAN.' },
  { name: 'detailed', kind: 'bool', usage: 'Print every tag of each member instead of the summary columns.' },
  { name: 'status', kind: 'string', usage: 'A regular expression over the status (alive, leaving, left, failed).', defaultText: '".*"' },
];

const HELP = `Usage: consulate members [options]

  Outputs the members of a running agent's gossip pools: the LAN pool of one network segment, or
  with -segment=_all (the default) every segment's, each server shown once as <all>.

Options:

${flagUsage(FLAGS)}`;

export const membersCommand: Command = {
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
    if (values.get('wan') === true) {
      if (values.has('segment') && segment !== '' && segment !== '_all') {
        io.stderr('Error retrieving members: Unexpected response code: 400 (Cannot provide a segment with wan=true)\n');
        return 1;
      }
      io.stderr('Error retrieving members: the WAN pool is run by the federation routers, which do not serve it yet\n');
      return 1;
    }

    const address = gossipAddress(values.get('gossip-addr'), io.env);
    const client = membershipClient(address);
    let members: Member[];
    try {
      members = (await callUnary(client.members.bind(client), { segment }, { timeoutMs: 10_000, idempotent: true })).members;
    } catch (err) {
      io.stderr(`Error retrieving members: ${callError(err, address)}\n`);
      return 1;
    } finally {
      client.close();
    }

    const rows = members.filter((m) => statusRe.test(m.status)).map((m) => ({ member: m, label: segmentLabel(m, segment) }));
    rows.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.member.name < b.member.name ? -1 : a.member.name > b.member.name ? 1 : 0));
    if (rows.length === 0) return 2;
    io.stdout(`${values.get('detailed') === true ? detailed(rows.map((r) => r.member)) : standard(rows)}\n`);
    return 0;
  },
};

/** `<default>` for the default segment; with _all, a server is in every segment: `<all>`. */
function segmentLabel(member: Member, requested: string): string {
  if (requested === '_all' && member.tags.role === 'consul') return '<all>';
  const segment = member.tags.segment ?? member.segment;
  return segment === '' ? '<default>' : segment;
}

function standard(rows: { member: Member; label: string }[]): string {
  const table = [['Node', 'Address', 'Status', 'Type', 'Build', 'Protocol', 'DC', 'Segment']];
  for (const { member, label } of rows) {
    const address = `${member.address}:${member.port}`;
    const type = member.tags.role === 'consul' ? 'server' : member.tags.role === 'node' ? 'client' : 'unknown';
    if (type === 'unknown') {
      table.push([member.name, address, member.status, type, '', '', '', '']);
      continue;
    }
    const build = member.tags.build === undefined ? '< 0.3' : member.tags.build.split(':')[0];
    table.push([member.name, address, member.status, type, build, member.tags.vsn ?? '', member.tags.dc ?? '', label]);
  }
  return columnize(table);
}

function detailed(members: Member[]): string {
  const table = [['Node', 'Address', 'Status', 'Tags']];
  for (const member of members) {
    const tags = Object.entries(member.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join(',');
    table.push([member.name, `${member.address}:${member.port}`, member.status, tags]);
  }
  return columnize(table);
}
