/**
 * Consul's data model as it is stored and served: the JSON shapes of `/v1/catalog`, `/v1/health`
 * and `/v1/kv` (reference/consul-compat.md §4), field names as Go writes them. CreateIndex and
 * ModifyIndex are not stored: they are the consensus revisions of the key (create and mod).
 */
import { posix } from 'node:path';

export type CheckStatus = 'passing' | 'warning' | 'critical';

export interface TaggedAddress {
  readonly Address: string;
  readonly Port: number;
}

export interface StoredNode {
  readonly ID: string;
  readonly Node: string;
  readonly Address: string;
  readonly Datacenter: string;
  readonly TaggedAddresses: Readonly<Record<string, string>>;
  readonly Meta: Readonly<Record<string, string>>;
}

export interface StoredService {
  readonly ID: string;
  readonly Service: string;
  readonly Tags: readonly string[];
  readonly Address: string;
  readonly TaggedAddresses: Readonly<Record<string, TaggedAddress>>;
  readonly Meta: Readonly<Record<string, string>>;
  readonly Port: number;
  readonly Weights: { readonly Passing: number; readonly Warning: number };
  readonly EnableTagOverride: boolean;
}

export interface StoredCheck {
  readonly Node: string;
  readonly CheckID: string;
  readonly Name: string;
  readonly Status: CheckStatus;
  readonly Notes: string;
  readonly Output: string;
  readonly ServiceID: string;
  readonly ServiceName: string;
  readonly ServiceTags: readonly string[];
  readonly Type: string;
}

export interface StoredSession {
  readonly ID: string;
  readonly Name: string;
  readonly Node: string;
  /** Go duration text, e.g. "15s". */
  readonly LockDelay: string;
  readonly Behavior: 'release' | 'delete';
  /** Go duration text, "" for none. */
  readonly TTL: string;
  readonly NodeChecks: readonly string[];
  readonly ServiceChecks: readonly { readonly ID: string }[];
  /** The consensus lease that keeps the session alive (0 for none). */
  readonly LeaseID: string;
}

/** A KV entry's envelope around its value: what Consul keeps beside the bytes. */
export interface StoredKv {
  readonly Flags: bigint;
  readonly LockIndex: number;
  readonly Session: string;
  readonly Value: Uint8Array;
}

/** Consul's serfHealth check (agent/structs): the reconciler writes it from gossip state. */
export const SERF_HEALTH = {
  CheckID: 'serfHealth',
  Name: 'Serf Health Status',
  alive: 'Agent alive and reachable',
  failed: 'Agent not live or unreachable',
} as const;

/** Node meta key with the node's network segment (`structs.MetaSegmentKey`). */
export const META_SEGMENT_KEY = 'consul-network-segment';

/** The largest KV value Consul accepts (raft.SuggestedMaxDataSize). */
export const MAX_KV_VALUE_BYTES = 512 * 1024;

/**
 * Why a (non-empty) KV key is refused, with Consul's texts (agent/kvs_endpoint.go validateKVKey, the
 * 2025 path traversal fix), or undefined. Consul's check for file-like suffixes (`.json`, `.txt` ...)
 * is left out: it would refuse keys that existing users have. A NUL is refused too (Consul has no
 * text for it): it ends the key in C and Go tools that read it back.
 */
export function kvKeyProblem(key: string): string | undefined {
  if (key.startsWith('/')) return "key must not begin with a '/'";
  if (key.includes('../') || key.includes('..\\')) return 'key contains invalid path traversal sequence';
  if (ENCODED_TRAVERSAL.some((sequence) => key.toLowerCase().includes(sequence))) return 'key contains encoded path traversal sequence';
  const normalized = posix.normalize(key);
  if (normalized.startsWith('..') || normalized.includes('/..')) return 'key contains path traversal sequence after normalization';
  if (key.includes('\0')) return 'key must not contain a NUL character';
  return undefined;
}

/** Percent-encoded `../` and `..\\` as Consul looks for them in keys. */
const ENCODED_TRAVERSAL = ['%2e%2e%2f', '%2e%2e/', '..%2f', '%2e%2e%5c'] as const;
