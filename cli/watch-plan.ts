/**
 * A watch plan as Consul runs one (api/watch/plan.go, watch.go, funcs.go): a blocking query in a
 * loop, each one from the index of the last answer; the handler runs on the first answer and
 * then whenever the index moves and the result differs. An index that goes backwards (a restored
 * snapshot, another server's view) starts again from 0 (WaitIndexVal.Next; reference/
 * consul-compat.md §4.4). A failed query is retried after 5 s × failures², at most 180 s, and
 * starts again from index 0.
 *
 * Watch types: key, keyprefix, services, nodes, service, checks, event: the reads of funcs.go,
 * their results in the Go api's shapes (api-shapes.ts) so the JSON printed is Consul's. Indexes
 * are uint64s (bigint): an event list's is a hash of the last event's ID, past 2^53.
 */
import * as shapes from './api-shapes';
import { marshal } from './go-json';
import { Api, DEFAULT_BLOCKING_WAIT_MS, kvGet, kvList } from './kv-api';
import { Timing, realTiming } from './lock-session';
import { eventIdToIndex } from '../services/catalog/user-events';

/** plan.go retryInterval and maxBackoffTime. */
export const RETRY_INTERVAL_MS = 5_000;
export const MAX_BACKOFF_MS = 180_000;

/** One blocking query: the index to wait past (0: answer at once) → the new index and result. */
export type Watcher = (index: bigint, signal: AbortSignal) => Promise<{ index: bigint; result: unknown }>;

/** The handler of a change; resolve false to stop the plan (Consul's `wp.Stop()` in a handler). */
export type WatchHandler = (index: bigint, result: unknown) => Promise<boolean>;

/** The parameters of a watch, as the command collects them (only the ones set). */
export interface WatchParams {
  readonly type: string;
  readonly key?: string;
  readonly prefix?: string;
  readonly service?: string;
  readonly tag?: readonly string[];
  readonly passingonly?: boolean;
  readonly state?: string;
  readonly stale?: boolean;
  readonly name?: string;
}

const SUPPORTED = ['key', 'keyprefix', 'services', 'nodes', 'service', 'checks', 'event'];
/** Consul's types that this catalog cannot serve over HTTP yet. */
const NOT_SERVED: Record<string, string> = {
  connect_roots: 'Connect is not supported',
  connect_leaf: 'Connect is not supported',
  agent_service: 'the catalog runs no agent-local services',
};

/** The blocking wait of each query: Consul's server default, named explicitly. */
export const WATCH_WAIT_MS = DEFAULT_BLOCKING_WAIT_MS;

/**
 * watch.Parse: the watcher for the parameters, or Consul's error text. Every parameter must be
 * used by the type (`Invalid parameters: [key]`).
 */
export function parseWatch(api: Api, params: WatchParams): Watcher | { error: string } {
  if (params.type === '') return { error: 'Watch type must be specified' };
  if (NOT_SERVED[params.type] !== undefined) return { error: `Unsupported watch type: ${params.type} (${NOT_SERVED[params.type]})` };
  if (!SUPPORTED.includes(params.type)) return { error: `Unsupported watch type: ${params.type}` };
  const used = new Set(['type']);
  const use = <K extends keyof WatchParams>(name: K): WatchParams[K] => {
    used.add(name);
    return params[name];
  };
  const stale = use('stale') === true;
  let watcher: Watcher;
  switch (params.type) {
    case 'key': {
      const key = use('key') ?? '';
      if (key === '') return { error: 'Must specify a single key to watch' };
      watcher = async (index, signal) => {
        const read = await kvGet(api, key, { index: Number(index), waitMs: WATCH_WAIT_MS, stale, signal });
        return { index: BigInt(read.index), result: read.raw === undefined ? null : shapes.kvPair(read.raw) };
      };
      break;
    }
    case 'keyprefix': {
      const prefix = use('prefix') ?? '';
      if (prefix === '') return { error: 'Must specify a single prefix to watch' };
      watcher = async (index, signal) => {
        const read = await kvList(api, prefix, { index: Number(index), waitMs: WATCH_WAIT_MS, stale, signal });
        return { index: BigInt(read.index), result: read.raw === null ? null : read.raw.map(shapes.kvPair) };
      };
      break;
    }
    case 'services':
      watcher = blockingGet(api, '/v1/catalog/services', {}, stale, shapes.serviceTags);
      break;
    case 'nodes':
      watcher = blockingGet(api, '/v1/catalog/nodes', {}, stale, (body) => (Array.isArray(body) ? body.map(shapes.node) : null));
      break;
    case 'service': {
      const service = use('service') ?? '';
      if (service === '') return { error: 'Must specify a single service to watch' };
      const tags = use('tag') ?? [];
      const query: Record<string, string | string[]> = {};
      if (tags.length > 0) query.tag = [...tags];
      if (use('passingonly') === true) query.passing = '1';
      watcher = blockingGet(api, `/v1/health/service/${encodeURIComponent(service)}`, query, stale, (body) => (Array.isArray(body) ? body.map(shapes.serviceEntry) : null));
      break;
    }
    case 'checks': {
      const service = use('service') ?? '';
      let state = use('state') ?? '';
      if (service !== '' && state !== '') return { error: 'Cannot specify service and state' };
      if (service === '' && state === '') state = 'any';
      const tags = use('tag') ?? [];
      const path = state !== '' ? `/v1/health/state/${encodeURIComponent(state)}` : `/v1/health/checks/${encodeURIComponent(service)}`;
      watcher = blockingGet(api, path, tags.length > 0 && state !== '' ? { tag: [...tags] } : {}, stale, (body) => (Array.isArray(body) ? body.map(shapes.healthCheck) : null));
      break;
    }
    case 'event': {
      // eventWatch: only the events after the one the last index names (an index is an event's ID folded).
      const name = use('name') ?? '';
      const list = blockingGet(api, '/v1/event/list', name === '' ? {} : { name }, false, (body) => body);
      watcher = async (index, signal) => {
        const answer = await list(index, signal);
        let events = Array.isArray(answer.result) ? (answer.result as { ID: string }[]).map(shapes.userEvent) : [];
        const seen = events.findIndex((event) => eventIdToIndex(event.ID) === index);
        if (seen >= 0) events = events.slice(seen + 1);
        return { index: answer.index, result: events };
      };
      break;
    }
    default:
      return { error: `Unsupported watch type: ${params.type}` };
  }
  const unused = (Object.keys(params) as (keyof WatchParams)[]).filter((name) => params[name] !== undefined && !used.has(name));
  if (unused.length > 0) return { error: `Invalid parameters: [${unused.join(' ')}]` };
  return watcher;
}

function blockingGet(api: Api, path: string, extra: Record<string, string | string[]>, stale: boolean, shape: (body: unknown) => unknown): Watcher {
  return async (index, signal) => {
    const query: Record<string, string | string[]> = { ...extra, wait: `${WATCH_WAIT_MS}ms` };
    if (index > 0n) query.index = String(index);
    if (stale) query.stale = '';
    const response = await api.request<unknown>('GET', path, { query, signal, timeoutMs: index > 0n ? WATCH_WAIT_MS * (17 / 16) + 10_000 : undefined });
    return { index: response.exactIndex, result: shape(response.body) };
  };
}

export interface PlanOptions {
  readonly watcher: Watcher;
  readonly handler: WatchHandler;
  /** Aborting it stops the plan, its query included. */
  readonly stop: AbortSignal;
  /** A failed query: its error and the wait before the next try. */
  readonly onError: (error: unknown, retryMs: number) => void;
  readonly timing?: Timing;
}

/** Plan.Run: until stopped, or until the handler says stop. */
export async function runPlan(options: PlanOptions): Promise<void> {
  const timing = options.timing ?? realTiming;
  const { stop } = options;
  let failures = 0;
  // lastParamVal: undefined is Go's nil (no answer yet, or one that failed).
  let lastIndex: bigint | undefined;
  let lastResult = '';
  while (!stop.aborted) {
    let answer: { index: bigint; result: unknown };
    try {
      answer = await options.watcher(lastIndex ?? 0n, stop);
    } catch (err) {
      if (stop.aborted) break;
      failures++;
      lastIndex = undefined;
      const retryMs = Math.min(RETRY_INTERVAL_MS * failures * failures, MAX_BACKOFF_MS);
      options.onError(err, retryMs);
      if (!(await timing.sleep(retryMs, stop))) break;
      continue;
    }
    if (stop.aborted) break;
    failures = 0;
    if (lastIndex !== undefined && lastIndex === answer.index) continue;
    const previous = lastIndex;
    lastIndex = nextIndex(answer.index, previous);
    const result = marshal(answer.result);
    if (previous !== undefined && result === lastResult) continue;
    lastResult = result;
    if (!(await options.handler(answer.index, answer.result))) break;
  }
}

/** WaitIndexVal.Next: an index below the previous one starts again from 0. */
export function nextIndex(index: bigint, previous: bigint | undefined): bigint {
  if (previous === undefined) return index;
  return index < previous ? 0n : index;
}
