/**
 * Consul's KV transactions (agent/consul/txn_endpoint.go, state/txn.go): up to 128 operations,
 * all or nothing. A transaction that only reads runs on the view at the requested consistency
 * (Consul's Txn.Read, no Raft); one that writes is planned op by op, each seeing the ones before
 * it, and committed as one consensus Txn (write-plan.ts). Any failed op fails the whole
 * transaction: its errors, by op index, and no results. `PUT /v1/txn` and the gRPC KVService's
 * Txn both run here.
 */
import { ReadDeps, ReadOptions, consistentRead } from './consistent-read';
import { KvEntry, KvTxnOp, KvTxnResult, isWriteVerb, preCheckKvOp, resolvedIndex, runKvTxnOp } from './kv-writes';
import { LockDelays } from './lock-delay';
import { WritePlan, commitPlan } from './write-plan';

/** agent/txn_endpoint.go maxTxnOps. */
export const MAX_TXN_OPS = 128;
/** txn_max_req_len's default (raft.SuggestedMaxDataSize): a whole transaction request as sent. */
export const MAX_TXN_BYTES = 512 * 1024;

/** One op: a KV op, or a catalog op this catalog does not run in a transaction yet. */
export type TxnOp = { readonly kv: KvTxnOp } | { readonly unsupported: 'Node' | 'Service' | 'Check' };

/** structs.TxnError. */
export interface TxnError {
  readonly OpIndex: number;
  readonly What: string;
}

export interface TxnOutcome {
  /** Each result's entry with its committed indexes; empty when there are errors. */
  readonly results: readonly KvTxnResult[];
  readonly errors: readonly TxnError[];
  /** The revision the transaction committed at, or the view's when it wrote nothing. */
  readonly revision: number;
}

export interface TxnDeps extends ReadDeps {
  readonly lockDelays: LockDelays;
}

/** Whether any op writes (txn_endpoint.go isWrite; a catalog op counts as a write). */
export function writesAnything(ops: readonly TxnOp[]): boolean {
  return ops.some((op) => 'unsupported' in op || isWriteVerb(op.kv.Verb));
}

/** Txn.Read: the ops on the view at `options`' consistency, never blocking. */
export async function readTxn(deps: TxnDeps, ops: readonly TxnOp[], options: ReadOptions, signal?: AbortSignal) {
  const read = await consistentRead(deps, { ...options, minIndex: 0 }, ['kvs'], () => ({ value: runOps(new WritePlan(deps.view), ops, deps.lockDelays), index: 0 }), signal);
  const outcome: TxnOutcome = withRevision(read.value, deps.view.revision);
  return { outcome, knownLeader: read.knownLeader, lastContactMs: read.lastContactMs };
}

/** Txn.Apply: every op checked first (Txn.preCheck), then all of them in one consensus Txn. */
export async function writeTxn(deps: TxnDeps, ops: readonly TxnOp[]): Promise<TxnOutcome> {
  const preChecked = preCheck(ops, deps.lockDelays);
  if (preChecked.length > 0) return { results: [], errors: preChecked, revision: deps.view.revision };
  const { value, revision } = await commitPlan(deps, (plan) => {
    const outcome = runOps(plan, ops, deps.lockDelays);
    return { value: outcome, commit: outcome.errors.length === 0 };
  });
  return withRevision(value, revision);
}

/** Txn.preCheck: checks every op before any runs; their errors, by OpIndex. */
function preCheck(ops: readonly TxnOp[], lockDelays: LockDelays): TxnError[] {
  const errors: TxnError[] = [];
  ops.forEach((op, index) => {
    if (!('kv' in op)) return;
    const what = preCheckKvOp(op.kv, lockDelays);
    if (what !== undefined) errors.push({ OpIndex: index, What: what });
  });
  return errors;
}

/** txnDispatch: every op in order on one plan; all their results, or all their errors. */
function runOps(plan: WritePlan, ops: readonly TxnOp[], lockDelays: LockDelays): { results: KvTxnResult[]; errors: TxnError[] } {
  const preChecked = preCheck(ops, lockDelays);
  if (preChecked.length > 0) return { results: [], errors: preChecked };
  const results: KvTxnResult[] = [];
  const errors: TxnError[] = [];
  ops.forEach((op, index) => {
    if (!('kv' in op)) {
      errors.push({ OpIndex: index, What: `Consulate does not run ${op.unsupported} operations in /v1/txn yet: use the /v1/catalog endpoints` });
      return;
    }
    const outcome = runKvTxnOp(plan, op.kv);
    results.push(...outcome.results);
    if (outcome.error !== undefined) errors.push({ OpIndex: index, What: outcome.error });
  });
  return { results, errors };
}

/** The results with the indexes this write left PENDING resolved to `revision`; none with errors. */
function withRevision(outcome: { results: readonly KvTxnResult[]; errors: readonly TxnError[] }, revision: number): TxnOutcome {
  if (outcome.errors.length > 0) return { results: [], errors: outcome.errors, revision };
  const resolve = (entry: KvEntry): KvEntry => ({ ...entry, createIndex: resolvedIndex(entry.createIndex, revision), modifyIndex: resolvedIndex(entry.modifyIndex, revision) });
  return { results: outcome.results.map(({ entry, withValue }) => ({ entry: resolve(entry), withValue })), errors: [], revision };
}
