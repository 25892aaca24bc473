/**
 * How CLI commands reach the Consul-compatible HTTP API, as Consul's CLI does: `-http-addr`, else
 * CONSULATE_HTTP_ADDR (CONSUL_HTTP_ADDR also works), else http://127.0.0.1:8500; `-datacenter`
 * becomes `?dc=`; `-token` (or `-token-file`, or their environment variables) is sent as
 * X-Consul-Token. A non-2xx answer is an error with the api package's text:
 * `Unexpected response code: 500 (No path to datacenter)`.
 */
import { readFileSync } from 'node:fs';

import { FlagSpec } from '../services/lib/flags';

export const HTTP_FLAGS: FlagSpec[] = [
  { name: 'http-addr', kind: 'string', usage: 'The address of the catalog HTTP API. Also CONSULATE_HTTP_ADDR.', defaultText: '"http://127.0.0.1:8500"' },
  { name: 'datacenter', kind: 'string', usage: "Name of the datacenter to query. Defaults to the catalog's own." },
  { name: 'stale', kind: 'bool', usage: 'Permit any catalog to answer from its view, even without a leader.' },
  {
    name: 'token',
    kind: 'string',
    usage: 'ACL token to send as X-Consul-Token (forwarded to other datacenters with the request). Consulate has no ACLs yet: it is carried, not checked. Also CONSUL_HTTP_TOKEN.',
  },
  { name: 'token-file', kind: 'string', usage: 'File holding the ACL token, used instead of -token when it holds one. Also CONSUL_HTTP_TOKEN_FILE.' },
];

/** Each request ends within this long; blocking queries pass their own. */
const DEFAULT_TIMEOUT_MS = 30_000;

export class HttpApiError extends Error {
  override readonly name = 'HttpApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface RequestOptions {
  readonly query?: Record<string, string | string[] | undefined>;
  readonly body?: unknown;
  readonly raw?: Uint8Array;
  readonly allow404?: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly exactIntegers?: readonly string[];
}

/**
 * `"Flags":3304740253564472344` → `"Flags":"3304740253564472344"`. Only a key at an object's top
 * level can match: inside a JSON string its quotes would be escaped.
 */
function quoteIntegers(text: string, fields: readonly string[]): string {
  let out = text;
  for (const field of fields) out = out.replace(new RegExp(`"${field}":(\\s*)(-?\\d+)`, 'g'), `"${field}":$1"$2"`);
  return out;
}

export interface ApiResponse<T> {
  readonly status: number;
  readonly body: T;
  readonly index: number;
  /** X-Consul-Index exactly, a uint64 (an event list's is a hash past 2^53); 0n when absent. */
  readonly exactIndex: bigint;
}

/**
 * The token as Consul's CLI and api package pick it: a token file (`-token-file`, else
 * CONSUL_HTTP_TOKEN_FILE) wins when it holds one; else `-token`, else CONSUL_HTTP_TOKEN. The
 * CONSULATE_ spellings come first. A file's content is trimmed; one that cannot be read is an error.
 */
function tokenOf(values: ReadonlyMap<string, unknown>, env: NodeJS.ProcessEnv): string {
  const token = (values.get('token') as string | undefined) || env.CONSULATE_HTTP_TOKEN || env.CONSUL_HTTP_TOKEN || '';
  const file = (values.get('token-file') as string | undefined) || env.CONSULATE_HTTP_TOKEN_FILE || env.CONSUL_HTTP_TOKEN_FILE || '';
  if (file === '') return token;
  let fromFile: string;
  try {
    fromFile = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new HttpApiError(0, `Error loading token file: ${(err as Error).message}`);
  }
  return fromFile || token;
}

/** Go's url.Error names the method as `Get`, `Put`, `Delete`: the text a Consul CLI user knows. */
function goMethod(method: string): string {
  return method.charAt(0).toUpperCase() + method.slice(1).toLowerCase();
}

export class HttpApi {
  private readonly base: string;
  /** Read at the first request, so that an unreadable token file is that request's error. */
  private readonly token: () => string;

  constructor(
    values: ReadonlyMap<string, unknown>,
    env: NodeJS.ProcessEnv,
    private readonly datacenter = (values.get('datacenter') as string | undefined) ?? '',
    private readonly stale = values.get('stale') === true,
  ) {
    const flag = values.get('http-addr') as string | undefined;
    const address = flag || env.CONSULATE_HTTP_ADDR || env.CONSUL_HTTP_ADDR || 'http://127.0.0.1:8500';
    this.base = /^https?:\/\//.test(address) ? address.replace(/\/$/, '') : `http://${address}`;
    let token: string | undefined;
    this.token = () => (token ??= tokenOf(values, env));
  }

  get address(): string {
    return this.base;
  }

  /**
   * A JSON request; `allow404` turns a 404 into `{ status: 404 }` instead of an error; `signal`
   * abandons it (a stopped watch, a shut-down lock); `exactIntegers` names fields whose integers
   * are kept as decimal strings, as JSON numbers would round them (a KV pair's uint64 Flags).
   */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(`${this.base}${path}`);
    if (this.datacenter !== '') url.searchParams.set('dc', this.datacenter);
    if (this.stale) url.searchParams.set('stale', '');
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
    }
    const token = this.token();
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: token === '' ? undefined : { 'X-Consul-Token': token },
        body: options.raw !== undefined ? options.raw : options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal === undefined ? AbortSignal.timeout(Math.ceil(options.timeoutMs ?? DEFAULT_TIMEOUT_MS)) : AbortSignal.any([options.signal, AbortSignal.timeout(Math.ceil(options.timeoutMs ?? DEFAULT_TIMEOUT_MS))]),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      throw new HttpApiError(0, cause === 'ECONNREFUSED' ? `${goMethod(method)} "${url.origin}${url.pathname}": dial tcp ${url.host}: connect: connection refused` : (err as Error).message);
    }
    const indexHeader = response.headers.get('x-consul-index') ?? '0';
    const index = Number(indexHeader);
    const exactIndex = /^\d{1,20}$/.test(indexHeader) ? BigInt(indexHeader) : 0n;
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw new HttpApiError(0, (err as Error).message);
    }
    if (response.status === 404 && options.allow404) return { status: 404, body: undefined as T, index, exactIndex };
    if (response.status < 200 || response.status > 299) throw new HttpApiError(response.status, `Unexpected response code: ${response.status} (${text})`);
    const type = response.headers.get('content-type') ?? '';
    return { status: response.status, body: (type.includes('json') && text !== '' ? JSON.parse(quoteIntegers(text, options.exactIntegers ?? [])) : text) as T, index, exactIndex };
  }
}
