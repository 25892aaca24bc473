/**
 * The Raft core's configuration. Time is in ticks: the shell calls `tick()` every `tickMs`
 * (100 ms by default on real servers, as etcd's heartbeat interval), the simulator whenever it likes.
 */
import { NodeId } from './types';

export interface RaftConfig {
  /** This server's id. */
  readonly id: NodeId;
  /**
   * Ticks without hearing from a leader before a follower starts an election; each election
   * waits a random timeout in [electionTicks, 2 × electionTicks) so that split votes resolve (§5.2).
   * Default 10 (1 s with 100 ms ticks, as etcd).
   */
  readonly electionTicks: number;
  /** Ticks between heartbeats from the leader. Must be well under electionTicks. Default 1. */
  readonly heartbeatTicks: number;
  /**
   * How long a quorum's heartbeat acknowledgement lets the leader serve reads without another
   * round (the leader lease). A follower that heard from the leader does not vote for anyone else
   * for electionTicks (CheckQuorum's leader stickiness), so no other leader can exist before that;
   * the margin covers tick-rate drift between servers. Default electionTicks - 2.
   */
  readonly leaseTicks: number;
  /** Ask for pre-votes before disrupting the cluster with a new term (thesis §9.6). Default on. */
  readonly preVote: boolean;
  /** A leader steps down when it has not heard from a quorum within electionTicks (thesis §6.2). Default on. */
  readonly checkQuorum: boolean;
  /** Appends in flight to one follower before waiting for acknowledgements. Default 64. */
  readonly maxInflightAppends: number;
  /** Entries in one append message. Default 256. */
  readonly maxEntriesPerAppend: number;
  /** Bytes of entry data in one append message (one entry always goes, whatever its size). Default 1 MiB. */
  readonly maxBytesPerAppend: number;
  /** Entries appended but not yet committed before proposals are refused (backpressure). Default 10,000. */
  readonly maxUncommittedEntries: number;
  /** Entries handed to the state machine in one Ready. Default 4,096. */
  readonly maxCommittedPerReady: number;
  /** A learner may be promoted when it is at most this many entries behind the leader's commit. Default 64. */
  readonly promotionLagEntries: number;
  /** The randomness for election timeouts: seeded in simulation. Returns [0, 1). */
  readonly random: () => number;
}

export const RAFT_DEFAULTS: Omit<RaftConfig, 'id' | 'random'> = {
  electionTicks: 10,
  heartbeatTicks: 1,
  leaseTicks: 8,
  preVote: true,
  checkQuorum: true,
  maxInflightAppends: 64,
  maxEntriesPerAppend: 256,
  maxBytesPerAppend: 1024 * 1024,
  maxUncommittedEntries: 10_000,
  maxCommittedPerReady: 4_096,
  promotionLagEntries: 64,
};

export function raftConfig(fields: Pick<RaftConfig, 'id' | 'random'> & Partial<RaftConfig>): RaftConfig {
  const config: RaftConfig = { ...RAFT_DEFAULTS, leaseTicks: (fields.electionTicks ?? RAFT_DEFAULTS.electionTicks) - 2, ...fields };
  validate(config);
  return config;
}

function validate(c: RaftConfig): void {
  const problems: string[] = [];
  if (c.id === '') problems.push('id must not be empty');
  if (!(c.heartbeatTicks >= 1)) problems.push(`heartbeatTicks must be >= 1, got ${c.heartbeatTicks}`);
  if (!(c.electionTicks > c.heartbeatTicks)) problems.push(`electionTicks (${c.electionTicks}) must be greater than heartbeatTicks (${c.heartbeatTicks})`);
  if (!(c.leaseTicks >= 0 && c.leaseTicks < c.electionTicks)) problems.push(`leaseTicks (${c.leaseTicks}) must be in [0, electionTicks)`);
  if (c.leaseTicks > 0 && !c.checkQuorum) problems.push('a leader lease needs checkQuorum: without it followers vote while a leader lives');
  for (const key of ['maxInflightAppends', 'maxEntriesPerAppend', 'maxBytesPerAppend', 'maxUncommittedEntries', 'maxCommittedPerReady'] as const) {
    if (!(Number.isSafeInteger(c[key]) && c[key] >= 1)) problems.push(`${key} must be a positive integer, got ${c[key]}`);
  }
  if (problems.length > 0) throw new RangeError(`invalid Raft config: ${problems.join('; ')}`);
}
