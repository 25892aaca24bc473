/**
 * The coordinate in a SWIM ack: 88 bytes of little-endian float64s. These bytes come from the
 * network, so the decoder must turn anything but one valid coordinate into `undefined`.
 */
import { COORDINATE_BYTES, decodeCoordinate, encodeCoordinate } from './codec';
import { defaultVivaldiConfig } from './config';
import { Coordinate, newCoordinate } from './coordinate';

const sample: Coordinate = { vec: [0.001, -0.002, 0.0003, 0, 1e-9, -1e-12, 0.5, -0.25], error: 0.4, adjustment: -0.0007, height: 0.0002 };

test('88 bytes, and a round trip is exact', () => {
  expect(COORDINATE_BYTES).toBe(88);
  const bytes = encodeCoordinate(sample);
  expect(bytes.byteLength).toBe(88);
  expect(decodeCoordinate(bytes)).toEqual(sample);
  expect(decodeCoordinate(encodeCoordinate(newCoordinate(defaultVivaldiConfig())))).toEqual(newCoordinate(defaultVivaldiConfig()));
});

test('the layout: vec[0..7], error, adjustment, height, little-endian', () => {
  const view = new DataView(encodeCoordinate(sample).buffer);
  expect(view.getFloat64(0, true)).toBe(0.001);
  expect(view.getFloat64(7 * 8, true)).toBe(-0.25);
  expect(view.getFloat64(64, true)).toBe(0.4);
  expect(view.getFloat64(72, true)).toBe(-0.0007);
  expect(view.getFloat64(80, true)).toBe(0.0002);
  // Byte order pinned: 1.0 is 00 00 00 00 00 00 f0 3f in little-endian.
  const one = encodeCoordinate({ ...sample, vec: [1, 0, 0, 0, 0, 0, 0, 0] });
  expect([...one.subarray(0, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
});

test('decodes from a slice of a larger buffer (an ack payload inside a datagram)', () => {
  const datagram = new Uint8Array(3 + 88 + 5);
  datagram.set(encodeCoordinate(sample), 3);
  expect(decodeCoordinate(datagram.subarray(3, 91))).toEqual(sample);
});

test('any other length is refused', () => {
  const bytes = encodeCoordinate(sample);
  for (const length of [0, 1, 8, 80, 87, 89, 96, 176]) {
    const wrong = new Uint8Array(length);
    wrong.set(bytes.subarray(0, Math.min(length, 88)));
    expect(decodeCoordinate(wrong)).toBeUndefined();
  }
});

test('a NaN or an infinity in any field is refused', () => {
  for (let field = 0; field < 11; field++) {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const bytes = encodeCoordinate(sample);
      new DataView(bytes.buffer).setFloat64(field * 8, bad, true);
      expect(decodeCoordinate(bytes)).toBeUndefined();
    }
  }
});

test('not bytes at all is refused rather than crashing', () => {
  expect(decodeCoordinate(undefined as unknown as Uint8Array)).toBeUndefined();
  expect(decodeCoordinate('x'.repeat(88) as unknown as Uint8Array)).toBeUndefined();
});

test('encoding refuses what could not be decoded: another dimensionality, a non-finite value', () => {
  expect(() => encodeCoordinate({ ...sample, vec: [0, 0, 0] })).toThrow('cannot encode a coordinate of 3 dimensions');
  expect(() => encodeCoordinate({ ...sample, height: NaN })).toThrow('NaN or infinite');
});
