/**
 * Golden transcripts for the Raft core, after etcd-io/raft's interaction tests: a script of
 * commands drives in-memory servers and every Ready is printed; the test compares the output with
 * the transcript (testdata/*.txt) byte for byte. `UPDATE_GOLDEN=1` rewrites it, on purpose only.
 *
 * Commands (one per line, "#" comments):
 *   add-nodes N [learners=n4,n5]      n1..nN bootstrapped as voters (learners join later)
 *   campaign nX                       nX starts an election now
 *   tick nX [count] / tick-all [count]
 *   propose nX data                   a normal entry
 *   conf-change nX add-learner|promote|remove nY
 *   read-index nX id [lease]
 *   transfer-leadership nX nY
 *   compact nX index
 *   isolate nX / heal                 drop every message to and from nX / stop dropping
 *   drop-msgs [nX]                    lose the queued messages (to nX only)
 *   restart nX                        a crash and restart: a new core from what nX persisted
 *                                     (its background writes still in flight are lost)
 *   process-ready nX [background]     persist, apply and queue nX's Ready; with background, a
 *                                     leader's entries are handed to a write that `persist` ends
 *                                     (advanceWhileWriting), as the real shell does (§10.2.1)
 *   persist nX                        nX's oldest background write reaches the disk (persisted)
 *   deliver-msgs [nX]                 deliver queued messages (to nX only)
 *   stabilize                         process-ready and deliver until nothing moves
 *   status                            each server's role, term, commit, applied, last index
 *   log nX                            nX's log
 */
import { raftConfig } from '../config';
import { Message, describeEntry, describeMessage } from '../messages';
import { ProposalError, Raft, Ready, bootstrapEntries } from '../raft';
import { Entry, HardState, Member, Snapshot } from '../types';

interface SimNode {
  raft: Raft;
  /** What the server persisted, as storage would hold it. */
  hardState: HardState;
  entries: Entry[];
  snapshot: Snapshot | undefined;
  /** The "state machine": the data of every applied normal entry, in order. */
  applied: string[];
  /** Background writes not yet on disk, oldest first. */
  writing: Ready[];
}

export class InteractionEnv {
  private readonly nodes = new Map<string, SimNode>();
  private queue: Message[] = [];
  private readonly isolated = new Set<string>();
  private readonly out: string[] = [];

  run(script: string): string {
    const blocks: string[] = [];
    // A transcript is "command\n----\noutput\n\n" repeated, each command perhaps after "#"
    // comment lines (kept as they are); we run the commands and rebuild it.
    for (const { comments, command } of parseCommands(script)) {
      this.out.length = 0;
      this.execute(command);
      blocks.push([...comments, command, '----', this.out.length === 0 ? 'ok' : this.out.join('\n')].join('\n'));
    }
    return `${blocks.join('\n\n')}\n`;
  }

  private execute(line: string): void {
    const [name, ...args] = line.split(/\s+/);
    switch (name) {
      case 'add-nodes':
        return this.addNodes(Number(args[0]), args.find((arg) => arg.startsWith('learners='))?.slice(9).split(',') ?? []);
      case 'campaign':
        return this.node(args[0]).raft.campaign();
      case 'tick':
        for (let i = 0; i < Number(args[1] ?? 1); i++) this.node(args[0]).raft.tick();
        return;
      case 'tick-all':
        for (let i = 0; i < Number(args[0] ?? 1); i++) for (const node of this.nodes.values()) node.raft.tick();
        return;
      case 'propose':
        return this.guard(() => this.node(args[0]).raft.propose(Buffer.from(args[1])));
      case 'conf-change':
        return this.guard(() =>
          this.node(args[0]).raft.proposeConfChange({ kind: args[1] as 'add-learner' | 'promote' | 'remove', member: { id: args[2], address: `${args[2]}:8310`, learner: args[1] === 'add-learner' } }),
        );
      case 'read-index':
        return this.node(args[0]).raft.readIndex(args[1], args[2] === 'lease' ? 'lease' : 'read-index');
      case 'transfer-leadership':
        return this.guard(() => this.node(args[0]).raft.transferLeadership(args[1]));
      case 'compact': {
        const node = this.node(args[0]);
        const snapshot = node.raft.compact(Number(args[1]), Buffer.from(node.applied.join(',')));
        node.snapshot = snapshot;
        node.entries = node.entries.filter((entry) => entry.index > snapshot.meta.index);
        this.out.push(`${args[0]}: snapshot ${snapshot.meta.index}/${snapshot.meta.term} members=${snapshot.meta.members.map((m) => m.id + (m.learner ? '(learner)' : '')).join(',')}`);
        return;
      }
      case 'isolate':
        this.isolated.add(args[0]);
        return;
      case 'heal':
        this.isolated.clear();
        return;
      case 'drop-msgs': {
        const lost = this.queue.filter((m) => args[0] === undefined || m.to === args[0]);
        this.queue = this.queue.filter((m) => !lost.includes(m));
        for (const m of lost) this.out.push(`lost: ${describeMessage(m)}`);
        return;
      }
      case 'restart':
        return this.restart(args[0]);
      case 'process-ready':
        this.processReady(args[0], args[1] === 'background');
        return;
      case 'persist':
        return this.persistBackground(args[0]);
      case 'deliver-msgs':
        this.deliver(args[0]);
        return;
      case 'stabilize':
        return this.stabilize();
      case 'status':
        return this.status();
      case 'log':
        this.out.push(this.node(args[0]).entries.map(describeEntry).join('\n') || '(empty)');
        return;
      default:
        throw new Error(`unknown command ${name}`);
    }
  }

  private addNodes(count: number, learners: string[]): void {
    const members: Member[] = Array.from({ length: count }, (_, i) => ({ id: `n${i + 1}`, address: `n${i + 1}:8310`, learner: false }));
    const boot = bootstrapEntries(members);
    for (const member of members) this.createNode(member.id, { term: 1, vote: '', commit: boot.length }, boot);
    for (const id of learners) this.createNode(id, { term: 0, vote: '', commit: 0 }, []);
  }

  private createNode(id: string, hardState: HardState, entries: Entry[]): void {
    this.nodes.set(id, { raft: newCore(id, hardState, undefined, entries), hardState, entries: [...entries], snapshot: undefined, applied: [], writing: [] });
  }

  /** What a crash keeps is what was persisted: hard state, entries, snapshot; applied state is rebuilt from them. */
  private restart(id: string): void {
    const node = this.node(id);
    const raft = newCore(id, node.hardState, node.snapshot, node.entries);
    this.nodes.set(id, { ...node, raft, applied: node.snapshot === undefined ? [] : appliedIn(node.snapshot), writing: [] });
  }

  private node(id: string): SimNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  private guard(fn: () => unknown): void {
    try {
      const result = fn();
      if (result !== undefined) this.out.push(`-> ${JSON.stringify(result)}`);
    } catch (err) {
      if (!(err instanceof ProposalError)) throw err;
      this.out.push(`refused (${err.reason}): ${err.message}`);
    }
  }

  private processReady(id: string, background = false): boolean {
    const node = this.node(id);
    if (!node.raft.hasReady()) return false;
    const rd = node.raft.ready();
    if (background && node.raft.writableInBackground(rd)) {
      node.writing.push(rd);
      this.apply(node, rd);
      this.out.push(...describeReady(id, rd), '  (entries and hard state written in the background)');
      this.queue.push(...rd.messages);
      node.raft.advanceWhileWriting(rd);
      return true;
    }
    this.persist(node, rd);
    this.apply(node, rd);
    this.out.push(...describeReady(id, rd));
    this.queue.push(...rd.messages);
    node.raft.advance(rd);
    return true;
  }

  private persistBackground(id: string): void {
    const node = this.node(id);
    const rd = node.writing.shift();
    if (rd === undefined) throw new Error(`${id} has no background write`);
    this.persist(node, rd);
    const last = rd.entries[rd.entries.length - 1];
    node.raft.persisted(last.index, last.term);
    this.out.push(`${id}: on disk up to ${last.index}/${last.term}`);
  }

  private apply(node: SimNode, rd: Ready): void {
    for (const entry of rd.committed) if (entry.kind === 'normal') node.applied.push(Buffer.from(entry.data).toString('utf8'));
  }

  private persist(node: SimNode, rd: Ready): void {
    if (rd.hardState !== undefined) node.hardState = rd.hardState;
    if (rd.snapshot !== undefined) {
      node.snapshot = rd.snapshot;
      node.entries = [];
      node.applied = appliedIn(rd.snapshot);
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      node.entries = [...node.entries.filter((entry) => entry.index < first), ...rd.entries];
    }
  }

  private deliver(to?: string): boolean {
    const now = this.queue.filter((m) => to === undefined || m.to === to);
    this.queue = this.queue.filter((m) => !(to === undefined || m.to === to));
    for (const m of now) {
      if (this.isolated.has(m.from) || this.isolated.has(m.to)) {
        this.out.push(`dropped: ${describeMessage(m)}`);
        continue;
      }
      const target = this.nodes.get(m.to);
      if (target === undefined) continue;
      target.raft.step(m);
    }
    return now.length > 0;
  }

  private stabilize(): void {
    for (let round = 0; round < 100; round++) {
      let moved = false;
      for (const id of [...this.nodes.keys()].sort()) moved = this.processReady(id) || moved;
      moved = this.deliver() || moved;
      if (!moved) return;
    }
    throw new Error('stabilize did not settle in 100 rounds');
  }

  private status(): void {
    for (const [id, node] of [...this.nodes].sort(([a], [b]) => a.localeCompare(b))) {
      const s = node.raft.status();
      this.out.push(`${id}: ${s.role} term=${s.term} leader=${s.leader || '-'} commit=${s.commit} applied=${s.applied} last=${s.lastIndex} members=${s.members.map((m) => m.id + (m.learner ? '(learner)' : '')).join(',')} state=[${node.applied.join(',')}]`);
    }
  }
}

/** The state machine a snapshot holds: what `compact` saved, the applied data joined by commas. */
function appliedIn(snapshot: Snapshot): string[] {
  return Buffer.from(snapshot.data).toString('utf8').split(',').filter((x) => x !== '');
}

/** Fixed election timeouts, different per node: nK waits electionTicks + K - 1 ticks. */
function newCore(id: string, hardState: HardState, snapshot: Snapshot | undefined, entries: readonly Entry[]): Raft {
  const k = Number(id.slice(1));
  return new Raft({ config: raftConfig({ id, random: () => (k - 1) / 10, electionTicks: 10, heartbeatTicks: 1 }), hardState, snapshot, entries: [...entries] });
}

function describeReady(id: string, rd: Ready): string[] {
  const lines = [`> ${id} handling Ready`];
  if (rd.softState !== undefined) lines.push(`  Lead:${rd.softState.leader || '-'} State:${rd.softState.role}`);
  if (rd.hardState !== undefined) lines.push(`  HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote || '-'} Commit:${rd.hardState.commit}`);
  if (rd.snapshot !== undefined) lines.push(`  Snapshot ${rd.snapshot.meta.index}/${rd.snapshot.meta.term}`);
  if (rd.entries.length > 0) lines.push(`  Entries: ${rd.entries.map(describeEntry).join(' ')}`);
  if (rd.committed.length > 0) lines.push(`  Committed: ${rd.committed.map(describeEntry).join(' ')}`);
  for (const read of rd.readStates) lines.push(`  ReadState ${read.id} index=${read.index ?? 'dropped'}`);
  for (const m of rd.messages) lines.push(`  ${describeMessage(m)}`);
  return lines;
}

/** The commands of a transcript: the first line of every block (blocks end with a blank line). */
export function parseCommands(script: string): { comments: string[]; command: string }[] {
  const commands: { comments: string[]; command: string }[] = [];
  let comments: string[] = [];
  let expectCommand = true;
  for (const line of script.split('\n')) {
    if (expectCommand) {
      if (line.startsWith('#')) comments.push(line);
      if (line.trim() === '' || line.startsWith('#')) continue;
      commands.push({ comments, command: line.trim() });
      comments = [];
      expectCommand = false;
    } else if (line.trim() === '') {
      expectCommand = true;
    }
  }
  return commands;
}
