/**
 * The HTTP headers that cross datacenters with a forwarded request, both ways. Whoever serves a
 * forwarded request keeps only these (the catalog's ForwardedHttpService, a router asking a
 * catalog's HTTP API), so hop-by-hop headers and cookies from another datacenter never reach the
 * handlers, and only the catalog's own headers go back.
 */

/** Request headers that travel; hop-by-hop ones never do. */
const REQUEST_HEADERS = /^(content-type|x-consul-[a-z-]+|authorization|accept)$/;
/** Headers of the catalog's answer that travel back. */
const RESPONSE_HEADERS = /^(content-type|x-consul-[a-z-]+)$/;

/** The request headers that reach the catalog, names in lower case; hop-by-hop ones and cookies never do. */
export function travellingHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  return headersMatching(REQUEST_HEADERS, headers);
}

/** The headers of the catalog's answer that travel back, names in lower case as node:http gives them. */
export function returningHeaders(headers: Readonly<Record<string, string | number>>): Record<string, string> {
  return headersMatching(RESPONSE_HEADERS, headers);
}

function headersMatching(allowed: RegExp, headers: Readonly<Record<string, string | number>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (allowed.test(lower)) out[lower] = String(value);
  }
  return out;
}
