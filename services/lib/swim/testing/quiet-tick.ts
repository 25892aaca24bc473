/**
 * The contract that lets a shell sleep between ticks (services/lib/swim-pool.ts): a tick the core
 * said had nothing due (`Swim.msUntilDue()` over one tick away) leaves it nothing to send or report.
 * The core's unit tests (tiny-network.ts) and the seeded simulator (bench/gossip/swim-sim.ts) check
 * it after every such tick.
 */
import { invariant } from '../../invariant';
import { Ready } from '../types';

/** Throws an InvariantViolation when `ready`, drained after a tick of `node` that was to be quiet, holds work. */
export function assertQuietTick(node: string, nowMs: number, ready: Ready): void {
  const work = ready.packets.length + ready.streams.length + ready.tcpPings.length + ready.events.length;
  invariant(work === 0, () => `${node}: a tick before msUntilDue() had work at ${nowMs} ms (${ready.packets.length} packets, ${ready.streams.length} streams, ${ready.tcpPings.length} TCP pings, events: ${ready.events.map((e) => e.type).join(', ')})`);
}
