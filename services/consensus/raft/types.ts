/**
 * The values the Raft core takes and hands back. Plain data, no I/O: the shell encodes them for
 * disk (storage/) and wire (raft.proto) and decodes them back. Indexes and terms are numbers:
 * safe to 2^53, which at a million entries a second lasts 285 years.
 */

/** A server's Raft id: its node name, e.g. "server-1". */
export type NodeId = string;

/** A server of the cluster. */
export interface Member {
  readonly id: NodeId;
  /** Its gRPC address, host:port; carried in the log so every server can reach every other. */
  readonly address: string;
  /** A learner receives the log but neither votes nor counts toward a quorum. */
  readonly learner: boolean;
}

/**
 * A single-server membership change (Raft thesis §4.1). 'add-voter' appears only in the bootstrap
 * entries that every initial server writes identically at indexes 1..n; later servers join as
 * learners and are promoted once caught up.
 */
export interface ConfChange {
  readonly kind: 'add-voter' | 'add-learner' | 'promote' | 'remove';
  readonly member: Member;
}

export type Entry =
  | { readonly index: number; readonly term: number; readonly kind: 'normal'; readonly data: Uint8Array }
  | { readonly index: number; readonly term: number; readonly kind: 'config'; readonly change: ConfChange }
  | { readonly index: number; readonly term: number; readonly kind: 'noop' };

/** What must be on disk before a server says anything that depends on it (§5.1, Figure 2). */
export interface HardState {
  readonly term: number;
  /** Who this server voted for in `term`; '' for nobody. */
  readonly vote: NodeId;
  readonly commit: number;
}

export interface SnapshotMeta {
  /** The last entry the snapshot covers, and its term. */
  readonly index: number;
  readonly term: number;
  /** The membership as of `index`. */
  readonly members: readonly Member[];
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The state machine at `meta.index`, as the KV store encodes it. */
  readonly data: Uint8Array;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: '', commit: 0 };
