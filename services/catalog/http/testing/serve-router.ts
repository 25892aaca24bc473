/** Endpoint tests: a router behind the real HTTP server on an ephemeral port, and a fetch helper. */
import { trace } from '@opentelemetry/api';

import { createLogger } from '../../../lib/log';
import { CatalogHttpServer, HttpRouter } from '../http-server';

export interface Served {
  /** `method path` (with `body`) → status, body text, headers. */
  request(path: string, method?: string, body?: string | Buffer): Promise<{ status: number; text: string; headers: Headers; json(): unknown }>;
  close(): Promise<void>;
}

export async function serveRouter(register: (router: HttpRouter) => void): Promise<Served> {
  const router = new HttpRouter();
  register(router);
  const server = new CatalogHttpServer({ router, logger: createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog', level: 'silent' }), tracer: trace.getTracer('test') });
  const base = `http://${await server.listen('127.0.0.1', 0)}`;
  return {
    async request(path, method = 'GET', body?: string | Buffer) {
      const response = await fetch(`${base}${path}`, { method, body });
      const text = await response.text();
      return { status: response.status, text, headers: response.headers, json: () => JSON.parse(text) };
    },
    close: () => server.close(),
  };
}
