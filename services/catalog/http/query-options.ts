/**
 * The query parameters every Consul read takes (agent/http.go `parseWait`, `parseConsistency`,
 * `parseDC`; reference/consul-compat.md §4.4-4.5), parsed once, with Consul's 400 texts.
 */
import { ConsistencyMode, DEFAULT_WAIT_MS, MAX_WAIT_MS } from '../state/consistent-read';
import { parseGoDuration } from '../../lib/go-text';
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
    const parsed = parseGoDuration(maxStale);
    if (parsed.error !== undefined) throw badRequest(`Invalid max_stale value "${maxStale}"`);
    maxStaleMs = parsed.ns / 1e6;
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
    const parsed = parseGoDuration(wait);
    if (parsed.error !== undefined) throw badRequest('Invalid wait time');
    const ms = parsed.ns / 1e6;
    waitMs = ms <= 0 ? DEFAULT_WAIT_MS : Math.min(ms, MAX_WAIT_MS);
  }

  const dc = query.get('dc');
  return { datacenter: dc === null || dc === '' ? localDatacenter : dc, minIndex, waitMs, consistency: consistent ? 'consistent' : stale || (maxStale !== null && maxStaleMs > 0) ? 'stale' : 'default', maxStaleMs };
}
