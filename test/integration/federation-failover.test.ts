/**
 * F3 (reference/reliability.md §6.5): the remote datacenter's Raft leader is SIGKILLed while dc1
 * forwards KV writes to it. P1/P2 applied to dc2: no write dc1 acknowledged is lost, and reads dc1
 * forwards in `consistent` mode (reference/consul-compat.md §3.9 forwarding, §4.5 consistency) are
 * linearizable per datacenter: a read sees every write acknowledged before it began, and never
 * less than a read that ended before it began. While dc2 elects, requests may fail, but only as
 * Consul answers an RPC error: a 500 with a text that says what happened (§4.8).
 *
 *   test ─HTTP─▶ catalog dc1 ─▶ router dc1 ══8300 mTLS══▶ router dc2 ─▶ catalog dc2 ─▶ server-1 ┐
 *                                                                                      server-2 ├ Raft; its leader
 *                                                                                      server-3 ┘ is SIGKILLed
 *   writes: PUT /v1/kv/f3/<n>?dc=dc2 = n, 4 at a time; reads: GET /v1/kv/f3/?recurse&consistent&dc=dc2
 *
 * Nothing here asserts a timing: the summary prints how long dc2 was without a leader as dc1 saw it.
 */
import { selfDeclaredLeader } from '../harness/consensus-status';
import { FederatedDatacenter, startDatacenter } from '../harness/federation';
import { RoleProcess, eventually, stopAll } from '../harness/processes';
import { makeRouterTls } from '../harness/tls';

jest.setTimeout(300_000);

/** Acknowledged writes before the leader is killed. */
const WRITES_BEFORE_KILL = 50;
/** Acknowledged writes after the kill, which only a new leader can have committed. */
const WRITES_AFTER_KILL = 50;
/** Consistent reads through dc1 that must have begun after the election, before the writers stop. */
const READS_AFTER_ELECTION = 3;
/** Writers at once, so that some write is in flight when the leader dies. */
const WRITERS = 4;
/** The writers' bounds, whatever happens: this many writes in all, or this long. */
const MAX_WRITES = 400;
const WRITER_TIME_LIMIT_MS = 90_000;
/** The concurrent reader's and leader watcher's bound (they stop with the writers). */
const MAX_READS = 2_000;
/** Longer than the catalog's own forward timeout (30 s), so its answer arrives before our abort. */
const REQUEST_TIMEOUT_MS = 35_000;
/** Final per-key reads in flight at once. */
const FINAL_READ_CONCURRENCY = 4;

let dc1: FederatedDatacenter;
let dc2: FederatedDatacenter;

interface HttpAnswer {
  readonly status: number;
  readonly text: string;
}

interface KvEntry {
  readonly Key: string;
  readonly Value: string | null;
}

/** One HTTP call with a deadline; no answer at all is status 0 with the reason. */
async function request(base: string, method: string, path: string, body?: string): Promise<HttpAnswer> {
  try {
    const response = await fetch(`${base}${path}`, { method, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return { status: response.status, text: await response.text() };
  } catch (err) {
    return { status: 0, text: `no HTTP answer: ${(err as Error).message}` };
  }
}

const keyOf = (n: number) => `f3/${n}`;
const decoded = (entry: KvEntry) => (entry.Value === null ? '' : Buffer.from(entry.Value, 'base64').toString());

/** dc2's leader: the server that says it leads, found by asking each one (ClusterService Status). */
async function dc2Leader(among: readonly RoleProcess[]): Promise<RoleProcess> {
  return eventually(
    "dc2's Raft leader",
    async () => {
      const found = await selfDeclaredLeader(among.map((server) => server.grpc), 2_000);
      return found === undefined ? undefined : among[found.index];
    },
    30_000,
  );
}

/** A role process must not exit on its own: a crash is a bug, shown with its last words. */
function checkNoneCrashed(processes: readonly RoleProcess[]): void {
  for (const proc of processes) {
    const code = proc.child.exitCode ?? proc.child.signalCode;
    if (code !== null) throw new Error(`${proc.role} at ${proc.grpc} exited on its own (${code}):\n${proc.lines.slice(-15).join('\n')}`);
  }
}

beforeAll(async () => {
  const tls = makeRouterTls(['dc1', 'dc2']);
  [dc1, dc2] = await Promise.all([startDatacenter('dc1', tls, { routers: 1 }), startDatacenter('dc2', tls, { routers: 1, consensusServers: 3 })]);
  const created = await request(dc1.httpAddr, 'POST', '/v1/operator/area', JSON.stringify({ PeerDatacenter: 'dc2' }));
  expect(created.status).toBe(200);
  expect((await request(dc2.httpAddr, 'POST', '/v1/operator/area', JSON.stringify({ PeerDatacenter: 'dc1' }))).status).toBe(200);
  const areaId = (JSON.parse(created.text) as { ID: string }).ID;
  const joined = await request(dc1.httpAddr, 'PUT', `/v1/operator/area/${areaId}/join`, JSON.stringify([dc2.routers[0].address]));
  expect(JSON.parse(joined.text)).toMatchObject([{ Joined: true }]);
  // A 404 is dc2's catalog answering: the path works.
  await eventually('dc1 to reach dc2', async () => [200, 404].includes((await request(dc1.httpAddr, 'GET', '/v1/kv/x?dc=dc2')).status) || undefined, 60_000);
}, 180_000);

afterAll(() => stopAll());

interface Ack {
  readonly n: number;
  readonly startedAt: number;
  readonly ackedAt: number;
}

interface Failure extends HttpAnswer {
  readonly n: number;
  readonly at: number;
}

interface ReadFailure extends HttpAnswer {
  readonly at: number;
}

/** What the run saw, shared by the writer, the killer, the reader and the leader watcher. */
interface Run {
  /** In acknowledgement order; append-only, so its first k entries are those acknowledged before a moment. */
  readonly acked: Ack[];
  readonly failed: Failure[];
  /** The highest n sent so far (the writers take 1, 2, 3, ... in turn). */
  invoked: number;
  /** When the leader was seen to have exited. */
  killedAt?: number;
  victim?: RoleProcess;
  writerDone: boolean;
  readonly reads: { readonly startedAt: number; readonly ok: boolean }[];
  readonly readFailures: ReadFailure[];
  readonly violations: string[];
  /** `/v1/status/leader?dc=dc2` through dc1: when each answer arrived, and what it said. */
  readonly leaderSamples: { readonly startedAt: number; readonly at: number; readonly answer: HttpAnswer }[];
}

const ackedSinceKill = (run: Run) => (run.killedAt === undefined ? 0 : run.acked.filter((ack) => ack.startedAt > run.killedAt!).length);

/** Reads begun once a new leader had acknowledged a write (the first one sent after the kill). */
function readsAfterElection(run: Run): Run['reads'] {
  const firstAckAfterKill = run.killedAt === undefined ? undefined : run.acked.find((ack) => ack.startedAt > run.killedAt!);
  return firstAckAfterKill === undefined ? [] : run.reads.filter((read) => read.startedAt > firstAckAfterKill.ackedAt);
}

/** Done once a new leader has acknowledged WRITES_AFTER_KILL and consistent reads have run against it. */
const electionOutlived = (run: Run) => ackedSinceKill(run) >= WRITES_AFTER_KILL && readsAfterElection(run).filter((read) => read.ok).length >= READS_AFTER_ELECTION;

/** PUT f3/<n> = n through dc1, WRITERS at a time, until the election is well behind (electionOutlived). */
async function writeUntilNewLeaderCommits(run: Run): Promise<void> {
  const deadline = Date.now() + WRITER_TIME_LIMIT_MS;
  const writer = async () => {
    while (run.invoked < MAX_WRITES && Date.now() < deadline && !electionOutlived(run)) {
      const n = ++run.invoked;
      const startedAt = Date.now();
      const answer = await request(dc1.httpAddr, 'PUT', `/v1/kv/${keyOf(n)}?dc=dc2`, String(n));
      if (answer.status === 200 && answer.text === 'true') run.acked.push({ n, startedAt, ackedAt: Date.now() });
      else run.failed.push({ n, at: Date.now(), ...answer });
    }
  };
  try {
    await Promise.all(Array.from({ length: WRITERS }, writer));
  } finally {
    run.writerDone = true;
  }
}

/** Once WRITES_BEFORE_KILL are acknowledged, SIGKILLs dc2's leader while the writers keep going. */
async function killLeaderDuringWrites(run: Run): Promise<void> {
  await eventually(`${WRITES_BEFORE_KILL} acknowledged writes`, () => (run.acked.length >= WRITES_BEFORE_KILL || run.writerDone ? true : undefined), WRITER_TIME_LIMIT_MS);
  if (run.acked.length < WRITES_BEFORE_KILL) return;
  const victim = await dc2Leader(dc2.consensusServers);
  run.victim = victim;
  victim.child.kill('SIGKILL');
  await victim.exited;
  // From here on, a write sent can only be committed by a new leader.
  run.killedAt = Date.now();
}

/**
 * Reads the whole prefix through dc1 in `consistent` mode, one read after another, and checks each
 * against the history so far: every write acknowledged before the read began is there with its
 * value, nothing the writer has not sent yet is, and nothing an earlier (finished) read saw is gone.
 */
async function readWhileWriting(run: Run): Promise<void> {
  let previous = new Map<string, string>();
  for (let i = 0; i < MAX_READS && !run.writerDone; i++) {
    const ackedBefore = run.acked.slice();
    const startedAt = Date.now();
    const answer = await request(dc1.httpAddr, 'GET', '/v1/kv/f3/?recurse&consistent&dc=dc2');
    const invokedByEnd = run.invoked;
    if (answer.status !== 200 && !(answer.status === 404 && ackedBefore.length === 0 && previous.size === 0)) {
      run.reads.push({ startedAt, ok: false });
      run.readFailures.push({ at: Date.now(), ...answer });
    } else {
      run.reads.push({ startedAt, ok: true });
      const seen = new Map(answer.status === 404 ? [] : (JSON.parse(answer.text) as KvEntry[]).map((entry) => [entry.Key, decoded(entry)] as const));
      for (const ack of ackedBefore) if (seen.get(keyOf(ack.n)) !== String(ack.n)) run.violations.push(`read #${i} missed ${keyOf(ack.n)}, acknowledged before it began (saw ${seen.get(keyOf(ack.n)) ?? 'nothing'})`);
      for (const [key, value] of previous) if (seen.get(key) !== value) run.violations.push(`read #${i} lost ${key}=${value}, which an earlier read saw`);
      for (const [key, value] of seen) {
        const n = Number(key.slice('f3/'.length));
        if (!(n >= 1 && n <= invokedByEnd && value === String(n))) run.violations.push(`read #${i} saw ${key}=${value}, never written (writes sent: 1..${invokedByEnd})`);
      }
      previous = seen;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** dc2's leader as dc1's catalog reports it (Consul's `/v1/status/leader?dc=`), every 100 ms. */
async function watchLeaderFromDc1(run: Run): Promise<void> {
  for (let i = 0; i < MAX_READS && !run.writerDone; i++) {
    const startedAt = Date.now();
    const answer = await request(dc1.httpAddr, 'GET', '/v1/status/leader?dc=dc2');
    run.leaderSamples.push({ startedAt, at: Date.now(), answer });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Runs `each` over `items`, `concurrency` at a time. */
async function inPool<T>(items: readonly T[], concurrency: number, each: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await each(items[next++]);
  }));
}

/** Each key's value, or what came back instead: a per-key read in `consistent` mode. */
async function readKey(base: string, n: number, datacenterQuery: string): Promise<string> {
  const answer = await request(base, 'GET', `/v1/kv/${keyOf(n)}?consistent${datacenterQuery}`);
  if (answer.status !== 200) return `HTTP ${answer.status} ${answer.text}`;
  return decoded((JSON.parse(answer.text) as KvEntry[])[0]);
}

function distinctTexts(answers: readonly HttpAnswer[]): string[] {
  const counts = new Map<string, number>();
  for (const answer of answers) counts.set(`${answer.status} ${answer.text}`, (counts.get(`${answer.status} ${answer.text}`) ?? 0) + 1);
  return [...counts].map(([text, count]) => `${count}× ${text}`);
}

test("F3: SIGKILL of dc2's leader during writes forwarded from dc1: no acknowledged write lost, consistent reads linearizable", async () => {
  const survivorsToWatch = [dc1.catalog, ...dc1.routers, dc2.catalog, ...dc2.routers];
  const run: Run = { acked: [], failed: [], invoked: 0, writerDone: false, reads: [], readFailures: [], violations: [], leaderSamples: [] };
  const oldLeaderSeenFromDc1 = await request(dc1.httpAddr, 'GET', '/v1/status/leader?dc=dc2');
  expect(oldLeaderSeenFromDc1.status).toBe(200);

  const writer = writeUntilNewLeaderCommits(run);
  const killer = killLeaderDuringWrites(run);
  const reader = readWhileWriting(run);
  const watcher = watchLeaderFromDc1(run);
  await Promise.all([writer, killer, reader, watcher]);

  // The election is over: the writer stopped only once a new leader had acknowledged writes.
  expect(run.killedAt).toBeDefined();
  const killedAt = run.killedAt!;
  const survivors = dc2.consensusServers.filter((server) => server !== run.victim);
  checkNoneCrashed([...survivorsToWatch, ...survivors]);
  const newLeader = await dc2Leader(survivors);

  // After the election: every acknowledged key, read directly in dc2 and through dc1.
  const lostInDc2: string[] = [];
  const lostThroughDc1: string[] = [];
  await inPool(run.acked, FINAL_READ_CONCURRENCY, async (ack) => {
    const direct = await readKey(dc2.httpAddr, ack.n, '');
    if (direct !== String(ack.n)) lostInDc2.push(`${keyOf(ack.n)}: ${direct}`);
    const forwarded = await readKey(dc1.httpAddr, ack.n, '&dc=dc2');
    if (forwarded !== String(ack.n)) lostThroughDc1.push(`${keyOf(ack.n)}: ${forwarded}`);
  });
  // The latest value: a read begun after the last acknowledgement sees it, and every one before it.
  const final = await request(dc1.httpAddr, 'GET', '/v1/kv/f3/?recurse&consistent&dc=dc2');
  expect(final.status).toBe(200);
  const finalKeys = new Map((JSON.parse(final.text) as KvEntry[]).map((entry) => [entry.Key, decoded(entry)] as const));
  const missingFromFinal = run.acked.filter((ack) => finalKeys.get(keyOf(ack.n)) !== String(ack.n)).map((ack) => keyOf(ack.n));
  const failedButApplied = run.failed.filter((failure) => finalKeys.has(keyOf(failure.n))).map((failure) => failure.n);

  // How long dc2 was without a leader, as dc1 saw it.
  const oldLeader = JSON.parse(oldLeaderSeenFromDc1.text) as string;
  const firstNewLeaderSample = run.leaderSamples.find((s) => s.startedAt > killedAt && s.answer.status === 200 && ![oldLeader, ''].includes(JSON.parse(s.answer.text) as string));
  const leaderlessSamples = run.leaderSamples.filter((s) => s.startedAt > killedAt && s.at <= (firstNewLeaderSample?.at ?? Infinity));
  const firstAckAfterKill = run.acked.find((ack) => ack.startedAt > killedAt);
  const lastAckBeforeKill = [...run.acked].reverse().find((ack) => ack.ackedAt <= killedAt);
  const afterElection = readsAfterElection(run);

  console.log(
    [
      `F3 summary (dc2: 3 consensus servers; ${WRITERS} writers; ${run.victim?.address} SIGKILLed as leader after ${WRITES_BEFORE_KILL} acknowledged writes; new leader ${newLeader.address})`,
      `  writes sent ${run.invoked}: acknowledged ${run.acked.length} (${ackedSinceKill(run)} sent after the kill), failed ${run.failed.length}: ${run.failed.map((f) => f.n).join(', ') || 'none'}`,
      `  failure texts: ${distinctTexts(run.failed).join(' | ') || 'none'}`,
      `  failed writes applied anyway (outcome was unknown): ${failedButApplied.join(', ') || 'none'}`,
      `  concurrent consistent reads through dc1: ${run.reads.length} (${run.reads.filter((r) => r.ok).length} ok, ${afterElection.filter((r) => r.ok).length}/${afterElection.length} ok after the election), failed ${run.readFailures.length}: ${distinctTexts(run.readFailures).join(' | ') || 'none'}`,
      `  linearizability violations: ${run.violations.length}`,
      `  leader seen from dc1 (/v1/status/leader?dc=dc2): ${oldLeader} before; ${firstNewLeaderSample === undefined ? 'no new leader seen' : `${JSON.parse(firstNewLeaderSample.answer.text)} ${firstNewLeaderSample.at - killedAt} ms after the kill`}; in between: ${distinctTexts(leaderlessSamples.filter((s) => s !== firstNewLeaderSample).map((s) => s.answer)).join(' | ') || 'no samples'}`,
      `  writes: last acknowledged before the kill at -${lastAckBeforeKill === undefined ? '?' : killedAt - lastAckBeforeKill.ackedAt} ms; first one sent after the kill acknowledged at +${firstAckAfterKill === undefined ? '?' : firstAckAfterKill.ackedAt - killedAt} ms`,
      `  lost: ${lostInDc2.length} read in dc2, ${lostThroughDc1.length} read through dc1, ${missingFromFinal.length} missing from the final read`,
    ].join('\n'),
  );

  expect(ackedSinceKill(run)).toBeGreaterThanOrEqual(WRITES_AFTER_KILL);
  // 0 acknowledged cross-DC writes lost.
  expect(lostInDc2).toEqual([]);
  expect(lostThroughDc1).toEqual([]);
  expect(missingFromFinal).toEqual([]);
  // Linearizable per datacenter, and reads work again once a leader is back.
  expect(run.violations).toEqual([]);
  expect(afterElection.filter((read) => read.ok).length).toBeGreaterThanOrEqual(READS_AFTER_ELECTION);
  // Failures only as Consul answers an RPC error: a 500 that says what happened.
  expect([...run.failed, ...run.readFailures].filter((failure) => failure.status !== 500 || failure.text.trim() === '')).toEqual([]);
  // A write that failed because the leader died says its outcome is unknown (it may have applied).
  expect(run.failed.filter((failure) => /ECONNRESET|Connection dropped/.test(failure.text) && !failure.text.includes('may or may not have been applied'))).toEqual([]);
});
