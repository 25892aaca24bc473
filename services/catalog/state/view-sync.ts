/**
 * Keeps a CatalogView in step with the consensus store: a linearizable read of every catalog key,
 * then a watch from the revision after it. A watch that breaks (a server restarts, a compacted
 * revision) is replaced by a fresh full read and a new watch, on the next server, after a short
 * backoff (services/lib/prefix-watch.ts); the view keeps answering stale reads from what it has
 * meanwhile.
 */
import { Tracer } from '@opentelemetry/api';

import { KeyValue } from '../../gen/consulate/consensus/v1/kv';
import { Event, Event_EventType } from '../../gen/consulate/consensus/v1/watch';
import { ConsensusClient } from '../../lib/consensus-client';
import { Logger } from '../../lib/log';
import { PrefixWatch } from '../../lib/prefix-watch';
import { prefixEnd } from './keys';
import { Change, CatalogView, Row } from './view';

/** Every catalog key starts with "/" (keys.ts). */
const ALL_START = Buffer.from('/');
const ALL_END = prefixEnd('/');

export class ViewSync {
  private readonly watch: PrefixWatch;

  constructor(
    readonly view: CatalogView,
    consensus: ConsensusClient,
    addresses: readonly string[],
    tracer: Tracer,
    logger: Logger,
  ) {
    this.watch = new PrefixWatch({
      consensus,
      addresses,
      tracer,
      logger,
      key: ALL_START,
      rangeEnd: ALL_END,
      texts: {
        loaded: (revision, keys) => ({ fields: { revision, keys }, message: `catalog view loaded at revision ${revision} (${keys} keys)` }),
        cannotLoad: (message) => `cannot load the catalog view from consensus: ${message}`,
        watchEnded: (address, reason) => `catalog watch on ${address} ended (${reason}); reloading the view`,
      },
      onSnapshot: (kvs, revision) => view.load(kvs.map(toRow), revision),
      onEvents: (events, revision) => this.applyEvents(events, revision),
    });
  }

  /** When the view last heard from the store (a load or a watch message), for X-Consul-LastContact. */
  get lastContactMs(): number {
    return this.watch.lastContactMs;
  }

  /** Loads the view and starts watching; resolves once loaded, or keeps trying in the background. */
  async start(): Promise<void> {
    await this.watch.start();
  }

  stop(): void {
    this.watch.stop();
  }

  private applyEvents(events: readonly Event[], revision: number): void {
    const changes: Change[] = [];
    for (const event of events) {
      if (event.kv === undefined) continue;
      if (event.type === Event_EventType.EVENT_TYPE_PUT) changes.push({ type: 'put', row: toRow(event.kv) });
      else if (event.type === Event_EventType.EVENT_TYPE_DELETE) changes.push({ type: 'delete', key: event.kv.key.toString('utf8'), revision: Number(event.kv.modRevision) || revision });
    }
    const upTo = Math.max(revision, ...changes.map((c) => (c.type === 'put' ? c.row.modRevision : c.revision)));
    if (upTo >= this.view.revision) this.view.apply(changes, upTo);
  }
}

function toRow(kv: KeyValue): Row {
  return { key: kv.key.toString('utf8'), value: new Uint8Array(kv.value), createRevision: Number(kv.createRevision), modRevision: Number(kv.modRevision), lease: kv.lease.toString() };
}
