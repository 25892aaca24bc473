import { ManualClock } from './clock';

describe('ManualClock', () => {
  test('fires timers in due order, intervals repeatedly, only when advanced', () => {
    const clock = new ManualClock(1_000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.nowMs()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.nowMs()}`), 10);
    const tick = clock.setInterval(() => fired.push(`tick@${clock.nowMs()}`), 15);
    expect(fired).toEqual([]);
    clock.advance(30);
    expect(fired).toEqual(['a@1010', 'tick@1015', 'b@1020', 'tick@1030']);
    clock.clear(tick);
    clock.advance(100);
    expect(fired).toHaveLength(4);
    expect(clock.nowMs()).toBe(1_130);
    expect(clock.pending()).toBe(0);
  });

  test('a sleep resolves when time passes its end', async () => {
    const clock = new ManualClock();
    let woke = false;
    const sleeping = clock.sleep(50).then(() => (woke = true));
    clock.advance(49);
    await Promise.resolve();
    expect(woke).toBe(false);
    clock.advance(1);
    await sleeping;
    expect(woke).toBe(true);
  });

  test('time never goes backwards', () => {
    expect(() => new ManualClock().advance(-1)).toThrow('time cannot go backwards');
  });
});
