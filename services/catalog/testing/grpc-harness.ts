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

export async function startCatalogGrpc(options: { consensus?: LeasedFakeConsensus; maxWatches?: number } = {}): Promise<CatalogGrpc> {
  const consensus = options.consensus ?? new LeasedFakeConsensus();
  const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' });
  const base = { datacenter: 'dc1', view: consensus.view, sync: { lastContactMs: Date.now() }, consensus: { kv: consensus.kv, lease: consensus.lease, probe: async () => [] } };
  const watches = new Watches(base, logger, { ...WATCH_DEFAULTS, maxWatches: options.maxWatches ?? WATCH_DEFAULTS.maxWatches });
  const deps: CatalogApiDeps = {
    ...base,
    node: 'catalog-1',
    lockDelays: new LockDelays(),
    watches,
    logger,
    context: { roleInfo: () => ({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', version: 'test', startedAtUnixMs: 0n, listeners: {} }) },
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
    },
  };
}
