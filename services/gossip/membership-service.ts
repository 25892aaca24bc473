/** gRPC adapter for consulate.gossip.v1.MembershipService. */
import { MembershipServiceServer } from '../gen/consulate/gossip/v1/membership';
import { RoleContext } from '../lib/role-process';

export function membershipService(context: Pick<RoleContext<never>, 'roleInfo'>, server: boolean): MembershipServiceServer {
  return {
    status(_call, callback) {
      callback(null, { info: context.roleInfo(), server });
    },
  };
}
