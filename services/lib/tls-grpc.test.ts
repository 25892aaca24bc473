import { ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { MembershipServiceClient, MembershipServiceServer, MembershipServiceService, protobufFileName } from '../gen/consulate/gossip/v1/membership';
import { callUnary, createRoleClient } from './grpc-client';
import { RoleGrpcServer } from './grpc-server';
import { createLogger } from './log';
import { loadTlsMaterial, mutualTlsChannelCredentials, mutualTlsServerCredentials, tlsChannelOptions } from './tls';
import { createCa } from '../../cli/tls/make-certificates';
import { makeCertDir, writeTlsFiles } from '../../test/harness/tls';

// Mutual TLS as 8300 will use it (DESIGN.md "Security"): a client certificate from our CA is
// required, and the server must present the datacenter the client expects.
describe('mutual TLS over gRPC', () => {
  const dir = makeCertDir();
  const ca = createCa();
  const dc1 = loadTlsMaterial(writeTlsFiles(dir, 'dc1', ca, { datacenter: 'dc1' }));
  const dc2 = loadTlsMaterial(writeTlsFiles(dir, 'dc2', ca, { datacenter: 'dc2' }));
  const foreign = writeTlsFiles(dir, 'intruder', createCa(), { datacenter: 'dc2' });
  let server: RoleGrpcServer;
  let address: string;

  beforeAll(async () => {
    server = new RoleGrpcServer({
      logger: createLogger({ role: 'consensus', datacenter: 'dc2', node: 'n', level: 'silent' }),
      tracer: trace.getTracer('test'),
      services: [{ definition: MembershipServiceService, implementation: { status: (_call, callback) => callback(null, { server: true }) } satisfies Pick<MembershipServiceServer, 'status'>, protoFile: protobufFileName }],
      credentials: mutualTlsServerCredentials(dc2),
    });
    address = await server.listen('127.0.0.1', 0);
  });

  afterAll(() => server.shutdown());

  async function statusWith(creds: ReturnType<typeof credentials.createInsecure>, expectedDatacenter = 'dc2'): Promise<GrpcStatus> {
    const client = createRoleClient(MembershipServiceClient, address, { tracer: trace.getTracer('test'), credentials: creds, channelOptions: tlsChannelOptions(expectedDatacenter) });
    try {
      await callUnary(client.status.bind(client), {}, { timeoutMs: 2_000, idempotent: false });
      return GrpcStatus.OK;
    } catch (err) {
      return (err as ServiceError).code;
    } finally {
      client.close();
    }
  }

  test('a client of our CA reaches the datacenter it expects', async () => {
    expect(await statusWith(mutualTlsChannelCredentials(dc1, 'dc2'))).toBe(GrpcStatus.OK);
  });

  test('a server presenting another datacenter is refused by the client', async () => {
    expect(await statusWith(mutualTlsChannelCredentials(dc1, 'dc3'), 'dc3')).toBe(GrpcStatus.UNAVAILABLE);
  });

  test('no client certificate, another CA, or plaintext: refused', async () => {
    expect(await statusWith(credentials.createSsl(dc1.ca))).toBe(GrpcStatus.UNAVAILABLE);
    const intruder = { ...loadTlsMaterial({ ...foreign }), ca: dc1.ca };
    expect(await statusWith(mutualTlsChannelCredentials(intruder, 'dc2'))).toBe(GrpcStatus.UNAVAILABLE);
    expect(await statusWith(credentials.createInsecure())).toBe(GrpcStatus.UNAVAILABLE);
  });
});
