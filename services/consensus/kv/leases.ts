/**
 * The lease table: which leases exist, the TTL each was granted, and which keys each holds.
 *
 * Expiry is not decided here. Time is the leader's: it keeps each lease's deadline, renews it on
 * keep-alives, and when one passes it proposes a revoke through Raft, so every server deletes the
 * same keys at the same revision (etcd's lessor works the same way). The table only remembers what
 * the log said, and lists the leases for the leader's timer after an election or a restore.
 *
 * A key's lease is the lease of its latest revision; the table's key sets mirror that for revokes,
 * and a snapshot rebuilds them from the keys rather than storing them twice.
 */
import { invariant } from './errors';

export interface LeaseInfo {
  readonly id: bigint;
  /** The TTL the lease was granted, in seconds. */
  readonly ttlSeconds: number;
  /** Its keys' index forms (latin1, see key-range.ts), in key order. */
  readonly keys: readonly string[];
}

interface Lease {
  readonly ttlSeconds: number;
  readonly keys: Set<string>;
}

const MAX_LEASE_ID = (1n << 63n) - 1n;

export class LeaseTable {
  private readonly leases = new Map<bigint, Lease>();
  private lastId = 0n;

  /** The highest ID ever granted: IDs are never reused, so a stale holder cannot renew a newer lease. */
  get lastGrantedId(): bigint {
    return this.lastId;
  }

  get size(): number {
    return this.leases.size;
  }

  has(id: bigint): boolean {
    return this.leases.has(id);
  }

  /** The ID a grant that lets the server choose gets; undefined when the highest int64 is taken. */
  nextFreeId(): bigint | undefined {
    return this.lastId < MAX_LEASE_ID ? this.lastId + 1n : undefined;
  }

  grant(id: bigint, ttlSeconds: number): void {
    invariant(id > 0n && id <= MAX_LEASE_ID, () => `lease id ${id} out of range`);
    invariant(!this.leases.has(id), () => `lease ${id} granted twice`);
    this.leases.set(id, { ttlSeconds, keys: new Set() });
    if (id > this.lastId) this.lastId = id;
  }

  /** Removes a lease (after its keys were deleted). */
  remove(id: bigint): void {
    const lease = this.leases.get(id);
    invariant(lease !== undefined && lease.keys.size === 0, () => `lease ${id} removed while missing or holding keys`);
    this.leases.delete(id);
  }

  attach(id: bigint, key: string): void {
    const lease = this.leases.get(id);
    invariant(lease !== undefined, () => `key ${JSON.stringify(key)} attached to missing lease ${id}`);
    lease.keys.add(key);
  }

  detach(id: bigint, key: string): void {
    const lease = this.leases.get(id);
    invariant(lease !== undefined && lease.keys.delete(key), () => `key ${JSON.stringify(key)} was not attached to lease ${id}`);
  }

  get(id: bigint): LeaseInfo | undefined {
    const lease = this.leases.get(id);
    return lease === undefined ? undefined : { id, ttlSeconds: lease.ttlSeconds, keys: [...lease.keys].sort() };
  }

  /** Every lease, in ID order. */
  list(): LeaseInfo[] {
    return [...this.leases.keys()].sort(compareIds).map((id) => this.get(id)!);
  }

  /** Replaces the table; the caller attaches the keys afterwards. */
  load(lastGrantedId: bigint, leases: readonly { id: bigint; ttlSeconds: number }[]): void {
    this.leases.clear();
    this.lastId = 0n;
    for (const { id, ttlSeconds } of leases) this.grant(id, ttlSeconds);
    invariant(lastGrantedId >= this.lastId && lastGrantedId <= MAX_LEASE_ID, () => `last granted lease id ${lastGrantedId} below a granted lease ${this.lastId}`);
    this.lastId = lastGrantedId;
  }
}

export function compareIds(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
