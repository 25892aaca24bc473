/**
 * The read-then-watch loop that mirrors a key prefix of the consensus store (prefix-watch.ts),
 * against a real consensus server started in this process
 * (test/harness/in-process-consensus.ts), so revisions and watch events are the
 * consensus role's own. A TCP relay in front of it stands for a second server that crashes.
 */
import { AddressInfo, Socket, connect, createServer } from 'node:net';

import { trace } from '@opentelemetry/api';

import { InProcessConsensus, startInProcessConsensus } from '../../test/harness/in-process-consensus';
import { Event_EventType } from '../gen/consulate/consensus/v1/watch';
import { ConsensusClient } from './consensus-client';
import { createLogger } from './log';
import { PrefixWatch } from './prefix-watch';

const tracer = trace.getTracer('test');

let consensus: InProcessConsensus;
let client: ConsensusClient;
const opened: { stop(): void }[] = [];

beforeEach(async () => {
  consensus = await startInProcessConsensus();
  client = new ConsensusClient([consensus.address], tracer);
});

afterEach(async () => {
  for (const one of opened.splice(0)) one.stop();
  client.close();
  await consensus.stop();
});

// ---------------------------------------------------------------------------------------------
// Builders

interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly address?: string;
  readonly attempt?: number;
}

/**
 * A PrefixWatch of `/a/` into a plain map, recording each snapshot and watch message. Its reads go
 * through `reads`, which can hold them back (`gate`), fail the next few (`failNext`), or run
 * something between a read's answer and the watch that follows it (`afterRead`).
 */
function openWatch(addresses = [consensus.address]) {
  const mirror = new Map<string, string>();
  const snapshots: { keys: string[]; revision: number }[] = [];
  const messages: { keys: string[]; revision: number }[] = [];
  const logs: LogLine[] = [];
  const reads: { gate: Promise<void>; failNext: number; count: number; afterRead?: () => Promise<void> } = { gate: Promise.resolve(), failNext: 0, count: 0 };
  const kv = async (...args: Parameters<ConsensusClient['kv']>) => {
    reads.count++;
    await reads.gate;
    if (reads.failNext > 0) {
      reads.failNext--;
      throw new Error('no leader yet');
    }
    const response = await client.kv(...args);
    await reads.afterRead?.();
    return response;
  };
  const watch = new PrefixWatch({
    consensus: { kv: kv as ConsensusClient['kv'] },
    addresses,
    tracer,
    logger: createLogger({ role: 'test', datacenter: 'dc1', node: 'test-1', level: 'info', destination: { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) } }),
    key: Buffer.from('/a/'),
    rangeEnd: Buffer.from('/a0'),
    texts: {
      loaded: (revision, keys) => ({ fields: { revision, keys }, message: `loaded ${keys} keys at revision ${revision}` }),
      cannotLoad: (message) => `cannot load /a/: ${message}`,
      watchEnded: (address, reason) => `watch on ${address} ended (${reason})`,
    },
    onSnapshot: (kvs, revision) => {
      mirror.clear();
      for (const kv of kvs) mirror.set(kv.key.toString(), kv.value.toString());
      snapshots.push({ keys: kvs.map((kv) => kv.key.toString()), revision });
    },
    onEvents: (events, revision) => {
      for (const event of events) {
        if (event.kv === undefined) continue;
        if (event.type === Event_EventType.EVENT_TYPE_PUT) mirror.set(event.kv.key.toString(), event.kv.value.toString());
        else mirror.delete(event.kv.key.toString());
      }
      messages.push({ keys: events.map((event) => event.kv?.key.toString() ?? ''), revision });
    },
  });
  opened.push(watch);
  return { watch, mirror, snapshots, messages, logs, reads };
}

async function put(key: string, value = 'x'): Promise<number> {
  const response = await client.kv('put', { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: true });
  return Number(response.header?.revision ?? 0n);
}

async function remove(key: string): Promise<number> {
  const response = await client.kv('deleteRange', { key: Buffer.from(key), rangeEnd: Buffer.alloc(0), prevKv: false }, { timeoutMs: 5_000, idempotent: true });
  return Number(response.header?.revision ?? 0n);
}

/** Polls `condition` until it holds; the mirror follows the store through a watch, not at once. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * A TCP relay to `target`, standing for a second consensus server: `cut` resets its connections
 * as a crashed server would. (stopListener would not do: its shutdown leaves open streams running,
 * since grpc-js's forceShutdown destroys only the sessions it tracks, none with channelz off.)
 */
async function relayTo(target: string): Promise<{ address: string; cut(): void }> {
  const sockets = new Set<Socket>();
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const server = createServer((inbound) => {
    const outbound = connect(port, host);
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relay = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut() {
      server.close();
      for (const socket of sockets) socket.resetAndDestroy();
    },
  };
  opened.push({ stop: () => relay.cut() });
  return relay;
}

/** A gate for the watch's reads, open once `release` is called. */
function held(): { gate: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { gate, release };
}

// ---------------------------------------------------------------------------------------------

describe('start', () => {
  test('loads the prefix at one revision, then follows it from the revision after, and nothing outside it', async () => {
    const loadedAt = await put('/a/1', 'one');
    await put('/b/1');
    const { watch, mirror, snapshots, messages, logs } = openWatch();

    await watch.start();
    expect(snapshots).toEqual([{ keys: ['/a/1'], revision: loadedAt + 1 }]);
    expect(logs.map((line) => line.msg)).toEqual([`loaded 1 keys at revision ${loadedAt + 1}`]);
    expect(watch.lastContactMs).toBeGreaterThan(0);

    await put('/b/2');
    const putAt = await put('/a/2', 'two');
    const deletedAt = await remove('/a/1');
    await eventually(() => !mirror.has('/a/1'), 'the delete is mirrored');
    expect(Object.fromEntries(mirror)).toEqual({ '/a/2': 'two' });
    const withEvents = messages.filter((message) => message.keys.length > 0);
    expect(withEvents.flatMap((message) => message.keys)).toEqual(['/a/2', '/a/1']);
    expect(withEvents.map((message) => message.revision)).toEqual(withEvents.length === 1 ? [deletedAt] : [putAt, deletedAt]);
  });

  test('tries a failed read again after a backoff, and resolves once one succeeds', async () => {
    await put('/a/1');
    const { watch, snapshots, logs, reads } = openWatch();
    reads.failNext = 2;

    const started = Date.now();
    await watch.start();
    // 200 ms after the first failure, 400 ms after the second: RETRY_MIN_MS doubled each time.
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    expect(snapshots.map((snapshot) => snapshot.keys)).toEqual([['/a/1']]);
    expect(logs.filter((line) => line.level === 'warn').map((line) => [line.attempt, line.msg])).toEqual([
      [1, 'cannot load /a/: no leader yet'],
      [2, 'cannot load /a/: no leader yet'],
    ]);
  });

  test('stop ends the retries: start resolves with nothing loaded', async () => {
    const { watch, snapshots, reads } = openWatch();
    reads.failNext = Number.MAX_SAFE_INTEGER;
    setTimeout(() => watch.stop(), 50);
    await watch.start();
    expect(snapshots).toEqual([]);
    expect(watch.lastContactMs).toBe(0);
  });
});

describe('a broken watch', () => {
  test('is replaced by a fresh read and a new watch on the next server', async () => {
    const first = await relayTo(consensus.address);
    const { watch, mirror, snapshots, logs, reads } = openWatch([first.address, consensus.address]);
    await watch.start();
    await put('/a/1');
    await eventually(() => mirror.has('/a/1'), 'the first watch delivers');

    // Hold the reload's read until a write has landed while no watch was open: only the fresh
    // read can bring it.
    const reload = held();
    reads.gate = reload.gate;
    first.cut();
    await eventually(() => logs.some((line) => line.level === 'warn'), 'the break is logged');
    const missedAt = await put('/a/missed');
    reload.release();

    await eventually(() => snapshots.length === 2, 'the prefix is read again');
    expect(snapshots[1].keys).toEqual(['/a/1', '/a/missed']);
    expect(snapshots[1].revision).toBeGreaterThanOrEqual(missedAt);
    expect(logs.filter((line) => line.level === 'warn')).toEqual([expect.objectContaining({ address: first.address, msg: expect.stringContaining(`watch on ${first.address} ended (`) })]);

    // The new watch, on the server still up, follows on from the fresh read.
    const contact = watch.lastContactMs;
    await new Promise((resolve) => setTimeout(resolve, 5));
    await put('/a/after');
    await eventually(() => mirror.has('/a/after'), 'the new watch delivers');
    expect(watch.lastContactMs).toBeGreaterThan(contact);
    expect(snapshots).toHaveLength(2);
  });
});

describe('a compacted revision', () => {
  test('a watch refused as compacted (OUT_OF_RANGE, etcd\'s text) is replaced by a fresh read and a new watch', async () => {
    await put('/a/1', 'one');
    const { watch, mirror, snapshots, logs, reads } = openWatch();
    // Between the first read and its watch, the store moves on and is compacted past the read:
    // the watch from the read's revision + 1 asks for history that is gone.
    let compactedTo = 0;
    reads.afterRead = async () => {
      reads.afterRead = undefined;
      await put('/a/1', 'two');
      compactedTo = await put('/a/2', 'new');
      await client.kv('compact', { revision: BigInt(compactedTo) }, { timeoutMs: 5_000, idempotent: true });
    };

    await watch.start();
    expect(snapshots[0].revision).toBeLessThan(compactedTo);
    await eventually(() => snapshots.length === 2, 'the prefix is read again');
    expect(snapshots[1].revision).toBeGreaterThanOrEqual(compactedTo);
    expect(logs.filter((line) => line.level === 'warn').map((line) => line.msg)).toEqual([
      expect.stringMatching(/^watch on .* ended \(11 OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted \(revisions up to \d+ were compacted/),
    ]);
    expect(Object.fromEntries(mirror)).toEqual({ '/a/1': 'two', '/a/2': 'new' });

    // The new watch follows on from the fresh read.
    await put('/a/3', 'three');
    await eventually(() => mirror.get('/a/3') === 'three', 'the new watch delivers');
    expect(snapshots).toHaveLength(2);
  });
});

describe('readNow', () => {
  test('applies a read only when it is newer than what the owner has loaded', async () => {
    const { watch, snapshots } = openWatch();
    await watch.start();
    const loaded = snapshots[0].revision;

    // Writes outside the prefix move the store's revision; none arrives as an event.
    await put('/b/1');
    await watch.readNow(loaded);
    expect(snapshots.map((snapshot) => snapshot.revision)).toEqual([loaded, loaded + 1]);

    await watch.readNow(loaded + 1);
    await watch.readNow(loaded + 5);
    expect(snapshots).toHaveLength(2);
  });

  test('rejects when the read fails, and the watch goes on', async () => {
    const { watch, mirror, reads } = openWatch();
    await watch.start();
    reads.failNext = 1;
    await expect(watch.readNow(0)).rejects.toThrow('no leader yet');
    await put('/a/1');
    await eventually(() => mirror.has('/a/1'), 'the watch still delivers');
  });
});
