/**
 * HashiCorp Serf (Debian `serf`, memberlist's SWIM with Lifeguard) as the reference: one
 * `serf agent -profile=lan` per loopback IP 127.0.14.i (gossip :7946, RPC :7373), spoken to over
 * Serf's msgpack RPC exactly as /work/shared/anchors/serf-bench.mjs does: handshake, members, join,
 * event (Coalesce=false) and a `stream` subscription to user events.
 *
 * The RPC framing (Serf's client/rpc_client.go): every request is a msgpack header
 * {Command, Seq} followed by a body when the command takes one; every response is a header
 * {Seq, Error}, followed by a body for the commands that return one. A `stream` is acknowledged by
 * one bare header; each event then arrives as a header with the stream's Seq plus a body.
 */
import { ChildProcess, execFileSync, execSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Socket, connect } from 'node:net';
import { join } from 'node:path';

import { decodeMultiStream, encode } from '@msgpack/msgpack';

import { VERSION } from '../../services/lib/version';
import { startChild } from '../children';
import { AgentClient, GossipSystem, MemberView } from './types';

const SERF = '/usr/bin/serf';
const GOSSIP_PORT = 7946;
const RPC_PORT = 7373;
const CALL_TIMEOUT_MS = 10_000;

export const serfIp = (slot: number) => `127.0.14.${slot}`;

interface Pending {
  readonly expectBody: boolean;
  header?: { Seq: number; Error?: string };
  resolve(body: unknown): void;
  reject(err: Error): void;
}

interface Subscription {
  acked: boolean;
  readonly onEvent: (body: unknown, atMs: number) => void;
}

export class SerfRpc implements AgentClient {
  private socket: Socket | undefined;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly streams = new Map<number, Subscription>();
  /** The Seq whose body is the next object on the wire, if any. */
  private bodyFor: number | undefined;

  constructor(readonly host: string, readonly port: number) {}

  /** Connects (retrying until `timeoutMs`: the agent may still be starting) and handshakes. */
  async connect(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let lastError = '';
    for (let attempt = 0; attempt < 5_000; attempt++) {
      try {
        this.socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect({ host: this.host, port: this.port });
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        break;
      } catch (err) {
        lastError = (err as Error).message;
        if (performance.now() > deadline) throw new Error(`serf RPC ${this.host}:${this.port} not answering within ${timeoutMs} ms: ${lastError}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const socket = this.socket;
    if (socket === undefined) throw new Error(`serf RPC ${this.host}:${this.port}: ${lastError}`);
    socket.setNoDelay(true);
    socket.on('error', () => { /* surfaces as the pump ending */ });
    void (async () => {
      try {
        for await (const obj of decodeMultiStream(socket)) this.onObject(obj as Record<string, unknown>);
      } catch {
        /* closed or garbled: every pending call fails below */
      }
      for (const p of this.pending.values()) p.reject(new Error('serf RPC connection closed'));
      this.pending.clear();
    })();
    await this.call('handshake', { Version: 1 }, false);
  }

  private onObject(obj: Record<string, unknown>): void {
    const now = performance.now();
    if (this.bodyFor !== undefined) {
      const seq = this.bodyFor;
      this.bodyFor = undefined;
      const stream = this.streams.get(seq);
      if (stream?.acked) return stream.onEvent(obj, now);
      const p = this.pending.get(seq);
      this.pending.delete(seq);
      if (p) (p.header?.Error ? p.reject(new Error(p.header.Error)) : p.resolve(obj));
      return;
    }
    const header = obj as { Seq: number; Error?: string };
    const stream = this.streams.get(header.Seq);
    if (stream) {
      if (!stream.acked) {
        stream.acked = true;
        const p = this.pending.get(header.Seq);
        this.pending.delete(header.Seq);
        if (header.Error) p?.reject(new Error(header.Error));
        else p?.resolve(undefined);
        return;
      }
      this.bodyFor = header.Seq; // an event body follows
      return;
    }
    const p = this.pending.get(header.Seq);
    if (!p) return;
    if (p.expectBody) {
      p.header = header;
      this.bodyFor = header.Seq;
      return;
    }
    this.pending.delete(header.Seq);
    if (header.Error) p.reject(new Error(header.Error));
    else p.resolve(undefined);
  }

  private call(command: string, body: unknown, expectBody: boolean, timeoutMs = CALL_TIMEOUT_MS): Promise<unknown> {
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) return Promise.reject(new Error('serf RPC not connected'));
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`serf RPC ${command} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, {
        expectBody,
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      const header = encode({ Command: command, Seq: seq });
      socket.write(body === undefined ? header : Buffer.concat([header, encode(body)]));
    });
  }

  async members(): Promise<MemberView[]> {
    const body = (await this.call('members', undefined, true)) as { Members: { Name: string; Status: string }[] };
    return body.Members.map((m) => ({ name: m.Name, status: m.Status }));
  }

  async join(address: string): Promise<number> {
    const body = (await this.call('join', { Existing: [address], Replay: false }, true)) as { Num: number };
    return body.Num;
  }

  async fireEvent(name: string, payload: Buffer): Promise<void> {
    await this.call('event', { Name: name, Payload: payload, Coalesce: false }, false);
  }

  async watchEvents(onEvent: (name: string, atMs: number) => void): Promise<void> {
    const seq = this.seq; // the Seq call() is about to use
    this.streams.set(seq, { acked: false, onEvent: (body, at) => onEvent(String((body as { Name?: unknown }).Name), at) });
    await this.call('stream', { Type: 'user' }, false);
  }

  close(): void {
    this.socket?.destroy();
  }
}

/**
 * The Serf tags a Consul client agent carries (consul-compat.md §1.5), as Consulate's gossip agent
 * sets them: with them an alive message is about 165 bytes instead of about 30, so only 8 fit in
 * one 1,400-byte gossip packet. Off by default (the anchor ran bare agents).
 */
function consulTags(): string[] {
  const tags: Record<string, string> = { role: 'node', dc: 'dc1', segment: '', id: randomUUID(), vsn: '2', vsn_min: '2', vsn_max: '3', build: VERSION };
  return Object.entries(tags).flatMap(([k, v]) => ['-tag', `${k}=${v}`]);
}

export class SerfSystem implements GossipSystem {
  readonly system = 'serf' as const;
  version = 'serf (Debian)';
  readonly timings: string;

  /** `withConsulTags`: start every agent with the tags a Consul client has (see consulTags). */
  constructor(private readonly withConsulTags = false) {
    this.timings = `-profile=lan: memberlist DefaultLANConfig (probe 1 s, probe timeout 500 ms, 3 indirect, suspicion mult 4 / max mult 6, gossip 200 ms to 3, retransmit mult 4, push/pull 30 s); ${withConsulTags ? "with a Consul client's tags (role, dc, segment, id, vsn, vsn_min, vsn_max, build)" : 'no tags'}`;
  }

  prepare(): void {
    if (spawnSync('sh', ['-c', `test -x ${SERF}`]).status !== 0) {
      process.stderr.write(`${SERF} not found: installing Debian serf\n`);
      try {
        execSync('apt-get install -y serf', { stdio: 'inherit' });
      } catch {
        execSync('apt-get update && apt-get install -y serf', { stdio: 'inherit' });
      }
    }
    this.version = `serf ${execFileSync(SERF, ['version'], { encoding: 'utf8' }).split('\n')[0].trim()} (Debian)`;
  }

  gossipAddress(slot: number): string {
    return `${serfIp(slot)}:${GOSSIP_PORT}`;
  }

  startAgent(slot: number, name: string, dir: string): ChildProcess {
    const tags = this.withConsulTags ? consulTags() : [];
    return startChild(SERF, ['agent', `-node=${name}`, `-bind=${serfIp(slot)}:${GOSSIP_PORT}`, `-rpc-addr=${serfIp(slot)}:${RPC_PORT}`, '-profile=lan', '-log-level=info', ...tags], {
      logFile: join(dir, `${name}.log`),
    });
  }

  async connect(slot: number, timeoutMs: number): Promise<AgentClient> {
    const rpc = new SerfRpc(serfIp(slot), RPC_PORT);
    await rpc.connect(timeoutMs);
    return rpc;
  }
}
