/**
 * The filters catalog and health reads share, as Consul applies them: `node-meta=k:v`
 * (repeatable, every pair must match exactly: structs.SatisfiesMetaFilters), `tag` (repeatable,
 * every tag must be there, case-insensitively: state/catalog.go serviceTagsFilter), and the
 * `?filter=` expressions we do not evaluate yet.
 */
import { badRequest } from './http-errors';

/** agent/http.go parseMetaFilter: `key:value`, split at the first colon; `key` alone means value "". */
export function parseNodeMetaFilter(query: URLSearchParams): Map<string, string> | undefined {
  const pairs = query.getAll('node-meta');
  if (pairs.length === 0) return undefined;
  const filters = new Map<string, string>();
  for (const pair of pairs) {
    const colon = pair.indexOf(':');
    if (colon < 0) filters.set(pair, '');
    else filters.set(pair.slice(0, colon), pair.slice(colon + 1));
  }
  return filters;
}

export { hasAllTags, satisfiesMetaFilters } from '../state/catalog-reads';

/**
 * Consul's `filter` takes go-bexpr expressions, which Consulate does not evaluate yet. Answering
 * unfiltered would be a wrong answer that looks right, so a non-empty filter is refused.
 */
export function refuseFilterExpression(query: URLSearchParams): void {
  const filter = query.get('filter');
  if (filter !== null && filter !== '') throw badRequest('Consulate does not evaluate ?filter expressions yet: drop the parameter and filter the result on the client');
}
