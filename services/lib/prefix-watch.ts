/**
 * Keeps an in-memory mirror of one key prefix of the consensus store in step: a linearizable read
 * of the prefix, then a watch from the revision after it, on one of the consensus servers. A watch
 * that breaks (a server restarts, a compacted revision) is replaced by a fresh read and a new
 * watch, on the next server, after a short backoff; the mirror keeps answering from what it has
 * meanwhile. The catalog's view (catalog/state/view-sync.ts) and the router's areas
 * (federation-router/area-store.ts) are two such mirrors: the owner applies, this class reads.
 */
import { ClientReadableStream } from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { Consistency, KeyValue } from '../gen/consulate/consensus/v1/kv';
import { Event, WatchResponse, WatchServiceClient } from '../gen/consulate/consensus/v1/watch';
import { ConsensusClient } from './consensus-client';
import { RoleClients } from './grpc-client';
import { Logger } from './log';

const READ_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;

/** The log lines that name the mirror; each owner keeps its own words. */
export interface PrefixWatchTexts {
  /** The info line after a full read (at start and after a broken watch; not readNow), once applied. */
  loaded(revision: number, keys: number): { fields: Record<string, unknown>; message: string };
  /** A full read failed, with the error's message; it is tried again after a backoff. */
  cannotLoad(message: string): string;
  /** The watch on `address` broke, for `reason`; a fresh read and a new watch follow. */
  watchEnded(address: string, reason: string): string;
}

export interface PrefixWatchOptions {
  /** Only its KV calls: the reads go to the leader, following its hints. */
  readonly consensus: Pick<ConsensusClient, 'kv'>;
  /** The consensus servers; each new watch goes to the next one. */
  readonly addresses: readonly string[];
  readonly tracer: Tracer;
  readonly logger: Logger;
  /** The keys mirrored: from `key` up to, not including, `rangeEnd`. */
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  readonly texts: PrefixWatchTexts;
  /** Replaces the mirror with every key of the prefix as of `revision`. */
  onSnapshot(kvs: readonly KeyValue[], revision: number): void;
  /** Applies one watch message: its events, and the store's revision in its header. */
  onEvents(events: readonly Event[], headerRevision: number): void;
}

export class PrefixWatch {
  private readonly watchClients: RoleClients<WatchServiceClient>;
  private stream: ClientReadableStream<WatchResponse> | undefined;
  private stopped = false;
  private failures = 0;
  private next = 0;
  private heardAtMs = 0;

  constructor(private readonly options: PrefixWatchOptions) {
    this.watchClients = new RoleClients(WatchServiceClient, { tracer: options.tracer });
  }

  /** When the mirror last heard from the store (a read applied or a watch message), for X-Consul-LastContact. */
  get lastContactMs(): number {
    return this.heardAtMs;
  }

  /** Loads the mirror and starts watching; resolves once loaded, trying again meanwhile (or once stopped). */
  async start(): Promise<void> {
    await this.resync();
  }

  stop(): void {
    this.stopped = true;
    this.stream?.cancel();
    this.watchClients.close();
  }

  /**
   * A linearizable read of the prefix, applied through onSnapshot only when its revision is past
   * `loadedRevision`, what the owner has applied: an older read would take the mirror back. A
   * failed read rejects; the watch goes on either way.
   */
  async readNow(loadedRevision: number): Promise<void> {
    const { kvs, revision } = await this.read();
    if (revision > loadedRevision) this.apply(kvs, revision);
  }

  private async read(): Promise<{ kvs: KeyValue[]; revision: number }> {
    const { key, rangeEnd } = this.options;
    const response = await this.options.consensus.kv('range', { key, rangeEnd, limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LINEARIZABLE, keysOnly: false, countOnly: false }, { timeoutMs: READ_TIMEOUT_MS, idempotent: true });
    return { kvs: response.kvs, revision: Number(response.header?.revision ?? 0n) };
  }

  private apply(kvs: readonly KeyValue[], revision: number): void {
    this.options.onSnapshot(kvs, revision);
    this.heardAtMs = Date.now();
  }

  private async resync(): Promise<void> {
    const { logger, texts } = this.options;
    while (!this.stopped) {
      try {
        const { kvs, revision } = await this.read();
        this.apply(kvs, revision);
        const { fields, message } = texts.loaded(revision, kvs.length);
        logger.info(fields, message);
        this.watchFrom(revision + 1);
        this.failures = 0;
        return;
      } catch (err) {
        this.failures++;
        logger.warn({ err, attempt: this.failures }, texts.cannotLoad((err as Error).message));
        await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.failures, 5)));
      }
    }
  }

  private watchFrom(startRevision: number): void {
    const { addresses, logger, texts, key, rangeEnd } = this.options;
    const address = addresses[this.next++ % addresses.length];
    const stream = this.watchClients.get(address).watch({ key, rangeEnd, startRevision: BigInt(startRevision), prevKv: false });
    this.stream = stream;
    stream.on('data', (response: WatchResponse) => {
      this.heardAtMs = Date.now();
      this.options.onEvents(response.events, Number(response.header?.revision ?? 0n));
    });
    const restart = (reason: string) => {
      if (this.stopped || this.stream !== stream) return;
      this.stream = undefined;
      logger.warn({ address, reason }, texts.watchEnded(address, reason));
      setTimeout(() => void this.resync(), RETRY_MIN_MS);
    };
    stream.on('error', (err: Error) => restart(err.message));
    stream.on('end', () => restart('stream ended'));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
