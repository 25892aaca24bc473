/**
 * Idle-time scavenging: promotes what the young generation holds while the process has nothing
 * to do, so that the burst of work that comes next does not pay for copying it.
 *
 * Why the catalog wants it: a blocking query lives for minutes. Parked, each one holds about
 * 130-140 objects, 8-9 KB (heap snapshots with 1,000 parked: the request and response, its chain
 * of awaits, its timer and abort listener), and they sit in V8's young generation until scavenges copy them
 * (twice, before promoting them). A quiet catalog allocates nothing, so those scavenges come with
 * the write that wakes the queries: answering 1,000 of them paid 24-57 ms of scavenging in the
 * middle of writing the answers. Chrome gives V8 idle time for such work; Node gives it none, so
 * this does: when the event loop was idle for a whole interval and the young generation holds
 * enough to be worth it, two minor GCs (the first moves survivors past the age mark, the second
 * promotes them).
 *
 * It needs V8's `gc` function: `--expose-gc` set at run time, and `gc` read from a new context,
 * as Jest's --logHeapUsage does.
 */
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface IdleGcOptions {
  /** How often to look, in ms. */
  readonly intervalMs: number;
  /** The event loop's utilization over the last interval below which the process is idle. */
  readonly idleUtilization: number;
  /** Young-generation bytes in use below which a collection is not worth it. */
  readonly minYoungBytes: number;
}

export const IDLE_GC_DEFAULTS: IdleGcOptions = { intervalMs: 100, idleUtilization: 0.05, minYoungBytes: 1 << 20 };

/** What the scavenger reads and does: the process's own by default, a test's in tests. */
export interface IdleGcRuntime {
  /** The event loop's utilization (0-1) since the last call. */
  utilizationSinceLastCall(): number;
  youngGenerationBytes(): number;
  minorGc(): void;
}

export class IdleScavenger {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: IdleGcOptions = IDLE_GC_DEFAULTS,
    private readonly runtime: IdleGcRuntime = processRuntime(),
    /** Told of each collection and the time it took. */
    private readonly collected: (ms: number) => void = () => {},
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.runtime.utilizationSinceLastCall();
    this.timer = setInterval(() => this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look; returns whether it collected. */
  check(): boolean {
    if (this.runtime.utilizationSinceLastCall() >= this.options.idleUtilization) return false;
    if (this.runtime.youngGenerationBytes() < this.options.minYoungBytes) return false;
    const started = performance.now();
    this.runtime.minorGc();
    this.runtime.minorGc();
    this.collected(performance.now() - started);
    return true;
  }
}

let exposedGc: ((options: { type: 'minor' | 'major' }) => void) | undefined;

/** V8's `gc`, exposed once per process. */
function v8Gc(): (options: { type: 'minor' | 'major' }) => void {
  if (exposedGc === undefined) {
    setFlagsFromString('--expose-gc');
    exposedGc = runInNewContext('gc') as (options: { type: 'minor' | 'major' }) => void;
  }
  return exposedGc;
}

export function processRuntime(): IdleGcRuntime {
  const gc = v8Gc();
  let last = performance.eventLoopUtilization();
  return {
    utilizationSinceLastCall() {
      const now = performance.eventLoopUtilization();
      const since = performance.eventLoopUtilization(now, last);
      last = now;
      return since.utilization;
    },
    youngGenerationBytes: () => getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_used_size ?? 0,
    minorGc: () => gc({ type: 'minor' }),
  };
}
