/**
 * gRPC adapter for consulate.catalog.v1.SessionService: Consul's `/v1/session` on
 * state/sessions.ts, as the HTTP endpoints use it. The defaults are Consul's (the catalog's node,
 * serfHealth, a 15 s lock-delay, release); the message fields say which are set.
 */
import { CreateRequest, SessionBehavior, SessionServiceServer } from '../../gen/consulate/catalog/v1/session';
import { formatGoDuration } from '../../lib/go-text';
import { refuseOtherDatacenter } from '../state/errors';
import { SERF_CHECK_ID, SESSION_DEFAULTS, SessionCreate, createSession, destroySession, listSessions, nodeSessions, readSession, renewSession } from '../state/sessions';
import { CatalogApiDeps } from './catalog-api';
import { nsOfDuration, sessionMessage } from './proto-shapes';
import { queryRead } from './query';
import { invalidArgument, notFound, unary } from './status';

export function sessionService(deps: CatalogApiDeps): SessionServiceServer {
  const { view, logger } = deps;
  return {
    create: unary(logger, async (call) => {
      refuseOtherDatacenter(call.request.datacenter, deps.datacenter);
      return { id: await createSession(deps, sessionCreate(call.request, deps.node)) };
    }),

    destroy: unary(logger, async (call) => {
      const { id, datacenter } = call.request;
      refuseOtherDatacenter(datacenter, deps.datacenter);
      if (id === '') throw invalidArgument('Missing session');
      await destroySession(deps, id);
      return {};
    }),

    renew: unary(logger, async (call) => {
      const { id, datacenter } = call.request;
      refuseOtherDatacenter(datacenter, deps.datacenter);
      if (id === '') throw invalidArgument('Missing session');
      const session = await renewSession(deps, id);
      if (session === undefined) throw notFound(`Session id '${id}' not found`, view.index('sessions'));
      return { session: sessionMessage(session) };
    }),

    info: unary(logger, async (call) => {
      const { id, query } = call.request;
      if (id === '') throw invalidArgument('Missing session');
      const read = await queryRead(deps, call, query, ['sessions'], () => readSession(view, id));
      const [session] = read.value;
      if (session === undefined) throw notFound(`Session id '${id}' not found`, Number(read.meta.index));
      return { session: sessionMessage(session), meta: read.meta };
    }),

    list: unary(logger, async (call) => {
      const { node, query } = call.request;
      const read = await queryRead(deps, call, query, ['sessions'], () => (node === '' ? listSessions(view) : nodeSessions(view, node)));
      return { sessions: read.value.map(sessionMessage), meta: read.meta };
    }),
  };
}

/** The request over Consul's defaults; state/sessions.ts validates it with Consul's texts. */
function sessionCreate(request: CreateRequest, localNode: string): SessionCreate {
  const lockDelayNs = request.lockDelay === undefined ? SESSION_DEFAULTS.lockDelayNs : nsOfDuration(request.lockDelay);
  if (lockDelayNs < 0) throw invalidArgument(`lock_delay must not be negative (got ${formatGoDuration(lockDelayNs)})`);
  const ttlNs = request.ttl === undefined ? 0 : nsOfDuration(request.ttl);
  return {
    Name: request.name,
    Node: request.node || localNode,
    LockDelayNs: lockDelayNs,
    Behavior: behaviorOf(request.behavior),
    // A Go duration, as Consul's TTL field is: its range is checked (10s to 24h) with Consul's text.
    TTL: ttlNs === 0 ? '' : formatGoDuration(ttlNs),
    NodeChecks: request.nodeChecks === undefined ? [SERF_CHECK_ID] : request.nodeChecks.checkIds,
    ServiceChecks: request.serviceChecks.map((id) => ({ ID: id })),
    Checks: [],
  };
}

function behaviorOf(behavior: SessionBehavior): string {
  switch (behavior) {
    case SessionBehavior.SESSION_BEHAVIOR_UNSPECIFIED:
      return SESSION_DEFAULTS.behavior;
    case SessionBehavior.SESSION_BEHAVIOR_RELEASE:
      return 'release';
    case SessionBehavior.SESSION_BEHAVIOR_DELETE:
      return 'delete';
    default:
      // A value this catalog does not know: state/sessions.ts refuses it with Consul's text.
      return `${behavior}`;
  }
}
