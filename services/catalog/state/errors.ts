/**
 * The errors of the catalog's state functions that each API maps in its own way: the HTTP API
 * answers them as Consul does (a 500 with the text, a 429 for too many blocking queries), the
 * gRPC API with a status code (grpc/status-errors.ts). The texts are Consul's where Consul has one.
 */

/** No consensus server leads, or none answered (structs.ErrNoLeader). Retry. */
export class NoLeaderError extends Error {
  override readonly name = 'NoLeaderError';
  constructor() {
    super('No cluster leader');
  }
}

/** The view did not reach the revision a read or write needs in time. Retry. */
export class ViewBehindError extends Error {
  override readonly name = 'ViewBehindError';
}

/** The catalog holds its limit of blocking queries (CatalogView MAX_WAITERS). Retry later. */
export class TooManyWaitersError extends Error {
  override readonly name = 'TooManyWaitersError';
}

/** The rows a write reads kept changing under it, past its attempts (write-plan.ts). Retry the write. */
export class WriteConflictError extends Error {
  override readonly name = 'WriteConflictError';
}

/**
 * A datacenter we have no path to (structs.ErrNoDCPath): no route through the federation routers,
 * or no router configured. Requests for other datacenters are forwarded before they reach the
 * state functions (http/remote-datacenter.ts, grpc/remote-datacenter.ts, §3.9); one that gets here
 * anyway is refused with it.
 */
export class NoPathToDatacenterError extends Error {
  override readonly name = 'NoPathToDatacenterError';
  constructor() {
    super('No path to datacenter');
  }
}

/** Throws NoPathToDatacenterError unless `datacenter` is "" or `local`. */
export function refuseOtherDatacenter(datacenter: string | undefined, local: string): void {
  if (datacenter !== undefined && datacenter !== '' && datacenter !== local) throw new NoPathToDatacenterError();
}
