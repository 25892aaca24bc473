// The watch plan loop of api/watch/plan.go and the parameter checks of watch.Parse / funcs.go,
// with scripted answers and virtual time; reference/consul-compat.md §4.4 (an index going
// backwards resets to 0).
import { HttpApi } from './http-api';
import { Timing } from './lock-session';
import { MAX_BACKOFF_MS, WatchParams, Watcher, nextIndex, parseWatch, runPlan } from './watch-plan';

type Step = { index: number; result: unknown } | Error;

/** A watcher answering `steps` in order, recording the index each query asked for; then stops the plan. Indexes are numbers here, bigints to the plan. */
function scripted(steps: Step[], stop: AbortController): { watcher: Watcher; asked: number[] } {
  const asked: number[] = [];
  const watcher: Watcher = async (index) => {
    asked.push(Number(index));
    const step = steps.shift();
    if (step === undefined) {
      stop.abort();
      throw new Error('stopped');
    }
    if (step instanceof Error) throw step;
    return { index: BigInt(step.index), result: step.result };
  };
  return { watcher, asked };
}

function virtualTime(): Timing & { slept: number[] } {
  const slept: number[] = [];
  return { slept, now: () => 0, sleep: async (ms) => (slept.push(ms), true) };
}

async function run(steps: Step[]) {
  const stop = new AbortController();
  const { watcher, asked } = scripted(steps, stop);
  const handled: [number, unknown][] = [];
  const errors: number[] = [];
  const timing = virtualTime();
  await runPlan({ watcher, stop: stop.signal, timing, onError: (_err, retryMs) => errors.push(retryMs), handler: async (index, result) => (handled.push([Number(index), result]), true) });
  return { asked, handled, errors, slept: timing.slept };
}

describe('runPlan (api/watch/plan.go)', () => {
  test('the handler runs on the first answer, then only when the index moves and the result differs', async () => {
    const { asked, handled } = await run([
      { index: 5, result: null },
      { index: 5, result: null },
      { index: 7, result: null },
      { index: 9, result: { Key: 'k', Value: 'dg==' } },
      { index: 12, result: { Key: 'k', Value: 'dg==' } },
    ]);
    expect(handled).toEqual([
      [5, null],
      [9, { Key: 'k', Value: 'dg==' }],
    ]);
    // Each query blocks on the index of the previous answer.
    expect(asked).toEqual([0, 5, 5, 7, 9, 12]);
  });

  test('an index that goes backwards starts again from 0 (WaitIndexVal.Next)', async () => {
    const { asked, handled } = await run([
      { index: 40, result: 'a' },
      { index: 3, result: 'a' },
      { index: 4, result: 'b' },
    ]);
    expect(asked).toEqual([0, 40, 0, 4]);
    expect(nextIndex(3n, 40n)).toBe(0n);
    expect(nextIndex(41n, 40n)).toBe(41n);
    expect(handled.map(([index]) => index)).toEqual([40, 4]);
  });

  test('a failed query is retried after 5 s × failures², at most 180 s, from index 0; the next answer is handled again', async () => {
    const failures = Array.from({ length: 8 }, () => new Error('Unexpected response code: 500 (No cluster leader)'));
    const { asked, handled, errors, slept } = await run([{ index: 10, result: 'x' }, ...failures, { index: 10, result: 'x' }]);
    expect(errors).toEqual([5_000, 20_000, 45_000, 80_000, 125_000, 180_000, MAX_BACKOFF_MS, MAX_BACKOFF_MS]);
    expect(slept).toEqual(errors);
    expect(asked.slice(1)).toEqual([10, 0, 0, 0, 0, 0, 0, 0, 0, 10]);
    // lastParamVal was reset: the same result counts as new (as in Consul).
    expect(handled).toEqual([
      [10, 'x'],
      [10, 'x'],
    ]);
  });

  test('a handler answering false stops the plan (the one-shot dump without a child)', async () => {
    const stop = new AbortController();
    const { watcher, asked } = scripted([{ index: 1, result: 1 }, { index: 2, result: 2 }], stop);
    await runPlan({ watcher, stop: stop.signal, timing: virtualTime(), onError: () => undefined, handler: async () => false });
    expect(asked).toEqual([0]);
  });
});

describe('parseWatch (watch.Parse, funcs.go)', () => {
  const api = new HttpApi(new Map(), {});
  const error = (params: WatchParams) => {
    const parsed = parseWatch(api, params);
    return typeof parsed === 'function' ? undefined : parsed.error;
  };

  test("Consul's texts for a missing or unknown type and missing parameters", () => {
    expect(error({ type: '' })).toBe('Watch type must be specified');
    expect(error({ type: 'nope' })).toBe('Unsupported watch type: nope');
    expect(error({ type: 'connect_roots' })).toMatch(/^Unsupported watch type: connect_roots \(/);
    expect(error({ type: 'key' })).toBe('Must specify a single key to watch');
    expect(error({ type: 'keyprefix' })).toBe('Must specify a single prefix to watch');
    expect(error({ type: 'service' })).toBe('Must specify a single service to watch');
    expect(error({ type: 'checks', service: 'web', state: 'passing' })).toBe('Cannot specify service and state');
  });

  test('a parameter the type does not use is refused: Invalid parameters', () => {
    expect(error({ type: 'nodes', key: 'k' })).toBe('Invalid parameters: [key]');
    expect(error({ type: 'key', key: 'k', service: 'web', tag: ['v1'] })).toBe('Invalid parameters: [service tag]');
    expect(error({ type: 'service', service: 'web', tag: ['v1'], passingonly: true, stale: true })).toBeUndefined();
    expect(error({ type: 'services', stale: true })).toBeUndefined();
    expect(error({ type: 'event', name: 'deploy' })).toBeUndefined();
    expect(error({ type: 'key', key: 'k', name: 'deploy' })).toBe('Invalid parameters: [name]');
  });
});
