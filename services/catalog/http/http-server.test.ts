import { request as httpRequest } from 'node:http';

import { trace } from '@opentelemetry/api';

import { eventually } from '../../../test/harness/processes';
import { TRACING_OFF } from '../../lib/grpc-tracing';
import { createLogger } from '../../lib/log';
import { CatalogHttpServer, HttpRouter } from './http-server';

describe('CatalogHttpServer: a request whose client goes away', () => {
  let server: CatalogHttpServer;
  let address: string;
  const seen: Array<{ path: string; aborted: () => boolean }> = [];
  let release: () => void = () => undefined;

  beforeAll(async () => {
    const router = new HttpRouter()
      .on(['GET'], '/v1/wait', (request) => {
        seen.push({ path: request.path, aborted: () => request.signal().aborted });
        // Waits until the client is gone or the test releases it, as a blocking query does.
        return new Promise((resolve) => {
          request.signal().addEventListener('abort', () => resolve({ body: 'gone' }), { once: true });
          release = () => resolve({ body: 'released' });
        });
      })
      .on(['GET'], '/v1/wait-light', (request) => {
        const cancellation = request.cancellation();
        seen.push({ path: request.path, aborted: () => cancellation.aborted });
        // A listener taken back is never called; the one left is.
        const removed = () => seen.push({ path: 'removed listener called', aborted: () => true });
        cancellation.addEventListener('abort', removed);
        cancellation.removeEventListener('abort', removed);
        return new Promise((resolve) => {
          cancellation.addEventListener('abort', () => resolve({ body: 'gone' }));
          release = () => resolve({ body: 'released' });
        });
      })
      .on(['GET'], '/v1/now', async (request) => {
        seen.push({ path: request.path, aborted: () => request.signal().aborted });
        return { body: 'now' };
      });
    server = new CatalogHttpServer({ router, logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog', level: 'silent' }), tracer: trace.getTracer('test') });
    address = await server.listen('127.0.0.1', 0);
  });

  afterAll(() => server.close());

  beforeEach(() => {
    seen.length = 0;
  });

  test("closing the connection aborts the request's signal: its wait ends", async () => {
    const [host, port] = address.split(':');
    const req = httpRequest({ host, port: Number(port), path: '/v1/wait' });
    req.on('error', () => undefined);
    req.end();
    await eventually('the request to reach its handler', () => seen.length === 1);
    expect(seen[0].aborted()).toBe(false);
    req.destroy();
    await eventually('its signal to abort', () => seen[0].aborted());
  });

  test('the lighter cancellation() says the same: aborted once the connection closes, listeners called, a removed one not', async () => {
    const [host, port] = address.split(':');
    const req = httpRequest({ host, port: Number(port), path: '/v1/wait-light' });
    req.on('error', () => undefined);
    req.end();
    await eventually('the request to reach its handler', () => seen.length === 1);
    expect(seen[0].aborted()).toBe(false);
    req.destroy();
    await eventually('its cancellation to abort', () => seen[0].aborted());
    expect(seen.map((s) => s.path)).toEqual(['/v1/wait-light']);
    // Answered, it is not aborted: its connection's later close is not the client going away.
    const waiting = fetch(`http://${address}/v1/wait-light`).then((response) => response.text());
    await eventually('the second request to reach its handler', () => seen.length === 2);
    release();
    expect(await waiting).toBe('"released"');
    expect(seen[1].aborted()).toBe(false);
  });

  test('an answered request is never aborted, its connection closed after or not', async () => {
    expect(await (await fetch(`http://${address}/v1/now`)).text()).toBe('"now"');
    const waiting = fetch(`http://${address}/v1/wait`).then((response) => response.text());
    await eventually('the request to reach its handler', () => seen.length === 2);
    release();
    expect(await waiting).toBe('"released"');
    expect(seen.map((s) => s.aborted())).toEqual([false, false]);
  });
});

describe('HttpRouter', () => {
  const handler = async () => ({ body: null });
  const router = new HttpRouter()
    .on(['GET'], '/v1/kv/*key', handler)
    .on(['GET'], '/v1/catalog/service/:service', handler)
    .on(['GET'], '/v1/:area/list', handler)
    .on(['GET'], '/v1/catalog/list', handler)
    .on(['GET'], '/v1/catalog/nodes', handler);

  test.each([
    ['/v1/catalog/service/web', '/v1/catalog/service/:service', { service: 'web' }],
    ['/v1/catalog/service/a%2Fb', '/v1/catalog/service/:service', { service: 'a/b' }],
    // The first route added that fits, whether its second segment is a word or a parameter.
    ['/v1/catalog/list', '/v1/:area/list', { area: 'catalog' }],
    ['/v1/health/list', '/v1/:area/list', { area: 'health' }],
    ['/v1/catalog/nodes', '/v1/catalog/nodes', {}],
    ['/v1/kv', '/v1/kv/*key', { key: '' }],
    ['/v1/kv/a/b%20c', '/v1/kv/*key', { key: 'a/b c' }],
  ])('%s is %s', (path, pattern, params) => {
    expect(router.match(path)).toMatchObject({ route: { pattern }, params });
  });

  test.each(['/v1/catalog/service', '/v1/catalog/service/web/extra', '/v1/nothing/here', '/v2/catalog/nodes', '/'])('%s matches nothing', (path) => {
    expect(router.match(path)).toBeUndefined();
  });

  test('a route whose second segment is empty is found beside the ones with a parameter there', () => {
    const router = new HttpRouter().on(['GET'], '/ui/', handler).on(['GET'], '/v1/:area/list', handler);
    expect(router.match('/ui/')?.route.pattern).toBe('/ui/');
    expect(router.match('/v1/kv/list')?.route.pattern).toBe('/v1/:area/list');
    expect(router.match('/v1//list')?.route.pattern).toBe('/v1/:area/list');
  });

  test('a route added after the first match is found too', () => {
    const later = new HttpRouter().on(['GET'], '/v1/catalog/nodes', handler);
    expect(later.match('/v1/status/leader')).toBeUndefined();
    later.on(['GET'], '/v1/status/leader', handler);
    expect(later.match('/v1/status/leader')?.route.pattern).toBe('/v1/status/leader');
  });
});

describe('CatalogHttpServer with tracing off (TRACING_OFF)', () => {
  test('answers as with tracing on, with no span active in the handler, a caller\'s traceparent or not', async () => {
    let active: unknown = 'not called';
    const router = new HttpRouter().on(['GET'], '/v1/now', async () => {
      active = trace.getActiveSpan();
      return { body: 'now' };
    });
    const server = new CatalogHttpServer({ router, logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog', level: 'silent' }), tracer: TRACING_OFF });
    const address = await server.listen('127.0.0.1', 0);
    try {
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const answer = await fetch(`http://${address}/v1/now`, { headers: { traceparent } });
      expect([answer.status, await answer.text()]).toEqual([200, '"now"']);
      expect(active).toBeUndefined();
      expect((await fetch(`http://${address}/v1/nothing`)).status).toBe(404);
      const wrongMethod = await fetch(`http://${address}/v1/now`, { method: 'DELETE' });
      expect(wrongMethod.status).toBe(405);
    } finally {
      await server.close();
    }
  });
});
