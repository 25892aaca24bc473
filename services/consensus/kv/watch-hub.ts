/**
 * The watchers of one server (etcd's watchableStore), pure: the shell feeds it what apply
 * produced and drains each watcher's events to its gRPC stream. Watchers are not replicated
 * state: not in snapshots, not in the hash.
 *
 * A watcher follows [key, range_end) from a start revision. It is either
 *  - synced: it has everything up to the store's revision, so each applied revision's matching
 *    events are queued for it as `publish` sees them; or
 *  - catching up: its events come from the store's history, read by `pull` a batch at a time
 *    from its cursor (`nextRevision`). When a read reaches the store's revision it is synced.
 * Applying and pulling never interleave (one thread), so nothing falls between history and live:
 * no event is lost or repeated, and a revision's events are never split across batches.
 *
 * Bounds (limits.ts): at most `maxWatchers`; a synced watcher holds at most
 * `maxPendingEventsPerWatcher` undelivered events. One that would exceed it is cancelled with
 * RESOURCE_EXHAUSTED and the revision to watch again from (etcd's clients re-watch from there on
 * their own), instead of buffering without bound. A watcher with nothing waiting always accepts
 * the next revision whole, so one large delete cannot starve every watcher of its range. A
 * catching-up watcher whose cursor falls at or below a compaction is cancelled as compacted.
 *
 * Waking is cheap for many watchers on one key: single-key watchers are in a map by key;
 * range watchers are grouped by their exact range, so each event tests each distinct range once
 * (a thousand watchers of one prefix cost one test), then touches only the watchers that match.
 */
import { WatchRequest, Event } from '../../gen/consulate/consensus/v1/watch';
import { KvError, kvErrors } from './errors';
import { KeyRange, inKeyRange, keyOf, keyRangeOf } from './key-range';
import { KvLimits } from './limits';

/** What the hub needs of the store (the store implements it through kv-state-machine.ts). */
export interface WatchHistory {
  readonly currentRevision: number;
  readonly compactRevision: number;
  /** Every event for a key in `range` at `fromRevision` or later, in revision and sub-revision order. */
  eventsSince(range: KeyRange, fromRevision: number): readonly Event[];
}

export type WatchLimits = Pick<KvLimits, 'maxWatchers' | 'maxPendingEventsPerWatcher' | 'maxEventsPerPull'>;

/** One revision's events for one watcher, in sub-revision order. Never split. */
export interface RevisionEvents {
  readonly revision: bigint;
  readonly events: readonly Event[];
}

/**
 * Whether two watchers got the same events: the hub hands every watcher of an event the same
 * object, so the same objects in the same order are the same events (and the same bytes encoded).
 */
export function sameEvents(a: readonly Event[], b: readonly Event[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export type WatchPull =
  /** `caughtUp`: nothing more to pull until a wake; otherwise pull again when the stream can take more. */
  | { readonly kind: 'events'; readonly groups: readonly RevisionEvents[]; readonly caughtUp: boolean }
  | { readonly kind: 'cancelled'; readonly error: KvError };

export type WatchCreated =
  | { readonly ok: true; readonly watchId: number; readonly groups: readonly RevisionEvents[]; readonly caughtUp: boolean }
  | { readonly ok: false; readonly error: KvError };

export interface WatchCancellation {
  readonly watchId: number;
  readonly error: KvError;
}

/** What the shell must do after an apply: pull the woken watchers; end the cancelled ones' streams. */
export interface WatchWake {
  readonly woken: readonly number[];
  readonly cancelled: readonly WatchCancellation[];
}

export const NO_WAKE: WatchWake = Object.freeze({ woken: Object.freeze([]), cancelled: Object.freeze([]) });

interface Watcher {
  readonly id: number;
  readonly range: KeyRange;
  readonly prevKv: boolean;
  /** The first revision not yet queued for the client; every matching event below it was. */
  nextRevision: number;
  synced: boolean;
  pending: RevisionEvents[];
  pendingEvents: number;
}

interface RangeGroup {
  readonly range: KeyRange;
  readonly watchers: Set<Watcher>;
}

export class WatchHub {
  private readonly watchers = new Map<number, Watcher>();
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly byRange = new Map<string, RangeGroup>();
  private lastId = 0;

  constructor(
    private readonly history: WatchHistory,
    private readonly limits: WatchLimits,
  ) {}

  get size(): number {
    return this.watchers.size;
  }

  /**
   * Registers a watcher and hands over its first batch: from `start_revision` when that is
   * retained (0: from the next revision; a future revision: from then). A start revision at or
   * below the compact revision fails OUT_OF_RANGE, naming the compact revision.
   */
  watch(request: WatchRequest): WatchCreated {
    if (this.watchers.size >= this.limits.maxWatchers) return { ok: false, error: kvErrors.tooManyWatchers(this.limits.maxWatchers) };
    const current = this.history.currentRevision;
    const compacted = this.history.compactRevision;
    const start = Number(request.startRevision);
    if (start > 0 && start <= compacted) {
      return { ok: false, error: kvErrors.compacted(compacted, `revisions up to ${compacted} were compacted (compact revision ${compacted}); watch from ${compacted + 1} or later`) };
    }
    const watcher: Watcher = {
      id: ++this.lastId,
      range: keyRangeOf(request.key, request.rangeEnd),
      prevKv: request.prevKv,
      nextRevision: start > 0 ? start : current + 1,
      synced: start <= 0 || start > current,
      pending: [],
      pendingEvents: 0,
    };
    this.add(watcher);
    const first = this.pull(watcher.id);
    if (first.kind === 'cancelled') return { ok: false, error: first.error };
    return { ok: true, watchId: watcher.id, groups: first.groups, caughtUp: first.caughtUp };
  }

  /** Ends a watcher (its client cancelled or went away). */
  cancel(watchId: number): boolean {
    const watcher = this.watchers.get(watchId);
    if (watcher === undefined) return false;
    this.remove(watcher);
    return true;
  }

  /** Takes a watcher's next events: whole revisions, up to `maxEvents` unless one revision alone is more. */
  pull(watchId: number, maxEvents: number = this.limits.maxEventsPerPull): WatchPull {
    const watcher = this.watchers.get(watchId);
    if (watcher === undefined) return { kind: 'cancelled', error: kvErrors.watchNotFound(watchId) };
    const groups: RevisionEvents[] = [];
    let count = 0;
    let taken = 0;
    for (; taken < watcher.pending.length; taken++) {
      const group = watcher.pending[taken];
      if (groups.length > 0 && count + group.events.length > maxEvents) break;
      groups.push(group);
      count += group.events.length;
    }
    if (taken > 0) {
      watcher.pending.splice(0, taken);
      watcher.pendingEvents -= count;
    }
    if (groups.length === 0 && !watcher.synced) {
      const compacted = this.history.compactRevision;
      if (watcher.nextRevision <= compacted) {
        this.remove(watcher);
        return { kind: 'cancelled', error: this.compactedWhileBehind(watcher, compacted) };
      }
      this.catchUp(watcher, groups, maxEvents);
    }
    return { kind: 'events', groups, caughtUp: watcher.synced && watcher.pending.length === 0 };
  }

  /** Queues one applied revision's events for the synced watchers they match. */
  publish(revision: number, events: readonly Event[]): WatchWake {
    if (this.watchers.size === 0 || events.length === 0) return NO_WAKE;
    const matched = new Map<Watcher, Event[]>();
    const withoutPrev = new Map<Event, Event>();
    const deliver = (watcher: Watcher, event: Event): void => {
      if (!watcher.synced || revision < watcher.nextRevision) return;
      let shaped = event;
      if (!watcher.prevKv && event.prevKv !== undefined) {
        shaped = withoutPrev.get(event) ?? { type: event.type, kv: event.kv, prevKv: undefined };
        withoutPrev.set(event, shaped);
      }
      const list = matched.get(watcher);
      if (list === undefined) matched.set(watcher, [shaped]);
      else list.push(shaped);
    };
    for (const event of events) {
      const key = keyOf(event.kv!.key);
      const exact = this.byKey.get(key);
      if (exact !== undefined) for (const watcher of exact) deliver(watcher, event);
      for (const group of this.byRange.values()) {
        if (inKeyRange(group.range, key)) for (const watcher of group.watchers) deliver(watcher, event);
      }
    }
    const woken: number[] = [];
    const cancelled: WatchCancellation[] = [];
    for (const [watcher, list] of matched) {
      if (watcher.pendingEvents > 0 && watcher.pendingEvents + list.length > this.limits.maxPendingEventsPerWatcher) {
        this.remove(watcher);
        const resume = Number(watcher.pending[0].revision);
        cancelled.push({ watchId: watcher.id, error: kvErrors.watcherTooSlow(watcher.id, this.limits.maxPendingEventsPerWatcher, resume) });
        continue;
      }
      watcher.pending.push({ revision: BigInt(revision), events: list });
      watcher.pendingEvents += list.length;
      watcher.nextRevision = revision + 1;
      woken.push(watcher.id);
    }
    return { woken, cancelled };
  }

  /** After a compaction: cancels the catching-up watchers whose history it removed. */
  compacted(compactRevision: number): WatchWake {
    const cancelled: WatchCancellation[] = [];
    for (const watcher of [...this.watchers.values()]) {
      if (!watcher.synced && watcher.nextRevision <= compactRevision) {
        this.remove(watcher);
        cancelled.push({ watchId: watcher.id, error: this.compactedWhileBehind(watcher, compactRevision) });
      }
    }
    return cancelled.length === 0 ? NO_WAKE : { woken: [], cancelled };
  }

  /**
   * After the store was replaced by a snapshot (`previousRevision`: the store's revision before):
   * every watcher catches up from history, since the snapshot may hold revisions it never saw
   * published. Those whose history the snapshot no longer has are cancelled.
   */
  restored(previousRevision: number): WatchWake {
    for (const watcher of this.watchers.values()) {
      if (watcher.synced) watcher.nextRevision = Math.max(watcher.nextRevision, previousRevision + 1);
      watcher.synced = false;
    }
    const { cancelled } = this.compacted(this.history.compactRevision);
    return { woken: [...this.watchers.keys()], cancelled };
  }

  private catchUp(watcher: Watcher, groups: RevisionEvents[], maxEvents: number): void {
    const events = this.history.eventsSince(watcher.range, watcher.nextRevision);
    let count = 0;
    let i = 0;
    while (i < events.length) {
      const revision = events[i].kv!.modRevision;
      let end = i + 1;
      while (end < events.length && events[end].kv!.modRevision === revision) end++;
      if (groups.length > 0 && count + (end - i) > maxEvents) break;
      const slice = events.slice(i, end);
      groups.push({ revision, events: watcher.prevKv ? slice : slice.map((e) => (e.prevKv === undefined ? e : { type: e.type, kv: e.kv, prevKv: undefined })) });
      count += end - i;
      watcher.nextRevision = Number(revision) + 1;
      i = end;
    }
    if (i === events.length) {
      watcher.synced = true;
      watcher.nextRevision = Math.max(watcher.nextRevision, this.history.currentRevision + 1);
    }
  }

  private compactedWhileBehind(watcher: Watcher, compactRevision: number): KvError {
    return kvErrors.compacted(
      compactRevision,
      `watch ${watcher.id} was catching up from revision ${watcher.nextRevision} when revisions up to ${compactRevision} were compacted (compact revision ${compactRevision}); read the range again and watch from ${compactRevision + 1}`,
    );
  }

  private add(watcher: Watcher): void {
    this.watchers.set(watcher.id, watcher);
    if (watcher.range.single) {
      let set = this.byKey.get(watcher.range.start);
      if (set === undefined) this.byKey.set(watcher.range.start, (set = new Set()));
      set.add(watcher);
    } else {
      const id = rangeId(watcher.range);
      let group = this.byRange.get(id);
      if (group === undefined) this.byRange.set(id, (group = { range: watcher.range, watchers: new Set() }));
      group.watchers.add(watcher);
    }
  }

  private remove(watcher: Watcher): void {
    this.watchers.delete(watcher.id);
    if (watcher.range.single) {
      const set = this.byKey.get(watcher.range.start)!;
      set.delete(watcher);
      if (set.size === 0) this.byKey.delete(watcher.range.start);
    } else {
      const id = rangeId(watcher.range);
      const group = this.byRange.get(id)!;
      group.watchers.delete(watcher);
      if (group.watchers.size === 0) this.byRange.delete(id);
    }
  }
}

/** Keys are latin1 (code units <= 0xff), so U+FFFF and U+FFFE cannot occur in them. */
function rangeId(range: KeyRange): string {
  return `${range.start}\uffff${range.end ?? '\ufffe'}`;
}
