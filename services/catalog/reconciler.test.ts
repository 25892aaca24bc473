// The reconciler's shell: gossip events in, catalog writes out (reference/consul-compat.md §4.7),
// with a scripted member stream, an in-memory catalog and a manual clock.
import { trace } from '@opentelemetry/api';

import { Member, MemberEvent, MemberEventType } from '../gen/consulate/gossip/v1/membership';
import { ManualClock } from '../lib/clock';
import { createLogger } from '../lib/log';
import { MemberWatchListener } from './gossip-client';
import { RECONCILER_DEFAULTS, Reconciler } from './reconciler';
import { CatalogEntry, ReconcileAction, consulService, serfHealthCheck } from './reconciler-decisions';
import { ApplyOutcome, ReconcilerStore } from './reconciler-store';
import { CatalogWriteError } from './state/catalog-writes';

const DC = 'dc1';
const logger = createLogger({ role: 'catalog', datacenter: DC, node: 'test', level: 'silent' });
const tracer = trace.getTracer('reconciler-test');

function member(name: string, status = 'alive', extra: { segment?: string; role?: string; dc?: string; address?: string; pool?: string } = {}): Member {
  const segment = extra.segment ?? 'alpha';
  return {
    name,
    address: extra.address ?? '127.0.1.101',
    port: 8301,
    tags: { role: extra.role ?? 'node', dc: extra.dc ?? DC, segment, id: nodeId(name) },
    status,
    statusCode: { alive: 1, leaving: 2, left: 3, failed: 4 }[status] ?? 0,
    segment: extra.pool ?? segment,
    incarnation: 1n,
  };
}

/** A stable UUID per node name. */
const ids = new Map<string, string>();
function nodeId(name: string): string {
  if (!ids.has(name)) ids.set(name, `00000000-0000-4000-8000-${String(ids.size + 1).padStart(12, '0')}`);
  return ids.get(name)!;
}

/** A write in one line: "register node-alpha-1". */
const described = (w: ReconcileAction) => `${w.kind} ${w.kind === 'register' ? w.node.Node : w.node}`;

const event = (type: keyof typeof MemberEventType, m?: Member): MemberEvent => ({ type: MemberEventType[type], member: m });

/** The catalog's rows, by lower-cased node name. */
class MemoryStore implements ReconcilerStore {
  readonly entries = new Map<string, CatalogEntry>();
  readonly writes: ReconcileAction[] = [];
  fence = 1n;
  failNext: Error | undefined;
  /** While set, writes wait for it (to hold a write in flight). */
  gate: Promise<void> | undefined;

  entry(node: string): CatalogEntry {
    return this.entries.get(node.toLowerCase()) ?? {};
  }

  serfHealthNodes(): string[] {
    return [...this.entries.values()].filter((e) => e.serfHealth !== undefined && e.node !== undefined).map((e) => e.node!.Node);
  }

  async catchUp(): Promise<void> {}

  async apply(node: string, decideOn: (entry: CatalogEntry) => ReconcileAction, fence: bigint): Promise<{ outcome: ApplyOutcome; action: ReconcileAction }> {
    await this.gate;
    if (this.failNext !== undefined) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    const action = decideOn(this.entry(node));
    if (fence !== this.fence) return { outcome: 'fenced', action };
    if (action.kind === 'none') return { outcome: 'unchanged', action };
    this.writes.push(action);
    const key = node.toLowerCase();
    if (action.kind === 'register') this.entries.set(key, { node: action.node, serfHealth: action.check, consulService: action.service });
    if (action.kind === 'mark-critical') this.entries.set(key, { ...this.entry(node), serfHealth: action.check });
    if (action.kind === 'deregister') this.entries.delete(key);
    return { outcome: 'applied', action };
  }

  /** A node registered by the reconciler earlier (node, serfHealth passing). */
  seed(m: Member, status: 'passing' | 'critical' = 'passing'): void {
    this.entries.set(m.name.toLowerCase(), {
      node: { ID: m.tags.id, Node: m.name, Address: m.address, Datacenter: DC, TaggedAddresses: {}, Meta: { 'consul-network-segment': m.tags.segment } },
      serfHealth: serfHealthCheck(m.name, status),
      consulService: m.tags.role === 'consul' ? consulService(m) : undefined,
    });
  }
}

class FakeGossip {
  listener: MemberWatchListener | undefined;
  watches = 0;
  cancelled = 0;
  listed: Member[] = [];

  async members(): Promise<Member[]> {
    return this.listed;
  }

  watchMembers(_segment: string, listener: MemberWatchListener) {
    this.watches++;
    this.listener = listener;
    return { cancel: () => this.cancelled++ };
  }

  /** The agent's stream: a snapshot of `members`, then SYNCED. */
  snapshot(members: Member[], agent = 'server-1:8320'): void {
    for (const m of members) this.listener!.onEvent(event('MEMBER_EVENT_TYPE_CURRENT', m), agent);
    this.listener!.onEvent(event('MEMBER_EVENT_TYPE_SYNCED'), agent);
  }

  emit(type: keyof typeof MemberEventType, m: Member, agent = 'server-1:8320'): void {
    this.listener!.onEvent(event(type, m), agent);
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

function setup() {
  const clock = new ManualClock(0);
  const store = new MemoryStore();
  const gossip = new FakeGossip();
  const leadership = { fence: 1n as bigint | undefined, lost: jest.fn() };
  const reconciler = new Reconciler({ datacenter: DC, ...RECONCILER_DEFAULTS }, gossip, store, leadership, clock, tracer, logger);
  return { clock, store, gossip, leadership, reconciler };
}

describe('the reconciler', () => {
  test('becoming active watches every segment and reconciles the snapshot in full (register, critical, deregister, reap)', async () => {
    const { store, gossip, reconciler } = setup();
    const alive = member('node-alpha-1');
    const beta = member('node-beta-1', 'alive', { segment: 'beta', address: '127.0.1.102' });
    const failed = member('node-alpha-2', 'failed');
    const left = member('node-alpha-3', 'left');
    const gone = member('node-gone-1');
    for (const m of [failed, left, gone]) store.seed(m);
    // Registered by a user, without serfHealth: not the reconciler's to reap.
    store.entries.set('external', { node: { ID: '', Node: 'external', Address: '10.0.0.9', Datacenter: DC, TaggedAddresses: {}, Meta: {} } });

    reconciler.activate();
    expect(gossip.watches).toBe(1);
    gossip.snapshot([alive, beta, failed, left]);
    await reconciler.idle();

    expect(store.writes.map(described)).toEqual([
      'register node-alpha-1',
      'register node-beta-1',
      'mark-critical node-alpha-2',
      'deregister node-alpha-3',
      'deregister node-gone-1',
    ]);
    expect(store.entry('node-beta-1').node?.Meta).toEqual({ 'consul-network-segment': 'beta' });
    expect(store.entry('node-alpha-2').serfHealth).toMatchObject({ Status: 'critical', Output: 'Agent not live or unreachable' });
    expect(store.entries.has('external')).toBe(true);
  });

  test('changes after the snapshot: join registers, failed marks critical, leave and reap deregister', async () => {
    const { store, gossip, reconciler } = setup();
    reconciler.activate();
    gossip.snapshot([]);
    await reconciler.idle();

    const a = member('node-alpha-1');
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', a);
    await reconciler.idle();
    expect(store.entry('node-alpha-1').serfHealth).toMatchObject({ Status: 'passing', Output: 'Agent alive and reachable' });

    gossip.emit('MEMBER_EVENT_TYPE_FAILED', { ...a, status: 'failed', statusCode: 4 });
    await reconciler.idle();
    expect(store.entry('node-alpha-1').serfHealth?.Status).toBe('critical');

    // It comes back: passing again.
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', a);
    await reconciler.idle();
    expect(store.entry('node-alpha-1').serfHealth?.Status).toBe('passing');

    gossip.emit('MEMBER_EVENT_TYPE_LEAVE', { ...a, status: 'left', statusCode: 3 });
    await reconciler.idle();
    expect(store.entries.has('node-alpha-1')).toBe(false);

    const b = member('node-alpha-2');
    store.seed(b, 'critical');
    gossip.emit('MEMBER_EVENT_TYPE_REAP', { ...b, status: 'failed', statusCode: 4 });
    await reconciler.idle();
    expect(store.entries.has('node-alpha-2')).toBe(false);
  });

  test('an update the catalog already agrees with writes nothing', async () => {
    const { store, gossip, reconciler } = setup();
    const a = member('node-alpha-1');
    store.seed(a);
    reconciler.activate();
    gossip.snapshot([a]);
    gossip.emit('MEMBER_EVENT_TYPE_UPDATE', a);
    await reconciler.idle();
    expect(store.writes).toEqual([]);
  });

  test('servers: the consul service on 8300, from the default pool only; other datacenters are ignored', async () => {
    const { store, gossip, reconciler } = setup();
    reconciler.activate();
    const server = member('server-1', 'alive', { role: 'consul', segment: '', address: '127.0.1.1' });
    gossip.snapshot([server, member('server-9', 'alive', { role: 'consul', dc: 'dc2', segment: '' })]);
    await reconciler.idle();
    expect(store.entry('server-1').consulService).toMatchObject({ Service: 'consul', Port: 8300 });
    expect(store.entries.has('server-9')).toBe(false);

    // The same server failing in segment alpha's pool only is not the server failing.
    gossip.emit('MEMBER_EVENT_TYPE_FAILED', { ...server, status: 'failed', statusCode: 4, segment: 'alpha', tags: { ...server.tags, segment: 'alpha' } });
    await reconciler.idle();
    expect(store.entry('server-1').serfHealth?.Status).toBe('passing');
  });

  test('changes to one member while a write is in flight collapse to its newest state', async () => {
    const { store, gossip, reconciler } = setup();
    reconciler.activate();
    gossip.snapshot([]);
    await reconciler.idle();
    let open: () => void = () => undefined;
    store.gate = new Promise((resolve) => (open = resolve));
    const a = member('node-alpha-1');
    const b = member('node-alpha-2');
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', a);
    await settle();
    // While a's write waits: b joins, fails and comes back; a leaves.
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', b);
    gossip.emit('MEMBER_EVENT_TYPE_FAILED', { ...b, status: 'failed', statusCode: 4 });
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', b);
    gossip.emit('MEMBER_EVENT_TYPE_LEAVE', { ...a, status: 'left', statusCode: 3 });
    store.gate = undefined;
    open();
    await reconciler.idle();
    expect(store.writes.map(described)).toEqual(['register node-alpha-1', 'register node-alpha-2', 'deregister node-alpha-1']);
    expect(store.entries.has('node-alpha-1')).toBe(false);
    expect(store.entry('node-alpha-2').serfHealth?.Status).toBe('passing');
  });

  test('every 60 s a full reconcile lists the members and repairs what was missed', async () => {
    const { clock, store, gossip, reconciler } = setup();
    const a = member('node-alpha-1');
    const b = member('node-beta-1', 'alive', { segment: 'beta' });
    reconciler.activate();
    gossip.snapshot([a, b]);
    await reconciler.idle();
    // Behind the reconciler's back: a's check flipped, b vanished from gossip (no event seen).
    store.seed(a, 'critical');
    gossip.listed = [a];
    clock.advance(RECONCILER_DEFAULTS.fullReconcileIntervalMs - 1);
    await reconciler.idle();
    expect(store.entry('node-alpha-1').serfHealth?.Status).toBe('critical');
    clock.advance(1);
    await settle();
    await reconciler.idle();
    expect(store.entry('node-alpha-1').serfHealth?.Status).toBe('passing');
    expect(store.entries.has('node-beta-1')).toBe(false);
  });

  test('a broken stream drops its half-read snapshot; the next stream is reconciled from its own', async () => {
    const { store, gossip, reconciler } = setup();
    reconciler.activate();
    gossip.emit('MEMBER_EVENT_TYPE_CURRENT', member('node-alpha-1'));
    gossip.listener!.onBroken('server-1:8320', 'connection reset', 'server-2:8320');
    gossip.snapshot([member('node-beta-1', 'alive', { segment: 'beta' })], 'server-2:8320');
    await reconciler.idle();
    expect(store.writes.map(described)).toEqual(['register node-beta-1']);
  });

  test('a write fenced off (the lock is on another lease) tells the election, which stands us down', async () => {
    const { store, gossip, leadership, reconciler } = setup();
    reconciler.activate();
    store.fence = 2n;
    gossip.snapshot([member('node-alpha-1')]);
    await reconciler.idle();
    expect(store.writes).toEqual([]);
    expect(leadership.lost).toHaveBeenCalledWith(expect.stringContaining('/sys/reconciler'));
  });

  test('standing by stops the watch, drops what waits and writes nothing more', async () => {
    const { store, gossip, reconciler } = setup();
    reconciler.activate();
    gossip.snapshot([]);
    await reconciler.idle();
    reconciler.deactivate();
    expect(gossip.cancelled).toBe(1);
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', member('node-alpha-1'));
    await reconciler.idle();
    expect(store.writes).toEqual([]);
  });

  test('a failed write is repaired by a full reconcile after a backoff', async () => {
    const { clock, store, gossip, reconciler } = setup();
    reconciler.activate();
    gossip.snapshot([]);
    await reconciler.idle();
    const a = member('node-alpha-1');
    store.failNext = new Error('No cluster leader');
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', a);
    await reconciler.idle();
    expect(store.entries.has('node-alpha-1')).toBe(false);
    gossip.listed = [a];
    clock.advance(RECONCILER_DEFAULTS.retryAfterFailureMs);
    await settle();
    await reconciler.idle();
    expect(store.entry('node-alpha-1').serfHealth?.Status).toBe('passing');
  });

  test("a write Consul's rules refuse is logged, not retried in a loop", async () => {
    const { clock, store, gossip, reconciler } = setup();
    reconciler.activate();
    gossip.snapshot([]);
    await reconciler.idle();
    store.failNext = new CatalogWriteError('failed inserting node: Error while renaming Node ID: ...');
    gossip.emit('MEMBER_EVENT_TYPE_JOIN', member('node-alpha-1'));
    await reconciler.idle();
    gossip.listed = [];
    clock.advance(RECONCILER_DEFAULTS.retryAfterFailureMs);
    await settle();
    await reconciler.idle();
    expect(clock.pending()).toBe(1); // only the periodic reconcile
  });
});
