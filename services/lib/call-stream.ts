/**
 * Unary calls carried on one long-lived bidirectional stream per peer: a service's `Calls` method
 * (consulate/common/v1/call_stream.proto). grpc-js spends 0.3-0.4 ms on a unary round trip between
 * two processes on our machines, and about 0.1 ms on a message each way on an open stream; a
 * request forwarded to another datacenter crosses three such hops.
 *
 * A call keeps a unary call's meaning: the same request and response messages, metadata (the
 * trace context), deadline, cancellation, status, trailers and spans. A caller uses
 * `CallStreamClient.method()` where it used the generated client's method, with the same
 * signature; the server runs the service's own (traced) unary handlers, each given a stand-in for
 * grpc-js's ServerUnaryCall (`RoleGrpcServer` does this for a service with `callStream: true`).
 *
 * Client: the stream opens with the first call, and again with the first call after it ended.
 * When it fails, every call on it fails with its status, as calls on a broken connection do
 * (grpc-js's "No connection established" when it never connected: nothing was sent). A server
 * that has no `Calls` (an older version: UNIMPLEMENTED) gets plain unary calls from then on.
 *
 * Server: answers in any order; a cancel frame, the call's deadline or the stream's end cancel a
 * call (its 'cancelled' event, as grpc-js emits it). `drain()`, at shutdown, refuses new calls
 * with a trailer that has the client send them again on a new stream (they did not run), and ends
 * each stream once its calls are answered, so idle streams never hold a graceful shutdown up.
 */
import { EventEmitter } from 'node:events';

import {
  CallOptions,
  Client,
  ClientDuplexStream,
  Deadline,
  InterceptingCall,
  Metadata,
  MethodDefinition,
  ServerDuplexStream,
  ServerUnaryCall,
  ServiceDefinition,
  ServiceError,
  StatusObject,
  UntypedServiceImplementation,
  handleUnaryCall,
  sendUnaryData,
  status as GrpcStatus,
} from '@grpc/grpc-js';
import { Tracer } from '@opentelemetry/api';

import { StreamedAnswer, StreamedCall, decodeAnswerFrame, encodeCallFrame } from './call-frames';
import { RoleClients } from './grpc-client';
import { GRPC_SERVER_DEFAULTS } from './grpc-limits';
import { ClientSpan, startClientSpan, tracing } from './grpc-tracing';
import { EMPTY } from './proto-wire';

/**
 * The frames of every service's `Calls` method: its request carries a call or several, its
 * response an answer or several (the calls started, or answers ready, in one turn of the sender's
 * event loop: grpc-js writes a stream's messages one at a time, each once the last is written).
 * Encoded by call-frames.ts, not by the generated code.
 */
export type CallFrame = readonly StreamedCall[];
export type AnswerFrame = readonly StreamedAnswer[];

/** The path of the `Calls` method of the service `method` belongs to: "/consulate.router.v1.ForwardService/Calls". */
function callsPathOf(method: string): string {
  return `${method.slice(0, method.lastIndexOf('/'))}/Calls`;
}

/**
 * Sent by a client as it opens a stream, and echoed in the server's headers: both read frames of
 * several calls or answers. Without it each frame carries one (an older peer reads only that).
 */
export const BATCH_HEADER = 'consulate-calls-batch';
/** The trailer of a call a draining server did not run: the client sends it again on a new stream. */
export const NOT_RUN_TRAILER = 'consulate-call-not-run';
/** Frames a client leaves in grpc-js's buffer before later calls wait in its own backlog for 'drain'. */
export const MAX_BUFFERED_FRAMES = 256;
/** Calls in flight on one stream at most; past it a call is refused with RESOURCE_EXHAUSTED. */
export const MAX_CALLS_PER_STREAM = 10_000;
/** What an OK answer's call is finished with: its trailers go nowhere. */
const NO_TRAILERS = new Metadata();
/** How many times a call a server did not run is sent again before it fails as never sent. */
const MAX_RESENDS = 3;
/** How long a server that answered UNIMPLEMENTED to `Calls` gets unary calls before a stream is tried again. */
const UNSUPPORTED_RETRY_MS = 60_000;
/** Room for a frame's id, method, metadata and timeout beside its message, under the message size limit. */
const FRAME_OVERHEAD_BYTES = 16 * 1024;
/** Node's timers fire at once past 2^31 - 1 ms (about 24 days): longer deadlines wait that long. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * A stream opens without the client's interceptors (call interceptors replace them in grpc-js):
 * a span as long as the stream would say nothing, and each call on it makes its own.
 */
const STREAM_OPTIONS: Partial<CallOptions> = { interceptors: [(options, nextCall) => new InterceptingCall(nextCall(options))] };

/**
 * A service's handlers without `Calls`, which the gRPC server adds (RoleGrpcServer's `callStream`),
 * and without the handlers named in `Also` (ones the service gives another type).
 */
export type WithoutCalls<S, Also extends string = never> = { [K in keyof S as K extends 'calls' | Also ? never : K]: S[K] };

/** A unary method as grpc-js's generated clients have it. */
export type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, response: Res) => void) => { cancel(): void };

export interface CallStreamClientOptions {
  /** A client of the service (the generated one): the stream opens on its `Calls` method. */
  readonly client: Pick<Client, 'makeBidiStreamRequest'>;
  readonly tracer: Tracer;
  /** The server's address, for the spans. */
  readonly peer: string;
  /** false for calls that would drown the traces. Default true. */
  readonly traced?: boolean;
  /** Largest request message sent (the channel's limit, which would end the whole stream). Default GRPC_SERVER_DEFAULTS. */
  readonly maxMessageBytes?: number;
}

type Stream = ClientDuplexStream<CallFrame, AnswerFrame>;

/** One call from its start to its answer: on a stream, or (the server has no `Calls`) as a unary call. */
class ClientCall {
  /** The stream it was last sent on. */
  stream: Stream | undefined;
  /** Its frame was handed to that stream (not only queued behind a full one): the server may run it. */
  written = false;
  resends = 0;
  private state: 'open' | 'unary' | 'done' = 'open';
  private timer: NodeJS.Timeout | undefined;
  private unaryCall: { cancel(): void } | undefined;

  constructor(
    readonly id: number,
    private readonly method: string,
    private readonly message: Buffer,
    private readonly metadata: Record<string, string>,
    /** Epoch ms, or undefined for none. */
    private readonly deadlineMs: number | undefined,
    private readonly span: ClientSpan | undefined,
    private readonly onDone: (call: ClientCall) => void,
    private readonly deliver: (err: ServiceError | null, message: Buffer) => void,
    /** Starts the same call as a unary one; returns its handle. */
    private readonly unary: () => { cancel(): void },
  ) {}

  /** The frame as sent now: the timeout is what is left of the deadline (a resent call is not given more). */
  frame(): StreamedCall {
    const timeoutMs = this.deadlineMs === undefined ? 0 : Math.min(Math.max(1, Math.ceil(this.deadlineMs - Date.now())), Number.MAX_SAFE_INTEGER);
    return { id: this.id, method: this.method, message: this.message, metadata: this.metadata, timeoutMs, cancel: false };
  }

  /** Arms the deadline; false (and the call ended) when it has passed already. */
  arm(onDeadline: () => void): boolean {
    if (this.deadlineMs === undefined) return true;
    const remainingMs = this.deadlineMs - Date.now();
    if (remainingMs <= 0) return false;
    this.timer = setTimeout(onDeadline, Math.min(remainingMs, MAX_TIMER_MS));
    return true;
  }

  finish(code: GrpcStatus, details: string, message: Buffer, trailers: Metadata): void {
    if (this.state !== 'open') return;
    this.state = 'done';
    this.clear();
    this.span?.end(code, details);
    this.deliver(code === GrpcStatus.OK ? null : serviceError(code, details, trailers), message);
  }

  /** The caller gave up (cancel, deadline): whatever carries the call is told. */
  giveUp(code: GrpcStatus, details: string): void {
    if (this.state === 'unary') {
      this.state = 'done';
      this.unaryCall?.cancel();
      return;
    }
    if (this.state !== 'open') return;
    this.finish(code, details, EMPTY, new Metadata());
    // A call still queued behind a full stream is never sent at all.
    if (this.written) this.stream?.write([{ id: this.id, method: '', message: EMPTY, metadata: {}, timeoutMs: 0, cancel: true }]);
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** The server has no `Calls`: the call goes as a plain unary call (its own span); this one ends saying why. */
  fallBack(): void {
    if (this.state !== 'open') return;
    this.state = 'unary';
    this.clear();
    this.span?.end(GrpcStatus.UNIMPLEMENTED, 'the server has no call stream: sent as a unary call');
    this.unaryCall = this.unary();
  }

  private clear(): void {
    clearTimeout(this.timer);
    this.onDone(this);
  }
}

export class CallStreamClient {
  private stream: Stream | undefined;
  private readonly open = new Map<number, ClientCall>();
  /**
   * Calls waiting for a backed-up stream's 'drain', per stream. Frames handed to grpc-js would still
   * reach the server after the caller gave up (a stalled connection that recovers), and run then;
   * a call given up while it waits here is never sent. So only the calls in the last
   * MAX_BUFFERED_FRAMES frames can (each frame one turn's calls, within the message size limit).
   */
  private readonly backlog = new Map<Stream, ClientCall[]>();
  /** Calls started this turn, per stream, written together at its end (`flush`). */
  private readonly unsent = new Map<Stream, ClientCall[]>();
  /** Streams whose server said it reads frames of several calls (BATCH_HEADER in its headers). */
  private readonly batching = new WeakSet<Stream>();
  private nextId = 1;
  /** The service's `Calls` method, named after the methods carried (all of one service). */
  private callsPath: string | undefined;
  /** Until then the server is taken to have no `Calls` (it answered UNIMPLEMENTED): plain unary calls. */
  private unsupportedUntil = 0;
  private closed = false;
  /** Set by retire(): run once the last call in flight has finished. */
  private retired: (() => void) | undefined;

  /** Its calls make spans: not turned off for this client (`traced`) nor for the role (TRACING_OFF). */
  private readonly traced: boolean;

  constructor(private readonly options: CallStreamClientOptions) {
    this.traced = options.traced !== false && tracing(options.tracer);
  }

  /**
   * `definition`'s method, carried on the stream; `fallback` is the same method as a plain unary
   * call (`client.forward.bind(client)`), for a server without `Calls`.
   */
  method<Req, Res>(definition: MethodDefinition<Req, Res>, fallback: UnaryMethod<Req, Res>): UnaryMethod<Req, Res> {
    const callsPath = callsPathOf(definition.path);
    if (this.callsPath !== undefined && this.callsPath !== callsPath) throw new Error(`${definition.path} is not a method of the service whose calls this stream carries (${this.callsPath})`);
    this.callsPath = callsPath;
    return (request, metadata, options, callback) => {
      if (Date.now() < this.unsupportedUntil) return fallback(request, metadata, options, callback);
      return this.call(definition, request, metadata, options.deadline, callback, fallback);
    };
  }

  /**
   * Lets the calls in flight finish, then ends the stream and calls `then` (a client evicted from
   * a cache: nobody starts calls on it any more).
   */
  retire(then: () => void): void {
    this.retired = then;
    if (this.open.size === 0) this.finishRetiring();
  }

  /** Fails the calls in flight (CANCELLED) and ends the stream; later calls fail at once. */
  close(): void {
    this.closed = true;
    for (const call of [...this.open.values()]) call.finish(GrpcStatus.CANCELLED, 'the call stream was closed', EMPTY, new Metadata());
    this.stream?.cancel();
    this.stream = undefined;
  }

  private call<Req, Res>(definition: MethodDefinition<Req, Res>, request: Req, metadata: Metadata, deadline: Deadline | undefined, callback: (err: ServiceError | null, response: Res) => void, fallback: UnaryMethod<Req, Res>): { cancel(): void } {
    const span: ClientSpan | undefined = this.traced ? startClientSpan(this.options.tracer, definition.path, this.options.peer) : undefined;
    const outgoing = asciiMap(metadata);
    span?.inject(outgoing);
    const message = definition.requestSerialize(request);
    const deliver = (err: ServiceError | null, answer: Buffer): void => {
      if (err !== null) return callback(err, undefined as Res);
      let response: Res;
      try {
        response = definition.responseDeserialize(answer);
      } catch (error) {
        return callback(serviceError(GrpcStatus.INTERNAL, `Failed to parse server response: ${(error as Error).message}`, new Metadata()), undefined as Res);
      }
      callback(null, response);
    };
    const call = new ClientCall(
      this.nextId++,
      definition.path,
      message,
      outgoing,
      deadline === undefined || !Number.isFinite(deadlineMs(deadline)) ? undefined : deadlineMs(deadline),
      span,
      (done) => {
        this.open.delete(done.id);
        if (this.retired !== undefined && this.open.size === 0) this.finishRetiring();
      },
      deliver,
      () => fallback(request, metadata, { deadline }, callback),
    );
    this.open.set(call.id, call);
    // A call that cannot start fails as grpc-js fails one: never within this function.
    const failNow = (code: GrpcStatus, details: string) => process.nextTick(() => call.finish(code, details, EMPTY, new Metadata()));
    const maxBytes = this.options.maxMessageBytes ?? GRPC_SERVER_DEFAULTS.maxMessageBytes;
    if (this.closed) failNow(GrpcStatus.CANCELLED, 'the call stream was closed');
    else if (message.length + FRAME_OVERHEAD_BYTES > maxBytes) failNow(GrpcStatus.RESOURCE_EXHAUSTED, `Sent message larger than max (${message.length + FRAME_OVERHEAD_BYTES} vs ${maxBytes})`);
    else if (!call.arm(() => call.giveUp(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded'))) failNow(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded');
    else this.send(call);
    return { cancel: () => call.giveUp(GrpcStatus.CANCELLED, 'Cancelled on client') };
  }

  private finishRetiring(): void {
    const then = this.retired;
    this.retired = undefined;
    this.close();
    then?.();
  }

  private send(call: ClientCall): void {
    if (this.stream === undefined) this.stream = this.startStream();
    const stream = this.stream;
    call.stream = stream;
    call.written = false;
    const waiting = this.backlog.get(stream);
    if (waiting !== undefined) waiting.push(call);
    else this.write(stream, call);
  }

  /** Queues a call for this turn's frame on `stream`; the first one queued schedules the write. */
  private write(stream: Stream, call: ClientCall): void {
    const queued = this.unsent.get(stream);
    if (queued !== undefined) return void queued.push(call);
    this.unsent.set(stream, [call]);
    process.nextTick(() => this.flush(stream));
  }

  /**
   * Writes the calls queued this turn that are still waiting (one given up meanwhile is never
   * sent), as few frames as the message size limit allows. Once the stream is backed up, the rest
   * wait in the backlog.
   */
  private flush(stream: Stream): void {
    const queued = this.unsent.get(stream) ?? [];
    this.unsent.delete(stream);
    const calls = queued.filter((call) => call.isOpen && call.stream === stream).map((call) => ({ call, frame: call.frame() }));
    let sent = 0;
    const groups = this.batching.has(stream) ? inFrames(calls, ({ frame }) => frameBytes(frame.message, frame.method, frame.metadata), this.options.maxMessageBytes) : calls.map((call) => [call]);
    for (const group of groups) {
      for (const { call } of group) call.written = true;
      stream.write(group.map(({ frame }) => frame));
      sent += group.length;
      // grpc-js says "full" past 16 frames, which a burst of calls passes at once: the backlog starts
      // where frames pile up because the connection does not take them.
      if (stream.writableLength >= MAX_BUFFERED_FRAMES && !this.backlog.has(stream)) {
        this.backlog.set(stream, calls.slice(sent).map(({ call }) => call));
        stream.once('drain', () => this.drained(stream));
        return;
      }
    }
  }

  /** The stream took its buffer: the calls waiting for it go, in order, in this turn's frames. */
  private drained(stream: Stream): void {
    const waiting = this.backlog.get(stream) ?? [];
    this.backlog.delete(stream);
    for (const call of waiting) if (call.isOpen && call.stream === stream) this.write(stream, call);
  }

  private startStream(): Stream {
    const metadata = new Metadata();
    metadata.set(BATCH_HEADER, '1');
    const path = this.callsPath;
    if (path === undefined) throw new Error('a call stream opened before any method was carried on it');
    const stream = this.options.client.makeBidiStreamRequest(path, encodeCallFrame, decodeAnswerFrame, metadata, STREAM_OPTIONS);
    stream.on('metadata', (headers: Metadata) => {
      if (headers.get(BATCH_HEADER).length > 0) this.batching.add(stream);
    });
    stream.on('data', (frame: AnswerFrame) => {
      for (const answer of frame) this.answered(stream, answer);
    });
    // 'status' follows every end, errors included; it can come before the last answers are read
    // (grpc-js emits it at once, and 'data' from the stream's buffer), so the calls still open
    // are settled once the reading side has ended too.
    stream.on('error', () => undefined);
    let status: StatusObject | undefined;
    let readEnded = false;
    const settle = (): void => {
      if (status !== undefined && readEnded) this.ended(stream, status);
    };
    stream.on('status', (received: StatusObject) => {
      status = received;
      if (this.stream === stream) this.stream = undefined;
      this.backlog.delete(stream);
      settle();
    });
    const readDone = (): void => {
      if (readEnded) return;
      readEnded = true;
      settle();
    };
    stream.on('end', readDone);
    stream.on('close', readDone);
    return stream;
  }

  private answered(stream: Stream, answer: StreamedAnswer): void {
    const call = this.open.get(answer.id);
    if (call === undefined || call.stream !== stream) return; // cancelled, timed out, or sent again meanwhile
    if (answer.code === GrpcStatus.UNAVAILABLE && answer.trailers[NOT_RUN_TRAILER] !== undefined) {
      // A draining server did not run it; it ends this stream once its calls are answered, and
      // the call goes on a new one (grpc-js's channel already knows the server is going away).
      if (this.stream === stream) this.stream = undefined;
      this.resend(call);
      return;
    }
    // An answer's trailers reach its caller only with an error.
    call.finish(answer.code, answer.details, answer.message, answer.code === GrpcStatus.OK ? NO_TRAILERS : textMetadata(answer.trailers, () => undefined));
  }

  /** The stream ended: what was in flight on it fails with its status, or goes elsewhere if it never ran. */
  private ended(stream: Stream, status: StatusObject): void {
    if (this.stream === stream) this.stream = undefined;
    const calls = [...this.open.values()].filter((call) => call.stream === stream);
    if (status.code === GrpcStatus.UNIMPLEMENTED) {
      // An older server: unary calls for a while, then a stream is tried again (it may have been upgraded).
      this.unsupportedUntil = Date.now() + UNSUPPORTED_RETRY_MS;
      for (const call of calls) call.fallBack();
      return;
    }
    for (const call of calls) {
      // The server ended the stream itself (drained) after answering every call it had received,
      // and a call it cancelled at its deadline it answered too: these never reached it.
      if (status.code === GrpcStatus.OK) this.resend(call);
      // Queued behind a full stream when it failed: never sent, so safe to send elsewhere.
      else if (!call.written) call.finish(GrpcStatus.UNAVAILABLE, `No connection established: the call stream ended before the call was sent (${status.details})`, EMPTY, new Metadata());
      else call.finish(status.code, status.details, EMPTY, status.metadata);
    }
  }

  private resend(call: ClientCall): void {
    if (++call.resends > MAX_RESENDS) {
      call.finish(GrpcStatus.UNAVAILABLE, 'No connection established: the server is shutting down and ran none of the attempts', EMPTY, new Metadata());
      return;
    }
    this.send(call);
  }
}

/** `method` as a plain unary call on `client`, with its own (de)serializers: the fallback of an encoded method. */
export function encodedUnary<Req, Res>(client: Client, method: MethodDefinition<Req, Res>): UnaryMethod<Req, Res> {
  return (request, metadata, options, callback) => client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadata, options, callback as (err: ServiceError | null, response?: Res) => void);
}

/**
 * One unary method carried on a Calls stream to each of many addresses (a role's routers, a
 * datacenter's catalogs): the client and its stream made on first use, closed together.
 */
export class StreamedMethod<C extends CallStreamClientOptions['client'] & Client, Req, Res> {
  private readonly streams = new Map<string, { readonly calls: CallStreamClient; readonly method: UnaryMethod<Req, Res> }>();

  constructor(
    private readonly clients: RoleClients<C>,
    private readonly definition: MethodDefinition<Req, Res>,
    /** The same method as a plain unary call, for a server without `Calls`: `(c) => c.forward.bind(c)`. */
    private readonly unary: (client: C) => UnaryMethod<Req, Res>,
    private readonly tracer: Tracer,
  ) {}

  get(address: string): UnaryMethod<Req, Res> {
    let stream = this.streams.get(address);
    if (stream === undefined) {
      const client = this.clients.get(address);
      const calls = new CallStreamClient({ client, tracer: this.tracer, peer: address });
      stream = { calls, method: calls.method(this.definition, this.unary(client)) };
      this.streams.set(address, stream);
    }
    return stream.method;
  }

  /** Ends the streams and closes the clients. */
  close(): void {
    for (const stream of this.streams.values()) stream.calls.close();
    this.streams.clear();
    this.clients.close();
  }
}

export interface CallStreamServerOptions {
  /** Calls in flight on one stream at most. Default MAX_CALLS_PER_STREAM. */
  readonly maxCallsPerStream?: number;
  /** Largest answer message sent (the server's limit, which would end the whole stream). Default GRPC_SERVER_DEFAULTS. */
  readonly maxMessageBytes?: number;
}

interface ServedMethod {
  readonly definition: MethodDefinition<unknown, unknown>;
  readonly handler: handleUnaryCall<unknown, unknown>;
}

interface ServedStream {
  readonly stream: ServerDuplexStream<CallFrame, AnswerFrame>;
  readonly calls: Map<number, StandInCall>;
  /** Answers given this turn, written together at its end (`flushAnswers`). */
  unanswered: StreamedAnswer[];
  /** The client reads frames of several answers (BATCH_HEADER); else one answer a frame. */
  readonly batching: boolean;
  /** The client half-closed, or the server is draining: end once the calls are answered. */
  ending: boolean;
  ended: boolean;
}

type Answer = (code: GrpcStatus, details: string, message?: Buffer, trailers?: Record<string, string>) => void;

/** Serves a service's unary methods on its `Calls` streams. */
export class CallStreamServer {
  private readonly methods = new Map<string, ServedMethod>();
  private readonly streams = new Set<ServedStream>();
  private draining = false;

  /** `implementation`: the service's handlers as the gRPC server runs them (traced). */
  constructor(
    definition: ServiceDefinition,
    implementation: UntypedServiceImplementation,
    private readonly options: CallStreamServerOptions = {},
  ) {
    for (const [name, method] of Object.entries(definition)) {
      const handler = implementation[name];
      if (method.requestStream || method.responseStream || typeof handler !== 'function') continue;
      this.methods.set(method.path, { definition: method as MethodDefinition<unknown, unknown>, handler: handler as handleUnaryCall<unknown, unknown> });
    }
  }

  /** The `Calls` handler. */
  readonly handler = (stream: ServerDuplexStream<CallFrame, AnswerFrame>): void => {
    // A client that reads frames of several answers says so; we say we read frames of several calls.
    const batching = stream.metadata.get(BATCH_HEADER).length > 0;
    if (batching) {
      const headers = new Metadata();
      headers.set(BATCH_HEADER, '1');
      stream.sendMetadata(headers);
    }
    const served: ServedStream = { stream, calls: new Map(), unanswered: [], batching, ending: this.draining, ended: false };
    this.streams.add(served);
    stream.on('data', (frame: CallFrame) => {
      // What a peer sends must never take the process down: a frame we cannot handle ends its stream.
      try {
        if (frame.length === 0) return this.fail(served, GrpcStatus.INVALID_ARGUMENT, 'a Calls frame needs a call');
        for (const call of frame) this.received(served, call);
      } catch (err) {
        this.fail(served, GrpcStatus.INTERNAL, `cannot serve a call frame: ${(err as Error).message}`);
      }
    });
    stream.on('end', () => {
      served.ending = true;
      this.endIfDone(served);
    });
    const gone = (): void => {
      served.ended = true;
      this.streams.delete(served);
      for (const call of served.calls.values()) call.cancel();
      served.calls.clear();
    };
    stream.on('cancelled', gone);
    stream.on('error', gone);
    stream.on('close', gone);
    this.endIfDone(served);
  };

  /** Refuses new calls (the client sends them elsewhere) and ends each stream once its calls are answered. */
  drain(): void {
    this.draining = true;
    for (const served of this.streams) {
      served.ending = true;
      this.endIfDone(served);
    }
  }

  private received(served: ServedStream, frame: StreamedCall): void {
    if (served.ended) return;
    if (frame.cancel) {
      served.calls.get(frame.id)?.cancel();
      return;
    }
    if (served.calls.has(frame.id)) return this.fail(served, GrpcStatus.INVALID_ARGUMENT, `call ${frame.id} is already in flight on this stream`);
    const maxBytes = this.options.maxMessageBytes ?? GRPC_SERVER_DEFAULTS.maxMessageBytes;
    const answer: Answer = (code, details, message = EMPTY, trailers = {}) => {
      if (served.ended) return;
      // An answer past the limit would end the whole stream (grpc-js): it fails alone.
      if (message.length + FRAME_OVERHEAD_BYTES > maxBytes) [code, details, message, trailers] = [GrpcStatus.RESOURCE_EXHAUSTED, `Sent message larger than max (${message.length + FRAME_OVERHEAD_BYTES} vs ${maxBytes})`, EMPTY, {}];
      this.queueAnswer(served, { id: frame.id, code, details, message, trailers });
    };
    if (this.draining) return answer(GrpcStatus.UNAVAILABLE, 'the server is shutting down; the call did not run', undefined, { [NOT_RUN_TRAILER]: '1' });
    const method = this.methods.get(frame.method);
    if (method === undefined) return answer(GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${frame.method}`);
    if (served.calls.size >= (this.options.maxCallsPerStream ?? MAX_CALLS_PER_STREAM)) return answer(GrpcStatus.RESOURCE_EXHAUSTED, `more than ${served.calls.size} calls in flight on one stream`);
    let bad: string | undefined;
    const metadata = textMetadata(frame.metadata, (name) => (bad ??= name));
    if (bad !== undefined) return answer(GrpcStatus.INVALID_ARGUMENT, `metadata key "${bad}" or its value is not valid gRPC metadata`);
    let request: unknown;
    try {
      request = method.definition.requestDeserialize(frame.message);
    } catch {
      return answer(GrpcStatus.INTERNAL, 'Error deserializing request');
    }
    const call = new StandInCall(frame, request, metadata, served.stream, answer, () => {
      served.calls.delete(frame.id);
      this.endIfDone(served);
    });
    served.calls.set(frame.id, call);
    const callback: sendUnaryData<unknown> = (err, value, trailer) => {
      if (!call.open) return; // cancelled: nobody waits for the answer
      // Answered before the call is done: the last call's end may end the stream.
      answer(...encodeAnswer(method.definition, err, value, trailer));
      call.done();
    };
    method.handler(call as unknown as ServerUnaryCall<unknown, unknown>, callback);
  }

  /** Queues an answer for this turn's frame; the first one queued schedules the write. */
  private queueAnswer(served: ServedStream, answer: StreamedAnswer): void {
    served.unanswered.push(answer);
    if (served.unanswered.length === 1) process.nextTick(() => this.flushAnswers(served));
  }

  /** Writes the answers queued this turn, as few frames as the message size limit allows. */
  private flushAnswers(served: ServedStream): void {
    const answers = served.unanswered;
    if (answers.length === 0 || served.ended) return;
    served.unanswered = [];
    const groups = served.batching ? inFrames(answers, (answer) => frameBytes(answer.message, answer.details, answer.trailers), this.options.maxMessageBytes) : answers.map((answer) => [answer]);
    for (const group of groups) served.stream.write(group);
  }

  private endIfDone(served: ServedStream): void {
    if (served.ending && !served.ended && served.calls.size === 0) {
      // The last answers go before the end.
      this.flushAnswers(served);
      served.ended = true;
      this.streams.delete(served);
      served.stream.end();
    }
  }

  /** Ends the stream with an error status (grpc-js sends a server stream's 'error' as its status). */
  private fail(served: ServedStream, code: GrpcStatus, details: string): void {
    // This turn's answers first: their calls ran.
    this.flushAnswers(served);
    served.stream.emit('error', serviceError(code, details, new Metadata()));
  }
}

/**
 * What a unary handler is given for a call that came on a stream: its request, metadata, deadline,
 * peer and method, and the 'cancelled' event (a cancel frame, the stream's end, the deadline).
 */
class StandInCall extends EventEmitter {
  cancelled = false;
  /** Not answered nor cancelled yet. */
  open = true;
  private readonly deadline: Deadline;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly frame: StreamedCall,
    readonly request: unknown,
    readonly metadata: Metadata,
    private readonly stream: ServerDuplexStream<CallFrame, AnswerFrame>,
    answer: Answer,
    private readonly onDone: () => void,
  ) {
    super();
    const timeoutMs = frame.timeoutMs;
    this.deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    // At the deadline the call ends, answered, as grpc-js ends a unary call: had the stream ended
    // unanswered instead (a drain), the client would take the call for one that never ran.
    if (timeoutMs > 0) {
      this.timer = setTimeout(() => {
        if (!this.open) return;
        answer(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded');
        this.cancel();
      }, Math.min(timeoutMs, MAX_TIMER_MS));
    }
  }

  getPeer(): string {
    return this.stream.getPeer();
  }

  getDeadline(): Deadline {
    return this.deadline;
  }

  getPath(): string {
    return this.frame.method;
  }

  sendMetadata(): void {}

  /** The handler answered. */
  done(): void {
    if (!this.open) return;
    this.open = false;
    clearTimeout(this.timer);
    this.onDone();
  }

  cancel(): void {
    if (!this.open) return;
    this.done();
    this.cancelled = true;
    this.emit('cancelled');
  }
}

/**
 * Text metadata from a frame's map; an entry grpc-js refuses (a bad key, a `-bin` key, a value
 * that is not printable ASCII) is left out and reported to `refused`.
 */
function textMetadata(map: Record<string, string>, refused: (name: string) => void): Metadata {
  const metadata = new Metadata();
  for (const [name, value] of Object.entries(map)) {
    try {
      if (name.endsWith('-bin')) throw new Error('binary metadata does not travel on a Calls stream');
      metadata.set(name, value);
    } catch {
      refused(name);
    }
  }
  return metadata;
}

/** A handler's outcome as an answer's code, details, message and trailers. */
function encodeAnswer(definition: MethodDefinition<unknown, unknown>, err: Partial<ServiceError> | null | undefined, value: unknown, trailer: Metadata | undefined): [GrpcStatus, string, Buffer, Record<string, string>] {
  // A code that is not a gRPC status (a Node error's 'ECONNRESET') is UNKNOWN, as grpc-js sends it.
  if (err !== null && err !== undefined) return [statusCode(err.code), err.details ?? err.message ?? '', EMPTY, asciiMap(err.metadata ?? trailer)];
  try {
    return [GrpcStatus.OK, '', definition.responseSerialize(value), asciiMap(trailer)];
  } catch (error) {
    return [GrpcStatus.INTERNAL, `Error serializing response: ${(error as Error).message}`, EMPTY, {}];
  }
}

function statusCode(code: unknown): GrpcStatus {
  return Number.isInteger(code) && (code as number) >= GrpcStatus.OK && (code as number) <= GrpcStatus.UNAUTHENTICATED ? (code as GrpcStatus) : GrpcStatus.UNKNOWN;
}

/**
 * `items` in order, in groups that each fit one message of the stream (`maxMessageBytes`, less the
 * room FRAME_OVERHEAD_BYTES keeps): a message over the limit would end the whole stream. An item
 * is never over it alone (calls and answers are checked before they are queued).
 */
function inFrames<T>(items: readonly T[], bytesOf: (item: T) => number, maxMessageBytes = GRPC_SERVER_DEFAULTS.maxMessageBytes): T[][] {
  const limit = maxMessageBytes - FRAME_OVERHEAD_BYTES;
  const groups: T[][] = [];
  let bytes = Infinity;
  for (const item of items) {
    const size = bytesOf(item);
    if (bytes + size > limit) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1].push(item);
    bytes += size;
  }
  return groups;
}

/** About what a call or an answer takes in a frame: its message, text and map, and room for the rest. */
function frameBytes(message: Uint8Array, text: string, map: Record<string, string>): number {
  let bytes = message.length + text.length + 32;
  for (const [name, value] of Object.entries(map)) bytes += name.length + value.length + 8;
  return bytes;
}

function deadlineMs(deadline: Deadline): number {
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** A Metadata's text values (binary `-bin` ones do not travel on a Calls stream). */
function asciiMap(metadata: Metadata | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (metadata === undefined) return out;
  for (const [name, value] of Object.entries(metadata.getMap())) if (typeof value === 'string') out[name] = value;
  return out;
}

function serviceError(code: GrpcStatus, details: string, metadata: Metadata): ServiceError {
  return Object.assign(new Error(`${code} ${GrpcStatus[code]}: ${details}`), { code, details, metadata });
}
