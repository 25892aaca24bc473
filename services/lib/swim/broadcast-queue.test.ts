import fc from 'fast-check';

import { BroadcastQueue } from './broadcast-queue';
import { Broadcast } from './messages';

/**
 * The queue's rules written the plain way (the implementation before the tiers): sort everything
 * for every packet, filter everything on every push. The real queue must do exactly what it does.
 */
class ModelQueue {
  private items: { broadcast: Broadcast; key: string | undefined; id: number; size: number; transmits: number }[] = [];
  private nextId = 0;

  constructor(private readonly maxQueued: number) {}

  push(broadcast: Broadcast, size: number): void {
    const key = broadcast.type === 'user-event' ? undefined : `${broadcast.type === 'leave-intent' ? 'intent' : 'member'}:${broadcast.node}`;
    if (key !== undefined) this.items = this.items.filter((item) => item.key !== key);
    const id = this.nextId++;
    this.items.push({ broadcast, key, id, size, transmits: 0 });
    if (this.items.length > this.maxQueued) {
      this.items.sort((a, b) => a.transmits - b.transmits || b.id - a.id);
      this.items.length = this.maxQueued;
    }
  }

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
    }
    if (out.length > 0) this.items = this.items.filter((item) => item.transmits < transmitLimit);
    return out;
  }

  get length(): number {
    return this.items.length;
  }
}

type Op =
  | { readonly op: 'push'; readonly kind: Broadcast['type']; readonly node: number; readonly size: number }
  | { readonly op: 'take'; readonly budget: number; readonly overhead: number; readonly limit: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('push' as const),
    kind: fc.constantFrom<Broadcast['type']>('alive', 'suspect', 'dead', 'leave-intent', 'user-event'),
    node: fc.integer({ min: 0, max: 6 }),
    size: fc.integer({ min: 10, max: 400 }),
  }),
  fc.record({ op: fc.constant('take' as const), budget: fc.integer({ min: 0, max: 1400 }), overhead: fc.integer({ min: 0, max: 3 }), limit: fc.integer({ min: 1, max: 6 }) }),
);

function broadcastOf(kind: Broadcast['type'], node: number): Broadcast {
  const name = `node-${node}`;
  switch (kind) {
    case 'alive':
      return { type: 'alive', node: name, address: '10.0.0.1:8301', incarnation: 1, tags: {} };
    case 'suspect':
    case 'dead':
      return { type: kind, node: name, incarnation: 1, from: 'node-0' };
    case 'leave-intent':
      return { type: 'leave-intent', node: name, ltime: 1 };
    case 'user-event':
      return { type: 'user-event', ltime: 1, name: 'deploy', payload: new Uint8Array(0) };
  }
}

describe('BroadcastQueue', () => {
  test('property: it takes, replaces and sheds exactly as the plain sort-everything rules say', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(opArb, { maxLength: 200 }), (maxQueued, ops) => {
        const queue = new BroadcastQueue(maxQueued);
        const model = new ModelQueue(maxQueued);
        for (const op of ops) {
          if (op.op === 'push') {
            const broadcast = broadcastOf(op.kind, op.node);
            queue.push(broadcast, op.size);
            model.push(broadcast, op.size);
          } else {
            expect(queue.take(op.budget, op.overhead, op.limit)).toEqual(model.take(op.budget, op.overhead, op.limit));
          }
          expect(queue.length).toBe(model.length);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('a full queue of 4,096 fills a 1,400-byte packet without walking all of it, least-sent and newest first', () => {
    const queue = new BroadcastQueue(4096);
    for (let i = 0; i < 5000; i++) queue.push(broadcastOf('alive', i), 165);
    // memberlist's shedding: the bound keeps the newest of the least-sent.
    expect(queue.length).toBe(4096);
    const first = queue.take(1400, 3, 8);
    expect(first.map((b) => (b as { node: string }).node)).toEqual(['node-4999', 'node-4998', 'node-4997', 'node-4996', 'node-4995', 'node-4994', 'node-4993', 'node-4992']);
    const second = queue.take(1400, 3, 8);
    expect((second[0] as { node: string }).node).toBe('node-4991');
  });
});
