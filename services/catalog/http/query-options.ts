/**
 * The query parameters every Consul read takes (agent/http.go `parseWait`, `parseConsistency`,
 * `parseDC`; reference/consul-compat.md §4.4-4.5), parsed once, with Consul's 400 texts.
 */
import { ConsistencyMode, DEFAULT_WAIT_MS, MAX_WAIT_MS } from '../state/consistent-read';
import { badRequest } from './http-errors';

export { ConsistencyMode, DEFAULT_WAIT_MS, JITTER_FRACTION, MAX_WAIT_MS } from '../state/consistent-read';

export interface QueryOptions {
  /** The datacenter asked for; the catalog's own when absent. */
  readonly datacenter: string;
  /** Block until the result's index passes this; 0 does not block. */
  readonly minIndex: number;
  /** How long to block at most, jitter not included. */
  readonly waitMs: number;
  readonly consistency: ConsistencyMode;
  /** `?stale` may serve a view this far behind the leader's last contact (0: any). */
  readonly maxStaleMs: number;
}

export function parseQueryOptions(query: URLSearchParams, localDatacenter: string): QueryOptions {
  const stale = query.has('stale');
  const consistent = query.has('consistent');
  const cached = query.has('cached');
  if (stale && consistent) throw badRequest('Cannot specify ?stale with ?consistent, conflicting semantics.');
  if (cached && consistent) throw badRequest('Cannot specify ?cached with ?consistent, conflicting semantics.');

  let maxStaleMs = 0;
  const maxStale = query.get('max_stale');
  if (maxStale !== null) {
    const parsed = parseGoDurationMs(maxStale);
    if (parsed === undefined) throw badRequest(`Invalid max_stale value "${maxStale}"`);
    maxStaleMs = parsed;
  }

  let minIndex = 0;
  const index = query.get('index');
  if (index !== null) {
    if (!/^\d+$/.test(index) || !Number.isSafeInteger(Number(index))) throw badRequest('Invalid index');
    minIndex = Number(index);
  }

  let waitMs = DEFAULT_WAIT_MS;
  const wait = query.get('wait');
  if (wait !== null) {
    const parsed = parseGoDurationMs(wait);
    if (parsed === undefined) throw badRequest('Invalid wait time');
    waitMs = parsed <= 0 ? DEFAULT_WAIT_MS : Math.min(parsed, MAX_WAIT_MS);
  }

  const dc = query.get('dc');
  return { datacenter: dc === null || dc === '' ? localDatacenter : dc, minIndex, waitMs, consistency: consistent ? 'consistent' : stale || (maxStale !== null && maxStaleMs > 0) ? 'stale' : 'default', maxStaleMs };
}

/** Go's time.ParseDuration: "300ms", "1.5h", "2h45m"; a bare "0" too. undefined when invalid. */
export function parseGoDurationMs(text: string): number | undefined {
  if (text === '0') return 0;
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
  const match = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/.test(text);
  if (!match) return undefined;
  const negative = text.startsWith('-');
  let total = 0;
  for (const [, value, unit] of text.replace(/^[+-]/, '').matchAll(/((?:\d+(?:\.\d*)?|\.\d+))(ns|us|µs|ms|s|m|h)/g)) total += Number(value) * units[unit];
  return negative ? -total : total;
}
