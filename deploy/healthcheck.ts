/**
 * The container HEALTHCHECK: `node dist/deploy/healthcheck.js 127.0.0.1:8310` asks the role's
 * gRPC health service (grpc.health.v1) and exits 0 only on SERVING. A Node probe rather than
 * grpc_health_probe, whose binary would have to be downloaded from GitHub into the image.
 * Exit codes are what Docker reads: 0 healthy, 1 unhealthy; 2 is a usage error.
 */
import { checkHealth } from '../services/lib/health-probe';

// Docker's default healthcheck timeout is 30 s; 2 s keeps one probe well inside any sane setting.
const PROBE_DEADLINE_MS = 2000;

async function main(args: readonly string[]): Promise<number> {
  if (args.length !== 1 || !/^[^\s]+:\d+$/.test(args[0])) {
    process.stderr.write('usage: node dist/deploy/healthcheck.js HOST:PORT\n');
    return 2;
  }
  const { answer, detail } = await checkHealth(args[0], PROBE_DEADLINE_MS);
  process.stdout.write(detail === '' ? `${answer}\n` : `${answer} (${detail})\n`);
  return answer === 'SERVING' ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
