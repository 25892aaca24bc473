import { lanDefaults, SwimConfig } from './config';
import { MemberInfo } from './types';
import { TinyNetwork } from './testing/tiny-network';

function cluster(n: number, overrides: Partial<SwimConfig> = {}): TinyNetwork {
  const net = new TinyNetwork();
  for (let i = 1; i <= n; i++) net.add(`node-${i}`, overrides);
  for (let i = 2; i <= n; i++) net.cores.get(`node-${i}`)!.join([net.addressOf('node-1')]);
  net.deliver();
  return net;
}

/** Four members, converged; then node-4 stops answering and everyone declares it dead (LAN: within 30 s). */
function clusterWithNode4Failed(overrides: Partial<SwimConfig> = {}): TinyNetwork {
  const net = cluster(4, overrides);
  net.run(2_000);
  net.down.add('node-4');
  net.run(30_000);
  return net;
}

describe('SWIM core', () => {
  test('a join through one member converges to everyone alive (push/pull, then gossip)', () => {
    const net = cluster(8);
    net.run(3_000);
    for (const name of net.cores.keys()) {
      expect(Object.values(net.view(name))).toHaveLength(8);
      expect(Object.values(net.view(name)).every((state) => state === 'alive')).toBe(true);
    }
  });

  test('a member that stops answering is suspected, then declared dead by everyone (SWIM §4, memberlist suspicion)', () => {
    const net = cluster(6);
    net.run(3_000);
    net.down.add('node-6');
    // LAN: probe 1 s; suspicion min 4 s (N ≤ 10), max 24 s without confirmations.
    net.run(30_000);
    for (const name of net.cores.keys()) if (name !== 'node-6') expect(net.view(name)['node-6']).toBe('dead');
    expect(net.events.some(({ event }) => event.type === 'member-failed' && event.member.name === 'node-6')).toBe(true);
  });

  test('a suspected member that is alive refutes with a higher incarnation (memberlist AliveNode_Refute)', () => {
    const net = cluster(4);
    net.run(2_000);
    const before = net.cores.get('node-4')!.localMember().incarnation;
    net.cores.get('node-4')!.receivePacket(net.addressOf('node-1'), [{ type: 'suspect', node: 'node-4', incarnation: before, from: 'node-1' }]);
    net.deliver();
    expect(net.cores.get('node-4')!.localMember().incarnation).toBe(before + 1);
    net.run(2_000);
    for (const name of net.cores.keys()) expect(net.view(name)['node-4']).toBe('alive');
  });

  test('a graceful leave is seen as left, not failed', () => {
    const net = cluster(5);
    net.run(2_000);
    net.cores.get('node-5')!.leave();
    net.run(500);
    expect(net.cores.get('node-5')!.leaveSent()).toBe(true);
    net.down.add('node-5');
    net.run(10_000);
    for (const name of net.cores.keys()) if (name !== 'node-5') expect(net.view(name)['node-5']).toBe('left');
  });

  test('a leaving member tells every live member directly, not only by gossip', () => {
    const net = cluster(6);
    net.run(2_000);
    const leaver = net.cores.get('node-6')!;
    leaver.ready();
    leaver.leave();
    expect(leaver.leaveSent()).toBe(true);
    const direct = leaver.ready().packets.filter((p) => p.messages.length === 2 && p.messages[0].type === 'leave-intent' && p.messages[1].type === 'dead');
    expect(direct.map((p) => p.to).sort()).toEqual(['node-1', 'node-2', 'node-3', 'node-4', 'node-5'].map((name) => net.addressOf(name)).sort());
  });

  test('a member that heard only the leave intent, and then fails the leaver, records a leave (Serf StatusLeaving)', () => {
    const net = cluster(5);
    net.run(2_000);
    const intent = { type: 'leave-intent' as const, node: 'node-5', ltime: 100 };
    net.cores.get('node-1')!.receivePacket(net.addressOf('node-5'), [intent]);
    // The leaver goes before its dead message reaches anyone: each member fails it, or hears of the failure.
    net.down.add('node-5');
    net.run(30_000);
    for (const name of net.cores.keys()) if (name !== 'node-5') expect({ name, state: net.view(name)['node-5'] }).toEqual({ name, state: 'left' });
    expect(net.events.filter(({ event }) => event.type === 'member-leave' && event.member.name === 'node-5').length).toBeGreaterThan(0);
  });

  test('a member we failed that a push/pull says left is left (Serf: left members travel as leave intents)', () => {
    const net = clusterWithNode4Failed();
    const core = net.cores.get('node-1')!;
    expect(net.view('node-1')['node-4']).toBe('dead');
    const gone = core.member('node-4')!;
    core.receiveStream(net.addressOf('node-2'), { join: false, memberLtime: 0, eventLtime: 0, members: [{ node: 'node-4', address: gone.address, incarnation: gone.incarnation, state: 'left', tags: gone.tags }] });
    expect(net.view('node-1')['node-4']).toBe('left');
    expect(core.ready().events).toContainEqual(expect.objectContaining({ type: 'member-leave', member: expect.objectContaining({ name: 'node-4' }) }));
  });

  test('a leave intent about a member that lives on is refuted: its later failure is a failure', () => {
    const net = cluster(4);
    net.run(2_000);
    net.cores.get('node-1')!.receivePacket(net.addressOf('node-2'), [{ type: 'leave-intent', node: 'node-4', ltime: 100 }]);
    net.deliver();
    // node-4 refutes (a higher incarnation), which clears the intent everywhere.
    net.run(3_000);
    expect(net.cores.get('node-4')!.localMember().incarnation).toBeGreaterThan(1);
    net.down.add('node-4');
    net.run(30_000);
    for (const name of net.cores.keys()) if (name !== 'node-4') expect({ name, state: net.view(name)['node-4'] }).toEqual({ name, state: 'dead' });
  });

  test('a leave intent that arrived after its refutation lapses: a failure more than 2 minutes later is a failure', () => {
    const net = cluster(4);
    net.run(2_000);
    const core = net.cores.get('node-1')!;
    // node-4 has refuted an intent (a newer incarnation), and only then does the old intent reach node-1.
    const refuted = core.member('node-4')!;
    core.receivePacket(net.addressOf('node-2'), [{ type: 'alive', node: 'node-4', address: refuted.address, incarnation: refuted.incarnation + 1, tags: refuted.tags }]);
    core.receivePacket(net.addressOf('node-2'), [{ type: 'leave-intent', node: 'node-4', ltime: 100 }]);
    net.deliver();
    net.run(125_000);
    net.down.add('node-4');
    net.run(30_000);
    expect(net.view('node-1')['node-4']).toBe('dead');
  });

  test('the merge delegate refuses a join and the joiner sees its text', () => {
    const net = new TinyNetwork();
    const segmentOf = (name: string) => (name === 'client' ? 'alpha' : 'beta');
    const validator = (mine: string) => (members: readonly MemberInfo[]) => {
      for (const m of members) if (m.tags.segment !== mine) return `Member '${m.name}' part of wrong segment '${m.tags.segment}' (expected '${mine}')`;
      return undefined;
    };
    net.add('server', { tags: { segment: segmentOf('server') }, validateMembers: validator('beta') });
    net.add('client', { tags: { segment: segmentOf('client') }, validateMembers: validator('alpha') });
    net.cores.get('client')!.join([net.addressOf('server')]);
    net.deliver();
    expect(net.outcomes.at(-1)!.outcome.error).toBe("Member 'server' part of wrong segment 'beta' (expected 'alpha')");
    net.run(5_000);
    expect(Object.keys(net.view('server'))).toEqual(['server']);
    expect(Object.keys(net.view('client'))).toEqual(['client']);
  });

  test('a user event reaches every member once, with its Lamport time', () => {
    const net = cluster(10);
    net.run(3_000);
    const fired = net.cores.get('node-3')!.fireUserEvent('deploy', new TextEncoder().encode('v1'));
    expect(fired).toEqual({ ltime: 0 });
    net.run(2_000);
    const got = net.events.filter(({ event }) => event.type === 'user-event');
    expect(got.map(({ node }) => node).sort()).toEqual([...net.cores.keys()].sort());
  });

  test('eager gossip: a user event reaches every member within a few ticks; with memberlist\'s timing it waits for gossip rounds', () => {
    const ticksToReachAll = (eagerGossip: boolean) => {
      const net = new TinyNetwork();
      for (let i = 1; i <= 10; i++) net.add(`node-${i}`, { eagerGossip });
      for (let i = 2; i <= 10; i++) net.cores.get(`node-${i}`)!.join([net.addressOf('node-1')]);
      net.deliver();
      net.run(3_000);
      const before = net.events.length;
      net.cores.get('node-3')!.fireUserEvent('deploy', new Uint8Array(0));
      for (let tick = 0; tick < 200; tick++) {
        net.deliver();
        if (net.events.slice(before).filter(({ event }) => event.type === 'user-event').length === 10) return tick;
        net.tick();
      }
      return Infinity;
    };
    // Delivery is instant in this network, so an eager round crosses every hop before the next tick.
    expect(ticksToReachAll(true)).toBeLessThanOrEqual(2);
    // A periodic round comes up to 200 ms (20 ticks) later, hop after hop.
    expect(ticksToReachAll(false)).toBeGreaterThan(2);
  });

  test('eager gossip: a burst of news larger than one round\'s packets leaves in the next ticks\' rounds, not the next periodic one', () => {
    const ticksUntilAllSent = (eagerGossip: boolean) => {
      // No periodic round within the window: only eager rounds (and probes) carry the burst.
      const net = cluster(4, { eagerGossip, gossipIntervalMs: 60_000 });
      net.run(3_000);
      const core = net.cores.get('node-1')!;
      core.ready();
      // 40 events of about 330 bytes as the tiny network sizes them (JSON): four fit in a
      // 1,400-byte packet, twelve in a round to three members.
      for (let i = 0; i < 40; i++) core.fireUserEvent(`e${i}`, new Uint8Array(40));
      const sent = new Set<string>();
      for (let tick = 0; tick < 20; tick++) {
        for (const packet of core.ready().packets) for (const m of packet.messages) if (m.type === 'user-event') sent.add(m.name);
        if (sent.size === 40) return tick;
        core.tick();
      }
      return Infinity;
    };
    expect(ticksUntilAllSent(true)).toBeLessThanOrEqual(5);
    expect(ticksUntilAllSent(false)).toBe(Infinity);
  });

  test('a member that takes a join in a pool of up to 32 tells every other live member of the newcomer directly, besides gossip', () => {
    const directTells = (poolSize: number) => {
      // Without eager gossip, ready() runs no gossip round: what leaves is the direct tells alone.
      const net = cluster(poolSize, { eagerGossip: false });
      net.run(3_000);
      const joined = net.cores.get('node-1')!;
      joined.ready();
      joined.receiveStream('10.0.9.9:8301', { join: true, members: [{ node: 'newcomer', address: '10.0.9.9:8301', incarnation: 1, state: 'alive', tags: {} }], memberLtime: 0, eventLtime: 0 });
      return joined
        .ready()
        .packets.filter((p) => p.messages.length === 1 && p.messages[0].type === 'alive' && p.messages[0].node === 'newcomer')
        .map((p) => p.to)
        .sort();
    };
    expect(directTells(4)).toEqual(['node-2', 'node-3', 'node-4'].map((name) => `10.0.0.${name.slice(5)}:8301`).sort());
    expect(directTells(33)).toEqual([]);
  });

  test('a user event over the size limit is refused with Serf\'s text', () => {
    const net = cluster(1);
    expect(net.cores.get('node-1')!.fireUserEvent('big', new Uint8Array(600))).toEqual({ error: 'user event exceeds configured limit of 512 bytes before encoding' });
  });

  test('force-leave turns a failed member into left everywhere; an unknown one is Consul\'s error', () => {
    const net = clusterWithNode4Failed();
    expect(net.view('node-1')['node-4']).toBe('dead');
    expect(net.cores.get('node-1')!.forceLeave('node-4')).toBeUndefined();
    net.run(2_000);
    for (const name of ['node-1', 'node-2', 'node-3']) expect(net.view(name)['node-4']).toBe('left');
    expect(net.cores.get('node-1')!.forceLeave('nobody')).toBe("agent: No node found with name 'nobody'");
  });

  test('a warm start shares the given records: the pool probes them at once, and a change replaces a record, never edits it', () => {
    const net = new TinyNetwork();
    for (let i = 1; i <= 6; i++) net.add(`node-${i}`);
    const records: MemberInfo[] = [...net.cores.keys()].map((name) => ({ name, address: net.addressOf(name), incarnation: 1, state: 'alive', tags: {}, stateChangeMs: 0 }));
    const frozen = records.map((record) => Object.freeze({ ...record }));
    for (const core of net.cores.values()) core.warmStart(frozen);
    const first = net.cores.get('node-1')!;
    expect(first.liveMembers()).toBe(6);
    expect(first.member('node-2')).toBe(frozen[1]);
    // Nothing to disseminate and nothing to report: the pool is as it would be long after the joins.
    expect(first.pendingBroadcasts()).toBe(0);
    expect(first.ready().events).toEqual([]);
    const before = net.events.length;
    net.run(2_000);
    const after = net.events.slice(before);
    expect(after.filter(({ event }) => event.type !== 'log' && event.type !== 'ping-complete')).toEqual([]);
    expect(after.some(({ node, event }) => node === 'node-1' && event.type === 'ping-complete')).toBe(true);
    // A failure changes every core's view through new records; the shared ones stay as they were.
    net.down.add('node-6');
    net.run(30_000);
    for (const name of ['node-1', 'node-2', 'node-3', 'node-4', 'node-5']) expect(net.view(name)['node-6']).toBe('dead');
    expect(frozen[5].state).toBe('alive');
    // Only before the core has run.
    expect(() => first.warmStart(frozen)).toThrow('warmStart is for a core that has not started');
  });

  test('force-leave tells every live member directly, not only by gossip', () => {
    // Without eager rounds, so that the only packets out at once are the direct ones.
    const net = clusterWithNode4Failed({ eagerGossip: false });
    const core = net.cores.get('node-1')!;
    core.ready();
    expect(core.forceLeave('node-4')).toBeUndefined();
    const direct = core.ready().packets.filter((p) => p.messages.some((m) => m.type === 'leave-intent' && m.node === 'node-4'));
    expect(direct.map((p) => p.to).sort()).toEqual(['node-2', 'node-3'].map((name) => net.addressOf(name)).sort());
  });

  test('force-leave -prune forgets a failed member at once, with a reap event', () => {
    const net = clusterWithNode4Failed();
    const core = net.cores.get('node-1')!;
    expect(net.view('node-1')['node-4']).toBe('dead');
    core.ready();
    expect(core.forceLeave('node-4', true)).toBeUndefined();
    expect(core.member('node-4')).toBeUndefined();
    expect(core.ready().events).toContainEqual(expect.objectContaining({ type: 'member-reap', member: expect.objectContaining({ name: 'node-4' }) }));
  });

  test('a failed member that comes back is alive again (the reconnector and refutation)', () => {
    const net = clusterWithNode4Failed();
    net.down.delete('node-4');
    net.run(lanDefaults().pushPullIntervalMs * 3);
    for (const name of net.cores.keys()) expect(net.view(name)['node-4']).toBe('alive');
  });
});

describe('the TCP ping (memberlist\'s fallback probe, and a refusal ending the probe early)', () => {
  /** When `observer` first saw `target` suspect, on its clock (ms), ticking the network one tick at a time. */
  function firstSuspicionMs(net: TinyNetwork, observer: string, target: string, limitMs: number): number {
    const core = net.cores.get(observer)!;
    for (let ms = 0; ms < limitMs; ms += 10) {
      net.tick();
      if (net.events.some(({ node, event }) => node === observer && event.type === 'member-suspect' && event.member.name === target)) return core.now();
    }
    throw new Error(`${observer} did not suspect ${target} within ${limitMs} ms`);
  }

  test('it leaves with the indirect pings, at the probe timeout, with the probe\'s seqNo and the rest of the period', () => {
    const net = cluster(3);
    net.run(2_000);
    net.down.add('node-3');
    const prober = net.cores.get('node-1')!;
    const lastPing = new Map<string, { atMs: number; seqNo: number }>();
    for (let i = 0; i < 300; i++) {
      prober.tick();
      const ready = prober.ready();
      for (const packet of ready.packets) for (const m of packet.messages) if (m.type === 'ping') lastPing.set(packet.to, { atMs: prober.now(), seqNo: m.seqNo });
      if (ready.tcpPings.length === 0) continue;
      const direct = lastPing.get(net.addressOf('node-3'))!;
      expect(ready.tcpPings).toEqual([{ to: net.addressOf('node-3'), ping: { type: 'ping', seqNo: direct.seqNo, node: 'node-3' }, timeoutMs: lanDefaults().probeIntervalMs - lanDefaults().probeTimeoutMs }]);
      expect(prober.now() - direct.atMs).toBe(lanDefaults().probeTimeoutMs);
      const indirect = ready.packets.flatMap((p) => p.messages.filter((m) => m.type === 'indirect-ping').map((m) => ({ to: p.to, message: m })));
      expect(indirect).toEqual([{ to: net.addressOf('node-2'), message: expect.objectContaining({ seqNo: direct.seqNo, target: 'node-3' }) }]);
      return;
    }
    throw new Error('no TCP ping in 3 s');
  });

  test('none leaves with tcpPings off (memberlist\'s DisableTcpPings)', () => {
    const net = cluster(2, { tcpPings: false });
    net.run(2_000);
    net.down.add('node-2');
    const prober = net.cores.get('node-1')!;
    for (let i = 0; i < 300; i++) {
      prober.tick();
      expect(prober.ready().tcpPings).toEqual([]);
    }
  });

  test('a refused TCP ping suspects the member at the probe timeout, half a period before memberlist would, and costs no health', () => {
    const suspectedAt = (suspectOnRefusal: boolean) => {
      const net = cluster(4, { suspectOnRefusal });
      net.run(2_000);
      net.down.add('node-4');
      const at = firstSuspicionMs(net, 'node-1', 'node-4', 20_000);
      // The helpers' nacks for the ended probe arrive after it: they count neither way.
      expect(net.cores.get('node-1')!.healthScore()).toBe(0);
      return at;
    };
    // The same seeds, so the same probe order: only the refusal differs.
    expect(suspectedAt(false) - suspectedAt(true)).toBe(lanDefaults().probeIntervalMs - lanDefaults().probeTimeoutMs);
  });

  test('a member whose datagrams are lost but whose TCP answers is never suspected, and the prober says why; without the TCP ping it is', () => {
    const suspicionsOfNode4 = (tcpPings: boolean) => {
      const net = cluster(4, { tcpPings });
      net.run(2_000);
      net.udpCut.add('node-4');
      net.run(30_000);
      const warned = net.events.some(({ event }) => event.type === 'log' && /^Was able to connect to node-4 over TCP but UDP probes failed, network may be misconfigured$/.test(event.message));
      return { suspicions: net.events.filter(({ event }) => event.type === 'member-suspect' && event.member.name === 'node-4').length, warned };
    };
    expect(suspicionsOfNode4(true)).toEqual({ suspicions: 0, warned: true });
    expect(suspicionsOfNode4(false).suspicions).toBeGreaterThan(0);
  });

  test('an outcome for a probe that is over, or no answer at all, changes nothing before the end of the period', () => {
    const net = cluster(2);
    net.run(2_000);
    const prober = net.cores.get('node-1')!;
    prober.tcpPingCompleted(999_999, 'refused');
    net.deliver();
    expect(net.view('node-1')['node-2']).toBe('alive');
    // The TCP ping hangs (a lost host refuses nothing): the member is suspected at the end of the period, as memberlist does.
    net.down.add('node-2');
    let tcp: { seqNo: number; atMs: number } | undefined;
    let direct = 0;
    for (let i = 0; i < 300 && tcp === undefined; i++) {
      prober.tick();
      const ready = prober.ready();
      if (ready.packets.some((p) => p.messages.some((m) => m.type === 'ping'))) direct = prober.now();
      if (ready.tcpPings.length > 0) tcp = { seqNo: ready.tcpPings[0].ping.seqNo, atMs: prober.now() };
    }
    prober.tcpPingCompleted(tcp!.seqNo, 'no-answer');
    let suspectedAt: number | undefined;
    for (let i = 0; i < 100 && suspectedAt === undefined; i++) {
      prober.tick();
      if (prober.ready().events.some((e) => e.type === 'member-suspect')) suspectedAt = prober.now();
    }
    expect(suspectedAt! - direct).toBe(lanDefaults().probeIntervalMs);
  });

  test('a TCP ping is acked, with our coordinate payload, only when it names us (or no one)', () => {
    const net = cluster(1, { ackPayload: () => Uint8Array.of(9, 9) });
    const core = net.cores.get('node-1')!;
    expect(core.answerTcpPing({ type: 'ping', seqNo: 7, node: 'node-1' })).toEqual({ type: 'ack', seqNo: 7, payload: Uint8Array.of(9, 9) });
    expect(core.answerTcpPing({ type: 'ping', seqNo: 8, node: '' })).toEqual({ type: 'ack', seqNo: 8, payload: Uint8Array.of(9, 9) });
    expect(core.answerTcpPing({ type: 'ping', seqNo: 9, node: 'node-7' })).toBeUndefined();
  });
});
