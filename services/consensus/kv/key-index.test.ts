/**
 * The ordered key index against the simplest correct model, a sorted array, through enough
 * inserts and deletes to split and empty many chunks.
 */
import fc from 'fast-check';
import { KeyIndex } from './key-index';

describe('KeyIndex', () => {
  test('matches a sorted array under random inserts, deletes, ranges and resets', () => {
    const action = fc.oneof(
      { arbitrary: fc.tuple(fc.constant('insert' as const), fc.integer({ min: 0, max: 3000 })), weight: 6 },
      { arbitrary: fc.tuple(fc.constant('delete' as const), fc.integer({ min: 0, max: 3000 })), weight: 3 },
      { arbitrary: fc.tuple(fc.constant('range' as const), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 3100 })), weight: 1 },
    );
    fc.assert(
      fc.property(fc.array(action, { maxLength: 3000 }), fc.boolean(), (actions, resetHalfway) => {
        const index = new KeyIndex<{ key: string }>();
        let model: string[] = [];
        const name = (n: number) => String(n).padStart(4, '0');
        actions.forEach((a, step) => {
          if (resetHalfway && step === actions.length >> 1) {
            index.reset(model.map((key) => ({ key })));
          }
          if (a[0] === 'insert') {
            const key = name(a[1]);
            if (!model.includes(key)) {
              index.insert({ key });
              model = [...model, key].sort();
            }
          } else if (a[0] === 'delete') {
            const key = name(a[1]);
            expect(index.delete(key)).toBe(model.includes(key));
            model = model.filter((k) => k !== key);
          } else {
            const start = name(a[1]);
            const end = a[2] > 3000 ? null : name(a[2]);
            const got: string[] = [];
            index.forEachInRange(start, end, (item) => {
              got.push(item.key);
            });
            expect(got).toEqual(model.filter((k) => k >= start && (end === null || k < end)));
          }
        });
        const all: string[] = [];
        index.forEach((item) => all.push(item.key));
        expect(all).toEqual(model);
        expect(index.size).toBe(model.length);
      }),
      { numRuns: 30 },
    );
  });

  test('a walk stops when the visitor returns false', () => {
    const index = new KeyIndex<{ key: string }>();
    for (const key of ['a', 'b', 'c', 'd']) index.insert({ key });
    const seen: string[] = [];
    index.forEachInRange('a', null, (item) => {
      seen.push(item.key);
      return item.key !== 'b';
    });
    expect(seen).toEqual(['a', 'b']);
  });
});
