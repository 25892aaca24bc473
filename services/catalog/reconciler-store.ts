/**
 * The reconciler's side of the catalog's store. Quick decisions read the watch-fed view; a write
 * goes through the catalog's own write path (state/catalog-writes.ts: Consul's Catalog.Register
 * and Deregister, with their rules, as Consul's leader sends its reconcile writes through the
 * same RPC) as one consensus txn that:
 *
 *   - decides again on the rows it reads, so what it writes is right as of the txn, not as of
 *     the view (a conflicting writer makes it plan again, state/write-plan.ts);
 *   - is fenced by the election: it reads `/sys/reconciler` and commits only while the lock is
 *     still on our lease (its mod revision is among the txn's compares); once it is not, the
 *     write is dropped as `fenced`.
 */
import { ConsensusClient } from '../lib/consensus-client';
import { CatalogEntry, ReconcileAction } from './reconciler-decisions';
import { catchUpWithLeader } from './state/catch-up';
import { catalogRows } from './state/catalog-rows';
import { RegisterRequest, planDeregister, planRegister } from './state/catalog-writes';
import { keys } from './state/keys';
import { SERF_HEALTH, StoredCheck, StoredNode, StoredService } from './state/model';
import { CatalogView } from './state/view';
import { WritePlan, commitPlan } from './state/write-plan';

/** The election's lock, whose lease fences every reconciler write. */
export const RECONCILER_LOCK_KEY = keys.system('reconciler');

export type ApplyOutcome = 'applied' | 'unchanged' | 'fenced';

/** What the reconciler needs of the store (its consumer's interface: a test keeps it in memory). */
export interface ReconcilerStore {
  /** The catalog's rows for `node`, from the view. */
  entry(node: string): CatalogEntry;
  /** Every catalog node with a serfHealth check: those the reconciler owns. */
  serfHealthNodes(): string[];
  /** Resolves once the view reflects the store as of now (the leader's revision). */
  catchUp(): Promise<void>;
  /**
   * Decides again with `decideOn` against the rows as the txn reads them, and writes the decision
   * while `/sys/reconciler` is on `fence`. `unchanged`: the decision was to do nothing; `fenced`:
   * the lock is not ours any more. Throws CatalogWriteError when Consul's rules refuse the write.
   */
  apply(node: string, decideOn: (entry: CatalogEntry) => ReconcileAction, fence: bigint): Promise<{ outcome: ApplyOutcome; action: ReconcileAction }>;
}

export function catalogReconcilerStore(view: CatalogView, consensus: Pick<ConsensusClient, 'kv'>, datacenter: string): ReconcilerStore {
  return {
    entry(node) {
      return entryIn(view, node);
    },

    serfHealthNodes() {
      return catalogRows
        .checks(view)
        .filter((check) => check.value.CheckID === SERF_HEALTH.CheckID && check.value.ServiceID === '')
        .map((check) => check.value.Node);
    },

    async catchUp() {
      await catchUpWithLeader(view, consensus);
    },

    async apply(node, decideOn, fence) {
      const committed = await commitPlan({ view, consensus }, (plan) => {
        const lock = plan.get(RECONCILER_LOCK_KEY);
        if (lock === undefined || lock.lease !== fence.toString()) return { value: { outcome: 'fenced' as ApplyOutcome, action: decideOn(entryIn(plan, node)) }, commit: false };
        const action = decideOn(entryIn(plan, node));
        switch (action.kind) {
          case 'none':
            return { value: { outcome: 'unchanged' as ApplyOutcome, action }, commit: false };
          case 'register':
            planRegister(plan, registerRequest(action), datacenter);
            break;
          case 'mark-critical':
            // Consul's handleFailedMember: the check only (SkipNodeUpdate), on the node as it is.
            planRegister(plan, { Node: action.node, SkipNodeUpdate: true, Check: { ...action.check } }, datacenter);
            break;
          case 'deregister':
            planDeregister(plan, { Node: action.node });
            break;
        }
        return { value: { outcome: 'applied' as ApplyOutcome, action }, commit: true };
      });
      return committed.value;
    },
  };
}

/** The catalog's rows for `node`, from the view, or as a write plan reads them (each becomes one of its compares). */
function entryIn(rows: Pick<WritePlan | CatalogView, 'get'>, node: string): CatalogEntry {
  const read = <T>(key: string): T | undefined => {
    const row = rows.get(key);
    return row === undefined ? undefined : (JSON.parse(Buffer.from(row.value).toString('utf8')) as T);
  };
  return {
    node: read<StoredNode>(keys.node(node)),
    serfHealth: read<StoredCheck>(keys.check(node, SERF_HEALTH.CheckID)),
    consulService: read<StoredService>(keys.service(node, 'consul')),
  };
}

/** A register decision as Consul's leader sends it: structs.RegisterRequest. */
function registerRequest(action: Extract<ReconcileAction, { kind: 'register' }>): RegisterRequest {
  const { node, check, service } = action;
  return {
    Datacenter: node.Datacenter,
    ID: node.ID,
    Node: node.Node,
    Address: node.Address,
    TaggedAddresses: node.TaggedAddresses,
    NodeMeta: node.Meta,
    ...(service === undefined ? {} : { Service: { ...service, Tags: [...service.Tags] } }),
    Check: { ...check },
  };
}
