/**
 * Gossip encryption as memberlist does it (keyring.go, security.go) and Consul exposes it
 * (`-encrypt`, `consul keyring`, `consul keygen`): reference/reliability.md §4.2.
 */
import { createCipheriv } from 'node:crypto';
import { ENCRYPTION_OVERHEAD, generateKey, Keyring, KEYRING_LIMIT, keyProblem } from './keyring';

// memberlist's own test keys (16 bytes each) and keys of the other two sizes.
const K1 = '4W6DGn2VQVqDEceOdmuRTQ==';
const K2 = 'XhX/w702/JKKK7/7OtM9Ww==';
const K24 = Buffer.alloc(24, 7).toString('base64');
const K32 = Buffer.alloc(32, 9).toString('base64');
const message = new Uint8Array(Buffer.from('alive: node-alpha-1 127.0.1.101:8301 incarnation 7'));

describe('encrypt / decrypt', () => {
  test.each([
    ['AES-128', K1],
    ['AES-192', K24],
    ['AES-256', K32],
  ])('%s: a round trip returns the plaintext', (_, key) => {
    const ring = new Keyring([key]);
    expect(Buffer.from(ring.decrypt(ring.encrypt(message, 'alpha'), 'alpha'))).toEqual(Buffer.from(message));
  });

  test('the layout is memberlist version 1: version 1, a 12-byte nonce, ciphertext, a 16-byte tag (29 bytes of overhead)', () => {
    const sealed = new Keyring([K1]).encrypt(message, 'alpha');
    expect(ENCRYPTION_OVERHEAD).toBe(29);
    expect(sealed.length).toBe(message.length + 29);
    expect(sealed[0]).toBe(1);
    const empty = new Keyring([K1]).encrypt(new Uint8Array(0), 'alpha');
    expect(empty.length).toBe(29);
    expect(new Keyring([K1]).decrypt(empty, 'alpha')).toEqual(new Uint8Array(0));
  });

  test('every message gets a fresh nonce', () => {
    const ring = new Keyring([K1]);
    const a = ring.encrypt(message, 'alpha');
    const b = ring.encrypt(message, 'alpha');
    expect(Buffer.from(a.subarray(1, 13))).not.toEqual(Buffer.from(b.subarray(1, 13)));
    expect(Buffer.from(a)).not.toEqual(Buffer.from(b));
  });

  test('reads a message any AES-GCM implementation sealed the same way (a fixed nonce, built by hand)', () => {
    const key = Buffer.from(K1, 'base64');
    const nonce = Buffer.from('000102030405060708090a0b', 'hex');
    const cipher = createCipheriv('aes-128-gcm', key, nonce);
    cipher.setAAD(Buffer.from('alpha'));
    const body = Buffer.concat([cipher.update(message), cipher.final()]);
    const sealed = Buffer.concat([Buffer.of(1), nonce, body, cipher.getAuthTag()]);
    expect(Buffer.from(new Keyring([K1]).decrypt(sealed, 'alpha'))).toEqual(Buffer.from(message));
  });

  test('version 0 (PKCS7-padded) is refused: its version byte is unauthenticated, and nothing of ours sends it', () => {
    const sealed = new Keyring([K1]).encrypt(message, 'alpha');
    const downgraded = Uint8Array.from(sealed);
    downgraded[0] = 0;
    expect(() => new Keyring([K1]).decrypt(downgraded, 'alpha')).toThrow('Unsupported encryption version 0');
  });

  test('a key that is not installed cannot read the message', () => {
    const sealed = new Keyring([K1]).encrypt(message, 'alpha');
    expect(() => new Keyring([K2]).decrypt(sealed, 'alpha')).toThrow('No installed keys could decrypt the message');
    expect(() => new Keyring().decrypt(sealed, 'alpha')).toThrow('No installed keys could decrypt the message');
  });

  test('the segment is associated data: traffic of segment alpha cannot be read as segment beta or the default', () => {
    const ring = new Keyring([K1]);
    const sealed = ring.encrypt(message, 'alpha');
    expect(() => ring.decrypt(sealed, 'beta')).toThrow('No installed keys could decrypt the message');
    expect(() => ring.decrypt(sealed, '')).toThrow('No installed keys could decrypt the message');
    // Bytes and the same text as a string are the same associated data.
    expect(Buffer.from(ring.decrypt(sealed, new Uint8Array(Buffer.from('alpha'))))).toEqual(Buffer.from(message));
  });

  test('changing any single byte (version, nonce, ciphertext, tag) is detected', () => {
    const ring = new Keyring([K1]);
    const sealed = ring.encrypt(message, 'alpha');
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Uint8Array.from(sealed);
      tampered[i] ^= 0x01;
      expect(() => ring.decrypt(tampered, 'alpha')).toThrow(i === 0 ? 'Unsupported encryption version 0' : 'No installed keys could decrypt the message');
    }
  });

  test('a truncated message is refused with a clear error, never a crash', () => {
    const ring = new Keyring([K1]);
    const sealed = ring.encrypt(message, 'alpha');
    expect(() => ring.decrypt(sealed.subarray(0, 0), 'alpha')).toThrow('Cannot decrypt empty payload');
    for (const length of [1, 13, 28]) expect(() => ring.decrypt(sealed.subarray(0, length), 'alpha')).toThrow(`Payload is too small to decrypt: ${length}`);
    for (const length of [29, 40, sealed.length - 1]) expect(() => ring.decrypt(sealed.subarray(0, length), 'alpha')).toThrow('No installed keys could decrypt the message');
  });

  test('an unknown version byte is refused by name', () => {
    const sealed = new Keyring([K1]).encrypt(message, 'alpha');
    for (const version of [0, 2, 255]) {
      const other = Uint8Array.from(sealed);
      other[0] = version;
      expect(() => new Keyring([K1]).decrypt(other, 'alpha')).toThrow(`Unsupported encryption version ${version}`);
    }
  });

  test('a message that is a slice of a larger buffer decrypts', () => {
    const sealed = new Keyring([K1]).encrypt(message, 'alpha');
    const datagram = new Uint8Array(sealed.length + 10);
    datagram.set(sealed, 4);
    expect(Buffer.from(new Keyring([K1]).decrypt(datagram.subarray(4, 4 + sealed.length), 'alpha'))).toEqual(Buffer.from(message));
  });

  test('an empty keyring cannot encrypt', () => {
    expect(() => new Keyring().encrypt(message, 'alpha')).toThrow('No primary key is installed');
  });
});

describe('the keyring (memberlist keyring.go, `consul keyring`)', () => {
  test('the first key installed is the primary; installing a key twice is a no-op', () => {
    const ring = new Keyring();
    ring.install(K1);
    ring.install(K2);
    ring.install(K1);
    expect(ring.list()).toEqual([K1, K2]);
    expect(ring.primary()).toBe(K1);
  });

  test('rotation: install the new key, use it, remove the old one; traffic flows at every step', () => {
    const sender = new Keyring([K1]);
    const receiver = new Keyring([K1]);
    const flows = (): boolean => Buffer.from(receiver.decrypt(sender.encrypt(message, 'alpha'), 'alpha')).equals(Buffer.from(message));

    sender.install(K2);
    receiver.install(K2);
    expect(flows()).toBe(true);

    sender.use(K2);
    expect(sender.list()).toEqual([K2, K1]);
    expect(flows()).toBe(true);
    receiver.use(K2);

    sender.remove(K1);
    receiver.remove(K1);
    expect(sender.list()).toEqual([K2]);
    expect(flows()).toBe(true);

    // Old traffic, sealed with the removed key, is now unreadable.
    expect(() => receiver.decrypt(new Keyring([K1]).encrypt(message, 'alpha'), 'alpha')).toThrow('No installed keys could decrypt the message');
  });

  test('removing the primary key is refused with memberlist text; removing an absent key is a no-op', () => {
    const ring = new Keyring([K1, K2]);
    expect(() => ring.remove(K1)).toThrow('Removing the primary key is not allowed');
    ring.remove(K32);
    expect(ring.list()).toEqual([K1, K2]);
  });

  test('only an installed key can become primary', () => {
    expect(() => new Keyring([K1]).use(K2)).toThrow('Requested key is not in the keyring');
  });

  test('bad keys are refused at every entry point', () => {
    expect(() => new Keyring(['abc'])).toThrow('Invalid key: illegal base64 data at input byte 0');
    expect(() => new Keyring([K1]).install(Buffer.alloc(8).toString('base64'))).toThrow('Invalid key: key size must be 16, 24 or 32 bytes');
    expect(() => new Keyring([K1]).use('not a key')).toThrow('Invalid key: illegal base64 data');
    expect(() => new Keyring([K1]).remove('')).toThrow('Invalid key: key size must be 16, 24 or 32 bytes');
  });

  test(`a keyring holds at most ${KEYRING_LIMIT} keys`, () => {
    const ring = new Keyring(Array.from({ length: KEYRING_LIMIT }, (_, i) => Buffer.alloc(16, i).toString('base64')));
    expect(() => ring.install(K32)).toThrow(`Keyring is full (${KEYRING_LIMIT} keys)`);
    ring.install(Buffer.alloc(16, 0).toString('base64'));
  });
});

describe('keys as Consul takes them', () => {
  test('generateKey: 32 random bytes in base64, like `consul keygen`', () => {
    const key = generateKey();
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect(keyProblem(key)).toBeUndefined();
    expect(generateKey()).not.toBe(key);
  });

  test('keyProblem: 16, 24 and 32 bytes are fine', () => {
    for (const key of [K1, K24, K32]) expect(keyProblem(key)).toBeUndefined();
  });

  test.each([
    ['', 'Invalid key: key size must be 16, 24 or 32 bytes'],
    [Buffer.alloc(31).toString('base64'), 'Invalid key: key size must be 16, 24 or 32 bytes'],
    [Buffer.alloc(64).toString('base64'), 'Invalid key: key size must be 16, 24 or 32 bytes'],
    // Go's base64.StdEncoding errors, byte offsets and all.
    ['abc', 'Invalid key: illegal base64 data at input byte 0'],
    ['not base64!', 'Invalid key: illegal base64 data at input byte 3'],
    ['4W6DGn2VQVqDEceOdmuRTQ', 'Invalid key: illegal base64 data at input byte 20'],
    ['4W6DGn2VQVqDEceOdmuRTQ=', 'Invalid key: illegal base64 data at input byte 23'],
    ['4W6DGn2VQVqDEceOdmuRTQ==x', 'Invalid key: illegal base64 data at input byte 24'],
    ['=W6DGn2VQVqDEceOdmuRTQ==', 'Invalid key: illegal base64 data at input byte 0'],
    ['4W6DGn2VQVqDEceOdmuR-Q==', 'Invalid key: illegal base64 data at input byte 20'],
    ['4W6DGn2VQVqDEceOdmuRTé==', 'Invalid key: illegal base64 data at input byte 21'],
  ])('keyProblem(%j) = %j', (key, problem) => {
    expect(keyProblem(key)).toBe(problem);
  });

  test('line breaks inside a key are ignored, as Go ignores them', () => {
    expect(keyProblem('4W6DGn2VQVqD\nEceOdmuRTQ==\r\n')).toBeUndefined();
    expect(new Keyring(['4W6DGn2VQVqD\nEceOdmuRTQ==']).list()).toEqual([K1]);
  });
});
