import { ConfigSchema } from '../../services/lib/config';
import { RoleDefinition, installCrashHandlers, roleHelp, runRole } from '../../services/lib/role-process';
import { Command } from '../command';

/**
 * `consulate <role>` runs a role in this process until SIGTERM or SIGINT, as `consul agent` runs
 * an agent. The role's code is loaded only when its command runs.
 */
export function roleCommand<S extends ConfigSchema>(load: () => RoleDefinition<S>, synopsis: string): Command {
  return {
    synopsis,
    help: () => roleHelp(load()),
    async run(args, io) {
      const definition = load();
      installCrashHandlers(definition.role);
      return runRole(definition, { args, env: io.env, stdout: io.stdout, stderr: io.stderr });
    },
  };
}
