/**
 * The catalog role: Consul's data model on the consensus store, the HTTP API on 8500 and the
 * public gRPC API on 8502 (grpc/: Catalog, Health, KV and Session services, with watches). A
 * watch-fed view of the store (state/) answers every read of both APIs; writes go to consensus as
 * one transaction each. The gRPC Status asks every consensus server for theirs.
 * With `-gossip-addr` (the datacenter's server gossip agents) it also serves `/v1/agent/...` and
 * stands for the reconciler, which one catalog per datacenter holds at a time. With
 * `-router-addr` (the datacenter's federation routers) it forwards `?dc=` of other datacenters
 * (and gRPC calls naming one), serves `/v1/operator/area` and lists the datacenters the routers
 * reach.
 */
import { randomUUID } from 'node:crypto';

import { Tracer } from '@opentelemetry/api';

import { Clock } from '../lib/clock';
import { checks, field } from '../lib/config';
import { ConsensusClient, consensusAddrsField } from '../lib/consensus-client';
import { RoleGrpcServer } from '../lib/grpc-server';
import { Logger } from '../lib/log';
import { IDLE_GC_DEFAULTS, IdleScavenger, processRuntime } from '../lib/idle-gc';
import { RoleMetrics } from '../lib/metrics';
import { persistentNodeId } from '../lib/node-id';
import { RoleDefinition } from '../lib/role-process';
import { catalogApiServices } from './grpc/catalog-api';
import { forwardedHttpService } from './grpc/forwarded-http';
import { WATCH_DEFAULTS, Watches } from './grpc/watches';
import { GossipClient, gossipAddrsField } from './gossip-client';
import { BlockingQueries } from './http/blocking';
import { CatalogHttpServer } from './http/http-server';
import { DatacenterForwarding } from './http/remote-datacenter';
import { catalogRouter } from './http/routes';
import { RECONCILER_DEFAULTS, Reconciler } from './reconciler';
import { UserEvents } from './user-events';
import { ELECTION_DEFAULTS, ReconcilerElection, consensusLeaseStore } from './reconciler-election';
import { RECONCILER_LOCK_KEY, catalogReconcilerStore } from './reconciler-store';
import { ForwardSlots, RouterClient, routerAddrsField } from './router-client';
import { catalogRows } from './state/catalog-rows';
import { LockDelays } from './state/lock-delay';
import { SessionReaper } from './state/session-reaper';
import { CatalogView } from './state/view';
import { ViewSync } from './state/view-sync';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the public gRPC API.', default: 8502, check: checks.port }),
  httpPort: field.int({ key: 'ports.http', flag: 'http-port', usage: "Port of the Consul-compatible HTTP API.", default: 8500, check: checks.port }),
  consensusAddrs: consensusAddrsField(),
  gossipAddrs: gossipAddrsField(),
  routerAddrs: routerAddrsField(),
  idleGc: field.bool({
    key: 'idle_gc',
    flag: 'idle-gc',
    usage: "Promote the young generation's survivors (parked blocking queries) with minor GCs while the process is idle, rather than while it answers them (services/lib/idle-gc.ts).",
    default: true,
  }),
};

export const catalogRole: RoleDefinition<typeof fields> = {
  role: 'catalog',
  synopsis: "Runs a catalog: Consul's HTTP API and the gRPC API over the datacenter's consensus store.",
  fields,
  async start(context) {
    const consensus = new ConsensusClient(context.config.consensusAddrs, context.tracer);
    const { config, logger, tracer, clock } = context;
    const view = new CatalogView();
    const sync = new ViewSync(view, consensus, config.consensusAddrs, tracer, logger);
    const gossip = new GossipClient(config.gossipAddrs, tracer, clock);
    const routers = new RouterClient(config.routerAddrs, tracer, clock);
    const nodeId = persistentNodeId(config.dataDir);
    const lockDelays = new LockDelays(clock);
    // The gRPC API (8502) runs on the same view, sync, consensus client and lock-delays as HTTP.
    const watches = new Watches({ datacenter: config.datacenter, view, sync, consensus }, logger, WATCH_DEFAULTS);
    // Both APIs forward other datacenters' requests through the same routers, within one limit.
    const forwardSlots = new ForwardSlots();
    // Releases the locks of sessions that end (TTL expiry, failed checks), from the view's changes.
    const sessionReaper = new SessionReaper({ view, consensus, lockDelays, logger });
    const blockingQueries = new BlockingQueries();
    const httpMetrics = registerCatalogMetrics(context.metrics, blockingQueries, watches);
    const idleGc = config.idleGc ? new IdleScavenger(IDLE_GC_DEFAULTS, processRuntime(), idleGcMetrics(context.metrics)) : undefined;
    // User events reach the catalog through a server gossip agent; a filter on services matches this catalog's node's.
    const events = new UserEvents({ gossip, node: config.node, localServices: () => catalogRows.nodeServices(view, config.node).map((service) => service.value), logger });
    const http = new CatalogHttpServer({
      router: catalogRouter({ datacenter: config.datacenter, node: config.node, nodeId, address: config.bind, view, sync, consensus, gossip, routers, events, lockDelays, logger, blockingQueries, metrics: context.metrics }),
      logger,
      tracer,
      remote: new DatacenterForwarding({ datacenter: config.datacenter, routers, logger, slots: forwardSlots }),
      metrics: httpMetrics,
    });
    // What routers bring from other datacenters' `?dc=` requests, served by the HTTP API's handlers.
    const forwardedHttp = forwardedHttpService(http);
    const server = new RoleGrpcServer({
      logger,
      tracer,
      services: [...catalogApiServices({ datacenter: config.datacenter, node: config.node, view, sync, consensus, lockDelays, watches, logger, context, routers, forwardSlots, events }), forwardedHttp.service],
    });
    const grpc = await server.listen(config.bind, config.grpcPort);
    const httpAddress = await http.listen(config.bind, config.httpPort);
    // The view loads in the background: reads wait for it (bounded), the process is up at once.
    void sync.start();
    sessionReaper.start();
    const election = gossip.configured ? startReconciler({ config, logger, tracer, clock, view, consensus, gossip }) : undefined;
    if (gossip.configured) void warnAboutClientAgents(gossip, logger);
    if (gossip.configured) events.start();
    else logger.warn('no -gossip-addr: this catalog runs no reconciler (gossip changes do not reach the catalog) and /v1/agent/... answers 500; pass -gossip-addr=HOST:8320 once per server gossip agent');
    if (!routers.configured) logger.warn('no -router-addr: this catalog knows no other datacenter (?dc= of another, and a gRPC call naming one, answer No path to datacenter; /v1/operator/area answers 500); pass -router-addr=HOST:8330 once per federation router');
    server.setServing(true);
    idleGc?.start();
    return {
      listeners: { grpc, http: httpAddress },
      async stop() {
        // First, so a standby catalog takes the reconciler over at once rather than after the TTL.
        await election?.stop();
        idleGc?.stop();
        await http.close();
        sessionReaper.stop();
        events.stop();
        // Watches never end on their own, nor do forwarded blocking queries before their wait:
        // end them (UNAVAILABLE; the wait's answer), or shutdown waits out its grace.
        watches.closeAll();
        forwardedHttp.closeAll();
        sync.stop();
        await server.shutdown();
        gossip.close();
        routers.close();
        consensus.close();
      },
    };

  },
};

function idleGcMetrics(metrics: RoleMetrics): (ms: number) => void {
  const count = metrics.counter({ name: 'consulate_idle_gc_total', help: 'Idle-time collections (two minor GCs each) that promoted the young generation while the event loop was idle.' });
  const seconds = metrics.counter({ name: 'consulate_idle_gc_seconds_total', help: 'Time spent in idle-time collections.' });
  return (ms) => {
    count.inc();
    seconds.inc(ms / 1000);
  };
}

/** Methods a label may name; Node's parser admits a few dozen more, which count as "other". */
const HTTP_METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'PATCH']);

/**
 * The catalog's series: HTTP requests by route pattern and status (Consul's api.http), blocking
 * queries in progress (Consul's rpc.queries_blocking), gRPC watch streams open.
 */
function registerCatalogMetrics(metrics: RoleMetrics, blocking: BlockingQueries, watches: Watches): { requestServed(method: string, route: string, status: number): void } {
  metrics.gauge({ name: 'consulate_catalog_blocking_queries_waiting', help: 'HTTP blocking queries (?index=) in progress on this catalog, from arrival to answer.', collect: (g) => g.set(blocking.waiting) });
  metrics.gauge({ name: 'consulate_catalog_watches_open', help: 'gRPC watch streams (WatchServiceHealth, WatchPrefix) open on this catalog.', collect: (g) => g.set(watches.count) });
  const requests = metrics.counter({ name: 'consulate_http_requests_total', help: 'HTTP API requests answered, by method, route pattern (not path) and status code.', labelNames: ['method', 'route', 'code'] });
  return {
    requestServed(method, route, status) {
      requests.inc({ method: HTTP_METHODS.has(method) ? method : 'other', route, code: String(status) });
    },
  };
}

/** The reconciler of this catalog, and the election that decides whether it is the active one. */
function startReconciler(deps: {
  config: { datacenter: string; node: string };
  logger: Logger;
  tracer: Tracer;
  clock: Clock;
  view: CatalogView;
  consensus: ConsensusClient;
  gossip: GossipClient;
}): ReconcilerElection {
  const { config, logger, tracer, clock } = deps;
  const leadership = { fence: undefined as bigint | undefined, lost: (reason: string) => election.lost(reason) };
  const reconciler = new Reconciler({ datacenter: config.datacenter, ...RECONCILER_DEFAULTS }, deps.gossip, catalogReconcilerStore(deps.view, deps.consensus, config.datacenter), leadership, clock, tracer, logger);
  // Unique per process: a restarted catalog waits out its predecessor's lease like anyone else.
  const candidate = `${config.node} (${randomUUID()})`;
  const election: ReconcilerElection = new ReconcilerElection({ key: RECONCILER_LOCK_KEY, candidate, ...ELECTION_DEFAULTS }, consensusLeaseStore(deps.consensus), clock, logger, (active, lease) => {
    leadership.fence = lease;
    if (active) reconciler.activate();
    else reconciler.deactivate();
  });
  election.start();
  return election;
}

/**
 * A client agent sees only its own segment: reconciling from one would deregister every node of
 * the others. Say so loudly at start (the agents may not be up yet: then nothing is known).
 */
async function warnAboutClientAgents(gossip: GossipClient, logger: Logger): Promise<void> {
  for (const { address, server } of await gossip.agentKinds()) {
    if (server === false) logger.error({ agent: address }, `-gossip-addr=${address} is a client agent: give the catalog server gossip agents, which see every segment`);
  }
}
