/**
 * Model-based tests. The store: random sequences of puts, deletes, txns, ranges, compactions, lease grants
 * and revokes, and snapshot/restore, applied both to the store and to reference-model.ts (a full
 * copy of the key space per revision). After every step the two must give the same answers, the
 * same events, the same revision and the same leases; at chosen steps, the same reads at every
 * retained revision. Restores must keep the hash and every answer.
 *
 * The watch hub: watchers started at random revisions over random ranges, pulled in small batches
 * at random moments between the same random commands (and restores), must receive exactly the
 * model's events for their range from their start revision: in order, whole revisions, none lost
 * or repeated; or be cancelled only when a compaction took history they still needed.
 */
import fc from 'fast-check';
import { KvStateMachine } from './kv-state-machine';
import { kvLimits } from './limits';
import { RevisionEvents } from './watch-hub';
import {
  CompareResult,
  CompareTarget,
  ModelCommand,
  ModelCompare,
  ModelOp,
  ModelRange,
  PlainEvent,
  ReferenceModel,
  inRange,
  plainEvent,
  plainOutcome,
  plainRangeOutcome,
  toCommand,
  toRangeRequest,
} from './reference-model';

// Small alphabets so keys collide, ranges overlap and compares sometimes hold. Latin1: one char per byte.
const KEYS = ['a', 'ab', 'b', 'ba', 'c', 'c\u0000', '\u00ff', '\u00ff\u0001'];
const ENDS = ['', '', '', '\u0000', 'b', 'c', '\u00ff', 'a'];
const VALUES = ['', 'x', 'y', 'xyz', '\u00ff'];
const LEASES = [0n, 0n, 0n, 1n, 2n, 3n, 99n];

/** A revision relative to the model's when the step runs: null the latest, -1 the future, n that many back. */
type RevisionBack = number | null;

type GenRange = Omit<ModelRange, 'revision'> & { readonly back: RevisionBack };
type GenOp = Exclude<ModelOp, ModelRange> | GenRange;
type GenCommand =
  | Exclude<ModelCommand, { kind: 'txn' } | { kind: 'compact' }>
  | { readonly kind: 'txn'; readonly compares: readonly ModelCompare[]; readonly success: readonly GenOp[]; readonly failure: readonly GenOp[] }
  | { readonly kind: 'compact'; readonly back: number };

const key = fc.constantFrom(...KEYS);
const end = fc.constantFrom(...ENDS);
const back: fc.Arbitrary<RevisionBack> = fc.oneof(fc.constant(null), fc.integer({ min: -1, max: 8 }));

const rangeArb: fc.Arbitrary<GenRange> = fc.record({
  kind: fc.constant('range' as const),
  key,
  end,
  back,
  limit: fc.constantFrom(0, 0, 1, 2),
  keysOnly: fc.constantFrom(false, false, false, true),
  countOnly: fc.constantFrom(false, false, false, true),
});
const putArb = fc.record({
  kind: fc.constant('put' as const),
  key,
  value: fc.constantFrom(...VALUES),
  lease: fc.constantFrom(...LEASES),
  prevKv: fc.boolean(),
});
const deleteArb = fc.record({ kind: fc.constant('delete' as const), key, end, prevKv: fc.boolean() });
const compareArb: fc.Arbitrary<ModelCompare> = fc
  .record({
    key,
    target: fc.constantFrom<CompareTarget>('version', 'create', 'mod', 'value', 'lease'),
    result: fc.constantFrom<CompareResult>('EQUAL', 'NOT_EQUAL', 'GREATER', 'LESS'),
    number: fc.integer({ min: 0, max: 10 }),
    value: fc.constantFrom(...VALUES),
  })
  .map(({ key, target, result, number, value }) => ({ key, target, result, operand: target === 'value' ? value : target === 'lease' ? number % 4 : number }));

const commandArb: fc.Arbitrary<GenCommand> = fc.oneof(
  { arbitrary: putArb, weight: 8 },
  { arbitrary: deleteArb, weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant('txn' as const),
      compares: fc.array(compareArb, { maxLength: 3, size: 'max' }),
      success: fc.array(fc.oneof(putArb, deleteArb, rangeArb), { maxLength: 4, size: 'max' }),
      failure: fc.array(fc.oneof(putArb, deleteArb, rangeArb), { maxLength: 3, size: 'max' }),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: -1, max: 6 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('grant' as const), id: fc.constantFrom(0n, 0n, 1n, 2n, 3n), ttl: fc.constantFrom(0, 1, 30, 9_000_000_001) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('revoke' as const), id: fc.constantFrom(1n, 2n, 3n, 4n, 99n) }), weight: 2 },
);

function revisionFor(model: ReferenceModel, b: RevisionBack): number {
  if (b === null) return 0;
  if (b < 0) return model.revision + 1;
  return Math.max(1, model.revision - b);
}

function resolveOp(model: ReferenceModel, op: GenOp): ModelOp {
  if (op.kind !== 'range') return op;
  const { back: b, ...rest } = op;
  return { ...rest, revision: revisionFor(model, b) };
}

function resolve(model: ReferenceModel, command: GenCommand): ModelCommand {
  switch (command.kind) {
    case 'txn':
      return { ...command, success: command.success.map((op) => resolveOp(model, op)), failure: command.failure.map((op) => resolveOp(model, op)) };
    case 'compact':
      return { kind: 'compact', revision: command.back < 0 ? model.revision + 1 : Math.max(0, model.revision - command.back) };
    default:
      return command;
  }
}

interface Real {
  sm: KvStateMachine;
}

const everything = (revision: number): ModelRange => ({ kind: 'range', key: '\u0000', end: '\u0000', revision, limit: 0, keysOnly: false, countOnly: false });

function expectSameLatest(model: ReferenceModel, real: Real): void {
  expect(real.sm.revision).toBe(BigInt(model.revision));
  expect(plainRangeOutcome(real.sm.range(toRangeRequest(everything(0))))).toEqual(model.range(everything(0)));
  expect(real.sm.leases().map((l) => [l.id, Number(l.ttl), l.keys.map((k) => k.toString('latin1'))])).toEqual(
    [...model.leases.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, ttl]) => [id, ttl, model.leaseKeys(id)]),
  );
}

/** Every retained revision (and the one below the compaction) answers as the model does. */
function expectSameHistory(model: ReferenceModel, sm: KvStateMachine): void {
  for (let revision = Math.max(1, model.compacted - 1); revision <= model.revision + 1; revision++) {
    expect([revision, plainRangeOutcome(sm.range(toRangeRequest(everything(revision))))]).toEqual([revision, model.range(everything(revision))]);
  }
}

const show = (value: unknown): string => JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));

class ApplyStep implements fc.Command<ReferenceModel, Real> {
  constructor(readonly command: GenCommand) {}
  check(): boolean {
    return true;
  }
  run(model: ReferenceModel, real: Real): void {
    const resolved = resolve(model, this.command);
    const expected = model.apply(resolved);
    expect(plainOutcome(real.sm.apply(toCommand(resolved)))).toEqual(expected);
    expectSameLatest(model, real);
  }
  toString(): string {
    return `apply ${show(this.command)}`;
  }
}

class RangeStep implements fc.Command<ReferenceModel, Real> {
  constructor(readonly range: GenRange) {}
  check(): boolean {
    return true;
  }
  run(model: ReferenceModel, real: Real): void {
    const resolved = resolveOp(model, this.range) as ModelRange;
    expect(plainRangeOutcome(real.sm.range(toRangeRequest(resolved)))).toEqual(model.range(resolved));
  }
  toString(): string {
    return `range ${show(this.range)}`;
  }
}

class HistoryStep implements fc.Command<ReferenceModel, Real> {
  check(): boolean {
    return true;
  }
  run(model: ReferenceModel, real: Real): void {
    expectSameHistory(model, real.sm);
  }
  toString(): string {
    return 'history';
  }
}

class RestoreStep implements fc.Command<ReferenceModel, Real> {
  check(): boolean {
    return true;
  }
  run(model: ReferenceModel, real: Real): void {
    const restored = new KvStateMachine();
    restored.restore(real.sm.snapshot());
    expect(restored.hash()).toBe(real.sm.hash());
    expectSameHistory(model, restored);
    real.sm = restored;
  }
  toString(): string {
    return 'snapshot+restore';
  }
}

describe('the store against the reference model (etcd v3 semantics)', () => {
  test('random commands give the model\'s answers, events, revisions, leases and history', () => {
    const steps = fc.commands(
      [
        commandArb.map((c) => new ApplyStep(c)),
        commandArb.map((c) => new ApplyStep(c)),
        commandArb.map((c) => new ApplyStep(c)),
        rangeArb.map((r) => new RangeStep(r)),
        fc.constant(new HistoryStep()),
        fc.constant(new RestoreStep()),
      ],
      { maxCommands: 60, size: 'max' },
    );
    fc.assert(
      fc.property(steps, (cmds) => {
        fc.modelRun(() => ({ model: new ReferenceModel(), real: { sm: new KvStateMachine() } }), cmds);
      }),
      { numRuns: 300 },
    );
  });

  test('two stores applying the same random commands have the same hash; a restored copy too', () => {
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 80, size: 'max' }), (commands) => {
        const model = new ReferenceModel();
        const a = new KvStateMachine();
        const b = new KvStateMachine();
        for (const command of commands) {
          const resolved = toCommand(resolve(model, command));
          model.apply(resolve(model, command));
          a.apply(resolved);
          b.apply(resolved);
        }
        expect(a.hash()).toBe(b.hash());
        const c = new KvStateMachine();
        c.restore(a.snapshot());
        expect(c.hash()).toBe(a.hash());
      }),
      { numRuns: 100 },
    );
  });
});

describe('the watch hub against the reference model (etcd watch guarantees)', () => {
  interface Tracked {
    readonly id: number;
    readonly key: string;
    readonly end: string;
    readonly prevKv: boolean;
    /** The first revision it must see. */
    readonly from: number;
    readonly received: { revision: number; event: PlainEvent }[];
    lastGroup: number;
    cancelledAt?: bigint;
  }

  const action = fc.oneof(
    { arbitrary: commandArb.map((command) => ({ kind: 'apply' as const, command })), weight: 8 },
    { arbitrary: fc.record({ kind: fc.constant('watch' as const), key, end, back: fc.oneof(fc.constant(null), fc.integer({ min: -2, max: 10 })), prevKv: fc.boolean() }), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant('pull' as const), which: fc.nat(), max: fc.integer({ min: 1, max: 4 }) }), weight: 4 },
    { arbitrary: fc.constant({ kind: 'restore' as const }), weight: 1 },
  );

  test('watchers from random revisions get exactly the model\'s events for their range', () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 10, maxLength: 100, size: 'max' }), (actions) => {
        const model = new ReferenceModel();
        const sm = new KvStateMachine(kvLimits({ maxEventsPerPull: 2 }));
        const watchers: Tracked[] = [];
        const byId = new Map<number, Tracked>();
        const take = (w: Tracked, groups: readonly RevisionEvents[]) => {
          for (const group of groups) {
            const revision = Number(group.revision);
            expect(revision).toBeGreaterThan(w.lastGroup); // in order, never a revision twice
            w.lastGroup = revision;
            expect(group.events.length).toBeGreaterThan(0);
            for (const event of group.events) {
              expect(Number(event.kv!.modRevision)).toBe(revision);
              w.received.push({ revision, event: plainEvent(event) });
            }
          }
        };
        const cancel = (id: number, compactRevision: bigint | undefined, code: string) => {
          const w = byId.get(id)!;
          expect(code).toBe('OUT_OF_RANGE');
          w.cancelledAt = compactRevision;
        };
        for (const a of actions) {
          if (a.kind === 'apply') {
            const resolved = resolve(model, a.command);
            model.apply(resolved);
            const result = sm.apply(toCommand(resolved));
            if (result.ok) for (const c of result.wake.cancelled) cancel(c.watchId, c.error.compactRevision, c.error.code);
          } else if (a.kind === 'watch') {
            const start = a.back === null ? 0 : a.back < 0 ? model.revision - a.back : Math.max(1, model.revision - a.back);
            const created = sm.watches.watch({ key: Buffer.from(a.key, 'latin1'), rangeEnd: Buffer.from(a.end, 'latin1'), startRevision: BigInt(start), prevKv: a.prevKv });
            if (start > 0 && start <= model.compacted) {
              expect(created.ok).toBe(false);
              expect(!created.ok && created.error.compactRevision).toBe(BigInt(model.compacted));
              continue;
            }
            if (!created.ok) throw new Error(created.error.toString());
            const w: Tracked = { id: created.watchId, key: a.key, end: a.end, prevKv: a.prevKv, from: start > 0 ? start : model.revision + 1, received: [], lastGroup: 0 };
            watchers.push(w);
            byId.set(w.id, w);
            take(w, created.groups);
          } else if (a.kind === 'pull') {
            const live = watchers.filter((w) => w.cancelledAt === undefined);
            if (live.length === 0) continue;
            const w = live[a.which % live.length];
            const pull = sm.watches.pull(w.id, a.max);
            if (pull.kind === 'cancelled') cancel(w.id, pull.error.compactRevision, pull.error.code);
            else take(w, pull.groups);
          } else {
            const wake = sm.restore(sm.snapshot());
            for (const c of wake.cancelled) cancel(c.watchId, c.error.compactRevision, c.error.code);
          }
        }
        for (const w of watchers) {
          while (w.cancelledAt === undefined) {
            const pull = sm.watches.pull(w.id, 3);
            if (pull.kind === 'cancelled') cancel(w.id, pull.error.compactRevision, pull.error.code);
            else {
              take(w, pull.groups);
              if (pull.caughtUp) break;
            }
          }
          const expected = model.log
            .filter(({ revision, event }) => revision >= w.from && inRange(w.key, w.end, event[1][0]))
            .map(({ revision, event }) => ({ revision, event: w.prevKv ? event : ([event[0], event[1], null] as const) }));
          if (w.cancelledAt === undefined) {
            expect(w.received).toEqual(expected);
          } else {
            // Cancelled only for a compaction that took history it still needed; all it got was right.
            expect(w.received).toEqual(expected.slice(0, w.received.length));
            const needed = Math.max(w.from, w.lastGroup + 1);
            expect(Number(w.cancelledAt)).toBeGreaterThanOrEqual(needed);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
