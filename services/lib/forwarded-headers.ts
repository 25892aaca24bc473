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

/** The request headers that reach the catalog; hop-by-hop ones and cookies never do. */
export function travellingHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (REQUEST_HEADERS.test(name.toLowerCase())) out[name] = value;
  return out;
}

/** The headers of the catalog's answer that travel back (lower case, as node:http names them). */
export function returningHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (RESPONSE_HEADERS.test(name.toLowerCase())) out[name.toLowerCase()] = value;
  return out;
}
