import { mkdtempSync, writeFileSync } from 'node:fs';
import { IncomingHttpHeaders, Server, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { HttpApi, HttpApiError } from './http-api';

/** An HTTP server that answers `{}` and keeps each request's token header. */
let server: Server;
let base: string;
const tokens: (string | undefined)[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    tokens.push((req.headers as IncomingHttpHeaders)['x-consul-token'] as string | undefined);
    res.setHeader('Content-Type', 'application/json');
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function tokenSent(values: [string, unknown][], env: NodeJS.ProcessEnv = {}): Promise<string | undefined> {
  await new HttpApi(new Map([['http-addr', base], ...values]), env).request('GET', '/v1/agent/self');
  return tokens.at(-1);
}

test('the token goes as X-Consul-Token, picked as Consul picks it: a token file that holds one, else -token, else the environment', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'consulate-token-'));
  const file = join(dir, 'token');
  const empty = join(dir, 'empty');
  writeFileSync(file, 'from-file\n');
  writeFileSync(empty, ' \n');
  expect(await tokenSent([])).toBeUndefined();
  expect(await tokenSent([['token', 'flag']], { CONSUL_HTTP_TOKEN: 'env' })).toBe('flag');
  expect(await tokenSent([], { CONSUL_HTTP_TOKEN: 'env' })).toBe('env');
  expect(await tokenSent([], { CONSULATE_HTTP_TOKEN: 'ours', CONSUL_HTTP_TOKEN: 'env' })).toBe('ours');
  // api.NewClient: the file's token replaces the token, from a flag or the environment.
  expect(await tokenSent([['token', 'flag'], ['token-file', file]])).toBe('from-file');
  expect(await tokenSent([['token', 'flag']], { CONSUL_HTTP_TOKEN_FILE: file })).toBe('from-file');
  expect(await tokenSent([], { CONSUL_HTTP_TOKEN: 'env', CONSUL_HTTP_TOKEN_FILE: file })).toBe('from-file');
  // An empty file leaves the token as it was.
  expect(await tokenSent([['token', 'flag'], ['token-file', empty]])).toBe('flag');
});

test("an unreadable token file is the request's error, not a crash", async () => {
  const api = new HttpApi(new Map([['http-addr', base], ['token-file', '/nonexistent/token']]), {});
  const err = await api.request('GET', '/v1/agent/self').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(HttpApiError);
  expect((err as Error).message).toMatch(/^Error loading token file: .*no such file or directory/);
});

test("a refused connection is Go's url.Error text, with the request's own method", async () => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const api = new HttpApi(new Map([['http-addr', `127.0.0.1:${port}`]]), {});
  for (const [method, op] of [['GET', 'Get'], ['PUT', 'Put'], ['DELETE', 'Delete']]) {
    await expect(api.request(method, '/v1/kv/a')).rejects.toThrow(`${op} "http://127.0.0.1:${port}/v1/kv/a": dial tcp 127.0.0.1:${port}: connect: connection refused`);
  }
});
