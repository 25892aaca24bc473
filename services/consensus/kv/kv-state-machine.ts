/**
 * The state machine a consensus server's Raft log drives: commands (command.proto) in, etcd v3
 * answers out. Pure and deterministic: no I/O, no clock, no randomness, so every server applying
 * the same commands in the same order reaches the same state and the same `hash()`.
 *
 * `apply` never throws for a command that fails as etcd's would (a missing lease, a compacted
 * revision, a txn that changes one key twice): it returns the error and leaves the state as it
 * was. Every command checks what could make it fail before it changes anything, as etcd's
 * applier does, so a write never stops half-way. It throws only an InvariantViolation, when the
 * state is broken and this server must stop.
 *
 * Results are what the gRPC responses need without their header (the adapter adds member and
 * term), plus the store revision for it and the watch events produced. They share buffers with
 * the store: read them, encode them, do not change them.
 */
import { Command } from '../../gen/consulate/consensus/v1/command';
import {
  CompactRequest,
  CompactResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
} from '../../gen/consulate/consensus/v1/kv';
import { LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse } from '../../gen/consulate/consensus/v1/lease';
import { Event } from '../../gen/consulate/consensus/v1/watch';
import { compareHolds } from './compare';
import { KvError, invariant, kvErrors } from './errors';
import { bytesOf, keyOf, keyRangeOf } from './key-range';
import { LeaseTable } from './leases';
import { DEFAULT_KV_LIMITS, KvLimits } from './limits';
import { LATEST, RevisionStore, eventOf } from './revision-store';
import { CapturedSnapshot, captureSnapshot, decodeSnapshot, encodeSnapshot } from './snapshot';
import { hashState } from './state-hash';
import { commandError } from './validation';
import { NO_WAKE, WatchHub, WatchWake } from './watch-hub';

/** A command's response, in the command's own `$case`. */
export type CommandResponse =
  | { readonly $case: 'put'; readonly value: PutResponse }
  | { readonly $case: 'deleteRange'; readonly value: DeleteRangeResponse }
  | { readonly $case: 'txn'; readonly value: TxnResponse }
  | { readonly $case: 'compact'; readonly value: CompactResponse }
  | { readonly $case: 'leaseGrant'; readonly value: LeaseGrantResponse }
  | { readonly $case: 'leaseRevoke'; readonly value: LeaseRevokeResponse };

export type ApplyResult =
  | {
      readonly ok: true;
      /** The store revision after the command: the response header's revision. */
      readonly revision: bigint;
      readonly response: CommandResponse;
      /** The changes, in order; all at `revision` when there are any. */
      readonly events: readonly Event[];
      /** Watchers to pull and watchers cancelled. */
      readonly wake: WatchWake;
    }
  | { readonly ok: false; readonly revision: bigint; readonly error: KvError };

export type RangeOutcome = { readonly ok: true; readonly revision: bigint; readonly response: RangeResponse } | { readonly ok: false; readonly revision: bigint; readonly error: KvError };

/** A lease as the leader's timer and LeaseTimeToLive need it. */
export interface LeaseStatus {
  readonly id: bigint;
  /** The granted TTL, in seconds. */
  readonly ttl: bigint;
  /** Its keys, in byte order. */
  readonly keys: readonly Buffer[];
}

export class KvStateMachine {
  private readonly store = new RevisionStore();
  private readonly leaseTable = new LeaseTable();
  /** This server's watchers; fed by `apply`, drained by the shell. */
  readonly watches: WatchHub;
  private compaction: { readonly revision: number; readonly keyRevisionsDropped: number } | undefined;

  constructor(limits: KvLimits = DEFAULT_KV_LIMITS) {
    const store = this.store;
    this.watches = new WatchHub(
      {
        get currentRevision() {
          return store.currentRevision;
        },
        get compactRevision() {
          return store.compactRevision;
        },
        eventsSince: (range, fromRevision) => store.changesSince(range, fromRevision).map(eventOf),
      },
      limits,
    );
  }

  get revision(): bigint {
    return BigInt(this.store.currentRevision);
  }

  get compactRevision(): bigint {
    return BigInt(this.store.compactRevision);
  }

  /** Changes held over every key (puts and tombstones): the history compaction frees. */
  get retainedRevisions(): number {
    return this.store.retainedRevisions;
  }

  /** The last compaction applied here and how many changes it forgot; none since start or restore. */
  get lastCompaction(): { readonly revision: number; readonly keyRevisionsDropped: number } | undefined {
    return this.compaction;
  }

  apply(command: Command): ApplyResult {
    const error = commandError(command);
    if (error !== undefined) return this.failed(error);
    const op = command.op!;
    switch (op.$case) {
      case 'put':
        return this.applyPut(op.value);
      case 'deleteRange':
        return this.write((events) => ({ $case: 'deleteRange', value: this.deleteRange(op.value, events) }));
      case 'txn':
        return this.applyTxn(op.value);
      case 'compact':
        return this.applyCompact(op.value);
      case 'leaseGrant':
        return this.applyLeaseGrant(op.value);
      case 'leaseRevoke':
        return this.applyLeaseRevoke(op.value);
    }
  }

  /** A read outside the log (after ReadIndex, or serializable): etcd's Range. */
  range(request: RangeRequest): RangeOutcome {
    if (request.key.length === 0) return this.failed(kvErrors.keyNotProvided('a range needs a key; use "\\0" with range_end "\\0" for every key'));
    const error = this.store.readError(Number(request.revision));
    if (error !== undefined) return this.failed(error);
    return { ok: true, revision: this.revision, response: this.rangeAt(request) };
  }

  /** Every lease, in id order: the leader arms a timer for each after it is elected. */
  leases(): LeaseStatus[] {
    return this.leaseTable.list().map((lease) => ({ id: lease.id, ttl: BigInt(lease.ttlSeconds), keys: lease.keys.map(bytesOf) }));
  }

  lease(id: bigint): LeaseStatus | undefined {
    const lease = this.leaseTable.get(id);
    return lease === undefined ? undefined : { id, ttl: BigInt(lease.ttlSeconds), keys: lease.keys.map(bytesOf) };
  }

  /** The whole replicated state, encoded (snapshot.ts). */
  snapshot(): Uint8Array {
    return encodeSnapshot(this.store, this.leaseTable);
  }

  /** The whole replicated state as of now, to encode later in slices (snapshot.ts encodeInSlices). */
  captureSnapshot(): CapturedSnapshot {
    return captureSnapshot(this.store, this.leaseTable);
  }

  /**
   * Replaces the whole state with a snapshot's. Throws a SnapshotError, changing nothing, when the
   * bytes are not a valid snapshot. Watchers survive and catch up from the new history.
   */
  restore(bytes: Uint8Array): WatchWake {
    const decoded = decodeSnapshot(bytes);
    const previousRevision = this.store.currentRevision;
    this.store.load(decoded.histories, decoded.revision, decoded.compactRevision);
    this.compaction = undefined;
    this.leaseTable.load(decoded.lastLeaseId, decoded.leases);
    for (const history of decoded.histories) {
      const latest = history.revisions[history.revisions.length - 1];
      if (!latest.tombstone && latest.lease !== 0n) this.leaseTable.attach(latest.lease, history.key);
    }
    return this.watches.restored(previousRevision);
  }

  /** A digest of the replicated state (state-hash.ts): equal on servers that applied the same log. */
  hash(): string {
    return hashState(this.store, this.leaseTable);
  }

  private applyPut(request: PutRequest): ApplyResult {
    if (request.lease !== 0n && !this.leaseTable.has(request.lease)) return this.failed(kvErrors.leaseNotFound(request.lease));
    return this.write((events) => ({ $case: 'put', value: this.put(request, events) }));
  }

  private applyTxn(request: TxnRequest): ApplyResult {
    const succeeded = request.compare.every((compare) => compareHolds(compare, this.store.get(keyOf(compare.key))));
    const ops = succeeded ? request.success : request.failure;
    // etcd's checkRequests: the branch taken must be able to run whole before any of it runs.
    for (const op of ops) {
      const r = op.request!;
      if (r.$case === 'requestPut' && r.value.lease !== 0n && !this.leaseTable.has(r.value.lease)) return this.failed(kvErrors.leaseNotFound(r.value.lease));
      if (r.$case === 'requestRange') {
        const error = this.store.readError(Number(r.value.revision));
        if (error !== undefined) return this.failed(error);
      }
    }
    return this.write((events) => ({
      $case: 'txn',
      value: { header: undefined, succeeded, responses: ops.map((op) => this.runOp(op, events)) },
    }));
  }

  private runOp(op: RequestOp, events: Event[]): ResponseOp {
    const r = op.request!;
    switch (r.$case) {
      case 'requestRange':
        return { response: { $case: 'responseRange', value: this.rangeAt(r.value) } };
      case 'requestPut':
        return { response: { $case: 'responsePut', value: this.put(r.value, events) } };
      case 'requestDeleteRange':
        return { response: { $case: 'responseDeleteRange', value: this.deleteRange(r.value, events) } };
    }
  }

  private applyCompact(request: CompactRequest): ApplyResult {
    const revision = Number(request.revision);
    // etcd's order: at or below the last compaction first, then future.
    if (revision <= this.store.compactRevision) return this.failed(kvErrors.compacted(this.store.compactRevision));
    if (revision > this.store.currentRevision) return this.failed(kvErrors.futureRevision(this.store.currentRevision));
    this.compaction = { revision, keyRevisionsDropped: this.store.compact(revision) };
    const wake = this.watches.compacted(revision);
    return { ok: true, revision: this.revision, response: { $case: 'compact', value: { header: undefined } }, events: [], wake };
  }

  private applyLeaseGrant(request: LeaseGrantRequest): ApplyResult {
    const id = request.id === 0n ? this.leaseTable.nextFreeId() : request.id;
    if (id === undefined) return this.failed(kvErrors.leaseIdsExhausted());
    if (this.leaseTable.has(id)) return this.failed(kvErrors.leaseExists(id));
    this.leaseTable.grant(id, Number(request.ttl));
    return { ok: true, revision: this.revision, response: { $case: 'leaseGrant', value: { header: undefined, id, ttl: request.ttl } }, events: [], wake: NO_WAKE };
  }

  private applyLeaseRevoke(request: LeaseRevokeRequest): ApplyResult {
    const lease = this.leaseTable.get(request.id);
    if (lease === undefined) return this.failed(kvErrors.leaseNotFound(request.id));
    // All of its keys go in one revision, in key order (etcd's lessor sorts them too).
    return this.write((events) => {
      for (const key of lease.keys) {
        const history = this.store.history(key)!;
        const change = this.store.delete(history);
        invariant(change.previous!.lease === request.id, () => `key ${JSON.stringify(key)} listed under lease ${request.id} but attached to ${change.previous!.lease}`);
        this.leaseTable.detach(request.id, key);
        events.push(eventOf(change));
      }
      this.leaseTable.remove(request.id);
      return { $case: 'leaseRevoke', value: { header: undefined } };
    });
  }

  /** Runs `change` as one write: one revision when it changed anything, none otherwise. */
  private write(change: (events: Event[]) => CommandResponse): ApplyResult {
    const before = this.store.currentRevision;
    const events: Event[] = [];
    this.store.begin();
    const response = change(events);
    const changed = this.store.end();
    const revision = this.store.currentRevision;
    invariant(changed === events.length > 0 && revision === before + (changed ? 1 : 0), () => `write from revision ${before} ended at ${revision} with ${events.length} events`);
    const wake = changed ? this.watches.publish(revision, events) : NO_WAKE;
    return { ok: true, revision: BigInt(revision), response, events, wake };
  }

  private put(request: PutRequest, events: Event[]): PutResponse {
    const key = keyOf(request.key);
    const change = this.store.put(key, request.key, request.value, request.lease);
    const previousLease = change.previous?.lease ?? 0n;
    if (previousLease !== 0n) this.leaseTable.detach(previousLease, key);
    if (request.lease !== 0n) this.leaseTable.attach(request.lease, key);
    const event = eventOf(change);
    events.push(event);
    return { header: undefined, prevKv: request.prevKv ? event.prevKv : undefined };
  }

  private deleteRange(request: DeleteRangeRequest, events: Event[]): DeleteRangeResponse {
    const targets = this.store.liveKeys(keyRangeOf(request.key, request.rangeEnd));
    const prevKvs: KeyValue[] = [];
    for (const history of targets) {
      const change = this.store.delete(history);
      if (change.previous!.lease !== 0n) this.leaseTable.detach(change.previous!.lease, history.key);
      const event = eventOf(change);
      events.push(event);
      if (request.prevKv) prevKvs.push(event.prevKv!);
    }
    return { header: undefined, deleted: BigInt(targets.length), prevKvs };
  }

  /** A range whose revision `readError` accepted; 0 reads the latest, an open write's changes included. */
  private rangeAt(request: RangeRequest): RangeResponse {
    const revision = Number(request.revision);
    const result = this.store.range(keyRangeOf(request.key, request.rangeEnd), revision > 0 ? revision : LATEST, {
      limit: Number(request.limit),
      keysOnly: request.keysOnly,
      countOnly: request.countOnly,
    });
    return { header: undefined, kvs: result.kvs, more: result.more, count: BigInt(result.count) };
  }

  private failed(error: KvError): { readonly ok: false; readonly revision: bigint; readonly error: KvError } {
    return { ok: false, revision: this.revision, error };
  }
}
