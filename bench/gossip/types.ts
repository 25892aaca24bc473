/**
 * What the shared harness (harness.ts) needs from a gossip system, implemented once for Serf
 * (serf.ts, msgpack RPC) and once for Consulate (consulate.ts, the gRPC Membership API).
 */
import { ChildProcess } from 'node:child_process';

/** One member as an agent lists it; `status` in Serf's words: alive, leaving, left, failed. */
export interface MemberView {
  readonly name: string;
  readonly status: string;
}

/** The RPC connection to one agent. Every call rejects on error or after its deadline. */
export interface AgentClient {
  members(): Promise<MemberView[]>;
  /** Asks this agent to join the member at `address` (ip:port); resolves with how many it joined. */
  join(address: string): Promise<number>;
  /** Fires a user event (Serf: Coalesce=false). */
  fireEvent(name: string, payload: Buffer): Promise<void>;
  /**
   * Subscribes to the user events this agent receives; `onEvent` gets each one's name and its
   * arrival time (performance.now()). Resolves once the subscription is open.
   */
  watchEvents(onEvent: (name: string, atMs: number) => void): Promise<void>;
  close(): void;
}

/** A gossip system whose agents run one per loopback IP; slots are 1-based, as in the anchor. */
export interface GossipSystem {
  readonly system: 'serf' | 'consulate';
  readonly version: string;
  /** The timing profile the agents run with, for the report. */
  readonly timings: string;
  /** The agent's gossip address in slot `slot` ("ip:port"): what the others join. */
  gossipAddress(slot: number): string;
  /** Starts agent `name` in slot `slot` (its own IP); `dir` holds its data and log. */
  startAgent(slot: number, name: string, dir: string): ChildProcess;
  /** Waits (bounded) until the agent's RPC answers, then returns a client for it. */
  connect(slot: number, timeoutMs: number): Promise<AgentClient>;
  /** Installs or checks what the system needs before the first run; throws with the fix. */
  prepare(): void;
}
