/** Ports hashicorp/serf `coordinate/client_test.go`, with the input checks the gossip shell relies on. */
import { VivaldiClient } from './client';
import { defaultVivaldiConfig, VivaldiConfig } from './config';
import { Coordinate, newCoordinate } from './coordinate';
import { seededRandom } from './phantom';

const config = (overrides: Partial<VivaldiConfig> = {}): VivaldiConfig => ({ ...defaultVivaldiConfig(), ...overrides });
const at = (c: Coordinate, fields: Partial<Coordinate>): Coordinate => ({ ...c, ...fields });
const client = (overrides: Partial<VivaldiConfig> = {}): VivaldiClient => new VivaldiClient(config(overrides), seededRandom(1));

/** The private median filter, reached the way serf's in-package test reaches it. */
const latencyFilter = (c: VivaldiClient, node: string, rtt: number): number => (c as unknown as { latencyFilter(node: string, rtt: number): number }).latencyFilter(node, rtt);

test('NewClient: refuses a dimensionality of 0 and starts at the origin', () => {
  expect(() => client({ dimensionality: 0 })).toThrow('dimensionality must be >0');
  expect(client({ dimensionality: 7 }).getCoordinate()).toEqual(newCoordinate(config({ dimensionality: 7 })));
});

test('the config is checked field by field, naming each bad field', () => {
  expect(() => client({ latencyFilterSize: 0, gravityRho: -1 })).toThrow('invalid Vivaldi config: latencyFilterSize must be an integer > 0; gravityRho must be a finite number > 0');
});

test('Update: an RTT longer than the distance pushes the client away; SetCoordinate forces a known state', () => {
  const c = client({ dimensionality: 3 });
  expect(c.getCoordinate().vec).toEqual([0, 0, 0]);

  // A node right above the client, observed at twice its distance.
  const other = at(newCoordinate(config({ dimensionality: 3 })), { vec: [0, 0, 0.001] });
  const updated = c.update('node', other, 2 * other.vec[2]);
  expect(updated.vec[2]).toBeLessThan(0);

  c.setCoordinate(at(updated, { vec: [updated.vec[0], updated.vec[1], 99.0] }));
  expect(c.getCoordinate().vec[2]).toBe(99.0);
});

test('the returned and fetched coordinates are copies: changing them does not move the client', () => {
  const c = client({ dimensionality: 3 });
  (c.getCoordinate().vec as number[])[0] = 42;
  expect(c.getCoordinate().vec[0]).toBe(0);
});

test('invalid RTTs are refused and leave the estimate unchanged (rtt <= 0, > 10 s, NaN, Infinity)', () => {
  const c = client({ dimensionality: 3 });
  const other = at(newCoordinate(config({ dimensionality: 3 })), { vec: [0, 0, 0.001] });
  const before = c.distanceTo(other);
  for (const rtt of [Number.MAX_SAFE_INTEGER, -35, 11, 10.000001, 0, -0, NaN, Infinity]) {
    expect(() => c.update('node', other, rtt)).toThrow('round trip time not in valid range');
    expect(c.distanceTo(other)).toBe(before);
  }
  // The bounds themselves: 10 s is still a valid observation.
  expect(() => c.update('node', other, 10)).not.toThrow();
});

test('DistanceTo: the client coordinate against another, in seconds', () => {
  const c = client({ dimensionality: 3, heightMin: 0 });
  const other = at(newCoordinate(config({ dimensionality: 3, heightMin: 0 })), { vec: [0, 0, 12.345] });
  expect(c.distanceTo(other)).toBe(12.345);
});

test('latency filter: the median of the last 3 samples per node; a glitch never reaches Vivaldi; forgetNode forgets', () => {
  const c = client({ latencyFilterSize: 3 });
  const steps: [string, number, number][] = [
    ['alice', 0.201, 0.201],
    ['alice', 0.2, 0.201],
    ['alice', 0.207, 0.201],
    ['alice', 1.9, 0.207],
    ['alice', 0.203, 0.207],
    ['alice', 0.199, 0.203],
    ['alice', 0.211, 0.203],
    // Different nodes are not coupled.
    ['bob', 0.31, 0.31],
  ];
  for (const [node, sample, median] of steps) expect(latencyFilter(c, node, sample)).toBe(median);
  c.forgetNode('alice');
  expect(latencyFilter(c, 'alice', 0.888)).toBe(0.888);
});

describe('NaN defence (serf TestClient_NaN_Defense)', () => {
  const cfg = config({ dimensionality: 3 });
  const bad = at(newCoordinate(cfg), { vec: [NaN, 0, 0] });

  test('a coordinate with a NaN is refused, by update and by setCoordinate', () => {
    const c = client({ dimensionality: 3 });
    expect(() => c.update('node', bad, 0.25)).toThrow('coordinate is invalid');
    expect(() => c.setCoordinate(bad)).toThrow('coordinate is invalid');
    expect(c.getCoordinate()).toEqual(newCoordinate(cfg));
  });

  test('a coordinate of another dimensionality is refused, by update and by setCoordinate', () => {
    const c = client({ dimensionality: 3 });
    const alien = at(newCoordinate(cfg), { vec: [0, 0, 0, 0, 0, 0] });
    expect(() => c.update('node', alien, 0.25)).toThrow("dimensions aren't compatible");
    expect(() => c.setCoordinate(alien)).toThrow("dimensions aren't compatible");
    expect(() => c.update('node', { error: 1 } as unknown as Coordinate, 0.25)).toThrow("dimensions aren't compatible");
  });

  test('a poisoned internal state is reset to the origin on the next update, and counted', () => {
    const c = client({ dimensionality: 3 });
    (c as unknown as { coord: Coordinate }).coord = bad;
    const updated = c.update('node', newCoordinate(cfg), 0.25);
    expect(updated.vec.every(Number.isFinite)).toBe(true);
    expect(c.stats().resets).toBe(1);
  });

  test('an update that overflows to Infinity resets instead of spreading the overflow', () => {
    const c = client({ dimensionality: 3 });
    const far = at(newCoordinate(cfg), { vec: [1e308, -1e308, 1e308] });
    const updated = c.update('node', far, 0.25);
    expect(updated).toEqual(newCoordinate(cfg));
    expect(c.stats().resets).toBe(1);
  });
});

test('two clients that observe each other converge on the true RTT', () => {
  const a = client();
  const b = client();
  for (let i = 0; i < 200; i++) {
    a.update('b', b.getCoordinate(), 0.05);
    b.update('a', a.getCoordinate(), 0.05);
  }
  expect(a.distanceTo(b.getCoordinate())).toBeCloseTo(0.05, 3);
  expect(a.getCoordinate().error).toBeLessThan(0.1);
});

test('the same seed gives the same coordinates (no hidden randomness)', () => {
  const run = (): Coordinate => {
    const a = new VivaldiClient(config(), seededRandom(9));
    const b = new VivaldiClient(config(), seededRandom(10));
    for (let i = 0; i < 20; i++) {
      a.update('b', b.getCoordinate(), 0.01);
      b.update('a', a.getCoordinate(), 0.01);
    }
    return a.getCoordinate();
  };
  expect(run()).toEqual(run());
});
