/**
 * The seeded randomness of the gossip benchmarks' simulations (the `Rng` of swim-sim.ts):
 * splitmix32 and one seed per size (seed × 1,000,003 + N), shared by run.ts's simulation section
 * and sim-scale.ts, so a size gives the same figures in both. bench/ does not import
 * test/sim/prng.ts.
 */
import { Rng } from './swim-sim';

export function seededRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
  return { next, fork: () => seededRng(Math.floor(next() * 4294967296)) };
}

/** sim-scale.ts's seed for one size. */
export function scaleSeed(seed: number, members: number): number {
  return seed * 1_000_003 + members;
}
