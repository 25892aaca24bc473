/**
 * The gossip keyring and packet encryption (hashicorp/memberlist `keyring.go` + `security.go`;
 * reference/reliability.md §4.2). Keys are AES-128/192/256 keys given in base64, as Consul's
 * `-encrypt` and `consul keyring` take them. The primary key (index 0) encrypts; every key is
 * tried to decrypt, which is what lets an operator rotate keys with no downtime:
 * install the new key everywhere, `use` it, then remove the old one.
 *
 * The associated data is the segment name, authenticated but not sent: a packet sealed for
 * segment alpha fails to open as segment beta, even when both share a key (memberlist's label).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * Memberlist's version 1: AES-GCM without padding. Memberlist also reads version 0 (PKCS7
 * padding) from old senders, but the version byte is not authenticated, so a flipped byte turns
 * a valid v1 packet into a v0 one whose "padding" is trimmed off real data; no Consulate node
 * ever sent v0, so we accept only version 1.
 */
export const ENCRYPTION_VERSION = 1;
const VERSION_SIZE = 1;
const NONCE_SIZE = 12;
const TAG_SIZE = 16;

/** Bytes that version 1 adds to a message: version + nonce + tag. */
export const ENCRYPTION_OVERHEAD = VERSION_SIZE + NONCE_SIZE + TAG_SIZE;

/** Memberlist sets no bound; decryption tries every key, so a long ring is a CPU cost per packet. */
export const KEYRING_LIMIT = 32;

const KEY_SIZES = [16, 24, 32];

/** A base64 key as `consul keygen` makes it: 32 random bytes, so AES-256. */
export function generateKey(): string {
  return randomBytes(32).toString('base64');
}

/** What is wrong with a base64 key, in Consul's words (`Invalid key: ...`); undefined when it is usable. */
export function keyProblem(keyB64: string): string | undefined {
  if (typeof keyB64 !== 'string') return 'Invalid key: a key is a base64 string';
  const decoded = decodeBase64(keyB64);
  if (typeof decoded === 'string') return `Invalid key: ${decoded}`;
  if (!KEY_SIZES.includes(decoded.length)) return 'Invalid key: key size must be 16, 24 or 32 bytes';
  return undefined;
}

/**
 * Go's `base64.StdEncoding.DecodeString`, which Consul decodes keys with, down to its error
 * text: padding required, CR and LF ignored, anything else outside the alphabet refused with
 * the offset of the offending byte. Node's own decoder silently skips bad characters instead.
 */
function decodeBase64(text: string): Buffer | string {
  // Go walks bytes; so do we (the UTF-8 bytes, not JavaScript's UTF-16 units).
  const src = Buffer.from(text, 'utf8');
  const corrupt = (offset: number): string => `illegal base64 data at input byte ${offset}`;
  const isAlphabet = (b: number): boolean => (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2b || b === 0x2f;
  const isNewline = (b: number): boolean => b === 0x0a || b === 0x0d;
  const PAD = 0x3d;
  const clean: number[] = [];
  let si = 0;
  for (;;) {
    let j = 0;
    while (j < 4) {
      if (si === src.length) {
        if (j === 0) return Buffer.from(Buffer.from(clean).toString('latin1'), 'base64');
        return corrupt(si - j);
      }
      const b = src[si++];
      if (isAlphabet(b)) {
        clean.push(b);
        j++;
        continue;
      }
      if (isNewline(b)) continue;
      if (b !== PAD) return corrupt(si - 1);
      // Padding: only in the third or fourth place, and nothing but newlines after it.
      if (j < 2) return corrupt(si - 1);
      if (j === 2) {
        while (si < src.length && isNewline(src[si])) si++;
        if (si === src.length) return corrupt(src.length);
        if (src[si] !== PAD) return corrupt(si - 1);
        si++;
      }
      while (si < src.length && isNewline(src[si])) si++;
      if (si < src.length) return corrupt(si);
      return Buffer.from(Buffer.from(clean).toString('latin1'), 'base64');
    }
  }
}

function parseKey(keyB64: string): Buffer {
  const problem = keyProblem(keyB64);
  if (problem !== undefined) throw new Error(problem);
  return decodeBase64(keyB64) as Buffer;
}

function additionalData(associatedData: string | Uint8Array): Buffer {
  return typeof associatedData === 'string' ? Buffer.from(associatedData, 'utf8') : Buffer.from(associatedData.buffer, associatedData.byteOffset, associatedData.byteLength);
}

function cipherName(key: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  return `aes-${key.length * 8}-gcm` as 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm';
}

export class Keyring {
  /** Index 0 is the primary key, as in memberlist. */
  private keys: Buffer[] = [];

  /** The first key becomes the primary; every key is checked like `install` checks it. */
  constructor(keysB64: readonly string[] = []) {
    for (const key of keysB64) this.install(key);
  }

  /** Adds a key for decryption; a no-op when it is already installed; the first key becomes primary. */
  install(keyB64: string): void {
    const key = parseKey(keyB64);
    if (this.keys.some((installed) => installed.equals(key))) return;
    if (this.keys.length >= KEYRING_LIMIT) throw new Error(`Keyring is full (${KEYRING_LIMIT} keys): remove a key no longer in use before installing another`);
    this.keys.push(key);
  }

  /** Makes an installed key the primary, the one that encrypts. Peers must already have it installed. */
  use(keyB64: string): void {
    const key = parseKey(keyB64);
    const index = this.keys.findIndex((installed) => installed.equals(key));
    if (index < 0) throw new Error('Requested key is not in the keyring');
    this.keys = [key, ...this.keys.filter((_, i) => i !== index)];
  }

  /** Drops a key; removing one that is not installed is a no-op, removing the primary is refused. */
  remove(keyB64: string): void {
    const key = parseKey(keyB64);
    if (this.keys.length > 0 && this.keys[0].equals(key)) throw new Error('Removing the primary key is not allowed');
    this.keys = this.keys.filter((installed) => !installed.equals(key));
  }

  /** The installed keys in base64, primary first. */
  list(): string[] {
    return this.keys.map((key) => key.toString('base64'));
  }

  /** The primary key in base64, or undefined for an empty ring. */
  primary(): string | undefined {
    return this.keys[0]?.toString('base64');
  }

  /**
   * Seals `plaintext` with the primary key, memberlist version 1:
   * version (1) | nonce (12, random) | ciphertext | GCM tag (16).
   */
  encrypt(plaintext: Uint8Array, associatedData: string | Uint8Array): Uint8Array {
    const key = this.keys[0];
    if (key === undefined) throw new Error('No primary key is installed: install a key before encrypting');
    const nonce = randomBytes(NONCE_SIZE);
    const cipher = createCipheriv(cipherName(key), key, nonce, { authTagLength: TAG_SIZE });
    cipher.setAAD(additionalData(associatedData));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return new Uint8Array(Buffer.concat([Buffer.of(ENCRYPTION_VERSION), nonce, body, cipher.getAuthTag()]));
  }

  /** Opens a message sealed by any installed key, with memberlist's texts for what fails. */
  decrypt(message: Uint8Array, associatedData: string | Uint8Array): Uint8Array {
    if (!(message instanceof Uint8Array) || message.length === 0) throw new Error('Cannot decrypt empty payload');
    const version = message[0];
    if (version !== ENCRYPTION_VERSION) throw new Error(`Unsupported encryption version ${version}`);
    if (message.length < ENCRYPTION_OVERHEAD) throw new Error(`Payload is too small to decrypt: ${message.length}`);

    const bytes = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    const nonce = bytes.subarray(VERSION_SIZE, VERSION_SIZE + NONCE_SIZE);
    const body = bytes.subarray(VERSION_SIZE + NONCE_SIZE, bytes.length - TAG_SIZE);
    const tag = bytes.subarray(bytes.length - TAG_SIZE);
    const aad = additionalData(associatedData);
    for (const key of this.keys) {
      const plain = open(key, nonce, body, tag, aad);
      if (plain !== undefined) return new Uint8Array(plain);
    }
    throw new Error('No installed keys could decrypt the message');
  }
}

function open(key: Buffer, nonce: Buffer, body: Buffer, tag: Buffer, aad: Buffer): Buffer | undefined {
  try {
    const decipher = createDecipheriv(cipherName(key), key, nonce, { authTagLength: TAG_SIZE });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    // A wrong key and a tampered message look the same to GCM: try the next key.
    return undefined;
  }
}
