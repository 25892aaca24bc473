/**
 * requestUrl (http-server.ts) splits a plain request URL without the URL parser: whatever comes,
 * it gives the path, query and parameters the URL parser gives.
 */
import fc from 'fast-check';

import { requestUrl } from './http-server';

const parsed = (parse: () => { pathname: string; search: string; searchParams: URLSearchParams }) => {
  try {
    const url = parse();
    return { pathname: url.pathname, search: url.search, params: [...url.searchParams] };
  } catch (err) {
    return { refused: (err as Error).message };
  }
};

describe('requestUrl', () => {
  test('gives what the URL parser gives, for URLs made of the characters that matter to it', () => {
    const char = fc.constantFrom(...'aZ09-._~!$&\'()*+,;=:@/%?#[]{}<>"` \\|^2eE+'.split(''), '%2e', '%2E', '%2f', '/.', '/..', '//', '\u00e9', '\t');
    fc.assert(
      fc.property(fc.array(char, { maxLength: 24 }).map((chars) => `/${chars.join('')}`), (raw) => {
        expect(parsed(() => requestUrl(raw))).toEqual(parsed(() => new URL(raw, 'http://catalog')));
      }),
      { seed: 0x0c1, numRuns: 5000 },
    );
  });

  test('the requests of the API, as they come', () => {
    for (const raw of ['/v1/catalog/service/web?dc=dc2&stale', '/v1/kv/a/b.c?recurse', '/v1/kv/?keys&separator=/', '/v1/health/service/web?', '/v1/agent/self', '/v1/kv/a%2Fb?cas=0', '/v1/kv/./a', '/v1/kv/a%2e%2e']) {
      expect(parsed(() => requestUrl(raw))).toEqual(parsed(() => new URL(raw, 'http://catalog')));
    }
  });
});
