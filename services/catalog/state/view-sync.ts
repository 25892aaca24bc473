/**
 * Keeps a CatalogView in step with the consensus store: a linearizable read of every catalog key,
 * then a watch from the revision after it. A watch that breaks (a server restarts, a compacted
 * revision) is replaced by a fresh full read and a new watch, on the next server, after a short
 * backoff; the view keeps answering stale reads from what it has meanwhile.
 */
import { ClientReadableStream } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { Consistency } from '../../gen/consulate/consensus/v1/kv';
import { Event_EventType, WatchResponse, WatchServiceClient } from '../../gen/consulate/consensus/v1/watch';
import { ConsensusClient } from '../../lib/consensus-client';
import { createRoleClient } from '../../lib/grpc-client';
import { Logger } from '../../lib/log';
import { prefixEnd } from './keys';
import { Change, CatalogView, Row } from './view';

/** Every catalog key starts with "/" (keys.ts). */
const ALL_START = Buffer.from('/');
const ALL_END = prefixEnd('/');
const LOAD_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;

export class ViewSync {
  private readonly watchClients = new Map<string, WatchServiceClient>();
  private stream: ClientReadableStream<WatchResponse> | undefined;
  private stopped = false;
  private failures = 0;
  private next = 0;
  /** When the view last heard from the store (a load or a watch message), for X-Consul-LastContact. */
  lastContactMs = 0;

  constructor(
    readonly view: CatalogView,
    private readonly consensus: ConsensusClient,
    private readonly addresses: readonly string[],
    private readonly tracer: Tracer,
    private readonly logger: Logger,
  ) {}

  /** Loads the view and starts watching; resolves once loaded, or keeps trying in the background. */
  async start(): Promise<void> {
    await this.resync();
  }

  stop(): void {
    this.stopped = true;
    this.stream?.cancel();
    for (const client of this.watchClients.values()) client.close();
  }

  private async resync(): Promise<void> {
    while (!this.stopped) {
      try {
        const response = await this.consensus.kv('range', { key: ALL_START, rangeEnd: ALL_END, limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LINEARIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: LOAD_TIMEOUT_MS, idempotent: true });
        const revision = Number(response.header?.revision ?? 0n);
        this.view.load(response.kvs.map(toRow), revision);
        this.lastContactMs = Date.now();
        this.logger.info({ revision, keys: response.kvs.length }, `catalog view loaded at revision ${revision} (${response.kvs.length} keys)`);
        this.watchFrom(revision + 1);
        this.failures = 0;
        return;
      } catch (err) {
        this.failures++;
        this.logger.warn({ err, attempt: this.failures }, `cannot load the catalog view from consensus: ${(err as Error).message}`);
        await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.failures, 5)));
      }
    }
  }

  private watchFrom(startRevision: number): void {
    const address = this.addresses[this.next++ % this.addresses.length];
    let client = this.watchClients.get(address);
    if (client === undefined) {
      client = createRoleClient(WatchServiceClient, address, { tracer: this.tracer });
      this.watchClients.set(address, client);
    }
    const stream = client.watch({ key: ALL_START, rangeEnd: ALL_END, startRevision: BigInt(startRevision), prevKv: false });
    this.stream = stream;
    stream.on('data', (response: WatchResponse) => {
      this.lastContactMs = Date.now();
      const revision = Number(response.header?.revision ?? 0n);
      const changes: Change[] = [];
      for (const event of response.events) {
        if (event.kv === undefined) continue;
        if (event.type === Event_EventType.EVENT_TYPE_PUT) changes.push({ type: 'put', row: toRow(event.kv) });
        else if (event.type === Event_EventType.EVENT_TYPE_DELETE) changes.push({ type: 'delete', key: event.kv.key.toString('utf8'), revision: Number(event.kv.modRevision) || revision });
      }
      const upTo = Math.max(revision, ...changes.map((c) => (c.type === 'put' ? c.row.modRevision : c.revision)));
      if (upTo >= this.view.revision) this.view.apply(changes, upTo);
    });
    const restart = (reason: string) => {
      if (this.stopped || this.stream !== stream) return;
      this.stream = undefined;
      this.logger.warn({ address, reason }, `catalog watch on ${address} ended (${reason}); reloading the view`);
      setTimeout(() => void this.resync(), RETRY_MIN_MS);
    };
    stream.on('error', (err: Error) => restart(err.message));
    stream.on('end', () => restart('stream ended'));
  }
}

function toRow(kv: { key: Buffer; value: Buffer; createRevision: bigint; modRevision: bigint; lease: bigint }): Row {
  return { key: kv.key.toString('utf8'), value: new Uint8Array(kv.value), createRevision: Number(kv.createRevision), modRevision: Number(kv.modRevision), lease: kv.lease.toString() };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
