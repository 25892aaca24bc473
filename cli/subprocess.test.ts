// How children are started and described: agent.ExecScript / ExecSubprocess, exec.ExitError's texts.
import { childCommand, goExitText } from './subprocess';

describe('subprocess', () => {
  test('a shell gets the arguments joined with spaces ($SHELL, else /bin/sh); without one, they are the argv', () => {
    expect(childCommand(['echo', 'a b', '$X'], true, {})).toEqual({ file: '/bin/sh', argv: ['-c', 'echo a b $X'] });
    expect(childCommand(['echo'], true, { SHELL: '/bin/bash' })).toEqual({ file: '/bin/bash', argv: ['-c', 'echo'] });
    expect(childCommand(['echo', 'a b'], false, {})).toEqual({ file: 'echo', argv: ['a b'] });
    expect(childCommand([], false, {})).toEqual({ error: 'need an executable to run' });
  });

  test("exec.ExitError's words", () => {
    expect(goExitText(0, null)).toBeUndefined();
    expect(goExitText(3, null)).toBe('exit status 3');
    expect(goExitText(null, 'SIGTERM')).toBe('signal: terminated');
    expect(goExitText(null, 'SIGKILL')).toBe('signal: killed');
  });
});
