import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';

import { Metadata, ServerUnaryCall, ServiceError, sendUnaryData, status as GrpcStatus } from '@grpc/grpc-js';
import { SpanKind, context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { ForwardRequest, ForwardResponse, ForwardServiceCallsResponse, ForwardServiceClient, ForwardServiceServer, ForwardServiceService, protobufFileName } from '../gen/consulate/router/v1/operator';
import { eventually } from '../../test/harness/processes';
import { BATCH_HEADER, CallFrame, CallStreamClient, MAX_BUFFERED_FRAMES, UnaryMethod, WithoutCalls } from './call-stream';
import { createRoleClient } from './grpc-client';
import { RoleGrpcServer } from './grpc-server';
import { createLogger } from './log';
import { Telemetry, setupTelemetry } from './telemetry';

type Handler = (call: ServerUnaryCall<ForwardRequest, ForwardResponse>, callback: sendUnaryData<ForwardResponse>) => void;

/**
 * A frame's answers, one or several, as the generated code reads them: the raw streams below are
 * made by the generated client, which is how an older version of ours, or another language, speaks.
 */
type AnswerFrame = ForwardServiceCallsResponse;
const frameAnswers = (frame: AnswerFrame) => [...(frame.answer === undefined ? [] : [frame.answer]), ...frame.answers];
/** The calls started so far are written at the end of the turn: after this, they have been. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

const answer = (datacenter: string): ForwardResponse => ({ response: { status: 200, headers: {}, body: Buffer.from(datacenter) }, path: [datacenter] });

describe('unary calls on a Calls stream', () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let handler: Handler;
  let logged: string[];
  const servers: RoleGrpcServer[] = [];
  const clients: Array<{ close(): void }> = [];

  beforeAll(() => {
    telemetry = setupTelemetry({ role: 'federation-router', datacenter: 'dc1', node: 'router-1', env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  });

  afterAll(() => telemetry.shutdown());

  beforeEach(() => {
    exporter.reset();
    logged = [];
    handler = (call, callback) => callback(null, answer(call.request.datacenter));
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((server) => server.shutdown()));
  });

  async function serve(options: { callStream?: boolean; port?: number; graceMs?: number } = {}): Promise<{ server: RoleGrpcServer; address: string }> {
    const implementation: WithoutCalls<ForwardServiceServer> = { forward: (call, callback) => handler(call, callback), forwardWatch: (call) => call.end() };
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(chunk.toString());
        done();
      },
    });
    const server = new RoleGrpcServer({
      logger: createLogger({ role: 'federation-router', datacenter: 'dc2', node: 'router-1', level: 'info', destination }),
      tracer: telemetry.tracer,
      services: [{ definition: ForwardServiceService, implementation, protoFile: protobufFileName, callStream: options.callStream ?? true }],
      shutdownGraceMs: options.graceMs ?? 60_000,
    });
    const address = await server.listen('127.0.0.1', options.port ?? 0);
    server.setServing(true);
    servers.push(server);
    return { server, address };
  }

  function connect(address: string): { calls: CallStreamClient; forward: UnaryMethod<ForwardRequest, ForwardResponse>; opens: () => number; raw: ForwardServiceClient } {
    const raw = createRoleClient(ForwardServiceClient, address, { tracer: telemetry.tracer });
    let opens = 0;
    const calls = new CallStreamClient({
      client: {
        makeBidiStreamRequest: ((...args: Parameters<ForwardServiceClient['makeBidiStreamRequest']>) => {
          opens++;
          return raw.makeBidiStreamRequest(...args);
        }) as ForwardServiceClient['makeBidiStreamRequest'],
      },
      tracer: telemetry.tracer,
      peer: address,
    });
    clients.push(calls, raw);
    return { calls, forward: calls.method(ForwardServiceService.forward, raw.forward.bind(raw)), opens: () => opens, raw };
  }

  function call(forward: UnaryMethod<ForwardRequest, ForwardResponse>, datacenter: string, options: { timeoutMs?: number; metadata?: Metadata } = {}): { done: Promise<ForwardResponse>; cancel(): void } {
    let cancel = (): void => undefined;
    const done = new Promise<ForwardResponse>((resolve, reject) => {
      const started = forward({ datacenter }, options.metadata ?? new Metadata(), { deadline: Date.now() + (options.timeoutMs ?? 5_000) }, (err, response) => (err === null ? resolve(response) : reject(err)));
      cancel = () => started.cancel();
    });
    return { done, cancel: () => cancel() };
  }

  test('concurrent calls share one stream and are answered out of order, each with its own answer', async () => {
    const waiting: Array<() => void> = [];
    handler = (call, callback) => {
      waiting.push(() => callback(null, answer(call.request.datacenter)));
      // Answer all at once, last first, when every call has arrived.
      if (waiting.length === 40) for (const reply of waiting.reverse()) reply();
    };
    const { address } = await serve();
    const { forward, opens } = connect(address);
    const names = Array.from({ length: 40 }, (_, i) => `dc${i}`);
    const answers = await Promise.all(names.map((name) => call(forward, name).done));
    expect(answers.map((response) => response.path[0])).toEqual(names);
    expect(opens()).toBe(1);
    // And the stream stays open for the next call.
    handler = (call, callback) => callback(null, answer(call.request.datacenter));
    await call(forward, 'again').done;
    expect(opens()).toBe(1);
  });

  test('an error keeps its code, details and trailers; metadata reaches the handler', async () => {
    let seen: Metadata | undefined;
    handler = (call, callback) => {
      seen = call.metadata;
      const trailers = new Metadata();
      trailers.set('consulate-router-answer', '1');
      callback(Object.assign(new Error('No path to datacenter'), { code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter', metadata: trailers }));
    };
    const { address } = await serve();
    const { forward } = connect(address);
    const metadata = new Metadata();
    metadata.set('consulate-datacenter', 'dc1');
    const failure = (await call(forward, 'dc9', { metadata }).done.catch((err: ServiceError) => err)) as ServiceError;
    expect(failure).toMatchObject({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter', message: '5 NOT_FOUND: No path to datacenter' });
    expect(failure.metadata.get('consulate-router-answer')).toEqual(['1']);
    expect(seen?.get('consulate-datacenter')).toEqual(['dc1']);
  });

  test('a call makes the same CLIENT and SERVER spans as a unary call, in one trace', async () => {
    const { address } = await serve();
    const { forward } = connect(address);
    const parent = telemetry.tracer.startSpan('caller');
    await context.with(trace.setSpan(context.active(), parent), () => call(forward, 'dc2').done);
    parent.end();
    const spans = exporter.getFinishedSpans();
    const clientSpan = spans.find((span) => span.kind === SpanKind.CLIENT)!;
    const serverSpan = spans.find((span) => span.kind === SpanKind.SERVER)!;
    expect(clientSpan.name).toBe('consulate.router.v1.ForwardService/Forward');
    expect(serverSpan.name).toBe('consulate.router.v1.ForwardService/Forward');
    expect(clientSpan.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(serverSpan.parentSpanContext?.spanId).toBe(clientSpan.spanContext().spanId);
    expect(serverSpan.spanContext().traceId).toBe(parent.spanContext().traceId);
    // The stream itself makes no span, not even when it ends.
    clients.splice(0).forEach((client) => client.close());
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(exporter.getFinishedSpans().filter((span) => span.name.endsWith('/Calls'))).toEqual([]);
  });

  test('the deadline ends the call on both sides; cancel does too; the stream lives on', async () => {
    const cancelled: string[] = [];
    let deadlineSeen: number | undefined;
    handler = (call) => {
      const deadline = call.getDeadline();
      deadlineSeen = deadline instanceof Date ? deadline.getTime() : deadline;
      call.on('cancelled', () => cancelled.push(call.request.datacenter));
    };
    const { address } = await serve();
    const { forward, opens } = connect(address);
    const sentAt = Date.now();
    await expect(call(forward, 'slow', { timeoutMs: 200 }).done).rejects.toMatchObject({ code: GrpcStatus.DEADLINE_EXCEEDED });
    expect(deadlineSeen).toBeGreaterThanOrEqual(sentAt + 150);
    expect(deadlineSeen).toBeLessThanOrEqual(sentAt + 5_000);
    const hanging = call(forward, 'cancelled');
    await eventually('the handler to have the call', () => cancelled.length === 1);
    hanging.cancel();
    await expect(hanging.done).rejects.toMatchObject({ code: GrpcStatus.CANCELLED, details: 'Cancelled on client' });
    await eventually('both calls cancelled at the server', () => cancelled.length === 2);
    expect(cancelled.sort()).toEqual(['cancelled', 'slow']);
    handler = (call, callback) => callback(null, answer(call.request.datacenter));
    await call(forward, 'after').done;
    expect(opens()).toBe(1);
  });

  test('a server without Calls gets unary calls, from then on; cancelling one cancels the unary call', async () => {
    const { address } = await serve({ callStream: false });
    const { forward, opens } = connect(address);
    expect((await Promise.all([call(forward, 'a').done, call(forward, 'b').done])).map((response) => response.path[0])).toEqual(['a', 'b']);
    expect((await call(forward, 'c').done).path).toEqual(['c']);
    expect(opens()).toBe(1);
    let cancelled = false;
    handler = (c) => c.on('cancelled', () => (cancelled = true));
    const hanging = call(forward, 'hangs');
    await new Promise((resolve) => setTimeout(resolve, 100));
    hanging.cancel();
    await expect(hanging.done).rejects.toMatchObject({ code: GrpcStatus.CANCELLED });
    await eventually('the server to see the call cancelled', () => cancelled);
  });

  test('nothing listening: the call fails as never sent (grpc-js "No connection established")', async () => {
    const { server, address } = await serve();
    servers.splice(servers.indexOf(server), 1);
    await server.shutdown();
    const { forward } = connect(address);
    await expect(call(forward, 'dc2').done).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: expect.stringContaining('No connection established') });
  });

  test('a broken connection fails the calls on it; the next call opens a new stream', async () => {
    handler = () => undefined; // never answers
    const first = await serve({ graceMs: 50 });
    const port = Number(first.address.split(':')[1]);
    const { forward, opens } = connect(first.address);
    const lost = call(forward, 'lost');
    await eventually('the stream to open', () => opens() === 1);
    // The grace passes with the call unanswered: the server cuts the connection.
    servers.splice(servers.indexOf(first.server), 1);
    await first.server.shutdown();
    await expect(lost.done).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    handler = (call, callback) => callback(null, answer(call.request.datacenter));
    await serve({ port });
    // grpc-js may fail a call fast while its channel reconnects (as it does unary calls): try again.
    const back = await eventually('a call to the restarted server', () => call(forward, 'back').done.catch(() => undefined));
    expect(back.path).toEqual(['back']);
    expect(opens()).toBeGreaterThanOrEqual(2);
  });

  test('a graceful shutdown answers the calls in flight, is not held up by the stream, and runs no new call', async () => {
    let release: (() => void) | undefined;
    let ran = 0;
    handler = (call, callback) => {
      ran++;
      release = () => callback(null, answer(call.request.datacenter));
    };
    const { server, address } = await serve();
    const { forward } = connect(address);
    const inFlight = call(forward, 'in-flight');
    await eventually('the handler to have the call', () => release);
    servers.splice(servers.indexOf(server), 1);
    const stopped = server.shutdown();
    // Sent while the server drains: refused unrun, sent again on a new stream, which finds no server.
    const late = call(forward, 'late').done.catch((err: ServiceError) => err);
    release!();
    expect((await inFlight.done).path).toEqual(['in-flight']);
    expect(await late).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: expect.stringContaining('No connection established') });
    // A 60 s grace: the test's own timeout fails it if the idle stream held the shutdown up.
    await stopped;
    expect(ran).toBe(1);
    expect(logged.join('')).not.toContain('calls still running after the shutdown grace period');
  });

  test('a cancel goes to the stream its call is on, even after the client moved to a new one', async () => {
    let cancelled = false;
    let arrived = 0;
    handler = (call) => {
      arrived++;
      call.on('cancelled', () => (cancelled = true));
    };
    const { server, address } = await serve();
    const { forward, opens } = connect(address);
    const first = call(forward, 'first');
    const firstEnded = first.done.catch((err: ServiceError) => err);
    await eventually('the first call to arrive', () => arrived === 1);
    servers.splice(servers.indexOf(server), 1);
    const stopped = server.shutdown();
    // Refused by the draining server: the client drops this stream and sends it on a new one.
    const second = call(forward, 'second').done.catch((err: ServiceError) => err);
    expect(await second).toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    expect(opens()).toBeGreaterThanOrEqual(2);
    // The first call is still on the first stream: its cancel must reach the server there, or the
    // handler never learns of it and the shutdown waits out its 60 s grace (this test's timeout).
    first.cancel();
    expect(await firstEnded).toMatchObject({ code: GrpcStatus.CANCELLED });
    await eventually('the server to see the call cancelled', () => cancelled);
    await stopped;
  });

  test('an answer over the message limit fails alone; the stream and the other calls go on', async () => {
    handler = (call, callback) => {
      const body = call.request.datacenter === 'huge' ? Buffer.alloc(5 * 1024 * 1024, 0x61) : Buffer.from('small');
      callback(null, { response: { status: 200, headers: {}, body }, path: [call.request.datacenter] });
    };
    const { address } = await serve();
    const { forward, opens } = connect(address);
    const [huge, small] = await Promise.all([call(forward, 'huge').done.catch((err: ServiceError) => err), call(forward, 'small').done]);
    expect(huge).toMatchObject({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: expect.stringMatching(/^Sent message larger than max/) });
    expect(small.path).toEqual(['small']);
    expect((await call(forward, 'after').done).path).toEqual(['after']);
    expect(opens()).toBe(1);
  });

  test('a request over the message limit fails before it is sent, and not synchronously', async () => {
    const { address } = await serve();
    const { forward, opens } = connect(address);
    let returned = false;
    const failed = new Promise<ServiceError>((resolve) => {
      forward({ datacenter: 'x'.repeat(5 * 1024 * 1024) }, new Metadata(), { deadline: Date.now() + 5_000 }, (err) => {
        expect(returned).toBe(true);
        resolve(err!);
      });
      returned = true;
    });
    expect(await failed).toMatchObject({ code: GrpcStatus.RESOURCE_EXHAUSTED });
    expect(opens()).toBe(0);
  });

  test("the server's deadline answers the call (DEADLINE_EXCEEDED) as it cancels it", async () => {
    handler = () => undefined;
    const { address } = await serve();
    const { raw } = connect(address);
    const stream = raw.calls();
    const answers: Array<{ id: bigint; code: number }> = [];
    stream.on('error', () => undefined);
    stream.on('data', (frame: AnswerFrame) => answers.push(...frameAnswers(frame)));
    stream.write({ call: { id: 7n, method: ForwardServiceService.forward.path, message: Buffer.from(ForwardRequest.encode({ datacenter: 'dc2' }).finish()), metadata: {}, timeoutMs: 100n, cancel: false }, calls: [] });
    await eventually('the answer', () => answers.length === 1);
    expect(answers).toEqual([{ id: 7n, code: GrpcStatus.DEADLINE_EXCEEDED, details: 'Deadline exceeded', message: Buffer.alloc(0), trailers: {} }]);
    stream.end();
  });

  test("a handler's error whose code is not a gRPC status (a Node error's 'ECONNRESET') reaches the caller as UNKNOWN, as grpc-js sends it", async () => {
    handler = (_call, callback) => callback(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) as never);
    const { address } = await serve();
    const { forward } = connect(address);
    await expect(call(forward, 'dc2').done).rejects.toMatchObject({ code: GrpcStatus.UNKNOWN, details: 'socket hang up' });
  });

  test('metadata grpc-js refuses fails that call (INVALID_ARGUMENT), never the process; the stream goes on', async () => {
    const { address } = await serve();
    const { raw } = connect(address);
    const stream = raw.calls();
    const answers: Array<{ id: bigint; code: number; details: string }> = [];
    stream.on('error', () => undefined);
    stream.on('data', (frame: AnswerFrame) => answers.push(...frameAnswers(frame)));
    const request = Buffer.from(ForwardRequest.encode({ datacenter: 'dc2' }).finish());
    const frame = (id: bigint, metadata: Record<string, string>) => ({ call: { id, method: ForwardServiceService.forward.path, message: request, metadata, timeoutMs: 5_000n, cancel: false }, calls: [] });
    stream.write(frame(1n, { 'A B': 'x' }));
    stream.write(frame(2n, { 'trace-bin': 'x' }));
    stream.write(frame(3n, { ok: 'caf\u00e9' }));
    stream.write(frame(4n, { ok: 'fine' }));
    await eventually('four answers', () => answers.length === 4);
    expect(answers.map(({ id, code }) => [id, code])).toEqual([
      [1n, GrpcStatus.INVALID_ARGUMENT],
      [2n, GrpcStatus.INVALID_ARGUMENT],
      [3n, GrpcStatus.INVALID_ARGUMENT],
      [4n, GrpcStatus.OK],
    ]);
    stream.end();
  });

  test('retire(): the calls in flight finish, then the stream ends', async () => {
    let release: (() => void) | undefined;
    handler = (call, callback) => {
      release = () => callback(null, answer(call.request.datacenter));
    };
    const { address } = await serve();
    const { calls, forward } = connect(address);
    const inFlight = call(forward, 'in-flight');
    await eventually('the handler to have the call', () => release);
    let retired = false;
    calls.retire(() => (retired = true));
    expect(retired).toBe(false);
    release!();
    expect((await inFlight.done).path).toEqual(['in-flight']);
    expect(retired).toBe(true);
    await expect(call(forward, 'later').done).rejects.toMatchObject({ code: GrpcStatus.CANCELLED });
  });

  test('frames of several calls and answers only with a client that says it reads them (BATCH_HEADER); one a frame otherwise', async () => {
    const { address } = await serve();
    const { raw } = connect(address);
    const request = Buffer.from(ForwardRequest.encode({ datacenter: 'dc2' }).finish());
    const call = (id: bigint) => ({ id, method: ForwardServiceService.forward.path, message: request, metadata: {}, timeoutMs: 5_000n, cancel: false });
    const run = async (headers: Metadata) => {
      const stream = raw.calls(headers);
      const frames: AnswerFrame[] = [];
      let echoed = false;
      stream.on('metadata', (metadata: Metadata) => (echoed = metadata.get(BATCH_HEADER).length > 0));
      stream.on('error', () => undefined);
      stream.on('data', (frame: AnswerFrame) => frames.push(frame));
      // Three calls in one frame: a server of this version reads them whatever the header says.
      stream.write({ calls: [call(1n), call(2n), call(3n)] });
      await eventually('three answers', () => frames.flatMap(frameAnswers).length === 3);
      stream.end();
      return { echoed, answersPerFrame: frames.map((frame) => frameAnswers(frame).length) };
    };
    const batched = new Metadata();
    batched.set(BATCH_HEADER, '1');
    const withHeader = await run(batched);
    expect(withHeader.echoed).toBe(true);
    const without = await run(new Metadata());
    expect(without).toEqual({ echoed: false, answersPerFrame: [1, 1, 1] });
    // The handler answers each call on its own turn here; a frame holds what one turn has ready.
    expect(withHeader.answersPerFrame.reduce((a, b) => a + b, 0)).toBe(3);
  });

  test('bad frames: an unknown method, a request that does not decode, a repeated id', async () => {
    const { address } = await serve();
    const { raw } = connect(address);
    const stream = raw.calls();
    const answers: Array<{ id: bigint; code: number; details: string }> = [];
    const ended = new Promise<{ code: number; details: string }>((resolve) => stream.on('status', resolve));
    stream.on('error', () => undefined);
    stream.on('data', (frame: AnswerFrame) => answers.push(...frameAnswers(frame)));
    const frame = (id: bigint, method: string, message: Buffer) => ({ call: { id, method, message, metadata: {}, timeoutMs: 5_000n, cancel: false }, calls: [] });
    stream.write(frame(1n, '/consulate.router.v1.ForwardService/Nope', Buffer.alloc(0)));
    stream.write(frame(2n, '/consulate.router.v1.ForwardService/Forward', Buffer.from([0x0a, 0xff, 0xff])));
    stream.write(frame(3n, '/consulate.router.v1.ForwardService/Forward', Buffer.from(ForwardRequest.encode({ datacenter: 'dc2' }).finish())));
    await eventually('three answers', () => answers.length === 3);
    expect(answers.map(({ id, code }) => [id, code])).toEqual([
      [1n, GrpcStatus.UNIMPLEMENTED],
      [2n, GrpcStatus.INTERNAL],
      [3n, GrpcStatus.OK],
    ]);
    expect(answers[0].details).toBe('The server does not implement the method /consulate.router.v1.ForwardService/Nope');
    expect(answers[1].details).toBe('Error deserializing request');
    // An id in flight used again ends the stream.
    handler = () => undefined;
    stream.write(frame(4n, '/consulate.router.v1.ForwardService/Forward', Buffer.alloc(0)));
    stream.write(frame(4n, '/consulate.router.v1.ForwardService/Forward', Buffer.alloc(0)));
    expect(await ended).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: 'call 4 is already in flight on this stream' });
  });
});

/**
 * A stream that stops taking frames (a stalled connection): what the client hands it would reach
 * the server whenever the connection recovers, so calls wait in the client instead, and a call
 * given up meanwhile is never written. A fake stream stands in for grpc-js's: "full" is
 * MAX_BUFFERED_FRAMES frames not yet taken by the connection.
 */
describe('a Calls stream that is full', () => {
  class FakeStream extends EventEmitter {
    readonly frames: CallFrame[] = [];
    full = false;
    /** A server that reads frames of several calls echoes BATCH_HEADER in its headers, once the stream opens. */
    constructor(batching: boolean) {
      super();
      const headers = new Metadata();
      if (batching) headers.set(BATCH_HEADER, '1');
      process.nextTick(() => this.emit('metadata', headers));
    }
    /** Frames not taken by the connection yet: a full stream has MAX_BUFFERED_FRAMES. */
    get writableLength(): number {
      return this.full ? MAX_BUFFERED_FRAMES : 0;
    }
    write(frame: CallFrame): boolean {
      this.frames.push(frame);
      return !this.full;
    }
    cancel(): void {
      this.emit('status', { code: GrpcStatus.CANCELLED, details: 'Cancelled on client', metadata: new Metadata() });
    }
  }

  function fakeClient(maxMessageBytes?: number, batching = true): { calls: CallStreamClient; stream: () => FakeStream; forward: UnaryMethod<ForwardRequest, ForwardResponse> } {
    let stream: FakeStream | undefined;
    const calls = new CallStreamClient({
      client: { makeBidiStreamRequest: (() => (stream = new FakeStream(batching))) as unknown as ForwardServiceClient['makeBidiStreamRequest'] },
      tracer: trace.getTracer('test'),
      peer: 'fake:1',
      maxMessageBytes,
    });
    const forward = calls.method(ForwardServiceService.forward, () => {
      throw new Error('no unary fallback here');
    });
    return { calls, stream: () => stream!, forward };
  }

  const request: ForwardRequest = { datacenter: 'dc2', request: undefined, path: [], maxHops: 0, transit: false } as unknown as ForwardRequest;
  const framesCalls = (frame: CallFrame) => frame;
  const sentIds = (stream: FakeStream) => stream.frames.flatMap(framesCalls).filter((call) => !call.cancel).map((call) => Number(call.id));

  it('writes the calls started in one turn in one frame', async () => {
    const { calls, stream, forward } = fakeClient();
    for (let i = 0; i < 5; i++) forward(request, new Metadata(), { deadline: Date.now() + 60_000 }, () => undefined);
    await turn();
    forward(request, new Metadata(), { deadline: Date.now() + 60_000 }, () => undefined);
    await turn();
    expect(stream().frames.map((frame) => framesCalls(frame).map((call) => Number(call.id)))).toEqual([[1, 2, 3, 4, 5], [6]]);
    // One call alone goes as `call`, as to a server that reads only that (call-frames.test.ts).
    expect(stream().frames[1]).toMatchObject([{ id: 6 }]);
    calls.close();
  });

  it('writes one call a frame to a server that does not say it reads more (an older version)', async () => {
    const { calls, stream, forward } = fakeClient(undefined, false);
    for (let i = 0; i < 3; i++) forward(request, new Metadata(), { deadline: Date.now() + 60_000 }, () => undefined);
    await turn();
    expect(stream().frames.map((frame) => frame.map((call) => call.id))).toEqual([[1], [2], [3]]);
    calls.close();
  });

  it('splits one turn\'s calls into frames that fit the message size limit, in order', async () => {
    // 16 KiB of the limit is kept for each frame's own fields: about 4 KiB is left for the calls.
    const { calls, stream, forward } = fakeClient(20 * 1024);
    const big: ForwardRequest = { ...request, datacenter: 'x'.repeat(1_000) };
    for (let i = 0; i < 10; i++) forward(big, new Metadata(), { deadline: Date.now() + 60_000 }, () => undefined);
    await turn();
    const frames = stream().frames.map((frame) => framesCalls(frame).map((call) => Number(call.id)));
    expect(frames.flat()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(frames.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...frames.map((ids) => ids.length))).toBeLessThanOrEqual(4);
    calls.close();
  });

  it('queues calls once the stream is backed up, never sends those given up meanwhile, and sends the rest on drain, in order', async () => {
    const { calls, stream, forward } = fakeClient();
    const results: Array<ServiceError | null> = [];
    const start = (timeoutMs: number) => forward(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err) => results.push(err));
    start(60_000);
    await turn();
    stream().full = true;
    start(60_000); // written: it is the write that found the stream full
    await turn();
    start(20); // queued, then its deadline passes
    const cancelled = start(60_000); // queued, then cancelled
    start(60_000); // queued
    const given = start(60_000); // started, and given up before the end of the turn: never written
    given.cancel();
    await turn();
    expect(sentIds(stream())).toEqual([1, 2]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    cancelled.cancel();
    expect(results.map((err) => err?.code)).toEqual([GrpcStatus.CANCELLED, GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.CANCELLED]);
    stream().full = false;
    stream().emit('drain');
    await turn();
    expect(sentIds(stream())).toEqual([1, 2, 5]);
    // No cancel frame for calls the server never saw.
    expect(stream().frames.flatMap(framesCalls).filter((call) => call.cancel)).toEqual([]);
    calls.close();
  });

  it('fails queued calls as never sent when the stream fails, and written ones with its status', async () => {
    const { calls, stream, forward } = fakeClient();
    const results = new Map<number, ServiceError | null>();
    const start = (n: number) => forward(request, new Metadata(), { deadline: Date.now() + 60_000 }, (err) => results.set(n, err));
    start(1);
    await turn();
    stream().full = true;
    start(2);
    await turn();
    start(3);
    await turn();
    stream().emit('status', { code: GrpcStatus.UNAVAILABLE, details: 'Connection dropped', metadata: new Metadata() });
    stream().emit('end');
    await eventually('all three settled', async () => results.size === 3 || undefined, 2_000);
    expect(results.get(1)).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: 'Connection dropped' });
    expect(results.get(2)).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: 'Connection dropped' });
    expect(results.get(3)).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: expect.stringMatching(/^No connection established: the call stream ended before the call was sent/) });
    calls.close();
  });
});
