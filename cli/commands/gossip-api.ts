/**
 * How CLI commands reach a gossip agent's Membership API: `-gossip-addr`, else
 * CONSULATE_GOSSIP_ADDR, else 127.0.0.1:8320 (as Consul's CLI reads -http-addr and
 * CONSUL_HTTP_ADDR). `members` asks the catalog's HTTP API unless pointed here (members.ts);
 * join, leave and force-leave always come here.
 */
import { ServiceError } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { MembershipServiceClient } from '../../services/gen/consulate/gossip/v1/membership';
import { FlagSpec } from '../../services/lib/flags';
import { createRoleClient } from '../../services/lib/grpc-client';

export const GOSSIP_ADDR_FLAG: FlagSpec = { name: 'gossip-addr', kind: 'string', usage: 'The gossip agent to ask (host:port of its Membership API). Also CONSULATE_GOSSIP_ADDR.', defaultText: '"127.0.0.1:8320"' };

export function gossipAddress(flag: unknown, env: NodeJS.ProcessEnv): string {
  if (typeof flag === 'string' && flag !== '') return flag;
  return env.CONSULATE_GOSSIP_ADDR !== undefined && env.CONSULATE_GOSSIP_ADDR !== '' ? env.CONSULATE_GOSSIP_ADDR : '127.0.0.1:8320';
}

export function membershipClient(address: string): MembershipServiceClient {
  return createRoleClient(MembershipServiceClient, address, { tracer: trace.getTracer('consulate-cli') });
}

/** The text of a failed call, without grpc-js's "14 UNAVAILABLE:" prefix. */
export function callError(err: unknown, address: string): string {
  const error = err as ServiceError;
  if (error.code === 14) return `dial tcp ${address}: connect: connection refused (is a gossip agent running there? set -gossip-addr)`;
  return error.details ?? error.message;
}
