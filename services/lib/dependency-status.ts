/** A role's view of one of its dependencies, as every Status answer reports it. */
import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { DependencyStatus, RoleInfo } from '../gen/consulate/common/v1/role';

/** Runs `ask` and reports the answer, the error and the round trip in microseconds. */
export async function dependencyStatus(role: string, address: string, ask: () => Promise<RoleInfo | undefined>): Promise<DependencyStatus> {
  const started = process.hrtime.bigint();
  const roundTripUs = () => (process.hrtime.bigint() - started) / 1000n;
  try {
    const info = await ask();
    return { role, address, reachable: true, error: '', roundTripUs: roundTripUs(), info };
  } catch (err) {
    const failure = err as Partial<ServiceError>;
    const code = failure.code === undefined ? 'ERROR' : GrpcStatus[failure.code];
    return { role, address, reachable: false, error: `${code}: ${failure.details ?? failure.message ?? String(err)}`, roundTripUs: roundTripUs(), info: undefined };
  }
}
