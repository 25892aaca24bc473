// Thousands of simulated clusters per test: minutes, bounded by the seed count.
jest.setTimeout(900_000);
