/**
 * A KV entry as stored under /kv/: a small binary envelope around the value, so a 512 KiB value
 * costs 512 KiB plus a few bytes, not a third more in base64 JSON.
 *
 *   byte 0        format version (1)
 *   bytes 1-8     Flags, uint64 big-endian (Consul's opaque flags)
 *   bytes 9-12    LockIndex, uint32 big-endian (times a session acquired the key)
 *   byte 13       session id length n (0: not held)
 *   bytes 14..    the session id (n bytes), then the value
 */
import { StoredKv } from './model';

const VERSION = 1;
const HEADER_BYTES = 14;

export function encodeKv(entry: StoredKv): Buffer {
  const session = Buffer.from(entry.Session, 'utf8');
  if (session.length > 255) throw new RangeError(`session id of ${session.length} bytes is too long`);
  const out = Buffer.alloc(HEADER_BYTES + session.length + entry.Value.length);
  out[0] = VERSION;
  out.writeBigUInt64BE(entry.Flags, 1);
  out.writeUInt32BE(entry.LockIndex, 9);
  out[13] = session.length;
  session.copy(out, HEADER_BYTES);
  out.set(entry.Value, HEADER_BYTES + session.length);
  return out;
}

/** The entry, or undefined when the bytes are not an envelope this version wrote. */
export function decodeKv(bytes: Uint8Array): StoredKv | undefined {
  if (bytes.length < HEADER_BYTES || bytes[0] !== VERSION) return undefined;
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const sessionLength = buffer[13];
  if (HEADER_BYTES + sessionLength > buffer.length) return undefined;
  return {
    Flags: buffer.readBigUInt64BE(1),
    LockIndex: buffer.readUInt32BE(9),
    Session: buffer.toString('utf8', HEADER_BYTES, HEADER_BYTES + sessionLength),
    Value: buffer.subarray(HEADER_BYTES + sessionLength),
  };
}
