/**
 * The catalog's HTTP server in-process, for endpoint tests: a real CatalogHttpServer on a free
 * loopback port (so Consul's error mapping, `?pretty`, 405s and body limits are the real ones),
 * routes registered by the test, requests made with node:http.
 *
 *   const http = await startHttp((router) => registerCatalogEndpoints(router, deps));
 *   const answer = await http.request('PUT', '/v1/catalog/register', { Node: 'n1', Address: 'a' });
 *   await http.close();
 */
import { request as httpRequest } from 'node:http';

import { trace } from '@opentelemetry/api';
import pino from 'pino';

import { CatalogHttpServer, HttpRouter } from '../http/http-server';

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly json: unknown;
}

export interface HttpHarness {
  readonly address: string;
  /** `body`: a string or Buffer is sent as is, anything else as JSON. */
  request(method: string, path: string, body?: unknown): Promise<Answer>;
  close(): Promise<void>;
}

export async function startHttp(register: (router: HttpRouter) => void): Promise<HttpHarness> {
  const router = new HttpRouter();
  register(router);
  const server = new CatalogHttpServer({ router, logger: pino({ level: 'silent' }), tracer: trace.getTracer('test') });
  const address = await server.listen('127.0.0.1', 0);
  return {
    address,
    request: (method, path, body) => send(address, method, path, body),
    close: () => server.close(),
  };
}

export function send(address: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? Buffer.from(body) : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, method, path, headers: payload === undefined ? {} : { 'Content-Length': payload.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') headers[name.toLowerCase()] = value;
        resolve({ status: res.statusCode ?? 0, headers, text, json });
      });
      res.on('error', reject);
    });
    // The server may answer (413) and close before the whole body is written.
    req.on('error', reject);
    if (payload !== undefined) req.end(payload);
    else req.end();
  });
}
