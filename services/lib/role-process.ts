/**
 * The life of one role process, the same for all four roles: read the config, set up logs and
 * telemetry, start the role, print one startup line, and stop cleanly on SIGTERM or SIGINT (or
 * when the supervisor that started us goes away, see below). A second signal exits at once.
 * An uncaught error is logged as fatal and exits 1: invariants stay on and fail loudly.
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';

import { Tracer } from '@opentelemetry/api';

import { Clock, systemClock } from './clock';
import { ConfigError, ConfigOf, ConfigSchema, checks, configUsage, field, loadConfig } from './config';
import { FlagError, HelpRequested } from './flags';
import { Logger, createLogger } from './log';
import { MetricsServer, RoleMetrics } from './metrics';
import { RoleInfo } from '../gen/consulate/common/v1/role';
import { Telemetry, setupTelemetry } from './telemetry';
import { VERSION } from './version';

/** Each role's metrics port: its gRPC port + 1000 (8310 -> 9310, 8502 -> 9502), so roles on one host never collide. */
export const DEFAULT_METRICS_PORTS: Readonly<Record<string, number>> = { consensus: 9310, gossip: 9320, 'federation-router': 9330, catalog: 9502 };

/** Fields every role takes, with Consul's flag names. */
export function commonFields(role: string) {
  return {
    datacenter: field.string({ key: 'datacenter', flag: 'datacenter', usage: 'The datacenter this process belongs to.', default: 'dc1', check: checks.datacenter }),
    node: field.string({ key: 'node_name', flag: 'node', usage: 'The name of this node (host) in the datacenter.', default: defaultNodeName(), check: checks.nodeName }),
    bind: field.string({ key: 'bind_addr', flag: 'bind', usage: 'The address every listener of this process binds to.', default: '127.0.0.1', check: checks.ipAddress }),
    dataDir: field.string({ key: 'data_dir', flag: 'data-dir', usage: 'Where this process keeps its state.', default: `.consulate/data/${role}`, check: checks.nonEmpty }),
    logLevel: field.string({ key: 'log_level', flag: 'log-level', usage: 'Least severe log level written.', default: 'info', check: checks.logLevel }),
    metricsPort: field.int({
      key: 'ports.metrics',
      flag: 'metrics-port',
      usage: 'Port of GET /metrics (Prometheus text format) on the -bind address; each role has its own (consensus 9310, gossip 9320, federation-router 9330, catalog 9502), so roles can share a host; 0 turns it off.',
      default: DEFAULT_METRICS_PORTS[role] ?? 0,
      check: (port) => (port >= 0 && port <= 65535 ? undefined : `port ${port} is out of range: use 1-65535, or 0 for no metrics listener`),
    }),
  };
}

type CommonSchema = ReturnType<typeof commonFields>;
export type RoleConfig<S extends ConfigSchema> = ConfigOf<S> & ConfigOf<CommonSchema>;

function defaultNodeName(): string {
  const name = hostname().split('.')[0];
  return name === '' ? 'node' : name;
}

export interface RoleContext<S extends ConfigSchema> {
  readonly config: RoleConfig<S>;
  readonly logger: Logger;
  readonly tracer: Tracer;
  readonly clock: Clock;
  /**
   * The process's Prometheus registry, served on `-metrics-port`: the role registers its own
   * series here (process metrics and consulate_build_info are already in it).
   */
  readonly metrics: RoleMetrics;
  /** This process's identity for Status answers; `listeners` is filled as they bind. */
  roleInfo(): RoleInfo;
}

export interface RunningRole {
  /** What the process listens on, by name, e.g. { grpc: '127.0.1.1:8310' }. */
  readonly listeners: Record<string, string>;
  stop(): Promise<void>;
}

export interface RoleDefinition<S extends ConfigSchema> {
  /** "consensus", "gossip", "catalog" or "federation-router". */
  readonly role: string;
  /** One line for -help. */
  readonly synopsis: string;
  /** The role's own fields; the common ones are added. */
  readonly fields: S;
  /**
   * Rules that span fields (Consul's config builder: segments only on servers, ...). Returns every
   * problem, each saying the fix; they are reported like a field's own.
   */
  validate?(config: RoleConfig<S>): string[];
  start(context: RoleContext<S>): Promise<RunningRole>;
}

export interface RoleIo {
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export function roleHelp<S extends ConfigSchema>(definition: RoleDefinition<S>): string {
  return [
    `Usage: consulate ${definition.role} [options]`,
    '',
    `  ${definition.synopsis}`,
    '',
    '  Options are read from -config files, then CONSULATE_* environment variables, then flags;',
    '  later sources win. Each option shows its config-file key and variable in brackets.',
    '',
    'Options:',
    '',
    configUsage({ ...commonFields(definition.role), ...definition.fields }),
  ].join('\n');
}

/** Runs a role until it is told to stop; resolves with the process exit code. */
export async function runRole<S extends ConfigSchema>(definition: RoleDefinition<S>, io: RoleIo): Promise<number> {
  const schema = { ...commonFields(definition.role), ...definition.fields };
  let config: ConfigOf<CommonSchema>;
  try {
    const loaded = loadConfig(schema, { args: io.args, env: io.env });
    if (loaded.positionals.length > 0) throw new FlagError(`unexpected argument: ${loaded.positionals[0]}`);
    const problems = definition.validate?.(loaded.config as unknown as RoleConfig<S>) ?? [];
    if (problems.length > 0) throw new ConfigError(problems);
    config = loaded.config as unknown as ConfigOf<CommonSchema>;
  } catch (err) {
    if (err instanceof HelpRequested) {
      io.stdout(`${roleHelp(definition)}\n`);
      return 0;
    }
    if (err instanceof ConfigError || err instanceof FlagError) {
      io.stderr(`consulate ${definition.role}: ${err.message}\n\nRun 'consulate ${definition.role} -help' for the options.\n`);
      return 1;
    }
    throw err;
  }

  const logger = createLogger({ role: definition.role, datacenter: config.datacenter, node: config.node, level: config.logLevel });
  let telemetry: Telemetry;
  try {
    telemetry = setupTelemetry({ role: definition.role, datacenter: config.datacenter, node: config.node, env: io.env });
    mkdirSync(config.dataDir, { recursive: true });
  } catch (err) {
    logger.fatal({ err }, `cannot start: ${(err as Error).message}`);
    return 1;
  }

  const startedAtMs = systemClock.nowMs();
  const listeners: Record<string, string> = {};
  const metrics = new RoleMetrics({ role: definition.role, datacenter: config.datacenter, node: config.node, version: VERSION });
  const context: RoleContext<S> = {
    config: config as RoleConfig<S>,
    logger,
    tracer: telemetry.tracer,
    clock: systemClock,
    metrics,
    roleInfo: () => ({ role: definition.role, datacenter: config.datacenter, node: config.node, version: VERSION, startedAtUnixMs: BigInt(startedAtMs), listeners: { ...listeners } }),
  };

  let running: RunningRole;
  const metricsServer = config.metricsPort === 0 ? undefined : new MetricsServer(metrics, logger);
  let metricsAddress: string | undefined;
  try {
    running = await definition.start(context);
    // After the role, so a taken role port is the error reported when both are (a second copy
    // of the role on the same address); a taken metrics port then stops the role again.
    try {
      metricsAddress = await metricsServer?.listen(config.bind, config.metricsPort);
    } catch (err) {
      await running.stop().catch(() => undefined);
      throw err;
    }
  } catch (err) {
    logger.fatal({ err }, `cannot start: ${(err as Error).message}`);
    // And the plain line Consul's agent prints, for whoever reads the terminal rather than the log.
    io.stderr(`==> Error starting agent: ${(err as Error).message}\n`);
    await telemetry.shutdown().catch(() => undefined);
    return 1;
  }
  Object.assign(listeners, running.listeners, metricsAddress === undefined ? {} : { metrics: metricsAddress });
  logger.info(
    { event: 'started', version: VERSION, pid: process.pid, listeners, data_dir: config.dataDir, otlp: telemetry.exportTarget },
    `consulate ${definition.role} running in ${config.datacenter} as ${config.node}: ${Object.entries(listeners).map(([name, address]) => `${name}=${address}`).join(' ')}`,
  );

  const reason = await stopSignal(io.env);
  logger.info({ event: 'stopping', reason }, `consulate ${definition.role} stopping (${reason})`);
  try {
    await running.stop();
  } catch (err) {
    logger.error({ err }, `error while stopping: ${(err as Error).message}`);
  }
  await metricsServer?.close();
  await telemetry.shutdown().catch((err: unknown) => logger.warn({ err }, 'could not flush spans'));
  logger.info({ event: 'stopped' }, `consulate ${definition.role} stopped`);
  return 0;
}

/**
 * Resolves on the first SIGTERM or SIGINT; a second one exits at once. Under a supervisor
 * (`make up` sets CONSULATE_SUPERVISED=1 and holds our stdin open), the end of stdin means the
 * supervisor is gone, even by SIGKILL, so we stop too rather than live on as an orphan.
 */
function stopSignal(env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (reason: string) => {
      if (stopping) {
        process.exit(1);
      }
      stopping = true;
      resolve(reason);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    if (env.CONSULATE_SUPERVISED === '1') {
      process.stdin.on('end', () => stop('supervisor gone'));
      process.stdin.on('error', () => stop('supervisor gone'));
      process.stdin.resume();
    }
  });
}

/** Logs an uncaught error as fatal and exits 1. */
export function installCrashHandlers(role: string): void {
  const crash = (err: unknown) => {
    process.stderr.write(`${JSON.stringify({ level: 'fatal', time: new Date().toISOString(), role, msg: `crashed: ${(err as Error)?.stack ?? String(err)}` })}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
}
