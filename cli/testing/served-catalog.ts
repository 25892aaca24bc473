/**
 * The catalog's own HTTP endpoints in-process, for the CLI's tests: KV, sessions, catalog, health,
 * events and `/v1/agent/members|self` behind the real HTTP server, on a fake consensus store with
 * leases and a fake gossip agent (its user events loop back), with `catalog-1` registered (sessions need their node). What `lock`,
 * `watch` and `members` say to it is what they say to a running catalog.
 *
 *   const catalog = await serveCatalog();
 *   new HttpApi(new Map([['http-addr', catalog.base]]), {});
 *   await catalog.close();
 */
import { AddressInfo, createServer } from 'node:net';

import { trace } from '@opentelemetry/api';

import { Member } from '../../services/gen/consulate/gossip/v1/membership';
import { registerAgentEndpoints } from '../../services/catalog/http/agent-endpoint';
import { registerCatalogEndpoints } from '../../services/catalog/http/catalog-endpoint';
import { registerEventEndpoints } from '../../services/catalog/http/event-endpoint';
import { registerHealthEndpoints } from '../../services/catalog/http/health-endpoint';
import { CatalogHttpServer, HttpRouter } from '../../services/catalog/http/http-server';
import { registerKvEndpoints } from '../../services/catalog/http/kv-endpoint';
import { registerSessionEndpoints } from '../../services/catalog/http/session-endpoint';
import { LeasedFakeConsensus, kvTestDeps, registerNode } from '../../services/catalog/testing/kv-fake';
import { loopbackEvents } from '../../services/catalog/testing/loopback-events';
import { UserEvents } from '../../services/catalog/user-events';
import { createLogger } from '../../services/lib/log';
import { CommandIo } from '../command';

export interface ServedCatalog {
  readonly base: string;
  readonly consensus: LeasedFakeConsensus;
  /** What the fake gossip agent lists for `/v1/agent/members` (any segment). */
  members: Member[];
  /** One request; `body` as is (string, bytes) or JSON-encoded. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json<T = unknown>(): T }>;
  close(): Promise<void>;
}

export async function serveCatalog(): Promise<ServedCatalog> {
  const consensus = new LeasedFakeConsensus();
  registerNode(consensus, 'catalog-1');
  const deps = kvTestDeps(consensus);
  const router = new HttpRouter();
  const served = { members: [] as Member[] };
  registerKvEndpoints(router, deps);
  registerSessionEndpoints(router, deps);
  registerCatalogEndpoints(router, deps);
  registerHealthEndpoints(router, deps);
  registerAgentEndpoints(router, {
    datacenter: 'dc1',
    node: 'catalog-1',
    nodeId: '',
    address: '127.0.0.1',
    gossip: {
      members: async () => served.members,
      join: async () => ({ joined: 0, results: [] }),
      forceLeave: async () => undefined,
    },
  });
  const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'silent' });
  const events = new UserEvents({ gossip: loopbackEvents().gossip, node: 'catalog-1', localServices: () => [], logger });
  events.start();
  registerEventEndpoints(router, { datacenter: 'dc1', events });
  const server = new CatalogHttpServer({ router, logger, tracer: trace.getTracer('test') });
  const base = `http://${await server.listen('127.0.0.1', 0)}`;
  return {
    base,
    consensus,
    get members() {
      return served.members;
    },
    set members(list: Member[]) {
      served.members = list;
    },
    async call(method, path, body) {
      const payload = body === undefined ? undefined : typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
      const response = await fetch(`${base}${path}`, { method, body: payload });
      const text = await response.text();
      return { status: response.status, text, json: <T>() => JSON.parse(text) as T };
    },
    close: async () => {
      events.stop();
      await server.close();
    },
  };
}

/** A CommandIo that keeps what a command prints. */
export function captureIo(env: NodeJS.ProcessEnv = {}): { io: CommandIo; out: { stdout: string; stderr: string } } {
  const out = { stdout: '', stderr: '' };
  return { out, io: { env: { PATH: process.env.PATH, ...env }, stdout: (text) => (out.stdout += text), stderr: (text) => (out.stderr += text) } };
}

/** A loopback port nothing listens on (just released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
