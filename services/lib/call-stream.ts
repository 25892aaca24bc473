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

import { UnaryAnswer, UnaryCall } from '../gen/consulate/common/v1/call_stream';
import { RoleClients } from './grpc-client';
import { ClientSpan, startClientSpan } from './grpc-tracing';

/** The frames of every service's `Calls` method: its request wraps a call, its response an answer. */
export interface CallFrame {
  call?: UnaryCall;
}
export interface AnswerFrame {
  answer?: UnaryAnswer;
}

/** The trailer of a call a draining server did not run: the client sends it again on a new stream. */
export const NOT_RUN_TRAILER = 'consulate-call-not-run';
/** Calls in flight on one stream at most; past it a call is refused with RESOURCE_EXHAUSTED. */
export const MAX_CALLS_PER_STREAM = 10_000;
/** How many times a call a server did not run is sent again before it fails as never sent. */
const MAX_RESENDS = 3;
/**
 * A stream opens without the client's interceptors (call interceptors replace them in grpc-js):
 * a span as long as the stream would say nothing, and each call on it makes its own.
 */
const STREAM_OPTIONS: Partial<CallOptions> = { interceptors: [(options, nextCall) => new InterceptingCall(nextCall(options))] };

/** A service's handlers without `Calls`, which the gRPC server adds (RoleGrpcServer's `callStream`). */
export type WithoutCalls<S> = { [K in keyof S as K extends 'calls' ? never : K]: S[K] };

/** A unary method as grpc-js's generated clients have it. */
export type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, response: Res) => void) => { cancel(): void };

export interface CallStreamClientOptions {
  /** The service's generated client: its `calls` opens the stream. */
  readonly client: { calls(options: Partial<CallOptions>): ClientDuplexStream<CallFrame, AnswerFrame> };
  readonly tracer: Tracer;
  /** The server's address, for the spans. */
  readonly peer: string;
  /** false for calls that would drown the traces. Default true. */
  readonly traced?: boolean;
}

interface OpenCall {
  readonly frame: UnaryCall;
  readonly finish: (code: GrpcStatus, details: string, message: Buffer, trailers: Metadata) => void;
  /** Runs the call as a plain unary call instead (the server has no `Calls`). */
  readonly fallBack: () => void;
  /** The stream it was last sent on. */
  stream: Stream | undefined;
  resends: number;
}

type Stream = ClientDuplexStream<CallFrame, AnswerFrame>;

export class CallStreamClient {
  private stream: Stream | undefined;
  private readonly open = new Map<bigint, OpenCall>();
  private nextId = 1n;
  /** The server answered UNIMPLEMENTED to `Calls`: plain unary calls from now on. */
  private unsupported = false;
  private closed = false;

  constructor(private readonly options: CallStreamClientOptions) {}

  /**
   * `definition`'s method, carried on the stream; `fallback` is the same method as a plain unary
   * call (`client.forward.bind(client)`), for a server without `Calls`.
   */
  method<Req, Res>(definition: MethodDefinition<Req, Res>, fallback: UnaryMethod<Req, Res>): UnaryMethod<Req, Res> {
    return (request, metadata, options, callback) => {
      if (this.unsupported) return fallback(request, metadata, options, callback);
      return this.call(definition, request, metadata, options.deadline, callback, fallback);
    };
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.open.size;
  }

  /** Fails the calls in flight (CANCELLED) and ends the stream; later calls fail at once. */
  close(): void {
    this.closed = true;
    for (const call of [...this.open.values()]) call.finish(GrpcStatus.CANCELLED, 'the call stream was closed', Buffer.alloc(0), new Metadata());
    this.stream?.cancel();
    this.stream = undefined;
  }

  private call<Req, Res>(definition: MethodDefinition<Req, Res>, request: Req, metadata: Metadata, deadline: Deadline | undefined, callback: (err: ServiceError | null, response: Res) => void, fallback: UnaryMethod<Req, Res>): { cancel(): void } {
    const id = this.nextId++;
    const span: ClientSpan | undefined = this.options.traced === false ? undefined : startClientSpan(this.options.tracer, definition.path, this.options.peer);
    const outgoing = metadata.clone();
    span?.inject(outgoing);
    const timeoutMs = deadline === undefined ? 0 : Math.max(0, deadlineMs(deadline) - Date.now());
    let timer: NodeJS.Timeout | undefined;
    let unaryCall: { cancel(): void } | undefined;
    let done = false;
    const finish = (code: GrpcStatus, details: string, message: Buffer, trailers: Metadata): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.open.delete(id);
      span?.end(code, details);
      if (code !== GrpcStatus.OK) return callback(serviceError(code, details, trailers), undefined as Res);
      let response: Res;
      try {
        response = definition.responseDeserialize(message);
      } catch (err) {
        return callback(serviceError(GrpcStatus.INTERNAL, `Failed to parse server response: ${(err as Error).message}`, trailers), undefined as Res);
      }
      callback(null, response);
    };
    const giveUp = (code: GrpcStatus, details: string): void => {
      if (done) return;
      const wasOpen = this.open.has(id);
      finish(code, details, Buffer.alloc(0), new Metadata());
      unaryCall?.cancel();
      if (wasOpen) this.stream?.write({ call: { id, method: '', message: Buffer.alloc(0), metadata: {}, timeoutMs: 0n, cancel: true } });
    };
    if (this.closed) {
      finish(GrpcStatus.CANCELLED, 'the call stream was closed', Buffer.alloc(0), new Metadata());
      return { cancel: () => undefined };
    }
    const frame: UnaryCall = { id, method: definition.path, message: definition.requestSerialize(request), metadata: asciiMap(outgoing), timeoutMs: BigInt(timeoutMs), cancel: false };
    const call: OpenCall = {
      frame,
      finish,
      stream: undefined,
      resends: 0,
      fallBack: () => {
        // The unary call makes its own span; this one ends here, saying why.
        this.open.delete(id);
        span?.end(GrpcStatus.UNIMPLEMENTED, 'the server has no call stream: sent as a unary call');
        done = true;
        clearTimeout(timer);
        unaryCall = fallback(request, metadata, { deadline }, callback);
      },
    };
    if (deadline !== undefined) {
      if (timeoutMs <= 0) {
        finish(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded', Buffer.alloc(0), new Metadata());
        return { cancel: () => undefined };
      }
      timer = setTimeout(() => giveUp(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded'), timeoutMs);
    }
    this.open.set(id, call);
    this.send(call);
    return { cancel: () => giveUp(GrpcStatus.CANCELLED, 'Cancelled on client') };
  }

  private send(call: OpenCall): void {
    if (this.stream === undefined) this.stream = this.startStream();
    call.stream = this.stream;
    this.stream.write({ call: call.frame });
  }

  private startStream(): Stream {
    const stream = this.options.client.calls(STREAM_OPTIONS);
    stream.on('data', (frame: AnswerFrame) => this.answered(frame.answer));
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

  private answered(answer: UnaryAnswer | undefined): void {
    if (answer === undefined) return;
    const call = this.open.get(answer.id);
    if (call === undefined) return; // cancelled or timed out meanwhile
    const trailers = new Metadata();
    for (const [name, value] of Object.entries(answer.trailers)) trailers.set(name, value);
    if (answer.code === GrpcStatus.UNAVAILABLE && trailers.get(NOT_RUN_TRAILER).length > 0) {
      // A draining server: it did not run the call. Its stream ends soon; the next one goes elsewhere.
      this.stream = undefined;
      this.resend(call);
      return;
    }
    call.finish(answer.code, answer.details, answer.message, trailers);
  }

  /** The stream ended: what was in flight on it fails with its status, or goes elsewhere if it never ran. */
  private ended(stream: Stream, status: StatusObject): void {
    if (this.stream === stream) this.stream = undefined;
    const calls = [...this.open.values()].filter((call) => call.stream === stream);
    if (status.code === GrpcStatus.UNIMPLEMENTED) {
      this.unsupported = true;
      for (const call of calls) call.fallBack();
      return;
    }
    for (const call of calls) {
      // The server ended the stream itself (drained) after answering every call it had received.
      if (status.code === GrpcStatus.OK) this.resend(call);
      else call.finish(status.code, status.details, Buffer.alloc(0), status.metadata);
    }
  }

  private resend(call: OpenCall): void {
    if (++call.resends > MAX_RESENDS) {
      call.finish(GrpcStatus.UNAVAILABLE, 'No connection established: the server is shutting down and ran none of the attempts', Buffer.alloc(0), new Metadata());
      return;
    }
    this.send(call);
  }
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
}

interface ServedMethod {
  readonly definition: MethodDefinition<unknown, unknown>;
  readonly handler: handleUnaryCall<unknown, unknown>;
}

interface ServedStream {
  readonly stream: ServerDuplexStream<CallFrame, AnswerFrame>;
  readonly calls: Map<bigint, StandInCall>;
  /** The client half-closed, or the server is draining: end once the calls are answered. */
  ending: boolean;
  ended: boolean;
}

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
    const served: ServedStream = { stream, calls: new Map(), ending: this.draining, ended: false };
    this.streams.add(served);
    stream.on('data', (frame: CallFrame) => this.received(served, frame.call));
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

  private received(served: ServedStream, frame: UnaryCall | undefined): void {
    if (served.ended) return;
    if (frame === undefined) return this.fail(served, GrpcStatus.INVALID_ARGUMENT, 'a Calls frame needs a call');
    if (frame.cancel) {
      served.calls.get(frame.id)?.cancel();
      served.calls.delete(frame.id);
      return this.endIfDone(served);
    }
    if (served.calls.has(frame.id)) return this.fail(served, GrpcStatus.INVALID_ARGUMENT, `call ${frame.id} is already in flight on this stream`);
    const answer = (code: GrpcStatus, details: string, message: Buffer = Buffer.alloc(0), trailers: Record<string, string> = {}): void => {
      if (!served.ended) served.stream.write({ answer: { id: frame.id, code, details, message, trailers } });
    };
    if (this.draining) return answer(GrpcStatus.UNAVAILABLE, 'the server is shutting down; the call did not run', undefined, { [NOT_RUN_TRAILER]: '1' });
    const method = this.methods.get(frame.method);
    if (method === undefined) return answer(GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${frame.method}`);
    if (served.calls.size >= (this.options.maxCallsPerStream ?? MAX_CALLS_PER_STREAM)) return answer(GrpcStatus.RESOURCE_EXHAUSTED, `more than ${served.calls.size} calls in flight on one stream`);
    let request: unknown;
    try {
      request = method.definition.requestDeserialize(frame.message);
    } catch (err) {
      return answer(GrpcStatus.INTERNAL, 'Error deserializing request');
    }
    const call = new StandInCall(frame, request, served.stream, () => {
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

  private endIfDone(served: ServedStream): void {
    if (served.ending && !served.ended && served.calls.size === 0) {
      served.ended = true;
      this.streams.delete(served);
      served.stream.end();
    }
  }

  /** Ends the stream with an error status (grpc-js sends a server stream's 'error' as its status). */
  private fail(served: ServedStream, code: GrpcStatus, details: string): void {
    served.stream.emit('error', serviceError(code, details, new Metadata()));
  }
}

/**
 * What a unary handler is given for a call that came on a stream: its request, metadata, deadline
 * and peer, and the 'cancelled' event.
 */
class StandInCall extends EventEmitter {
  readonly request: unknown;
  readonly metadata = new Metadata();
  cancelled = false;
  private readonly deadline: Deadline;
  private readonly timer: NodeJS.Timeout | undefined;
  /** Not answered nor cancelled yet. */
  open = true;

  constructor(
    frame: UnaryCall,
    request: unknown,
    private readonly stream: ServerDuplexStream<CallFrame, AnswerFrame>,
    private readonly onDone: () => void,
  ) {
    super();
    this.request = request;
    for (const [name, value] of Object.entries(frame.metadata)) this.metadata.set(name, value);
    const timeoutMs = Number(frame.timeoutMs);
    this.deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    if (timeoutMs > 0) this.timer = setTimeout(() => this.cancel(), timeoutMs);
  }

  getPeer(): string {
    return this.stream.getPeer();
  }

  getDeadline(): Deadline {
    return this.deadline;
  }

  getPath(): string {
    return this.stream.getPath();
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

/** A handler's outcome as an answer's code, details, message and trailers. */
function encodeAnswer(definition: MethodDefinition<unknown, unknown>, err: Partial<ServiceError> | null | undefined, value: unknown, trailer: Metadata | undefined): [GrpcStatus, string, Buffer, Record<string, string>] {
  if (err !== null && err !== undefined) return [err.code ?? GrpcStatus.UNKNOWN, err.details ?? err.message ?? '', Buffer.alloc(0), asciiMap(err.metadata ?? trailer)];
  try {
    return [GrpcStatus.OK, '', definition.responseSerialize(value), asciiMap(trailer)];
  } catch (error) {
    return [GrpcStatus.INTERNAL, `Error serializing response: ${(error as Error).message}`, Buffer.alloc(0), {}];
  }
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
