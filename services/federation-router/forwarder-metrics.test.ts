/**
 * What forward() reports for the router's metrics (forwarder.ts ForwardMetrics): one report per
 * call, with the outcome Consul's errors name (`No path to datacenter` → no_path, `Remote DC has
 * no server currently reachable` → no_server; consul-compat.md §3.7), and a datacenter label that
 * is only ever one the router knows.
 */
import { IncomingMessage, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';

import { ForwardRequest } from '../gen/consulate/router/v1/operator';
import { createLogger } from '../lib/log';
import { Area, AreaStore } from './area-store';
import { Federation } from './federation';
import { ForwardOutcome, Forwarder } from './forwarder';
import { PeerClients } from './peer-clients';
import { Route } from './routing/route-table';

const logger = createLogger({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', level: 'silent' });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 *   dc1 (this router) ── area a-2 ── dc2   (a route, but its one router is failed)
 *                    ── area a-3 ── dc3   (an area, no route yet)
 */
function forwarderWithReports(catalogAddrs: string[] = []): { forwarder: Forwarder; reports: { datacenter: string; outcome: ForwardOutcome }[] } {
  const routes = new Map<string, Route>([['dc2', { datacenter: 'dc2', path: ['dc2'], areaId: 'a-2', rttNs: 1e6, nextHops: [{ name: 'router-1.dc2', address: '127.0.0.1:1', datacenter: 'dc2', areaId: 'a-2', alive: false }], reachable: false }]]);
  const areas: Area[] = [
    { id: 'a-2', peerDatacenter: 'dc2', retryJoin: [], useTls: false, transit: false },
    { id: 'a-3', peerDatacenter: 'dc3', retryJoin: [], useTls: false, transit: false },
  ];
  const federation = { route: (dc: string) => routes.get(dc), routes: () => routes, adjacent: () => true } as unknown as Federation;
  const store = { areas: () => areas, area: (id: string) => areas.find((area) => area.id === id), catchUp: async () => undefined } as unknown as AreaStore;
  const reports: { datacenter: string; outcome: ForwardOutcome }[] = [];
  const metrics = { startForward: () => (datacenter: string, outcome: ForwardOutcome) => void reports.push({ datacenter, outcome }) };
  const forwarder = new Forwarder({ datacenter: 'dc1', catalogAddrs, logger, metrics }, federation, store, {} as PeerClients);
  cleanups.push(() => forwarder.close());
  return { forwarder, reports };
}

function request(datacenter: string): ForwardRequest {
  return { datacenter, request: { method: 'GET', path: '/v1/catalog/services', rawQuery: '', headers: {}, body: Buffer.alloc(0) } };
}

const settle = (promise: Promise<unknown>) => promise.then(() => 'ok', () => 'failed');
const soon = () => Date.now() + 5_000;

test('each outcome is reported once, under a datacenter the router knows', async () => {
  const catalog = createServer((_req: IncomingMessage, res: ServerResponse) => res.end('{}'));
  await new Promise<void>((resolve) => catalog.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => (catalog.closeAllConnections(), catalog.close(resolve))));
  const { forwarder, reports } = forwarderWithReports([`127.0.0.1:${(catalog.address() as AddressInfo).port}`]);

  // Served here for a router of dc2: answered.
  expect(await settle(forwarder.forward(request('dc1'), soon(), ['dc2'], 'dc2'))).toBe('ok');
  // A route whose every router is failed: Consul's NO_SERVER.
  expect(await settle(forwarder.forward(request('dc2'), soon(), [], undefined))).toBe('failed');
  // An area but no route, and a name nobody knows: Consul's NO_PATH; the unknown name is not a label.
  expect(await settle(forwarder.forward(request('dc3'), soon(), [], undefined))).toBe('failed');
  expect(await settle(forwarder.forward(request('dc-typo-4711'), soon(), [], undefined))).toBe('failed');
  // Our own catalog asking for our own datacenter: a caller's mistake.
  expect(await settle(forwarder.forward(request('dc1'), soon(), [], undefined))).toBe('failed');

  expect(reports).toEqual([
    { datacenter: 'dc1', outcome: 'ok' },
    { datacenter: 'dc2', outcome: 'no_server' },
    { datacenter: 'dc3', outcome: 'no_path' },
    { datacenter: 'unknown', outcome: 'no_path' },
    { datacenter: 'dc1', outcome: 'error' },
  ]);
});

test('no catalog answering a request for this datacenter is no_server', async () => {
  const { forwarder, reports } = forwarderWithReports(['127.0.0.1:1']);
  expect(await settle(forwarder.forward(request('dc1'), soon(), ['dc2'], 'dc2'))).toBe('failed');
  expect(reports).toEqual([{ datacenter: 'dc1', outcome: 'no_server' }]);
});
