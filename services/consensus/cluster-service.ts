/** gRPC adapter for consulate.consensus.v1.ClusterService: status, membership, leadership transfer. */
import { status as GrpcStatus } from '@grpc/grpc-js';

import { ClusterServiceServer, RaftRole } from '../gen/consulate/consensus/v1/cluster';
import { Clock } from '../lib/clock';
import { RoleContext } from '../lib/role-process';
import { ConsensusNode } from './consensus-node';
import { StatusError, timeLeftMs } from './grpc-errors';
import { unary } from './kv-service';
import { Role } from './raft/raft';
import { Member } from './raft/types';

/** How long MemberAdd waits for a new learner to catch up before promoting it. */
export const MEMBER_ADD_MAX_MS = 60_000;
const POLL_MS = 20;

const ROLES: Record<Role, RaftRole> = {
  follower: RaftRole.RAFT_ROLE_FOLLOWER,
  'pre-candidate': RaftRole.RAFT_ROLE_PRE_CANDIDATE,
  candidate: RaftRole.RAFT_ROLE_CANDIDATE,
  leader: RaftRole.RAFT_ROLE_LEADER,
};

export function clusterService(context: Pick<RoleContext<never>, 'roleInfo' | 'clock'>, node: ConsensusNode): ClusterServiceServer {
  const members = (): Member[] => node.status().members;
  return {
    status: unary(async () => {
      const s = node.status();
      const self = s.members.find((member) => member.id === s.id);
      return {
        info: context.roleInfo(),
        role: self?.learner ? RaftRole.RAFT_ROLE_LEARNER : ROLES[s.role],
        term: BigInt(s.term),
        leader: s.leader,
        leaderAddress: node.leaderAddress(),
        commitIndex: BigInt(s.commit),
        appliedIndex: BigInt(s.appliedIndex),
        revision: node.kv.revision,
        members: s.members,
      };
    }),
    memberList: unary(async () => ({ members: members(), leader: node.status().leader })),
    memberAdd: unary(async (request, call) => {
      const member = request.member;
      if (member === undefined || member.id === '' || !/^[^:\s]+:\d+$/.test(member.address)) {
        throw new StatusError(GrpcStatus.INVALID_ARGUMENT, 'member needs an id and an address host:port');
      }
      const budgetMs = timeLeftMs(call.getDeadline(), MEMBER_ADD_MAX_MS);
      const deadline = context.clock.nowMs() + budgetMs;
      await node.changeMembership({ kind: 'add-learner', member: { ...member, learner: true } }, budgetMs);
      // The entry that added it is committed by now: Raft promotes it only once it holds that entry.
      const addedAt = node.status().commit;
      // §4.2.1: it votes only once it has caught up, so it cannot slow commits down meanwhile.
      await until(context.clock, deadline, () => {
        const s = node.status();
        const match = s.matches[member.id] ?? 0;
        return s.role === 'leader' && match >= addedAt && s.commit - match <= 64;
      });
      await node.changeMembership({ kind: 'promote', member: { ...member, learner: false } }, Math.max(1, deadline - context.clock.nowMs()));
      return { members: members() };
    }),
    memberRemove: unary(async (request, call) => {
      const member = members().find((m) => m.id === request.id);
      if (member === undefined) throw new StatusError(GrpcStatus.NOT_FOUND, `${request.id} is not a member`);
      await node.changeMembership({ kind: 'remove', member }, timeLeftMs(call.getDeadline(), 10_000));
      return { members: members() };
    }),
    transferLeadership: unary(async (request, call) => {
      const s = node.status();
      if (s.role !== 'leader') throw node.notLeader();
      const to = request.to !== '' ? request.to : mostCaughtUp(s.matches, s.id, s.members);
      await node.transferLeadership(to);
      const deadline = context.clock.nowMs() + timeLeftMs(call.getDeadline(), 5_000);
      await until(context.clock, deadline, () => node.status().leader !== '' && node.status().leader !== s.id);
      return { leader: node.status().leader };
    }),
  };
}

function mostCaughtUp(matches: Readonly<Record<string, number>>, self: string, members: readonly Member[]): string {
  const voters = members.filter((member) => !member.learner && member.id !== self);
  if (voters.length === 0) throw new StatusError(GrpcStatus.FAILED_PRECONDITION, 'there is no other voter to hand leadership to');
  return voters.sort((a, b) => (matches[b.id] ?? 0) - (matches[a.id] ?? 0))[0].id;
}

async function until(clock: Clock, deadlineMs: number, condition: () => boolean): Promise<void> {
  while (!condition()) {
    if (clock.nowMs() > deadlineMs) throw new StatusError(GrpcStatus.DEADLINE_EXCEEDED, 'timed out waiting for the cluster');
    await clock.sleep(POLL_MS);
  }
}
