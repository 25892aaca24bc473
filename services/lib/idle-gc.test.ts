import { IDLE_GC_DEFAULTS, IdleGcRuntime, IdleScavenger, processRuntime } from './idle-gc';

/** A runtime whose utilization and young generation the test sets, counting minor GCs. */
function fakeRuntime(utilization: number, youngBytes: number): IdleGcRuntime & { gcs: number; utilization: number; youngBytes: number } {
  return {
    gcs: 0,
    utilization,
    youngBytes,
    utilizationSinceLastCall() {
      return this.utilization;
    },
    youngGenerationBytes() {
      return this.youngBytes;
    },
    minorGc() {
      this.gcs++;
    },
  };
}

describe('IdleScavenger', () => {
  test('an idle interval with a young generation worth collecting: two minor GCs (the second promotes), reported', () => {
    const runtime = fakeRuntime(0.01, 4 << 20);
    const collections: number[] = [];
    const scavenger = new IdleScavenger(IDLE_GC_DEFAULTS, runtime, (ms) => collections.push(ms));
    expect(scavenger.check()).toBe(true);
    expect(runtime.gcs).toBe(2);
    expect(collections).toHaveLength(1);
    expect(collections[0]).toBeGreaterThanOrEqual(0);
  });

  test('a busy interval: no collection, whatever the young generation holds', () => {
    const runtime = fakeRuntime(IDLE_GC_DEFAULTS.idleUtilization, 64 << 20);
    expect(new IdleScavenger(IDLE_GC_DEFAULTS, runtime).check()).toBe(false);
    expect(runtime.gcs).toBe(0);
  });

  test('an idle interval with little in the young generation: no collection', () => {
    const runtime = fakeRuntime(0, IDLE_GC_DEFAULTS.minYoungBytes - 1);
    expect(new IdleScavenger(IDLE_GC_DEFAULTS, runtime).check()).toBe(false);
    expect(runtime.gcs).toBe(0);
  });

  test('started, it looks every interval until stopped', async () => {
    const runtime = fakeRuntime(0, 4 << 20);
    const scavenger = new IdleScavenger({ ...IDLE_GC_DEFAULTS, intervalMs: 5 }, runtime);
    scavenger.start();
    await new Promise((resolve) => setTimeout(resolve, 60));
    scavenger.stop();
    const after = runtime.gcs;
    expect(after).toBeGreaterThanOrEqual(2);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(runtime.gcs).toBe(after);
  });

  test("the process's runtime: V8's minor GC runs, and what it reads is in range", () => {
    const runtime = processRuntime();
    expect(() => runtime.minorGc()).not.toThrow();
    const utilization = runtime.utilizationSinceLastCall();
    expect(utilization).toBeGreaterThanOrEqual(0);
    expect(utilization).toBeLessThanOrEqual(1);
    expect(runtime.youngGenerationBytes()).toBeGreaterThan(0);
  });

  test("the process's minor GC promotes young objects: after it, the young generation no longer holds them", () => {
    const runtime = processRuntime();
    runtime.minorGc();
    runtime.minorGc();
    const before = runtime.youngGenerationBytes();
    // A few MB of live objects, all young.
    const live = Array.from({ length: 100_000 }, (_, i) => ({ i, text: `object ${i}` }));
    const grown = runtime.youngGenerationBytes();
    runtime.minorGc();
    runtime.minorGc();
    const promoted = runtime.youngGenerationBytes();
    expect(live).toHaveLength(100_000);
    expect(grown).toBeGreaterThan(before);
    expect(promoted).toBeLessThan(grown / 2);
  });
});
