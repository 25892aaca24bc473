/**
 * The auto-compaction policy (etcd's v3compactor, `--auto-compaction-mode` / `-retention`):
 * the flags as etcd reads them, when each mode compacts and to what, and, with fast-check, what
 * must hold whatever the timing: never at or above the current revision, never at or below the
 * last compaction, never history younger than the retention, never on a follower, never when off.
 */
import fc from 'fast-check';

import { AutoCompactionPolicy, AutoCompactionSettings, CompactionInput, parseAutoCompaction } from './auto-compaction';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;

function settingsOf(mode: string, retention: string): AutoCompactionSettings {
  const parsed = parseAutoCompaction(mode, retention);
  if (parsed.error !== undefined) throw new Error(parsed.error);
  return parsed.settings;
}

const at = (nowMs: number, currentRevision: number, compactRevision = 0, leader = true): CompactionInput => ({ nowMs, currentRevision, compactRevision, leader });

describe('the flags, as etcd reads them', () => {
  test('periodic takes a Go duration or whole hours; revision takes a count; 0 is off in both', () => {
    expect(settingsOf('periodic', '5m')).toEqual({ mode: 'periodic', retentionMs: 5 * MINUTE });
    expect(settingsOf('periodic', '1h30m')).toEqual({ mode: 'periodic', retentionMs: 90 * MINUTE });
    expect(settingsOf('periodic', '2')).toEqual({ mode: 'periodic', retentionMs: 120 * MINUTE }); // etcd: a bare number is hours
    expect(settingsOf('revision', '1000')).toEqual({ mode: 'revision', retentionRevisions: 1000 });
    for (const [mode, retention] of [['periodic', '0'], ['periodic', '0s'], ['periodic', '0h'], ['revision', '0']]) {
      expect(settingsOf(mode, retention)).toEqual({ mode: 'off' });
    }
  });

  test('a value the mode cannot read is refused, naming the flag and the fix', () => {
    expect(parseAutoCompaction('revision', '5m').error).toBe('-auto-compaction-retention=5m is not a count of revisions: in revision mode give a whole number, e.g. 10000 (0 turns auto-compaction off)');
    expect(parseAutoCompaction('periodic', 'soon').error).toBe('-auto-compaction-retention=soon is not a duration: in periodic mode give a Go duration (5m, 1h) or whole hours (1), 0 for off (time: invalid duration "soon")');
    expect(parseAutoCompaction('periodic', '-5m').error).toContain('is not a duration');
    expect(parseAutoCompaction('periodic', '500ms').error).toBe('-auto-compaction-retention=500ms is under a second: keep at least 1s of history, or 0 for off');
    expect(parseAutoCompaction('revision', '-1').error).toContain('is not a count of revisions');
    expect(parseAutoCompaction('daily', '1').error).toBe('-auto-compaction-mode=daily is not a mode: use periodic or revision');
  });

  test('off never compacts', () => {
    const policy = new AutoCompactionPolicy({ mode: 'off' });
    expect(policy.enabled).toBe(false);
    for (let t = 0; t < 100; t++) expect(policy.decide(at(t * MINUTE, 1 + t * 1000))).toBeUndefined();
  });
});

describe('periodic', () => {
  test('samples every retention / 10 (1 s to 6 min), as etcd', () => {
    expect(new AutoCompactionPolicy(settingsOf('periodic', '5m')).checkIntervalMs).toBe(30 * SECOND);
    expect(new AutoCompactionPolicy(settingsOf('periodic', '2s')).checkIntervalMs).toBe(SECOND);
    expect(new AutoCompactionPolicy(settingsOf('periodic', '24h')).checkIntervalMs).toBe(6 * MINUTE);
  });

  test('compacts to the revision that was current `retention` ago, nothing before retention has passed', () => {
    const policy = new AutoCompactionPolicy(settingsOf('periodic', '5m'));
    const revisionAt = (t: number) => 1 + t / SECOND; // a write a second
    const decisions: [number, number | undefined][] = [];
    let compacted = 0;
    for (let t = 0; t <= 7 * MINUTE; t += 30 * SECOND) {
      const target = policy.decide(at(t, revisionAt(t), compacted));
      if (target !== undefined) compacted = target;
      decisions.push([t / SECOND, target]);
    }
    expect(decisions.filter(([t]) => t < 300).every(([, target]) => target === undefined)).toBe(true);
    // From then on, each check compacts to the sample taken 5 minutes earlier.
    expect(decisions.filter(([t]) => t >= 300)).toEqual([
      [300, 1],
      [330, 31],
      [360, 61],
      [390, 91],
      [420, 121],
    ]);
  });

  test('a follower samples but never compacts; once leader it compacts at once to what was current `retention` ago', () => {
    const policy = new AutoCompactionPolicy(settingsOf('periodic', '1m'));
    for (let t = 0; t <= 2 * MINUTE; t += 6 * SECOND) expect(policy.decide(at(t, 100 + t / SECOND, 0, false))).toBeUndefined();
    expect(policy.decide(at(2 * MINUTE + 6 * SECOND, 226, 0, true))).toBe(166);
  });

  test('after a quiet spell, everything below the current revision goes, once', () => {
    const policy = new AutoCompactionPolicy(settingsOf('periodic', '1m'));
    let compacted = 0;
    const targets: number[] = [];
    for (let t = 0; t <= 5 * MINUTE; t += 6 * SECOND) {
      const target = policy.decide(at(t, t < 30 * SECOND ? 1 + t / SECOND : 31, compacted));
      if (target !== undefined) targets.push((compacted = target));
    }
    expect(compacted).toBe(30);
    expect(targets.at(-1)).toBe(30);
    expect(new Set(targets).size).toBe(targets.length);
  });

  test('a store that never moved past revision 1 is never compacted', () => {
    const policy = new AutoCompactionPolicy(settingsOf('periodic', '1m'));
    for (let t = 0; t <= 5 * MINUTE; t += 6 * SECOND) expect(policy.decide(at(t, 1))).toBeUndefined();
  });
});

describe('revision', () => {
  test('compacts to current - retention once that is a tenth of the window past the last compaction', () => {
    const policy = new AutoCompactionPolicy(settingsOf('revision', '100'));
    expect(policy.checkIntervalMs).toBe(SECOND);
    expect(policy.decide(at(0, 100))).toBeUndefined();
    expect(policy.decide(at(1, 109))).toBeUndefined();
    expect(policy.decide(at(2, 110))).toBe(10);
    expect(policy.decide(at(3, 119, 10))).toBeUndefined();
    expect(policy.decide(at(4, 500, 10))).toBe(400);
    expect(policy.decide(at(5, 500, 400, false))).toBeUndefined();
  });

  test('a retention under 10 compacts at every revision past it', () => {
    const policy = new AutoCompactionPolicy(settingsOf('revision', '3'));
    expect(policy.decide(at(0, 4))).toBe(1);
    expect(policy.decide(at(1, 5, 1))).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// Invariants over random timings: checks at irregular times, bursts of writes, leadership coming
// and going, compactions lost or applied, and compactions made by hand (KV.Compact).

type Step = { readonly dtMs: number; readonly writes: number; readonly leader: boolean; readonly applied: boolean; readonly manual: number };

const step: fc.Arbitrary<Step> = fc.record({
  dtMs: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 120_000 })),
  writes: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 2_000 })),
  leader: fc.boolean(),
  applied: fc.boolean(),
  // 0: none; otherwise how far back from the current revision someone compacts by hand.
  manual: fc.oneof({ arbitrary: fc.constant(0), weight: 9 }, { arbitrary: fc.integer({ min: 1, max: 500 }), weight: 1 }),
});

const settings: fc.Arbitrary<AutoCompactionSettings> = fc.oneof(
  fc.constant<AutoCompactionSettings>({ mode: 'off' }),
  fc.integer({ min: 1, max: 600 }).map((s): AutoCompactionSettings => ({ mode: 'periodic', retentionMs: s * SECOND })),
  fc.integer({ min: 1, max: 5_000 }).map((n): AutoCompactionSettings => ({ mode: 'revision', retentionRevisions: n })),
);

/** Runs `steps` against a store model; calls `check` with every decision and what it knew. */
function run(config: AutoCompactionSettings, steps: readonly Step[], check: (target: number, input: CompactionInput, revisionAt: (t: number) => number) => void): void {
  const policy = new AutoCompactionPolicy(config);
  // The store's history of revisions: [time it became current, revision], both increasing.
  const history: [number, number][] = [[0, 1]];
  const revisionAt = (t: number) => history.filter(([since]) => since <= t).at(-1)?.[1] ?? 0;
  let now = 0;
  let current = 1;
  let compacted = 0;
  for (const s of steps) {
    now += s.dtMs;
    if (s.writes > 0) history.push([now, (current += s.writes)]);
    if (s.manual > 0 && current - s.manual > compacted) compacted = current - s.manual;
    const input = at(now, current, compacted, s.leader);
    const target = policy.decide(input);
    if (target === undefined) continue;
    check(target, input, revisionAt);
    if (s.applied) compacted = target;
  }
}

describe('invariants (fast-check)', () => {
  test('a target is above the last compaction and below the current revision, and only a leader gets one', () => {
    fc.assert(
      fc.property(settings, fc.array(step, { maxLength: 200 }), (config, steps) => {
        run(config, steps, (target, input) => {
          expect(config.mode).not.toBe('off');
          expect(input.leader).toBe(true);
          expect(Number.isSafeInteger(target)).toBe(true);
          expect(target).toBeGreaterThan(input.compactRevision);
          expect(target).toBeLessThan(input.currentRevision);
        });
      }),
      { numRuns: 300 },
    );
  });

  test('no history younger than the retention is compacted', () => {
    fc.assert(
      fc.property(settings, fc.array(step, { maxLength: 200 }), (config, steps) => {
        run(config, steps, (target, input, revisionAt) => {
          // Every revision below the target was superseded at least `retention` ago ...
          if (config.mode === 'periodic') expect(target).toBeLessThanOrEqual(revisionAt(input.nowMs - config.retentionMs));
          // ... or at least `retention` revisions ago.
          if (config.mode === 'revision') expect(target).toBeLessThanOrEqual(input.currentRevision - config.retentionRevisions);
        });
      }),
      { numRuns: 300 },
    );
  });

  test('a leader checking on time keeps history bounded: periodic to the retention, revision to 1.1 x retention', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 1, max: 600 }).map((s): AutoCompactionSettings => ({ mode: 'periodic', retentionMs: s * SECOND })),
          fc.integer({ min: 1, max: 5_000 }).map((n): AutoCompactionSettings => ({ mode: 'revision', retentionRevisions: n })),
        ),
        fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 300 }),
        (config, writesPerCheck) => {
          const policy = new AutoCompactionPolicy(config);
          const interval = policy.checkIntervalMs;
          const revisions: number[] = [];
          let current = 1;
          let compacted = 0;
          writesPerCheck.forEach((writes, i) => {
            current += writes;
            revisions.push(current);
            const target = policy.decide(at(i * interval, current, compacted));
            if (target !== undefined) compacted = target;
            if (config.mode === 'revision') {
              expect(current - compacted).toBeLessThan(config.retentionRevisions + Math.max(1, Math.floor(config.retentionRevisions / 10)));
            } else if (config.mode === 'periodic') {
              // The sample from `retention` ago (or all but the current revision) is compacted.
              const back = i - Math.ceil(config.retentionMs / interval);
              if (back >= 0) expect(compacted).toBeGreaterThanOrEqual(Math.min(revisions[back], current - 1));
            }
          });
        },
      ),
      { numRuns: 200 },
    );
  });
});
