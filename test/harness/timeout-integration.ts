// Real processes on 2 shared cores: each test bounds its own waits; this is the backstop.
jest.setTimeout(120_000);
