/**
 * The simulated network's faults for one seed (reference/reliability.md §6.1 ranges, as the Raft
 * simulator draws them): datagram loss and duplication, a delay range (so datagrams overtake each
 * other), and partitions, symmetric or one-way, that the nemesis starts and heals. Streams are
 * TCP: never lost or duplicated, only delayed, and cut like datagrams (swim-sim.ts).
 */
import { Faults } from '../../../bench/gossip/swim-sim';
import { Prng } from '../prng';

export interface NetworkProfile {
  /** Chance that a datagram is lost, in [0, 0.3]. */
  readonly lossRate: number;
  /** Chance that a datagram arrives twice. */
  readonly duplicateRate: number;
  /** One-way delay range in ms: datagrams with different delays arrive out of order. */
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
}

export class FaultyNetwork implements Faults {
  /** "a>b": nothing from address a reaches address b. */
  private readonly blocked = new Set<string>();

  constructor(
    private readonly prng: Prng,
    public profile: NetworkProfile,
  ) {}

  cut(from: string, to: string): boolean {
    return this.blocked.size > 0 && this.blocked.has(`${from}>${to}`);
  }

  datagramDelays(): readonly number[] {
    const p = this.profile;
    if (p.lossRate > 0 && this.prng.chance(p.lossRate)) return [];
    const delay = () => this.prng.between(p.delayMinMs, p.delayMaxMs);
    return p.duplicateRate > 0 && this.prng.chance(p.duplicateRate) ? [delay(), delay()] : [delay()];
  }

  streamDelayMs(): number {
    return this.prng.between(this.profile.delayMinMs, this.profile.delayMaxMs);
  }

  /** Nothing gets between the two sides, either way. */
  split(sideA: readonly string[], sideB: readonly string[]): void {
    for (const a of sideA) {
      for (const b of sideB) {
        this.cutOneWay(a, b);
        this.cutOneWay(b, a);
      }
    }
  }

  /** Nothing gets from `from` to `to`; the other way still works. */
  cutOneWay(from: string, to: string): void {
    this.blocked.add(`${from}>${to}`);
  }

  heal(): void {
    this.blocked.clear();
  }

  get partitioned(): boolean {
    return this.blocked.size > 0;
  }

  describe(): string {
    return [...this.blocked].sort().join(' ');
  }
}
