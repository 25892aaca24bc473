/**
 * Network areas and the datacenter's routers, kept in the datacenter's consensus store under
 * `/router/`, and mirrored in memory from a read and a watch (a broken watch is replaced by a
 * fresh read and a new watch on the next server: services/lib/prefix-watch.ts), so every router
 * of the datacenter runs the same areas and any of them answers the Operator API for all.
 *
 *   /router/areas/<id>          an area, Consul's api.Area as JSON, plus Transit
 *   /router/area-peers/<dc>     the ID of the area with that peer: at most one area per peer
 *   /router/routers/<node>      a live router and its 8300 address, under a lease it keeps alive
 */
import { randomUUID } from 'node:crypto';

import { Tracer } from '@opentelemetry/api';

import { Compare_Result, Compare_Target, Consistency, KeyValue, RequestOp } from '../gen/consulate/consensus/v1/kv';
import { Event, Event_EventType } from '../gen/consulate/consensus/v1/watch';
import { ConsensusClient } from '../lib/consensus-client';
import { Logger } from '../lib/log';
import { PrefixWatch } from '../lib/prefix-watch';
import { joinAddressesProblem } from './join-address';

export interface Area {
  readonly id: string;
  readonly peerDatacenter: string;
  readonly retryJoin: readonly string[];
  readonly useTls: boolean;
  readonly transit: boolean;
}

export interface RegisteredRouter {
  readonly node: string;
  /** ip:port of its 8300 listener. */
  readonly address: string;
}

/** A refusal the caller made (a bad request), as opposed to the store being unreachable. */
export class AreaError extends Error {
  override readonly name = 'AreaError';
  constructor(
    message: string,
    /** INVALID_ARGUMENT, ALREADY_EXISTS, NOT_FOUND, FAILED_PRECONDITION (an area with this datacenter itself). */
    readonly kind: 'invalid' | 'exists' | 'not-found' | 'precondition',
  ) {
    super(message);
  }

  /** Consul's text for an area ID it has no record of (`RemoveArea`, and the HTTP answers built on it). */
  static unknown(id: string): AreaError {
    return new AreaError(`area ID "${id}" does not exist`, 'not-found');
  }
}

const PREFIX = '/router/';
const AREAS = '/router/areas/';
const AREA_PEERS = '/router/area-peers/';
const ROUTERS = '/router/routers/';
const WRITE_TIMEOUT_MS = 10_000;
const READ_TIMEOUT_MS = 10_000;
/** A router that stops renewing drops out of the registry after this. */
export const ROUTER_LEASE_TTL_S = 10;
const DATACENTER_NAME = /^[a-z0-9_-]{1,64}$/;

type Listener = () => void;

export class AreaStore {
  private areasById = new Map<string, Area>();
  private routersByNode = new Map<string, RegisteredRouter>();
  /** The revision of the last change to the areas (X-Consul-Index of the areas endpoints). */
  private areasIndex = 0;
  private revision = 0;
  private loaded = false;
  private readonly listeners = new Set<Listener>();
  private readonly waiters = new Set<() => void>();
  private readonly watch: PrefixWatch;
  private stopped = false;
  private leaseId = 0n;
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(
    private readonly datacenter: string,
    private readonly consensus: ConsensusClient,
    consensusAddrs: readonly string[],
    tracer: Tracer,
    private readonly logger: Logger,
  ) {
    this.watch = new PrefixWatch({
      consensus,
      addresses: consensusAddrs,
      tracer,
      logger,
      key: Buffer.from(PREFIX),
      rangeEnd: prefixEnd(PREFIX),
      texts: {
        loaded: (revision) => ({ fields: { revision, areas: this.areasById.size, routers: this.routersByNode.size }, message: `loaded ${this.areasById.size} network area(s) at revision ${revision}` }),
        cannotLoad: (message) => `cannot load the network areas from consensus: ${message}`,
        watchEnded: (address, reason) => `area watch on ${address} ended (${reason}); reloading the areas`,
      },
      onSnapshot: (kvs, revision) => this.applySnapshot(kvs, revision),
      onEvents: (events, revision) => this.applyEvents(events, revision),
    });
  }

  /** Loads the mirror (retrying in the background until it can) and starts watching. */
  async start(): Promise<void> {
    await this.watch.start();
  }

  stop(): void {
    this.stopped = true;
    this.watch.stop();
    if (this.keepAlive !== undefined) clearInterval(this.keepAlive);
    for (const wake of this.waiters) wake();
  }

  /** When the mirror last heard from the store (a read or a watch message), for X-Consul-LastContact. */
  get lastContactMs(): number {
    return this.watch.lastContactMs;
  }

  /** Told after every change the mirror applies. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  areas(): Area[] {
    return [...this.areasById.values()].sort((a, b) => (a.peerDatacenter < b.peerDatacenter ? -1 : 1));
  }

  area(id: string): Area | undefined {
    return this.areasById.get(id);
  }

  routers(): RegisteredRouter[] {
    return [...this.routersByNode.values()];
  }

  get index(): number {
    return Math.max(1, this.areasIndex);
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  /** Resolves when the areas' index passes `minIndex`, or after `waitMs`. */
  async waitForIndex(minIndex: number, waitMs: number): Promise<void> {
    if (this.index > minIndex || this.stopped) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      const waiters = this.waiters;
      function done() {
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      }
      const check = () => {
        if (this.index > minIndex || this.stopped) done();
      };
      this.waiters.add(check);
    });
  }

  /**
   * Makes the mirror at least as new as the store's latest committed write (default and
   * `consistent` reads): a linearizable read of the prefix, applied when it is newer than the
   * mirror. Waiting for the watch to reach the store's revision would not do: writes outside
   * `/router/` move the revision and never arrive as events here.
   */
  async catchUp(): Promise<void> {
    await this.watch.readNow(this.revision);
  }

  async create(input: { peerDatacenter: string; retryJoin: readonly string[]; useTls: boolean; transit: boolean }): Promise<{ id: string; index: number }> {
    const peer = input.peerDatacenter;
    if (peer === '') throw new AreaError('Must provide a peer datacenter', 'invalid');
    if (!DATACENTER_NAME.test(peer)) throw new AreaError(`Invalid peer datacenter "${peer}": use lower-case letters, digits, '-' or '_'`, 'invalid');
    if (peer === this.datacenter) throw new AreaError(`Cannot create an area with the local datacenter "${peer}"`, 'precondition');
    const badAddress = joinAddressesProblem(input.retryJoin);
    if (badAddress !== undefined) throw new AreaError(`Invalid RetryJoin address ${badAddress}`, 'invalid');
    const area: Area = { id: randomUUID(), peerDatacenter: peer, retryJoin: [...input.retryJoin], useTls: input.useTls, transit: input.transit };
    const response = await this.consensus.kv(
      'txn',
      {
        compare: [{ result: Compare_Result.RESULT_EQUAL, target: Compare_Target.TARGET_CREATE, key: Buffer.from(AREA_PEERS + peer), targetUnion: { $case: 'createRevision', value: 0n } }],
        success: [put(AREAS + area.id, encodeArea(area)), put(AREA_PEERS + peer, area.id)],
        failure: [],
      },
      { timeoutMs: WRITE_TIMEOUT_MS, idempotent: false },
    );
    if (!response.succeeded) throw new AreaError(`An area with peer datacenter "${peer}" already exists`, 'exists');
    return { id: area.id, index: Number(response.header?.revision ?? 0n) };
  }

  async update(id: string, change: { useTls?: boolean; transit?: boolean }): Promise<{ id: string; index: number }> {
    const { area, modRevision } = await this.read(id);
    const updated: Area = { ...area, useTls: change.useTls ?? area.useTls, transit: change.transit ?? area.transit };
    const response = await this.consensus.kv(
      'txn',
      { compare: [{ result: Compare_Result.RESULT_EQUAL, target: Compare_Target.TARGET_MOD, key: Buffer.from(AREAS + id), targetUnion: { $case: 'modRevision', value: BigInt(modRevision) } }], success: [put(AREAS + id, encodeArea(updated))], failure: [] },
      { timeoutMs: WRITE_TIMEOUT_MS, idempotent: false },
    );
    if (!response.succeeded) throw new AreaError(`area "${id}" changed while it was being updated; try again`, 'invalid');
    return { id, index: Number(response.header?.revision ?? 0n) };
  }

  async delete(id: string): Promise<{ index: number }> {
    const { area, modRevision } = await this.read(id);
    const response = await this.consensus.kv(
      'txn',
      {
        compare: [{ result: Compare_Result.RESULT_EQUAL, target: Compare_Target.TARGET_MOD, key: Buffer.from(AREAS + id), targetUnion: { $case: 'modRevision', value: BigInt(modRevision) } }],
        success: [del(AREAS + id), del(AREA_PEERS + area.peerDatacenter)],
        failure: [],
      },
      { timeoutMs: WRITE_TIMEOUT_MS, idempotent: false },
    );
    if (!response.succeeded) throw new AreaError(`area "${id}" changed while it was being deleted; try again`, 'invalid');
    return { index: Number(response.header?.revision ?? 0n) };
  }

  /**
   * Keeps this router in the registry under a lease, renewed every third of its TTL, and put back
   * (with a new lease) whenever the lease is gone: consensus was away, or the lease expired.
   */
  keepRegistered(router: RegisteredRouter): void {
    const renew = async () => {
      if (this.stopped) return;
      try {
        if (this.leaseId !== 0n) {
          const answer = await this.consensus.lease('leaseKeepAlive', { id: this.leaseId }, { timeoutMs: 3_000, idempotent: true });
          if (answer.ttl > 0n) return;
          this.leaseId = 0n;
        }
        const grant = await this.consensus.lease('leaseGrant', { ttl: BigInt(ROUTER_LEASE_TTL_S), id: 0n }, { timeoutMs: WRITE_TIMEOUT_MS, idempotent: false });
        await this.consensus.kv('put', { key: Buffer.from(ROUTERS + router.node), value: Buffer.from(JSON.stringify(router)), lease: grant.id, prevKv: false }, { timeoutMs: WRITE_TIMEOUT_MS, idempotent: true });
        this.leaseId = grant.id;
        this.logger.info({ router: router.node, address: router.address }, `registered this router (${router.address}) with the datacenter`);
      } catch (err) {
        this.leaseId = 0n;
        this.logger.warn({ err }, `cannot register this router with the datacenter yet: ${(err as Error).message}`);
      }
    };
    void renew();
    this.keepAlive = setInterval(() => void renew(), (ROUTER_LEASE_TTL_S * 1000) / 3);
  }

  private async read(id: string): Promise<{ area: Area; modRevision: number }> {
    const response = await this.consensus.kv('range', rangeOf(AREAS + id, { exact: true, consistency: Consistency.CONSISTENCY_LINEARIZABLE }), { timeoutMs: READ_TIMEOUT_MS, idempotent: true });
    const kv = response.kvs[0];
    const area = kv === undefined ? undefined : decodeArea(kv.value);
    if (kv === undefined || area === undefined) throw AreaError.unknown(id);
    return { area, modRevision: Number(kv.modRevision) };
  }

  /** Replaces the mirror with a read of the whole prefix at `revision`. */
  private applySnapshot(kvs: readonly KeyValue[], revision: number): void {
    const previous = this.areasById;
    this.areasById = new Map();
    this.routersByNode = new Map();
    let areasIndex = 0;
    for (const kv of kvs) {
      this.applyPut(kv);
      if (kv.key.toString().startsWith(AREAS)) areasIndex = Math.max(areasIndex, Number(kv.modRevision));
    }
    // An area deleted while the watch was down leaves no key to date it: the read's revision
    // is after the delete, so the index still moves and blocking queries wake.
    if ([...previous.keys()].some((id) => !this.areasById.has(id))) areasIndex = Math.max(areasIndex, revision);
    this.areasIndex = Math.max(this.areasIndex, areasIndex);
    this.revision = revision;
    this.loaded = true;
    this.changed();
  }

  /** Applies one watch message, whose header is at `revision`. */
  private applyEvents(events: readonly Event[], revision: number): void {
    for (const event of events) {
      if (event.kv === undefined) continue;
      // Already in the mirror through a newer read (catchUp). A delete may carry no revision of
      // its own: the response's stands for it.
      if ((Number(event.kv.modRevision) || revision) <= this.revision) continue;
      const key = event.kv.key.toString();
      if (event.type === Event_EventType.EVENT_TYPE_PUT) this.applyPut(event.kv);
      else if (key.startsWith(AREAS)) this.areasById.delete(key.slice(AREAS.length));
      else if (key.startsWith(ROUTERS)) this.routersByNode.delete(key.slice(ROUTERS.length));
      if (key.startsWith(AREAS)) this.areasIndex = Math.max(this.areasIndex, Number(event.kv.modRevision) || revision);
    }
    this.revision = Math.max(this.revision, revision);
    this.changed();
  }

  private applyPut(kv: KeyValue): void {
    const key = kv.key.toString();
    if (key.startsWith(AREAS)) {
      const area = decodeArea(kv.value);
      if (area !== undefined) this.areasById.set(area.id, area);
    } else if (key.startsWith(ROUTERS)) {
      const router = decodeRouter(kv.value);
      if (router !== undefined) this.routersByNode.set(router.node, router);
    }
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
    for (const wake of [...this.waiters]) wake();
  }
}

function encodeArea(area: Area): string {
  return JSON.stringify({ ID: area.id, PeerDatacenter: area.peerDatacenter, RetryJoin: area.retryJoin, UseTLS: area.useTls, Transit: area.transit });
}

function decodeArea(value: Buffer): Area | undefined {
  try {
    const v = JSON.parse(value.toString()) as { ID: string; PeerDatacenter: string; RetryJoin?: string[]; UseTLS?: boolean; Transit?: boolean };
    if (typeof v.ID !== 'string' || typeof v.PeerDatacenter !== 'string') return undefined;
    return { id: v.ID, peerDatacenter: v.PeerDatacenter, retryJoin: Array.isArray(v.RetryJoin) ? v.RetryJoin.map(String) : [], useTls: v.UseTLS === true, transit: v.Transit === true };
  } catch {
    return undefined;
  }
}

function decodeRouter(value: Buffer): RegisteredRouter | undefined {
  try {
    const v = JSON.parse(value.toString()) as RegisteredRouter;
    return typeof v.node === 'string' && typeof v.address === 'string' ? { node: v.node, address: v.address } : undefined;
  } catch {
    return undefined;
  }
}

function put(key: string, value: string): RequestOp {
  return { request: { $case: 'requestPut', value: { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false } } };
}

function del(key: string): RequestOp {
  return { request: { $case: 'requestDeleteRange', value: { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), prevKv: false } } };
}

function rangeOf(key: string, options: { exact?: boolean; countOnly?: boolean; consistency: Consistency }) {
  return { key: Buffer.from(key), rangeEnd: options.exact === true ? Buffer.alloc(0) : prefixEnd(key), limit: 0n, revision: 0n, consistency: options.consistency, keysOnly: false, countOnly: options.countOnly ?? false };
}

function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return end;
}
