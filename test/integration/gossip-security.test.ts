/**
 * Gossip under hostile or mismatched peers (reference/reliability.md §6.3 G5, G7; §4.2).
 *
 *   encryption   enc-1..enc-3 share a key from `consulate keygen`; an agent with another key and
 *                one with none cannot join them in either direction (memberlist's texts), and the
 *                pool never lists them
 *   fuzz         100,000 random, truncated, bit-flipped and oversized datagrams at an agent's 8301
 *                and 3,000 hostile TCP streams (a 200 MB length prefix, frames cut short, a
 *                push/pull claiming more than a million members, random frames): the agent stays
 *                up, its member list does not move, and it still gossips with a legitimate peer
 *
 * The `local` gossip profile throughout. The fuzz is seeded (GOSSIP_FUZZ_SEED replays a run).
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { Socket, createConnection } from 'node:net';

import { MemberEventType } from '../../services/gen/consulate/gossip/v1/membership';
import { callUnary } from '../../services/lib/grpc-client';
import { Message } from '../../services/lib/swim/messages';
import { MAX_PUSH_PULL_MEMBERS, decodeStreamFrame, encodePacket, encodeStreamFrame, lengthPrefixed } from '../../services/lib/swim/wire-codec';
import { eventually, freeLoopbackAddress, logRecords, stopAll } from '../harness/processes';
import { Agent, MemberWatch, closeClients, join, members, runCli, seesExactlyAlive, startAgent, within } from './gossip-agents';
import { Prng } from '../sim/prng';

const PROFILE = '-gossip-profile=local';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const watches: MemberWatch[] = [];

afterAll(async () => {
  for (const watch of watches) watch.close();
  closeClients();
  await stopAll();
});

test('encryption: agents with the same `consulate keygen` key form a pool; another key or no key cannot join, either way, and is never listed; a key rotation with `consulate keyring` never flaps the pool (G5)', async () => {
  const keygen = async () => {
    const out = await runCli(['keygen']);
    expect(out.code).toBe(0);
    const key = out.stdout.trim();
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    return key;
  };
  const [key, otherKey] = await Promise.all([keygen(), keygen()]);
  expect(otherKey).not.toBe(key);

  const enc1 = await startAgent('enc-1', [`-encrypt=${key}`, PROFILE]);
  const [enc2, enc3] = await Promise.all(['enc-2', 'enc-3'].map((name) => startAgent(name, [`-encrypt=${key}`, `-join=${enc1.host}`, PROFILE])));
  const pool = [enc1, enc2, enc3];
  const poolNames = pool.map((a) => a.name);
  await eventually('the encrypted pool of three', async () => {
    for (const agent of pool) if (!(await seesExactlyAlive(agent, poolNames))) return undefined;
    return true;
  }, 10_000);
  for (const agent of pool) watches.push(new MemberWatch(agent));

  const [wrongKey, noKey] = await Promise.all([startAgent('wrong-key', [`-encrypt=${otherKey}`, PROFILE]), startAgent('no-key', [PROFILE])]);
  const attempts: [Agent, Agent, string][] = [
    [wrongKey, enc1, 'No installed keys could decrypt the message'],
    [noKey, enc1, 'Encryption is configured but remote state is not encrypted'],
    [enc1, wrongKey, 'No installed keys could decrypt the message'],
    [enc2, noKey, 'Remote state is encrypted and encryption is not configured'],
  ];
  const texts: string[] = [];
  for (const [from, to, reason] of attempts) {
    const address = `${to.host}:8301`;
    const response = await join(from, [address]);
    texts.push(`${from.name} → ${to.name}: ${response.results[0].error}`);
    expect(response).toEqual({ joined: 0, results: [{ address, joined: false, error: `Failed to join ${address}: ${reason}` }] });
  }
  // -join at start with the wrong key: the agent does not start.
  const misjoined = await startAgent('wrong-key-2', [`-encrypt=${otherKey}`, `-join=${enc1.host}`, PROFILE], { waitHealthy: false });
  expect(await within(misjoined.proc.exited, 15_000, 'wrong-key-2 to exit')).toBe(1);
  expect(misjoined.proc.lines.some((line) => line.includes(`Failed to join ${enc1.host}:8301: No installed keys could decrypt the message`))).toBe(true);
  console.log(`gossip G5: refusals:\n  ${texts.join('\n  ')}`);

  // A few gossip rounds later: the pool is still exactly its three, and nobody outside saw it.
  await sleep(2_000);
  for (const agent of pool) expect(await seesExactlyAlive(agent, poolNames)).toBe(true);
  for (const watch of watches) expect(watch.about(MemberEventType.MEMBER_EVENT_TYPE_JOIN).filter((e) => !poolNames.includes(e.name))).toEqual([]);
  expect(await seesExactlyAlive(wrongKey, ['wrong-key'])).toBe(true);
  expect(await seesExactlyAlive(noKey, ['no-key'])).toBe(true);

  // Key rotation with `consulate keyring` on every agent (reliability.md G5): install the new key,
  // use it, remove the old; the pool never flaps, removing the key in use is refused, and an
  // agent that knows only the new key joins afterwards.
  const rotationStarted = Date.now();
  const keyring = async (agent: Agent, ...args: string[]) => runCli(['keyring', `-gossip-addr=${agent.host}:8320`, ...args]);
  for (const agent of pool) expect((await keyring(agent, `-install=${otherKey}`)).code).toBe(0);
  await sleep(500);
  for (const agent of pool) expect((await keyring(agent, `-use=${otherKey}`)).code).toBe(0);
  await sleep(500);
  const refused = await keyring(enc1, `-remove=${otherKey}`);
  expect([refused.code, refused.stderr.trim()]).toEqual([1, 'Error: Removing the primary key is not allowed']);
  for (const agent of pool) expect((await keyring(agent, `-remove=${key}`)).code).toBe(0);
  expect((await keyring(enc2, '-list')).stdout).toContain(`${otherKey} [primary]`);
  await sleep(1_500);
  for (const agent of pool) expect(await seesExactlyAlive(agent, poolNames)).toBe(true);
  for (const watch of watches) {
    expect(watch.about(MemberEventType.MEMBER_EVENT_TYPE_FAILED, undefined, rotationStarted)).toEqual([]);
  }
  expect((await join(wrongKey, [`${enc3.host}:8301`])).joined).toBe(1);
  await eventually('the agent with the new key in the pool', async () => ((await seesExactlyAlive(enc1, [...poolNames, 'wrong-key'])) ? true : undefined), 10_000);
});

/**
 * The kernel's view of the UDP socket bound to host:port (/proc/net/udp): bytes waiting to be read
 * and datagrams dropped because the receive buffer was full. Undefined where /proc is not Linux's.
 */
function udpSocketState(host: string, port: number): { queuedBytes: number; drops: number } | undefined {
  const hex = host.split('.').map(Number).reverse().map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
  const local = `${hex}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  try {
    for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1] === local) return { queuedBytes: parseInt(fields[4].split(':')[1], 16), drops: Number(fields[fields.length - 1]) };
    }
  } catch {
    return undefined;
  }
  return undefined;
}

const UDP_DATAGRAMS = 100_000;
const TCP_STREAMS = 3_000;
const PLAINTEXT = 0;
const SEALED = 1;

test(`fuzz: ${UDP_DATAGRAMS.toLocaleString('en')} hostile datagrams and ${TCP_STREAMS.toLocaleString('en')} hostile streams change nothing; the agent still gossips (G7)`, async () => {
  const target = await startAgent('fuzz-target', [PROFILE]);
  const peer = await startAgent('fuzz-peer', [`-join=${target.host}`, PROFILE]);
  await eventually('target and peer seeing each other', async () => (await seesExactlyAlive(target, ['fuzz-target', 'fuzz-peer'])) && (await seesExactlyAlive(peer, ['fuzz-target', 'fuzz-peer'])) ? true : undefined, 10_000);
  const snapshot = async (agent: Agent) => (await members(agent)).map((m) => `${m.name} ${m.status} ${m.incarnation}`).sort();
  const before = { target: await snapshot(target), peer: await snapshot(peer) };

  const seed = Number(process.env.GOSSIP_FUZZ_SEED ?? Date.now() % 1_000_000);
  const prng = new Prng(seed);
  const random = () => prng.next();
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  // Random bytes are slices of one seeded block of noise at random offsets: generating half a
  // gigabyte afresh for the oversized datagrams would cost more CPU than the agent spends refusing them.
  const noise = Buffer.allocUnsafe(2 * 65_536);
  for (let i = 0; i < noise.length; i++) noise[i] = int(0, 255);
  const randomBytes = (n: number): Buffer => {
    if (n <= noise.length) {
      const at = int(0, noise.length - n);
      return noise.subarray(at, at + n);
    }
    return Buffer.concat(Array.from({ length: Math.ceil(n / noise.length) }, () => noise)).subarray(0, n);
  };
  const framed = (kind: number, body: Uint8Array) => Buffer.concat([Buffer.of(kind), body]);

  // Valid packets to cut and flip. The ghost's alive is the last message, so no cut of the
  // packet can carry it whole: a ghost in the member list would be a frame decoded from a cut one.
  const ghost: Message[] = [
    { type: 'ping', seqNo: 7, node: 'fuzz-target' },
    { type: 'suspect', node: 'fuzz-ghost', incarnation: 3, from: 'fuzz' },
    { type: 'alive', node: 'fuzz-ghost', address: '127.0.0.254:8301', incarnation: 1, tags: { role: 'node', dc: 'dc1', segment: '', id: '00000000-0000-4000-8000-000000000000' } },
  ];
  const cuttable = framed(PLAINTEXT, encodePacket(ghost));
  const flippable = framed(PLAINTEXT, encodePacket([{ type: 'ping', seqNo: 11, node: '' }]));

  // --- UDP
  const udpKinds = { random: 0, plaintextRandom: 0, sealedRandom: 0, truncated: 0, bitFlipped: 0, hugeLengthClaim: 0 };
  const datagram = (): [keyof typeof udpKinds, Buffer] => {
    const roll = random();
    if (roll < 0.3) return ['random', randomBytes(int(0, 1_400))];
    if (roll < 0.5) return ['plaintextRandom', framed(PLAINTEXT, randomBytes(int(1, 1_400)))];
    if (roll < 0.55) return ['sealedRandom', framed(SEALED, randomBytes(int(1, 1_400)))];
    if (roll < 0.75) return ['truncated', cuttable.subarray(0, int(1, cuttable.length - 1))];
    if (roll < 0.85) {
      const copy = Buffer.from(flippable);
      for (let flips = int(1, 3); flips > 0; flips--) copy[int(1, copy.length - 1)] ^= 1 << int(0, 7);
      return ['bitFlipped', copy];
    }
    // Oversized for a gossip packet (above the 1,400-byte budget, up to the UDP maximum), opening
    // with a Packet field whose length prefix claims up to 4 GiB.
    const claim = [0x0a, 0xff, 0xff, 0xff, 0xff, int(0x01, 0x0f)];
    return ['hugeLengthClaim', Buffer.concat([Buffer.of(PLAINTEXT, ...claim), randomBytes(int(1_400, 65_507 - 7))])];
  };
  const udp = createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, freeLoopbackAddress(), () => resolve()));
  const dropsBefore = udpSocketState(target.host, 8301)?.drops;
  const udpStartedAt = Date.now();
  const udpDeadline = udpStartedAt + 45_000;
  let sent = 0;
  let sendErrors = 0;
  try {
    while (sent < UDP_DATAGRAMS && Date.now() < udpDeadline) {
      const burst: Promise<void>[] = [];
      for (let burstBytes = 0; burstBytes < 64 * 1024 && burst.length < 50 && sent < UDP_DATAGRAMS; sent++) {
        const [kind, bytes] = datagram();
        burstBytes += bytes.length;
        udpKinds[kind]++;
        burst.push(
          new Promise((resolve) =>
            udp.send(bytes, 8301, target.host, (err) => {
              if (err) sendErrors++;
              resolve();
            }),
          ),
        );
      }
      await Promise.all(burst);
      // Back-pressure from the kernel: the next burst waits until the agent has read most of the
      // last, so the datagrams reach the agent's code rather than overflow its socket buffer.
      while ((udpSocketState(target.host, 8301)?.queuedBytes ?? 0) > 16 * 1024 && Date.now() < udpDeadline) await sleep(1);
    }
  } finally {
    udp.close();
  }
  const udpMs = Date.now() - udpStartedAt;
  const dropsAfter = udpSocketState(target.host, 8301)?.drops;
  const kernelDrops = dropsBefore === undefined || dropsAfter === undefined ? undefined : dropsAfter - dropsBefore;

  // --- TCP
  const tcpKinds = { claims200MB: 0, cutShort: 0, randomFrame: 0, sealedFrame: 0, garbage: 0, zeroLength: 0, tooManyMembers: 0, bigRandom: 0, emptyPushPull: 0 };
  const outcomes = { closedByAgent: 0, answered: 0, stillOpenAfter3s: 0 };
  const claimsClosedByAgent = { closed: 0, of: 0 };
  const refusalTexts = new Set<string>();
  let emptyPushPullAnswers = 0;
  let validByChance = 0;

  const prefix = (length: number) => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(length >>> 0, 0);
    return header;
  };
  // A push/pull request with one more member than the limit, each an empty entry (2 bytes).
  const tooManyMembers = (() => {
    const entries = Buffer.alloc((MAX_PUSH_PULL_MEMBERS + 1) * 2);
    for (let i = 0; i < entries.length; i += 2) entries[i] = 0x12;
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
      out.push(n);
      return Buffer.from(out);
    };
    const frame = Buffer.concat([Buffer.of(0x0a), varint(entries.length), entries]);
    return Buffer.concat([prefix(frame.length + 1), Buffer.of(PLAINTEXT), frame]);
  })();
  const emptyPushPull = Buffer.from(lengthPrefixed(framed(PLAINTEXT, encodeStreamFrame({ type: 'push-pull-request', state: { join: false, members: [], memberLtime: 0, eventLtime: 0 } }))));

  type Plan = { bytes: Buffer; end: boolean; kind: keyof typeof tcpKinds };
  const plans: Plan[] = [];
  for (let i = 0; i < 2; i++) plans.push({ bytes: tooManyMembers, end: true, kind: 'tooManyMembers' });
  for (let i = 0; i < 4; i++) {
    const body = framed(PLAINTEXT, randomBytes(1_000_000));
    plans.push({ bytes: Buffer.concat([prefix(body.length), body]), end: true, kind: 'bigRandom' });
  }
  for (let i = 0; i < 20; i++) plans.push({ bytes: emptyPushPull, end: true, kind: 'emptyPushPull' });
  while (plans.length < TCP_STREAMS) {
    const roll = random();
    if (roll < 0.1) plans.push({ bytes: Buffer.concat([prefix(200_000_000), randomBytes(64)]), end: false, kind: 'claims200MB' });
    else if (roll < 0.4) {
      const claimed = int(16, 65_536);
      plans.push({ bytes: Buffer.concat([prefix(claimed), framed(PLAINTEXT, randomBytes(int(0, claimed - 2)))]), end: true, kind: 'cutShort' });
    } else if (roll < 0.65) {
      const body = framed(PLAINTEXT, randomBytes(int(1, 4_096)));
      plans.push({ bytes: Buffer.concat([prefix(body.length), body]), end: true, kind: 'randomFrame' });
    } else if (roll < 0.7) {
      const body = framed(SEALED, randomBytes(int(1, 4_096)));
      plans.push({ bytes: Buffer.concat([prefix(body.length), body]), end: true, kind: 'sealedFrame' });
    } else if (roll < 0.95) plans.push({ bytes: randomBytes(int(1, 2_048)), end: true, kind: 'garbage' });
    else plans.push({ bytes: Buffer.concat([prefix(0), randomBytes(16)]), end: false, kind: 'zeroLength' });
  }

  const stream = (plan: Plan) =>
    new Promise<void>((resolve) => {
      tcpKinds[plan.kind]++;
      const chunks: Buffer[] = [];
      const socket: Socket = createConnection({ host: target.host, port: 8301 });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        outcomes.stillOpenAfter3s++;
        socket.destroy();
      }, 3_000);
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => undefined);
      socket.on('connect', () => (plan.end ? socket.end(plan.bytes) : socket.write(plan.bytes)));
      socket.on('close', () => {
        clearTimeout(timer);
        const answer = Buffer.concat(chunks);
        if (answer.length > 0) outcomes.answered++;
        else outcomes.closedByAgent++;
        if (plan.kind === 'claims200MB') {
          claimsClosedByAgent.of++;
          if (answer.length === 0 && !timedOut) claimsClosedByAgent.closed++;
        }
        if (answer.length > 5) {
          const decoded = decodeStreamFrame(answer.subarray(5));
          if ('frame' in decoded && decoded.frame.type === 'error' && (plan.kind === 'tooManyMembers' || plan.kind === 'sealedFrame')) refusalTexts.add(`${plan.kind}: ${decoded.frame.message}`);
          const state = 'frame' in decoded && decoded.frame.type === 'push-pull-response' ? decoded.frame.state : undefined;
          if (state !== undefined && plan.kind === 'emptyPushPull' && state.members.some((m) => m.node === 'fuzz-target')) emptyPushPullAnswers++;
          // Random bytes can spell a valid request (an empty push/pull is two bytes): it is answered like one.
          if (state !== undefined && plan.kind !== 'emptyPushPull') validByChance++;
        }
        resolve();
      });
    });
  const tcpStartedAt = Date.now();
  let nextPlan = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (nextPlan < plans.length) await stream(plans[nextPlan++]);
    }),
  );
  const tcpMs = Date.now() - tcpStartedAt;

  console.log(
    [
      `gossip G7 (seed ${seed}):`,
      `  UDP: ${sent} datagrams in ${udpMs} ms (${JSON.stringify(udpKinds)}), send errors ${sendErrors}, dropped by the kernel before the agent read them: ${kernelDrops ?? 'unknown'}`,
      `  TCP: ${plans.length} streams in ${tcpMs} ms (${JSON.stringify(tcpKinds)}); ${JSON.stringify(outcomes)}; 200 MB claims closed by the agent: ${claimsClosedByAgent.closed}/${claimsClosedByAgent.of}; empty push/pulls answered with the agent's state: ${emptyPushPullAnswers}/20; random frames that happened to be valid push/pulls: ${validByChance}`,
      `  refusals: ${[...refusalTexts].join(' | ')}`,
    ].join('\n'),
  );

  // Nothing moved: the agent is up, answers, and lists the same members in the same states and incarnations.
  await sleep(1_000);
  expect(target.proc.child.exitCode).toBeNull();
  expect(logRecords(target.proc).filter((r) => r.level === 'fatal' || r.level === 60)).toEqual([]);
  const status = await callUnary(target.api.status.bind(target.api), {}, { timeoutMs: 5_000, idempotent: true });
  expect(status.info?.node).toBe('fuzz-target');
  expect({ target: await snapshot(target), peer: await snapshot(peer) }).toEqual(before);
  expect(outcomes.stillOpenAfter3s).toBe(0);
  expect(claimsClosedByAgent.closed).toBe(claimsClosedByAgent.of);
  expect(emptyPushPullAnswers).toBe(20);
  expect(sent).toBe(UDP_DATAGRAMS);
  expect(kernelDrops ?? 0).toBeLessThan(UDP_DATAGRAMS / 100);

  // It still gossips: a new legitimate member joins through it and reaches the peer.
  const newcomer = await startAgent('fuzz-newcomer', [`-join=${target.host}`, PROFILE]);
  const all = ['fuzz-target', 'fuzz-peer', 'fuzz-newcomer'];
  await eventually('the newcomer known to all three', async () => {
    for (const agent of [target, peer, newcomer]) if (!(await seesExactlyAlive(agent, all))) return undefined;
    return true;
  }, 10_000);
});
