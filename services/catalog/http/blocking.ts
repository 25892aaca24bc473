/**
 * Every HTTP read goes through state/consistent-read.ts (consistency, blocking, index); this
 * turns its outcome into Consul's headers (`setMeta`, reference/consul-compat.md §4.4-4.5) and
 * its refusal of one more blocking query into a 429.
 */
import { ReadDeps, consistentRead } from '../state/consistent-read';
import { TooManyWaitersError } from '../state/errors';
import { Table } from '../state/keys';
import { HttpError } from './http-errors';
import { QueryOptions } from './query-options';

export { CATCH_UP_TIMEOUT_MS, ReadDeps } from '../state/consistent-read';

export interface ReadResult<T> {
  readonly value: T;
  readonly index: number;
  readonly headers: Record<string, string>;
}

/**
 * The HTTP blocking queries (a read with `?index=`) being served now, from arrival to answer:
 * Consul's `consul.rpc.queries_blocking`, for the catalog's metrics.
 */
export class BlockingQueries {
  private count = 0;

  get waiting(): number {
    return this.count;
  }

  /**
   * Counts `read` while it runs. Not an async function, nor is blockingRead: a parked query holds
   * every suspended frame of its chain of awaits until it is answered (README: "Parked queries and
   * the garbage collector").
   */
  around<T>(read: () => Promise<T>): Promise<T> {
    this.count++;
    const done = () => {
      this.count--;
    };
    let reading: Promise<T>;
    try {
      reading = read();
    } catch (err) {
      done();
      return Promise.reject(err);
    }
    reading.then(done, done);
    return reading;
  }
}

/** A read's options, and its request's signal (asked for only if the read blocks): a blocking wait ends when the client has gone away. */
export type BlockingReadOptions = QueryOptions & { readonly signal?: () => AbortSignal };

/**
 * `options` with the request's signal. Object.assign rather than `{ ...options, signal }`: in
 * Node 20 a spread followed by more properties leaves V8's fast path (about 0.5 µs against 0.1),
 * on every read.
 */
export function withSignal(options: QueryOptions, signal: () => AbortSignal): BlockingReadOptions {
  return Object.assign({}, options, { signal });
}

export function blockingRead<T>(deps: ReadDeps & { readonly blockingQueries?: BlockingQueries }, options: BlockingReadOptions, tables: readonly Table[], compute: () => { value: T; index: number }): Promise<ReadResult<T>> {
  const run = () => consistentRead(deps, options, tables, compute, options.minIndex > 0 ? options.signal?.() : undefined);
  const reading = options.minIndex > 0 && deps.blockingQueries !== undefined ? deps.blockingQueries.around(run) : run();
  return reading.then(
    (read) => ({ value: read.value, index: read.index, headers: queryMetaHeaders(read, options) }),
    (err: unknown) => {
      throw err instanceof TooManyWaitersError ? new HttpError(429, err.message) : err;
    },
  );
}

/** Consul's `setMeta` headers for a read answered at `meta` (the index never below 1, as setIndex). */
export function queryMetaHeaders(meta: { index: number; knownLeader: boolean; lastContactMs: number }, options: Pick<QueryOptions, 'consistency'>): Record<string, string> {
  return {
    'X-Consul-Index': String(Math.max(1, meta.index)),
    'X-Consul-KnownLeader': String(meta.knownLeader),
    'X-Consul-LastContact': String(meta.lastContactMs),
    'X-Consul-Effective-Consistency': options.consistency === 'default' ? 'leader' : options.consistency,
  };
}
