/**
 * Consul's KV reads from the view (agent/consul/kvs_endpoint.go Get/List/ListKeys,
 * state/kvs.go), with Consul's index rules (reference/consul-compat.md §4.3-4.4):
 *
 * - one key: its ModifyIndex when present, else the kvs table index (deletes included);
 * - a prefix: the highest ModifyIndex under it or the highest delete under it (the graveyard),
 *   whichever is higher; the table index when both are 0 or the prefix is "" (everything).
 */
import { decodeKv } from './kv-codec';
import { keys, kvKeyOf } from './keys';
import { StoredKv } from './model';
import { CatalogView, Row } from './view';

/** structs.DirEntry as Consul's JSON writes it, fields in Go's order. */
export interface DirEntry {
  readonly LockIndex: number;
  readonly Key: string;
  readonly Flags: bigint;
  /** base64, or null for an empty value. */
  readonly Value: string | null;
  /** Omitted when the key is not locked (`json:",omitempty"`). */
  readonly Session?: string;
  readonly CreateIndex: number;
  readonly ModifyIndex: number;
}

/** The entry a stored value holds; a value this catalog did not write reads as a bare value. */
export function kvOf(value: Uint8Array): StoredKv {
  return decodeKv(value) ?? { Flags: 0n, LockIndex: 0, Session: '', Value: value };
}

export function dirEntry(key: string, kv: StoredKv, createIndex: number, modifyIndex: number, options: { withValue: boolean } = { withValue: true }): DirEntry {
  const value = options.withValue && kv.Value.length > 0 ? Buffer.from(kv.Value).toString('base64') : null;
  const entry = { LockIndex: kv.LockIndex, Key: key, Flags: kv.Flags, Value: value };
  return kv.Session === '' ? { ...entry, CreateIndex: createIndex, ModifyIndex: modifyIndex } : { ...entry, Session: kv.Session, CreateIndex: createIndex, ModifyIndex: modifyIndex };
}

/** A KV entry as stored, with its indexes (a write's own changes have PENDING ones: kv-writes.ts). */
export interface KvEntry {
  readonly key: string;
  readonly kv: StoredKv;
  readonly createIndex: number;
  readonly modifyIndex: number;
}

function rowKv(row: Row): KvEntry {
  return { key: kvKeyOf(row.key), kv: kvOf(row.value), createIndex: row.createRevision, modifyIndex: row.modRevision };
}

function asDirEntry(entry: KvEntry): DirEntry {
  return dirEntry(entry.key, entry.kv, entry.createIndex, entry.modifyIndex);
}

/** An entry as a KV GET answers it: the DirEntry and the bare value. */
interface KvRead {
  readonly entry: DirEntry;
  readonly raw: Uint8Array;
}

/**
 * One key's entry, and its GET answer, made once per stored row (rows are immutable: a write
 * stores a new one): the blocking queries one write wakes on a key all read the same row. Lists
 * are not kept so: a recursive read of a large prefix would hold a decoded copy of all of it.
 */
const entryOfRow = new WeakMap<Row, KvEntry>();
const readOf = new WeakMap<KvEntry, KvRead>();

function kvRead(entry: KvEntry): KvRead {
  let read = readOf.get(entry);
  if (read === undefined) readOf.set(entry, (read = { entry: asDirEntry(entry), raw: entry.kv.Value }));
  return read;
}

/** KVS.Get: the entry (undefined when absent) and its index. */
export function getKv(view: CatalogView, key: string): { value: KvEntry | undefined; index: number } {
  const row = view.get(keys.kv(key));
  if (row === undefined) return { value: undefined, index: view.index('kvs') };
  let entry = entryOfRow.get(row);
  if (entry === undefined) entryOfRow.set(row, (entry = rowKv(row)));
  return { value: entry, index: row.modRevision };
}

/** KVS.List: every entry under `prefix`, in key order, and the list index. */
export function listKv(view: CatalogView, prefix: string): { value: KvEntry[]; index: number } {
  const rows = view.scan(keys.kv(prefix));
  return { value: rows.map(rowKv), index: listIndex(view, prefix, rows) };
}

/** KVS.Get as Consul's JSON: the DirEntry and the bare value (undefined when absent), and the index. */
export function readKvEntry(view: CatalogView, key: string): { value: Partial<KvRead>; index: number } {
  const { value, index } = getKv(view, key);
  return { value: value === undefined ? {} : kvRead(value), index };
}

/** KVS.List as Consul's JSON. */
export function listKvEntries(view: CatalogView, prefix: string): { value: DirEntry[]; index: number } {
  const { value, index } = listKv(view, prefix);
  return { value: value.map(asDirEntry), index };
}

/**
 * KVS.ListKeys: the keys under `prefix`; with a separator, each key cut after the first
 * separator past the prefix, duplicates dropped ("web/" for "web/a" and "web/b").
 */
export function listKvKeys(view: CatalogView, prefix: string, separator: string): { value: string[]; index: number } {
  const rows = view.scan(keys.kv(prefix));
  const out: string[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    const key = kvKeyOf(row.key);
    if (separator === '') {
      out.push(key);
      continue;
    }
    const at = key.indexOf(separator, prefix.length);
    if (at < 0) {
      out.push(key);
      continue;
    }
    const cut = key.slice(0, at + separator.length);
    if (!seen.has(cut)) {
      seen.add(cut);
      out.push(cut);
    }
  }
  return { value: out, index: listIndex(view, prefix, rows) };
}

function listIndex(view: CatalogView, prefix: string, rows: readonly Row[]): number {
  let index = 0;
  for (const row of rows) index = Math.max(index, row.modRevision);
  if (prefix === '') index = view.index('kvs');
  else index = Math.max(index, view.tombstoneIndex(keys.kv(prefix)));
  return index === 0 ? view.index('kvs') : index;
}
