/**
 * FakeConsensus (fake-consensus.ts) with leases, for the KV, session and txn tests: grant, keep
 * alive and revoke as ConsensusClient.lease answers them; keys put on a lease are deleted when it
 * is revoked or `expire()`d (one revision per key here; one in all in the real store, which
 * changes nothing the catalog relies on). A put on an unknown lease fails as etcd's does.
 *
 *   const consensus = new LeasedFakeConsensus();
 *   const deps = kvTestDeps(consensus);          // view, sync, consensus, lock-delays
 *   const served = await serveKv(deps);          // the three endpoint families over real HTTP
 *   consensus.expire(lease);                     // the session's TTL ran out
 */
import { trace } from '@opentelemetry/api';

import { TxnRequest } from '../../gen/consulate/consensus/v1/kv';
import { LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest } from '../../gen/consulate/consensus/v1/lease';
import { ConsensusClient } from '../../lib/consensus-client';
import { createLogger } from '../../lib/log';
import { CatalogHttpServer, HttpRouter } from '../http/http-server';
import { registerKvEndpoints } from '../http/kv-endpoint';
import { registerSessionEndpoints } from '../http/session-endpoint';
import { registerTxnEndpoints } from '../http/txn-endpoint';
import { keys } from '../state/keys';
import { LockDelays } from '../state/lock-delay';
import { StoredCheck, StoredNode } from '../state/model';
import { CatalogView } from '../state/view';
import { FakeConsensus, FakeConsensusOptions } from './fake-consensus';

export class LeasedFakeConsensus {
  readonly fake: FakeConsensus;
  /** Live leases, by id, with the keys on each. */
  readonly leases = new Map<string, { ttl: bigint; keys: Set<string> }>();
  /** Keepalives asked for, by lease id. */
  readonly keepAlives: string[] = [];
  private nextLease = 7000n;

  constructor(options: FakeConsensusOptions = {}) {
    this.fake = new FakeConsensus(options);
  }

  get view(): CatalogView {
    return this.fake.view;
  }

  readonly kv = (async (method: string, request: unknown, options: unknown) => {
    if (method !== 'txn') return (this.fake.kv as (m: string, r: unknown, o: unknown) => Promise<unknown>)(method, request, options);
    const txn = request as TxnRequest;
    for (const op of txn.success) {
      const lease = op.request?.$case === 'requestPut' ? op.request.value.lease : 0n;
      if (lease !== 0n && !this.leases.has(lease.toString())) throw Object.assign(new Error('5 NOT_FOUND: etcdserver: requested lease not found'), { code: 5 });
    }
    const response = await this.fake.kv('txn', txn, { timeoutMs: 1_000, idempotent: false });
    if (response.succeeded) {
      for (const op of txn.success) {
        if (op.request?.$case !== 'requestPut') continue;
        const key = op.request.value.key.toString('utf8');
        for (const lease of this.leases.values()) lease.keys.delete(key);
        const lease = op.request.value.lease;
        if (lease !== 0n) this.leases.get(lease.toString())!.keys.add(key);
      }
    }
    return response;
  }) as unknown as ConsensusClient['kv'];

  readonly lease = (async (method: string, request: unknown) => {
    const header = { revision: BigInt(this.fake.revision), raftTerm: 1n, member: 'fake' };
    switch (method) {
      case 'leaseGrant': {
        const id = (this.nextLease++).toString();
        this.leases.set(id, { ttl: (request as LeaseGrantRequest).ttl, keys: new Set() });
        return { header, id: BigInt(id), ttl: (request as LeaseGrantRequest).ttl };
      }
      case 'leaseKeepAlive': {
        const id = (request as LeaseKeepAliveRequest).id.toString();
        this.keepAlives.push(id);
        return { header, id: BigInt(id), ttl: this.leases.get(id)?.ttl ?? 0n };
      }
      case 'leaseRevoke': {
        const id = (request as LeaseRevokeRequest).id.toString();
        if (!this.leases.has(id)) throw Object.assign(new Error('5 NOT_FOUND: etcdserver: requested lease not found'), { code: 5 });
        this.expire(id);
        return { header };
      }
      default:
        throw new Error(`LeasedFakeConsensus does not implement lease('${method}')`);
    }
  }) as unknown as ConsensusClient['lease'];

  /** The lease runs out: its keys are deleted, as the consensus leader's revoke deletes them. */
  expire(id: string): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    this.leases.delete(id);
    for (const key of lease.keys) this.fake.delete(key);
  }
}

/** A node as the catalog stores it, with a serfHealth check (and `extraChecks`) at `status`. */
export function registerNode(consensus: LeasedFakeConsensus, node: string, status: StoredCheck['Status'] = 'passing', extraChecks: string[] = []): void {
  const stored: StoredNode = { ID: '', Node: node, Address: '10.0.0.1', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} };
  consensus.fake.put(keys.node(node), JSON.stringify(stored));
  for (const checkId of ['serfHealth', ...extraChecks]) {
    const check: StoredCheck = { Node: node, CheckID: checkId, Name: checkId, Status: status, Notes: '', Output: '', ServiceID: '', ServiceName: '', ServiceTags: [], Type: '' };
    consensus.fake.put(keys.check(node, checkId), JSON.stringify(check));
  }
}

/** Everything the KV, session and txn endpoints need, over `consensus`. */
export function kvTestDeps(consensus: LeasedFakeConsensus, lockDelays = new LockDelays()) {
  return { datacenter: 'dc1', node: 'catalog-1', view: consensus.view, sync: { lastContactMs: Date.now() }, consensus, lockDelays };
}

export interface KvServed {
  readonly base: string;
  /** One request; `body` is sent as is (a string or bytes), or JSON-encoded (anything else). */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; text: string; headers: Headers; json<T = unknown>(): T }>;
  close(): Promise<void>;
}

/** The KV, session and txn endpoints behind the real HTTP server on an ephemeral port. */
export async function serveKv(deps: ReturnType<typeof kvTestDeps>): Promise<KvServed> {
  const router = new HttpRouter();
  registerKvEndpoints(router, deps);
  registerSessionEndpoints(router, deps);
  registerTxnEndpoints(router, deps);
  const server = new CatalogHttpServer({ router, logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' }), tracer: trace.getTracer('test') });
  const base = `http://${await server.listen('127.0.0.1', 0)}`;
  return {
    base,
    async call(method, path, body, headers = {}) {
      const payload = body === undefined ? undefined : typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
      const response = await fetch(`${base}${path}`, { method, body: payload, headers });
      const text = await response.text();
      return { status: response.status, text, headers: response.headers, json: <T>() => JSON.parse(text) as T };
    },
    close: () => server.close(),
  };
}
