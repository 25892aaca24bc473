/**
 * Keys and key ranges as etcd's API spells them, turned into the form the store indexes by.
 *
 * Keys are bytes. The store keys its maps and its ordered index by the key's latin1 string: one
 * UTF-16 code unit per byte (0x00-0xff), so JavaScript's string order, code unit by code unit with
 * a prefix first, is exactly Buffer.compare's byte order, and `<` on strings is cheaper than
 * Buffer.compare on every step of a binary search.
 *
 * A request names [key, range_end): an empty range_end is the one key; "\0" (a single zero byte)
 * is every key >= key (etcd's mkGteRange); anything else is the half-open interval, empty when
 * range_end <= key. A single key k is also the interval [k, k + "\0"), since k + "\0" is the
 * smallest key after k, so readers treat all three cases as one interval.
 */

export interface KeyRange {
  /** Inclusive. */
  readonly start: string;
  /** Exclusive; null when the range has no upper bound. */
  readonly end: string | null;
  /** The request named one key (an empty range_end). */
  readonly single: boolean;
}

/** A key's index form: its bytes as latin1. */
export function keyOf(bytes: Uint8Array): string {
  return Buffer.isBuffer(bytes) ? bytes.toString('latin1') : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** A key's bytes from its index form. */
export function bytesOf(key: string): Buffer {
  return Buffer.from(key, 'latin1');
}

export function keyRangeOf(key: Uint8Array, rangeEnd: Uint8Array): KeyRange {
  const start = keyOf(key);
  if (rangeEnd.length === 0) return { start, end: start + '\0', single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start, end: null, single: false };
  return { start, end: keyOf(rangeEnd), single: false };
}

export function inKeyRange(range: KeyRange, key: string): boolean {
  return key >= range.start && (range.end === null || key < range.end);
}

/** The range_end that makes [prefix, range_end) every key with this prefix (clientv3's GetPrefixRangeEnd). */
export function prefixRangeEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i] += 1;
      return end.subarray(0, i + 1);
    }
  }
  // Every byte is 0xff (or the prefix is empty): no key is past them all, so no upper bound.
  return Buffer.from([0]);
}
