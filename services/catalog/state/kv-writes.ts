/**
 * Consul's KV writes, rule for rule (agent/consul/state/kvs.go, state/txn.go txnKVS,
 * kvs_endpoint.go kvsPreApply), played on a WritePlan so that one HTTP write, or every op of one
 * /v1/txn, becomes one consensus transaction:
 *
 * - set keeps the key's Session (a plain write never steals or drops a lock) and takes its
 *   LockIndex from the request (0 from the HTTP API); an entry equal to the stored one is not
 *   written again (its ModifyIndex stays);
 * - cas=0 creates only; cas=N writes only when ModifyIndex is N;
 * - lock needs a live session; the holder re-acquiring keeps LockIndex, a new holder bumps it,
 *   another session holding it fails; unlock needs the holder and keeps LockIndex;
 * - delete-cas of an absent key succeeds (Consul's `return entry == nil`).
 */
import { goQuote } from '../../lib/go-text';
import { encodeKv } from './kv-codec';
import { KvEntry, kvOf } from './kv-reads';
import { keys } from './keys';
import { StoredKv } from './model';
import { LockDelays } from './lock-delay';
import { PENDING, WritePlan } from './write-plan';

/** A KV entry as a write sees it; indexes are PENDING when this write creates or changes it. */
export type { KvEntry } from './kv-reads';

/** What a write asks to store (structs.DirEntry from the request). */
export interface KvWrite {
  readonly key: string;
  readonly flags: bigint;
  readonly value: Uint8Array;
  readonly session: string;
  readonly lockIndex: number;
}

/** A state-store step's (bool, error): done=false with no error is Consul's "false, nil". */
export interface KvStep {
  readonly done: boolean;
  readonly error?: string;
  readonly entry?: KvEntry;
}

export function kvEntryAt(plan: WritePlan, key: string): KvEntry | undefined {
  const row = plan.get(keys.kv(key));
  return row === undefined ? undefined : { key, kv: kvOf(row.value), createIndex: row.createRevision, modifyIndex: row.modRevision };
}

/** Whether session `id` exists, as this write sees it (the Txn then checks it still does). */
export function sessionExists(plan: WritePlan, id: string): boolean {
  return plan.get(keys.session(id.toLowerCase())) !== undefined;
}

function sameEntry(a: StoredKv, b: StoredKv): boolean {
  return a.LockIndex === b.LockIndex && a.Flags === b.Flags && a.Session === b.Session && Buffer.from(a.Value).equals(Buffer.from(b.Value));
}

/** kvsSetTxn. */
export function kvSet(plan: WritePlan, write: KvWrite, updateSession: boolean): KvEntry {
  const existing = kvEntryAt(plan, write.key);
  const kv: StoredKv = { Flags: write.flags, LockIndex: write.lockIndex, Session: updateSession ? write.session : (existing?.kv.Session ?? ''), Value: write.value };
  if (existing !== undefined && sameEntry(existing.kv, kv)) return existing;
  const row = plan.put(keys.kv(write.key), encodeKv(kv));
  return { key: write.key, kv, createIndex: row.createRevision, modifyIndex: PENDING };
}

/** kvsSetCASTxn: `cas` is the ModifyIndex the entry must have, 0 for "must not exist". */
export function kvSetCas(plan: WritePlan, write: KvWrite, cas: bigint): KvStep {
  const existing = kvEntryAt(plan, write.key);
  if (cas === 0n && existing !== undefined) return { done: false };
  if (cas !== 0n && existing === undefined) return { done: false };
  if (existing !== undefined && cas !== 0n && BigInt(existing.modifyIndex) !== cas) return { done: false };
  return { done: true, entry: kvSet(plan, write, false) };
}

/** kvsLockTxn (the lock-delay is checked before, as kvsPreApply does). */
export function kvLock(plan: WritePlan, write: KvWrite): KvStep {
  if (write.session === '') return { done: false, error: 'missing session' };
  if (!sessionExists(plan, write.session)) return { done: false, error: `invalid session ${goQuote(write.session)}` };
  const existing = kvEntryAt(plan, write.key);
  let lockIndex = 1;
  if (existing !== undefined) {
    if (existing.kv.Session === write.session) lockIndex = existing.kv.LockIndex;
    else if (existing.kv.Session !== '') return { done: false };
    else lockIndex = existing.kv.LockIndex + 1;
  }
  return { done: true, entry: kvSet(plan, { ...write, lockIndex }, true) };
}

/** kvsUnlockTxn. */
export function kvUnlock(plan: WritePlan, write: KvWrite): KvStep {
  if (write.session === '') return { done: false, error: 'missing session' };
  const existing = kvEntryAt(plan, write.key);
  if (existing === undefined || existing.kv.Session !== write.session) return { done: false };
  return { done: true, entry: kvSet(plan, { ...write, session: '', lockIndex: existing.kv.LockIndex }, true) };
}

/** kvsDeleteTxn: deleting an absent key is no change. */
export function kvDelete(plan: WritePlan, key: string): void {
  plan.delete(keys.kv(key));
}

/** kvsDeleteCASTxn. */
export function kvDeleteCas(plan: WritePlan, key: string, cas: bigint): boolean {
  const existing = kvEntryAt(plan, key);
  if (existing === undefined) return true;
  if (BigInt(existing.modifyIndex) !== cas) return false;
  plan.delete(keys.kv(key));
  return true;
}

/** kvsDeleteTreeTxn: every key under the prefix ("" is every key). */
export function kvDeleteTree(plan: WritePlan, prefix: string): void {
  plan.deletePrefix(keys.kv(prefix));
}

export function kvList(plan: WritePlan, prefix: string): KvEntry[] {
  return plan.scan(keys.kv(prefix)).map(([stored, row]) => ({ key: stored.slice(keys.kv('').length), kv: kvOf(row.value), createIndex: row.createRevision, modifyIndex: row.modRevision }));
}

// ---- /v1/txn KV verbs (api.KVOp) ----

export type KvVerb = 'set' | 'delete' | 'delete-cas' | 'delete-tree' | 'cas' | 'lock' | 'unlock' | 'get' | 'get-or-empty' | 'get-tree' | 'check-session' | 'check-index' | 'check-not-exists';

const WRITE_VERBS = new Set<string>(['set', 'delete', 'delete-cas', 'delete-tree', 'cas', 'lock', 'unlock']);

/** txn_endpoint.go isWrite. */
export function isWriteVerb(verb: string): boolean {
  return WRITE_VERBS.has(verb);
}

/** api.KVTxnOp as decoded from the request. */
export interface KvTxnOp {
  readonly Verb: string;
  readonly Key: string;
  readonly Value: Uint8Array;
  readonly Flags: bigint;
  readonly Index: bigint;
  readonly Session: string;
}

/** A result of one op: the entry, with its value only for reads (txnKVS blanks it otherwise). */
export interface KvTxnResult {
  readonly entry: KvEntry;
  readonly withValue: boolean;
}

/** txn_endpoint.go preCheck → kvsPreApply for one op: Consul's error text, or undefined. */
export function preCheckKvOp(op: KvTxnOp, lockDelays: LockDelays): string | undefined {
  if (op.Key === '' && op.Verb !== 'delete-tree') return 'Must provide key';
  if (op.Verb === 'lock' && lockDelays.isDelayed(op.Key)) return `failed to lock key ${goQuote(op.Key)} due to lock delay`;
  return undefined;
}

/** state/txn.go txnKVS: the op's results, or Consul's error text for it. */
export function runKvTxnOp(plan: WritePlan, op: KvTxnOp): { results: KvTxnResult[]; error?: string } {
  const write: KvWrite = { key: op.Key, flags: op.Flags, value: op.Value, session: op.Session, lockIndex: 0 };
  const quoted = goQuote(op.Key);
  const blanked = (entry: KvEntry | undefined) => ({ results: entry === undefined ? [] : [{ entry, withValue: false }] });
  const fail = (error: string) => ({ results: [], error });
  switch (op.Verb) {
    case 'set':
      return blanked(kvSet(plan, write, false));
    case 'delete':
      kvDelete(plan, op.Key);
      return blanked(undefined);
    case 'delete-cas':
      return kvDeleteCas(plan, op.Key, op.Index) ? blanked(undefined) : fail(`failed to delete key ${quoted}, index is stale`);
    case 'delete-tree':
      kvDeleteTree(plan, op.Key);
      return blanked(undefined);
    case 'cas': {
      const step = kvSetCas(plan, write, op.Index);
      return step.done ? blanked(step.entry) : fail(`failed to set key ${quoted}, index is stale`);
    }
    case 'lock': {
      const step = kvLock(plan, write);
      if (step.error !== undefined) return fail(step.error);
      return step.done ? blanked(step.entry) : fail(`failed to lock key ${quoted}, lock is already held`);
    }
    case 'unlock': {
      const step = kvUnlock(plan, write);
      if (step.error !== undefined) return fail(step.error);
      return step.done ? blanked(step.entry) : fail(`failed to unlock key ${quoted}, lock isn't held, or is held by another session`);
    }
    case 'get': {
      const entry = kvEntryAt(plan, op.Key);
      return entry === undefined ? fail(`key ${quoted} doesn't exist`) : { results: [{ entry, withValue: true }] };
    }
    case 'get-or-empty': {
      const entry = kvEntryAt(plan, op.Key) ?? { key: op.Key, kv: { Flags: op.Flags, LockIndex: 0, Session: op.Session, Value: new Uint8Array() }, createIndex: 0, modifyIndex: Number(op.Index) };
      return { results: [{ entry, withValue: true }] };
    }
    case 'get-tree':
      return { results: kvList(plan, op.Key).map((entry) => ({ entry, withValue: true })) };
    case 'check-session': {
      const entry = kvEntryAt(plan, op.Key);
      if (entry === undefined) return fail(`failed to check session, key ${quoted} doesn't exist`);
      if (entry.kv.Session !== op.Session) return fail(`failed session check for key ${quoted}, current session ${goQuote(entry.kv.Session)} != ${goQuote(op.Session)}`);
      return blanked(entry);
    }
    case 'check-index': {
      const entry = kvEntryAt(plan, op.Key);
      if (entry === undefined) return fail(`failed to check index, key ${quoted} doesn't exist`);
      if (BigInt(entry.modifyIndex) !== op.Index) return fail(`failed index check for key ${quoted}, current modify index ${entry.modifyIndex} != ${op.Index}`);
      return blanked(entry);
    }
    case 'check-not-exists':
      return kvEntryAt(plan, op.Key) === undefined ? blanked(undefined) : fail(`key ${quoted} exists`);
    default:
      return fail(`unknown KV verb ${goQuote(op.Verb)}`);
  }
}

/** An entry's index once the write committed at `revision`. */
export function resolvedIndex(index: number, revision: number): number {
  return index === PENDING ? revision : index;
}
