/**
 * One KV write as Consul's KVS.Apply runs it (agent/consul/kvs_endpoint.go, kvsPreApply): the
 * request's op on a WritePlan (kv-writes.ts), committed as one consensus Txn. Both APIs call
 * this: `PUT`/`DELETE /v1/kv/:key` and the gRPC KVService's Put and Delete.
 *
 * The answer is Consul's bool: false when the op's condition did not hold (a cas on another
 * index, a lock held by another session or under its lock-delay, a release by a non-holder), in
 * which case nothing is sent to consensus. A lock or release without a session, or naming a
 * session that does not exist, is a KvApplyError with Consul's text.
 */
import { ConsensusClient } from '../../lib/consensus-client';
import { KvWrite, kvDelete, kvDeleteCas, kvDeleteTree, kvLock, kvSet, kvSetCas, kvUnlock } from './kv-writes';
import { LockDelays } from './lock-delay';
import { Committed, WriteDeps, commitPlan } from './write-plan';

export type KvPutOp = { readonly kind: 'set' } | { readonly kind: 'cas'; readonly index: bigint } | { readonly kind: 'lock' | 'unlock'; readonly session: string };
export type KvDeleteOp = { readonly kind: 'delete' } | { readonly kind: 'delete-tree' } | { readonly kind: 'delete-cas'; readonly index: bigint };

export interface KvApplyDeps extends WriteDeps {
  readonly consensus: Pick<ConsensusClient, 'kv'>;
  readonly lockDelays: LockDelays;
}

/** A lock or unlock the store refuses outright; Consul answers it as a plain error (HTTP 500). */
export class KvApplyError extends Error {
  override readonly name = 'KvApplyError';
  constructor(
    message: string,
    /** 'missing-session': no session named; 'invalid-session': the session does not exist. */
    readonly reason: 'missing-session' | 'invalid-session',
  ) {
    super(message);
  }
}

/** KVS.Apply with a set, cas, lock or unlock verb: whether it happened, and at which revision. */
export async function putKv(deps: KvApplyDeps, write: Omit<KvWrite, 'session' | 'lockIndex'>, op: KvPutOp): Promise<Committed<boolean>> {
  const entry: KvWrite = { ...write, session: op.kind === 'lock' || op.kind === 'unlock' ? op.session : '', lockIndex: 0 };
  switch (op.kind) {
    case 'set':
      return commitPlan(deps, (plan) => {
        kvSet(plan, entry, false);
        return { value: true, commit: true };
      });
    case 'cas':
      return commitPlan(deps, (plan) => {
        const step = kvSetCas(plan, entry, op.index);
        return { value: step.done, commit: step.done };
      });
    case 'lock':
    case 'unlock':
      // The lock-delay is a refusal, not an error (kvsPreApply returns false, nil).
      if (op.kind === 'lock' && deps.lockDelays.isDelayed(write.key)) return { value: false, revision: deps.view.revision };
      return commitPlan(deps, (plan) => {
        const step = op.kind === 'lock' ? kvLock(plan, entry) : kvUnlock(plan, entry);
        if (step.error !== undefined) throw new KvApplyError(step.error, op.session === '' ? 'missing-session' : 'invalid-session');
        return { value: step.done, commit: step.done };
      });
  }
}

/** KVS.Apply with a delete, delete-tree or delete-cas verb. */
export function deleteKv(deps: KvApplyDeps, key: string, op: KvDeleteOp): Promise<Committed<boolean>> {
  return commitPlan(deps, (plan) => {
    if (op.kind === 'delete-cas') {
      const deleted = kvDeleteCas(plan, key, op.index);
      return { value: deleted, commit: deleted };
    }
    if (op.kind === 'delete-tree') kvDeleteTree(plan, key);
    else kvDelete(plan, key);
    return { value: true, commit: true };
  });
}
