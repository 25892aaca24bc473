/**
 * The gossip role: the agent on every node (Consul's `consul agent` as far as gossip goes). SWIM
 * with Lifeguard on UDP and TCP (8301 and each segment's port), network segments, Vivaldi
 * coordinates, user events, an optional keyring; the gRPC Membership API on 8320.
 *
 * Flags follow Consul's: -server, -segment, -join and -retry-join (repeatable, host or host:port),
 * -retry-interval, -retry-max, -encrypt, -serf-lan-port. A server's segments are given as
 * NAME:PORT (`-segments=alpha:8303 -segments=beta:8304`, or `"segments": ["alpha:8303"]` in a
 * config file). A -join that no address accepts stops the agent with memberlist's text; with
 * -retry-join it keeps trying every -retry-interval.
 */
import { MembershipServiceService, protobufFileName } from '../gen/consulate/gossip/v1/membership';
import { checks, field } from '../lib/config';
import { parseGoDuration } from '../lib/go-text';
import { RoleGrpcServer } from '../lib/grpc-server';
import { Logger } from '../lib/log';
import { RoleMetrics, setCountsByStatus } from '../lib/metrics';
import { persistentNodeId } from '../lib/node-id';
import { RoleConfig, RoleDefinition } from '../lib/role-process';
import { GOSSIP_EAGER_FIELD, GOSSIP_SUSPECT_ON_REFUSAL_FIELD } from '../lib/swim-pool';
import { SWIM_PROFILES } from '../lib/swim/config';
import { VERSION } from '../lib/version';
import { GossipAgent } from './agent';
import { Keyring, keyProblem } from './keyring';
import { membershipService } from './membership-service';
import { parseSegments, segmentProblems } from './segments';

const PROFILES = SWIM_PROFILES;

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the gRPC Membership API.', default: 8320, check: checks.port }),
  serfLanPort: field.int({ key: 'ports.serf_lan', flag: 'serf-lan-port', usage: "Port of this node's LAN pool (UDP and TCP): the default segment's on a server, its segment's on a client.", default: 8301, check: checks.port }),
  server: field.bool({ key: 'server', flag: 'server', usage: "Run as a server node (in every segment's pool).", default: false }),
  segment: field.string({ key: 'segment', flag: 'segment', usage: 'The network segment of this client ("" for the default segment).', default: '' }),
  segments: field.list({ key: 'segments', flag: 'segments', usage: "A server's network segment as NAME:PORT; repeatable (e.g. alpha:8303).", default: [] }),
  join: field.list({ key: 'start_join', flag: 'join', usage: 'Address of an agent to join at start (host or host:port); repeatable. Start fails if none accepts.', default: [], check: joinAddresses }),
  retryJoin: field.list({ key: 'retry_join', flag: 'retry-join', usage: 'Address of an agent to join, retried until one accepts (host or host:port); repeatable.', default: [], check: joinAddresses }),
  retryInterval: field.string({ key: 'retry_interval', flag: 'retry-interval', usage: 'Time to wait between join attempts (Go duration).', default: '30s', check: (v) => (positiveDurationMs(v) === undefined ? `"${v}" is not a duration: use e.g. 30s, 500ms or 1m` : undefined) }),
  retryMax: field.int({ key: 'retry_max', flag: 'retry-max', usage: 'Join attempts before giving up; 0 retries forever.', default: 0, check: (v) => (v < 0 ? 'cannot be negative' : undefined) }),
  encrypt: field.string({ key: 'encrypt', flag: 'encrypt', usage: 'Key that encrypts gossip (base64; make one with `consulate keygen`). Off when empty.', default: '' }),
  gossipProfile: field.string({ key: 'gossip_profile', flag: 'gossip-profile', usage: "memberlist's timing profile: lan, local or wan.", default: 'lan', check: (v) => (v in PROFILES ? undefined : `unknown profile "${v}": use lan, local or wan`) }),
  gossipEager: GOSSIP_EAGER_FIELD,
  gossipSuspectOnRefusal: GOSSIP_SUSPECT_ON_REFUSAL_FIELD,
};

type GossipConfig = RoleConfig<typeof fields>;

export const gossipRole: RoleDefinition<typeof fields> = {
  role: 'gossip',
  synopsis: 'Runs a gossip agent: membership and failure detection for this node (SWIM with Lifeguard), network segments.',
  fields,
  validate(config) {
    const parsed = parseSegments(config.segments);
    const problems = [...parsed.problems, ...segmentProblems({ server: config.server, segment: config.segment, segments: parsed.segments, lanPort: config.serfLanPort })];
    if (config.encrypt !== '') {
      const problem = keyProblem(config.encrypt);
      if (problem !== undefined) problems.push(`-encrypt ("encrypt"): ${problem}`);
    }
    return problems;
  },
  async start(context) {
    const { config, logger } = context;
    const keyring = config.encrypt === '' ? undefined : new Keyring([config.encrypt]);
    const agent = await GossipAgent.start({
      datacenter: config.datacenter,
      node: config.node,
      nodeId: persistentNodeId(config.dataDir),
      bind: config.bind,
      server: config.server,
      segment: config.segment,
      segments: parseSegments(config.segments).segments,
      lanPort: config.serfLanPort,
      timings: { ...PROFILES[config.gossipProfile](), eagerGossip: config.gossipEager, suspectOnRefusal: config.gossipSuspectOnRefusal },
      keyring,
      version: VERSION,
      logger,
    });

    registerGossipMetrics(context.metrics, agent);

    let stopping = false;
    const openStreams = new Set<{ end(): void }>();
    const server = new RoleGrpcServer({
      logger,
      tracer: context.tracer,
      services: [
        {
          definition: MembershipServiceService,
          implementation: membershipService({
            context,
            agent,
            keyring,
            openStreams,
            leaveAndStop: async () => {
              stopping = true;
              logger.info({ event: 'leave' }, 'Gracefully leaving every pool (consulate leave)');
              await agent.leave();
              // The reply goes out first; then the process stops as on SIGTERM.
              setTimeout(() => process.kill(process.pid, 'SIGTERM'), 100);
            },
          }),
          protoFile: protobufFileName,
          callStream: true,
        },
      ],
    });
    let grpc: string;
    try {
      if (config.join.length > 0) await startJoin(agent, config, logger);
      grpc = await server.listen(config.bind, config.grpcPort);
    } catch (err) {
      await agent.stop();
      throw err;
    }
    server.setServing(true);
    const retry = config.retryJoin.length > 0 ? retryJoin(agent, config, logger) : undefined;

    const listeners: Record<string, string> = { grpc };
    for (const pool of agent.allPools()) listeners[pool.segment === '' ? 'serf_lan' : `segment_${pool.segment}`] = pool.address;
    return {
      listeners,
      async stop() {
        retry?.cancel();
        // Consul's leave_on_terminate: clients leave on SIGTERM, servers do not (they come back).
        if (!config.server && !stopping) await agent.leave(2_000);
        // Watches never end on their own: end them, or shutdown waits out its grace period.
        for (const stream of openStreams) stream.end();
        await server.shutdown();
        await agent.stop();
      },
    };
  },
};

/** SWIM member states as metric statuses: memberlist's alive, suspect and dead (Serf's "failed"), and left. */
const MEMBER_STATUSES = ['alive', 'suspect', 'failed', 'left'] as const;

/** Members of each of this agent's pools by state, counted at each scrape (Consul's serf member gauges). */
function registerGossipMetrics(metrics: RoleMetrics, agent: GossipAgent): void {
  metrics.gauge({
    name: 'consulate_gossip_members',
    help: 'Members of each LAN pool this agent is in (segment "" is the default one), by state: alive, suspect, failed (dead) or left; this agent included.',
    labelNames: ['segment', 'status'],
    collect: (gauge) => {
      gauge.reset();
      for (const pool of agent.allPools()) {
        setCountsByStatus(gauge, { segment: pool.segment }, MEMBER_STATUSES, pool.members().map((member) => (member.state === 'dead' ? 'failed' : member.state)));
      }
    },
  });
}

/** Consul's start_join: one attempt at start; no address accepting is a start failure. */
async function startJoin(agent: GossipAgent, config: GossipConfig, logger: Logger): Promise<void> {
  logger.info({ addresses: config.join }, `(LAN) joining: lan_addresses=[${config.join.join(' ')}]`);
  const results = await agent.join(config.join, '');
  if ('error' in results) throw new Error(results.error);
  const joined = results.filter((r) => r.joined).length;
  if (joined === 0) throw new Error(results.map((r) => r.error).join('; '));
  logger.info({ joined }, `(LAN) joined: number_of_nodes=${joined}`);
}

/** Consul's retry_join: attempts every retry interval until one address accepts (or retry_max attempts). */
function retryJoin(agent: GossipAgent, config: GossipConfig, logger: Logger): { cancel(): void } {
  const intervalMs = positiveDurationMs(config.retryInterval)!;
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  let attempt = 0;
  const tryOnce = async () => {
    if (cancelled) return;
    attempt++;
    logger.info({ addresses: config.retryJoin, attempt }, `(LAN) joining: lan_addresses=[${config.retryJoin.join(' ')}]`);
    const results = await agent.join(config.retryJoin, '');
    if (cancelled) return;
    const joined = 'error' in results ? 0 : results.filter((r) => r.joined).length;
    if (joined > 0) {
      logger.info({ joined }, `Join cluster completed. Synced with ${joined} initial agents`);
      return;
    }
    const error = 'error' in results ? results.error : results.map((r) => r.error).join('; ');
    logger.warn({ attempt, error }, `(LAN) couldn't join: number_of_nodes=0 error=${error}`);
    if (config.retryMax > 0 && attempt >= config.retryMax) {
      logger.error({ attempt }, `(LAN) max join retry exhausted, exiting`);
      process.kill(process.pid, 'SIGTERM');
      return;
    }
    logger.info(`Retrying join in ${config.retryInterval}`);
    timer = setTimeout(() => void tryOnce(), intervalMs);
  };
  void tryOnce();
  return {
    cancel() {
      cancelled = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

function joinAddresses(values: string[]): string | undefined {
  for (const value of values) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(value)) return `"${value}" is not host or host:port (e.g. 127.0.1.1:8303)`;
    const port = /:(\d+)$/.exec(value)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `"${value}": port ${port} is out of range: use 1-65535`;
  }
  return undefined;
}

/** A Go duration (Consul's config syntax) in ms, or undefined when it is not one or not positive. */
function positiveDurationMs(text: string): number | undefined {
  const parsed = parseGoDuration(text);
  return parsed.error === undefined && parsed.ns > 0 ? parsed.ns / 1e6 : undefined;
}
