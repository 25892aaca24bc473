/**
 * Made-up networks with known RTTs, for testing the estimator against the truth (serf's
 * `coordinate/phantom.go`): a truth matrix generator per topology, a seeded round-robin of
 * observations, and the error of every pairwise estimate. Seeded, so a run is reproducible.
 */
import { VivaldiConfig } from './config';
import { VivaldiClient } from './client';

/** truth[i][j] = RTT between node i and node j, in seconds; symmetric, zero on the diagonal. */
export type TruthMatrix = readonly (readonly number[])[];

/** mulberry32: a tiny seeded PRNG in [0, 1), enough for simulations (not for keys). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function generateClients(nodes: number, config: VivaldiConfig, random: () => number): VivaldiClient[] {
  return Array.from({ length: nodes }, () => new VivaldiClient(config, random));
}

function symmetric(nodes: number, rtt: (i: number, j: number) => number): number[][] {
  const truth = Array.from({ length: nodes }, () => new Array<number>(nodes).fill(0));
  for (let i = 0; i < nodes; i++) {
    for (let j = i + 1; j < nodes; j++) truth[i][j] = truth[j][i] = rtt(i, j);
  }
  return truth;
}

/** Nodes on a straight line, `spacing` seconds apart. */
export function generateLine(nodes: number, spacing: number): TruthMatrix {
  return symmetric(nodes, (i, j) => (j - i) * spacing);
}

/** Nodes on a square grid of side floor(sqrt(nodes)), `spacing` seconds apart. */
export function generateGrid(nodes: number, spacing: number): TruthMatrix {
  const n = Math.floor(Math.sqrt(nodes));
  return symmetric(nodes, (i, j) => Math.hypot((j % n) - (i % n), Math.floor(j / n) - Math.floor(i / n)) * spacing);
}

/** Two sites: `lan` apart inside a site, `lan + wan` across (serf's split uses nodes/2 as the border). */
export function generateSplit(nodes: number, lan: number, wan: number): TruthMatrix {
  const split = Math.floor(nodes / 2);
  return symmetric(nodes, (i, j) => ((i <= split && j > split) || (i > split && j <= split) ? lan + wan : lan));
}

/**
 * Nodes on a circle of `radius`, except node 0, which is `2 * radius` from everyone: the only
 * way to place it is above the plane, so it shows whether the height term works.
 */
export function generateCircle(nodes: number, radius: number): TruthMatrix {
  return symmetric(nodes, (i, j) => {
    if (i === 0) return 2 * radius;
    const t1 = (2 * Math.PI * i) / nodes;
    const t2 = (2 * Math.PI * j) / nodes;
    return Math.hypot(Math.cos(t2) - Math.cos(t1), Math.sin(t2) - Math.sin(t1)) * radius;
  });
}

/**
 * `cycles` rounds in which every node observes one random other node (serf's Simulate: a draw of
 * itself is a skipped turn). Uses its own `random`, so the choice of peers is reproducible.
 */
export function simulate(clients: readonly VivaldiClient[], truth: TruthMatrix, cycles: number, random: () => number): void {
  const nodes = clients.length;
  for (let cycle = 0; cycle < cycles; cycle++) {
    for (let i = 0; i < nodes; i++) {
      const j = Math.floor(random() * nodes);
      if (j !== i) clients[i].update(`node_${j}`, clients[j].getCoordinate(), truth[i][j]);
    }
  }
}

export interface EvaluationStats {
  /** Largest relative error |estimate - truth| / truth over all pairs. */
  readonly errorMax: number;
  readonly errorAvg: number;
  /** Largest absolute error over all pairs, in seconds. */
  readonly absoluteErrorMax: number;
}

export function evaluate(clients: readonly VivaldiClient[], truth: TruthMatrix): EvaluationStats {
  let errorMax = 0;
  let errorSum = 0;
  let absoluteErrorMax = 0;
  let count = 0;
  for (let i = 0; i < clients.length; i++) {
    for (let j = i + 1; j < clients.length; j++) {
      const estimate = clients[i].distanceTo(clients[j].getCoordinate());
      const absolute = Math.abs(estimate - truth[i][j]);
      const relative = absolute / truth[i][j];
      errorMax = Math.max(errorMax, relative);
      absoluteErrorMax = Math.max(absoluteErrorMax, absolute);
      errorSum += relative;
      count++;
    }
  }
  return { errorMax, errorAvg: count === 0 ? 0 : errorSum / count, absoluteErrorMax };
}
