/**
 * The catalog's server-streaming watches (WatchServiceHealth, WatchPrefix): a blocking query that
 * never stops. The first message is the answer at the request's consistency; after it, each time
 * a table the answer reads changes, the answer is computed again from the view and sent if it
 * differs from the last one sent, with its index. Only the newest answer is ever pending: while
 * the client is slow to read (the stream does not drain), no new answer is computed, so a watch
 * holds one message at most however fast the catalog changes.
 *
 * Bounded (STYLE.md "a limit on everything"): at most `maxWatches` per catalog, RESOURCE_EXHAUSTED
 * beyond; every one is ended with UNAVAILABLE when the catalog shuts down (`closeAll`), before the
 * gRPC server drains, so shutdown never waits them out.
 */
import { ServerWritableStream, status as GrpcStatus } from '@grpc/grpc-js';

import { QueryOptions } from '../../gen/consulate/catalog/v1/query';
import { Logger } from '../../lib/log';
import { ReadDeps, consistentRead } from '../state/consistent-read';
import { Table } from '../state/keys';
import { readOptionsOf } from './query';
import { StatusError, toServiceError } from './status';

export const WATCH_DEFAULTS = {
  /** Watch streams one catalog serves at once. */
  maxWatches: 1_024,
  /** How long a watch waits on the view before it looks again (it finds nothing new unless a wake was missed). */
  idleWaitMs: 5 * 60_000,
};

export interface WatchSpec<T, M> {
  readonly query: QueryOptions | undefined;
  /** The tables whose changes may change the answer. */
  readonly tables: readonly Table[];
  /** The answer from the view, with its own index. */
  readonly compute: () => { value: T; index: number };
  /** The message for an answer at `index`. */
  readonly message: (value: T, index: bigint) => M;
  /** The message's bytes, to tell whether an answer differs from the last one sent. */
  readonly encode: (message: M) => Uint8Array;
}

export class Watches {
  private readonly open = new Map<ServerWritableStream<unknown, unknown>, AbortController>();
  private closing = false;

  constructor(
    private readonly deps: ReadDeps & { readonly datacenter: string },
    private readonly logger: Logger,
    private readonly limits = WATCH_DEFAULTS,
  ) {}

  /** Watches open now. */
  get count(): number {
    return this.open.size;
  }

  /** Serves one watch stream until the client cancels, the catalog closes, or a read fails. */
  async serve<T, M>(call: ServerWritableStream<unknown, M>, spec: WatchSpec<T, M>): Promise<void> {
    const stream = call as ServerWritableStream<unknown, unknown>;
    if (this.closing) return fail(stream, new StatusError(GrpcStatus.UNAVAILABLE, 'this catalog is shutting down: watch again through another catalog'));
    if (this.open.size >= this.limits.maxWatches) {
      return fail(stream, new StatusError(GrpcStatus.RESOURCE_EXHAUSTED, `too many watches on this catalog (${this.limits.maxWatches}); close some, or watch through another catalog`));
    }
    const controller = new AbortController();
    const { signal } = controller;
    this.open.set(stream, controller);
    call.once('cancelled', () => controller.abort());
    try {
      const options = readOptionsOf(spec.query, call, this.deps.datacenter);
      // The first answer at once, at the asked consistency: a watch does not block on min_index.
      const first = await consistentRead(this.deps, { ...options, minIndex: 0 }, spec.tables, spec.compute, signal);
      let sentIndex = first.index;
      let sentBytes = spec.encode(spec.message(first.value, 0n));
      await send(call, spec.message(first.value, BigInt(sentIndex)), signal);
      let seen = this.deps.view.index(...spec.tables);
      while (!signal.aborted) {
        await this.deps.view.waitForChange(spec.tables, seen, this.limits.idleWaitMs, signal);
        if (signal.aborted) break;
        seen = this.deps.view.index(...spec.tables);
        const next = spec.compute();
        const bytes = spec.encode(spec.message(next.value, 0n));
        if (Buffer.compare(bytes, sentBytes) === 0) continue;
        // The answer changed, so its index must move on: when its own index cannot show it (a
        // key deleted while the view was reloading leaves no tombstone), the tables' index does
        // (it moved past the last answer's, or nothing would have changed).
        sentIndex = next.index > sentIndex ? next.index : seen;
        sentBytes = bytes;
        await send(call, spec.message(next.value, BigInt(sentIndex)), signal);
      }
    } catch (err) {
      if (!signal.aborted) {
        const failure = toServiceError(err);
        if (failure.code === GrpcStatus.INTERNAL) this.logger.error({ err, method: call.getPath() }, `${call.getPath()} failed: ${failure.details}`);
        fail(stream, failure);
      }
    } finally {
      this.open.delete(stream);
    }
  }

  /** Ends every open watch with UNAVAILABLE and refuses new ones (the catalog is stopping). */
  closeAll(): void {
    this.closing = true;
    for (const [call, controller] of this.open) {
      fail(call, new StatusError(GrpcStatus.UNAVAILABLE, 'this catalog is shutting down: watch again through another catalog'));
      controller.abort();
    }
    this.open.clear();
  }
}

/** Ends the stream with `err`'s status (grpc-js turns an 'error' on a server stream into its status). */
function fail(call: ServerWritableStream<unknown, unknown>, err: unknown): void {
  call.emit('error', err instanceof StatusError ? toServiceError(err) : err);
}

/** Writes one message; resolves once the stream can take another (or the watch ends). */
function send<M>(call: ServerWritableStream<unknown, M>, message: M, signal: AbortSignal): Promise<void> {
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
