/**
 * The ordered index of keys (etcd's treeIndex): every key with a retained revision, deleted keys
 * included until compaction forgets them, in byte order.
 *
 * A map gives the O(1) lookup every put and compare needs; a chunked sorted array gives order
 * for ranges: sorted chunks of at most `MAX_CHUNK` items, found by binary search on each chunk's
 * first key, then by binary search inside it. Lookup by position is O(log n); inserting a new key
 * moves at most MAX_CHUNK items (and, on a split, the chunk list: n / MAX_CHUNK entries), never
 * the whole index. Simpler than a B-tree and, at the sizes a datacenter's store holds, as fast.
 *
 * Keys are latin1 strings (see key-range.ts), so `<` is byte order.
 */
import { invariant } from './errors';

export interface Keyed {
  readonly key: string;
}

const MAX_CHUNK = 512;

export class KeyIndex<T extends Keyed> {
  private readonly byKey = new Map<string, T>();
  /** Non-empty sorted chunks; every key in chunks[i] is below every key in chunks[i + 1]. */
  private chunks: T[][] = [];

  get size(): number {
    return this.byKey.size;
  }

  get(key: string): T | undefined {
    return this.byKey.get(key);
  }

  insert(item: T): void {
    invariant(!this.byKey.has(item.key), () => `key index already holds ${JSON.stringify(item.key)}`);
    this.byKey.set(item.key, item);
    if (this.chunks.length === 0) {
      this.chunks.push([item]);
      return;
    }
    const c = this.chunkFor(item.key);
    const chunk = this.chunks[c];
    chunk.splice(lowerBound(chunk, item.key), 0, item);
    if (chunk.length > MAX_CHUNK) this.chunks.splice(c + 1, 0, chunk.splice(MAX_CHUNK >> 1));
  }

  delete(key: string): boolean {
    if (!this.byKey.delete(key)) return false;
    const c = this.chunkFor(key);
    const chunk = this.chunks[c];
    const at = lowerBound(chunk, key);
    invariant(chunk[at]?.key === key, () => `key index map and order disagree on ${JSON.stringify(key)}`);
    chunk.splice(at, 1);
    if (chunk.length === 0) this.chunks.splice(c, 1);
    return true;
  }

  /** Replaces the whole index with `items`, which must be in strictly increasing key order. */
  reset(items: readonly T[]): void {
    this.byKey.clear();
    this.chunks = [];
    const half = MAX_CHUNK >> 1;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      invariant(i === 0 || items[i - 1].key < item.key, () => `key index reset with keys out of order at ${JSON.stringify(item.key)}`);
      this.byKey.set(item.key, item);
      if (i % half === 0) this.chunks.push([]);
      this.chunks[this.chunks.length - 1].push(item);
    }
  }

  /**
   * Calls `visit` for each item with start <= key < end (end null: no bound), in key order,
   * until it returns false. The index must not change during the walk.
   */
  forEachInRange(start: string, end: string | null, visit: (item: T) => boolean | void): void {
    if (this.chunks.length === 0 || (end !== null && end <= start)) return;
    let c = this.chunkFor(start);
    let i = lowerBound(this.chunks[c], start);
    for (; c < this.chunks.length; c++, i = 0) {
      const chunk = this.chunks[c];
      for (; i < chunk.length; i++) {
        const item = chunk[i];
        if (end !== null && item.key >= end) return;
        if (visit(item) === false) return;
      }
    }
  }

  /** Calls `visit` for every item in key order. */
  forEach(visit: (item: T) => void): void {
    for (const chunk of this.chunks) for (const item of chunk) visit(item);
  }

  /** The chunk a key is in or would go in: the last whose first key is <= key, else the first. */
  private chunkFor(key: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid][0].key <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** The first position in a sorted chunk whose key is >= key. */
function lowerBound<T extends Keyed>(chunk: readonly T[], key: string): number {
  let lo = 0;
  let hi = chunk.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (chunk[mid].key < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
