/**
 * The one way the shells around our protocol cores read time and schedule work. Cores themselves
 * never see a clock: they take ticks. Shells take a `Clock` so a test can drive them with
 * `ManualClock` instead of waiting on the wall.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Milliseconds on a clock that only goes forward (the wall can be stepped): for elapsed time. */
  monotonicMs(): number;
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  setInterval(fn: () => void, periodMs: number): TimerHandle;
  clear(handle: TimerHandle): void;
  sleep(delayMs: number): Promise<void>;
}

export interface TimerHandle {
  readonly id: number;
}

/** The wall clock, with timers that never keep the process alive on their own. */
export class SystemClock implements Clock {
  private nextId = 1;
  private readonly timers = new Map<number, NodeJS.Timeout>();

  nowMs(): number {
    return Date.now();
  }

  monotonicMs(): number {
    return performance.now();
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const id = this.nextId++;
    const timer = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, delayMs);
    timer.unref();
    this.timers.set(id, timer);
    return { id };
  }

  setInterval(fn: () => void, periodMs: number): TimerHandle {
    const id = this.nextId++;
    const timer = setInterval(fn, periodMs);
    timer.unref();
    this.timers.set(id, timer);
    return { id };
  }

  clear(handle: TimerHandle): void {
    const timer = this.timers.get(handle.id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.timers.delete(handle.id);
    }
  }

  sleep(delayMs: number): Promise<void> {
    // A sleep is awaited by someone, so unlike the timers above it keeps the process alive.
    return new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

export const systemClock: Clock = new SystemClock();

interface ManualTimer {
  id: number;
  dueMs: number;
  periodMs: number | null;
  fn: () => void;
}

/** A clock that moves only when a test calls `advance`; timers fire in due order, ties by creation. */
export class ManualClock implements Clock {
  private now: number;
  private nextId = 1;
  private readonly timers = new Map<number, ManualTimer>();

  constructor(startMs = 0) {
    this.now = startMs;
  }

  nowMs(): number {
    return this.now;
  }

  monotonicMs(): number {
    return this.now;
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    return this.add(fn, delayMs, null);
  }

  setInterval(fn: () => void, periodMs: number): TimerHandle {
    if (periodMs <= 0) throw new RangeError(`interval period must be > 0 ms, got ${periodMs}`);
    return this.add(fn, periodMs, periodMs);
  }

  clear(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, delayMs));
  }

  /** Moves time forward by `deltaMs`, firing every timer that falls due on the way. */
  advance(deltaMs: number): void {
    if (deltaMs < 0) throw new RangeError(`time cannot go backwards (advance ${deltaMs} ms)`);
    const targetMs = this.now + deltaMs;
    for (;;) {
      const next = this.nextDue(targetMs);
      if (next === undefined) break;
      this.now = next.dueMs;
      if (next.periodMs === null) this.timers.delete(next.id);
      else next.dueMs += next.periodMs;
      next.fn();
    }
    this.now = targetMs;
  }

  /** How many timers are waiting to fire. */
  pending(): number {
    return this.timers.size;
  }

  private add(fn: () => void, delayMs: number, periodMs: number | null): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, dueMs: this.now + Math.max(0, delayMs), periodMs, fn });
    return { id };
  }

  private nextDue(limitMs: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const timer of this.timers.values()) {
      if (timer.dueMs > limitMs) continue;
      if (best === undefined || timer.dueMs < best.dueMs || (timer.dueMs === best.dueMs && timer.id < best.id)) best = timer;
    }
    return best;
  }
}
