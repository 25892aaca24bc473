/**
 * A whole simulated cluster for one seed (TigerBeetle's VOPR, FoundationDB's simulation): servers
 * running the real Raft core, a network that loses, duplicates, delays and reorders messages and
 * partitions servers (one cut off, two halves, one-way links, a bridge, a majorities ring),
 * crashes that lose un-fsynced writes (sometimes a torn tail), restarts, pauses, clients that
 * record a history, and checkers:
 *
 *   election safety      at most one leader per term
 *   vote safety          a server grants at most one vote per term (Figure 2: votedFor is
 *                        persisted before the vote is sent, so a restart cannot vote again)
 *   state machine safety every server applies the same entry at each index (so committed
 *                        prefixes are identical)
 *   log matching         two logs with an entry of the same index and term agree up to it
 *   linearizability      the clients' history has a linearization (WGL, per key)
 *   liveness             once faults stop and the network heals, a write commits and every
 *                        server's state machine reaches the same state
 *
 * Everything random comes from the seed; time is virtual. A violation throws SimulationFailure
 * carrying the seed, so the run can be replayed exactly.
 */
import { Message } from '../../services/consensus/raft/messages';
import { Entry, Member } from '../../services/consensus/raft/types';
import { KvInput, KvOutput, Operation, checkOperations, kvModel } from '../checkers/linearizability';
import { EventQueue } from './event-queue';
import { Prng } from './prng';
import { Canaries, KvCommand, KvResult, SimServer } from './sim-server';

export interface SimOptions {
  readonly seed: number;
  readonly servers?: number;
  readonly clients?: number;
  readonly keys?: number;
  /** Client operations to issue in the fault phase. */
  readonly operations?: number;
  readonly canaries?: Canaries;
  /** A leader writes its entries in the background (the real shell's default); false: it waits, as followers do. */
  readonly pipelineLeaderWrites?: boolean;
}

export class SimulationFailure extends Error {
  override readonly name = 'SimulationFailure';
  constructor(
    readonly seed: number,
    readonly check: string,
    detail: string,
  ) {
    super(`seed ${seed}: ${check} violated: ${detail}\n  replay: SIM_SEED=${seed} npx jest --selectProjects simulation -t replay`);
  }
}

/** The fault mix of one seed, drawn from the seed (reference/reliability.md R1 ranges). */
export interface FaultProfile {
  readonly lossRate: number;
  readonly duplicateRate: number;
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
  readonly fsyncMinMs: number;
  readonly fsyncMaxMs: number;
  /**
   * Chance that an fsync stalls for fsyncStallMs instead (measured here: a leader's fdatasync of
   * 54 ms among ones of 0.2 ms). A stalled leader is where its background write matters.
   */
  readonly fsyncStallRate: number;
  readonly fsyncStallMs: number;
  /** Mean time between nemesis actions. */
  readonly nemesisEveryMs: number;
  readonly crashes: boolean;
  readonly partitions: boolean;
  readonly pauses: boolean;
  readonly snapshotEvery: number;
  /** Chance that a write is cut by a power loss before its fsync completes (then a quick restart). */
  readonly crashDuringWriteRate: number;
  readonly servers: number;
}

const TICK_MS = 10;
const CLIENT_TIMEOUT_MS = 1_000;
/** How long the healed cluster gets to elect a leader, commit a write and converge (R4: ≤ 10 election timeouts, and then some). */
const LIVENESS_BUDGET_MS = 20 * 10 * TICK_MS * 2;

export interface SimReport {
  readonly seed: number;
  readonly profile: FaultProfile;
  readonly operations: number;
  readonly acknowledged: number;
  readonly unknown: number;
  readonly leaders: number;
  readonly maxTerm: number;
  readonly virtualMs: number;
  /** Hash of the run's event trace: equal for two runs of one seed (replay determinism, R3). */
  readonly traceHash: string;
  /** Wall-clock time the linearizability check took. */
  readonly checkerMs: number;
}

export class SimCluster {
  private readonly prng: Prng;
  private readonly queue = new EventQueue();
  private now = 0;
  readonly servers: SimServer[] = [];
  private readonly profile: FaultProfile;
  /** blocked.has("a>b"): messages from a to b are dropped. */
  private readonly blocked = new Set<string>();
  private readonly leaderOfTerm = new Map<number, string>();
  /** "voter:term" → the candidate it granted its vote to. */
  private readonly votesGranted = new Map<string, string>();
  private readonly appliedAt = new Map<number, string>();
  private readonly history: Operation<KvInput, KvOutput>[] = [];
  private faultsOn = true;
  private trace = 0x811c9dc5;
  private acknowledged = 0;
  private unknown = 0;

  constructor(private readonly options: SimOptions) {
    this.prng = new Prng(options.seed);
    this.profile = drawProfile(this.prng.fork());
    const count = options.servers ?? this.profile.servers;
    const members: Member[] = Array.from({ length: count }, (_, i) => ({ id: `s${i + 1}`, address: `s${i + 1}:8310`, learner: false }));
    for (const member of members) {
      const serverPrng = this.prng.fork();
      this.servers.push(
        new SimServer(
          member.id,
          {
            now: () => this.now,
            schedule: (delayMs, run) => this.queue.schedule(this.now + delayMs, run),
            send: (message) => this.transmit(message),
            prng: serverPrng,
            canaries: options.canaries ?? {},
            onApply: (server, entry) => this.checkApplied(server, entry),
            onLeader: (server, term) => this.checkLeader(server, term),
            snapshotEvery: this.profile.snapshotEvery,
            fsyncMs: () =>
              serverPrng.chance(this.profile.fsyncStallRate) ? this.profile.fsyncStallMs : serverPrng.between(this.profile.fsyncMinMs, this.profile.fsyncMaxMs),
            onWriteStarted: (server, fsyncMs) => this.maybeCutPower(server, fsyncMs),
            pipelineLeaderWrites: options.pipelineLeaderWrites ?? true,
          },
          members,
        ),
      );
    }
  }

  /** Runs the whole scenario; throws SimulationFailure on the first violation. */
  run(): SimReport {
    for (const server of this.servers) this.scheduleTicks(server);
    const clients = this.options.clients ?? 4;
    const opsPerClient = Math.ceil((this.options.operations ?? 300) / clients);
    let running = clients;
    for (let c = 0; c < clients; c++) this.startClient(c, opsPerClient, () => running--);
    this.scheduleNemesis();
    // Phase 1: faults while the clients run.
    this.runUntil(() => running === 0, 600_000);
    // Phase 2: heal everything and check liveness and convergence.
    this.faultsOn = false;
    this.blocked.clear();
    for (const server of this.servers) {
      server.restart();
      server.resume();
    }
    this.checkLiveness();
    this.checkLogMatching();
    const checkStarted = performance.now();
    this.checkLinearizable();
    const checkerMs = Math.round(performance.now() - checkStarted);
    return {
      seed: this.options.seed,
      profile: this.profile,
      operations: this.history.length,
      acknowledged: this.acknowledged,
      unknown: this.unknown,
      leaders: this.leaderOfTerm.size,
      maxTerm: Math.max(0, ...this.leaderOfTerm.keys()),
      virtualMs: this.now,
      traceHash: (this.trace >>> 0).toString(16),
      checkerMs,
    };
  }

  // ---- the event loop -----------------------------------------------------------------------

  private runUntil(done: () => boolean, limitMs: number): void {
    const end = this.now + limitMs;
    let steps = 0;
    while (!done()) {
      const event = this.queue.pop();
      if (event === undefined) throw new SimulationFailure(this.options.seed, 'progress', 'no events left: the simulation stalled');
      if (event.at > end) throw new SimulationFailure(this.options.seed, 'progress', `still not done after ${limitMs} ms of virtual time`);
      this.now = event.at;
      event.run();
      if (++steps > 50_000_000) throw new SimulationFailure(this.options.seed, 'progress', 'too many events');
    }
  }

  private scheduleTicks(server: SimServer): void {
    // Each server's clock runs at its own slightly different rate (drift).
    const period = TICK_MS + this.prng.between(-1, 1);
    const tick = () => {
      server.tick();
      this.queue.schedule(this.now + period, tick);
    };
    this.queue.schedule(this.prng.between(0, period), tick);
  }

  private server(id: string): SimServer {
    return this.servers.find((server) => server.id === id)!;
  }

  // ---- the network --------------------------------------------------------------------------

  private transmit(message: Message): void {
    if (message.type === 'vote-response' && message.success) this.checkVote(message.from, message.term, message.to);
    this.mix(`${message.type}${message.from}${message.to}${message.term}${message.logIndex}${message.entries.length}`);
    if (this.blocked.has(`${message.from}>${message.to}`)) return;
    const p = this.profile;
    if (this.faultsOn && this.prng.chance(p.lossRate)) return;
    const copies = this.faultsOn && this.prng.chance(p.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = this.prng.between(p.delayMinMs, this.faultsOn ? p.delayMaxMs : p.delayMinMs + 2);
      this.queue.schedule(this.now + delay, () => {
        if (this.blocked.has(`${message.from}>${message.to}`)) return;
        this.server(message.to).receive(message);
      });
    }
  }

  // ---- the nemesis --------------------------------------------------------------------------

  private scheduleNemesis(): void {
    const act = () => {
      if (!this.faultsOn) return;
      this.nemesis();
      this.queue.schedule(this.now + this.prng.between(this.profile.nemesisEveryMs / 2, this.profile.nemesisEveryMs * 2), act);
    };
    this.queue.schedule(this.now + this.profile.nemesisEveryMs, act);
  }

  private nemesis(): void {
    const p = this.profile;
    const ids = this.servers.map((server) => server.id);
    const choices: (() => void)[] = [() => this.heal()];
    if (p.crashes) {
      choices.push(() => {
        const victim = this.prng.pick(this.servers);
        victim.crash();
        this.mix(`crash${victim.id}`);
        this.queue.schedule(this.now + this.prng.between(50, 1_500), () => {
          if (this.faultsOn) victim.restart();
        });
      });
    }
    if (p.partitions) {
      choices.push(() => {
        // Isolate one server, cut the cluster in two, a one-way link, a bridge (two halves that
        // only one server joins), or Jepsen's majorities ring (each server sees its neighbours
        // on a ring: a majority, but no two the same; 5 servers or more, a bridge with fewer).
        const shape = this.prng.int(5);
        this.blocked.clear();
        if (shape === 0) {
          const alone = this.prng.pick(ids);
          for (const other of ids) if (other !== alone) this.blockBoth(alone, other);
        } else if (shape === 1) {
          const side = new Set(ids.filter(() => this.prng.chance(0.5)));
          for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
        } else if (shape === 2) {
          const a = this.prng.pick(ids);
          const b = this.prng.pick(ids.filter((id) => id !== a));
          this.blocked.add(`${a}>${b}`);
        } else if (shape === 3 || ids.length < 5) {
          const bridge = this.prng.pick(ids);
          const rest = this.prng.shuffle(ids.filter((id) => id !== bridge));
          const half = new Set(rest.slice(0, rest.length >> 1));
          for (const a of rest) for (const b of rest) if (half.has(a) !== half.has(b)) this.blocked.add(`${a}>${b}`);
        } else {
          const ring = this.prng.shuffle(ids);
          // Neighbours each side so that a server and its neighbours are a majority: 1 of 5.
          const reach = Math.ceil(Math.floor(ids.length / 2) / 2);
          ring.forEach((a, i) =>
            ring.forEach((b, j) => {
              const distance = Math.min(Math.abs(i - j), ring.length - Math.abs(i - j));
              if (distance > reach) this.blocked.add(`${a}>${b}`);
            }),
          );
        }
        this.mix(`partition${[...this.blocked].join()}`);
      });
    }
    if (p.pauses) {
      choices.push(() => {
        const victim = this.prng.pick(this.servers);
        victim.pause();
        this.queue.schedule(this.now + this.prng.between(20, 800), () => victim.resume());
      });
    }
    this.prng.pick(choices)();
  }

  /** Power loss in the middle of a write (FoundationDB's "buggify" at the riskiest moment). */
  private maybeCutPower(server: SimServer, fsyncMs: number): void {
    if (!this.faultsOn || fsyncMs === 0 || !this.prng.chance(this.profile.crashDuringWriteRate)) return;
    this.queue.schedule(this.now + this.prng.between(0, fsyncMs - 1), () => {
      server.crash();
      this.mix(`powerloss${server.id}`);
      this.queue.schedule(this.now + this.prng.between(1, 60), () => server.restart());
    });
  }

  private blockBoth(a: string, b: string): void {
    this.blocked.add(`${a}>${b}`);
    this.blocked.add(`${b}>${a}`);
  }

  private heal(): void {
    this.blocked.clear();
    for (const server of this.servers) if (!server.up) server.restart();
  }

  // ---- clients ------------------------------------------------------------------------------

  private startClient(clientId: number, operations: number, finished: () => void): void {
    const keys = this.options.keys ?? 3;
    let remaining = operations;
    let target = this.prng.pick(this.servers);
    let valueSeq = 0;
    const next = () => {
      if (remaining-- <= 0) {
        finished();
        return;
      }
      const key = `k${this.prng.int(keys)}`;
      const roll = this.prng.next();
      const value = `${clientId}.${++valueSeq}`;
      const input: KvInput =
        roll < 0.4
          ? { kind: 'get', key }
          : roll < 0.7
            ? { kind: 'put', key, value }
            : roll < 0.9
              ? { kind: 'cas', key, expected: this.prng.chance(0.3) ? null : `${this.prng.int(4)}.${this.prng.between(1, valueSeq)}`, value }
              : { kind: 'delete', key };
      const call = this.now;
      let settled = false;
      const settle = (outcome: { ok: true; value: unknown } | { ok: false; definite: boolean; reason: string }) => {
        if (settled) return;
        settled = true;
        if (outcome.ok) {
          this.acknowledged++;
          this.history.push({ clientId, input, output: toOutput(input, outcome.value), call, return: this.now });
        } else if (!outcome.definite) {
          // It may have happened, at any time after `call`, or never.
          this.unknown++;
          this.history.push({ clientId, input, output: undefined, call, return: Infinity });
        }
        // A definite failure did nothing: it is not part of the history.
        if (!outcome.ok) target = this.prng.pick(this.servers);
        this.queue.schedule(this.now + this.prng.between(0, 20), next);
      };
      this.queue.schedule(this.now + CLIENT_TIMEOUT_MS, () => settle({ ok: false, definite: input.kind === 'get', reason: 'timeout' }));
      // The request travels to the server and the answer back, each with network delay.
      const server = target;
      this.queue.schedule(this.now + this.prng.between(0, 3), () => {
        const reply = (outcome: Parameters<typeof settle>[0]) => this.queue.schedule(this.now + this.prng.between(0, 3), () => settle(outcome));
        if (input.kind === 'get') server.read(input.key, this.prng.chance(0.5) ? 'lease' : 'read-index', reply);
        else server.write(toCommand(input), reply);
      });
    };
    this.queue.schedule(this.now + this.prng.between(0, 50), next);
  }

  // ---- checkers -----------------------------------------------------------------------------

  private checkLeader(server: string, term: number): void {
    const existing = this.leaderOfTerm.get(term);
    if (existing !== undefined && existing !== server) {
      throw new SimulationFailure(this.options.seed, 'election safety', `${existing} and ${server} both lead term ${term}`);
    }
    this.leaderOfTerm.set(term, server);
    this.mix(`leader${server}${term}`);
  }

  private checkVote(voter: string, term: number, candidate: string): void {
    const key = `${voter}:${term}`;
    const earlier = this.votesGranted.get(key);
    if (earlier !== undefined && earlier !== candidate) {
      throw new SimulationFailure(this.options.seed, 'vote safety', `${voter} voted for ${earlier} and then for ${candidate} in term ${term}`);
    }
    this.votesGranted.set(key, candidate);
  }

  private checkApplied(server: string, entry: Entry): void {
    const key = entryKey(entry);
    const existing = this.appliedAt.get(entry.index);
    if (existing !== undefined && existing !== key) {
      throw new SimulationFailure(this.options.seed, 'state machine safety', `${server} applied ${key} at index ${entry.index}, another server applied ${existing}`);
    }
    this.appliedAt.set(entry.index, key);
  }

  private checkLogMatching(): void {
    for (const a of this.servers) {
      for (const b of this.servers) {
        if (a.id >= b.id) continue;
        const ea = new Map(a.disk.entries.map((entry) => [entry.index, entry]));
        let agreedFrom = -1;
        for (const entry of [...b.disk.entries].reverse()) {
          const other = ea.get(entry.index);
          if (other !== undefined && other.term === entry.term) {
            agreedFrom = entry.index;
            break;
          }
        }
        for (const entry of b.disk.entries) {
          if (entry.index > agreedFrom) break;
          const other = ea.get(entry.index);
          if (other !== undefined && entryKey(other) !== entryKey(entry)) {
            throw new SimulationFailure(this.options.seed, 'log matching', `${a.id} and ${b.id} share ${agreedFrom} but differ at ${entry.index}`);
          }
        }
      }
    }
  }

  private checkLiveness(): void {
    // A fresh write must commit, and then every server must apply up to it and agree.
    let committed = false;
    const tryWrite = () => {
      if (committed) return;
      const leader = this.servers.find((server) => server.up && server.raft.status().role === 'leader');
      if (leader !== undefined) {
        leader.write({ op: 'put', key: 'liveness', value: String(this.options.seed) }, (outcome) => {
          if (outcome.ok) committed = true;
        });
      }
      this.queue.schedule(this.now + 100, tryWrite);
    };
    tryWrite();
    try {
      this.runUntil(() => committed, LIVENESS_BUDGET_MS);
      // Quiescent: every server has applied everything any server knows to be committed.
      this.runUntil(() => {
        const target = Math.max(...this.servers.map((server) => server.raft.status().commit));
        return this.servers.every((server) => server.applied === target);
      }, LIVENESS_BUDGET_MS);
    } catch (err) {
      if (err instanceof SimulationFailure) {
        const states = this.servers.map((s) => `${s.id}:${JSON.stringify(s.raft.status())}`).join('\n    ');
        throw new SimulationFailure(this.options.seed, 'liveness', `after healing, no write committed and applied everywhere within ${LIVENESS_BUDGET_MS} ms\n    ${states}`);
      }
      throw err;
    }
    const hashes = new Set(this.servers.map((server) => `${server.applied}:${server.stateHash()}`));
    if (hashes.size !== 1) throw new SimulationFailure(this.options.seed, 'equal state machines', [...hashes].join(' | '));
  }

  private checkLinearizable(): void {
    const result = checkOperations(kvModel, this.history, { timeoutMs: 20_000 });
    if (result.verdict === 'illegal') throw new SimulationFailure(this.options.seed, 'linearizability', result.explanation.message);
    if (result.verdict === 'unknown') throw new SimulationFailure(this.options.seed, 'linearizability', `checker gave up (${result.reason}) on ${this.history.length} operations`);
  }

  /** FNV-1a over the events that shape a run, for replay determinism. */
  private mix(text: string): void {
    let h = this.trace;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    this.trace = Math.imul(h ^ this.now, 0x01000193);
  }
}

function drawProfile(prng: Prng): FaultProfile {
  const delayMin = prng.between(0, 3);
  return {
    lossRate: prng.chance(0.3) ? 0 : prng.next() * 0.3,
    duplicateRate: prng.chance(0.5) ? 0 : prng.next() * 0.5,
    delayMinMs: delayMin,
    delayMaxMs: delayMin + prng.between(1, 40),
    fsyncMinMs: 1,
    fsyncMaxMs: prng.between(1, 8),
    fsyncStallRate: prng.chance(0.5) ? 0 : prng.next() * 0.1,
    fsyncStallMs: prng.between(20, 100),
    nemesisEveryMs: prng.between(100, 1_000),
    crashes: prng.chance(0.7),
    partitions: prng.chance(0.7),
    pauses: prng.chance(0.4),
    snapshotEvery: prng.between(20, 200),
    crashDuringWriteRate: prng.chance(0.5) ? 0 : prng.next() * 0.05,
    servers: prng.chance(0.7) ? 3 : 5,
  };
}

function entryKey(entry: Entry): string {
  switch (entry.kind) {
    case 'normal':
      return `${entry.term}:${Buffer.from(entry.data).toString('utf8')}`;
    case 'config':
      return `${entry.term}:${entry.change.kind}:${entry.change.member.id}`;
    case 'noop':
      return `${entry.term}:noop`;
  }
}

function toCommand(input: Exclude<KvInput, { kind: 'get' }>): KvCommand {
  switch (input.kind) {
    case 'put':
      return { op: 'put', key: input.key, value: input.value };
    case 'cas':
      return { op: 'cas', key: input.key, expected: input.expected, value: input.value };
    case 'delete':
      return { op: 'delete', key: input.key };
  }
}

function toOutput(input: KvInput, value: unknown): KvOutput {
  switch (input.kind) {
    case 'get':
      return { kind: 'get', value: value as string | null };
    case 'put':
      return { kind: 'put' };
    case 'cas':
      return { kind: 'cas', ok: (value as Extract<KvResult, { op: 'cas' }>).ok };
    case 'delete':
      return { kind: 'delete', existed: (value as Extract<KvResult, { op: 'delete' }>).existed };
  }
}
