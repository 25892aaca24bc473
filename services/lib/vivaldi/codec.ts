/**
 * The coordinate as it rides in a SWIM ack payload (memberlist's PingDelegate): a fixed layout of
 * little-endian float64s, vec[0..7], error, adjustment, height = 88 bytes. Fixed, so a decoder
 * has nothing to negotiate; strict, because these bytes come from the network and a single NaN
 * or a short read must never reach the Vivaldi client.
 */
import { Coordinate } from './coordinate';

/** The dimensionality on the wire: serf's default, and what every Consul pool uses. */
export const WIRE_DIMENSIONALITY = 8;

/** 8 vec components + error + adjustment + height, 8 bytes each. */
export const COORDINATE_BYTES = (WIRE_DIMENSIONALITY + 3) * 8;

/** Throws for a coordinate that cannot be sent: wrong dimensionality or a non-finite value. */
export function encodeCoordinate(c: Coordinate): Uint8Array {
  if (c.vec.length !== WIRE_DIMENSIONALITY) throw new Error(`cannot encode a coordinate of ${c.vec.length} dimensions: the wire carries exactly ${WIRE_DIMENSIONALITY}`);
  const values = [...c.vec, c.error, c.adjustment, c.height];
  if (!values.every(Number.isFinite)) throw new Error('cannot encode a coordinate with a NaN or infinite component');
  const bytes = new Uint8Array(COORDINATE_BYTES);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => view.setFloat64(i * 8, value, true));
  return bytes;
}

/** The coordinate in `bytes`, or undefined when they are not exactly one valid coordinate. */
export function decodeCoordinate(bytes: Uint8Array): Coordinate | undefined {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== COORDINATE_BYTES) return undefined;
  // The payload is usually a slice of a larger datagram buffer: honour its offset.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values: number[] = [];
  for (let i = 0; i < WIRE_DIMENSIONALITY + 3; i++) {
    const value = view.getFloat64(i * 8, true);
    if (!Number.isFinite(value)) return undefined;
    values.push(value);
  }
  return { vec: values.slice(0, WIRE_DIMENSIONALITY), error: values[WIRE_DIMENSIONALITY], adjustment: values[WIRE_DIMENSIONALITY + 1], height: values[WIRE_DIMENSIONALITY + 2] };
}
