/**
 * A txn's compares, with etcd's semantics (server/etcdserver/txn: applyCompare, compareKV).
 *
 * A missing key compares as version 0, create revision 0, mod revision 0 and lease 0; a VALUE
 * compare on a missing key is always false, since proto3 cannot tell an empty value from none.
 * A compare whose target_union names another field than its target compares against that
 * target's zero value, as Go's generated getters return it.
 */
import { Compare, Compare_Result, Compare_Target } from '../../gen/consulate/consensus/v1/kv';
import { invariant } from './errors';
import { KeyRevision } from './revision-store';

const EMPTY = Buffer.alloc(0);

/** Whether `compare` holds for the key's live revision (undefined: the key does not exist). */
export function compareHolds(compare: Compare, current: KeyRevision | undefined): boolean {
  const union = compare.targetUnion;
  let order: number;
  switch (compare.target) {
    case Compare_Target.TARGET_VERSION:
      order = orderOf(current?.version ?? 0, union?.$case === 'version' ? union.value : 0n);
      break;
    case Compare_Target.TARGET_CREATE:
      order = orderOf(current?.createRevision ?? 0, union?.$case === 'createRevision' ? union.value : 0n);
      break;
    case Compare_Target.TARGET_MOD:
      order = orderOf(current?.modRevision ?? 0, union?.$case === 'modRevision' ? union.value : 0n);
      break;
    case Compare_Target.TARGET_LEASE:
      order = orderOf(current?.lease ?? 0n, union?.$case === 'lease' ? union.value : 0n);
      break;
    case Compare_Target.TARGET_VALUE:
      if (current === undefined) return false;
      order = Buffer.compare(current.value, union?.$case === 'value' ? union.value : EMPTY);
      break;
    default:
      // validation.ts refuses other targets before apply gets here.
      invariant(false, () => `compare target ${compare.target}`);
  }
  switch (compare.result) {
    case Compare_Result.RESULT_EQUAL:
      return order === 0;
    case Compare_Result.RESULT_NOT_EQUAL:
      return order !== 0;
    case Compare_Result.RESULT_GREATER:
      return order > 0;
    case Compare_Result.RESULT_LESS:
      return order < 0;
    default:
      invariant(false, () => `compare result ${compare.result}`);
  }
}

/** Numbers and bigints compare exactly with < and > in JavaScript, mixed or not. */
function orderOf(actual: number | bigint, wanted: bigint): number {
  return actual < wanted ? -1 : actual > wanted ? 1 : 0;
}
