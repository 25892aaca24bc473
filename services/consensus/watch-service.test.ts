/**
 * The Watch adapter over real gRPC (a consensus server in this process,
 * test/harness/in-process-consensus.ts): a watch that cannot be served ends with its status, as
 * etcd's does: from a compacted revision, OUT_OF_RANGE with etcd's text and the compact revision
 * in a trailer. A client must hear it: one left waiting on an open stream never reads again (the
 * catalog's view would stay stale; prefix-watch.test.ts shows it recovering once told).
 */
import { ClientReadableStream, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

import { WatchResponse } from '../gen/consulate/consensus/v1/watch';
import { useWatchFixture } from '../../test/harness/watch-fixture';

const fixture = useWatchFixture();
const { put, compact } = fixture;

/** How the stream ended (within `timeoutMs`), and how many events it delivered before. */
function ending(stream: ClientReadableStream<WatchResponse>, timeoutMs = 5_000): Promise<{ error: ServiceError | undefined; events: number }> {
  let events = 0;
  stream.on('data', (response: WatchResponse) => (events += response.events.length));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stream.cancel();
      resolve({ error: undefined, events });
    }, timeoutMs);
    stream.on('error', (error: ServiceError) => {
      clearTimeout(timer);
      resolve({ error, events });
    });
  });
}

test('a watch from a compacted revision ends at once with OUT_OF_RANGE, etcd\'s text and the compact revision', async () => {
  for (let i = 0; i < 5; i++) await put('/a/x', String(i));
  await compact(4);
  const stream = fixture.watchClient.watch({ key: Buffer.from('/a/'), rangeEnd: Buffer.from('/a0'), startRevision: 1n, prevKv: false });
  const { error, events } = await ending(stream);
  expect(events).toBe(0);
  expect(error?.code).toBe(GrpcStatus.OUT_OF_RANGE);
  expect(error?.details).toBe('etcdserver: mvcc: required revision has been compacted (revisions up to 4 were compacted (compact revision 4); watch from 5 or later)');
  expect(error?.metadata.get('consulate-compact-revision')).toEqual(['4']);
});

test('one revision reaches watchers of the same key, of a prefix and with prev_kv, each with the events it asked for', async () => {
  await put('/b/k', 'first');
  const events = (stream: ClientReadableStream<WatchResponse>, count: number) =>
    new Promise<WatchResponse[]>((resolve, reject) => {
      const got: WatchResponse[] = [];
      stream.on('data', (response: WatchResponse) => {
        got.push(response);
        if (got.length === count) {
          stream.cancel();
          resolve(got);
        }
      });
      stream.on('error', (error: ServiceError) => (error.code === GrpcStatus.CANCELLED ? undefined : reject(error)));
    });
  const plain = [0, 1, 2].map(() => fixture.watchClient.watch({ key: Buffer.from('/b/k'), rangeEnd: Buffer.alloc(0), startRevision: 0n, prevKv: false }));
  const withPrev = fixture.watchClient.watch({ key: Buffer.from('/b/k'), rangeEnd: Buffer.alloc(0), startRevision: 0n, prevKv: true });
  const prefix = fixture.watchClient.watch({ key: Buffer.from('/b/'), rangeEnd: Buffer.from('/b0'), startRevision: 0n, prevKv: false });
  const answers = Promise.all([...plain.map((s) => events(s, 2)), events(withPrev, 2), events(prefix, 3)]);
  await new Promise((resolve) => setTimeout(resolve, 300)); // the streams are registered
  const second = await put('/b/k', 'second');
  const other = await put('/b/other', 'x');
  const third = await put('/b/k', 'third');
  const [p1, p2, p3, prev, pre] = await answers;
  const shape = (responses: WatchResponse[]) => responses.map((r) => [Number(r.header?.revision), r.events.map((e) => [e.kv?.key.toString(), e.kv?.value.toString(), e.prevKv?.value.toString()])]);
  const exact = [[second, [['/b/k', 'second', undefined]]], [third, [['/b/k', 'third', undefined]]]];
  expect(shape(p1)).toEqual(exact);
  expect(shape(p2)).toEqual(exact);
  expect(shape(p3)).toEqual(exact);
  expect(shape(prev)).toEqual([[second, [['/b/k', 'second', 'first']]], [third, [['/b/k', 'third', 'second']]]]);
  expect(shape(pre)).toEqual([[second, [['/b/k', 'second', undefined]]], [other, [['/b/other', 'x', undefined]]], [third, [['/b/k', 'third', undefined]]]]);
});

test('puts applied together reach every watcher in revision order, each revision once', async () => {
  const collect = (stream: ClientReadableStream<WatchResponse>, events: number) =>
    new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      stream.on('data', (response: WatchResponse) => {
        for (const event of response.events) got.push(`${Number(response.header?.revision)}:${event.kv?.value.toString()}`);
        if (got.length >= events) {
          stream.cancel();
          resolve(got);
        }
      });
      stream.on('error', (error: ServiceError) => (error.code === GrpcStatus.CANCELLED ? undefined : reject(error)));
    });
  const streams = [0, 1, 2, 3].map(() => fixture.watchClient.watch({ key: Buffer.from('/c/k'), rangeEnd: Buffer.alloc(0), startRevision: 0n, prevKv: false }));
  const all = Promise.all(streams.map((stream) => collect(stream, 5)));
  await new Promise((resolve) => setTimeout(resolve, 300)); // the streams are registered
  const revisions = await Promise.all(['1', '2', '3', '4', '5'].map((value) => put('/c/k', value)));
  const expected = revisions.map((revision, i) => [revision, String(i + 1)] as const).sort((a, b) => a[0] - b[0]).map(([revision]) => revision);
  for (const got of await all) {
    expect(got.map((entry) => Number(entry.split(':')[0]))).toEqual(expected);
  }
});
