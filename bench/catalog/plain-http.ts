/**
 * The ceiling for the catalog's HTTP reads, and the floor for its blocking-query fan-out: plain
 * `node:http` with nothing of the catalog behind it. Run as its own process by run.ts:
 * `node plain-http.js <host> <port> <body file>`; says "ready" over IPC once it listens.
 *
 * - A request for a key never written (the throughput cells) gets one fixed JSON body (the bytes
 *   the catalog answered for the same GET), as /work/shared/anchors/http-rr.mjs does.
 * - `PUT /v1/kv/<key>` and `GET /v1/kv/<key>?index=N` are a minimal blocking KV in memory, in the
 *   shapes the fan-out reads (X-Consul-Index, a one-entry JSON array): a GET at or past the key's
 *   index waits, and a PUT answers every waiter of the key with one body encoded once. No
 *   consensus, no view, no consistency, no wait timeout: what node:http alone costs per waiter.
 */
import { IncomingMessage, ServerResponse, createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const [host, port, bodyFile] = process.argv.slice(2);
const fixed = readFileSync(bodyFile);
const KV_PREFIX = '/v1/kv/';

interface Entry {
  index: number;
  body: Buffer;
  waiters: Set<ServerResponse>;
}

const entries = new Map<string, Entry>();
let lastIndex = 0;

function answer(res: ServerResponse, body: Buffer, index?: number): void {
  const headers: Record<string, string | number> = { 'Content-Type': 'application/json', 'Content-Length': body.length };
  if (index !== undefined) headers['X-Consul-Index'] = index;
  res.writeHead(200, headers);
  res.end(body);
}

function put(key: string, value: Buffer, res: ServerResponse): void {
  const index = ++lastIndex;
  const entry = entries.get(key) ?? { index: 0, body: Buffer.alloc(0), waiters: new Set() };
  entries.set(key, entry);
  entry.index = index;
  entry.body = Buffer.from(JSON.stringify([{ LockIndex: 0, Key: key, Flags: 0, Value: value.toString('base64'), CreateIndex: index, ModifyIndex: index }]));
  const waiters = [...entry.waiters];
  entry.waiters.clear();
  for (const waiter of waiters) answer(waiter, entry.body, index);
  answer(res, Buffer.from('true'));
}

function get(key: string, minIndex: number, res: ServerResponse): void {
  const entry = entries.get(key);
  if (entry === undefined) return answer(res, fixed);
  if (minIndex === 0 || entry.index > minIndex) return answer(res, entry.body, entry.index);
  entry.waiters.add(res);
  res.on('close', () => entry.waiters.delete(res));
}

function serve(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const url = new URL(req.url ?? '/', 'http://plain');
  if (!url.pathname.startsWith(KV_PREFIX)) return answer(res, fixed);
  const key = url.pathname.slice(KV_PREFIX.length);
  if (req.method === 'PUT') return put(key, body, res);
  get(key, Number(url.searchParams.get('index') ?? 0), res);
}

const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => serve(req, res, Buffer.concat(chunks)));
});
server.listen(Number(port), host, () => process.send?.('ready'));
// Stop with the benchmark, however it ends (the IPC channel closes with it).
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
