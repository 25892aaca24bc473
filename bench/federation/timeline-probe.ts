/**
 * Loaded into every role process of a bench-federation timeline run (`node -r`, timeline.ts): marks,
 * with the monotonic clock all processes share, the moments a forwarded read passes through the
 * process. Nothing of the role is changed; the marks come from Node's stream and HTTP classes:
 *
 *   Q  the HTTP server emitted a request        R  a byte stream pushed a chunk it read
 *   W  a byte stream's write() was called       w  that write() returned
 *   E  an HTTP response's end() was called      e  that end() returned
 *   S  the first setImmediate after a W or E: the event loop's check phase, where Node's HTTP/2
 *      sessions write what was queued (their native immediates run before JavaScript's), so the
 *      bytes have been handed to the kernel by then
 *
 * SIGUSR2 starts recording (from empty), the next one stops it and writes the marks to
 * `$TIMELINE_DIR/<pid>.txt`, a line each: microseconds (mod 10^5 s) and the mark. Each mark costs a
 * clock read and two array stores; R and W are left out for object-mode streams (grpc-js's
 * message streams), which carry the same bytes already marked.
 */
import { writeFileSync } from 'node:fs';
import { Server, ServerResponse } from 'node:http';
import { Duplex, Readable, Writable } from 'node:stream';

const CAPACITY = 1 << 20;
const times = new Float64Array(CAPACITY);
const marks = new Uint8Array(CAPACITY);
let count = 0;
let recording = false;
let sendPending = false;

function mark(code: string): void {
  if (!recording || count === CAPACITY) return;
  times[count] = Number(process.hrtime.bigint() % 100_000_000_000_000n) / 1_000;
  marks[count++] = code.charCodeAt(0);
}

function markSend(): void {
  if (sendPending || !recording) return;
  sendPending = true;
  setImmediate(() => {
    sendPending = false;
    mark('S');
  });
}

const push = Readable.prototype.push;
Readable.prototype.push = function (this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk !== null && chunk !== undefined && !this.readableObjectMode) mark('R');
  return push.call(this, chunk, encoding);
};

// Duplex copies Writable's write() when it is defined, so both are wrapped.
for (const proto of [Writable.prototype, Duplex.prototype]) {
  const write = proto.write as (this: Writable, ...args: unknown[]) => boolean;
  proto.write = function (this: Writable, ...args: unknown[]): boolean {
    if (this.writableObjectMode) return write.apply(this, args);
    mark('W');
    markSend();
    const written = write.apply(this, args);
    mark('w');
    return written;
  } as typeof proto.write;
}

const emit = Server.prototype.emit as (this: Server, event: string | symbol, ...args: unknown[]) => boolean;
Server.prototype.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
  if (event === 'request') mark('Q');
  return emit.call(this, event, ...args);
} as typeof Server.prototype.emit;

const end = ServerResponse.prototype.end as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
ServerResponse.prototype.end = function (this: ServerResponse, ...args: unknown[]): ServerResponse {
  mark('E');
  markSend();
  const response = end.apply(this, args);
  mark('e');
  return response;
} as typeof ServerResponse.prototype.end;

process.on('SIGUSR2', () => {
  if (!recording) {
    count = 0;
    recording = true;
    return;
  }
  recording = false;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`${times[i].toFixed(1)} ${String.fromCharCode(marks[i])}`);
  writeFileSync(`${process.env.TIMELINE_DIR ?? '/tmp'}/${process.pid}.txt`, lines.join('\n'));
});
