// Three projects: `unit` runs the tests beside the code (and the checkers in test/checkers);
// `integration` starts real role processes from dist/ (build first: `make test` does);
// `simulation` runs the seeded whole-cluster simulator in test/sim.
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }] };

module.exports = {
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/services/**/*.test.ts', '<rootDir>/cli/**/*.test.ts', '<rootDir>/deploy/**/*.test.ts', '<rootDir>/test/checkers/**/*.test.ts'],
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      // Real processes on 2 shared cores: a test's own waits are bounded; this is the backstop.
      setupFilesAfterEnv: ['<rootDir>/test/harness/timeout-integration.ts'],
      slowTestThreshold: 30,
    },
    {
      // The seeded simulator: whole clusters in one process, virtual time, thousands of seeds.
      displayName: 'simulation',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/sim/**/*.test.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/harness/timeout-simulation.ts'],
    },
  ],
};
