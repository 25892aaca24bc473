/**
 * A digest of the state machine's logical state, for the simulator's "every server's state
 * machine is equal" check and for comparing a restored store with its original.
 *
 * It covers exactly what a snapshot holds (snapshot.ts): current and compact revisions, the last
 * lease id, every retained revision of every key in key order (sub-revisions included: they
 * order watch events), and the leases in id order. Watchers are each server's own and are left
 * out. Fields are framed with fixed widths and lengths, so two states never share an input.
 * SHA-256 from node:crypto: a computation, not I/O.
 */
import { createHash } from 'node:crypto';
import { LeaseTable } from './leases';
import { RevisionStore } from './revision-store';

const DOMAIN = 'consulate.kv.state.v1';

export function hashState(store: RevisionStore, leases: LeaseTable): string {
  const hash = createHash('sha256');
  hash.update(DOMAIN);
  const header = Buffer.alloc(8 * 3 + 4);
  header.writeDoubleBE(store.currentRevision, 0);
  header.writeDoubleBE(store.compactRevision, 8);
  header.writeBigInt64BE(leases.lastGrantedId, 16);
  header.writeUInt32BE(store.keyCount, 24);
  hash.update(header);
  // One reusable frame per revision: mod, sub, create, version, lease, tombstone, value length.
  const frame = Buffer.alloc(8 * 5 + 1 + 4);
  const keyFrame = Buffer.alloc(8);
  store.forEachHistory((history) => {
    keyFrame.writeUInt32BE(history.bytes.length, 0);
    keyFrame.writeUInt32BE(history.revisions.length, 4);
    hash.update(keyFrame);
    hash.update(history.bytes);
    for (const r of history.revisions) {
      frame.writeDoubleBE(r.modRevision, 0);
      frame.writeDoubleBE(r.subRevision, 8);
      frame.writeDoubleBE(r.createRevision, 16);
      frame.writeDoubleBE(r.version, 24);
      frame.writeBigInt64BE(r.lease, 32);
      frame.writeUInt8(r.tombstone ? 1 : 0, 40);
      frame.writeUInt32BE(r.value.length, 41);
      hash.update(frame);
      hash.update(r.value);
    }
  });
  const leaseList = leases.list();
  const leaseFrame = Buffer.alloc(16);
  leaseFrame.writeUInt32BE(leaseList.length, 0);
  hash.update(leaseFrame.subarray(0, 4));
  for (const lease of leaseList) {
    leaseFrame.writeBigInt64BE(lease.id, 0);
    leaseFrame.writeDoubleBE(lease.ttlSeconds, 8);
    hash.update(leaseFrame);
  }
  return hash.digest('hex');
}
