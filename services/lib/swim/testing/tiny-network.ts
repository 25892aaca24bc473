/**
 * A lossless, instant, in-process network of SWIM cores for the core's unit tests: every tick,
 * each member ticks, then packets and streams are delivered until none are left. Faults here are
 * only "down" members (they neither tick nor receive; their host refuses connections to them) and
 * members whose datagrams are lost both ways ("udpCut": their streams and TCP pings still get
 * through); the seeded simulator in test/sim/swim has the rest (loss, delay, partitions, slow
 * members).
 */
import { SWIM_DEFAULTS, swimConfig, SwimConfigInput } from '../config';
import { Message } from '../messages';
import { Swim } from '../swim';
import { MemberInfo, StreamOutcome, SwimEvent } from '../types';
import { assertQuietTick } from './quiet-tick';

/** The cores' tick: swimConfig's default. */
const TICK_MS = SWIM_DEFAULTS.tickMs;

export class TinyNetwork {
  readonly cores = new Map<string, Swim>();
  private readonly byAddress = new Map<string, string>();
  readonly down = new Set<string>();
  readonly udpCut = new Set<string>();
  readonly events: { node: string; event: SwimEvent }[] = [];
  readonly outcomes: { node: string; outcome: StreamOutcome }[] = [];
  private seed = 1;

  add(name: string, overrides: Partial<SwimConfigInput> = {}): Swim {
    const address = `10.0.0.${this.cores.size + 1}:8301`;
    let state = this.seed++ * 7919;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 2 ** 32;
    };
    const core = new Swim(swimConfig({ name, address, random, messageSize: (m: Message) => JSON.stringify(m).length, ...overrides }));
    this.cores.set(name, core);
    this.byAddress.set(address, name);
    this.deliver();
    return core;
  }

  addressOf(name: string): string {
    return this.cores.get(name)!.localMember().address;
  }

  /**
   * Ticks every member `times` times. A tick the core said had nothing due (`msUntilDue`), which
   * the real shell sleeps through, is checked to leave it nothing to send or report.
   */
  tick(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const [name, core] of this.cores) {
        if (this.down.has(name)) continue;
        const quiet = core.msUntilDue() > TICK_MS;
        core.tick();
        if (quiet) assertQuietTick(name, core.now(), core.ready());
      }
      this.deliver();
    }
  }

  /** Ticks for `ms` of the first core's clock. */
  run(ms: number): void {
    this.tick(Math.ceil(ms / TICK_MS));
  }

  view(name: string): Record<string, MemberInfo['state']> {
    return Object.fromEntries(this.cores.get(name)!.members().map((m) => [m.name, m.state]));
  }

  deliver(): void {
    for (let round = 0; round < 1000; round++) {
      let moved = false;
      for (const [name, core] of this.cores) {
        if (this.down.has(name)) continue;
        const ready = core.ready();
        for (const event of ready.events) this.events.push({ node: name, event });
        const from = core.localMember().address;
        for (const packet of ready.packets) {
          const to = this.byAddress.get(packet.to);
          if (to === undefined || this.down.has(to) || this.udpCut.has(to) || this.udpCut.has(name)) continue;
          this.cores.get(to)!.receivePacket(from, packet.messages);
          moved = true;
        }
        for (const stream of ready.streams) {
          const to = this.byAddress.get(stream.to);
          const outcome =
            to === undefined || this.down.has(to)
              ? core.streamCompleted(stream.id, { error: `dial tcp ${stream.to}: connection refused` })
              : core.streamCompleted(stream.id, this.cores.get(to)!.receiveStream(from, stream.state).answer);
          this.outcomes.push({ node: name, outcome });
          moved = true;
        }
        for (const { to: address, ping } of ready.tcpPings) {
          const to = this.byAddress.get(address);
          if (to === undefined || this.down.has(to)) core.tcpPingCompleted(ping.seqNo, 'refused');
          else core.tcpPingCompleted(ping.seqNo, this.cores.get(to)!.answerTcpPing(ping) === undefined ? 'no-answer' : 'ack');
          moved = true;
        }
      }
      if (!moved) return;
    }
    throw new Error('the tiny network did not go quiet in 1,000 rounds');
  }
}

