/**
 * Ports hashicorp/serf `coordinate/coordinate_test.go`, plus Consul's distance rule as
 * reference/consul-compat.md §3.8 states it.
 */
import { defaultVivaldiConfig, VivaldiConfig } from './config';
import {
  add,
  applyForce,
  cloneCoordinate,
  Coordinate,
  diff,
  DimensionalityConflictError,
  distanceMs,
  distanceNs,
  distanceTo,
  isCompatibleWith,
  isValid,
  magnitude,
  newCoordinate,
  rawDistanceTo,
  unitVectorAt,
} from './coordinate';
import { seededRandom } from './phantom';

const config = (overrides: Partial<VivaldiConfig> = {}): VivaldiConfig => ({ ...defaultVivaldiConfig(), ...overrides });
const at = (c: Coordinate, fields: Partial<Coordinate>): Coordinate => ({ ...c, ...fields });
const random = seededRandom(42);

function expectVector(actual: readonly number[], expected: readonly number[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((x, i) => expect(x).toBeCloseTo(expected[i], 12));
}

test('NewCoordinate: the configured dimensionality, at the origin with the maximum error and the minimum height', () => {
  const c = newCoordinate(config());
  expect(c).toEqual({ vec: [0, 0, 0, 0, 0, 0, 0, 0], error: 1.5, adjustment: 0, height: 10e-6 });
});

test('Clone: an equal, independent copy', () => {
  const c = at(newCoordinate(config()), { vec: [1, 2, 3, 0, 0, 0, 0, 0], error: 5, adjustment: 10, height: 4.2 });
  const other = cloneCoordinate(c);
  expect(other).toEqual(c);
  (other.vec as number[])[0] = c.vec[0] + 0.5;
  expect(other).not.toEqual(c);
  expect(c.vec[0]).toBe(1);
});

test('IsValid: every field rejects NaN and infinities, and the dimensionality must match', () => {
  const base = newCoordinate(config());
  const fields: ((value: number) => Coordinate)[] = [
    ...base.vec.map((_, i) => (value: number) => at(base, { vec: base.vec.map((x, j) => (j === i ? value : x)) })),
    (value) => at(base, { error: value }),
    (value) => at(base, { adjustment: value }),
    (value) => at(base, { height: value }),
  ];
  for (const withValue of fields) {
    expect(isValid(withValue(0), 8)).toBe(true);
    expect(isValid(withValue(NaN), 8)).toBe(false);
    expect(isValid(withValue(Infinity), 8)).toBe(false);
    expect(isValid(withValue(-Infinity), 8)).toBe(false);
  }
  expect(isValid(base, 7)).toBe(false);
});

test('IsCompatibleWith: only coordinates of equal dimensionality', () => {
  const c1 = newCoordinate(config({ dimensionality: 3 }));
  const c2 = newCoordinate(config({ dimensionality: 3 }));
  const alien = newCoordinate(config({ dimensionality: 2 }));
  expect(isCompatibleWith(c1, c1) && isCompatibleWith(c1, c2) && isCompatibleWith(c2, c1) && isCompatibleWith(alien, alien)).toBe(true);
  expect(isCompatibleWith(c1, alien) || isCompatibleWith(alien, c2)).toBe(false);
});

describe('ApplyForce', () => {
  const cfg = config({ dimensionality: 3, heightMin: 0 });
  const origin = newCoordinate(cfg);
  const above = at(newCoordinate(cfg), { vec: [0, 0, 2.9] });

  test('normalizes, gets the direction right and applies the force multiplier', () => {
    const c = applyForce(cfg, origin, 5.3, above, random);
    expectVector(c.vec, [0, 0, -5.3]);
    // A point not at the origin: nothing special about the origin.
    const right = at(newCoordinate(cfg), { vec: [3.4, 0, -5.3] });
    expectVector(applyForce(cfg, c, 2.0, right, random).vec, [-2.0, 0, -5.3]);
  });

  test('coincident points move one unit in a random direction, without dividing by zero', () => {
    const c = applyForce(cfg, origin, 1.0, origin, random);
    expect(distanceTo(origin, c)).toBeCloseTo(1.0, 12);
  });

  test('the height grows with the force and never drops below heightMin', () => {
    const withMin = config({ dimensionality: 3, heightMin: 10e-6 });
    const start = newCoordinate(withMin);
    const pushed = applyForce(withMin, start, 5.3, above, random);
    expectVector(pushed.vec, [0, 0, -5.3]);
    expect(pushed.height).toBeCloseTo(withMin.heightMin + (5.3 * withMin.heightMin) / 2.9, 15);
    const pulled = applyForce(withMin, start, -5.3, above, random);
    expectVector(pulled.vec, [0, 0, 5.3]);
    expect(pulled.height).toBe(withMin.heightMin);
  });

  test('mismatched dimensions are refused', () => {
    expect(() => applyForce(cfg, origin, 1.0, at(origin, { vec: [0, 0, 0, 0] }), random)).toThrow(DimensionalityConflictError);
  });
});

describe('DistanceTo (consul-compat.md §3.8: raw = ||a-b|| + heights; adj = raw + adjustments; adj if > 0 else raw)', () => {
  const cfg = config({ dimensionality: 3, heightMin: 0 });
  const c1 = at(newCoordinate(cfg), { vec: [-0.5, 1.3, 2.4] });
  const c2 = at(newCoordinate(cfg), { vec: [1.2, -2.3, 3.4] });
  const euclid = 4.104875150354758;

  test('symmetric, zero to itself, the Euclidean distance with no heights or adjustments', () => {
    expect(distanceTo(c1, c1)).toBe(0);
    expect(distanceTo(c1, c2)).toBeCloseTo(distanceTo(c2, c1), 15);
    expect(distanceTo(c1, c2)).toBeCloseTo(euclid, 12);
  });

  test('a negative total adjustment that would make the distance non-positive is ignored', () => {
    expect(distanceTo(at(c1, { adjustment: -1.0e6 }), c2)).toBeCloseTo(euclid, 12);
  });

  test('positive adjustments and heights add up', () => {
    expect(distanceTo(at(c1, { adjustment: 0.1 }), at(c2, { adjustment: 0.2 }))).toBeCloseTo(euclid + 0.3, 12);
    expect(distanceTo(at(c1, { adjustment: 0.1, height: 0.7 }), at(c2, { adjustment: 0.2, height: 0.1 }))).toBeCloseTo(euclid + 0.3 + 0.8, 12);
  });

  test('a small negative adjustment still applies while the total stays positive', () => {
    expect(distanceTo(at(c1, { adjustment: -0.1 }), c2)).toBeCloseTo(euclid - 0.1, 12);
  });

  test('in milliseconds and in nanoseconds (truncated like a Go time.Duration)', () => {
    const a = at(newCoordinate(cfg), { vec: [0.0123456789, 0, 0] });
    const b = newCoordinate(cfg);
    expect(distanceMs(a, b)).toBeCloseTo(12.3456789, 9);
    expect(distanceNs(a, b)).toBe(12345678);
  });

  test('mismatched dimensions are refused', () => {
    expect(() => distanceTo(c1, at(c1, { vec: [0, 0, 0, 0] }))).toThrow('coordinate dimensionality does not match');
  });

  test("the docs' self-contained dist() example agrees", () => {
    const a = at(newCoordinate(config()), { vec: [-0.5, 1.3, 2.4, 0, 0, 0, 0, 0], adjustment: 0.1, height: 0.7 });
    const b = at(newCoordinate(config()), { vec: [1.2, -2.3, 3.4, 0, 0, 0, 0, 0], adjustment: 0.2, height: 0.1 });
    let sumsq = 0;
    for (let i = 0; i < a.vec.length; i++) sumsq += (a.vec[i] - b.vec[i]) ** 2;
    const raw = Math.sqrt(sumsq) + a.height + b.height;
    const adjusted = raw + a.adjustment + b.adjustment;
    expect(distanceTo(a, b)).toBeCloseTo(adjusted > 0 ? adjusted : raw, 15);
  });
});

test('rawDistanceTo: heights count, adjustments do not', () => {
  const cfg = config({ dimensionality: 3, heightMin: 0 });
  const c1 = at(newCoordinate(cfg), { vec: [-0.5, 1.3, 2.4] });
  const c2 = at(newCoordinate(cfg), { vec: [1.2, -2.3, 3.4] });
  expect(rawDistanceTo(c1, c1)).toBe(0);
  expect(rawDistanceTo(c1, c2)).toBeCloseTo(rawDistanceTo(c2, c1), 15);
  expect(rawDistanceTo(at(c1, { adjustment: 1.0e6 }), c2)).toBeCloseTo(4.104875150354758, 12);
  expect(rawDistanceTo(at(c1, { height: 0.7 }), at(c2, { height: 0.1 }))).toBeCloseTo(4.104875150354758 + 0.8, 12);
});

test('vector helpers: add, diff, magnitude', () => {
  expectVector(add([1, -3, 3], [-4, 5, 6]), [-3, 2, 9]);
  expectVector(add([1, -3, 3], [0, 0, 0]), [1, -3, 3]);
  expectVector(diff([1, -3, 3], [-4, 5, 6]), [5, -8, -3]);
  expectVector(diff([1, -3, 3], [0, 0, 0]), [1, -3, 3]);
  expect(magnitude([0, 0, 0])).toBe(0);
  expect(magnitude([1, -2, 3])).toBeCloseTo(3.7416573867739413, 15);
});

describe('unitVectorAt', () => {
  test('points at the first vector from the second, and returns their distance', () => {
    const [u, mag] = unitVectorAt([1, 2, 3], [0.5, 0.6, 0.7], random);
    expectVector(u, [0.18257418583505536, 0.511207720338155, 0.8398412548412546]);
    expect(magnitude(u)).toBeCloseTo(1, 15);
    expect(mag).toBeCloseTo(magnitude(diff([1, 2, 3], [0.5, 0.6, 0.7])), 15);
  });

  test('equal positions give a random unit vector and distance 0, drawn from the injected random', () => {
    const [u, mag] = unitVectorAt([1, 2, 3], [1, 2, 3], random);
    expect(magnitude(u)).toBeCloseTo(1, 15);
    expect(mag).toBe(0);
    const [again] = unitVectorAt([1, 2, 3], [1, 2, 3], seededRandom(7));
    expect(unitVectorAt([1, 2, 3], [1, 2, 3], seededRandom(7))[0]).toEqual(again);
  });

  test('a degenerate random draw falls back to the first axis (serf had to force this by hand)', () => {
    expect(unitVectorAt([1, 2, 3], [1, 2, 3], () => 0.5)).toEqual([[1, 0, 0], 0]);
  });
});
