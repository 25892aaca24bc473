/**
 * A node's UUID (Consul's node ID), kept in its data directory so a restart is the same node, as
 * Consul keeps `node-id` in its data_dir. A file that does not hold a UUID is replaced.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function persistentNodeId(dataDir: string): string {
  const path = join(dataDir, 'node-id');
  if (existsSync(path)) {
    const id = readFileSync(path, 'utf8').trim();
    if (UUID.test(id)) return id;
  }
  const id = randomUUID();
  writeFileSync(path, `${id}\n`);
  return id;
}
