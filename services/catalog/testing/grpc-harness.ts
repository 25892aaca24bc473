/**
 * The catalog's gRPC API in-process, for its unit tests: the four services behind a real
 * RoleGrpcServer (tracing wrapper, reflection, limits) on a free loopback port, over a
 * LeasedFakeConsensus (kv-fake.ts), with the generated grpc-js clients. The HTTP endpoints can be
 * served over the same deps, to show both APIs answer from the same state.
 *
 *   const api = await startCatalogGrpc();
 *   await api.call(api.catalog.register.bind(api.catalog), { node: 'n1', address: '10.0.0.1', ... });
 *   const failure = await api.failure(api.kv.put.bind(api.kv), { key: '' });   // ServiceError
 *   await api.close();
 *
 * With `routerAddresses` (fake-router.ts), calls naming another datacenter go to those routers.
 */
import { CallOptions, Metadata, ServiceError, credentials } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { CatalogServiceClient } from '../../gen/consulate/catalog/v1/catalog';
import { HealthServiceClient } from '../../gen/consulate/catalog/v1/health';
import { KVServiceClient } from '../../gen/consulate/catalog/v1/kv';
import { SessionServiceClient } from '../../gen/consulate/catalog/v1/session';
import { callUnary } from '../../lib/grpc-client';
import { RoleGrpcServer } from '../../lib/grpc-server';
import { createLogger } from '../../lib/log';
import { CatalogApiDeps, catalogApiServices } from '../grpc/catalog-api';
import { WATCH_DEFAULTS, Watches } from '../grpc/watches';
import { ForwardSlots, RouterClient } from '../router-client';
import { LockDelays } from '../state/lock-delay';
import { LeasedFakeConsensus } from './kv-fake';

type Unary<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, response: Res) => void) => unknown;

export interface CatalogGrpc {
  readonly address: string;
  readonly consensus: LeasedFakeConsensus;
  readonly deps: CatalogApiDeps;
  readonly watches: Watches;
  readonly catalog: CatalogServiceClient;
  readonly health: HealthServiceClient;
  readonly kv: KVServiceClient;
  readonly session: SessionServiceClient;
  /** One unary call (no retries), within `timeoutMs` (default 5 s). */
  call<Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs?: number): Promise<Res>;
  /** One unary call that must fail: its ServiceError (code, details, trailers). */
  failure<Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs?: number): Promise<ServiceError>;
  close(): Promise<void>;
}

export interface CatalogGrpcOptions {
  readonly consensus?: LeasedFakeConsensus;
  readonly maxWatches?: number;
  /** Federation routers (fake-router.ts) for calls naming another datacenter; none by default. */
  readonly routerAddresses?: readonly string[];
  /** Forwards in flight at once (MAX_FORWARDS_IN_FLIGHT by default). */
  readonly maxForwardsInFlight?: number;
  /** Where the catalog's warnings go (silent by default). */
  readonly logLines?: { msg: string; [field: string]: unknown }[];
}

export async function startCatalogGrpc(options: CatalogGrpcOptions = {}): Promise<CatalogGrpc> {
  const consensus = options.consensus ?? new LeasedFakeConsensus();
  const lines = options.logLines;
  const logger =
    lines === undefined
      ? createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' })
      : createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'warn', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const routers = new RouterClient(options.routerAddresses ?? [], trace.getTracer('test'));
  const base = { datacenter: 'dc1', view: consensus.view, sync: { lastContactMs: Date.now() }, consensus: { kv: consensus.kv, lease: consensus.lease, probe: async () => [] } };
  const watches = new Watches(base, logger, { ...WATCH_DEFAULTS, maxWatches: options.maxWatches ?? WATCH_DEFAULTS.maxWatches });
  const deps: CatalogApiDeps = {
    ...base,
    node: 'catalog-1',
    lockDelays: new LockDelays(),
    watches,
    logger,
    context: { roleInfo: () => ({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', version: 'test', startedAtUnixMs: 0n, listeners: {} }) },
    routers,
    forwardSlots: new ForwardSlots(options.maxForwardsInFlight),
  };
  const server = new RoleGrpcServer({ logger, tracer: trace.getTracer('test'), services: catalogApiServices(deps), shutdownGraceMs: 200 });
  const address = await server.listen('127.0.0.1', 0);
  server.setServing(true);
  const insecure = credentials.createInsecure();
  const clients = {
    catalog: new CatalogServiceClient(address, insecure),
    health: new HealthServiceClient(address, insecure),
    kv: new KVServiceClient(address, insecure),
    session: new SessionServiceClient(address, insecure),
  };
  const call = <Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs = 5_000) => callUnary(method, request, { timeoutMs, idempotent: false });
  return {
    address,
    consensus,
    deps,
    watches,
    ...clients,
    call,
    async failure(method, request, timeoutMs) {
      try {
        await call(method, request, timeoutMs);
      } catch (err) {
        return err as ServiceError;
      }
      throw new Error('the call succeeded; a failure was expected');
    },
    async close() {
      watches.closeAll();
      for (const client of Object.values(clients)) client.close();
      await server.shutdown();
      routers.close();
    },
  };
}
