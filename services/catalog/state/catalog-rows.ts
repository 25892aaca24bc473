/**
 * Consul's tables read from the view: the rows of keys.ts decoded into model.ts shapes, each with
 * its CreateIndex and ModifyIndex (the key's create and mod revisions). The writes of
 * catalog-writes.ts and the HTTP endpoints read through here.
 *
 * Rows are immutable (a change replaces the Row object), so a decoded row is cached on its Row:
 * a blocking query that re-runs on every change decodes only what changed.
 */
import { StoredCheck, StoredNode, StoredService } from './model';
import { keys } from './keys';
import { CatalogView, Row } from './view';

export interface Indexed<T> {
  readonly value: T;
  readonly row: Row;
  readonly createIndex: number;
  readonly modifyIndex: number;
}

/** A service or check row with the key component of its node (lower-cased, URI-encoded). */
export interface NodeIndexed<T> extends Indexed<T> {
  readonly nodeKey: string;
}

const decoded = new WeakMap<Row, unknown>();

function decode<T>(row: Row): T {
  let value = decoded.get(row);
  if (value === undefined) {
    try {
      value = JSON.parse(Buffer.from(row.value).toString('utf8'));
    } catch (err) {
      throw new Error(`catalog row ${row.key} at revision ${row.modRevision} is not JSON (${(err as Error).message}); rewrite it by registering again`);
    }
    decoded.set(row, value);
  }
  return value as T;
}

function indexed<T>(row: Row): Indexed<T> {
  return { value: decode<T>(row), row, createIndex: row.createRevision, modifyIndex: row.modRevision };
}

/** The node component of a `/c/s/<node>/<id>` or `/c/h/<node>/<id>` key. */
function nodeKeyOf(key: string, prefix: string): string {
  const rest = key.slice(prefix.length);
  return rest.slice(0, rest.indexOf('/'));
}

function withNode<T>(row: Row, prefix: string): NodeIndexed<T> {
  return { ...indexed<T>(row), nodeKey: nodeKeyOf(row.key, prefix) };
}

export const catalogRows = {
  node(view: CatalogView, name: string): Indexed<StoredNode> | undefined {
    const row = view.get(keys.node(name));
    return row === undefined ? undefined : indexed<StoredNode>(row);
  },

  /** The node whose key component is `nodeKey` (from a service or check row). */
  nodeByKey(view: CatalogView, nodeKey: string): Indexed<StoredNode> | undefined {
    const row = view.get(`${keys.prefix('nodes')}${nodeKey}`);
    return row === undefined ? undefined : indexed<StoredNode>(row);
  },

  nodes(view: CatalogView): Indexed<StoredNode>[] {
    return view.scan(keys.prefix('nodes')).map((row) => indexed<StoredNode>(row));
  },

  service(view: CatalogView, node: string, serviceId: string): Indexed<StoredService> | undefined {
    const row = view.get(keys.service(node, serviceId));
    return row === undefined ? undefined : indexed<StoredService>(row);
  },

  nodeServices(view: CatalogView, node: string): Indexed<StoredService>[] {
    return view.scan(keys.nodeServices(node)).map((row) => indexed<StoredService>(row));
  },

  /** Every service instance, in node then service ID order. */
  services(view: CatalogView): NodeIndexed<StoredService>[] {
    const prefix = keys.prefix('services');
    return view.scan(prefix).map((row) => withNode<StoredService>(row, prefix));
  },

  check(view: CatalogView, node: string, checkId: string): Indexed<StoredCheck> | undefined {
    const row = view.get(keys.check(node, checkId));
    return row === undefined ? undefined : indexed<StoredCheck>(row);
  },

  nodeChecks(view: CatalogView, node: string): Indexed<StoredCheck>[] {
    return view.scan(keys.nodeChecks(node)).map((row) => indexed<StoredCheck>(row));
  },

  /** Every check, in node then check ID order. */
  checks(view: CatalogView): NodeIndexed<StoredCheck>[] {
    const prefix = keys.prefix('checks');
    return view.scan(prefix).map((row) => withNode<StoredCheck>(row, prefix));
  },
};
