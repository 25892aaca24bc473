/**
 * The reference model: the simplest KV store that can be right, for model-based tests (and the
 * simulator, should it want one). It keeps a full copy of the key space for every revision,
 * writes etcd's rules out plainly, and shares no code with the store it checks. It is slow on
 * purpose; its answers are the specification.
 *
 * Commands are described as `ModelCommand`s, with keys and values as latin1 strings (one char per
 * byte); `toCommand` turns one into the protobuf command the store applies. Both sides' answers
 * are reduced to plain data (`Outcome`) so they compare with toEqual.
 */
import { Command } from '../../gen/consulate/consensus/v1/command';
import { Compare_Result, Compare_Target, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RangeResponse, RequestOp } from '../../gen/consulate/consensus/v1/kv';
import { Event, Event_EventType } from '../../gen/consulate/consensus/v1/watch';
import type { ApplyResult, CommandResponse, RangeOutcome } from './kv-state-machine';

export type CompareTarget = 'version' | 'create' | 'mod' | 'value' | 'lease';
export type CompareResult = 'EQUAL' | 'NOT_EQUAL' | 'GREATER' | 'LESS';

export interface ModelCompare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  /** A number for version, create, mod and lease; a string for value. */
  readonly operand: number | string;
}

export interface ModelRange {
  readonly kind: 'range';
  readonly key: string;
  /** '' for one key, '\0' for every key >= key. */
  readonly end: string;
  /** 0 for the latest. */
  readonly revision: number;
  readonly limit: number;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
}

export type ModelOp =
  | ModelRange
  | { readonly kind: 'put'; readonly key: string; readonly value: string; readonly lease: bigint; readonly prevKv: boolean }
  | { readonly kind: 'delete'; readonly key: string; readonly end: string; readonly prevKv: boolean };

export type ModelCommand =
  | Exclude<ModelOp, ModelRange>
  | { readonly kind: 'txn'; readonly compares: readonly ModelCompare[]; readonly success: readonly ModelOp[]; readonly failure: readonly ModelOp[] }
  | { readonly kind: 'compact'; readonly revision: number }
  | { readonly kind: 'grant'; readonly id: bigint; readonly ttl: number }
  | { readonly kind: 'revoke'; readonly id: bigint };

/** [key, value, create_revision, mod_revision, version, lease] */
export type PlainKv = readonly [string, string, number, number, number, bigint];
export type PlainEvent = readonly ['PUT' | 'DELETE', PlainKv, PlainKv | null];
export type Outcome =
  | { readonly ok: false; readonly code: string }
  | { readonly ok: true; readonly revision: number; readonly response: unknown; readonly events: readonly PlainEvent[] };

interface Kv {
  readonly value: string;
  readonly create: number;
  readonly mod: number;
  readonly version: number;
  readonly lease: bigint;
}

type State = ReadonlyMap<string, Kv>;

export class ReferenceModel {
  /** states[r] is the key space at revision r; states[1] is the empty store. */
  readonly states: State[] = [new Map(), new Map()];
  compacted = 0;
  readonly leases = new Map<bigint, number>();
  lastLeaseId = 0n;
  /** Every event ever, with its revision, in order. */
  readonly log: { readonly revision: number; readonly event: PlainEvent }[] = [];

  get revision(): number {
    return this.states.length - 1;
  }

  apply(command: ModelCommand): Outcome {
    switch (command.kind) {
      case 'put':
        if (command.lease !== 0n && !this.leases.has(command.lease)) return { ok: false, code: 'NOT_FOUND' };
        return this.write((working, revision, events) => ({ prev: this.put(working, revision, events, command) }));
      case 'delete':
        return this.write((working, revision, events) => this.delete(working, revision, events, command));
      case 'txn':
        return this.txn(command);
      case 'compact':
        if (command.revision <= this.compacted || command.revision > this.revision) return { ok: false, code: 'OUT_OF_RANGE' };
        this.compacted = command.revision;
        return { ok: true, revision: this.revision, response: {}, events: [] };
      case 'grant': {
        if (command.ttl < 1) return { ok: false, code: 'INVALID_ARGUMENT' };
        if (command.ttl > 9_000_000_000) return { ok: false, code: 'OUT_OF_RANGE' };
        const id = command.id === 0n ? this.lastLeaseId + 1n : command.id;
        if (this.leases.has(id)) return { ok: false, code: 'ALREADY_EXISTS' };
        this.leases.set(id, command.ttl);
        if (id > this.lastLeaseId) this.lastLeaseId = id;
        return { ok: true, revision: this.revision, response: { id, ttl: command.ttl }, events: [] };
      }
      case 'revoke': {
        if (!this.leases.has(command.id)) return { ok: false, code: 'NOT_FOUND' };
        const keys = [...this.latest().entries()]
          .filter(([, kv]) => kv.lease === command.id)
          .map(([key]) => key)
          .sort();
        this.leases.delete(command.id);
        return this.write((working, revision, events) => {
          for (const key of keys) this.remove(working, revision, events, key);
          return {};
        });
      }
    }
  }

  range(request: ModelRange): Outcome {
    const error = this.readError(request.revision);
    if (error !== undefined) return error;
    return { ok: true, revision: this.revision, response: this.rangeIn(this.states[request.revision || this.revision], request), events: [] };
  }

  latest(): State {
    return this.states[this.revision];
  }

  /** The live keys attached to a lease, sorted. */
  leaseKeys(id: bigint): string[] {
    return [...this.latest().entries()]
      .filter(([, kv]) => kv.lease === id)
      .map(([key]) => key)
      .sort();
  }

  private readError(revision: number): Outcome | undefined {
    if (revision > this.revision) return { ok: false, code: 'OUT_OF_RANGE' };
    if (revision > 0 && revision < this.compacted) return { ok: false, code: 'OUT_OF_RANGE' };
    return undefined;
  }

  private txn(command: Extract<ModelCommand, { kind: 'txn' }>): Outcome {
    for (const ops of [command.success, command.failure]) {
      const puts = ops.filter((op) => op.kind === 'put').map((op) => op.key);
      if (new Set(puts).size !== puts.length) return { ok: false, code: 'INVALID_ARGUMENT' };
      for (const op of ops) {
        if (op.kind === 'delete' && puts.some((key) => inRange(op.key, op.end, key))) return { ok: false, code: 'INVALID_ARGUMENT' };
      }
    }
    const latest = this.latest();
    const succeeded = command.compares.every((c) => compareHolds(latest.get(c.key), c));
    const ops = succeeded ? command.success : command.failure;
    for (const op of ops) {
      if (op.kind === 'put' && op.lease !== 0n && !this.leases.has(op.lease)) return { ok: false, code: 'NOT_FOUND' };
      if (op.kind === 'range') {
        const error = this.readError(op.revision);
        if (error !== undefined) return error;
      }
    }
    return this.write((working, revision, events) => ({
      succeeded,
      responses: ops.map((op) => {
        switch (op.kind) {
          case 'range':
            return { range: this.rangeIn(op.revision === 0 ? working : this.states[op.revision], op) };
          case 'put':
            return { put: { prev: this.put(working, revision, events, op) } };
          case 'delete':
            return { delete: this.delete(working, revision, events, op) };
        }
      }),
    }));
  }

  /** Runs a write on a copy of the latest state; keeps it as the next revision if it changed anything. */
  private write(change: (working: Map<string, Kv>, revision: number, events: PlainEvent[]) => unknown): Outcome {
    const working = new Map(this.latest());
    const revision = this.revision + 1;
    const events: PlainEvent[] = [];
    const response = change(working, revision, events);
    if (events.length > 0) {
      this.states.push(working);
      for (const event of events) this.log.push({ revision, event });
    }
    return { ok: true, revision: this.revision, response, events };
  }

  private put(working: Map<string, Kv>, revision: number, events: PlainEvent[], op: { key: string; value: string; lease: bigint; prevKv: boolean }): PlainKv | null {
    const prev = working.get(op.key);
    const kv: Kv = { value: op.value, create: prev ? prev.create : revision, mod: revision, version: prev ? prev.version + 1 : 1, lease: op.lease };
    working.set(op.key, kv);
    events.push(['PUT', plain(op.key, kv), prev ? plain(op.key, prev) : null]);
    return op.prevKv && prev ? plain(op.key, prev) : null;
  }

  private delete(working: Map<string, Kv>, revision: number, events: PlainEvent[], op: { key: string; end: string; prevKv: boolean }): unknown {
    const keys = [...working.keys()].filter((key) => inRange(op.key, op.end, key)).sort();
    const prev = keys.map((key) => this.remove(working, revision, events, key));
    return { deleted: keys.length, prev: op.prevKv ? prev : [] };
  }

  private remove(working: Map<string, Kv>, revision: number, events: PlainEvent[], key: string): PlainKv {
    const prev = plain(key, working.get(key)!);
    working.delete(key);
    events.push(['DELETE', [key, '', 0, revision, 0, 0n], prev]);
    return prev;
  }

  private rangeIn(state: State, op: ModelRange): unknown {
    const keys = [...state.keys()].filter((key) => inRange(op.key, op.end, key)).sort();
    if (op.countOnly) return { kvs: [], count: keys.length, more: false };
    const shown = op.limit > 0 ? keys.slice(0, op.limit) : keys;
    return {
      kvs: shown.map((key) => {
        const kv = plain(key, state.get(key)!);
        return op.keysOnly ? ([kv[0], '', kv[2], kv[3], kv[4], kv[5]] as const) : kv;
      }),
      count: keys.length,
      more: shown.length < keys.length,
    };
  }
}

/** etcd's key ranges, written plainly: '' is one key, '\0' every key from `key`. */
export function inRange(key: string, end: string, candidate: string): boolean {
  if (end === '') return candidate === key;
  if (end === '\0') return candidate >= key;
  return candidate >= key && candidate < end;
}

function compareHolds(kv: Kv | undefined, c: ModelCompare): boolean {
  let actual: number | bigint | string;
  let wanted: number | bigint | string = c.operand;
  switch (c.target) {
    case 'version':
      actual = kv?.version ?? 0;
      break;
    case 'create':
      actual = kv?.create ?? 0;
      break;
    case 'mod':
      actual = kv?.mod ?? 0;
      break;
    case 'lease':
      actual = kv?.lease ?? 0n;
      wanted = BigInt(c.operand);
      break;
    case 'value':
      // etcd: a value compare on a missing key is false, whatever the operator.
      if (kv === undefined) return false;
      actual = kv.value;
      break;
  }
  switch (c.result) {
    case 'EQUAL':
      return actual === wanted;
    case 'NOT_EQUAL':
      return actual !== wanted;
    case 'GREATER':
      return actual > wanted;
    case 'LESS':
      return actual < wanted;
  }
}

function plain(key: string, kv: Kv): PlainKv {
  return [key, kv.value, kv.create, kv.mod, kv.version, kv.lease];
}

// ---- From model commands to protobuf, and from the store's answers to plain data. ----

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

const TARGETS: Record<CompareTarget, Compare_Target> = {
  version: Compare_Target.TARGET_VERSION,
  create: Compare_Target.TARGET_CREATE,
  mod: Compare_Target.TARGET_MOD,
  value: Compare_Target.TARGET_VALUE,
  lease: Compare_Target.TARGET_LEASE,
};

const RESULTS: Record<CompareResult, Compare_Result> = {
  EQUAL: Compare_Result.RESULT_EQUAL,
  NOT_EQUAL: Compare_Result.RESULT_NOT_EQUAL,
  GREATER: Compare_Result.RESULT_GREATER,
  LESS: Compare_Result.RESULT_LESS,
};

export function toRangeRequest(op: ModelRange): RangeRequest {
  return {
    key: latin1(op.key),
    rangeEnd: latin1(op.end),
    limit: BigInt(op.limit),
    revision: BigInt(op.revision),
    consistency: 0,
    keysOnly: op.keysOnly,
    countOnly: op.countOnly,
  };
}

function toRequestOp(op: ModelOp): RequestOp {
  switch (op.kind) {
    case 'range':
      return { request: { $case: 'requestRange', value: toRangeRequest(op) } };
    case 'put':
      return { request: { $case: 'requestPut', value: putRequestOf(op) } };
    case 'delete':
      return { request: { $case: 'requestDeleteRange', value: deleteRequestOf(op) } };
  }
}

function putRequestOf(op: Extract<ModelOp, { kind: 'put' }>): PutRequest {
  return { key: latin1(op.key), value: latin1(op.value), lease: op.lease, prevKv: op.prevKv };
}

function deleteRequestOf(op: Extract<ModelOp, { kind: 'delete' }>): DeleteRangeRequest {
  return { key: latin1(op.key), rangeEnd: latin1(op.end), prevKv: op.prevKv };
}

export function toCommand(command: ModelCommand): Command {
  switch (command.kind) {
    case 'put':
      return { op: { $case: 'put', value: putRequestOf(command) } };
    case 'delete':
      return { op: { $case: 'deleteRange', value: deleteRequestOf(command) } };
    case 'txn':
      return {
        op: {
          $case: 'txn',
          value: {
            compare: command.compares.map((c) => ({
              key: latin1(c.key),
              target: TARGETS[c.target],
              result: RESULTS[c.result],
              targetUnion:
                c.target === 'value'
                  ? { $case: 'value', value: latin1(String(c.operand)) }
                  : c.target === 'version'
                    ? { $case: 'version', value: BigInt(c.operand) }
                    : c.target === 'create'
                      ? { $case: 'createRevision', value: BigInt(c.operand) }
                      : c.target === 'mod'
                        ? { $case: 'modRevision', value: BigInt(c.operand) }
                        : { $case: 'lease', value: BigInt(c.operand) },
            })),
            success: command.success.map(toRequestOp),
            failure: command.failure.map(toRequestOp),
          },
        },
      };
    case 'compact':
      return { op: { $case: 'compact', value: { revision: BigInt(command.revision) } } };
    case 'grant':
      return { op: { $case: 'leaseGrant', value: { id: command.id, ttl: BigInt(command.ttl) } } };
    case 'revoke':
      return { op: { $case: 'leaseRevoke', value: { id: command.id } } };
  }
}

export function plainKv(kv: KeyValue): PlainKv {
  return [kv.key.toString('latin1'), kv.value.toString('latin1'), Number(kv.createRevision), Number(kv.modRevision), Number(kv.version), kv.lease];
}

export function plainEvent(event: Event): PlainEvent {
  return [event.type === Event_EventType.EVENT_TYPE_PUT ? 'PUT' : 'DELETE', plainKv(event.kv!), event.prevKv ? plainKv(event.prevKv) : null];
}

function plainRange(response: RangeResponse): unknown {
  return { kvs: response.kvs.map(plainKv), count: Number(response.count), more: response.more };
}

function plainResponse(response: CommandResponse): unknown {
  switch (response.$case) {
    case 'put':
      return { prev: response.value.prevKv ? plainKv(response.value.prevKv) : null };
    case 'deleteRange':
      return { deleted: Number(response.value.deleted), prev: response.value.prevKvs.map(plainKv) };
    case 'txn':
      return {
        succeeded: response.value.succeeded,
        responses: response.value.responses.map((r) => {
          const inner = r.response!;
          switch (inner.$case) {
            case 'responseRange':
              return { range: plainRange(inner.value) };
            case 'responsePut':
              return { put: { prev: inner.value.prevKv ? plainKv(inner.value.prevKv) : null } };
            case 'responseDeleteRange':
              return { delete: { deleted: Number(inner.value.deleted), prev: inner.value.prevKvs.map(plainKv) } };
          }
        }),
      };
    case 'compact':
    case 'leaseRevoke':
      return {};
    case 'leaseGrant':
      return { id: response.value.id, ttl: Number(response.value.ttl) };
  }
}

export function plainOutcome(result: ApplyResult): Outcome {
  if (!result.ok) return { ok: false, code: result.error.code };
  return { ok: true, revision: Number(result.revision), response: plainResponse(result.response), events: result.events.map(plainEvent) };
}

export function plainRangeOutcome(outcome: RangeOutcome): Outcome {
  if (!outcome.ok) return { ok: false, code: outcome.error.code };
  return { ok: true, revision: Number(outcome.revision), response: plainRange(outcome.response), events: [] };
}
