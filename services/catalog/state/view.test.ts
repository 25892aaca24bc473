import { keys } from './keys';
import { CatalogView, WAKE_BATCH } from './view';

describe('CatalogView: blocking queries woken by a change', () => {
  test(`many are woken ${WAKE_BATCH} per turn of the event loop, the first on the next turn, every one in the end`, async () => {
    const view = new CatalogView();
    const key = keys.kv('web/config');
    view.apply([{ type: 'put', row: { key, value: Buffer.from('v1'), createRevision: 2, modRevision: 2, lease: '' } }], 2);
    const total = WAKE_BATCH * 3 + 5;
    let woken = 0;
    const waits = Array.from({ length: total }, () => view.waitForChange(['kvs'], view.index('kvs'), 30_000).then(() => woken++));
    expect(view.waiting).toBe(total);

    view.apply([{ type: 'put', row: { key, value: Buffer.from('v2'), createRevision: 2, modRevision: 3, lease: '' } }], 3);
    // Not in this turn (the writer's own reply goes first), then a batch at a time: some turns
    // see only part of them woken, each batch whole.
    expect(woken).toBe(0);
    const seen: number[] = [];
    while (woken < total) {
      await new Promise((resolve) => setImmediate(resolve));
      seen.push(woken);
    }
    expect(seen.some((count) => count > 0 && count < total)).toBe(true);
    expect(seen.every((count) => count % WAKE_BATCH === 0 || count === total)).toBe(true);
    await Promise.all(waits);
    expect(woken).toBe(total);
    expect(view.waiting).toBe(0);
  });
});
