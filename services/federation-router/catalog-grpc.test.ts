// Which gRPC calls a router forwards to a catalog, and where it finds the catalog's gRPC API
// (catalog-grpc.ts). The calls themselves are in forwarder.test.ts, on real gRPC servers.
import { CATALOG_GRPC_PORT, defaultCatalogGrpcAddr, refusedMethod, refusedWatch } from './catalog-grpc';

test.each([
  '/consulate.catalog.v1.CatalogService/ListNodes',
  '/consulate.catalog.v1.CatalogService/Register',
  '/consulate.catalog.v1.HealthService/ServiceHealth',
  '/consulate.catalog.v1.KVService/Txn',
  '/consulate.catalog.v1.SessionService/Create',
  '/consulate.catalog.v1.EventService/Fire',
  // A unary method a newer catalog may add: the services are allowed, not a list of methods.
  '/consulate.catalog.v1.KVService/SomethingNew',
])('forwards %s', (method) => {
  expect(refusedMethod(method)).toBeUndefined();
});

test.each([
  ['/consulate.catalog.v1.KVService/WatchPrefix', /streams: forward watches with ForwardWatch/],
  ['/consulate.catalog.v1.HealthService/WatchServiceHealth', /streams/],
  ['/consulate.catalog.v1.EventService/Watch', /streams/],
  ['/consulate.router.v1.OperatorService/CreateArea', /is not forwarded/],
  ['/consulate.consensus.v1.KVService/Put', /is not forwarded/],
  ['/consulate.catalog.v1.KVServiceX/Get', /is not forwarded/],
  ['/consulate.catalog.v1.KVService/', /is not forwarded/],
  ['', /is not forwarded/],
])('refuses %s', (method, why) => {
  expect(refusedMethod(method)).toMatch(why);
});

test.each(['/consulate.catalog.v1.KVService/WatchPrefix', '/consulate.catalog.v1.HealthService/WatchServiceHealth'])('forwards the watch %s', (method) => {
  expect(refusedWatch(method)).toBeUndefined();
});

test.each([
  '/consulate.catalog.v1.KVService/Get',
  '/consulate.catalog.v1.KVService/WatchSomethingNew',
  '/consulate.consensus.v1.WatchService/Watch',
  // A catalog's own events: they name no datacenter, and never travel.
  '/consulate.catalog.v1.EventService/Watch',
  '',
])('refuses %j as a watch', (method) => {
  expect(refusedWatch(method)).toMatch(/is not a watch: only \/consulate\.catalog\.v1\.HealthService\/WatchServiceHealth, \/consulate\.catalog\.v1\.KVService\/WatchPrefix are forwarded as watches$/);
});

test("the catalog's gRPC address defaults to its HTTP address's host on 8502", () => {
  expect(CATALOG_GRPC_PORT).toBe(8502);
  expect(defaultCatalogGrpcAddr('127.0.1.10:8500')).toBe('127.0.1.10:8502');
  expect(defaultCatalogGrpcAddr('dc1-catalog:8500')).toBe('dc1-catalog:8502');
  expect(defaultCatalogGrpcAddr('[::1]:8500')).toBe('[::1]:8502');
});
