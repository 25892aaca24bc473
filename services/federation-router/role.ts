/**
 * The federation-router role: network areas between pairs of datacenters and the WAN pool, the
 * route table, and forwarding of catalog requests between datacenters, all of it across
 * datacenters on 8300 over mutual TLS only (tls-listener.ts, federation-service.ts). Inside its
 * datacenter it serves the Operator and Forward APIs on 8330 (operator-service.ts), keeps the areas
 * in consensus (area-store.ts), runs a SWIM pool per area (federation.ts) and asks its
 * datacenter's catalog for what other datacenters ask of it (forwarder.ts).
 */
import { Tracer } from '@opentelemetry/api';

import { protobufFileName as federationProto } from '../gen/consulate/router/v1/federation';
import { OperatorServiceService, protobufFileName as operatorProto } from '../gen/consulate/router/v1/operator';
import { checks, field } from '../lib/config';
import { systemClock } from '../lib/clock';
import { ConsensusClient, consensusAddrsField } from '../lib/consensus-client';
import { callUnary } from '../lib/grpc-client';
import { RoleGrpcServer } from '../lib/grpc-server';
import { traceServiceImplementation, tracing } from '../lib/grpc-tracing';
import { Logger } from '../lib/log';
import { RoleMetrics, setCountsByStatus } from '../lib/metrics';
import { persistentNodeId } from '../lib/node-id';
import { RoleDefinition } from '../lib/role-process';
import { GOSSIP_EAGER_FIELD, GOSSIP_SUSPECT_ON_REFUSAL_FIELD } from '../lib/swim-pool';
import { SWIM_PROFILES } from '../lib/swim/config';
import { TlsConfigError, loadTlsMaterial } from '../lib/tls';
import { VERSION } from '../lib/version';
import { AreaError, AreaStore } from './area-store';
import { AreaMemberView, Federation, WAN_AREA, withDefaultPort } from './federation';
import { joinAddressesProblem } from './join-address';
import { defaultCatalogGrpcAddr } from './catalog-grpc';
import { FEDERATION_SERVICE, FederationHandlers, federationService } from './federation-service';
import { ForwardMetrics, Forwarder } from './forwarder';
import { PING_TIMEOUT_MS, Rebalancer } from './routing/rebalance';
import { FORWARD_SERVICE, forwardService, operatorService } from './operator-service';
import { PeerClients } from './peer-clients';
import { MutualTlsListener } from './tls-listener';

const fields = {
  grpcPort: field.int({ key: 'ports.grpc', flag: 'grpc-port', usage: 'Port of the in-datacenter Operator and Forward API.', default: 8330, check: checks.port }),
  serverPort: field.int({ key: 'ports.server', flag: 'server-port', usage: 'Port of the cross-datacenter federation API (mutual TLS only).', default: 8300, check: checks.port }),
  consensusAddrs: consensusAddrsField(),
  catalogAddrs: field.list({ key: 'catalog_addrs', flag: 'catalog-addr', usage: "A catalog's HTTP API of this datacenter, host:port (8500); repeatable. Requests forwarded from other datacenters go to its gRPC port (-catalog-grpc-addr), and here only when a catalog is too old to serve them there.", default: [], check: checks.hostPorts }),
  catalogGrpcAddrs: field.list({
    key: 'catalog_grpc_addrs',
    flag: 'catalog-grpc-addr',
    usage: "A catalog's gRPC API of this datacenter, host:port (8502), that serves the requests and gRPC calls forwarded from other datacenters; repeatable. Default: each -catalog-addr's host on port 8502.",
    default: [],
    check: checks.hostPorts,
  }),
  caFile: field.string({ key: 'ca_file', flag: 'ca-file', usage: 'The CA certificate that signs every router certificate (consulate tls ca create).', default: '' }),
  certFile: field.string({ key: 'cert_file', flag: 'cert-file', usage: "This router's certificate, server.<dc>.consulate (consulate tls cert create -server).", default: '' }),
  keyFile: field.string({ key: 'key_file', flag: 'key-file', usage: "The certificate's private key.", default: '' }),
  retryJoinWan: field.list({
    key: 'retry_join_wan',
    flag: 'retry-join-wan',
    usage: "Address of another datacenter's router to join the WAN pool through (an IP, [IPv6] or host name, port 8300 when none), retried until one accepts; repeatable.",
    default: [],
    check: joinAddressesProblem,
  }),
  gossipProfile: field.string({ key: 'gossip_profile', flag: 'gossip-profile', usage: "memberlist's timing profile for area and WAN pools: wan (Consul's), lan or local.", default: 'wan', check: (v) => (v in SWIM_PROFILES ? undefined : `unknown profile "${v}": use wan, lan or local`) }),
  gossipEager: GOSSIP_EAGER_FIELD,
  gossipSuspectOnRefusal: GOSSIP_SUSPECT_ON_REFUSAL_FIELD,
};

export const federationRouterRole: RoleDefinition<typeof fields> = {
  role: 'federation-router',
  synopsis: 'Runs a federation router: network areas and forwarding between datacenters over mutual TLS on 8300.',
  fields,
  validate(config) {
    const missing = (['caFile', 'certFile', 'keyFile'] as const).filter((name) => config[name] === '').map((name) => `-${fields[name].flag} is required: port 8300 speaks mutual TLS only`);
    if (missing.length > 0) return missing;
    try {
      const material = loadTlsMaterial({ caFile: config.caFile, certFile: config.certFile, keyFile: config.keyFile });
      if (material.datacenter !== config.datacenter) return [`${config.certFile} is a certificate for ${material.datacenter === undefined ? 'no datacenter (not a server certificate)' : `datacenter "${material.datacenter}"`}, but this router is in "${config.datacenter}": make one with consulate tls cert create -server -dc ${config.datacenter}`];
    } catch (err) {
      if (err instanceof TlsConfigError) return [err.message];
      throw err;
    }
    return [];
  },
  async start(context) {
    const { config, logger, tracer } = context;
    const material = loadTlsMaterial({ caFile: config.caFile, certFile: config.certFile, keyFile: config.keyFile });
    const consensus = new ConsensusClient(config.consensusAddrs, tracer);
    const store = new AreaStore(config.datacenter, consensus, config.consensusAddrs, tracer, logger);
    const peers = new PeerClients(material, config.datacenter, tracer);
    const rpcAddress = `${config.bind}:${config.serverPort}`;
    const federation = new Federation(
      { datacenter: config.datacenter, node: config.node, nodeId: persistentNodeId(config.dataDir), version: VERSION, address: rpcAddress, timings: { ...SWIM_PROFILES[config.gossipProfile](), eagerGossip: config.gossipEager, suspectOnRefusal: config.gossipSuspectOnRefusal }, logger },
      store,
      peers,
    );
    // The catalog serves gRPC on 8502 beside its HTTP API unless told where else.
    const catalogGrpcAddrs = config.catalogGrpcAddrs.length > 0 ? config.catalogGrpcAddrs : config.catalogAddrs.map(defaultCatalogGrpcAddr);
    const rebalancer = new Rebalancer({
      clock: systemClock,
      random: Math.random,
      routersOf: (datacenter) => federation.route(datacenter)?.nextHops.filter((hop) => hop.datacenter === datacenter) ?? [],
      poolMembers: () => openPools(federation, store).reduce((sum, pool) => sum + pool.members.length, 0),
      ping: (hop) => callUnary(peers.forwarding(hop.address, hop.datacenter).ping, {}, { timeoutMs: PING_TIMEOUT_MS, idempotent: true, maxAttempts: 1 }).then(() => true, () => false),
      logger,
    });
    const forwarder = new Forwarder(
      { datacenter: config.datacenter, catalogAddrs: config.catalogAddrs, catalogGrpcAddrs, logger, tracer, metrics: registerRouterMetrics(context.metrics, federation, store), rebalancer },
      federation,
      store,
      peers,
    );
    federation.onRouterFailed((address) => forwarder.routerFailed(address));
    context.metrics.gauge({ name: 'consulate_router_forwarded_watches_open', help: 'Watches of another datacenter passing through this router now (ForwardWatch), from its catalogs, passing through, or opened on its catalog.', collect: (gauge) => gauge.set(forwarder.watchesOpen) });

    let listener: MutualTlsListener | undefined;
    const federationServer = new RoleGrpcServer({
      logger,
      tracer,
      // Forwarded requests get spans; SWIM packets and pings would only drown them.
      services: [{ definition: FEDERATION_SERVICE, implementation: tracedForwardOnly(tracer, federationService({ datacenter: config.datacenter, node: config.node, federation, forwarder, listener: () => listener, logger })), protoFile: federationProto, traced: false, callStream: true }],
    });
    const operatorServer = new RoleGrpcServer({
      logger,
      tracer,
      services: [
        { definition: OperatorServiceService, implementation: operatorService({ context, consensus, datacenter: config.datacenter, store, federation, forwarder }), protoFile: operatorProto },
        { definition: FORWARD_SERVICE, implementation: forwardService(forwarder), protoFile: operatorProto, callStream: true },
      ],
    });
    const opened = await MutualTlsListener.listen(config.bind, config.serverPort, federationServer.connectionInjector(), material, logger);
    listener = opened.listener;
    const grpc = await operatorServer.listen(config.bind, config.grpcPort);
    logger.info({ address: opened.address, datacenter: material.datacenter }, `federation API on ${opened.address}: mutual TLS only, certificate server.${material.datacenter}.consulate`);

    // The areas load (and this router registers) in the background: a router whose consensus is
    // away still answers its Status, says so, and catches up when consensus is back.
    void store.start();
    store.keepRegistered({ node: config.node, address: rpcAddress });
    federation.start();
    let stopped = false;
    if (config.retryJoinWan.length > 0) void retryJoinWan(federation, config.retryJoinWan, () => stopped, logger);
    federationServer.setServing(true);
    operatorServer.setServing(true);
    return {
      listeners: { grpc, server: opened.address },
      async stop() {
        stopped = true;
        await federation.stop();
        store.stop();
        await listener?.close();
        await Promise.all([operatorServer.shutdown(), federationServer.shutdown()]);
        rebalancer.close();
        forwarder.close();
        peers.close();
        consensus.close();
      },
    };
  },
};

/** Serf's member statuses, as the area member API shows them (suspect counts as alive there). */
const AREA_MEMBER_STATUSES = ['alive', 'leaving', 'left', 'failed'] as const;

/**
 * The router's series: forwarded requests by datacenter and outcome, and their latency (Consul's
 * rpc.cross-dc); members of each area's pool and the WAN pool by status, counted at each scrape.
 */
function registerRouterMetrics(metrics: RoleMetrics, federation: Federation, store: AreaStore): ForwardMetrics {
  const forwarded = metrics.counter({
    name: 'consulate_router_forwarded_requests_total',
    help: 'Requests forward() ended, from this datacenter\'s catalogs, passing through, or served here for another router: by the datacenter they were for ("unknown" for a name no route or area knows) and outcome (ok, no_path, no_server, error).',
    labelNames: ['datacenter', 'outcome'],
  });
  const duration = metrics.histogram({ name: 'consulate_router_forward_duration_seconds', help: 'How long forward() took, whatever its outcome, by the datacenter the request was for.', labelNames: ['datacenter'] });
  metrics.gauge({
    name: 'consulate_router_area_members',
    help: 'Members of each pool this router is in: a network area (by id, with its peer datacenter) or the WAN pool (area "wan"), by Serf status.',
    labelNames: ['area', 'peer_datacenter', 'status'],
    collect: (gauge) => {
      gauge.reset();
      for (const { area, members } of openPools(federation, store)) {
        setCountsByStatus(gauge, { area: area.id, peer_datacenter: area.peerDatacenter }, AREA_MEMBER_STATUSES, members.map((member) => member.status));
      }
    },
  });
  return {
    startForward() {
      const end = duration.startTimer();
      return (datacenter, outcome) => {
        end({ datacenter });
        forwarded.inc({ datacenter, outcome });
      };
    },
  };
}

function tracedForwardOnly(tracer: Tracer, implementation: FederationHandlers): FederationHandlers {
  if (!tracing(tracer)) return implementation;
  return { ...implementation, forward: traceServiceImplementation(tracer, FEDERATION_SERVICE, { forward: implementation.forward }).forward };
}

/** Joins the WAN pool through any of `addresses`, every 30 s until one accepts (Consul's retry_join_wan). */
/** The WAN pool and every area's pool with their members; an area in the store whose pool is not open yet (or just closed) is left out. */
function openPools(federation: Federation, store: AreaStore): { area: { id: string; peerDatacenter: string }; members: AreaMemberView[] }[] {
  const pools = [];
  for (const area of [{ id: WAN_AREA, peerDatacenter: '' }, ...store.areas()]) {
    try {
      pools.push({ area, members: federation.members(area.id) });
    } catch (err) {
      if (!(err instanceof AreaError)) throw err;
    }
  }
  return pools;
}

async function retryJoinWan(federation: Federation, addresses: readonly string[], stopped: () => boolean, logger: Logger): Promise<void> {
  while (!stopped()) {
    const results = await federation.join(WAN_AREA, addresses.map(withDefaultPort)).catch(() => []);
    if (results.some((result) => result.joined)) {
      logger.info({ addresses }, `joined the WAN pool through ${addresses.join(', ')}`);
      return;
    }
    logger.warn({ addresses, errors: results.map((r) => r.error) }, 'cannot join the WAN pool yet; retrying in 30s');
    await new Promise((resolve) => setTimeout(resolve, 30_000));
  }
}
