/**
 * Network segment configuration: the `segments` a server declares (one extra LAN pool each, on
 * its own port) and the `segment` a client belongs to, with the checks Consul's config builder
 * makes, in its words (reference/consul-compat.md §2.1). The checks return every problem at
 * once, so an operator fixes a config in one pass rather than one error per restart.
 */

/** One extra LAN pool on a server: its name and the Serf LAN port it listens on. */
export interface SegmentSpec {
  readonly name: string;
  readonly port: number;
}

/** Consul's non-user `segment_limit`: how many segments a server may declare. */
export const SEGMENT_LIMIT = 64;

/** Consul's non-user `segment_name_limit`, in bytes. */
export const SEGMENT_NAME_LIMIT = 64;

/** How `consul members` and the API show the default segment, whose name is "". */
export const DEFAULT_SEGMENT_LABEL = '<default>';

/** The `?segment=` value meaning every segment (`api.AllSegments`). */
export const ALL_SEGMENTS = '_all';

const MAX_PORT = 65535;

/**
 * Consul's name pattern (`agent/config/segment_ce.go` of a CE fork that mirrors ENT): a letter
 * first, a letter or digit last. We also take a single letter, which that pattern rejects only
 * because it needs two characters, not because such a name could clash with anything.
 */
const SEGMENT_NAME = /^[A-Za-z]([A-Za-z0-9_-]*[A-Za-z0-9])?$/;

const NAME_PATTERN_PROBLEM = "Segment name must consist of alphanumeric characters or '-', and must start and end with an alphanumeric character";

/**
 * Reads `NAME:PORT` values (`-segments=alpha:8303`, one per value) into specs. Only the
 * shape is checked here; whether a name or port is acceptable is segmentProblems' job, so that
 * `alpha:0` gets Consul's own "cannot be <= 0" text.
 */
export function parseSegments(values: readonly string[]): { segments: SegmentSpec[]; problems: string[] } {
  const segments: SegmentSpec[] = [];
  const problems: string[] = [];
  for (const value of values) {
    const colon = value.indexOf(':');
    if (colon < 0) {
      problems.push(`Segment "${value}" must be given as NAME:PORT (one segment per value), e.g. alpha:8303`);
      continue;
    }
    const name = value.slice(0, colon);
    const portText = value.slice(colon + 1);
    if (!/^[+-]?\d{1,10}$/.test(portText)) {
      problems.push(`Port for segment "${name}" must be a number, got "${portText}" (give NAME:PORT, one segment per value, e.g. alpha:8303)`);
      continue;
    }
    segments.push({ name, port: Number(portText) });
  }
  return { segments, problems };
}

/** Bytes, as Go's len() counts them: the name limit is Consul's, in bytes. */
function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** The name checks shared by a server's segments and a client's segment. */
function nameProblems(name: string): string[] {
  const problems: string[] = [];
  if (!SEGMENT_NAME.test(name)) problems.push(`${NAME_PATTERN_PROBLEM} (got "${name}")`);
  if (byteLength(name) > SEGMENT_NAME_LIMIT) problems.push(`Segment name "${name}" exceeds maximum length of ${SEGMENT_NAME_LIMIT}`);
  return problems;
}

/**
 * Every problem with an agent's segment settings, in Consul's words where Consul has them:
 * only servers declare `segments`, only clients set `segment`; a server's segments obey the
 * count, name and port rules, and no two of its LAN pools (the default one included) may share
 * a port or a name.
 */
export function segmentProblems(input: { server: boolean; segment: string; segments: readonly SegmentSpec[]; lanPort: number }): string[] {
  const { server, segment, segments, lanPort } = input;
  const problems: string[] = [];

  if (server && segment !== '') problems.push('segment: Segment name can only be set on clients (server = false)');
  if (!server && segments.length > 0) problems.push('segments: Segments can only be configured on servers (server = true)');
  // A client's segment must be one a server could declare; "" is the default segment.
  if (!server && segment !== '') problems.push(...nameProblems(segment));

  if (segments.length > SEGMENT_LIMIT) problems.push(`Cannot exceed network segment limit of ${SEGMENT_LIMIT}`);

  const portOwners = new Map<number, string>();
  const names = new Map<string, string>();
  for (const { name, port } of segments) {
    if (name === '') problems.push('Segment name cannot be blank');
    else problems.push(...nameProblems(name));

    if (!Number.isInteger(port) || port <= 0) problems.push(`Port for segment "${name}" cannot be <= 0`);
    else if (port > MAX_PORT) problems.push(`Port for segment "${name}" cannot be > ${MAX_PORT}`);
    else if (port === lanPort) problems.push(`Segment "${name}" port ${port} overlaps with the LAN port of the default segment (ports.serf_lan = ${lanPort})`);
    else {
      const previous = portOwners.get(port);
      if (previous !== undefined) problems.push(`Segment "${name}" port ${port} overlaps with segment "${previous}"`);
      else portOwners.set(port, name);
    }

    // Case-insensitive: "Alpha" beside "alpha" is a typo, not a design, and a Consul fork that
    // stores one snapshot per segment names it by the lower-cased name (consul-compat.md §2.3).
    if (name !== '') {
      const previous = names.get(name.toLowerCase());
      if (previous !== undefined) problems.push(`Segment "${name}" is declared more than once (also as "${previous}"): segment names must be unique`);
      else names.set(name.toLowerCase(), name);
    }
  }
  return problems;
}
