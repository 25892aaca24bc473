/**
 * Catalog writes as consensus txns: Consul's Catalog.Register / Deregister semantics
 * (reference/consul-compat.md §4.1; agent/consul/catalog_endpoint.go and
 * agent/consul/state/catalog.go ensureRegistrationTxn), one txn per write, optimistic concurrency.
 */
import { Compare_Target } from '../../gen/consulate/consensus/v1/kv';
import { FakeConsensus } from '../testing/fake-consensus';
import { CatalogWriteError, MAX_CHECKS_PER_REGISTRATION, RegisterRequest, checkTypeOf, deregister, register, uuidError } from './catalog-writes';
import { keys } from './keys';
import { StoredCheck, StoredNode, StoredService } from './model';

const DC = 'dc1';
const NODE_ID = '40e4a748-2192-161a-0510-9bf59fe950b5';

function setup() {
  const consensus = new FakeConsensus();
  const deps = { view: consensus.view, consensus };
  return { consensus, deps, reg: (request: RegisterRequest) => register(deps, request, DC) };
}

const web: RegisterRequest = {
  Node: 'node1',
  Address: '10.0.0.1',
  Service: { Service: 'web', Tags: ['v1'], Port: 80 },
  Check: { CheckID: 'web-alive', Name: 'web alive', Status: 'passing', ServiceID: 'web' },
};

async function refusal(promise: Promise<unknown>): Promise<CatalogWriteError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CatalogWriteError) return err;
    throw err;
  }
  throw new Error('the write was not refused');
}

describe('register (ensureRegistrationTxn)', () => {
  test('node, service and check in ONE txn, stored in the model shapes', async () => {
    const { consensus, reg } = setup();
    const { revision } = await reg(web);
    expect(consensus.txns).toHaveLength(1);
    expect(consensus.json<StoredNode>(keys.node('node1'))).toEqual({ ID: '', Node: 'node1', Address: '10.0.0.1', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} });
    expect(consensus.json<StoredService>(keys.service('node1', 'web'))).toEqual({
      ID: 'web', // the ID defaults to the name (servicePreApply)
      Service: 'web',
      Tags: ['v1'],
      Address: '',
      TaggedAddresses: {},
      Meta: {},
      Port: 80,
      Weights: { Passing: 1, Warning: 1 }, // ToServiceNode's default
      EnableTagOverride: false,
    });
    expect(consensus.json<StoredCheck>(keys.check('node1', 'web-alive'))).toEqual({
      Node: 'node1',
      CheckID: 'web-alive',
      Name: 'web alive',
      Status: 'passing',
      Notes: '',
      Output: '',
      ServiceID: 'web',
      ServiceName: 'web', // copied from the service (ensureCheckTxn)
      ServiceTags: ['v1'],
      Type: '',
    });
    // CreateIndex/ModifyIndex are the key's revisions: all three rows at the txn's revision.
    for (const key of [keys.node('node1'), keys.service('node1', 'web'), keys.check('node1', 'web-alive')]) {
      expect(consensus.view.get(key)).toMatchObject({ createRevision: revision, modRevision: revision });
    }
  });

  test('every row read is compared: absent rows at revision 0, present rows at their mod revision', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'node1', Address: '10.0.0.1' });
    const nodeRevision = consensus.view.get(keys.node('node1'))!.modRevision;
    await reg({ ...web, Address: '10.0.0.2' });
    const compares = consensus.txns[1].compare.map((c) => [c.key.toString(), c.target, c.targetUnion?.value]);
    expect(compares).toEqual(
      expect.arrayContaining([
        [keys.node('node1'), Compare_Target.TARGET_MOD, BigInt(nodeRevision)],
        [keys.service('node1', 'web'), Compare_Target.TARGET_MOD, 0n],
        [keys.check('node1', 'web-alive'), Compare_Target.TARGET_MOD, 0n],
      ]),
    );
  });

  test('the same registration again writes nothing: no txn, no ModifyIndex moves', async () => {
    const { consensus, reg } = setup();
    const first = await reg(web);
    const again = await reg({ ...web, Service: { ...web.Service, Tags: ['v1'] } });
    expect(consensus.txns).toHaveLength(1);
    expect(again.revision).toBe(first.revision);
  });

  test('a service change rewrites the service only; the node keeps its ModifyIndex', async () => {
    const { consensus, reg } = setup();
    await reg(web);
    const nodeRow = consensus.view.get(keys.node('node1'))!;
    await reg({ Node: 'node1', Address: '10.0.0.1', Service: { Service: 'web', Tags: ['v2'], Port: 80 } });
    expect(consensus.view.get(keys.node('node1'))).toBe(nodeRow);
    expect(consensus.json<StoredService>(keys.service('node1', 'web'))?.Tags).toEqual(['v2']);
    const puts = consensus.txns[1].success.map((op) => (op.request?.$case === 'requestPut' ? op.request.value.key.toString() : ''));
    expect(puts).toEqual([keys.service('node1', 'web')]);
  });

  test('node meta and tagged addresses compare whatever their key order', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'n', Address: 'a', NodeMeta: { b: '2', a: '1' }, TaggedAddresses: { wan: 'w', lan: 'l' } });
    await reg({ Node: 'n', Address: 'a', NodeMeta: { a: '1', b: '2' }, TaggedAddresses: { lan: 'l', wan: 'w' } });
    expect(consensus.txns).toHaveLength(1);
  });

  test('SkipNodeUpdate keeps the stored node; creates it (address empty) when absent', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'ghost', SkipNodeUpdate: true, Check: { CheckID: 'serfHealth', Status: 'critical' } });
    expect(consensus.json<StoredNode>(keys.node('ghost'))?.Address).toBe('');
    await reg({ Node: 'node1', Address: '10.0.0.1', NodeMeta: { a: '1' } });
    await reg({ Node: 'node1', Address: '', NodeMeta: {}, SkipNodeUpdate: true, Check: { CheckID: 'serfHealth', Status: 'critical' } });
    expect(consensus.json<StoredNode>(keys.node('node1'))).toMatchObject({ Address: '10.0.0.1', Meta: { a: '1' } });
    expect(consensus.json<StoredCheck>(keys.check('node1', 'serfHealth'))?.Status).toBe('critical');
  });

  test('check defaults: CheckID from Name, status critical, Type from the definition', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'n', Address: 'a', Checks: [{ Name: 'mem' }, { CheckID: 'http', Definition: { HTTP: 'http://x/health', Interval: '10s' } }] });
    expect(consensus.json<StoredCheck>(keys.check('n', 'mem'))).toMatchObject({ CheckID: 'mem', Name: 'mem', Status: 'critical', Type: '' });
    expect(consensus.json<StoredCheck>(keys.check('n', 'http'))?.Type).toBe('http');
    expect(checkTypeOf({ HTTP: 'http://x' })).toBe(''); // no interval: not an HTTP check to the agent
    expect(checkTypeOf({ TTL: '30s' })).toBe('ttl');
    expect(checkTypeOf({ TCP: 'x:1', Interval: 10_000_000_000 })).toBe('tcp');
  });

  test('a check for a service registered earlier takes its name and tags', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'n', Address: 'a', Service: { ID: 'web-1', Service: 'web', Tags: ['blue'] } });
    await reg({ Node: 'n', Address: 'a', Check: { CheckID: 'c', ServiceID: 'web-1', Status: 'warning' } });
    expect(consensus.json<StoredCheck>(keys.check('n', 'c'))).toMatchObject({ ServiceID: 'web-1', ServiceName: 'web', ServiceTags: ['blue'], Status: 'warning' });
  });

  test('the same check twice in one request: the later one wins, one put', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'n', Address: 'a', Checks: [{ CheckID: 'c', Status: 'passing' }], Check: { CheckID: 'c', Status: 'warning' } });
    expect(consensus.json<StoredCheck>(keys.check('n', 'c'))?.Status).toBe('warning');
    expect(consensus.txns[0].success).toHaveLength(2);
  });

  test('invalid weights fall back to {1, 1}; valid ones are kept', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'n', Address: 'a', Service: { Service: 'bad', Weights: { Passing: 0, Warning: 1 } } });
    await reg({ Node: 'n', Address: 'a', Service: { Service: 'good', Weights: { Passing: 10, Warning: 0 } } });
    expect(consensus.json<StoredService>(keys.service('n', 'bad'))?.Weights).toEqual({ Passing: 1, Warning: 1 });
    expect(consensus.json<StoredService>(keys.service('n', 'good'))?.Weights).toEqual({ Passing: 10, Warning: 0 });
  });
});

describe("register refusals, with Consul's texts (Catalog.Register, vetRegisterWithACL, ensureServiceTxn)", () => {
  const cases: [string, RegisterRequest, string][] = [
    ['no node', { Address: 'a' }, 'Must provide node'],
    ['short node ID', { Node: 'n', Address: 'a', ID: 'nope' }, 'Bad node ID: uuid string is wrong length'],
    ['node ID without dashes', { Node: 'n', Address: 'a', ID: '40e4a748x2192x161ax0510x9bf59fe950b5' }, 'Bad node ID: uuid is improperly formatted'],
    ['node ID with a non-hex digit', { Node: 'n', Address: 'a', ID: 'g0e4a748-2192-161a-0510-9bf59fe950b5' }, "Bad node ID: encoding/hex: invalid byte: U+0067 'g'"],
    ['no address', { Node: 'n' }, 'Must provide address if SkipNodeUpdate is not set'],
    ['service ID without a name', { Node: 'n', Address: 'a', Service: { ID: 'web-1' } }, 'Must provide service name (Service.Service) when service ID is provided'],
    ['wildcard service address', { Node: 'n', Address: 'a', Service: { Service: 'web', Address: '0.0.0.0' } }, 'Invalid service address'],
    ['a check of another node', { Node: 'n', Address: 'a', Check: { Node: 'other', CheckID: 'c' } }, "Node 'other' for check 'c' doesn't match register request node 'n'"],
    ['a check of an unknown service', { Node: 'n', Address: 'a', Check: { CheckID: 'c', ServiceID: 'nope' } }, "Unknown service ID 'nope' for check ID 'c'"],
    ['a service ID that differs in case from the check', { Node: 'n', Address: 'a', Service: { Service: 'web' }, Check: { CheckID: 'c', ServiceID: 'WEB' } }, "Unknown service ID 'WEB' for check ID 'c'"],
    ['reserved service meta', { Node: 'n', Address: 'a', Service: { Service: 'web', Meta: { 'consul-x': '1' } } }, "failed inserting service: Invalid Service Meta for node n and serviceID web: Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is reserved for internal use"],
    ['bad service meta key', { Node: 'n', Address: 'a', Service: { Service: 'web', Meta: { 'a b': '1' } } }, "failed inserting service: Invalid Service Meta for node n and serviceID web: Couldn't load metadata pair ('a b', '1'): Key contains invalid characters"],
  ];
  test.each(cases)('%s', async (_name, request, message) => {
    const { consensus, reg } = setup();
    const err = await refusal(reg(request));
    expect(err.message).toBe(message);
    expect(err.status).toBe(500); // plain RPC errors: agent/http.go answers 500
    expect(consensus.txns).toHaveLength(0);
  });

  test('Connect service kinds are refused with a 400 that says what to do', async () => {
    const { reg } = setup();
    const err = await refusal(reg({ Node: 'n', Address: 'a', Service: { Service: 'p', Kind: 'connect-proxy' } }));
    expect(err).toMatchObject({ status: 400, message: 'Consulate does not support service kind "connect-proxy" yet: register a typical service (no Kind)' });
  });

  test(`more than ${MAX_CHECKS_PER_REGISTRATION} checks cannot fit one txn: a 400 before anything is sent`, async () => {
    const { consensus, reg } = setup();
    const checks = Array.from({ length: MAX_CHECKS_PER_REGISTRATION + 1 }, (_, i) => ({ CheckID: `c${i}` }));
    const err = await refusal(reg({ Node: 'n', Address: 'a', Checks: checks }));
    expect(err.status).toBe(400);
    expect(consensus.txns).toHaveLength(0);
  });

  test('uuidError follows hashicorp/go-uuid', () => {
    expect(uuidError(NODE_ID)).toBeUndefined();
    expect(uuidError(NODE_ID.toUpperCase())).toBeUndefined();
  });
});

describe('node IDs (ensureNodeTxn)', () => {
  test('a known ID under a new name renames the node: the old one goes with its services and checks, in the same txn', async () => {
    const { consensus, reg } = setup();
    await reg({ ...web, Node: 'old', ID: NODE_ID });
    await reg({ Node: 'new', Address: '10.0.0.9', ID: NODE_ID });
    expect(consensus.txns).toHaveLength(2);
    expect(consensus.keys('/c/')).toEqual([keys.node('new')]);
  });

  test('a name held under another ID by a healthy node is reserved', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'web1', Address: '10.0.0.1', ID: NODE_ID, Check: { CheckID: 'serfHealth', Status: 'passing' } });
    const other = 'aaaaaaaa-2192-161a-0510-9bf59fe950b5';
    const err = await refusal(reg({ Node: 'web1', Address: '10.0.0.2', ID: other }));
    expect(err.message).toBe(`failed inserting node: Error while renaming Node ID: "${other}": Node name web1 is reserved by node ${NODE_ID} with name web1 (10.0.0.1)`);
    // Once its serfHealth is critical (a dead node), the name can be taken.
    await reg({ Node: 'web1', Address: '10.0.0.1', ID: NODE_ID, SkipNodeUpdate: true, Check: { CheckID: 'serfHealth', Status: 'critical' } });
    await reg({ Node: 'web1', Address: '10.0.0.2', ID: other });
    expect(consensus.json<StoredNode>(keys.node('web1'))).toMatchObject({ ID: other, Address: '10.0.0.2' });
  });
});

describe('deregister (fsm applyDeregister)', () => {
  async function populated() {
    const s = setup();
    await s.reg(web);
    await s.reg({ Node: 'node1', Address: '10.0.0.1', Service: { ID: 'db', Service: 'db' }, Checks: [{ CheckID: 'serfHealth', Status: 'passing' }, { CheckID: 'db-alive', ServiceID: 'db' }] });
    s.consensus.txns.length = 0;
    return s;
  }

  test('a node: the node, its services and checks, in one txn of range deletes', async () => {
    const { consensus, deps } = await populated();
    await deregister(deps, { Node: 'NODE1' });
    expect(consensus.keys('/c/')).toEqual([]);
    expect(consensus.txns).toHaveLength(1);
    expect(consensus.txns[0].success.map((op) => op.request?.$case)).toEqual(['requestDeleteRange', 'requestDeleteRange', 'requestDeleteRange']);
  });

  test('a ServiceID: the service and its checks; the node and its other rows stay', async () => {
    const { consensus, deps } = await populated();
    await deregister(deps, { Node: 'node1', ServiceID: 'web' });
    expect(consensus.keys('/c/')).toEqual([keys.check('node1', 'db-alive'), keys.check('node1', 'serfHealth'), keys.node('node1'), keys.service('node1', 'db')].sort());
    expect(consensus.txns).toHaveLength(1);
  });

  test('a CheckID: that check only', async () => {
    const { consensus, deps } = await populated();
    await deregister(deps, { Node: 'node1', CheckID: 'serfHealth' });
    expect(consensus.json(keys.check('node1', 'serfHealth'))).toBeUndefined();
    expect(consensus.json(keys.check('node1', 'db-alive'))).toBeDefined();
  });

  test('ServiceID wins over CheckID, as in applyDeregister', async () => {
    const { consensus, deps } = await populated();
    await deregister(deps, { Node: 'node1', ServiceID: 'db', CheckID: 'serfHealth' });
    expect(consensus.json(keys.service('node1', 'db'))).toBeUndefined();
    expect(consensus.json(keys.check('node1', 'serfHealth'))).toBeDefined();
  });

  test('something already gone: no txn, no error', async () => {
    const { consensus, deps } = await populated();
    await deregister(deps, { Node: 'nope' });
    await deregister(deps, { Node: 'node1', ServiceID: 'nope' });
    await deregister(deps, { Node: 'node1', CheckID: 'nope' });
    expect(consensus.txns).toHaveLength(0);
  });

  test('no node: Must provide node', async () => {
    const { deps } = setup();
    expect((await refusal(deregister(deps, { ServiceID: 'x' }))).message).toBe('Must provide node');
  });
});

describe('optimistic concurrency', () => {
  test('a row changed between plan and commit fails the compare; the write is planned again and lands', async () => {
    const { consensus, reg } = setup();
    await reg({ Node: 'node1', Address: '10.0.0.1' });
    // Another catalog registers a service on node1 just before our txn is judged.
    let raced = false;
    consensus.beforeTxn = () => {
      if (raced) return;
      raced = true;
      consensus.put(keys.node('node1'), JSON.stringify({ ID: '', Node: 'node1', Address: '10.0.0.1', Datacenter: 'dc1', TaggedAddresses: {}, Meta: { rack: 'r2' } }));
    };
    await reg({ Node: 'node1', Address: '10.0.0.1', SkipNodeUpdate: true, Check: { CheckID: 'serfHealth', Status: 'passing' } });
    expect(consensus.txns.slice(1).map((t) => t.success.length)).toEqual([1, 1]);
    expect(consensus.json<StoredNode>(keys.node('node1'))?.Meta).toEqual({ rack: 'r2' });
    expect(consensus.json<StoredCheck>(keys.check('node1', 'serfHealth'))?.Status).toBe('passing');
  });

  test('a view behind the store is brought up to the leader before the write decides', async () => {
    const consensus = new FakeConsensus({ deliver: 'manual' });
    const deps = { view: consensus.view, consensus };
    // Another catalog registered web on node1; our view has not seen it yet.
    consensus.put(keys.node('node1'), JSON.stringify({ ID: '', Node: 'node1', Address: 'a', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} }));
    consensus.put(keys.service('node1', 'web'), JSON.stringify({ ID: 'web', Service: 'web', Tags: [], Address: '', TaggedAddresses: {}, Meta: {}, Port: 80, Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false }));
    const timer = setInterval(() => consensus.deliver(), 5);
    try {
      await register(deps, { Node: 'node1', Address: 'a', Check: { CheckID: 'c', ServiceID: 'web' } }, DC);
    } finally {
      clearInterval(timer);
    }
    expect(consensus.json<StoredCheck>(keys.check('node1', 'c'))?.ServiceName).toBe('web');
  });

  test('a check slipped in for a service being deregistered is removed by the follow-up txn', async () => {
    const { consensus, deps, reg } = setup();
    await reg(web);
    let raced = false;
    consensus.beforeTxn = () => {
      if (raced) return;
      raced = true;
      const late: StoredCheck = { Node: 'node1', CheckID: 'late', Name: '', Status: 'passing', Notes: '', Output: '', ServiceID: 'web', ServiceName: 'web', ServiceTags: [], Type: '' };
      consensus.put(keys.check('node1', 'late'), JSON.stringify(late));
    };
    await deregister(deps, { Node: 'node1', ServiceID: 'web' });
    expect(consensus.keys('/c/')).toEqual([keys.node('node1')]);
  });
});
