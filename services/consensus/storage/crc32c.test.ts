import { crc32c } from './crc32c';

/** The definition, one bit at a time: what the tables must agree with. */
function bitwiseCrc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

describe('crc32c', () => {
  it('matches the CRC catalogue check value: crc32c("123456789") = 0xE3069283', () => {
    expect(crc32c(Buffer.from('123456789', 'ascii'))).toBe(0xe3069283);
  });

  it('matches the iSCSI test vectors of RFC 3720 §B.4', () => {
    const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
    const descending = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(ascending)).toBe(0x46dd794e);
    expect(crc32c(descending)).toBe(0x113fdb5c);
  });

  it('is 0 for no bytes', () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('agrees with the bitwise definition for every length around the 8-byte stride', () => {
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff);
    for (let length = 0; length <= bytes.length; length += length < 40 ? 1 : 37) {
      expect(crc32c(bytes.subarray(0, length))).toBe(bitwiseCrc32c(bytes.subarray(0, length)));
    }
  });

  it('chains: crc32c(b, crc32c(a)) is the CRC of a followed by b', () => {
    const whole = Buffer.from('the quick brown fox jumps over the lazy dog', 'ascii');
    for (const cut of [0, 1, 7, 8, 9, 20, whole.length]) {
      expect(crc32c(whole.subarray(cut), crc32c(whole.subarray(0, cut)))).toBe(crc32c(whole));
    }
  });

  it('notices a single flipped bit', () => {
    const bytes = Buffer.from('a Raft log entry', 'ascii');
    const good = crc32c(bytes);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const flipped = Buffer.from(bytes);
      flipped[bit >> 3] ^= 1 << (bit & 7);
      expect(crc32c(flipped)).not.toBe(good);
    }
  });
});
