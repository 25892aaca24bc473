/**
 * Consul's periodic server rebalancing (agent/router/manager.go; reference/consul-compat.md §3.5),
 * one manager per datacenter this router sends requests to (a next hop's datacenter): the order in
 * which its routers are tried. A manager starts with the routers in the route table's order and
 * appends the ones it meets later (Consul's AddServer). Every 120-180 s (Consul's
 * clientRPCMinReuseDuration plus up to half of it, jittered per manager, and longer when the
 * pools are so large that every member rebalancing that often would open more than 64
 * connections a second per router) it shuffles them and pings them in that order until one
 * answers, which then comes first: so the routers of a datacenter spread the requests of another's
 * over all of its routers, not all on the nearest, and a router that stopped answering stops being
 * the first choice even before its pool declares it failed. When none answers the manager is
 * offline (logged) and keeps its order: requests still go to the routers alive in the pools, in it.
 *
 * A failure between two rebalances (Consul's NotifyFailedServer) is the forwarder's offline
 * marking (forwarder.ts `tryOrder`): the router that failed is tried last for a while.
 *
 * Time, randomness and the ping are injected: the tests drive it with a ManualClock.
 */
import { Clock, TimerHandle } from '../../lib/clock';
import { Logger } from '../../lib/log';
import { NextHop } from './route-table';

/** Consul's clientRPCMinReuseDuration: no manager rebalances more often. */
export const MIN_REBALANCE_MS = 120_000;
/** Consul's clientRPCJitterFraction: up to MIN_REBALANCE_MS / 2 more, drawn each time. */
export const REBALANCE_JITTER_FRACTION = 2;
/** Consul's newRebalanceConnsPerSecPerServer. */
export const REBALANCE_CONNS_PER_SEC_PER_ROUTER = 64;
/** How long one ping may take before the next router is tried. */
export const PING_TIMEOUT_MS = 5_000;

/**
 * Consul's refreshServerRebalanceTimer: 120 s plus up to 60 s of jitter, or more when `poolMembers`
 * all rebalancing that often would open more than 64 connections a second per router: with 3
 * routers, the bound is 192 a second, and only a pool of more than 23,040 members (192 × 120 s)
 * stretches the interval.
 */
export function rebalanceIntervalMs(routers: number, poolMembers: number, random: () => number): number {
  const lowWatermarkMs = MIN_REBALANCE_MS + Math.floor(random() * (MIN_REBALANCE_MS / REBALANCE_JITTER_FRACTION));
  const perSecond = Math.max(1, routers) * REBALANCE_CONNS_PER_SEC_PER_ROUTER;
  return Math.max(lowWatermarkMs, Math.ceil((poolMembers / perSecond) * 1_000));
}

export interface RebalancerDeps {
  readonly clock: Clock;
  /** [0, 1): the shuffles and the jitter. */
  readonly random: () => number;
  /** The routers of `datacenter` this router may send to now (alive or not), or none. */
  readonly routersOf: (datacenter: string) => readonly NextHop[];
  /** Members of the pools this router is in: what Consul scales the interval by. */
  readonly poolMembers: () => number;
  /** Whether the router answers a Ping within PING_TIMEOUT_MS. */
  readonly ping: (hop: NextHop) => Promise<boolean>;
  readonly logger: Logger;
}

interface Manager {
  /** Router addresses, the first tried first. */
  order: string[];
  offline: boolean;
  timer: TimerHandle | undefined;
  /** A rebalance is running (its pings take time): the next waits for it. */
  running: boolean;
}

export class Rebalancer {
  private readonly managers = new Map<string, Manager>();
  private closed = false;

  constructor(private readonly deps: RebalancerDeps) {}

  /**
   * `hops` (routers of one datacenter, or of several: each keeps its place among those of its
   * datacenter) in their manager's order; a datacenter seen for the first time gets a manager,
   * in `hops`' order, and a router a manager has not met goes last.
   */
  order(hops: readonly NextHop[]): NextHop[] {
    if (this.closed) return [...hops];
    const ranked = hops.map((hop) => ({ hop, rank: this.rank(hop) })).sort((a, b) => a.rank - b.rank);
    // Each datacenter's routers in its manager's order, in the places its routers had.
    const queues = new Map<string, NextHop[]>();
    for (const { hop } of ranked) {
      const queue = queues.get(hop.datacenter);
      if (queue === undefined) queues.set(hop.datacenter, [hop]);
      else queue.push(hop);
    }
    return hops.map((hop) => queues.get(hop.datacenter)!.shift()!);
  }

  /** Whether the last rebalance of `datacenter`'s manager found no router answering. */
  isOffline(datacenter: string): boolean {
    return this.managers.get(datacenter)?.offline === true;
  }

  /** Consul's rebalanceServers for one datacenter: shuffle, ping in order until one answers. */
  async rebalance(datacenter: string): Promise<void> {
    const manager = this.managers.get(datacenter);
    if (manager === undefined || manager.running) return;
    const known = new Map(this.deps.routersOf(datacenter).map((hop) => [hop.address, hop]));
    // Routers no longer in the pools leave the manager (Consul's RemoveServer); new ones join it.
    manager.order = [...manager.order.filter((address) => known.has(address)), ...[...known.keys()].filter((address) => !manager.order.includes(address))];
    if (manager.order.length === 0) {
      this.drop(datacenter);
      return;
    }
    manager.running = true;
    try {
      const shuffled = shuffle(manager.order, this.deps.random);
      for (let i = 0; i < shuffled.length; i++) {
        const hop = known.get(shuffled[0]);
        if (hop !== undefined && (await this.deps.ping(hop))) {
          if (this.closed) return;
          if (manager.offline) this.deps.logger.info({ datacenter, router: hop.name }, `rebalanced the routers of ${datacenter}: ${hop.name} answers, no longer offline`);
          manager.order = shuffled;
          manager.offline = false;
          return;
        }
        // Consul's cycleServer: the one that did not answer goes last.
        shuffled.push(shuffled.shift()!);
      }
      if (this.closed) return;
      if (!manager.offline) this.deps.logger.warn({ datacenter, routers: shuffled.length }, `no router of ${datacenter} answered a ping while rebalancing: offline until one does (requests still go to those alive in the pools)`);
      manager.offline = true;
    } finally {
      manager.running = false;
    }
  }

  close(): void {
    this.closed = true;
    for (const datacenter of [...this.managers.keys()]) this.drop(datacenter);
  }

  /** Where `hop` stands in its datacenter's manager; a router the manager has not met joins last. */
  private rank(hop: NextHop): number {
    const manager = this.manager(hop.datacenter);
    const at = manager.order.indexOf(hop.address);
    return at >= 0 ? at : manager.order.push(hop.address) - 1;
  }

  private manager(datacenter: string): Manager {
    let manager = this.managers.get(datacenter);
    if (manager === undefined) {
      manager = { order: [], offline: false, timer: undefined, running: false };
      this.managers.set(datacenter, manager);
      // Consul's NewManager: the first rebalance after clientRPCMinReuseDuration.
      this.schedule(datacenter, manager, MIN_REBALANCE_MS);
    }
    return manager;
  }

  private schedule(datacenter: string, manager: Manager, delayMs: number): void {
    manager.timer = this.deps.clock.setTimeout(() => {
      manager.timer = undefined;
      void this.rebalance(datacenter).then(() => {
        if (this.closed || this.managers.get(datacenter) !== manager) return;
        this.schedule(datacenter, manager, rebalanceIntervalMs(manager.order.length, this.deps.poolMembers(), this.deps.random));
      });
    }, delayMs);
  }

  private drop(datacenter: string): void {
    const manager = this.managers.get(datacenter);
    if (manager?.timer !== undefined) this.deps.clock.clear(manager.timer);
    this.managers.delete(datacenter);
  }
}

/** Fisher-Yates with `random`: a new array. */
function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
