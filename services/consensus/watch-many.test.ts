/**
 * WatchService.WatchMany over real gRPC (a consensus server in this process): many watches on one
 * stream keep Watch's guarantees each, share one update where they saw the same events, and end
 * one at a time (refused, cancelled, compacted) with Watch's statuses while the others go on; and
 * a stream that cannot take more is not pulled until it drains (a stand-in call, so it is exact).
 */
import { EventEmitter } from 'node:events';

import { Client, ClientDuplexStream, ServerDuplexStream, ServiceError, credentials, status as GrpcStatus } from '@grpc/grpc-js';

import { WatchManyRequest, WatchManyResponse, WatchRequest, WatchUpdate } from '../gen/consulate/consensus/v1/watch';
import { useWatchFixture } from '../../test/harness/watch-fixture';
import { MAX_WATCHES_PER_STREAM, WATCH_MANY_FRAME_BYTES, WatchManyStream } from './watch-many';

const fixture = useWatchFixture();
const { put, compact } = fixture;

const onKey = (key: string, more: Partial<WatchRequest> = {}): WatchRequest => ({ key: Buffer.from(key), rangeEnd: Buffer.alloc(0), startRevision: 0n, prevKv: false, ...more });
const onPrefix = (prefix: string): WatchRequest => onKey(prefix, { rangeEnd: Buffer.from(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)) });

/** One WatchMany stream, with what each watch id got, in order, as short strings. */
class Watches {
  readonly stream: ClientDuplexStream<WatchManyRequest, WatchManyResponse>;
  readonly updates: WatchUpdate[] = [];
  readonly byId = new Map<bigint, string[]>();
  error: ServiceError | undefined;
  private waiters: (() => void)[] = [];

  constructor() {
    this.stream = fixture.watchClient.watchMany();
    this.stream.on('data', (response: WatchManyResponse) => {
      for (const update of response.updates) {
        this.updates.push(update);
        for (const id of update.watchIds) {
          let got = this.byId.get(id);
          if (got === undefined) this.byId.set(id, (got = []));
          const ended = update.ended && `${GrpcStatus[update.ended.code]}: ${update.ended.message}${update.ended.compactRevision > 0n ? ` @${update.ended.compactRevision}` : ''}`;
          if (update.created && ended) got.push(`refused ${ended}`);
          else if (update.created) got.push('created');
          for (const event of update.events) got.push(`${update.header?.revision}:${event.kv?.key.toString()}=${event.kv?.value.toString()}${event.prevKv ? `<${event.prevKv.value.toString()}` : ''}`);
          if (ended && !update.created) got.push(`ended ${ended}`);
        }
      }
      this.poke();
    });
    this.stream.on('error', (error: ServiceError) => {
      this.error = error;
      this.poke();
    });
  }

  create(id: number, request: WatchRequest): void {
    this.stream.write({ action: { $case: 'create', value: { watchId: BigInt(id), request } } });
  }

  cancel(id: number): void {
    this.stream.write({ action: { $case: 'cancel', value: { watchId: BigInt(id) } } });
  }

  got(id: number): string[] {
    return this.byId.get(BigInt(id)) ?? [];
  }

  async until(done: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(Object.fromEntries([...this.byId].map(([id, got]) => [String(id), got])))}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  private poke(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}

test('a hundred watches of one key on one stream: each gets every revision once, in order, and they share one update a revision', async () => {
  await put('/m/k', 'first');
  const w = new Watches();
  for (let id = 1; id <= 100; id++) w.create(id, onKey('/m/k'));
  w.create(101, onKey('/m/k', { prevKv: true }));
  w.create(102, onPrefix('/m/'));
  await w.until(() => [...Array(102).keys()].every((i) => w.got(i + 1)[0] === 'created'));
  const second = await put('/m/k', 'second');
  const other = await put('/m/other', 'x');
  const third = await put('/m/k', 'third');
  await w.until(() => w.got(100).length === 3 && w.got(101).length === 3 && w.got(102).length === 4);
  for (let id = 1; id <= 100; id++) expect(w.got(id)).toEqual(['created', `${second}:/m/k=second`, `${third}:/m/k=third`]);
  expect(w.got(101)).toEqual(['created', `${second}:/m/k=second<first`, `${third}:/m/k=third<second`]);
  expect(w.got(102)).toEqual(['created', `${second}:/m/k=second`, `${other}:/m/other=x`, `${third}:/m/k=third`]);
  // The key's watchers and the prefix's saw the same event of `second`: one update names all 101.
  const ofSecond = w.updates.filter((update) => update.events.length > 0 && Number(update.header?.revision) === second);
  expect(ofSecond.map((update) => update.watchIds.length).sort((a, b) => a - b)).toEqual([1, 101]);
  // Closing its side asks nothing more; the watches go on (etcd's too) until the call is cancelled.
  w.stream.end();
  const fourth = await put('/m/k', 'fourth');
  await w.until(() => w.got(100).length === 4);
  expect(w.got(1).at(-1)).toBe(`${fourth}:/m/k=fourth`);
  w.stream.cancel();
  await w.until(() => fixture.consensus.node.kv.watches.size === 0);
});

test('a watch from a past revision gets `created`, then its history, then what comes after, with nothing repeated', async () => {
  const r1 = await put('/h/k', 'one');
  const r2 = await put('/h/k', 'two');
  const w = new Watches();
  w.create(7, onKey('/h/k', { startRevision: BigInt(r1) }));
  await w.until(() => w.got(7).length === 3);
  const r3 = await put('/h/k', 'three');
  await w.until(() => w.got(7).length === 4);
  expect(w.got(7)).toEqual(['created', `${r1}:/h/k=one`, `${r2}:/h/k=two`, `${r3}:/h/k=three`]);
  w.stream.cancel();
});

test('puts applied together reach every watch in revision order, each once', async () => {
  const w = new Watches();
  for (let id = 1; id <= 4; id++) w.create(id, id % 2 === 0 ? onKey('/c/k') : onPrefix('/c/'));
  await w.until(() => [1, 2, 3, 4].every((id) => w.got(id).length === 1));
  const revisions = await Promise.all(['1', '2', '3', '4', '5'].map((value) => put('/c/k', value)));
  const expected = [...revisions].sort((a, b) => a - b);
  await w.until(() => [1, 2, 3, 4].every((id) => w.got(id).length === 6));
  for (let id = 1; id <= 4; id++) expect(w.got(id).slice(1).map((entry) => Number(entry.split(':')[0]))).toEqual(expected);
  w.stream.cancel();
});

test('a refused or cancelled watch ends alone with its status; its id can be used again; the others go on', async () => {
  for (let i = 0; i < 5; i++) await put('/e/x', String(i));
  await compact(4);
  const w = new Watches();
  w.create(1, onKey('/e/x'));
  w.create(0, onKey('/e/x'));
  w.create(1, onKey('/e/y'));
  w.create(2, onKey(''));
  w.create(3, onKey('/e/x', { startRevision: 2n }));
  w.create(4, onKey('/e/x'));
  await w.until(() => w.got(0).length === 1 && w.got(1).length === 2 && w.got(2).length === 1 && w.got(3).length === 1 && w.got(4).length === 1);
  expect(w.got(0)).toEqual(['refused INVALID_ARGUMENT: watch id 0 is reserved: pick a non-zero id']);
  // The second create of id 1 is refused; the watch open with id 1 goes on (its event below).
  expect(w.got(1)).toEqual(['created', 'refused ALREADY_EXISTS: watch id 1 is already open on this stream: pick another or cancel it first']);
  expect(w.got(2)[0]).toMatch(/^refused INVALID_ARGUMENT: etcdserver: key is not provided/);
  expect(w.got(3)).toEqual(['refused OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted (revisions up to 4 were compacted (compact revision 4); watch from 5 or later) @4']);
  w.cancel(4);
  await w.until(() => w.got(4).length === 2);
  expect(w.got(4)).toEqual(['created', 'ended OK: watch cancelled by the client']);
  w.create(4, onKey('/e/z'));
  await w.until(() => w.got(4).length === 3);
  const r = await put('/e/x', 'after');
  const z = await put('/e/z', 'zed');
  await w.until(() => w.got(1).length === 3 && w.got(4).length === 4);
  expect(w.got(1).slice(2)).toEqual([`${r}:/e/x=after`]);
  expect(w.got(4).slice(3)).toEqual([`${z}:/e/z=zed`]);
  expect(fixture.consensus.node.kv.watches.size).toBe(2);
  expect(w.error).toBeUndefined();
  w.stream.cancel();
  await w.until(() => w.error !== undefined);
  await w.until(() => fixture.consensus.node.kv.watches.size === 0);
});

test('a request with neither create nor cancel ends the stream with INVALID_ARGUMENT and frees its watches', async () => {
  const w = new Watches();
  w.create(1, onKey('/n/k'));
  await w.until(() => w.got(1).length === 1);
  w.stream.write({ action: undefined });
  await w.until(() => w.error !== undefined);
  expect(w.error?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  expect(w.error?.details).toBe('a WatchMany request needs a create or a cancel');
  expect(fixture.consensus.node.kv.watches.size).toBe(0);
});

/** A stand-in for grpc-js's server stream: takes `room` frames, then says it is full until drained. */
class FakeCall extends EventEmitter {
  readonly frames: WatchManyResponse[] = [];
  room = Infinity;
  /** Whether the stream reads requests (grpc-js's Readable side), as the server paused or resumed it. */
  paused = false;
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  write(frame: WatchManyResponse): boolean {
    this.frames.push(frame);
    return this.frames.length < this.room;
  }
  got(id: bigint): number[] {
    return this.frames.flatMap((frame) => frame.updates.filter((update) => update.watchIds.includes(id)).flatMap((update) => update.events.map((event) => Number(event.kv?.modRevision))));
  }
}

test('a stream that cannot take more is not pulled until it drains, and then every watch goes on in order', async () => {
  const call = new FakeCall();
  const stream = new WatchManyStream(fixture.consensus.node, call as unknown as ServerDuplexStream<WatchManyRequest, WatchManyResponse>);
  call.emit('data', { action: { $case: 'create', value: { watchId: 1n, request: onKey('/b/k') } } });
  call.emit('data', { action: { $case: 'create', value: { watchId: 2n, request: onPrefix('/b/') } } });
  await new Promise((resolve) => setImmediate(resolve));
  expect(call.frames.length).toBe(1); // the two `created`
  call.room = 2;
  const first = await put('/b/k', '1');
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(call.frames.length).toBe(2);
  const more = [await put('/b/k', '2'), await put('/b/other', '3'), await put('/b/k', '4')];
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(call.frames.length).toBe(2); // full: nothing pulled, the hub holds the events
  expect(call.paused).toBe(true); // and no requests read, each of which could queue an answer
  expect(fixture.consensus.node.kv.watches.size).toBe(2);
  call.room = Infinity;
  call.emit('drain');
  expect(call.paused).toBe(false);
  await new Promise((resolve) => setImmediate(resolve));
  expect(call.got(1n)).toEqual([first, more[0], more[2]]);
  expect(call.got(2n)).toEqual([first, ...more]);
  expect(stream.size).toBe(2);
  call.emit('cancelled');
  expect(stream.size).toBe(0);
  expect(fixture.consensus.node.kv.watches.size).toBe(0);
});

test('bytes that are not a WatchManyRequest end the stream with INTERNAL; its watches are freed and the server goes on', async () => {
  const w = new Watches();
  w.create(1, onKey('/z/k'));
  await w.until(() => w.got(1).length === 1);
  const raw = new Client(fixture.consensus.address, credentials.createInsecure());
  const identity = (bytes: Buffer) => bytes;
  const hostile = raw.makeBidiStreamRequest('/consulate.consensus.v1.WatchService/WatchMany', identity, identity);
  const ended = new Promise<ServiceError>((resolve) => hostile.on('error', resolve));
  let created = false;
  hostile.on('data', () => (created = true));
  hostile.write(Buffer.from(WatchManyRequest.encode({ action: { $case: 'create', value: { watchId: 1n, request: onKey('/z/k') } } }).finish()));
  await w.until(() => created);
  expect(fixture.consensus.node.kv.watches.size).toBe(2);
  hostile.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])); // field 1, a length past the end
  const error = await ended;
  raw.close();
  expect(error.code).toBe(GrpcStatus.INTERNAL);
  expect(error.details).toMatch(/deserializ/i);
  await w.until(() => fixture.consensus.node.kv.watches.size === 1);
  const r = await put('/z/k', 'still here');
  await w.until(() => w.got(1).length === 2);
  expect(w.got(1)[1]).toBe(`${r}:/z/k=still here`);
  w.stream.cancel();
  await w.until(() => fixture.consensus.node.kv.watches.size === 0);
});

test(`a stream holds at most ${MAX_WATCHES_PER_STREAM} watches; the next is refused alone with RESOURCE_EXHAUSTED`, async () => {
  const call = new FakeCall();
  const stream = new WatchManyStream(fixture.consensus.node, call as unknown as ServerDuplexStream<WatchManyRequest, WatchManyResponse>);
  for (let id = 1; id <= MAX_WATCHES_PER_STREAM + 1; id++) call.emit('data', { action: { $case: 'create', value: { watchId: BigInt(id), request: onKey('/l/k') } } });
  await new Promise((resolve) => setImmediate(resolve));
  const updates = call.frames.flatMap((frame) => frame.updates);
  expect(updates.filter((update) => update.created && !update.ended).flatMap((update) => update.watchIds)).toHaveLength(MAX_WATCHES_PER_STREAM);
  const refused = updates.filter((update) => update.ended !== undefined);
  expect(refused.map((update) => [update.watchIds, update.ended?.code])).toEqual([[[BigInt(MAX_WATCHES_PER_STREAM + 1)], GrpcStatus.RESOURCE_EXHAUSTED]]);
  expect(stream.size).toBe(MAX_WATCHES_PER_STREAM);
  call.emit('cancelled');
  expect(fixture.consensus.node.kv.watches.size).toBe(0);
});

test(`events are cut into frames of about ${WATCH_MANY_FRAME_BYTES} bytes, whole revisions, each watch's in order`, async () => {
  const call = new FakeCall();
  new WatchManyStream(fixture.consensus.node, call as unknown as ServerDuplexStream<WatchManyRequest, WatchManyResponse>);
  call.emit('data', { action: { $case: 'create', value: { watchId: 1n, request: onKey('/f/k') } } });
  call.emit('data', { action: { $case: 'create', value: { watchId: 2n, request: onKey('/f/k', { prevKv: true }) } } });
  await new Promise((resolve) => setImmediate(resolve));
  call.room = call.frames.length; // full from now on: the puts' events wait in the hub
  const big = (i: number) => String(i).repeat(400 * 1024);
  const revisions: number[] = [];
  for (let i = 1; i <= 4; i++) revisions.push(await put('/f/k', big(i)));
  call.room = Infinity;
  call.emit('drain');
  await new Promise((resolve) => setImmediate(resolve));
  expect(call.got(1n)).toEqual(revisions);
  expect(call.got(2n)).toEqual(revisions);
  // 4 x 400 KiB for watch 1 and 4 x 800 KiB for watch 2 (with the previous values): cut into frames,
  // none past the budget by more than one revision's events.
  const sizes = call.frames.slice(1).map((frame) => WatchManyResponse.encode(frame).finish().length);
  expect(sizes.length).toBeGreaterThanOrEqual(4);
  for (const size of sizes) expect(size).toBeLessThan(WATCH_MANY_FRAME_BYTES + 900 * 1024);
  call.emit('cancelled');
});

test('a watch catching up that a compaction overtakes gets the events it was given, then ends with the compact revision', async () => {
  const value = 'v'.repeat(4096); // 1,000 events (one pull) make 4 MiB: more than one frame
  for (let i = 0; i < 12; i++) await Promise.all(Array.from({ length: 100 }, (_, j) => put(`/c/${i}-${j}`, value)));
  const last = await put('/c/last', value);
  const call = new FakeCall();
  new WatchManyStream(fixture.consensus.node, call as unknown as ServerDuplexStream<WatchManyRequest, WatchManyResponse>);
  call.room = 1; // the first frame fills it: the rest of the history stays in the hub
  call.emit('data', { action: { $case: 'create', value: { watchId: 9n, request: { ...onPrefix('/c/'), startRevision: 2n } } } });
  await new Promise((resolve) => setImmediate(resolve));
  const given = call.got(9n);
  expect(given.length).toBeGreaterThan(0);
  expect(given.length).toBeLessThan(last - 1); // still catching up
  await compact(last);
  await new Promise((resolve) => setTimeout(resolve, 50));
  call.room = Infinity;
  call.emit('drain');
  await new Promise((resolve) => setImmediate(resolve));
  const updates = call.frames.flatMap((frame) => frame.updates).filter((update) => update.watchIds.includes(9n));
  expect(updates[0].created).toBe(true);
  expect(updates.filter((update) => update.events.length > 0).map((update) => Number(update.header?.revision))).toEqual(given);
  const ended = updates.at(-1)!.ended!;
  expect([GrpcStatus[ended.code], ended.compactRevision]).toEqual(['OUT_OF_RANGE', BigInt(last)]);
  expect(fixture.consensus.node.kv.watches.size).toBe(0);
});
