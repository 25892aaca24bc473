/**
 * A Consulate datacenter for the benchmark: `bin/consulate consensus` x3 on 127.0.16.1-3:8310 and
 * one `bin/consulate catalog` on 127.0.16.10 (HTTP :8500, gRPC :8502) over all three, the shape of
 * `make up`'s dc (deploy/topology.ts) without gossip. Data dirs live under the run's temp dir.
 */
import { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { RaftRole } from '../../services/gen/consulate/consensus/v1/cluster';
import { checkHealth } from '../../services/lib/health-probe';
import { ConsulateClient } from '../consensus/consulate';
import { VERSION } from '../../services/lib/version';
import { isRunning, sleep, startChild, stopChild, tracingEnv } from '../children';
import { Endpoint, agentFrom, httpCall } from './http-client';

const REPO = resolve(__dirname, '..', '..', '..');
const BIN = join(REPO, 'bin', 'consulate');
export const SERVER_IPS = ['127.0.16.1', '127.0.16.2', '127.0.16.3'];
export const CATALOG_IP = '127.0.16.10';
const CONSENSUS_PORT = 8310;
const CATALOG_GRPC_PORT = 8502;
export const CATALOG_HTTP: Endpoint = { host: CATALOG_IP, port: 8500 };
/** The source address of the harness's own control calls (health, the writes that wake). */
export const CONTROL_IP = '127.0.17.250';

export class ConsulateDatacenter {
  readonly version = `consulate ${VERSION} (dist/, this checkout)`;
  private readonly servers: (ChildProcess | undefined)[] = [undefined, undefined, undefined];
  private catalog: ChildProcess | undefined;
  private readonly control = agentFrom(CONTROL_IP, 4);

  constructor(private readonly dir: string, private readonly name: string) {}

  get catalogPid(): number | undefined {
    return this.catalog?.pid;
  }

  get serverPids(): (number | undefined)[] {
    return this.servers.map((s) => s?.pid);
  }

  /** Every process's log file, for the report. */
  logFiles(): string[] {
    return [...SERVER_IPS.map((_, i) => join(this.dir, `server-${i + 1}.log`)), join(this.dir, 'catalog.log')];
  }

  private env(): NodeJS.ProcessEnv {
    // No span export (the benchmark measures the catalog, not an OTLP exporter) and tracing as
    // tracingEnv says; supervised, so the roles stop when this process goes, however it goes.
    const env: NodeJS.ProcessEnv = { ...process.env, OTEL_TRACES_EXPORTER: 'none', CONSULATE_SUPERVISED: '1', ...tracingEnv() };
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
    delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    return env;
  }

  async start(): Promise<void> {
    const peers = SERVER_IPS.map((ip, j) => `-initial-peer=server-${j + 1}=${ip}:${CONSENSUS_PORT}`);
    for (let i = 0; i < 3; i++) {
      const node = `server-${i + 1}`;
      const dataDir = join(this.dir, node);
      mkdirSync(dataDir, { recursive: true });
      this.servers[i] = startChild(process.execPath, [BIN, 'consensus', `-node=${node}`, `-bind=${SERVER_IPS[i]}`, `-data-dir=${dataDir}`, ...peers, '-log-level=warn'],
        { logFile: join(this.dir, `${node}.log`), env: this.env(), stdinPipe: true });
    }
    const catalogDir = join(this.dir, 'catalog');
    mkdirSync(catalogDir, { recursive: true });
    // For A/B runs: CATALOG_NODE_FLAGS, Node/V8 flags for the catalog process alone (e.g.
    // --max-semi-space-size=64); CATALOG_ARGS, more catalog flags (e.g. -idle-gc=false).
    const catalogFlags = (process.env.CATALOG_NODE_FLAGS ?? '').split(' ').filter(Boolean);
    const catalogArgs = (process.env.CATALOG_ARGS ?? '').split(' ').filter(Boolean);
    this.catalog = startChild(process.execPath, [...catalogFlags, BIN, 'catalog', '-node=catalog', `-bind=${CATALOG_IP}`, `-data-dir=${catalogDir}`,
      ...SERVER_IPS.map((ip) => `-consensus-addr=${ip}:${CONSENSUS_PORT}`), '-log-level=warn', ...catalogArgs],
    { logFile: join(this.dir, 'catalog.log'), env: this.env(), stdinPipe: true });
    await this.waitReady(60_000);
  }

  /** Every process SERVING on gRPC, then a KV write and a default-consistency read through HTTP. */
  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (![...this.servers, this.catalog].every(isRunning)) throw new Error(`${this.name}: a process exited while starting; see ${this.logFiles().join(', ')}`);
      const health = await Promise.all([...SERVER_IPS.map((ip) => `${ip}:${CONSENSUS_PORT}`), `${CATALOG_IP}:${CATALOG_GRPC_PORT}`].map((a) => checkHealth(a, 1_000)));
      if (health.every((h) => h.answer === 'SERVING')) {
        try {
          const put = await httpCall(CATALOG_HTTP, this.control, 'PUT', '/v1/kv/bench/ready', Buffer.from('ok'), 2_000);
          const get = await httpCall(CATALOG_HTTP, this.control, 'GET', '/v1/kv/bench/ready', undefined, 2_000);
          if (put.status === 200 && get.status === 200) return;
          last = `PUT ${put.status} ${put.body.toString().slice(0, 100)}; GET ${get.status}`;
        } catch (e) {
          last = (e as Error).message;
        }
      } else {
        last = health.map((h) => h.answer).join(',');
      }
      await sleep(200);
    }
    throw new Error(`${this.name}: not ready within ${timeoutMs} ms (${last})`);
  }

  /**
   * Which server leads now (`server-N`), for the report: the catalog's view watches its first
   * -consensus-addr (server-1), so a write wakes blocking queries only once that server applies it.
   */
  async leader(): Promise<string | undefined> {
    for (let i = 0; i < SERVER_IPS.length; i++) {
      const client = new ConsulateClient(`${SERVER_IPS[i]}:${CONSENSUS_PORT}`);
      try {
        if ((await client.status(1_000)).role === RaftRole.RAFT_ROLE_LEADER) return `server-${i + 1}`;
      } catch { /* not this one */ } finally {
        client.close();
      }
    }
    return undefined;
  }

  async stop(): Promise<void> {
    this.control.destroy();
    await stopChild(this.catalog);
    await Promise.all(this.servers.map((s) => stopChild(s)));
  }
}
