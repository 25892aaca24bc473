/**
 * Proves the linearizability checker before the project trusts it: (a) on the 102 Jepsen etcd
 * register histories with known verdicts (porcupine's test data), (b) on small hand-written
 * histories whose verdicts follow from the definition, and against a brute-force search on random
 * small ones, (c) on the per-key kv model, (d) on a pathological history, where it must give up
 * with 'unknown' instead of hanging.
 */
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseJepsenLog } from './jepsen-log';
import {
  checkOperations,
  kvModel,
  registerModel,
  type CheckResult,
  type KvInput,
  type KvOutput,
  type Operation,
  type RegisterInput,
  type RegisterOutput,
} from './linearizability';

const JEPSEN_DIR = path.join(__dirname, '..', '..', '..', 'shared', 'data', 'jepsen-etcd');
const BUDGET_PER_HISTORY_MS = 10_000;

function readVerdicts(): { file: string; linearizable: boolean }[] {
  return fs
    .readFileSync(path.join(JEPSEN_DIR, 'VERDICTS.txt'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [file, verdict] = line.trim().split(/\s+/);
      if (verdict !== 'linearizable' && verdict !== 'not-linearizable') throw new Error(`VERDICTS.txt: bad line ${line}`);
      return { file, linearizable: verdict === 'linearizable' };
    });
}

describe('the Jepsen etcd histories', () => {
  if (!fs.existsSync(path.join(JEPSEN_DIR, 'VERDICTS.txt'))) {
    it('needs the data', () => {
      throw new Error(`the Jepsen etcd histories are missing: expected ${JEPSEN_DIR}/VERDICTS.txt and etcd_*.log (shared/ beside the checkout)`);
    });
    return;
  }
  const verdicts = readVerdicts();
  const timings: { file: string; ms: number }[] = [];

  afterAll(() => {
    if (timings.length === 0) return;
    const total = timings.reduce((sum, t) => sum + t.ms, 0);
    const slowest = timings.reduce((a, b) => (b.ms > a.ms ? b : a));
    console.log(`${timings.length} Jepsen histories checked in ${(total / 1000).toFixed(2)} s; slowest ${slowest.file} ${slowest.ms.toFixed(0)} ms`);
  });

  it('has 102 verdicts: 23 linearizable, 79 not (etcd_095 has none)', () => {
    expect(verdicts).toHaveLength(102);
    expect(verdicts.filter((v) => v.linearizable)).toHaveLength(23);
    expect(verdicts.some((v) => v.file === 'etcd_095.log')).toBe(false);
  });

  it.each(verdicts)('$file: linearizable = $linearizable', ({ file, linearizable }) => {
    const ops = parseJepsenLog(fs.readFileSync(path.join(JEPSEN_DIR, file), 'utf8'));
    const result = checkOperations(registerModel, ops, { timeoutMs: BUDGET_PER_HISTORY_MS });
    timings.push({ file, ms: result.elapsedMs });
    expect(result.verdict).toBe(linearizable ? 'ok' : 'illegal');
  }, BUDGET_PER_HISTORY_MS + 5_000);
});

describe('parseJepsenLog', () => {
  const log = (...events: string[]): string => events.map((e) => `INFO  jepsen.util - ${e.replace(/ +/g, '\t')}`).join('\n');

  it('turns timeouts, unreturned operations and nil into the checker terms', () => {
    const ops = parseJepsenLog(
      log(
        '0 :invoke :read nil', //          1
        '1 :invoke :write 3', //           2
        '0 :ok :read nil', //              3
        '2 :invoke :cas [3 4]', //         4
        '1 :info :write :timed-out', //    5: unknown outcome
        '3 :invoke :read nil', //          6
        '3 :fail :read :timed-out', //     7: dropped
        '2 :fail :cas [3 4]', //           8: definite, no effect
        '4 :invoke :cas [1 2]', //         9: never returns
        '5 :invoke :read nil', //          10: never returns, dropped
      ),
    );
    expect(ops).toEqual([
      { clientId: 0, input: { kind: 'read' }, output: { kind: 'read', value: null }, call: 1, return: 3 },
      { clientId: 1, input: { kind: 'write', value: 3 }, output: undefined, call: 2, return: Infinity },
      { clientId: 2, input: { kind: 'cas', from: 3, to: 4 }, output: { kind: 'cas', ok: false }, call: 4, return: 8 },
      { clientId: 4, input: { kind: 'cas', from: 1, to: 2 }, output: undefined, call: 9, return: Infinity },
    ]);
  });

  it('refuses what it cannot read', () => {
    expect(() => parseJepsenLog(log('0 :invoke :write 1', '0 :invoke :read nil'))).toThrow(/pending/);
    expect(() => parseJepsenLog(log('0 :ok :read 1'))).toThrow(/without a pending/);
    expect(() => parseJepsenLog(log('0 :invoke :write 1', '0 :ok :write 2'))).toThrow(/differs/);
    expect(() => parseJepsenLog('INFO  jepsen.core - nemesis :start')).toThrow(/line 1/);
  });
});

/** A register operation from a compact description; `ret` Infinity with `out` undefined = unknown. */
function reg(clientId: number, call: number, ret: number, input: RegisterInput, output: RegisterOutput): Operation<RegisterInput, RegisterOutput> {
  return { clientId, input, output, call, return: ret };
}
const read = (value: number | null): [RegisterInput, RegisterOutput] => [{ kind: 'read' }, { kind: 'read', value }];
const write = (value: number): [RegisterInput, RegisterOutput] => [{ kind: 'write', value }, { kind: 'write' }];
const cas = (from: number, to: number, ok: boolean): [RegisterInput, RegisterOutput] => [{ kind: 'cas', from, to }, { kind: 'cas', ok }];
const unknownWrite = (value: number): [RegisterInput, RegisterOutput] => [{ kind: 'write', value }, undefined];

function checkRegister(ops: Operation<RegisterInput, RegisterOutput>[]): CheckResult<RegisterInput, RegisterOutput> {
  return checkOperations(registerModel, ops, { timeoutMs: 1_000 });
}

describe('registerModel on hand-written histories', () => {
  it('finds a stale read illegal', () => {
    const result = checkRegister([reg(0, 0, 1, ...write(1)), reg(1, 2, 3, ...write(2)), reg(2, 4, 5, ...read(1))]);
    expect(result.verdict).toBe('illegal');
    if (result.verdict !== 'illegal') return;
    expect(result.explanation.partitionIndex).toBe(0);
    expect(result.explanation.longestPrefix.map((op) => op.input)).toEqual([{ kind: 'write', value: 1 }, { kind: 'write', value: 2 }]);
    expect(result.explanation.nextCandidates.map((op) => op.output)).toEqual([{ kind: 'read', value: 1 }]);
    expect(result.explanation.message).toMatch(/longest linearizable prefix has 2 operations .*state at 2.*read → 1/);
  });

  it('accepts a read concurrent with a write in either order', () => {
    expect(checkRegister([reg(0, 0, 3, ...write(1)), reg(1, 1, 2, ...read(null))]).verdict).toBe('ok');
    expect(checkRegister([reg(0, 0, 3, ...write(1)), reg(1, 1, 2, ...read(1))]).verdict).toBe('ok');
    // A call at the instant of another's return is concurrent with it.
    expect(checkRegister([reg(0, 0, 2, ...write(1)), reg(1, 2, 3, ...read(null))]).verdict).toBe('ok');
  });

  it('finds a failed cas after a matching write illegal, and accepts it when concurrent', () => {
    expect(checkRegister([reg(0, 0, 1, ...write(1)), reg(1, 2, 3, ...cas(1, 2, false))]).verdict).toBe('illegal');
    expect(checkRegister([reg(0, 0, 3, ...write(1)), reg(1, 1, 2, ...cas(1, 2, false))]).verdict).toBe('ok');
    expect(checkRegister([reg(0, 0, 1, ...write(1)), reg(1, 2, 3, ...cas(1, 2, true)), reg(0, 4, 5, ...read(2))]).verdict).toBe('ok');
  });

  it('accepts an unknown-outcome write whether it is observed later or never', () => {
    expect(checkRegister([reg(0, 0, Infinity, ...unknownWrite(7)), reg(1, 10, 11, ...read(7))]).verdict).toBe('ok');
    expect(checkRegister([reg(0, 0, Infinity, ...unknownWrite(7)), reg(1, 10, 11, ...read(null))]).verdict).toBe('ok');
    // But once observed it cannot be undone.
    expect(checkRegister([reg(0, 0, Infinity, ...unknownWrite(7)), reg(1, 10, 11, ...read(7)), reg(1, 12, 13, ...read(null))]).verdict).toBe(
      'illegal',
    );
    // Nor take effect before its call.
    expect(checkRegister([reg(1, 0, 1, ...read(7)), reg(0, 2, Infinity, ...unknownWrite(7))]).verdict).toBe('illegal');
  });

  it('refuses histories over the size limit and operations returning before their call', () => {
    const ops = Array.from({ length: 11 }, (_, i) => reg(0, 2 * i, 2 * i + 1, ...write(i)));
    expect(() => checkOperations(registerModel, ops, { timeoutMs: 1_000, maxOperations: 10 })).toThrow(RangeError);
    expect(() => checkRegister([reg(0, 5, 4, ...write(1))])).toThrow(/return >= call/);
  });
});

/**
 * The definition, searched exhaustively: some order of the definite operations plus any subset of
 * the unknown-outcome ones that respects real time (a returned before b was called ⇒ a first) is a
 * legal run of the register. Independent of the checker's Infinity trick: omission is explicit.
 */
function linearizableByBruteForce(ops: readonly Operation<RegisterInput, RegisterOutput>[]): boolean {
  const unknown = ops.filter((op) => op.output === undefined);
  const definite = ops.filter((op) => op.output !== undefined);
  const orderFrom = (remaining: readonly Operation<RegisterInput, RegisterOutput>[], state: number | null): boolean =>
    remaining.length === 0 ||
    remaining.some((op, i) => {
      if (remaining.some((other) => other.return < op.call)) return false; // something must come before it
      const step = registerModel.step(state, op.input, op.output);
      return step.ok && orderFrom([...remaining.slice(0, i), ...remaining.slice(i + 1)], step.state);
    });
  for (let subset = 0; subset < 1 << unknown.length; subset++) {
    const included = unknown.filter((_, i) => subset & (1 << i));
    if (orderFrom([...definite, ...included], null)) return true;
  }
  return false;
}

describe('registerModel against brute force', () => {
  const value = fc.integer({ min: 0, max: 2 });
  const definiteOperation = fc.oneof(
    fc.option(value, { nil: null }).map(read),
    value.map(write),
    fc.tuple(value, value, fc.boolean()).map(([from, to, ok]) => cas(from, to, ok)),
  );
  const unknownOperation = fc.oneof(
    value.map(unknownWrite),
    fc.tuple(value, value).map(([from, to]): [RegisterInput, RegisterOutput] => [{ kind: 'cas', from, to }, undefined]),
  );
  const operation = fc
    .tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 4 }), fc.oneof({ weight: 3, arbitrary: definiteOperation }, unknownOperation))
    .map(([call, duration, [input, output]]) => ({ call, return: output === undefined ? Infinity : call + duration, input, output }));
  const history = fc.array(operation, { minLength: 1, maxLength: 7 }).map((ops) => ops.map((op, clientId) => ({ clientId, ...op })));

  it('gives the same verdict on random small histories', () => {
    let linearizable = 0;
    fc.assert(
      fc.property(history, (ops) => {
        const expected = linearizableByBruteForce(ops);
        if (expected) linearizable++;
        expect(checkRegister(ops).verdict).toBe(expected ? 'ok' : 'illegal');
      }),
      { numRuns: 1_000, seed: 20_240_601 },
    );
    expect(linearizable).toBeGreaterThan(100); // both verdicts were exercised
    expect(linearizable).toBeLessThan(900);
  });
});

describe('kvModel', () => {
  type KvOperation = Operation<KvInput, KvOutput>;
  /** A legal sequential history on `key`: put, get, cas ok, cas failed, delete, get absent. */
  function legalKeyHistory(key: string, start: number): KvOperation[] {
    const steps: [KvInput, KvOutput][] = [
      [{ kind: 'put', key, value: 'a' }, { kind: 'put' }],
      [{ kind: 'get', key }, { kind: 'get', value: 'a' }],
      [{ kind: 'cas', key, expected: 'a', value: 'b' }, { kind: 'cas', ok: true }],
      [{ kind: 'cas', key, expected: 'a', value: 'c' }, { kind: 'cas', ok: false }],
      [{ kind: 'delete', key }, { kind: 'delete', existed: true }],
      [{ kind: 'get', key }, { kind: 'get', value: null }],
      [{ kind: 'cas', key, expected: null, value: 'd' }, { kind: 'cas', ok: true }],
    ];
    return steps.map(([input, output], i) => ({ clientId: i % 3, input, output, call: start + 2 * i, return: start + 2 * i + 1 }));
  }

  it('checks each key alone and finds the one violation among many legal keys', () => {
    const ops: KvOperation[] = [];
    for (let k = 0; k < 200; k++) ops.push(...legalKeyHistory(`key-${k}`, k));
    // On key-137, a get after the delete still sees the old value.
    ops.push({ clientId: 9, input: { kind: 'get', key: 'key-137' }, output: { kind: 'get', value: 'b' }, call: 1_000, return: 1_001 });

    const legal = checkOperations(kvModel, ops.slice(0, -1), { timeoutMs: 5_000 });
    expect(legal).toMatchObject({ verdict: 'ok', partitions: 200, partitionsChecked: 200 });

    const result = checkOperations(kvModel, ops, { timeoutMs: 5_000 });
    expect(result.verdict).toBe('illegal');
    if (result.verdict !== 'illegal') return;
    expect(result.explanation.partitionIndex).toBe(137);
    expect(result.explanation.partitionSize).toBe(8);
    expect(result.explanation.message).toContain('get "key-137" → "b"');
  });

  it('accepts an unknown-outcome put and checks what a delete reports', () => {
    const key = 'k';
    const ops: KvOperation[] = [
      { clientId: 0, input: { kind: 'put', key, value: 'x' }, output: undefined, call: 0, return: Infinity },
      { clientId: 1, input: { kind: 'delete', key }, output: { kind: 'delete', existed: true }, call: 5, return: 6 },
    ];
    expect(checkOperations(kvModel, ops, { timeoutMs: 1_000 }).verdict).toBe('ok');
    // Without the put, the key never existed.
    expect(checkOperations(kvModel, [ops[1]], { timeoutMs: 1_000 }).verdict).toBe('illegal');
  });
});

describe('the time budget', () => {
  it("answers 'unknown' quickly on 60 concurrent unknown-outcome writes and an impossible read", () => {
    const ops = Array.from({ length: 60 }, (_, i) => reg(i, i, Infinity, ...unknownWrite(i)));
    ops.push(reg(60, 100, 101, ...read(999)));
    const started = performance.now();
    const result = checkOperations(registerModel, ops, { timeoutMs: 50 });
    expect(result).toMatchObject({ verdict: 'unknown', reason: 'timeout', partitionsChecked: 0 });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("answers 'unknown' when the cache reaches its memory limit", () => {
    const ops = Array.from({ length: 60 }, (_, i) => reg(i, i, Infinity, ...unknownWrite(i)));
    ops.push(reg(60, 100, 101, ...read(999)));
    const result = checkOperations(registerModel, ops, { timeoutMs: 10_000, maxCacheBytes: 64 * 1024 });
    expect(result).toMatchObject({ verdict: 'unknown', reason: 'cache-limit' });
  });
});
