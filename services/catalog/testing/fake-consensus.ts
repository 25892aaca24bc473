/**
 * An in-memory consensus store for the catalog's unit tests: etcd's KV semantics (revisions, txn
 * compares, put, deleteRange, range) on one map, feeding a CatalogView the way ViewSync does. No
 * Raft, no gRPC, no timers.
 *
 *   const consensus = new FakeConsensus();        // consensus.view is loaded at revision 1
 *   await register({ view: consensus.view, consensus }, { Node: 'n1', Address: '10.0.0.1' }, 'dc1');
 *   consensus.put('/c/n/n2', json);               // "another catalog" writes behind our back
 *
 * `deliver: 'manual'` holds the changes back from the view until `deliver()`, to test a view that
 * lags behind the store; `beforeTxn` runs just before a txn is judged, to slip a conflicting write
 * in between a plan and its commit.
 */
import { Compare, Compare_Result, Compare_Target, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse } from '../../gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../lib/consensus-client';
import { Change, CatalogView } from '../state/view';

interface Stored {
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

export interface FakeConsensusOptions {
  /** The view to feed; a fresh one, loaded empty at revision 1, when omitted. */
  readonly view?: CatalogView;
  /** 'sync' (default): the view applies each write at once; 'manual': on `deliver()`. */
  readonly deliver?: 'sync' | 'manual';
}

export class FakeConsensus {
  readonly view: CatalogView;
  /** Every txn asked for, in order (succeeded or not). */
  readonly txns: TxnRequest[] = [];
  /** Runs just before each txn is judged. */
  beforeTxn: (() => void) | undefined;
  /** Makes the next kv calls fail with this error (once each), e.g. to test "No cluster leader". */
  failNext: Error[] = [];

  private readonly store = new Map<string, Stored>();
  private currentRevision = 1;
  private readonly pending: { changes: Change[]; revision: number }[] = [];
  private readonly mode: 'sync' | 'manual';

  constructor(options: FakeConsensusOptions = {}) {
    this.view = options.view ?? new CatalogView();
    this.mode = options.deliver ?? 'sync';
    if (!this.view.isLoaded) this.view.load([], this.currentRevision);
  }

  get revision(): number {
    return this.currentRevision;
  }

  /** The KV call of ConsensusClient, on the map. */
  readonly kv = (async (method: string, request: unknown) => {
    const failure = this.failNext.shift();
    if (failure !== undefined) throw failure;
    switch (method) {
      case 'range':
        return this.range(request as RangeRequest);
      case 'put':
        this.write((changes) => this.applyPut(request as PutRequest, changes));
        return { header: this.header(), prevKv: undefined };
      case 'deleteRange': {
        let deleted = 0;
        this.write((changes) => (deleted = this.applyDelete(request as DeleteRangeRequest, changes)));
        return { header: this.header(), deleted: BigInt(deleted), prevKvs: [] };
      }
      case 'txn':
        return this.txn(request as TxnRequest);
      default:
        throw new Error(`FakeConsensus does not implement kv('${method}')`);
    }
  }) as unknown as ConsensusClient['kv'];

  /** A write by "someone else": one revision, delivered to the view like any other. */
  put(key: string, value: string | Uint8Array): number {
    this.write((changes) => this.applyPut({ key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false }, changes));
    return this.currentRevision;
  }

  delete(key: string): number {
    this.write((changes) => this.applyDelete({ key: Buffer.from(key), rangeEnd: Buffer.alloc(0), prevKv: false }, changes));
    return this.currentRevision;
  }

  /** The stored value of `key`, parsed as JSON (undefined when absent). */
  json<T = unknown>(key: string): T | undefined {
    const stored = this.store.get(key);
    return stored === undefined ? undefined : (JSON.parse(stored.value.toString('utf8')) as T);
  }

  keys(prefix = ''): string[] {
    return [...this.store.keys()].filter((key) => key.startsWith(prefix)).sort();
  }

  /** Hands the held-back changes to the view ('manual' mode). */
  deliver(): void {
    for (const batch of this.pending.splice(0)) this.view.apply(batch.changes, batch.revision);
  }

  private header() {
    return { revision: BigInt(this.currentRevision), raftTerm: 1n, member: 'fake' };
  }

  private range(request: RangeRequest): RangeResponse {
    const kvs = this.inRange(request.key, request.rangeEnd).map(([key, stored]) => this.keyValue(key, stored, request.keysOnly));
    return { header: this.header(), kvs: request.countOnly ? [] : kvs, more: false, count: BigInt(kvs.length) };
  }

  private txn(request: TxnRequest): TxnResponse {
    this.txns.push(request);
    this.beforeTxn?.();
    const succeeded = request.compare.every((compare) => this.holds(compare));
    const ops = succeeded ? request.success : request.failure;
    const responses: ResponseOp[] = [];
    this.write((changes) => {
      for (const op of ops) responses.push(this.applyOp(op, changes));
    });
    return { header: this.header(), succeeded, responses };
  }

  private applyOp(op: RequestOp, changes: Change[]): ResponseOp {
    const request = op.request;
    switch (request?.$case) {
      case 'requestRange':
        return { response: { $case: 'responseRange', value: this.range(request.value) } };
      case 'requestPut':
        this.applyPut(request.value, changes);
        return { response: { $case: 'responsePut', value: { header: undefined, prevKv: undefined } } };
      case 'requestDeleteRange':
        return { response: { $case: 'responseDeleteRange', value: { header: undefined, deleted: BigInt(this.applyDelete(request.value, changes)), prevKvs: [] } } };
      default:
        throw new Error('a txn op names no request');
    }
  }

  /** Runs `change` as one revision (none when it changed nothing, as etcd does). */
  private write<T>(change: (changes: Change[]) => T): T {
    const changes: Change[] = [];
    const result = change(changes);
    if (changes.length > 0) {
      const revision = this.currentRevision;
      if (this.mode === 'sync') this.view.apply(changes, revision);
      else this.pending.push({ changes, revision });
    }
    return result;
  }

  private applyPut(request: PutRequest, changes: Change[]): void {
    const key = request.key.toString('utf8');
    if (changes.length === 0) this.currentRevision++;
    const existing = this.store.get(key);
    const stored: Stored = { value: Buffer.from(request.value), createRevision: existing?.createRevision ?? this.currentRevision, modRevision: this.currentRevision, version: (existing?.version ?? 0) + 1 };
    this.store.set(key, stored);
    changes.push({ type: 'put', row: { key, value: new Uint8Array(stored.value), createRevision: stored.createRevision, modRevision: stored.modRevision, lease: '0' } });
  }

  private applyDelete(request: DeleteRangeRequest, changes: Change[]): number {
    const doomed = this.inRange(request.key, request.rangeEnd);
    if (doomed.length > 0 && changes.length === 0) this.currentRevision++;
    for (const [key] of doomed) {
      this.store.delete(key);
      changes.push({ type: 'delete', key, revision: this.currentRevision });
    }
    return doomed.length;
  }

  private inRange(key: Buffer, rangeEnd: Buffer): [string, Stored][] {
    if (rangeEnd.length === 0) {
      const one = this.store.get(key.toString('utf8'));
      return one === undefined ? [] : [[key.toString('utf8'), one]];
    }
    return [...this.store.entries()]
      .filter(([k]) => {
        const bytes = Buffer.from(k);
        return Buffer.compare(bytes, key) >= 0 && Buffer.compare(bytes, rangeEnd) < 0;
      })
      .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  private holds(compare: Compare): boolean {
    const stored = this.store.get(compare.key.toString('utf8'));
    const union = compare.targetUnion;
    let actual: number;
    let wanted: number;
    switch (compare.target) {
      case Compare_Target.TARGET_VERSION:
        [actual, wanted] = [stored?.version ?? 0, union?.$case === 'version' ? Number(union.value) : 0];
        break;
      case Compare_Target.TARGET_CREATE:
        [actual, wanted] = [stored?.createRevision ?? 0, union?.$case === 'createRevision' ? Number(union.value) : 0];
        break;
      case Compare_Target.TARGET_MOD:
        [actual, wanted] = [stored?.modRevision ?? 0, union?.$case === 'modRevision' ? Number(union.value) : 0];
        break;
      case Compare_Target.TARGET_LEASE:
        [actual, wanted] = [0, union?.$case === 'lease' ? Number(union.value) : 0];
        break;
      case Compare_Target.TARGET_VALUE: {
        if (stored === undefined) return false;
        [actual, wanted] = [Buffer.compare(stored.value, union?.$case === 'value' ? union.value : Buffer.alloc(0)), 0];
        break;
      }
      default:
        throw new Error(`FakeConsensus: compare target ${compare.target}`);
    }
    switch (compare.result) {
      case Compare_Result.RESULT_EQUAL:
        return actual === wanted;
      case Compare_Result.RESULT_NOT_EQUAL:
        return actual !== wanted;
      case Compare_Result.RESULT_GREATER:
        return actual > wanted;
      case Compare_Result.RESULT_LESS:
        return actual < wanted;
      default:
        throw new Error(`FakeConsensus: compare result ${compare.result}`);
    }
  }

  private keyValue(key: string, stored: Stored, keysOnly: boolean): KeyValue {
    return { key: Buffer.from(key), createRevision: BigInt(stored.createRevision), modRevision: BigInt(stored.modRevision), version: BigInt(stored.version), value: keysOnly ? Buffer.alloc(0) : stored.value, lease: 0n };
  }
}
