/**
 * Who is in the cluster: voters and learners with their addresses. Changed one server at a time
 * (Raft thesis §4.1), which keeps any two majorities of consecutive configurations overlapping.
 * A server uses the newest configuration in its log, committed or not.
 */
import { ConfChange, Member, NodeId } from './types';

export class Membership {
  private readonly members: ReadonlyMap<NodeId, Member>;

  constructor(members: readonly Member[]) {
    this.members = new Map(members.map((member) => [member.id, member]));
  }

  list(): Member[] {
    return [...this.members.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  get(id: NodeId): Member | undefined {
    return this.members.get(id);
  }

  has(id: NodeId): boolean {
    return this.members.has(id);
  }

  isVoter(id: NodeId): boolean {
    const member = this.members.get(id);
    return member !== undefined && !member.learner;
  }

  voters(): NodeId[] {
    return this.list()
      .filter((member) => !member.learner)
      .map((member) => member.id);
  }

  ids(): NodeId[] {
    return this.list().map((member) => member.id);
  }

  quorum(): number {
    return Math.floor(this.voters().length / 2) + 1;
  }

  /** Why `change` cannot apply to this membership, or undefined when it can. */
  refuse(change: ConfChange): string | undefined {
    const current = this.members.get(change.member.id);
    switch (change.kind) {
      case 'add-voter':
      case 'add-learner':
        return current === undefined ? undefined : `${change.member.id} is already a member`;
      case 'promote':
        if (current === undefined) return `${change.member.id} is not a member`;
        return current.learner ? undefined : `${change.member.id} is already a voter`;
      case 'remove':
        if (current === undefined) return `${change.member.id} is not a member`;
        return !current.learner && this.voters().length === 1 ? `${change.member.id} is the last voter` : undefined;
    }
  }

  /** The membership after `change` (which must not be refused). */
  apply(change: ConfChange): Membership {
    const next = new Map(this.members);
    switch (change.kind) {
      case 'add-voter':
        next.set(change.member.id, { id: change.member.id, address: change.member.address, learner: false });
        break;
      case 'add-learner':
        next.set(change.member.id, { id: change.member.id, address: change.member.address, learner: true });
        break;
      case 'promote':
        next.set(change.member.id, { id: change.member.id, address: next.get(change.member.id)!.address, learner: false });
        break;
      case 'remove':
        next.delete(change.member.id);
        break;
    }
    return new Membership([...next.values()]);
  }
}

/** The largest index a quorum of `voters` has matched (the median rule of §5.3). */
export function quorumMatch(matches: readonly number[], quorum: number): number {
  if (matches.length < quorum) return 0;
  const sorted = [...matches].sort((a, b) => b - a);
  return sorted[quorum - 1];
}
