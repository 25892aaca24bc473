/**
 * Consulate's gossip role as the system under test: one `bin/consulate gossip` per loopback IP
 * 127.0.15.i (SWIM on :8301, gRPC Membership API on :8320), all clients of the default segment (the
 * closest match to N plain Serf agents), the LAN profile (the role's default). Spoken to through
 * the generated gRPC client, made the way the roles make theirs (createRoleClient).
 */
import { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { ClientReadableStream, MethodDefinition } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { JoinRequest, JoinResponse, MembersRequest, MembersResponse, MembershipServiceClient, MembershipServiceService, WatchEventsResponse } from '../../services/gen/consulate/gossip/v1/membership';
import { CallStreamClient, UnaryMethod } from '../../services/lib/call-stream';
import { callUnary, createRoleClient } from '../../services/lib/grpc-client';
import { checkHealth } from '../../services/lib/health-probe';
import { lanDefaults } from '../../services/lib/swim/config';
import { VERSION } from '../../services/lib/version';
import { startChild, tracingEnv } from '../children';
import { AgentClient, GossipSystem, MemberView } from './types';

const REPO = resolve(__dirname, '..', '..', '..');
const BIN = join(REPO, 'bin', 'consulate');
const GOSSIP_PORT = 8301;
const GRPC_PORT = 8320;
const CALL_TIMEOUT_MS = 10_000;

export const consulateIp = (slot: number) => `127.0.15.${slot}`;

/**
 * How the harness calls an agent: `calls` (the default) as frames on the agent's open
 * MembershipService.Calls stream, as Serf's RPC carries its requests on one open connection;
 * `unary`, a gRPC call each (BENCH_GOSSIP_API=unary). Polling 20 agents every 15 ms with unary
 * calls costs more than a core of this machine's two at both ends together.
 */
export const GOSSIP_BENCH_API = process.env.BENCH_GOSSIP_API === 'unary' ? 'unary' : 'calls';

export class ConsulateAgentClient implements AgentClient {
  private readonly client: MembershipServiceClient;
  private readonly calls: CallStreamClient | undefined;
  private readonly membersMethod: UnaryMethod<MembersRequest, MembersResponse>;
  private readonly joinMethod: UnaryMethod<JoinRequest, JoinResponse>;
  private readonly watches: ClientReadableStream<WatchEventsResponse>[] = [];

  constructor(readonly address: string) {
    const tracer = trace.getTracer('consulate-bench');
    this.client = createRoleClient(MembershipServiceClient, address, { tracer });
    const calls = GOSSIP_BENCH_API === 'calls' ? new CallStreamClient({ client: this.client, tracer, peer: address }) : undefined;
    this.calls = calls;
    const api = <Req, Res>(definition: MethodDefinition<Req, Res>, unary: UnaryMethod<Req, Res>) => (calls === undefined ? unary : calls.method(definition, unary));
    this.membersMethod = api(MembershipServiceService.members, this.client.members.bind(this.client));
    this.joinMethod = api(MembershipServiceService.join, this.client.join.bind(this.client));
  }

  async members(): Promise<MemberView[]> {
    const res = await callUnary(this.membersMethod, { segment: '' }, { timeoutMs: CALL_TIMEOUT_MS, idempotent: false });
    return res.members.map((m) => ({ name: m.name, status: m.status }));
  }

  async join(address: string): Promise<number> {
    const res = await callUnary(this.joinMethod, { addresses: [address], segment: '' }, { timeoutMs: CALL_TIMEOUT_MS, idempotent: false });
    if (res.joined === 0) throw new Error(res.results.map((r) => r.error).join('; ') || 'joined no one');
    return res.joined;
  }

  async fireEvent(name: string, payload: Buffer): Promise<void> {
    await callUnary(this.client.fireEvent.bind(this.client), { name, payload }, { timeoutMs: CALL_TIMEOUT_MS, idempotent: false });
  }

  /**
   * Opens the WatchEvents stream. The server sends nothing until the first event, so "open" here
   * is "sent"; the harness confirms every subscription with a warm-up event before measuring.
   */
  async watchEvents(onEvent: (name: string, atMs: number) => void): Promise<void> {
    const call = this.client.watchEvents({});
    call.on('data', (msg: WatchEventsResponse) => {
      const at = performance.now();
      if (msg.event) onEvent(msg.event.name, at);
    });
    call.on('error', () => { /* cancelled on close, or the agent was killed */ });
    this.watches.push(call);
  }

  close(): void {
    for (const w of this.watches) w.cancel();
    this.calls?.close();
    this.client.close();
  }
}

export class ConsulateSystem implements GossipSystem {
  readonly system = 'consulate' as const;
  readonly version = `consulate ${VERSION} (dist/, this checkout)`;
  readonly timings: string;

  /** `logLevel`: the agents' -log-level; debug shows dropped packets and failed push/pulls. */
  constructor(private readonly logLevel = 'info') {
    const t = lanDefaults();
    this.timings = `-gossip-profile=lan (default): probe ${t.probeIntervalMs} ms, probe timeout ${t.probeTimeoutMs} ms, ${t.indirectChecks} indirect, suspicion mult ${t.suspicionMult} / max mult ${t.suspicionMaxTimeoutMult}, gossip ${t.gossipIntervalMs} ms to ${t.gossipNodes}, retransmit mult ${t.retransmitMult}, push/pull ${t.pushPullIntervalMs / 1000} s, eager gossip ${t.eagerGossip ? "on" : "off"} (-gossip-eager); all clients of the default segment; the harness calls them ${GOSSIP_BENCH_API === 'calls' ? 'as frames on MembershipService.Calls' : 'with unary gRPC calls'} (BENCH_GOSSIP_API)`;
  }

  prepare(): void {
    // `make bench-gossip` builds first; bin/consulate says so itself when dist/ is missing.
  }

  gossipAddress(slot: number): string {
    return `${consulateIp(slot)}:${GOSSIP_PORT}`;
  }

  startAgent(slot: number, name: string, dir: string): ChildProcess {
    const dataDir = join(dir, name);
    mkdirSync(dataDir, { recursive: true });
    const env: NodeJS.ProcessEnv = { ...process.env, CONSULATE_SUPERVISED: '1', OTEL_TRACES_EXPORTER: 'none', ...tracingEnv() };
    return startChild(process.execPath, [BIN, 'gossip', `-node=${name}`, `-bind=${consulateIp(slot)}`, `-data-dir=${dataDir}`, '-datacenter=dc1', `-log-level=${this.logLevel}`], {
      logFile: join(dir, `${name}.log`),
      env,
      stdinPipe: true,
    });
  }

  async connect(slot: number, timeoutMs: number): Promise<AgentClient> {
    const address = `${consulateIp(slot)}:${GRPC_PORT}`;
    const deadline = performance.now() + timeoutMs;
    let last = '';
    for (let attempt = 0; attempt < 10_000 && performance.now() < deadline; attempt++) {
      const { answer, detail } = await checkHealth(address, 500);
      if (answer === 'SERVING') {
        // One call opens the channel (TCP + HTTP/2), as Serf's RPC connect + handshake does, so
        // no measured call pays for connection setup.
        const client = new ConsulateAgentClient(address);
        await client.members();
        return client;
      }
      last = `${answer} ${detail}`;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`consulate gossip ${address} not SERVING within ${timeoutMs} ms: ${last}`);
  }
}
