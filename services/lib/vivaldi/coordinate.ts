/**
 * A Vivaldi network coordinate and its geometry (hashicorp/serf `coordinate/coordinate.go`).
 * All values are seconds except `error`, which is dimensionless. Coordinates are only
 * comparable inside one pool (a segment, the WAN, one area): reference/consul-compat.md §3.8.
 */
import { VivaldiConfig } from './config';

export interface Coordinate {
  /** The Euclidean part (seconds). */
  readonly vec: readonly number[];
  /** Confidence in this coordinate; starts at vivaldiErrorMax and falls as observations agree. */
  readonly error: number;
  /** Offset learned from recent observations, per [3] (seconds); see client.ts. */
  readonly adjustment: number;
  /** The access-link part that geography does not explain (seconds); never below heightMin. */
  readonly height: number;
}

/** Serf panics with this when two coordinates of different dimensionality meet; we throw it. */
export class DimensionalityConflictError extends Error {
  override readonly name = 'DimensionalityConflictError';
  constructor() {
    super('coordinate dimensionality does not match');
  }
}

/** Below this two positions count as on top of each other (serf's zeroThreshold). */
export const ZERO_THRESHOLD = 1.0e-6;

const SECONDS_TO_NANOSECONDS = 1.0e9;

/** A coordinate at the origin, as a node starts before it has observed anything. */
export function newCoordinate(config: VivaldiConfig): Coordinate {
  return { vec: new Array<number>(config.dimensionality).fill(0), error: config.vivaldiErrorMax, adjustment: 0, height: config.heightMin };
}

export function cloneCoordinate(c: Coordinate): Coordinate {
  return { vec: [...c.vec], error: c.error, adjustment: c.adjustment, height: c.height };
}

export function isCompatibleWith(a: Coordinate, b: Coordinate): boolean {
  return a.vec.length === b.vec.length;
}

/**
 * Serf's IsValid (no NaN, no infinity anywhere) plus the dimensionality check the caller would
 * otherwise make separately: coordinates arrive from the network, and one bad value would
 * poison every distance computed from it.
 */
export function isValid(c: Coordinate, dimensionality: number): boolean {
  return Array.isArray(c.vec) && c.vec.length === dimensionality && c.vec.every(Number.isFinite) && Number.isFinite(c.error) && Number.isFinite(c.adjustment) && Number.isFinite(c.height);
}

/**
 * The estimated RTT in seconds, by Consul's rule (serf DistanceTo, used by `lib/rtt.go`):
 * raw = ||a.vec - b.vec|| + a.height + b.height; the adjustments are added only when that keeps
 * the result positive, since a negative RTT is meaningless.
 */
export function distanceTo(a: Coordinate, b: Coordinate): number {
  if (!isCompatibleWith(a, b)) throw new DimensionalityConflictError();
  const raw = rawDistanceTo(a, b);
  const adjusted = raw + a.adjustment + b.adjustment;
  return adjusted > 0 ? adjusted : raw;
}

/** `distanceTo` in milliseconds, the unit Consul's `consul rtt` prints. */
export function distanceMs(a: Coordinate, b: Coordinate): number {
  return distanceTo(a, b) * 1000;
}

/** `distanceTo` as whole nanoseconds, truncated like Go's `time.Duration(dist * 1e9)`. */
export function distanceNs(a: Coordinate, b: Coordinate): number {
  return Math.trunc(distanceTo(a, b) * SECONDS_TO_NANOSECONDS);
}

/** The Vivaldi distance without the adjustments; the adjustment update needs exactly this. */
export function rawDistanceTo(a: Coordinate, b: Coordinate): number {
  if (!isCompatibleWith(a, b)) throw new DimensionalityConflictError();
  return magnitude(diff(a.vec, b.vec)) + a.height + b.height;
}

/**
 * Moves `c` by `force` seconds directly away from `other` (towards it when negative), and
 * grows or shrinks the height in proportion, as serf's ApplyForce does. `random` only matters
 * when the two sit on top of each other and a direction must be invented.
 */
export function applyForce(config: VivaldiConfig, c: Coordinate, force: number, other: Coordinate, random: () => number): Coordinate {
  if (!isCompatibleWith(c, other)) throw new DimensionalityConflictError();
  const [unit, mag] = unitVectorAt(c.vec, other.vec, random);
  let height = c.height;
  if (mag > ZERO_THRESHOLD) {
    height = Math.max((c.height + other.height) * force / mag + c.height, config.heightMin);
  }
  return { vec: add(c.vec, mul(unit, force)), error: c.error, adjustment: c.adjustment, height };
}

export function add(a: readonly number[], b: readonly number[]): number[] {
  return a.map((x, i) => x + b[i]);
}

export function diff(a: readonly number[], b: readonly number[]): number[] {
  return a.map((x, i) => x - b[i]);
}

export function mul(v: readonly number[], factor: number): number[] {
  return v.map((x) => x * factor);
}

export function magnitude(v: readonly number[]): number {
  let sum = 0;
  for (const x of v) sum += x * x;
  return Math.sqrt(sum);
}

/**
 * A unit vector pointing at `a` from `b` and the distance between them. Two coincident points
 * get a random direction and distance 0 (serf's rule), so every node starting at the origin
 * still pushes apart; only if the random draw is degenerate too does it fall back to axis 0.
 */
export function unitVectorAt(a: readonly number[], b: readonly number[], random: () => number): [number[], number] {
  const d = diff(a, b);
  const mag = magnitude(d);
  if (mag > ZERO_THRESHOLD) return [mul(d, 1 / mag), mag];

  const r = d.map(() => random() - 0.5);
  const rmag = magnitude(r);
  if (rmag > ZERO_THRESHOLD) return [mul(r, 1 / rmag), 0];

  const axis = new Array<number>(d.length).fill(0);
  axis[0] = 1;
  return [axis, 0];
}
