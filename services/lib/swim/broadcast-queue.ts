/**
 * Piggybacked dissemination with a retransmit limit (memberlist `queue.go`,
 * TransmitLimitedQueue): each broadcast rides on outgoing packets until it has been sent
 * retransmitMult × ceil(log10(N + 1)) times; the least-sent go first; a newer broadcast about a
 * member replaces older ones about it; the queue is bounded and sheds the most-sent first.
 */
import { Broadcast } from './messages';

interface Queued {
  readonly broadcast: Broadcast;
  /** Member broadcasts about one node invalidate each other; user events never do. */
  readonly key: string | undefined;
  readonly id: number;
  readonly size: number;
  transmits: number;
}

export class BroadcastQueue {
  private items: Queued[] = [];
  private nextId = 0;
  private readonly sentOnce = new Map<number, () => void>();

  constructor(private readonly maxQueued: number) {}

  /** `onFirstSend` runs when the broadcast first leaves in a packet (memberlist's leave uses it). */
  push(broadcast: Broadcast, size: number, onFirstSend?: () => void): void {
    const key = broadcast.type === 'user-event' ? undefined : `${broadcast.type === 'leave-intent' ? 'intent' : 'member'}:${broadcast.node}`;
    if (key !== undefined) this.items = this.items.filter((item) => item.key !== key);
    const id = this.nextId++;
    this.items.push({ broadcast, key, id, size, transmits: 0 });
    if (onFirstSend !== undefined) this.sentOnce.set(id, onFirstSend);
    if (this.items.length > this.maxQueued) {
      // Shed the broadcasts that have already gone out the most; newest kept on ties.
      this.items.sort((a, b) => a.transmits - b.transmits || b.id - a.id);
      this.items.length = this.maxQueued;
    }
  }

  /**
   * Takes broadcasts that fit in `budgetBytes` (each costing its size plus `overheadBytes`),
   * least-sent and newest first, and counts a transmission of each.
   */
  take(budgetBytes: number, overheadBytes: number, transmitLimit: number): Broadcast[] {
    if (this.items.length === 0) return [];
    this.items.sort((a, b) => a.transmits - b.transmits || b.id - a.id);
    const out: Broadcast[] = [];
    let used = 0;
    for (const item of this.items) {
      const cost = item.size + overheadBytes;
      if (used + cost > budgetBytes) continue;
      used += cost;
      item.transmits++;
      out.push(item.broadcast);
      const notify = this.sentOnce.get(item.id);
      if (notify !== undefined) {
        this.sentOnce.delete(item.id);
        notify();
      }
    }
    if (out.length > 0) this.items = this.items.filter((item) => item.transmits < transmitLimit);
    return out;
  }

  get length(): number {
    return this.items.length;
  }
}
