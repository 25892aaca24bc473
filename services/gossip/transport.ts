/**
 * One pool's sockets: UDP datagrams for probes and gossip, TCP for push/pull streams, both on the
 * pool's port (8301, or a segment's port), as memberlist's NetTransport. Every datagram and stream
 * frame starts with one byte that says whether it is sealed by the keyring (1) or plaintext (0);
 * a pool with a keyring sends only sealed frames and accepts only sealed ones (memberlist's
 * GossipVerifyIncoming), except a plaintext refusal on a stream, so a joiner can say why.
 *
 * Limits (memberlist `net.go`): a datagram up to 65,507 bytes, a stream frame up to 20 MiB,
 * checked from its length prefix before any allocation; 128 inbound streams at once; every
 * stream with a deadline. Whatever arrives malformed is dropped and counted, never thrown.
 */
import { Socket as UdpSocket, createSocket } from 'node:dgram';
import { Server, Socket, createConnection, createServer } from 'node:net';

import { Logger } from '../lib/log';
import { ExchangeError } from '../lib/swim-pool';
import { MAX_PACKET_BYTES, STREAM_FRAME_HEADER_BYTES, decodeStreamFrame, encodeStreamFrame, frameLength, lengthPrefixed } from '../lib/swim/wire-codec';
import { Keyring } from './keyring';

const PLAINTEXT = 0;
const SEALED = 1;
/** memberlist's maxPushPullRequests: more concurrent inbound streams are closed at once. */
export const MAX_INBOUND_STREAMS = 128;
/** Refusals from one host are logged at warn level at most this often. */
const WARN_INTERVAL_MS = 10_000;

export interface TransportOptions {
  readonly host: string;
  readonly port: number;
  /** The segment name: the associated data of every sealed frame, so pools cannot read each other. */
  readonly label: string;
  readonly keyring: Keyring | undefined;
  readonly logger: Logger;
}

/** Answers one inbound stream request: the plaintext frame to send back. */
export type StreamHandler = (from: string, request: Uint8Array) => Uint8Array;

/** Why an inbound frame was dropped, for tests and metrics. */
export interface DropCounts {
  packets: number;
  streams: number;
}

export class GossipTransport {
  readonly dropped: DropCounts = { packets: 0, streams: 0 };
  private packetHandler: (from: string, bytes: Uint8Array) => void = () => undefined;
  private streamHandler: StreamHandler = () => new Uint8Array(0);
  private inboundStreams = 0;
  private readonly lastWarned = new Map<string, number>();
  private readonly openSockets = new Set<Socket>();

  private constructor(
    private readonly options: TransportOptions,
    private readonly udp: UdpSocket,
    private readonly tcp: Server,
  ) {}

  /** Binds UDP and TCP on host:port; rejects with a clear error when either is taken. */
  static async listen(options: TransportOptions): Promise<GossipTransport> {
    const udp = createSocket({ type: 'udp4', reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', (err) => reject(new Error(`cannot bind UDP ${options.host}:${options.port}: ${err.message}`)));
      udp.bind(options.port, options.host, () => resolve());
    });
    const tcp = createServer();
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', (err) => {
        udp.close();
        reject(new Error(`cannot bind TCP ${options.host}:${options.port}: ${err.message}`));
      });
      tcp.listen(options.port, options.host, () => resolve());
    });
    const transport = new GossipTransport(options, udp, tcp);
    udp.on('message', (msg, rinfo) => transport.receiveDatagram(`${rinfo.address}:${rinfo.port}`, msg));
    udp.on('error', (err) => options.logger.warn({ err }, `gossip UDP error on ${options.host}:${options.port}: ${err.message}`));
    tcp.on('connection', (socket) => transport.acceptStream(socket));
    return transport;
  }

  get address(): string {
    return `${this.options.host}:${this.options.port}`;
  }

  onPacket(handler: (from: string, bytes: Uint8Array) => void): void {
    this.packetHandler = handler;
  }

  onStream(handler: StreamHandler): void {
    this.streamHandler = handler;
  }

  sendPacket(to: string, plaintext: Uint8Array): void {
    const target = splitHostPort(to);
    if (target === undefined) return;
    const datagram = this.seal(plaintext);
    if (datagram.length > MAX_PACKET_BYTES) {
      this.options.logger.warn({ to, bytes: datagram.length }, `not sending a ${datagram.length}-byte datagram to ${to}: above ${MAX_PACKET_BYTES} bytes`);
      return;
    }
    this.udp.send(datagram, target.port, target.host, (err) => {
      if (err !== null && err !== undefined) this.options.logger.debug({ err, to }, `gossip UDP send to ${to} failed: ${err.message}`);
    });
  }

  /**
   * One request/answer over a new TCP connection: sends `request` (plaintext; sealed here when a
   * keyring is set) and resolves with the plaintext answer frame. Rejects with a message fit for
   * a join result: the connection error, the timeout, or the peer's plaintext refusal.
   */
  exchange(to: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const target = splitHostPort(to);
    if (target === undefined) return Promise.reject(new ExchangeError(`"${to}" is not host:port`));
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: target.host, port: target.port, localAddress: this.options.host });
      this.openSockets.add(socket);
      let settled = false;
      const finish = (err: Error | undefined, answer?: Uint8Array) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        this.openSockets.delete(socket);
        if (err !== undefined) reject(err);
        else resolve(answer!);
      };
      const timer = setTimeout(() => finish(new ExchangeError(`dial tcp ${to}: i/o timeout`)), timeoutMs);
      socket.on('error', (err: NodeJS.ErrnoException) => finish(new ExchangeError(`dial tcp ${to}: ${describeSocketError(err)}`, err.code === 'ECONNREFUSED')));
      socket.on('connect', () => socket.write(lengthPrefixed(this.seal(request))));
      readOneFrame(socket, (frame) => {
        if ('error' in frame) return finish(new ExchangeError(`${frame.error} (from ${to})`));
        const opened = this.open(frame.body, true);
        if ('error' in opened) return finish(new ExchangeError(opened.error));
        finish(undefined, opened.plaintext);
      });
      socket.on('close', () => finish(new ExchangeError(`read tcp ${to}: connection closed before an answer (EOF)`)));
    });
  }

  async close(): Promise<void> {
    for (const socket of this.openSockets) socket.destroy();
    await Promise.all([new Promise<void>((resolve) => this.udp.close(() => resolve())), new Promise<void>((resolve) => this.tcp.close(() => resolve()))]);
  }

  private receiveDatagram(from: string, datagram: Buffer): void {
    const opened = this.open(new Uint8Array(datagram.buffer, datagram.byteOffset, datagram.length), false);
    if ('error' in opened) {
      this.dropped.packets++;
      this.options.logger.debug({ from, reason: opened.error }, `dropped a datagram from ${from}: ${opened.error}`);
      return;
    }
    this.packetHandler(from, opened.plaintext);
  }

  private acceptStream(socket: Socket): void {
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.inboundStreams >= MAX_INBOUND_STREAMS) {
      this.dropped.streams++;
      this.warnAtMostEvery(from, { from }, `closing a stream from ${from}: ${MAX_INBOUND_STREAMS} streams already open`);
      socket.destroy();
      return;
    }
    this.inboundStreams++;
    this.openSockets.add(socket);
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on('close', () => {
      clearTimeout(timer);
      this.inboundStreams--;
      this.openSockets.delete(socket);
    });
    socket.on('error', () => undefined);
    readOneFrame(socket, (frame) => {
      if ('error' in frame) {
        this.dropped.streams++;
        this.options.logger.debug({ from, reason: frame.error }, `dropped a stream from ${from}: ${frame.error}`);
        socket.destroy();
        return;
      }
      const opened = this.open(frame.body, false);
      if ('error' in opened) {
        this.dropped.streams++;
        this.warnAtMostEvery(from, { from, reason: opened.error }, `refused a stream from ${from}: ${opened.error}`);
        socket.end(lengthPrefixed(plaintextRefusal(opened.error)));
        return;
      }
      let answer: Uint8Array;
      try {
        answer = this.streamHandler(from, opened.plaintext);
      } catch (err) {
        this.options.logger.error({ err, from }, `stream handler failed: ${(err as Error).message}`);
        socket.destroy();
        return;
      }
      socket.end(lengthPrefixed(this.seal(answer)));
    });
  }

  /**
   * A refused peer is worth a warning (a wrong key, a wrong segment's port), but a hostile or
   * broken one must not flood the log: one warning per remote host per interval, the rest debug.
   */
  private warnAtMostEvery(from: string, fields: Record<string, unknown>, message: string): void {
    const host = from.replace(/:\d+$/, '');
    const now = Date.now();
    if (now - (this.lastWarned.get(host) ?? 0) < WARN_INTERVAL_MS) {
      this.options.logger.debug(fields, message);
      return;
    }
    if (this.lastWarned.size >= 1_024) this.lastWarned.clear();
    this.lastWarned.set(host, now);
    this.options.logger.warn(fields, message);
  }

  private seal(plaintext: Uint8Array): Uint8Array {
    const keyring = this.options.keyring;
    const body = keyring === undefined ? plaintext : keyring.encrypt(plaintext, this.options.label);
    const out = new Uint8Array(1 + body.length);
    out[0] = keyring === undefined ? PLAINTEXT : SEALED;
    out.set(body, 1);
    return out;
  }

  /**
   * The plaintext of a frame, or why it is refused (memberlist's texts). `refusalAllowed` lets a
   * keyed pool read a peer's plaintext refusal, and nothing else in plaintext.
   */
  private open(frame: Uint8Array, refusalAllowed: boolean): { plaintext: Uint8Array } | { error: string } {
    if (frame.length < 2) return { error: 'frame too short' };
    const kind = frame[0];
    const body = frame.subarray(1);
    const keyring = this.options.keyring;
    if (kind === SEALED) {
      if (keyring === undefined) return { error: 'Remote state is encrypted and encryption is not configured' };
      try {
        return { plaintext: keyring.decrypt(body, this.options.label) };
      } catch (err) {
        return { error: (err as Error).message };
      }
    }
    if (kind === PLAINTEXT) {
      if (keyring === undefined || (refusalAllowed && isRefusal(body))) return { plaintext: body };
      return { error: 'Encryption is configured but remote state is not encrypted' };
    }
    return { error: `unknown frame kind ${kind}` };
  }
}

/**
 * A refusal is the one frame a peer can read without our key: why we did not take its stream.
 * It carries the plaintext kind byte like every frame, or `open` on the other side reads the
 * frame's first protobuf byte as the kind and reports "unknown frame kind 26" instead of the reason.
 */
function plaintextRefusal(message: string): Uint8Array {
  const frame = encodeStreamFrame({ type: 'error', message });
  const out = new Uint8Array(1 + frame.length);
  out[0] = PLAINTEXT;
  out.set(frame, 1);
  return out;
}

function isRefusal(body: Uint8Array): boolean {
  const decoded = decodeStreamFrame(body);
  return 'frame' in decoded && decoded.frame.type === 'error';
}

/** Reads one length-prefixed frame from `socket`, refusing an oversized one from its prefix alone. */
function readOneFrame(socket: Socket, done: (frame: { body: Uint8Array } | { error: string }) => void): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let expected: number | undefined;
  let finished = false;
  socket.on('data', (chunk: Buffer) => {
    if (finished) return;
    chunks.push(chunk);
    received += chunk.length;
    if (expected === undefined && received >= STREAM_FRAME_HEADER_BYTES) {
      const header = Buffer.concat(chunks).subarray(0, STREAM_FRAME_HEADER_BYTES);
      const length = frameLength(header);
      if ('error' in length) {
        finished = true;
        done({ error: length.error });
        return;
      }
      expected = length.length;
    }
    if (expected !== undefined && received >= STREAM_FRAME_HEADER_BYTES + expected) {
      finished = true;
      const all = Buffer.concat(chunks);
      done({ body: new Uint8Array(all.buffer, all.byteOffset + STREAM_FRAME_HEADER_BYTES, expected) });
    }
  });
}

export function splitHostPort(address: string): { host: string; port: number } | undefined {
  const match = /^(.+):(\d{1,5})$/.exec(address);
  if (match === null) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: match[1].replace(/^\[|\]$/g, ''), port };
}

function describeSocketError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connect: connection refused';
    case 'ETIMEDOUT':
      return 'i/o timeout';
    case 'ECONNRESET':
      return 'connection reset by peer';
    default:
      return err.message;
  }
}
