/**
 * WatchService.WatchMany: many watches on one bidirectional stream, as etcd's clientv3 multiplexes
 * a client's watches on one stream per server. Each watch is a watcher of the node's hub, exactly
 * as a Watch stream's is, so it keeps Watch's guarantees (no event lost, repeated or reordered; a
 * revision never split) and limits (the hub's per-watcher backlog, its watcher count), and a stream
 * holds at most MAX_WATCHES_PER_STREAM of them.
 *
 * What the stream adds is delivery: the watches woken by one Ready are pulled together, and the
 * watches with the same events of a revision (the hub hands each the same event objects) share
 * one update naming all their ids. A thousand watchers of a key on one stream cost the client one
 * message a revision, not a thousand (a message on a stream costs a Node client tens of µs).
 *
 * Order per watch, within a frame and across frames: `created`, then its events by revision, then
 * `ended`. A watch that cannot go on ends alone with the status Watch would end its stream with;
 * the stream and the other watches go on. A stream that cannot take more (write returns false) is
 * pulled no further, and its requests are not read, until it drains; a watch that falls too far
 * behind meanwhile is ended by the hub's limit.
 */
import { ServerDuplexStream, status as GrpcStatus } from '@grpc/grpc-js';

import { Event, WatchEnded, WatchManyRequest, WatchManyResponse, WatchRequest, WatchUpdate } from '../gen/consulate/consensus/v1/watch';
import { ConsensusNode } from './consensus-node';
import { COMPACT_REVISION_TRAILER, RESUME_REVISION_TRAILER, StatusError, toServiceError } from './grpc-errors';
import { DEFAULT_KV_LIMITS } from './kv/limits';
import { validateWatch } from './kv/validation';
import { RevisionEvents, sameEvents } from './kv/watch-hub';

/** Watches open on one stream at most (the hub's own limit is for all streams together). */
export const MAX_WATCHES_PER_STREAM = 10_000;
/** A frame is cut before the update that would take it past about this many bytes (updates stay whole). */
export const WATCH_MANY_FRAME_BYTES = 1024 * 1024;

/** The ending of a watch its client cancelled. */
const CANCELLED_BY_CLIENT: WatchEnded = { code: GrpcStatus.OK, message: 'watch cancelled by the client', compactRevision: 0n, resumeRevision: 0n };

/** One stream's watches: client ids ↔ hub watcher ids, and what is due to be written. */
export class WatchManyStream {
  private readonly hubIdOf = new Map<bigint, number>();
  private readonly clientIdOf = new Map<number, bigint>();
  private readonly detachOf = new Map<number, () => void>();
  /** Updates that are not grouped (`created` with a watch's first events, `ended`), in the order they happened. */
  private queued: WatchUpdate[] = [];
  /** Hub watchers with events to pull. */
  private woken = new Set<number>();
  private writable = true;
  private flushQueued = false;
  private flushing = false;
  private closed = false;

  constructor(
    private readonly node: ConsensusNode,
    private readonly call: ServerDuplexStream<WatchManyRequest, WatchManyResponse>,
  ) {
    call.on('data', (request: WatchManyRequest) => this.onRequest(request));
    call.on('drain', () => {
      this.writable = true;
      this.call.resume();
      this.flush();
    });
    // A client that closes its side has nothing more to ask, but its watches go on, as etcd's do
    // (its recvLoop ends on EOF, the stream stays): they end when the client cancels the call.
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    call.on('error', () => this.close());
  }

  /** Open watches on this stream. */
  get size(): number {
    return this.hubIdOf.size;
  }

  private onRequest(request: WatchManyRequest): void {
    if (this.closed) return;
    const action = request.action;
    if (action?.$case === 'create') this.create(action.value.watchId, action.value.request);
    else if (action?.$case === 'cancel') this.cancel(action.value.watchId);
    else this.refuse(new StatusError(GrpcStatus.INVALID_ARGUMENT, 'a WatchMany request needs a create or a cancel'));
  }

  private create(clientId: bigint, request: WatchRequest | undefined): void {
    // `created` and `ended` together: this create was refused, as etcd's created + canceled. A
    // watch already open with that id is not touched.
    const end = (error: unknown) => this.queue({ watchIds: [clientId], header: undefined, created: true, events: [], ended: endedOf(error) });
    if (clientId === 0n) return end(new StatusError(GrpcStatus.INVALID_ARGUMENT, 'watch id 0 is reserved: pick a non-zero id'));
    if (this.hubIdOf.has(clientId)) return end(new StatusError(GrpcStatus.ALREADY_EXISTS, `watch id ${clientId} is already open on this stream: pick another or cancel it first`));
    if (request === undefined) return end(new StatusError(GrpcStatus.INVALID_ARGUMENT, `watch ${clientId} has no request: set its key`));
    if (this.hubIdOf.size >= MAX_WATCHES_PER_STREAM) return end(new StatusError(GrpcStatus.RESOURCE_EXHAUSTED, `this stream already has ${MAX_WATCHES_PER_STREAM} watches open: cancel some or open another stream`));
    try {
      validateWatch(request, DEFAULT_KV_LIMITS);
    } catch (err) {
      return end(err);
    }
    const hub = this.node.kv.watches;
    const created = hub.watch(request);
    if (!created.ok) return end(created.error);
    const hubId = created.watchId;
    this.hubIdOf.set(clientId, hubId);
    this.clientIdOf.set(hubId, clientId);
    this.detachOf.set(hubId, this.node.attachWatchStream(hubId, { woken: () => this.wake(hubId), cancelled: (error) => this.ended(hubId, endedOf(error)) }));
    const { term, id } = this.node.headerInfo();
    this.queue({ watchIds: [clientId], header: { revision: this.node.kv.revision, raftTerm: BigInt(term), member: id }, created: true, events: [], ended: undefined });
    // Its first events (a start revision in the past) follow `created` at once: the hub no longer
    // holds them, so they must reach the client before anything that could end the watch.
    for (const group of created.groups) this.queue({ watchIds: [clientId], header: { revision: group.revision, raftTerm: BigInt(term), member: id }, created: false, events: [...group.events], ended: undefined });
    if (!created.caughtUp) this.wake(hubId);
  }

  private cancel(clientId: bigint): void {
    const hubId = this.hubIdOf.get(clientId);
    if (hubId === undefined) return; // ended already (or never opened): etcd ignores it too
    this.node.kv.watches.cancel(hubId);
    this.ended(hubId, CANCELLED_BY_CLIENT);
  }

  /** A watch is over: forget it, and tell its client why. */
  private ended(hubId: number, ended: WatchEnded): void {
    const clientId = this.forget(hubId);
    if (clientId !== undefined) this.queue({ watchIds: [clientId], header: undefined, created: false, events: [], ended });
  }

  private forget(hubId: number): bigint | undefined {
    const clientId = this.clientIdOf.get(hubId);
    if (clientId === undefined) return undefined;
    this.detachOf.get(hubId)!();
    this.detachOf.delete(hubId);
    this.clientIdOf.delete(hubId);
    this.hubIdOf.delete(clientId);
    this.woken.delete(hubId);
    return clientId;
  }

  private queue(update: WatchUpdate): void {
    this.queued.push(update);
    if (!this.flushing) this.scheduleFlush(); // one queued while flushing goes out with it
  }

  private wake(hubId: number): void {
    this.woken.add(hubId);
    this.scheduleFlush();
  }

  /** After the current job: every watcher one Ready wakes is woken in one synchronous pass. */
  private scheduleFlush(): void {
    if (this.flushQueued || this.closed) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed || !this.writable) return;
    this.flushing = true;
    const { term, id } = this.node.headerInfo();
    // What happened before this pass (`created`, first events, `ended`) leads, in order; a watch
    // ended there is forgotten, so none of its events follow, and a created one's follow it.
    const frame = new FrameBuilder(term, id, (updates) => this.write(updates));
    for (const update of this.queued) frame.lead(update);
    this.queued = [];
    const hub = this.node.kv.watches;
    const woken = this.woken;
    this.woken = new Set();
    for (const hubId of woken) {
      const clientId = this.clientIdOf.get(hubId);
      if (clientId === undefined) continue;
      if (!this.writable) {
        this.woken.add(hubId); // pulled once the stream drains
        continue;
      }
      const pulled = hub.pull(hubId);
      if (pulled.kind === 'cancelled') {
        this.ended(hubId, endedOf(pulled.error)); // queued: it goes after this pass's events
        continue;
      }
      frame.addEvents(clientId, pulled.groups);
      if (!pulled.caughtUp) this.woken.add(hubId);
    }
    for (const update of this.queued) frame.trail(update);
    this.queued = [];
    frame.flush();
    this.flushing = false;
    if (this.woken.size > 0 && this.writable) this.scheduleFlush();
  }

  private write(updates: WatchUpdate[]): void {
    if (this.closed) return;
    if (this.call.write({ updates })) return;
    // Full: pull nothing more, and read no more requests (each could queue an answer), until it drains.
    this.writable = false;
    this.call.pause();
  }

  /** A request the stream cannot serve at all: end the stream with its status. */
  private refuse(error: StatusError): void {
    this.close();
    this.call.emit('error', toServiceError(error));
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    const hub = this.node.kv.watches;
    for (const hubId of [...this.clientIdOf.keys()]) {
      this.forget(hubId);
      hub.cancel(hubId);
    }
  }
}

/**
 * The frames of one flush: updates that lead, then events grouped by revision and by event list (the
 * same objects in the same order), so the watches that saw the same events of a revision share one
 * update, then updates that trail. Updates with events go out in revision order, so each watch's
 * events stay in order. A frame is written once the next update would take it past
 * WATCH_MANY_FRAME_BYTES (gRPC refuses a message over 4 MiB, and would end the whole stream): each
 * watch's updates are added in its order, so cutting between two keeps it.
 */
class FrameBuilder {
  private leading: WatchUpdate[] = [];
  private trailing: WatchUpdate[] = [];
  /** Per revision, per first event of the list: the updates with events, and the lists they carry. */
  private byRevision = new Map<bigint, Map<Event, { events: readonly Event[]; update: WatchUpdate }[]>>();
  private bytes = 0;

  constructor(
    private readonly term: number,
    private readonly member: string,
    private readonly write: (updates: WatchUpdate[]) => void,
  ) {}

  lead(update: WatchUpdate): void {
    this.addPlain('leading', update);
  }

  trail(update: WatchUpdate): void {
    this.addPlain('trailing', update);
  }

  private addPlain(where: 'leading' | 'trailing', update: WatchUpdate): void {
    const bytes = updateBytes(update);
    this.makeRoom(bytes); // may flush, which starts both lists anew
    this[where].push(update);
    this.bytes += bytes;
  }

  addEvents(clientId: bigint, groups: readonly RevisionEvents[]): void {
    for (const group of groups) {
      const found = this.byRevision.get(group.revision)?.get(group.events[0])?.find((entry) => sameEvents(entry.events, group.events));
      if (found !== undefined) {
        found.update.watchIds.push(clientId);
        this.bytes += 10;
        continue;
      }
      this.makeRoom(eventBytes(group.events));
      let byFirst = this.byRevision.get(group.revision);
      if (byFirst === undefined) this.byRevision.set(group.revision, (byFirst = new Map()));
      let lists = byFirst.get(group.events[0]);
      if (lists === undefined) byFirst.set(group.events[0], (lists = []));
      const header = { revision: group.revision, raftTerm: BigInt(this.term), member: this.member };
      lists.push({ events: group.events, update: { watchIds: [clientId], header, created: false, events: [...group.events], ended: undefined } });
      this.bytes += eventBytes(group.events);
    }
  }

  /** Writes what the frame holds, if anything; the builder starts again empty. */
  flush(): void {
    const revisions = [...this.byRevision.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const withEvents = revisions.flatMap((revision) => [...this.byRevision.get(revision)!.values()].flatMap((lists) => lists.map((entry) => entry.update)));
    const updates = [...this.leading, ...withEvents, ...this.trailing];
    this.leading = [];
    this.trailing = [];
    this.byRevision = new Map();
    this.bytes = 0;
    if (updates.length > 0) this.write(updates);
  }

  private makeRoom(bytes: number): void {
    if (this.bytes > 0 && this.bytes + bytes > WATCH_MANY_FRAME_BYTES) this.flush();
  }
}

/** About what an update's events take on the wire: their keys and values, and a little for the rest. */
function eventBytes(events: readonly Event[]): number {
  let bytes = 0;
  for (const event of events) bytes += 32 + (event.kv?.key.length ?? 0) + (event.kv?.value.length ?? 0) + (event.prevKv === undefined ? 0 : event.prevKv.key.length + event.prevKv.value.length);
  return bytes;
}

function updateBytes(update: WatchUpdate): number {
  return 64 + 10 * update.watchIds.length + eventBytes(update.events) + (update.ended?.message.length ?? 0);
}

/** The status Watch would end its stream with, as a WatchEnded (its trailers as fields). */
function endedOf(error: unknown): WatchEnded {
  const status = toServiceError(error);
  const trailer = (name: string) => {
    const value = status.metadata?.get(name)[0];
    return value === undefined ? 0n : BigInt(String(value));
  };
  return { code: status.code ?? GrpcStatus.UNKNOWN, message: status.details ?? status.message, compactRevision: trailer(COMPACT_REVISION_TRAILER), resumeRevision: trailer(RESUME_REVISION_TRAILER) };
}
