/**
 * The gRPC server every role runs: our services wrapped in tracing, standard health checking
 * (`grpc.health.v1`, what the Docker HEALTHCHECK and `make up` probe), server reflection, message
 * size limits, keepalive, a cap on concurrent streams, and a graceful shutdown that reports
 * NOT_SERVING first, lets calls in flight finish for a bounded time, then cuts the rest.
 */
import { dirname, join } from 'node:path';

import { ConnectionInjector, Server, ServerCredentials, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { Tracer } from '@opentelemetry/api';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';

import { withCallFrames } from './call-frames';
import { CallStreamServer } from './call-stream';
import { GRPC_SERVER_DEFAULTS } from './grpc-limits';
import { traceServiceImplementation, tracing } from './grpc-tracing';
import { Logger } from './log';
import { PACKAGE_ROOT } from './version';

export { GRPC_SERVER_DEFAULTS } from './grpc-limits';

export interface GrpcService {
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
  /** The .proto file that declares it, relative to proto/ (ts-proto's `protobufFileName`), for reflection. */
  readonly protoFile: string;
  /** false for internal chatter that would drown the traces (Raft's message streams). Default true. */
  readonly traced?: boolean;
  /**
   * The service has a `Calls` method (consulate/common/v1/call_stream.proto): its unary methods
   * are served on it too, by the same handlers (call-stream.ts). `implementation` leaves it out.
   */
  readonly callStream?: boolean;
}

/** "consulate.consensus.v1.ClusterService", from the first method's path; health reports by it. */
export function qualifiedServiceName(definition: ServiceDefinition): string {
  const first = Object.values(definition)[0];
  if (first === undefined) throw new Error('a gRPC service needs at least one method');
  return first.path.split('/')[1];
}

export interface RoleGrpcServerOptions {
  readonly logger: Logger;
  readonly tracer: Tracer;
  readonly services: readonly GrpcService[];
  readonly credentials?: ServerCredentials;
  readonly maxMessageBytes?: number;
  readonly shutdownGraceMs?: number;
}

export class RoleGrpcServer {
  private readonly server: Server;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly serviceNames: string[] = [];
  private readonly callStreams: CallStreamServer[] = [];
  private boundAddress: string | undefined;

  constructor(private readonly options: RoleGrpcServerOptions) {
    const maxMessageBytes = options.maxMessageBytes ?? GRPC_SERVER_DEFAULTS.maxMessageBytes;
    this.server = new Server({
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
      'grpc.max_concurrent_streams': GRPC_SERVER_DEFAULTS.maxConcurrentStreams,
      'grpc.keepalive_time_ms': GRPC_SERVER_DEFAULTS.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': GRPC_SERVER_DEFAULTS.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': GRPC_SERVER_DEFAULTS.minPingIntervalMs,
      // channelz stays on here: with it off, grpc-js 1.14 does not track sessions where
      // forceShutdown() looks for them, so a shutdown could not cut long-running watch streams.
    });
    this.health.addToServer(this.server);
    for (const service of options.services) {
      let implementation = service.traced === false || !tracing(options.tracer) ? service.implementation : traceServiceImplementation(options.tracer, service.definition, service.implementation);
      if (service.callStream === true) {
        // Not traced itself: a span as long as the stream would say nothing; each call has its own.
        // Answers no larger than a role client receives (createRoleClient: the default limit):
        // one larger would end the client's whole stream, failing every call on it. A server
        // allowed more (consensus, for Raft snapshots) fails only that call.
        const callStream = new CallStreamServer(service.definition, implementation, { maxMessageBytes: Math.min(maxMessageBytes, GRPC_SERVER_DEFAULTS.maxMessageBytes) });
        this.callStreams.push(callStream);
        implementation = { ...implementation, calls: callStream.handler as never };
      }
      this.server.addService(service.callStream === true ? withCallFrames(service.definition) : service.definition, implementation);
      const name = qualifiedServiceName(service.definition);
      this.serviceNames.push(name);
      this.health.setStatus(name, 'NOT_SERVING');
    }
    const reflected = loadSync([...options.services.map((service) => service.protoFile), healthProtoPath], {
      includeDirs: [join(PACKAGE_ROOT, 'proto'), dirname(dirname(dirname(healthProtoPath)))],
    });
    new ReflectionService(reflected).addToServer(this.server);
  }

  /** Binds and starts serving; resolves with "host:port" as bound (port 0 picks a free one). */
  async listen(host: string, port: number): Promise<string> {
    const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const credentials = this.options.credentials ?? ServerCredentials.createInsecure();
    const boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(target, credentials, (err, bound) => (err ? reject(new Error(`cannot listen on ${target}: ${err.message}`)) : resolve(bound)));
    });
    this.boundAddress = host.includes(':') ? `[${host}]:${boundPort}` : `${host}:${boundPort}`;
    return this.boundAddress;
  }

  /**
   * Serves connections accepted elsewhere (already authenticated, e.g. by our own TLS listener
   * that logs why it refuses a peer) instead of binding a port.
   */
  connectionInjector(): ConnectionInjector {
    return this.server.createConnectionInjector(ServerCredentials.createInsecure());
  }

  /** Reports SERVING (or not) for the whole server and each service, to health checkers. */
  setServing(serving: boolean): void {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    for (const name of this.serviceNames) this.health.setStatus(name, status);
  }

  get address(): string | undefined {
    return this.boundAddress;
  }

  /**
   * NOT_SERVING, then a graceful drain bounded by the grace period, then a forced close. Call
   * streams end once their calls are answered; calls sent on them meanwhile are refused unrun, and
   * their clients send them elsewhere.
   */
  async shutdown(): Promise<void> {
    this.setServing(false);
    const graceMs = this.options.shutdownGraceMs ?? GRPC_SERVER_DEFAULTS.shutdownGraceMs;
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve(true);
      });
      for (const callStream of this.callStreams) callStream.drain();
    });
    if (!drained) {
      this.options.logger.warn({ grace_ms: graceMs }, 'calls still running after the shutdown grace period; closing them');
      this.server.forceShutdown();
    }
  }
}
