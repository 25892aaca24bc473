// `consulate join -wan`: Consul's join command over the catalog's `PUT /v1/agent/join/<addr>?wan=1`
// (reference/consul-compat.md §2.6, §3.4: a router address, port 8300 when none is given), with a
// fake federation router behind the catalog's real agent endpoint: one request per address, each
// failure reported, `Successfully joined cluster by contacting N nodes.` when any joined.
import { trace } from '@opentelemetry/api';

import { registerAgentEndpoints } from '../../services/catalog/http/agent-endpoint';
import { RouterClient } from '../../services/catalog/router-client';
import { FakeRouter, startFakeRouter } from '../../services/catalog/testing/fake-router';
import { HttpHarness, startHttp } from '../../services/catalog/testing/http-harness';
import { captureIo } from '../testing/served-catalog';
import { joinCommand } from './join';

const NO_GOSSIP = { members: async () => [], join: async () => ({ joined: 0, results: [] }), forceLeave: async () => undefined };

async function serveAgent(routers: RouterClient): Promise<HttpHarness> {
  return startHttp((http) => registerAgentEndpoints(http, { datacenter: 'dc1', node: 'catalog', nodeId: '', address: '127.0.0.1', gossip: NO_GOSSIP, routers }));
}

async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const { io, out } = captureIo(env);
  const code = await joinCommand.run(args, io);
  return { code, ...out };
}

describe('consulate join -wan', () => {
  let router: FakeRouter;
  let routers: RouterClient;
  let catalog: HttpHarness;

  beforeAll(async () => {
    router = await startFakeRouter('dc1');
    routers = new RouterClient([router.address], trace.getTracer('test'));
    catalog = await serveAgent(routers);
  });

  afterAll(async () => {
    await catalog.close();
    routers.close();
    await router.close();
  });

  beforeEach(() => {
    router.wanJoins.length = 0;
  });

  test("a router joins the WAN pool through the address: Consul's success line", async () => {
    const joined = await run([`-http-addr=http://${catalog.address}`, '-wan', '127.0.2.20:8300']);
    expect(joined).toEqual({ code: 0, stdout: 'Successfully joined cluster by contacting 1 nodes.\n', stderr: '' });
    expect(router.wanJoins).toEqual(['127.0.2.20:8300']);
  });

  test('CONSULATE_HTTP_ADDR names the catalog too; each address is its own join, and one that fails is reported', async () => {
    const answer = await run(['-wan', 'unreachable.dc2', '127.0.2.21'], { CONSULATE_HTTP_ADDR: `http://${catalog.address}` });
    expect(answer).toEqual({
      code: 0,
      stdout: 'Successfully joined cluster by contacting 1 nodes.\n',
      stderr: `Error joining address 'unreachable.dc2': Unexpected response code: 500 (Failed to join unreachable.dc2:8300: failed to connect to "unreachable.dc2:8300": dial tcp unreachable.dc2:8300: i/o timeout)\n`,
    });
    expect(router.wanJoins).toEqual(['unreachable.dc2', '127.0.2.21']);
  });

  test('none joined: exit 1 with Failed to join any nodes.', async () => {
    const answer = await run([`-http-addr=http://${catalog.address}`, '-wan', 'unreachable.dc2:8300']);
    expect(answer.code).toBe(1);
    expect(answer.stderr).toMatch(/^Error joining address 'unreachable\.dc2:8300': Unexpected response code: 500 \(Failed to join unreachable\.dc2:8300: .*\)\nFailed to join any nodes\.\n$/);
  });

  test('a catalog with no federation router: the 500 says how to configure one', async () => {
    const unconfigured = new RouterClient([], trace.getTracer('test'));
    const bare = await serveAgent(unconfigured);
    try {
      const answer = await run([`-http-addr=http://${bare.address}`, '-wan', '127.0.2.20']);
      expect(answer.code).toBe(1);
      expect(answer.stderr).toContain("Error joining address '127.0.2.20': Unexpected response code: 500 (No federation router is configured for this catalog: start it with -router-addr=HOST:8330");
    } finally {
      await bare.close();
      unconfigured.close();
    }
  });

  test('no address: Consul\'s usage error', async () => {
    expect(await run(['-wan'])).toMatchObject({ code: 1, stderr: 'At least one address to join must be specified.\n' });
  });
});
