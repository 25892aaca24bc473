/**
 * The catalog's view kept in step with a real consensus server (in this process,
 * test/harness/in-process-consensus.ts) when the history it asks for is compacted, as the
 * consensus role's auto-compaction does: the watch is refused as compacted, the view is loaded
 * again from a fresh read and follows on from there; blocking queries parked on it wake.
 */
import { trace } from '@opentelemetry/api';

import { InProcessConsensus, startInProcessConsensus } from '../../../test/harness/in-process-consensus';
import { eventually } from '../../../test/harness/processes';
import { ConsensusClient } from '../../lib/consensus-client';
import { createLogger } from '../../lib/log';
import { keys } from './keys';
import { CatalogView } from './view';
import { ViewSync } from './view-sync';

const tracer = trace.getTracer('test');
let consensus: InProcessConsensus;
let client: ConsensusClient;
let sync: ViewSync | undefined;

beforeEach(async () => {
  consensus = await startInProcessConsensus();
  client = new ConsensusClient([consensus.address], tracer);
});

afterEach(async () => {
  sync?.stop();
  client.close();
  await consensus.stop();
});

async function put(key: string, value: string): Promise<number> {
  const response = await client.kv('put', { key: Buffer.from(key), value: Buffer.from(value), lease: 0n, prevKv: false }, { timeoutMs: 5_000, idempotent: true });
  return Number(response.header?.revision ?? 0n);
}


const valueOf = (view: CatalogView, key: string) => {
  const row = view.get(key);
  return row === undefined ? undefined : Buffer.from(row.value).toString();
};

test('a watch refused as compacted: the view is loaded again, wakes its blocking queries, and follows on', async () => {
  await put(keys.kv('web/config'), 'v1');
  // The view's reads go through here: after the first one, before its watch starts, the store
  // moves on and a compaction takes the revision the watch would start from.
  let afterFirstRead: (() => Promise<void>) | undefined;
  const consensusForView = {
    kv: async (...args: Parameters<ConsensusClient['kv']>) => {
      const response = await client.kv(...args);
      const hook = afterFirstRead;
      afterFirstRead = undefined;
      await hook?.();
      return response;
    },
  } as unknown as ConsensusClient;
  const lines: { level: string; msg: string }[] = [];
  const logger = createLogger({ role: 'catalog', datacenter: 'dc1', node: 'catalog-1', level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line) as { level: string; msg: string }) } });
  const view = new CatalogView();
  sync = new ViewSync(view, consensusForView, [consensus.address], tracer, logger);

  let compactedTo = 0;
  afterFirstRead = async () => {
    await put(keys.kv('web/config'), 'v2');
    compactedTo = await put(keys.kv('web/new'), 'n1');
    await client.kv('compact', { revision: BigInt(compactedTo) }, { timeoutMs: 5_000, idempotent: true });
  };
  await sync.start();
  const firstRevision = view.revision;
  expect(firstRevision).toBeLessThan(compactedTo);
  expect(valueOf(view, keys.kv('web/config'))).toBe('v1');

  // A blocking query parked on the KV table (Consul's ?index=) wakes when the view is reloaded.
  let woken = false;
  void view.waitForChange(['kvs'], view.index('kvs'), 30_000).then(() => (woken = true));
  await eventually('the view is loaded again', () => view.revision >= compactedTo);
  await eventually('the blocking query wakes', () => woken, 1_000);
  expect(valueOf(view, keys.kv('web/config'))).toBe('v2');
  expect(valueOf(view, keys.kv('web/new'))).toBe('n1');
  expect(lines.filter((line) => line.level === 'warn').map((line) => line.msg)).toEqual([expect.stringMatching(/^catalog watch on .* ended \(11 OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted/)]);

  // And the new watch follows the store from the fresh read.
  const putAt = await put(keys.kv('web/after'), 'a1');
  await eventually('the new watch delivers', () => view.revision >= putAt);
  expect(valueOf(view, keys.kv('web/after'))).toBe('a1');
});
