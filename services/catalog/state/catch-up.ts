/**
 * Brings the view up to the leader before a write decides anything from it: a write whose outcome
 * is "no change" (a CAS that does not match, a lock someone else holds) sends nothing to
 * consensus, so the view it read must be at least as new as the request, or the answer could be
 * stale. The leader's lease read costs no Raft round.
 */
import { Consistency } from '../../gen/consulate/consensus/v1/kv';
import { ConsensusClient } from '../../lib/consensus-client';
import { NoLeaderError, ViewBehindError } from './errors';
import { keys, prefixEnd } from './keys';
import { CatalogView } from './view';

export const CATCH_UP_TIMEOUT_MS = 5_000;

export async function catchUpWithLeader(view: CatalogView, consensus: Pick<ConsensusClient, 'kv'>, timeoutMs = CATCH_UP_TIMEOUT_MS): Promise<number> {
  let revision: number;
  try {
    const response = await consensus.kv(
      'range',
      { key: Buffer.from(keys.system('')), rangeEnd: prefixEnd(keys.system('')), limit: 0n, revision: 0n, consistency: Consistency.CONSISTENCY_LEASE, keysOnly: false, countOnly: true },
      { timeoutMs, idempotent: true },
    );
    revision = Number(response.header?.revision ?? 0n);
  } catch {
    throw new NoLeaderError();
  }
  if (!(await view.waitForRevision(revision, timeoutMs))) {
    throw new ViewBehindError(`catalog view is behind the leader (at revision ${view.revision}, leader at ${revision}); retry`);
  }
  return revision;
}
