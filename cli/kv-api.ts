/**
 * The KV and session calls that Consul's Go api package makes for locks, semaphores and watches
 * (api/kv.go, api/session.go), over HttpApi: a pair's uint64 Flags kept exact (as a decimal
 * string), an absent key as no pair, blocking reads with `index` and `wait` and a client deadline
 * past the server's longest answer (wait plus its 1/16 jitter).
 */
import { HttpApi, HttpApiError } from './http-api';

export type Api = Pick<HttpApi, 'request'>;

/** api.KVPair as decoded; `Flags` is the exact uint64 in decimal. */
export interface KvPair {
  readonly Key: string;
  readonly CreateIndex: number;
  readonly ModifyIndex: number;
  readonly LockIndex: number;
  readonly Flags: string;
  /** base64, or null for an empty value. */
  readonly Value: string | null;
  readonly Session: string;
}

export interface ReadOptions {
  /** Block until the index passes this; 0 answers at once. */
  readonly index?: number;
  /** How long the server may block (Go's `wait`); it adds up to 1/16 of jitter. */
  readonly waitMs?: number;
  /** `?consistent`: the leader confirms it still leads first (the lock monitor's reads). */
  readonly consistent?: boolean;
  readonly stale?: boolean;
  readonly signal?: AbortSignal;
}

export interface SessionEntry {
  readonly ID: string;
  readonly TTL: string;
}

/** A client deadline this far past the longest blocking answer. */
const BLOCKING_SLACK_MS = 10_000;
/** Consul's server-side default when a blocking read names no wait. */
export const DEFAULT_BLOCKING_WAIT_MS = 5 * 60_000;

export function kvPath(key: string): string {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
}

function readQuery(options: ReadOptions): { query: Record<string, string | undefined>; timeoutMs: number | undefined } {
  const query: Record<string, string | undefined> = {};
  if (options.consistent) query.consistent = '';
  if (options.stale) query.stale = '';
  const blocking = (options.index ?? 0) > 0;
  if (blocking) query.index = String(options.index);
  if (options.waitMs !== undefined && options.waitMs > 0) query.wait = `${Math.ceil(options.waitMs)}ms`;
  const waitMs = options.waitMs !== undefined && options.waitMs > 0 ? options.waitMs : DEFAULT_BLOCKING_WAIT_MS;
  return { query, timeoutMs: blocking ? waitMs + waitMs / 16 + BLOCKING_SLACK_MS : undefined };
}

function pairOf(raw: Record<string, unknown>): KvPair {
  return {
    Key: String(raw.Key ?? ''),
    CreateIndex: Number(raw.CreateIndex ?? 0),
    ModifyIndex: Number(raw.ModifyIndex ?? 0),
    LockIndex: Number(raw.LockIndex ?? 0),
    Flags: String(raw.Flags ?? '0'),
    Value: typeof raw.Value === 'string' ? raw.Value : null,
    Session: typeof raw.Session === 'string' ? raw.Session : '',
  };
}

/** KV.Get: the pair, or undefined when the key is absent; and the index to block on next. */
export async function kvGet(api: Api, key: string, options: ReadOptions = {}): Promise<{ pair?: KvPair; index: number; raw?: unknown }> {
  const { query, timeoutMs } = readQuery(options);
  const response = await api.request<Record<string, unknown>[]>('GET', kvPath(key), { query, timeoutMs, signal: options.signal, allow404: true, exactIntegers: ['Flags'] });
  if (response.status === 404 || !Array.isArray(response.body) || response.body.length === 0) return { index: response.index };
  return { pair: pairOf(response.body[0]), index: response.index, raw: response.body[0] };
}

/** KV.List: every pair under the prefix (null when none, as Go's nil slice); and the index. */
export async function kvList(api: Api, prefix: string, options: ReadOptions = {}): Promise<{ pairs: KvPair[] | null; index: number; raw: unknown[] | null }> {
  const { query, timeoutMs } = readQuery(options);
  const response = await api.request<Record<string, unknown>[]>('GET', kvPath(prefix), { query: { ...query, recurse: '' }, timeoutMs, signal: options.signal, allow404: true, exactIntegers: ['Flags'] });
  if (response.status === 404 || !Array.isArray(response.body)) return { pairs: null, index: response.index, raw: null };
  return { pairs: response.body.map(pairOf), index: response.index, raw: response.body };
}

export interface KvWrite {
  readonly key: string;
  /** The exact uint64 in decimal; "0" sends none. */
  readonly flags: string;
  readonly value?: Uint8Array;
}

async function kvPut(api: Api, write: KvWrite, extra: Record<string, string>): Promise<boolean> {
  const query: Record<string, string> = { ...extra };
  if (write.flags !== '0') query.flags = write.flags;
  const response = await api.request<unknown>('PUT', kvPath(write.key), { query, raw: write.value ?? new Uint8Array() });
  return response.body === true || response.body === 'true';
}

/** KV.Acquire: `?acquire=<session>`; whether the lock was taken. */
export function kvAcquire(api: Api, write: KvWrite, session: string): Promise<boolean> {
  return kvPut(api, write, { acquire: session });
}

/** KV.Release: `?release=<session>`. */
export function kvRelease(api: Api, write: KvWrite, session: string): Promise<boolean> {
  return kvPut(api, write, { release: session });
}

/** KV.CAS: written only when the key's ModifyIndex is still `modifyIndex` (0: only if absent). */
export function kvCas(api: Api, write: KvWrite, modifyIndex: number): Promise<boolean> {
  return kvPut(api, write, { cas: String(modifyIndex) });
}

/** KV.DeleteCAS. */
export async function kvDeleteCas(api: Api, key: string, modifyIndex: number): Promise<boolean> {
  const response = await api.request<unknown>('DELETE', kvPath(key), { query: { cas: String(modifyIndex) } });
  return response.body === true || response.body === 'true';
}

/** KV.Delete. */
export async function kvDelete(api: Api, key: string): Promise<void> {
  await api.request<unknown>('DELETE', kvPath(key));
}

/** Session.Create with the fields api.Session.Create sends when set. */
export async function sessionCreate(api: Api, entry: { readonly Name: string; readonly TTL: string; readonly Behavior?: string }): Promise<string> {
  const body: Record<string, string> = {};
  if (entry.Name !== '') body.Name = entry.Name;
  if (entry.Behavior !== undefined && entry.Behavior !== '') body.Behavior = entry.Behavior;
  if (entry.TTL !== '') body.TTL = entry.TTL;
  return (await api.request<{ ID: string }>('PUT', '/v1/session/create', { body })).body.ID;
}

/** Session.Renew: the session, or undefined when the server no longer knows it (404). */
export async function sessionRenew(api: Api, id: string): Promise<SessionEntry | undefined> {
  const response = await api.request<SessionEntry[]>('PUT', `/v1/session/renew/${encodeURIComponent(id)}`, { allow404: true });
  if (response.status === 404 || !Array.isArray(response.body)) return undefined;
  return response.body[0];
}

export async function sessionDestroy(api: Api, id: string): Promise<void> {
  await api.request<unknown>('PUT', `/v1/session/destroy/${encodeURIComponent(id)}`);
}

/** api.IsRetryableError: the agent could not be reached, or answered a 500. */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof HttpApiError)) return false;
  return err.status === 0 || err.status === 500;
}

/** Go's error text of a failed call: the HTTP API's text. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
