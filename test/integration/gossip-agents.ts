/**
 * What the gossip integration tests share: real gossip agents started through the process
 * harness, their Membership API (port 8320), member watches, and the `consulate` CLI run as an
 * operator runs it (`node bin/consulate ...`). Not a test file itself.
 */
import { execFile } from 'node:child_process';

import { ClientReadableStream } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';

import { JoinResponse, Member, MemberEventType, MembershipServiceClient, WatchMembersResponse } from '../../services/gen/consulate/gossip/v1/membership';
import { callUnary, createRoleClient } from '../../services/lib/grpc-client';
import { CONSULATE_BIN, REPO_ROOT, RoleProcess, freeLoopbackAddress, startRole } from '../harness/processes';

const tracer = trace.getTracer('gossip-test');

export interface Agent {
  readonly name: string;
  readonly host: string;
  readonly proc: RoleProcess;
  readonly api: MembershipServiceClient;
}

const clients = new Set<MembershipServiceClient>();

/** Starts `consulate gossip` as node `name` on its own loopback address; waits for SERVING unless told not to. */
export async function startAgent(name: string, args: readonly string[], options: { host?: string; waitHealthy?: boolean } = {}): Promise<Agent> {
  const host = options.host ?? freeLoopbackAddress();
  const proc = await startRole({ role: 'gossip', node: name, address: host, args, waitHealthy: options.waitHealthy });
  const api = createRoleClient(MembershipServiceClient, proc.grpc, { tracer });
  clients.add(api);
  return { name, host, proc, api };
}

/** Closes every Membership API client opened here (the processes are stopped by the harness). */
export function closeClients(): void {
  for (const client of clients) client.close();
  clients.clear();
}

export async function members(agent: Agent, segment = ''): Promise<Member[]> {
  return (await callUnary(agent.api.members.bind(agent.api), { segment }, { timeoutMs: 5_000, idempotent: true })).members;
}

export async function join(agent: Agent, addresses: readonly string[], segment = ''): Promise<JoinResponse> {
  return callUnary(agent.api.join.bind(agent.api), { addresses: [...addresses], segment }, { timeoutMs: 15_000, idempotent: false });
}

/** name → status ("alive", "left", "failed") of one pool as `agent` sees it. */
export async function statuses(agent: Agent, segment = ''): Promise<Map<string, string>> {
  return new Map((await members(agent, segment)).map((m) => [m.name, m.status]));
}

/** True when `agent`'s pool holds exactly `names`, all alive. */
export async function seesExactlyAlive(agent: Agent, names: readonly string[], segment = ''): Promise<boolean> {
  const seen = await statuses(agent, segment).catch(() => new Map<string, string>());
  return seen.size === names.length && names.every((name) => seen.get(name) === 'alive');
}

/** `promise`, or a rejection naming `what` once `timeoutMs` has passed (the timer never outlives it). */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real CLI binary (`node bin/consulate ...`), killed by its PID if it overruns `timeoutMs`. */
export function runCli(args: readonly string[], timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CONSULATE_BIN, ...args], { cwd: REPO_ROOT, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `consulate members` output as rows of columns (header first), split on runs of spaces. */
export function tableRows(output: string): string[][] {
  return output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.trim().split(/\s+/));
}

export interface WatchedEvent {
  readonly type: MemberEventType;
  readonly name: string;
  readonly status: string;
  readonly incarnation: bigint;
  /** Date.now() when the test process received it. */
  readonly atMs: number;
}

/** A WatchMembers stream held open by the test: every event with the time it arrived. */
export class MemberWatch {
  readonly events: WatchedEvent[] = [];
  private readonly call: ClientReadableStream<WatchMembersResponse>;
  private syncedAt: number | undefined;

  /** `maxMs` bounds the stream (a deadline), whether or not the test cancels it. */
  constructor(
    readonly agent: Agent,
    segment = '',
    maxMs = 150_000,
  ) {
    this.call = agent.api.watchMembers({ segment }, { deadline: Date.now() + maxMs });
    this.call.on('data', (response: WatchMembersResponse) => {
      const event = response.event;
      if (event === undefined) return;
      if (event.type === MemberEventType.MEMBER_EVENT_TYPE_SYNCED) this.syncedAt = Date.now();
      if (event.member === undefined) return;
      this.events.push({ type: event.type, name: event.member.name, status: event.member.status, incarnation: event.member.incarnation, atMs: Date.now() });
    });
    // Cancelled by close(), or the deadline: either ends the watch.
    this.call.on('error', () => undefined);
  }

  get synced(): boolean {
    return this.syncedAt !== undefined;
  }

  /** Events of `type` about `name` (every member when omitted), after `sinceMs`. */
  about(type: MemberEventType, name?: string, sinceMs = 0): WatchedEvent[] {
    return this.events.filter((e) => e.type === type && (name === undefined || e.name === name) && e.atMs >= sinceMs);
  }

  close(): void {
    this.call.cancel();
  }
}
