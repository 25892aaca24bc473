/**
 * A `grpc.health.v1` client: asks a role process whether it is SERVING. `make up` waits on it,
 * the Docker HEALTHCHECK runs it, and the test harness uses it; no grpc_health_probe binary.
 */
import { ChannelCredentials, credentials as grpcCredentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

const HealthClient = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');

export type HealthAnswer = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'SERVICE_UNKNOWN' | 'UNREACHABLE';

/** One Check call with a deadline; `service` '' asks about the whole server. Never rejects. */
export function checkHealth(address: string, timeoutMs: number, service = '', creds: ChannelCredentials = grpcCredentials.createInsecure()): Promise<{ answer: HealthAnswer; detail: string }> {
  const client = new HealthClient(address, creds);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (value: { service: string }) => Buffer.from(encodeCheckRequest(value.service)),
      (bytes: Buffer) => decodeCheckResponse(bytes),
      { service },
      { deadline: Date.now() + timeoutMs },
      (err, response) => {
        client.close();
        if (err) resolve({ answer: err.code === 5 ? 'SERVICE_UNKNOWN' : 'UNREACHABLE', detail: `${err.code} ${err.details}` });
        else resolve({ answer: response as HealthAnswer, detail: '' });
      },
    );
  });
}

// HealthCheckRequest { string service = 1; } and HealthCheckResponse { ServingStatus status = 1; }
// are small enough to code by hand, which keeps this probe free of a proto loader at run time.
function encodeCheckRequest(service: string): Uint8Array {
  const name = Buffer.from(service, 'utf8');
  if (name.length === 0) return new Uint8Array(0);
  if (name.length > 127) throw new RangeError('health service name longer than 127 bytes');
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

const STATUS_NAMES: Record<number, HealthAnswer> = { 0: 'UNKNOWN', 1: 'SERVING', 2: 'NOT_SERVING', 3: 'SERVICE_UNKNOWN' };

function decodeCheckResponse(bytes: Buffer): HealthAnswer {
  // Field 1, varint: 0x08 then the value (always < 128); an empty message is status 0.
  if (bytes.length === 0) return 'UNKNOWN';
  if (bytes[0] !== 0x08 || bytes.length < 2) throw new Error('malformed HealthCheckResponse');
  return STATUS_NAMES[bytes[1]] ?? 'UNKNOWN';
}
