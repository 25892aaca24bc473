/**
 * The state machine's snapshot: the bytes a Raft snapshot carries (KVSnapshot in
 * proto/consulate/consensus/v1/snapshot.proto), so a server that falls behind the leader's log
 * can start from the leader's state instead of its whole history.
 *
 * It holds every retained revision of every key, the leases and the store's revisions: a restored
 * store answers every read at every retained revision as the original does, publishes the same
 * watch events, and hashes the same. Keys go in byte order and leases in ID order, so one state has
 * exactly one encoding.
 *
 * Decoding trusts nothing: the format version must be one this code reads, and every invariant
 * the store keeps (histories in order, versions counting up, live keys' leases granted...) is
 * checked before the caller replaces any state, so a bad snapshot fails loudly and changes nothing.
 */
import { BinaryWriter } from '@bufbuild/protobuf/wire';

import { KVSnapshot, KVSnapshotKey, KVSnapshotRevision } from '../../gen/consulate/consensus/v1/snapshot';
import { invariant } from './errors';
import { keyOf } from './key-range';
import { LeaseTable } from './leases';
import { MAX_LEASE_TTL_SECONDS, MIN_LEASE_TTL_SECONDS } from './limits';
import { KeyHistory, KeyRevision, RevisionStore } from './revision-store';

/** The version this code writes and the only one it reads. Bump it with any change in meaning. */
export const SNAPSHOT_FORMAT_VERSION = 1;

/** The state a snapshot decodes to, checked, ready for RevisionStore.load and LeaseTable.load. */
export interface DecodedSnapshot {
  readonly revision: number;
  readonly compactRevision: number;
  readonly lastLeaseId: bigint;
  readonly histories: KeyHistory[];
  readonly leases: { id: bigint; ttlSeconds: number }[];
}

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
}

/**
 * The state at one revision, taken at once and cheaply, to be encoded later while the store moves
 * on: each key's bytes and its revisions array with how many of them are in the snapshot. The
 * store appends to a history's array or replaces the array (compaction); the one entry it replaces
 * in place (compaction gives the oldest kept revision its own copy of a pooled value) holds the
 * same bytes. So the first `count` of a captured array read as they did when captured.
 */
export interface CapturedSnapshot {
  readonly header: KVSnapshot;
  readonly keys: readonly CapturedKey[];
}

interface CapturedKey {
  readonly bytes: Buffer;
  readonly revisions: readonly KeyRevision[];
  readonly count: number;
}

export function captureSnapshot(store: RevisionStore, leases: LeaseTable): CapturedSnapshot {
  const keys: CapturedKey[] = [];
  store.forEachHistory((history) => keys.push({ bytes: history.bytes, revisions: history.revisions, count: history.revisions.length }));
  const header: KVSnapshot = {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    revision: BigInt(store.currentRevision),
    compactRevision: BigInt(store.compactRevision),
    lastLeaseId: leases.lastGrantedId,
    keys: [],
    leases: leases.list().map((lease) => ({ id: lease.id, ttl: BigInt(lease.ttlSeconds) })),
  };
  return { header, keys };
}

function snapshotKey(captured: CapturedKey, revision: bigint): KVSnapshotKey {
  const revisions: KVSnapshotRevision[] = [];
  for (let i = 0; i < captured.count; i++) {
    const r = captured.revisions[i];
    revisions.push({ modRevision: BigInt(r.modRevision), subRevision: BigInt(r.subRevision), createRevision: BigInt(r.createRevision), version: BigInt(r.version), value: r.value, lease: r.lease, tombstone: r.tombstone });
  }
  invariant(revisions.length > 0 && revisions[revisions.length - 1].modRevision <= revision, () => `captured key ${captured.bytes.toString()} has a revision past the snapshot's ${revision}`);
  return { key: captured.bytes, revisions };
}

export function encodeSnapshot(store: RevisionStore, leases: LeaseTable): Uint8Array {
  const { header, keys } = captureSnapshot(store, leases);
  return KVSnapshot.encode({ ...header, keys: keys.map((key) => snapshotKey(key, header.revision)) }).finish();
}

/** Key revisions encoded between two turns of the event loop by encodeInSlices (about 1 MiB of 256-byte values). */
export const REVISIONS_PER_SLICE = 4_000;

/**
 * Encodes a captured snapshot a slice at a time, awaiting `between()` after each (the consensus
 * node passes a turn of its event loop, so heartbeats and appends go on: 60,000 keys took 130 ms
 * in one piece). A slice ends with the key that takes it to `revisionsPerSlice` revisions: a
 * slice's cost is its revisions', not its keys' (a key written 10,000 times is 10,000 to encode).
 * The bytes are those of encodeSnapshot: the fields before `keys`, each key as field 5, then `leases`.
 */
export async function encodeInSlices(captured: CapturedSnapshot, between: () => Promise<void>, revisionsPerSlice = REVISIONS_PER_SLICE): Promise<Uint8Array> {
  const { leases, ...fields } = captured.header;
  const chunks: Uint8Array[] = [KVSnapshot.encode({ ...fields, keys: [], leases: [] }).finish()];
  let writer = new BinaryWriter();
  let inSlice = 0;
  for (const key of captured.keys) {
    if (inSlice >= revisionsPerSlice) {
      chunks.push(writer.finish());
      writer = new BinaryWriter();
      inSlice = 0;
      await between();
    }
    KVSnapshotKey.encode(snapshotKey(key, fields.revision), writer.uint32(KEYS_FIELD_TAG).fork()).join();
    inSlice += key.count;
  }
  chunks.push(writer.finish());
  chunks.push(KVSnapshot.encode({ formatVersion: 0, revision: 0n, compactRevision: 0n, lastLeaseId: 0n, keys: [], leases }).finish());
  return Buffer.concat(chunks);
}

/** `repeated KVSnapshotKey keys = 5`, length-delimited: (5 << 3) | 2. */
const KEYS_FIELD_TAG = (5 << 3) | 2;

export function decodeSnapshot(bytes: Uint8Array): DecodedSnapshot {
  let snapshot: KVSnapshot;
  try {
    snapshot = KVSnapshot.decode(bytes);
  } catch (error) {
    throw new SnapshotError(`kv snapshot: not a KVSnapshot message (${(error as Error).message}); the snapshot is corrupt`);
  }
  const check = (ok: boolean, what: () => string): void => {
    if (!ok) throw new SnapshotError(`kv snapshot: ${what()}; the snapshot is corrupt or from another program`);
  };
  if (snapshot.formatVersion !== SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotError(
      `kv snapshot: format version ${snapshot.formatVersion}; this server reads version ${SNAPSHOT_FORMAT_VERSION} only: run the same Consulate version as the server that took it`,
    );
  }
  const revision = safe(snapshot.revision, 'revision', check);
  const compactRevision = safe(snapshot.compactRevision, 'compact revision', check);
  check(revision >= 1, () => `revision ${revision} is below 1`);
  check(compactRevision >= 0 && compactRevision <= revision, () => `compact revision ${compactRevision} is outside 0..${revision}`);
  check(snapshot.lastLeaseId >= 0n, () => `last lease id ${snapshot.lastLeaseId} is negative`);

  const leases: { id: bigint; ttlSeconds: number }[] = [];
  const leaseIds = new Set<bigint>();
  for (const lease of snapshot.leases) {
    const previous = leases.length > 0 ? leases[leases.length - 1].id : 0n;
    check(lease.id > previous && lease.id <= snapshot.lastLeaseId, () => `lease ${lease.id} is out of order or above the last lease id ${snapshot.lastLeaseId}`);
    check(lease.ttl >= BigInt(MIN_LEASE_TTL_SECONDS) && lease.ttl <= BigInt(MAX_LEASE_TTL_SECONDS), () => `lease ${lease.id} has ttl ${lease.ttl}`);
    leases.push({ id: lease.id, ttlSeconds: Number(lease.ttl) });
    leaseIds.add(lease.id);
  }

  const histories: KeyHistory[] = [];
  // Each (revision, sub-revision) is one change of one key: it orders the watch events.
  const changes = new Set<string>();
  let previousKey: string | undefined;
  for (const entry of snapshot.keys) {
    const key = keyOf(entry.key);
    const name = JSON.stringify(key);
    check(key.length > 0, () => 'a key is empty');
    check(previousKey === undefined || previousKey < key, () => `key ${name} is out of order`);
    previousKey = key;
    check(entry.revisions.length > 0, () => `key ${name} has no revisions`);
    const revisions: KeyRevision[] = [];
    for (const r of entry.revisions) {
      const at = `key ${name} at revision ${r.modRevision}`;
      const next: KeyRevision = {
        modRevision: safe(r.modRevision, `${at}: mod revision`, check),
        subRevision: safe(r.subRevision, `${at}: sub-revision`, check),
        createRevision: safe(r.createRevision, `${at}: create revision`, check),
        version: safe(r.version, `${at}: version`, check),
        value: r.value,
        lease: r.lease,
        tombstone: r.tombstone,
      };
      const before = revisions[revisions.length - 1];
      check(next.modRevision >= 2 && next.modRevision <= revision, () => `${at}: outside 2..${revision}`);
      check(before === undefined || before.modRevision < next.modRevision, () => `${at}: revisions out of order`);
      check(before === undefined || next.modRevision > compactRevision, () => `${at}: at or below the compact revision ${compactRevision} but not the key's oldest`);
      check(next.subRevision >= 0 && !changes.has(`${next.modRevision}.${next.subRevision}`), () => `${at}: sub-revision ${next.subRevision} repeated`);
      changes.add(`${next.modRevision}.${next.subRevision}`);
      if (next.tombstone) {
        check(before !== undefined && !before.tombstone, () => `${at}: a delete of a key not live before it`);
        check(next.createRevision === 0 && next.version === 0 && next.value.length === 0 && next.lease === 0n, () => `${at}: a delete that carries a value`);
      } else if (before === undefined) {
        // Compaction keeps a key's latest put at or below the compact revision; a first revision
        // above it is the key's creation.
        check(next.modRevision <= compactRevision || (next.version === 1 && next.createRevision === next.modRevision), () => `${at}: the key's oldest revision is not its creation`);
        check(next.version >= 1 && next.createRevision >= 2 && next.createRevision <= next.modRevision, () => `${at}: version ${next.version}, created ${next.createRevision}`);
      } else if (before.tombstone) {
        check(next.version === 1 && next.createRevision === next.modRevision, () => `${at}: a put after a delete that is not a creation`);
      } else {
        check(next.version === before.version + 1 && next.createRevision === before.createRevision, () => `${at}: version or create revision does not follow ${before.modRevision}`);
      }
      check(next.lease >= 0n, () => `${at}: lease ${next.lease}`);
      revisions.push(next);
    }
    const latest = revisions[revisions.length - 1];
    check(latest.lease === 0n || leaseIds.has(latest.lease), () => `key ${name} is attached to lease ${latest.lease}, which is not granted`);
    histories.push({ key, bytes: Buffer.from(entry.key), revisions });
  }
  return { revision, compactRevision, lastLeaseId: snapshot.lastLeaseId, histories, leases };
}

function safe(value: bigint, what: string, check: (ok: boolean, what: () => string) => void): number {
  check(value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER), () => `${what} ${value} is out of range`);
  return Number(value);
}
