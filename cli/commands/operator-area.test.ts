// `consulate operator area ...` (reference/consul-compat.md §3.3) against a catalog's real HTTP
// API, its areas held by a fake federation router over gRPC: Consul's outputs to the letter,
// area selection by -id or -peer-datacenter, exit codes; and -datacenter on the commands that
// read another datacenter (§3.9), forwarded through the router.
import { status as GrpcStatus } from '@grpc/grpc-js';

import { FakeRouter, startFakeRouter } from '../../services/catalog/testing/fake-router';
import { FederatedCatalog, serveFederatedCatalog } from '../../services/catalog/testing/federated-catalog';
import { Command } from '../command';
import { captureIo } from '../testing/served-catalog';
import { catalogCommand } from './catalog';
import { kvCommand } from './kv';
import { operatorCommand } from './operator';

let router: FakeRouter;
let catalog: FederatedCatalog;

beforeAll(async () => {
  router = await startFakeRouter('dc1');
  catalog = await serveFederatedCatalog([router.address]);
});

afterAll(async () => {
  await catalog.close();
  await router.close();
});

beforeEach(() => {
  router.areas.clear();
  router.members.clear();
  router.forwarded.length = 0;
});

async function run(command: Command, args: string[]) {
  const { io, out } = captureIo();
  const code = await command.run(args, io);
  return { code, ...out };
}

/** `operator area <sub> -http-addr=<catalog> <args>`: flags stop at the first positional, as Go's. */
/** `consulate catalog <sub>`; the role it would otherwise run is not needed here. */
const catalogQuery = catalogCommand({ synopsis: '', help: () => '', run: async () => 1 });

const area = (sub: string, ...args: string[]) => run(operatorCommand, ['area', sub, `-http-addr=${catalog.base}`, ...args]);

/** Creates an area through the CLI and returns its ID. */
async function created(peer: string, ...flags: string[]): Promise<string> {
  const answer = await area('create', `-peer-datacenter=${peer}`, ...flags);
  expect(answer).toMatchObject({ code: 0, stderr: '' });
  return /^Created area "([0-9a-f-]{36})"/.exec(answer.stdout)![1];
}

describe('create', () => {
  test('Created area "<id>" with peer datacenter "<dc>"!, with -retry-join (repeatable), -use-tls and -transit sent', async () => {
    const answer = await area('create', '-peer-datacenter=dc2', '-retry-join=10.1.2.3', '-retry-join=10.1.2.4:8300', '-use-tls', '-transit=true');
    expect(answer.code).toBe(0);
    const [id] = router.areas.keys();
    expect(answer.stdout).toBe(`Created area "${id}" with peer datacenter "dc2"!\n`);
    expect(router.areas.get(id)).toEqual({ id, peerDatacenter: 'dc2', retryJoin: ['10.1.2.3', '10.1.2.4:8300'], useTls: true, transit: true });
  });

  test('-peer-datacenter is required; a refusal is `Error creating area: <API error>`, exit 1', async () => {
    expect(await area('create')).toEqual({ code: 1, stdout: '', stderr: 'Must provide -peer-datacenter\n' });
    await created('dc2');
    expect(await area('create', '-peer-datacenter=dc2')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Error creating area: Unexpected response code: 500 (An area with peer datacenter "dc2" already exists)\n',
    });
  });
});

describe('list', () => {
  test('the table `Area  PeerDC  RetryJoin`, RetryJoin joined with ",", (none) when empty', async () => {
    const first = await created('dc2', '-retry-join=10.1.2.3', '-retry-join=10.1.2.4', '-retry-join=10.1.2.5');
    const second = await created('other');
    const answer = await area('list');
    expect(answer).toEqual({
      code: 0,
      stderr: '',
      stdout: [`Area${' '.repeat(32)}  PeerDC  RetryJoin`, `${first}  dc2     10.1.2.3,10.1.2.4,10.1.2.5`, `${second}  other   (none)`].join('\n') + '\n',
    });
  });

  test('a Transit column only once some area is transit', async () => {
    const id = await created('dc2', '-transit');
    expect((await area('list')).stdout).toBe([`Area${' '.repeat(32)}  PeerDC  RetryJoin  Transit`, `${id}  dc2     (none)     true`].join('\n') + '\n');
  });
});

describe('update and delete', () => {
  test('update by -peer-datacenter: `Updated area "<id>"` (no "!"); only the settings given change', async () => {
    const id = await created('dc2', '-transit');
    expect(await area('update', '-peer-datacenter=dc2', '-use-tls')).toEqual({ code: 0, stdout: `Updated area "${id}"\n`, stderr: '' });
    expect(router.areas.get(id)).toMatchObject({ useTls: true, transit: true });
    expect(await area('update', `-id=${id}`, '-transit=false')).toMatchObject({ code: 0, stdout: `Updated area "${id}"\n` });
    expect(router.areas.get(id)).toMatchObject({ useTls: true, transit: false });
  });

  test('update needs a setting; an area needs -id or -peer-datacenter, not both', async () => {
    const id = await created('dc2');
    expect(await area('update', `-id=${id}`)).toEqual({ code: 1, stdout: '', stderr: 'Must provide -use-tls or -transit\n' });
    expect(await area('update', '-use-tls')).toEqual({ code: 1, stdout: '', stderr: 'Must provide -id or -peer-datacenter\n' });
    expect(await area('delete', `-id=${id}`, '-peer-datacenter=dc2')).toEqual({ code: 1, stdout: '', stderr: 'Only one of -id or -peer-datacenter may be given\n' });
  });

  test('delete: `Deleted area "<id>"!`; an unknown peer datacenter or ID is an error, exit 1', async () => {
    const id = await created('dc2');
    expect(await area('delete', '-peer-datacenter=dc2')).toEqual({ code: 0, stdout: `Deleted area "${id}"!\n`, stderr: '' });
    expect(router.areas.size).toBe(0);
    expect(await area('delete', '-peer-datacenter=dc2')).toEqual({ code: 1, stdout: '', stderr: 'Error deleting area: no area with peer datacenter "dc2"\n' });
    expect(await area('delete', `-id=${id}`)).toEqual({ code: 1, stdout: '', stderr: `Error deleting area: Unexpected response code: 500 (area ID "${id}" does not exist)\n` });
  });
});

describe('join', () => {
  test('the table `Address  Joined  Error`, (none) for no error; exit 0 when an address joined', async () => {
    await created('dc2');
    const answer = await area('join', '-peer-datacenter=dc2', '10.1.2.4', 'unreachable.example');
    expect(answer).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        'Address              Joined  Error',
        '10.1.2.4             true    (none)',
        'unreachable.example  false   failed to connect to "unreachable.example:8300": dial tcp unreachable.example:8300: i/o timeout',
      ].join('\n') + '\n',
    });
  });

  test('no address joined: exit 1 (the table still says why); no address given: exit 1', async () => {
    await created('dc2');
    expect(await area('join', '-peer-datacenter=dc2', 'unreachable.example')).toMatchObject({ code: 1, stdout: expect.stringContaining('unreachable.example  false   failed to connect'), stderr: '' });
    expect(await area('join', '-peer-datacenter=dc2')).toEqual({ code: 1, stdout: '', stderr: 'At least one address to join must be specified.\n' });
  });
});

describe('members', () => {
  test('every area by default: `Area  Node  Address  Status  Build  Protocol  DC  RTT`, RTT as a Go duration (0s for the router itself)', async () => {
    const dc2 = await created('dc2');
    const dc3 = await created('dc3');
    const member = { id: 'x', port: 8300, role: 'server', build: '0.1.0', protocol: 2, status: 'alive' };
    router.members.set(dc2, [
      { ...member, name: 'router-2.dc2', addr: '10.0.2.21', datacenter: 'dc2', rttNs: 2_964_369n },
      { ...member, name: 'router-1.dc1', addr: '127.0.0.1', datacenter: 'dc1', rttNs: 0n },
      { ...member, name: 'router-1.dc2', addr: '10.0.2.20', datacenter: 'dc2', rttNs: 594_191n },
    ]);
    router.members.set(dc3, [{ ...member, name: 'router-1.dc3', addr: 'fd00::3', datacenter: 'dc3', status: 'failed', rttNs: -1n }]);
    const answer = await area('members');
    expect(answer.code).toBe(0);
    expect(answer.stdout.split('\n').map((line) => line.split(/\s{2,}/))).toEqual([
      ['Area', 'Node', 'Address', 'Status', 'Build', 'Protocol', 'DC', 'RTT'],
      [dc2, 'router-1.dc1', '127.0.0.1:8300', 'alive', '0.1.0', '2', 'dc1', '0s'],
      [dc2, 'router-1.dc2', '10.0.2.20:8300', 'alive', '0.1.0', '2', 'dc2', '594.191µs'],
      [dc2, 'router-2.dc2', '10.0.2.21:8300', 'alive', '0.1.0', '2', 'dc2', '2.964369ms'],
      [dc3, 'router-1.dc3', '[fd00::3]:8300', 'failed', '0.1.0', '2', 'dc3', 'unknown'],
      [''],
    ]);
    const one = await area('members', '-peer-datacenter=dc3');
    expect(one.stdout.split('\n').slice(1, -1)).toEqual([expect.stringMatching(new RegExp(`^${dc3}  router-1\\.dc3`))]);
  });
});

describe('-datacenter: another datacenter, through the federation router (§3.9)', () => {
  const forwardedJson = (body: unknown) => () => ({ response: { status: 200, headers: { 'Content-Type': 'application/json', 'X-Consul-Index': '9' }, body: Buffer.from(JSON.stringify(body)) }, path: ['dc2'] });

  test('operator area list -datacenter=dc2 lists dc2\'s areas', async () => {
    router.forwardAnswer = forwardedJson([{ ID: '6a52a0af-62e2-dad4-da60-e66acc37096c', PeerDatacenter: 'dc1', RetryJoin: ['10.0.1.20'], UseTLS: false, Transit: false }]);
    const answer = await area('list', '-datacenter=dc2');
    expect(answer).toMatchObject({ code: 0, stdout: 'Area                                  PeerDC  RetryJoin\n6a52a0af-62e2-dad4-da60-e66acc37096c  dc1     10.0.1.20\n' });
    expect(router.forwarded.map((f) => [f.datacenter, f.request?.method, f.request?.path, f.request?.rawQuery])).toEqual([['dc2', 'GET', '/v1/operator/area', '']]);
  });

  test('catalog services|nodes -datacenter=dc2 and kv get -datacenter=dc2 read dc2', async () => {
    router.forwardAnswer = forwardedJson({ consul: [], web: ['v1'] });
    expect(await run(catalogQuery, ['services', `-http-addr=${catalog.base}`, '-datacenter=dc2'])).toEqual({ code: 0, stdout: 'consul\nweb\n', stderr: '' });
    router.forwardAnswer = forwardedJson([{ ID: '', Node: 'node-2', Address: '10.0.2.5', Datacenter: 'dc2', TaggedAddresses: null, Meta: null }]);
    expect((await run(catalogQuery, ['nodes', `-http-addr=${catalog.base}`, '-datacenter=dc2'])).stdout).toMatch(/^Node\s+ID\s+Address\s+DC\nnode-2\s+10\.0\.2\.5\s+dc2\n$/);
    router.forwardAnswer = forwardedJson([{ Key: 'app/color', CreateIndex: 5, ModifyIndex: 5, LockIndex: 0, Flags: 0, Value: Buffer.from('blue').toString('base64') }]);
    expect(await run(kvCommand, ['get', `-http-addr=${catalog.base}`, '-datacenter=dc2', 'app/color'])).toEqual({ code: 0, stdout: 'blue\n', stderr: '' });
    expect(router.forwarded.map((f) => `${f.datacenter} ${f.request?.path}`)).toEqual(['dc2 /v1/catalog/services', 'dc2 /v1/catalog/nodes', 'dc2 /v1/kv/app/color']);
  });

  test('no path: the API error, as Consul\'s CLI prints it', async () => {
    router.forwardAnswer = () => ({ code: GrpcStatus.NOT_FOUND, details: 'No path to datacenter' });
    expect(await run(catalogQuery, ['services', `-http-addr=${catalog.base}`, '-datacenter=dc9'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Error listing services: Unexpected response code: 500 (No path to datacenter)\n',
    });
  });
});
