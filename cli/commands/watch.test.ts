// `consulate watch` as command/watch/watch.go, against the catalog's real endpoints in-process:
// without a child the result is printed once as json.MarshalIndent prints the Go api's structs,
// and the command exits; with one, the child gets each change's JSON on stdin and CONSUL_INDEX.
import { EventEmitter } from 'node:events';

import { realTiming } from '../lock-session';
import { ServedCatalog, captureIo, serveCatalog } from '../testing/served-catalog';
import { eventIdToIndex } from '../../services/catalog/user-events';
import { makeWatchCommand, watchParams } from './watch';

let catalog: ServedCatalog;
let signals: EventEmitter;

beforeEach(async () => {
  catalog = await serveCatalog();
  signals = new EventEmitter();
});

afterEach(() => catalog.close());

const watch = makeWatchCommand(() => ({ signals, timing: realTiming, now: () => new Date(0) }));

function start(args: string[]) {
  const { io, out } = captureIo();
  const exited = watch.run([`-http-addr=${catalog.base}`, ...args], io);
  return { out, exited };
}

async function until(probe: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('without a child: the current result, printed once', () => {
  test('an absent key prints null; a present one api.KVPair with 4-space indent, its uint64 Flags exact', async () => {
    let run = start(['-type=key', '-key=app/config']);
    expect(await run.exited).toBe(0);
    expect(run.out.stdout).toBe('null\n');

    await catalog.call('PUT', '/v1/kv/app/config?flags=3304740253564472344', 'a<b&c');
    const [entry] = (await catalog.call('GET', '/v1/kv/app/config')).json<{ ModifyIndex: number }[]>();
    run = start(['-type=key', '-key=app/config']);
    expect(await run.exited).toBe(0);
    expect(run.out.stdout).toBe(
      [
        '{',
        '    "Key": "app/config",',
        `    "CreateIndex": ${entry.ModifyIndex},`,
        `    "ModifyIndex": ${entry.ModifyIndex},`,
        '    "LockIndex": 0,',
        '    "Flags": 3304740253564472344,',
        `    "Value": "${Buffer.from('a<b&c').toString('base64')}",`,
        '    "Session": ""',
        '}',
        '',
      ].join('\n'),
    );
  });

  test('keyprefix: the pairs under the prefix; services: the name → tags map, keys sorted', async () => {
    await catalog.call('PUT', '/v1/kv/cfg/b', 'B');
    await catalog.call('PUT', '/v1/kv/cfg/a', '');
    let run = start(['-type=keyprefix', '-prefix=cfg/']);
    expect(await run.exited).toBe(0);
    const pairs = JSON.parse(run.out.stdout) as { Key: string; Value: string | null }[];
    expect(pairs.map((p) => [p.Key, p.Value])).toEqual([
      ['cfg/a', null],
      ['cfg/b', 'Qg=='],
    ]);

    for (const [node, service] of [
      ['n2', 'web'],
      ['n1', 'api'],
    ]) {
      await catalog.call('PUT', '/v1/catalog/register', { Node: node, Address: '10.0.0.2', Service: { Service: service, Tags: ['v1'], Port: 80 } });
    }
    run = start(['-type=services']);
    expect(await run.exited).toBe(0);
    expect(run.out.stdout).toBe('{\n    "api": [\n        "v1"\n    ],\n    "web": [\n        "v1"\n    ]\n}\n');

    run = start(['-type=service', '-service=web', '-passingonly=true']);
    expect(await run.exited).toBe(0);
    const [instance] = JSON.parse(run.out.stdout) as { Node: Record<string, unknown>; Service: Record<string, unknown>; Checks: unknown[] }[];
    expect(Object.keys(instance)).toEqual(['Node', 'Service', 'Checks']);
    expect(Object.keys(instance.Node)).toEqual(['ID', 'Node', 'Address', 'Datacenter', 'TaggedAddresses', 'Meta', 'CreateIndex', 'ModifyIndex']);
    expect(instance.Service).toMatchObject({ ID: 'web', Service: 'web', Tags: ['v1'], Port: 80, Weights: { Passing: 1, Warning: 1 } });

    run = start(['-type=nodes']);
    expect(await run.exited).toBe(0);
    expect((JSON.parse(run.out.stdout) as { Node: string }[]).map((n) => n.Node).sort()).toEqual(['catalog-1', 'n1', 'n2']);
  });
});

describe('with a child', () => {
  test('runs on the first result and on every change, the JSON on stdin and CONSUL_INDEX set; SIGTERM ends it with 0', async () => {
    const run = start(['-type=key', '-key=watched', 'echo index=$CONSUL_INDEX; cat']);
    await until(() => run.out.stdout.includes('null'));
    expect(run.out.stdout).toMatch(/^index=\d+\nnull\n$/);
    await catalog.call('PUT', '/v1/kv/watched', 'v1');
    await until(() => run.out.stdout.includes('"Key":"watched"'));
    const [entry] = (await catalog.call('GET', '/v1/kv/watched')).json<{ ModifyIndex: number }[]>();
    expect(run.out.stdout.split('\n').slice(2, 4)).toEqual([`index=${entry.ModifyIndex}`, `{"Key":"watched","CreateIndex":${entry.ModifyIndex},"ModifyIndex":${entry.ModifyIndex},"LockIndex":0,"Flags":0,"Value":"djE=","Session":""}`]);
    signals.emit('SIGTERM');
    expect(await run.exited).toBe(0);
    // The in-process server still holds the abandoned blocking read: wake it.
    await catalog.call('PUT', '/v1/kv/watched', 'v2');
  });

  test('event: only the new events each time, CONSUL_INDEX the last event ID folded to a uint64 (exact past 2^53)', async () => {
    const run = start(['-type=event', '-name=deploy', 'echo index=$CONSUL_INDEX; cat']);
    await until(() => run.out.stdout.includes('[]'));
    expect(run.out.stdout).toBe('index=1\n[]\n');
    const fire = async (payload: string) => (await catalog.call('PUT', '/v1/event/fire/deploy', payload)).json<{ ID: string }>().ID;
    const first = await fire('v1');
    await until(() => run.out.stdout.includes(first));
    const second = await fire('v2');
    await until(() => run.out.stdout.includes(second));
    const lines = run.out.stdout.trim().split('\n');
    expect(lines.slice(2, 4)).toEqual([`index=${eventIdToIndex(first)}`, expect.stringMatching(new RegExp(`^\\[\\{"ID":"${first}","Name":"deploy","Payload":"djE=","NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":\\d+\\}\\]$`))]);
    expect(lines[4]).toBe(`index=${eventIdToIndex(second)}`);
    expect(JSON.parse(lines[5]).map((event: { ID: string }) => event.ID)).toEqual([second]);
    signals.emit('SIGTERM');
    expect(await run.exited).toBe(0);
    // The in-process server still holds the abandoned blocking list: wake it.
    await fire('v3');
  });

  test('a failing child stops the watch: Error executing handler, exit 1', async () => {
    const run = start(['-type=key', '-key=x', 'exit 4']);
    expect(await run.exited).toBe(1);
    expect(run.out.stderr).toBe('Error executing handler: exit status 4\n');
  });
});

describe('arguments', () => {
  test('no -type: the text, then the help; exit 1', async () => {
    const run = start([]);
    expect(await run.exited).toBe(1);
    expect(run.out.stderr).toMatch(/^Watch type must be specified\n\nUsage: consulate watch/);
  });

  test("parameter errors in Consul's words", async () => {
    expect(watchParams(new Map([['passingonly', 'maybe']]))).toEqual({ error: 'Failed to parse passingonly flag: strconv.ParseBool: parsing "maybe": invalid syntax' });
    let run = start(['-type=key']);
    expect([await run.exited, run.out.stderr]).toEqual([1, 'Must specify a single key to watch\n']);
    run = start(['-type=nodes', '-key=k']);
    expect([await run.exited, run.out.stderr]).toEqual([1, 'Invalid parameters: [key]\n']);
  });
});
