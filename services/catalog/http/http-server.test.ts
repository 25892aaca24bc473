import { request as httpRequest } from 'node:http';

import { trace } from '@opentelemetry/api';

import { eventually } from '../../../test/harness/processes';
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

  test('an answered request is never aborted, its connection closed after or not', async () => {
    expect(await (await fetch(`http://${address}/v1/now`)).text()).toBe('"now"');
    const waiting = fetch(`http://${address}/v1/wait`).then((response) => response.text());
    await eventually('the request to reach its handler', () => seen.length === 2);
    release();
    expect(await waiting).toBe('"released"');
    expect(seen.map((s) => s.aborted())).toEqual([false, false]);
  });
});
