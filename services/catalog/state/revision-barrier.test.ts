import { RevisionBarrier } from './revision-barrier';

/** A probe whose answers the test releases by hand, counting how many were sent. */
function manualProbe() {
  const pending: ((revision: number) => void)[] = [];
  let sent = 0;
  return {
    probe: () => {
      sent++;
      return new Promise<number>((resolve) => pending.push(resolve));
    },
    answer: (revision: number) => pending.shift()!(revision),
    get sent() {
      return sent;
    },
  };
}

describe('RevisionBarrier', () => {
  test('reads that arrive while a probe is in flight share the next probe, never the one in flight (linearizability)', async () => {
    const manual = manualProbe();
    const barrier = new RevisionBarrier(manual.probe);
    const first = barrier.revision();
    const later = [barrier.revision(), barrier.revision(), barrier.revision()];
    expect(manual.sent).toBe(1);
    manual.answer(10);
    expect(await first).toBe(10);
    await Promise.resolve();
    expect(manual.sent).toBe(2);
    manual.answer(12);
    expect(await Promise.all(later)).toEqual([12, 12, 12]);
  });

  test('a failed probe fails only its own reads; the queued ones get a new probe', async () => {
    let calls = 0;
    const barrier = new RevisionBarrier(() => (++calls === 1 ? Promise.reject(new Error('no leader')) : Promise.resolve(7)));
    const first = barrier.revision();
    const second = barrier.revision();
    await expect(first).rejects.toThrow('no leader');
    expect(await second).toBe(7);
    expect(await barrier.revision()).toBe(7);
    expect(calls).toBe(3);
  });
});
