/**
 * Consul's sessions on consensus keys (agent/consul/session_endpoint.go Apply/Renew,
 * state/session.go): a session is one `/se/<id>` row; a session with a TTL lives on a consensus
 * lease of twice the TTL (structs.SessionTTLMultiplier: Consul lets a session go un-renewed for up
 * to 2×TTL before it invalidates it), so the consensus store deletes it by itself when its
 * holder stops renewing.
 *
 * Ending a session (destroy, a failed check, a removed node) is one Txn: the session row goes,
 * and with it every lock it holds is released (Behavior "release": Session cleared, LockIndex
 * kept) or its keys deleted (Behavior "delete"); the keys then sit under the session's
 * lock-delay. A session whose lease expired is already gone from the store: the session reaper
 * (session-reaper.ts) releases what it held.
 */
import { randomUUID } from 'node:crypto';

import { ConsensusClient } from '../../lib/consensus-client';
import { formatGoDuration, parseGoDuration } from '../../lib/go-text';
import { catchUpWithLeader } from './catch-up';
import { keys } from './keys';
import { kvOf } from './kv-reads';
import { kvDelete, kvEntryAt, kvSet } from './kv-writes';
import { StoredCheck, StoredSession } from './model';
import { LockDelays } from './lock-delay';
import { CatalogView, Row } from './view';
import { WritePlan, commitPlan } from './write-plan';

/** structs.SessionTTLMax, Consul's default session_ttl_min, structs.SessionTTLMultiplier. */
export const SESSION_TTL_MAX_NS = 24 * 3600e9;
export const SESSION_TTL_MIN_NS = 10e9;
export const SESSION_TTL_MULTIPLIER = 2;
/** The check every session has by default (structs.SerfCheckID). */
export const SERF_CHECK_ID = 'serfHealth';
const LEASE_CALL_TIMEOUT_MS = 5_000;

/** A session row as stored: StoredSession, plus the deprecated `Checks` Consul still echoes. */
export interface SessionRecord extends StoredSession {
  readonly Checks?: readonly string[];
}

/** structs.Session as Consul's JSON writes it, fields in Go's order. */
export interface SessionJson {
  readonly ID: string;
  readonly Name: string;
  readonly Node: string;
  /** Nanoseconds (a Go time.Duration). */
  readonly LockDelay: number;
  readonly Behavior: string;
  readonly TTL: string;
  readonly NodeChecks: readonly string[];
  readonly ServiceChecks: readonly { readonly ID: string; readonly Namespace: string }[] | null;
  readonly Checks?: readonly string[];
  readonly CreateIndex: number;
  readonly ModifyIndex: number;
}

/** A session create request after the HTTP layer's defaults and fix-ups (session_endpoint.go). */
export interface SessionCreate {
  readonly Name: string;
  readonly Node: string;
  readonly LockDelayNs: number;
  readonly Behavior: string;
  readonly TTL: string;
  readonly NodeChecks: readonly string[];
  readonly ServiceChecks: readonly { readonly ID: string }[];
  readonly Checks: readonly string[];
}

/** Consul's defaults for a new session (agent/session_endpoint.go SessionCreate). */
export const SESSION_DEFAULTS = { lockDelayNs: 15e9, behavior: 'release' } as const;

/**
 * A session error with Consul's text; Consul answers these with a 500 (plain RPC errors).
 * 'invalid': the request is malformed; 'precondition': the catalog's state refuses it (the node
 * or a check is missing, a check is critical).
 */
export class SessionError extends Error {
  override readonly name = 'SessionError';
  constructor(
    message: string,
    readonly reason: 'invalid' | 'precondition' = 'invalid',
  ) {
    super(message);
  }
}

export interface SessionDeps {
  readonly view: CatalogView;
  readonly consensus: Pick<ConsensusClient, 'kv' | 'lease'>;
}

export function sessionOf(row: Pick<Row, 'value'>): SessionRecord | undefined {
  try {
    return JSON.parse(Buffer.from(row.value).toString('utf8')) as SessionRecord;
  } catch {
    return undefined;
  }
}

export function lockDelayNsOf(record: SessionRecord): number {
  return parseGoDuration(record.LockDelay).ns ?? 0;
}

export function sessionJson(record: SessionRecord, row: Pick<Row, 'createRevision' | 'modRevision'>): SessionJson {
  const base = {
    ID: record.ID,
    Name: record.Name,
    Node: record.Node,
    LockDelay: lockDelayNsOf(record),
    Behavior: record.Behavior,
    TTL: record.TTL,
    NodeChecks: record.NodeChecks ?? [],
    ServiceChecks: record.ServiceChecks === undefined || record.ServiceChecks.length === 0 ? null : record.ServiceChecks.map((check) => ({ ID: check.ID, Namespace: '' })),
  };
  const checks = record.Checks !== undefined && record.Checks.length > 0 ? { Checks: record.Checks } : {};
  return { ...base, ...checks, CreateIndex: row.createRevision, ModifyIndex: row.modRevision };
}

function sessionRows(view: CatalogView): { record: SessionRecord; row: Row }[] {
  return view.scan(keys.prefix('sessions')).flatMap((row) => {
    const record = sessionOf(row);
    return record === undefined ? [] : [{ record, row }];
  });
}

/** Session.Get: the session (an empty list when unknown) and the sessions table index. */
export function readSession(view: CatalogView, id: string): { value: SessionJson[]; index: number } {
  const row = view.get(keys.session(id.toLowerCase()));
  const record = row === undefined ? undefined : sessionOf(row);
  return { value: record === undefined || row === undefined ? [] : [sessionJson(record, row)], index: view.index('sessions') };
}

/** Session.List, in ID order. */
export function listSessions(view: CatalogView): { value: SessionJson[]; index: number } {
  return { value: sessionRows(view).map(({ record, row }) => sessionJson(record, row)), index: view.index('sessions') };
}

/** Session.NodeSessions: node names match case-insensitively, as Consul's node index does. */
export function nodeSessions(view: CatalogView, node: string): { value: SessionJson[]; index: number } {
  const wanted = node.toLowerCase();
  return { value: sessionRows(view).filter(({ record }) => record.Node.toLowerCase() === wanted).map(({ record, row }) => sessionJson(record, row)), index: view.index('sessions') };
}

/** Session.Apply(create)'s checks, with its texts, before anything is written. */
function validate(request: SessionCreate): { behavior: 'release' | 'delete'; ttlNs: number } {
  if (request.Node === '') throw new SessionError('Must provide Node');
  let behavior: 'release' | 'delete';
  if (request.Behavior === '' || request.Behavior === 'release') behavior = 'release';
  else if (request.Behavior === 'delete') behavior = 'delete';
  else throw new SessionError(`Invalid Behavior setting '${request.Behavior}'`);
  let ttlNs = 0;
  if (request.TTL !== '') {
    const parsed = parseGoDuration(request.TTL);
    if (parsed.error !== undefined) throw new SessionError(`Session TTL '${request.TTL}' invalid: ${parsed.error}`);
    ttlNs = parsed.ns;
    if (ttlNs !== 0 && (ttlNs < SESSION_TTL_MIN_NS || ttlNs > SESSION_TTL_MAX_NS)) {
      throw new SessionError(`Invalid Session TTL '${ttlNs}', must be between [${formatGoDuration(SESSION_TTL_MIN_NS)}=${formatGoDuration(SESSION_TTL_MAX_NS)}]`);
    }
  }
  return { behavior, ttlNs };
}

/** The check IDs a session depends on (structs.Session.CheckIDs). */
function checkIdsOf(session: Pick<SessionRecord, 'NodeChecks' | 'ServiceChecks' | 'Checks'>): string[] {
  return [...(session.Checks ?? []), ...(session.NodeChecks ?? []), ...(session.ServiceChecks ?? []).map((check) => check.ID)];
}

function checkStatus(plan: WritePlan, node: string, checkId: string): string | undefined {
  const row = plan.get(keys.check(node, checkId));
  if (row === undefined) return undefined;
  return (JSON.parse(Buffer.from(row.value).toString('utf8')) as StoredCheck).Status;
}

/**
 * Creates a session; its ID. The node must be registered and every check registered and not
 * critical (state/session.go sessionCreateTxn), checked in the same Txn that writes the session.
 */
export async function createSession(deps: SessionDeps, request: SessionCreate): Promise<string> {
  const { behavior, ttlNs } = validate(request);
  const id = randomUUID();
  let lease = '0';
  if (ttlNs > 0) {
    const ttlSeconds = Math.ceil((ttlNs * SESSION_TTL_MULTIPLIER) / 1e9);
    lease = (await deps.consensus.lease('leaseGrant', { ttl: BigInt(ttlSeconds), id: 0n }, { timeoutMs: LEASE_CALL_TIMEOUT_MS, idempotent: false })).id.toString();
  }
  const record: SessionRecord = {
    ID: id,
    Name: request.Name,
    Node: request.Node,
    LockDelay: formatGoDuration(request.LockDelayNs),
    Behavior: behavior,
    TTL: request.TTL,
    NodeChecks: request.NodeChecks,
    ServiceChecks: request.ServiceChecks,
    ...(request.Checks.length > 0 ? { Checks: request.Checks } : {}),
    LeaseID: lease,
  };
  try {
    await commitPlan(deps, (plan) => {
      if (plan.get(keys.node(request.Node)) === undefined) throw new SessionError('Missing node registration', 'precondition');
      for (const checkId of checkIdsOf(record)) {
        const status = checkStatus(plan, request.Node, checkId);
        if (status === undefined) throw new SessionError(`Missing check '${checkId}' registration`, 'precondition');
        if (status === 'critical') throw new SessionError(`Check '${checkId}' is in ${status} state`, 'precondition');
      }
      plan.put(keys.session(id), Buffer.from(JSON.stringify(record)), lease);
      return { value: id, commit: true };
    });
  } catch (err) {
    if (lease !== '0') void deps.consensus.lease('leaseRevoke', { id: BigInt(lease) }, { timeoutMs: LEASE_CALL_TIMEOUT_MS, idempotent: true }).catch(() => undefined);
    throw err;
  }
  return id;
}

/**
 * What ending session `id` does to its locks (state/session.go deleteSessionTxn), planned on
 * `plan`: each key it holds released or deleted. Returns the keys.
 */
export function endSessionLocks(plan: WritePlan, id: string, behavior: string): string[] {
  const wanted = id.toLowerCase();
  const held: string[] = [];
  for (const [stored, row] of plan.scan(keys.prefix('kvs'), { track: false })) {
    if (kvOf(row.value).Session.toLowerCase() === wanted) held.push(stored.slice(keys.prefix('kvs').length));
  }
  for (const key of held) {
    const entry = kvEntryAt(plan, key);
    if (entry === undefined) continue;
    if (behavior === 'delete') kvDelete(plan, key);
    else kvSet(plan, { key, flags: entry.kv.Flags, value: entry.kv.Value, session: '', lockIndex: entry.kv.LockIndex }, true);
  }
  return held;
}

/**
 * Ends session `id`: its row and its locks in one Txn, then the lock-delay and the lease. An
 * unknown session is no error (Session.Apply returns nil for it).
 */
export async function destroySession(deps: SessionDeps & { readonly lockDelays: LockDelays }, id: string): Promise<void> {
  const { value } = await commitPlan(deps, (plan) => {
    const row = plan.get(keys.session(id.toLowerCase()));
    const record = row === undefined ? undefined : sessionOf(row);
    if (record === undefined) return { value: undefined, commit: false };
    plan.delete(keys.session(id.toLowerCase()));
    return { value: { record, released: endSessionLocks(plan, record.ID, record.Behavior) }, commit: true };
  });
  if (value === undefined) return;
  const delayMs = lockDelayNsOf(value.record) / 1e6;
  for (const key of value.released) deps.lockDelays.delay(key, delayMs);
  if (value.record.LeaseID !== '0') {
    await deps.consensus.lease('leaseRevoke', { id: BigInt(value.record.LeaseID) }, { timeoutMs: LEASE_CALL_TIMEOUT_MS, idempotent: true }).catch(() => undefined);
  }
}

/**
 * Session.Renew: restarts the session's TTL; the session, or undefined when it is gone (its
 * lease expired, or it never existed).
 */
export async function renewSession(deps: SessionDeps, id: string): Promise<SessionJson | undefined> {
  await catchUpWithLeader(deps.view, deps.consensus);
  const row = deps.view.get(keys.session(id.toLowerCase()));
  const record = row === undefined ? undefined : sessionOf(row);
  if (row === undefined || record === undefined) return undefined;
  if (record.LeaseID !== '0') {
    const response = await deps.consensus.lease('leaseKeepAlive', { id: BigInt(record.LeaseID) }, { timeoutMs: LEASE_CALL_TIMEOUT_MS, idempotent: true });
    // The server answers a lease that is gone with TTL 0: the session expired just now.
    if (response.ttl <= 0n) return undefined;
  }
  return sessionJson(record, row);
}

/** Why a live session must end (Consul invalidates it), or undefined when it may live on. */
export function invalidationOf(view: CatalogView, record: SessionRecord): string | undefined {
  if (view.get(keys.node(record.Node)) === undefined) return `node ${record.Node} was deregistered`;
  for (const checkId of checkIdsOf(record)) {
    const row = view.get(keys.check(record.Node, checkId));
    if (row === undefined) return `check ${checkId} was deregistered`;
    const status = (JSON.parse(Buffer.from(row.value).toString('utf8')) as StoredCheck).Status;
    if (status === 'critical') return `check ${checkId} is critical`;
  }
  return undefined;
}
