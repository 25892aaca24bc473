/**
 * Piggybacked dissemination with a retransmit limit (memberlist `queue.go`,
 * TransmitLimitedQueue): each broadcast rides on outgoing packets until it has been sent
 * retransmitMult × ceil(log10(N + 1)) times; the least-sent go first, newest first among equals;
 * a newer broadcast about a member replaces older ones about it; the queue is bounded and sheds the
 * most-sent (oldest among equals) first.
 *
 * memberlist keeps the order in a btree. Here the broadcasts sit in tiers by how often they have
 * been sent, each tier in the order they were queued: filling a packet walks the tiers from the
 * newest end and moves what it takes one tier up, and stops once no broadcast could fit. So neither
 * a push nor a packet sorts or copies the queue, which a large join fills to its 4,096 bound.
 */
import { invariant } from '../invariant';
import { Broadcast } from './messages';

interface Queued {
  readonly broadcast: Broadcast;
  /** Member broadcasts about one node invalidate each other; user events never do. */
  readonly key: string | undefined;
  /** Queue order: a later push has a larger id. */
  readonly id: number;
  readonly size: number;
}

export class BroadcastQueue {
  /** tiers[t]: the broadcasts sent t times, by id ascending (oldest first). */
  private tiers: Queued[][] = [[]];
  private readonly byKey = new Map<string, Queued>();
  private count = 0;
  private nextId = 0;
  /** No queued broadcast is smaller (a lower bound: it never grows), so a packet with less room left is full. */
  private smallest = Infinity;

  constructor(private readonly maxQueued: number) {}

  push(broadcast: Broadcast, size: number): void {
    const key = broadcast.type === 'user-event' ? undefined : `${broadcast.type === 'leave-intent' ? 'intent' : 'member'}:${broadcast.node}`;
    if (key !== undefined) {
      const replaced = this.byKey.get(key);
      if (replaced !== undefined) this.remove(replaced);
    }
    const item: Queued = { broadcast, key, id: this.nextId++, size };
    this.tiers[0].push(item);
    this.smallest = this.count === 0 ? size : Math.min(this.smallest, size);
    this.count++;
    if (key !== undefined) this.byKey.set(key, item);
    while (this.count > this.maxQueued) this.shedOne();
  }

  /**
   * Takes broadcasts that fit in `budgetBytes` (each costing its size plus `overheadBytes`),
   * least-sent and newest first, and counts a transmission of each; those sent `transmitLimit`
   * times are done.
   */
  take(budgetBytes: number, overheadBytes: number, transmitLimit: number): Broadcast[] {
    if (this.count === 0) return [];
    const out: Broadcast[] = [];
    // What this packet takes moves one tier up once the walk is over, so nothing goes twice.
    const sent: { item: Queued; tier: number }[] = [];
    let used = 0;
    const room = () => budgetBytes - used >= this.smallest + overheadBytes;
    for (let t = 0; t < this.tiers.length && room(); t++) {
      const tier = this.tiers[t];
      for (let i = tier.length - 1; i >= 0 && room(); i--) {
        const item = tier[i];
        const cost = item.size + overheadBytes;
        if (used + cost > budgetBytes) continue;
        used += cost;
        out.push(item.broadcast);
        tier.splice(i, 1);
        sent.push({ item, tier: t + 1 });
      }
    }
    if (out.length === 0) return out;
    for (const { item, tier } of sent) {
      if (tier === this.tiers.length) this.tiers.push([]);
      const into = this.tiers[tier];
      into.splice(insertionPoint(into, item.id), 0, item);
    }
    // Sent often enough (the limit falls as members leave, so whole tiers may go at once).
    while (this.tiers.length > Math.max(1, transmitLimit)) for (const item of this.tiers.pop()!) this.forget(item);
    if (transmitLimit <= 0) for (const item of this.tiers[0].splice(0)) this.forget(item);
    return out;
  }

  get length(): number {
    return this.count;
  }

  /** Broadcasts not sent even once yet. */
  get neverSent(): number {
    return this.tiers[0].length;
  }

  /** The most-sent tier's oldest broadcast goes. */
  private shedOne(): void {
    let t = this.tiers.length - 1;
    while (t > 0 && this.tiers[t].length === 0) t--;
    const item = this.tiers[t].shift();
    invariant(item !== undefined, 'a queue over its bound holds a broadcast to shed');
    this.forget(item);
  }

  private remove(item: Queued): void {
    for (const tier of this.tiers) {
      const at = indexById(tier, item.id);
      if (at >= 0) {
        tier.splice(at, 1);
        this.forget(item);
        return;
      }
    }
    invariant(false, () => `broadcast ${item.id} is in no tier`);
  }

  /** Drops the bookkeeping of a broadcast that has left its tier. */
  private forget(item: Queued): void {
    this.count--;
    if (item.key !== undefined && this.byKey.get(item.key) === item) this.byKey.delete(item.key);
  }
}

/** Binary search of a tier (ids ascending); -1 when absent. */
function indexById(tier: readonly Queued[], id: number): number {
  const at = insertionPoint(tier, id);
  return at < tier.length && tier[at].id === id ? at : -1;
}

/** Where `id` goes in a tier (ids ascending): the first position with a larger or equal id. */
function insertionPoint(tier: readonly Queued[], id: number): number {
  let low = 0;
  let high = tier.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (tier[mid].id < id) low = mid + 1;
    else high = mid;
  }
  return low;
}
