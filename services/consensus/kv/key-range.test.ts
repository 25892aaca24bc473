/**
 * Keys and ranges as etcd's API spells them (etcd.io/docs/v3.5/learning/api, "Key ranges").
 */
import fc from 'fast-check';
import { keyOf, keyRangeOf, prefixRangeEnd } from './key-range';

describe('key ranges (etcd: [key, range_end), "\\0" for no upper bound)', () => {
  test('latin1 index keys order exactly as Buffer.compare orders the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        const byBytes = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
        const ka = keyOf(a);
        const kb = keyOf(b);
        expect(ka < kb ? -1 : ka > kb ? 1 : 0).toBe(byBytes);
      }),
    );
  });

  test('an empty range_end is the one key; "\\0" is unbounded; otherwise half-open', () => {
    expect(keyRangeOf(Buffer.from('a'), Buffer.alloc(0))).toEqual({ start: 'a', end: 'a\0', single: true });
    expect(keyRangeOf(Buffer.from('a'), Buffer.from([0]))).toEqual({ start: 'a', end: null, single: false });
    expect(keyRangeOf(Buffer.from('a'), Buffer.from('c'))).toEqual({ start: 'a', end: 'c', single: false });
  });

  test('prefixRangeEnd is clientv3\'s GetPrefixRangeEnd', () => {
    expect(prefixRangeEnd(Buffer.from('abc'))).toEqual(Buffer.from('abd'));
    expect(prefixRangeEnd(Buffer.from([0x61, 0xff]))).toEqual(Buffer.from([0x62]));
    expect(prefixRangeEnd(Buffer.from([0xff, 0xff]))).toEqual(Buffer.from([0]));
  });
});
