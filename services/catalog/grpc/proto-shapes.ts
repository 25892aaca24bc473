/**
 * The catalog's model as gRPC messages (proto/consulate/catalog/v1), field for field with Consul's
 * (the JSON twin is http/consul-shapes.ts): CreateIndex and ModifyIndex are the row's consensus
 * revisions, durations are google.protobuf.Duration, check states an enum.
 */
import { HealthCheck, HealthStatus, Node, Service } from '../../gen/consulate/catalog/v1/catalog';
import { KVEntry } from '../../gen/consulate/catalog/v1/kv';
import { Session, SessionBehavior } from '../../gen/consulate/catalog/v1/session';
import { Duration } from '../../gen/google/protobuf/duration';
import { parseGoDuration } from '../../lib/go-text';
import { Indexed } from '../state/catalog-rows';
import { KvEntry } from '../state/kv-reads';
import { CheckStatus, StoredCheck, StoredNode, StoredService } from '../state/model';
import { SessionJson } from '../state/sessions';

export function nodeMessage(node: Indexed<StoredNode>): Node {
  const n = node.value;
  return {
    id: n.ID,
    name: n.Node,
    address: n.Address,
    datacenter: n.Datacenter,
    taggedAddresses: { ...(n.TaggedAddresses ?? {}) },
    meta: { ...(n.Meta ?? {}) },
    createIndex: BigInt(node.createIndex),
    modifyIndex: BigInt(node.modifyIndex),
  };
}

export function serviceMessage(service: Indexed<StoredService>): Service {
  const s = service.value;
  const weights = s.Weights ?? { Passing: 1, Warning: 1 };
  return {
    id: s.ID,
    name: s.Service,
    tags: [...(s.Tags ?? [])],
    address: s.Address,
    taggedAddresses: Object.fromEntries(Object.entries(s.TaggedAddresses ?? {}).map(([name, { Address, Port }]) => [name, { address: Address, port: Port }])),
    meta: { ...(s.Meta ?? {}) },
    port: s.Port,
    weights: { passing: weights.Passing, warning: weights.Warning },
    enableTagOverride: s.EnableTagOverride === true,
    createIndex: BigInt(service.createIndex),
    modifyIndex: BigInt(service.modifyIndex),
  };
}

const STATUS_BY_TEXT: Readonly<Record<string, HealthStatus>> = {
  passing: HealthStatus.HEALTH_STATUS_PASSING,
  warning: HealthStatus.HEALTH_STATUS_WARNING,
  critical: HealthStatus.HEALTH_STATUS_CRITICAL,
};

/** A stored status as the enum; one Consul does not know (stored through HTTP as given) is unspecified. */
export function healthStatusOf(status: string): HealthStatus {
  return STATUS_BY_TEXT[status.toLowerCase()] ?? HealthStatus.HEALTH_STATUS_UNSPECIFIED;
}

/** The enum as Consul's word; '' for unspecified, which a registration stores as critical. */
export function statusText(status: HealthStatus): CheckStatus | '' | undefined {
  switch (status) {
    case HealthStatus.HEALTH_STATUS_UNSPECIFIED:
      return '';
    case HealthStatus.HEALTH_STATUS_PASSING:
      return 'passing';
    case HealthStatus.HEALTH_STATUS_WARNING:
      return 'warning';
    case HealthStatus.HEALTH_STATUS_CRITICAL:
      return 'critical';
    default:
      return undefined;
  }
}

export function checkMessage(check: Indexed<StoredCheck>): HealthCheck {
  const c = check.value;
  return {
    node: c.Node,
    checkId: c.CheckID,
    name: c.Name,
    status: healthStatusOf(c.Status),
    notes: c.Notes,
    output: c.Output,
    serviceId: c.ServiceID,
    serviceName: c.ServiceName,
    serviceTags: [...(c.ServiceTags ?? [])],
    type: c.Type ?? '',
    createIndex: BigInt(check.createIndex),
    modifyIndex: BigInt(check.modifyIndex),
  };
}

/** A KV entry; `withValue: false` blanks the value (a transaction's write results, as Consul's). */
export function kvEntryMessage(entry: KvEntry, options: { withValue: boolean } = { withValue: true }): KVEntry {
  return {
    key: entry.key,
    value: options.withValue ? Buffer.from(entry.kv.Value) : Buffer.alloc(0),
    flags: entry.kv.Flags,
    lockIndex: BigInt(entry.kv.LockIndex),
    session: entry.kv.Session,
    createIndex: BigInt(entry.createIndex),
    modifyIndex: BigInt(entry.modifyIndex),
  };
}

export function sessionMessage(session: SessionJson): Session {
  const ttlNs = session.TTL === '' ? 0 : (parseGoDuration(session.TTL).ns ?? 0);
  return {
    id: session.ID,
    name: session.Name,
    node: session.Node,
    lockDelay: durationOfNs(session.LockDelay),
    behavior: session.Behavior === 'delete' ? SessionBehavior.SESSION_BEHAVIOR_DELETE : SessionBehavior.SESSION_BEHAVIOR_RELEASE,
    ttl: ttlNs > 0 ? durationOfNs(ttlNs) : undefined,
    nodeChecks: [...session.NodeChecks],
    serviceChecks: (session.ServiceChecks ?? []).map((check) => check.ID),
    createIndex: BigInt(session.CreateIndex),
    modifyIndex: BigInt(session.ModifyIndex),
  };
}

export function durationOfNs(ns: number): Duration {
  const whole = Math.trunc(ns / 1e9);
  return { seconds: BigInt(whole), nanos: Math.round(ns - whole * 1e9) };
}

export function durationOfMs(ms: number): Duration {
  return durationOfNs(ms * 1e6);
}

export function nsOfDuration(duration: Duration): number {
  return Number(duration.seconds) * 1e9 + duration.nanos;
}

export function msOfDuration(duration: Duration): number {
  return nsOfDuration(duration) / 1e6;
}
