/**
 * `consulate event`: Consul's `consul event`, over the catalog's `PUT /v1/event/fire/:name` (with
 * `-datacenter`, another datacenter's catalog fires it). The same checks as Consul's command, with
 * its texts, before anything is sent; `Event ID: <id>` on success.
 */
import { badFilter } from '../../services/catalog/user-events';
import { FlagSpec, flagUsage } from '../../services/lib/flags';
import { Command, parseCommandFlags } from '../command';
import { HTTP_FLAGS, HttpApi } from '../http-api';

const EVENT_FLAGS: FlagSpec[] = [
  ...HTTP_FLAGS,
  { name: 'name', kind: 'string', usage: 'Name of the event.' },
  { name: 'node', kind: 'string', usage: 'Regular expression to filter on node names.' },
  { name: 'service', kind: 'string', usage: 'Regular expression to filter on service instances.' },
  { name: 'tag', kind: 'string', usage: 'Regular expression to filter on service tags. Must be used with -service.' },
];
const EVENT_HELP = `Usage: consulate event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.

Options:

${flagUsage(EVENT_FLAGS)}`;

export const eventCommand: Command = {
  synopsis: 'Fire a new event',
  help: () => EVENT_HELP,
  async run(args, io) {
    const parsed = parseCommandFlags(EVENT_FLAGS, EVENT_HELP, args, io);
    if (typeof parsed === 'number') return parsed;
    const text = (name: string) => (parsed.values.get(name) as string | undefined) ?? '';
    const [name, node, service, tag] = [text('name'), text('node'), text('service'), text('tag')];
    if (name === '') {
      io.stderr('Event name must be specified\n');
      return 1;
    }
    const bad = badFilter({ nodeFilter: node, serviceFilter: service, tagFilter: tag });
    if (bad !== undefined) {
      io.stderr(`Failed to compile ${bad.what} filter regexp: ${bad.problem}\n`);
      return 1;
    }
    if (tag !== '' && service === '') {
      io.stderr('Cannot provide tag filter without service filter.\n');
      return 1;
    }
    if (parsed.positionals.length > 1) {
      io.stderr(`Too many command line arguments.\n\n${EVENT_HELP}\n`);
      return 1;
    }
    const payload = parsed.positionals.length === 1 ? Buffer.from(parsed.positionals[0]) : undefined;
    const api = new HttpApi(parsed.values, io.env);
    try {
      const query = { node: node || undefined, service: service || undefined, tag: tag || undefined };
      const fired = await api.request<{ ID: string }>('PUT', `/v1/event/fire/${encodeURIComponent(name)}`, { query, raw: payload });
      io.stdout(`Event ID: ${fired.body.ID}\n`);
      return 0;
    } catch (err) {
      io.stderr(`Error firing event: ${(err as Error).message}\n`);
      return 1;
    }
  },
};
