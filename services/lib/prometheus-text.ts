/**
 * Reads the Prometheus text format 0.0.4 back into samples: what the metrics tests check a scrape
 * with, and what a tool that reads a role's `/metrics` can use. Only what prom-client writes is
 * needed (HELP, TYPE, samples with or without labels, no timestamps), but a timestamp is accepted.
 */
import { invariant } from './invariant';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface ParsedExposition {
  /** `# TYPE` of each metric family. */
  readonly types: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/y;

/** Parses the Prometheus text format 0.0.4; throws on a line it cannot read, naming it. */
export function parseExposition(text: string): ParsedExposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type !== null) types.set(type[1], type[2]);
      else if (!line.startsWith('# HELP ')) throw new Error(`not a HELP or TYPE comment: ${line}`);
      continue;
    }
    const match = SAMPLE_LINE.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = match[2] ?? '';
    LABEL_PAIR.lastIndex = 0;
    while (LABEL_PAIR.lastIndex < body.length) {
      const pair = LABEL_PAIR.exec(body);
      if (pair === null) throw new Error(`bad labels in: ${line}`);
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c));
    }
    const value = parseValue(match[3]);
    if (value === undefined) throw new Error(`bad value in: ${line}`);
    samples.push({ name: match[1], labels, value });
  }
  return { types, samples };
}

/** Go's ParseFloat, as Prometheus reads values: NaN and Inf in any case (prom-client writes "Nan"). */
function parseValue(raw: string): number | undefined {
  const lower = raw.toLowerCase();
  if (lower === 'nan') return NaN;
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  const value = Number(raw);
  return Number.isNaN(value) || raw.trim() === '' ? undefined : value;
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when none. */
export function sampleValue(exposition: ParsedExposition, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const found = exposition.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  invariant(found.length <= 1, () => `${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}
