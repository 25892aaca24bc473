/**
 * `/v1/session/...` (agent/session_endpoint.go, agent/consul/session_endpoint.go): create,
 * destroy, renew (PUT); info, node, list (GET, blocking on the sessions table). Sessions and what
 * ending one does to its locks live in state/sessions.ts.
 */
import { ConsensusClient } from '../../lib/consensus-client';
import { LockDelays } from '../state/lock-delay';
import { SERF_CHECK_ID, SESSION_DEFAULTS, SessionCreate, createSession, destroySession, listSessions, nodeSessions, readSession, renewSession } from '../state/sessions';
import { ReadDeps, blockingRead, withSignal } from './blocking';
import { GoJsonError, decodeGoJson, go } from './go-decode';
import { parseGoDuration } from '../../lib/go-text';
import { HttpError, badRequest, notFound } from './http-errors';
import { HttpRequest, HttpResult, HttpRouter } from './http-server';
import { parseQueryOptions } from './query-options';

export interface SessionEndpointDeps extends ReadDeps {
  readonly datacenter: string;
  /** The node a session belongs to when the request names none (Consul: the agent's node). */
  readonly node: string;
  readonly consensus: Pick<ConsensusClient, 'kv' | 'lease'>;
  readonly lockDelays: LockDelays;
}

export { SESSION_DEFAULTS } from '../state/sessions';
/** structs.lockDelayMinThreshold: a LockDelay below 1000 (ns) was meant as seconds. */
const LOCK_DELAY_MIN_THRESHOLD_NS = 1000;

/** structs.Session as its UnmarshalJSON decodes it (an alias struct; unknown fields ignored). */
const SESSION_TYPE = go.struct('structs.Session', {
  ID: go.string(),
  Name: go.string(),
  Node: go.string(),
  LockDelay: go.any(),
  Behavior: go.string('structs.SessionBehavior'),
  TTL: go.string(),
  NodeChecks: go.slice(go.string()),
  ServiceChecks: go.slice(go.struct('structs.ServiceCheck', { ID: go.string(), Namespace: go.string() })),
  Checks: go.slice(go.string('types.CheckID')),
  CreateIndex: go.uint64(),
  ModifyIndex: go.uint64(),
});

export function registerSessionEndpoints(router: HttpRouter, deps: SessionEndpointDeps): void {
  router.on(['PUT'], '/v1/session/create', async (request) => {
    const session = await decodeSessionCreate(request, deps.node);
    return { body: { ID: await createSession(deps, session) } };
  });

  router.on(['PUT'], '/v1/session/destroy/:id', async ({ params }) => {
    if (params.id === '') throw badRequest('Missing session');
    await destroySession(deps, params.id);
    return { body: true };
  });

  router.on(['PUT'], '/v1/session/renew/:id', async ({ query, params }) => {
    parseQueryOptions(query, deps.datacenter);
    if (params.id === '') throw badRequest('Missing session');
    const session = await renewSession(deps, params.id);
    if (session === undefined) throw notFound(`Session id '${params.id}' not found`);
    return { body: [session] };
  });

  router.on(['GET'], '/v1/session/info/:id', async ({ query, params, signal }) => {
    const options = parseQueryOptions(query, deps.datacenter);
    if (params.id === '') throw badRequest('Missing session');
    return read(await blockingRead(deps, withSignal(options, signal), ['sessions'], () => readSession(deps.view, params.id)));
  });

  router.on(['GET'], '/v1/session/node/:node', async ({ query, params, signal }) => {
    const options = parseQueryOptions(query, deps.datacenter);
    if (params.node === '') throw badRequest('Missing node name');
    return read(await blockingRead(deps, withSignal(options, signal), ['sessions'], () => nodeSessions(deps.view, params.node)));
  });

  router.on(['GET'], '/v1/session/list', async ({ query, signal }) => {
    const options = parseQueryOptions(query, deps.datacenter);
    return read(await blockingRead(deps, withSignal(options, signal), ['sessions'], () => listSessions(deps.view)));
  });
}

function read<T>(result: { value: T; headers: Record<string, string> }): HttpResult {
  return { body: result.value, headers: result.headers };
}

/**
 * The create body over Consul's defaults (node, serfHealth, 15 s lock-delay, release), with its
 * fix-ups: a LockDelay under 1000 is seconds, a string is a Go duration; `Checks: []` empties
 * NodeChecks and a lone default serfHealth in Checks defers to NodeChecks
 * (fixupEmptySessionChecks). A body is only read when it has a length, as Consul does.
 */
async function decodeSessionCreate(request: HttpRequest, localNode: string): Promise<SessionCreate> {
  let session = { Name: '', Node: localNode, LockDelayNs: SESSION_DEFAULTS.lockDelayNs as number, Behavior: SESSION_DEFAULTS.behavior as string, TTL: '', NodeChecks: [SERF_CHECK_ID] as string[] | undefined, ServiceChecks: [] as { ID: string }[], Checks: [SERF_CHECK_ID] as string[] | undefined };
  const body = await request.body();
  if (body.length === 0) return finish(session);
  let typed: Record<string, unknown>;
  let present: Record<string, unknown>;
  try {
    typed = decodeGoJson(body, SESSION_TYPE) as Record<string, unknown>;
    const any = decodeGoJson(body, go.any());
    present = any !== null && typeof any === 'object' && !Array.isArray(any) ? (any as Record<string, unknown>) : {};
  } catch (err) {
    if (err instanceof GoJsonError) throw new HttpError(400, `Request decode failed: ${err.message}`);
    throw err;
  }
  // Which fields the body has, and which it sets to null (a null slice empties it; a null
  // string leaves the default), matched to Go's field names case-insensitively.
  const has = (field: string) => Object.keys(present).some((key) => key.toLowerCase() === field.toLowerCase());
  const raw = (field: string) => Object.entries(present).filter(([key]) => key.toLowerCase() === field.toLowerCase()).pop()?.[1];
  for (const field of ['Name', 'Node', 'Behavior', 'TTL'] as const) if (has(field) && raw(field) !== null) session = { ...session, [field]: typed[field] as string };
  if (has('NodeChecks')) session.NodeChecks = raw('NodeChecks') === null ? undefined : (typed.NodeChecks as string[]);
  if (has('Checks')) session.Checks = raw('Checks') === null ? undefined : (typed.Checks as string[]);
  if (has('ServiceChecks')) session.ServiceChecks = raw('ServiceChecks') === null ? [] : ((typed.ServiceChecks as { ID: string }[]) ?? []);
  if (has('LockDelay') && raw('LockDelay') !== null) session.LockDelayNs = lockDelayOf(raw('LockDelay'));
  return finish(session);
}

/** structs.Session.UnmarshalJSON's LockDelay: a Go duration string or a number of ns; under 1000 means seconds. */
function lockDelayOf(value: unknown): number {
  let ns = 0;
  if (typeof value === 'string') {
    const parsed = parseGoDuration(value);
    if (parsed.error !== undefined) throw new HttpError(400, `Request decode failed: ${parsed.error}`);
    ns = parsed.ns;
  } else if (typeof value === 'number') {
    ns = Math.trunc(value);
  }
  return ns < LOCK_DELAY_MIN_THRESHOLD_NS ? ns * 1e9 : ns;
}

function finish(session: { Name: string; Node: string; LockDelayNs: number; Behavior: string; TTL: string; NodeChecks: string[] | undefined; ServiceChecks: { ID: string }[]; Checks: string[] | undefined }): SessionCreate {
  let { NodeChecks: nodeChecks, Checks: checks } = session;
  // fixupEmptySessionChecks (agent/session_endpoint.go), in its order.
  if ((checks ?? []).length === 0) nodeChecks = [];
  else if (checks!.length === 1 && checks![0] === SERF_CHECK_ID) checks = undefined;
  else if ((nodeChecks ?? []).length === 0) checks = undefined;
  return { Name: session.Name, Node: session.Node, LockDelayNs: session.LockDelayNs, Behavior: session.Behavior, TTL: session.TTL, NodeChecks: nodeChecks ?? [], ServiceChecks: session.ServiceChecks.map((check) => ({ ID: check.ID })), Checks: checks ?? [] };
}
