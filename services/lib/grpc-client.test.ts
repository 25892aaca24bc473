import { ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { MembershipServiceClient, MembershipServiceServer, MembershipServiceService, protobufFileName } from '../gen/consulate/gossip/v1/membership';
import { callUnary, createRoleClient } from './grpc-client';
import { RoleGrpcServer } from './grpc-server';
import { createLogger } from './log';

describe('callUnary', () => {
  const failures: GrpcStatus[] = [];
  let calls = 0;
  let server: RoleGrpcServer;
  let client: MembershipServiceClient;

  beforeAll(async () => {
    const implementation: Pick<MembershipServiceServer, 'status'> = {
      status(_call, callback) {
        calls++;
        const code = failures.shift();
        if (code === undefined) callback(null, { server: false });
        else callback({ code, details: `failure ${calls}` } as ServiceError);
      },
    };
    server = new RoleGrpcServer({
      logger: createLogger({ role: 'consensus', datacenter: 'dc1', node: 'n', level: 'silent' }),
      tracer: trace.getTracer('test'),
      services: [{ definition: MembershipServiceService, implementation, protoFile: protobufFileName }],
    });
    client = createRoleClient(MembershipServiceClient, await server.listen('127.0.0.1', 0), { tracer: trace.getTracer('test') });
  });

  afterAll(async () => {
    client.close();
    await server.shutdown();
  });

  beforeEach(() => {
    calls = 0;
    failures.length = 0;
  });

  const zeroJitter = () => 0;

  test('retries an idempotent call on UNAVAILABLE and RESOURCE_EXHAUSTED', async () => {
    failures.push(GrpcStatus.UNAVAILABLE, GrpcStatus.RESOURCE_EXHAUSTED);
    await callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: true, random: zeroJitter });
    expect(calls).toBe(3);
  });

  test('never retries a call that is not idempotent', async () => {
    failures.push(GrpcStatus.UNAVAILABLE);
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: false })).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    expect(calls).toBe(1);
  });

  test('never retries codes that do not mean "try again"', async () => {
    failures.push(GrpcStatus.INVALID_ARGUMENT);
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: true })).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: 'failure 1' });
    expect(calls).toBe(1);
  });

  test('gives up after maxAttempts with the last error', async () => {
    failures.push(GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE);
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: true, maxAttempts: 3, random: zeroJitter })).rejects.toMatchObject({ details: 'failure 3' });
    expect(calls).toBe(3);
  });

  test('does not sleep past the deadline', async () => {
    failures.push(GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE);
    const started = Date.now();
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 50, idempotent: true, backoffBaseMs: 1_000, random: () => 0.99 })).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  test('refuses a call without a positive deadline', async () => {
    await expect(callUnary(client.status.bind(client), {}, { timeoutMs: 0, idempotent: true })).rejects.toThrow('a call needs a positive deadline');
  });

  test('an unreachable server fails with UNAVAILABLE or DEADLINE_EXCEEDED within the deadline', async () => {
    const nowhere = createRoleClient(MembershipServiceClient, '127.0.0.1:1', { tracer: trace.getTracer('test') });
    const started = Date.now();
    const failure = (await callUnary(nowhere.status.bind(nowhere), {}, { timeoutMs: 300, idempotent: true }).catch((err: ServiceError) => err)) as ServiceError;
    nowhere.close();
    expect([GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED]).toContain(failure.code);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
