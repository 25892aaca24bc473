/**
 * When to compact the KV history on its own (etcd's v3compactor, with its flags
 * `-auto-compaction-mode` and `-auto-compaction-retention`), as a pure policy: time and revisions
 * in, "compact to X" or nothing out. The node shell (consensus-node.ts) calls `decide` every
 * `checkIntervalMs` on every server and proposes what it returns through Raft, as KV.Compact does,
 * so every server compacts at the same log index. Only a leader ever gets a revision back.
 *
 * - periodic: keep `retention` of history. Every server samples its revision every retention / 10
 *   (at most hourly), as etcd does; the leader compacts to the newest sample at least `retention`
 *   old, so a new leader already knows what was current `retention` ago. A follower's samples
 *   trail the leader's revision, which only keeps more.
 * - revision: keep the last `retention` revisions: compact to current - retention, once that is a
 *   tenth of the window past the last compaction (etcd looks every 5 minutes instead; this bounds
 *   the history at 1.1 x retention whatever the write rate, with a compaction at most per check).
 *
 * Whatever the mode, a target is below the current revision (a client that has just read at the
 * current revision may still watch from the next), above the last compaction, and absent while
 * retention is 0 (off, as in etcd) or on a follower.
 *
 * Time is the server's clock: a clock stepped forward can compact history younger than
 * `retention`, never a revision that is not yet superseded; clients then see the compacted error
 * and read again (prefix-watch.ts).
 */
import { parseGoDuration } from '../lib/go-text';

export type AutoCompactionSettings =
  | { readonly mode: 'off' }
  | { readonly mode: 'periodic'; readonly retentionMs: number }
  | { readonly mode: 'revision'; readonly retentionRevisions: number };

export const AUTO_COMPACTION_MODES = ['periodic', 'revision'] as const;

const HOUR_MS = 3_600_000;
/** A periodic sample is taken every retention / 10, between these. */
const MIN_SAMPLE_MS = 1_000;
const MAX_SAMPLE_MS = HOUR_MS / 10;
/** Revision mode looks this often; a look is a few comparisons. */
const REVISION_CHECK_MS = 1_000;

/**
 * The flags' values as etcd reads them: periodic takes a Go duration (`5m`, `1h30m`) or a whole
 * number of hours (`1`, etcd's older form); revision takes a count. `0` is off in either mode.
 */
export function parseAutoCompaction(mode: string, retention: string): { settings: AutoCompactionSettings; error?: undefined } | { settings?: undefined; error: string } {
  const text = retention.trim();
  if (mode === 'revision') {
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      return { error: `-auto-compaction-retention=${retention} is not a count of revisions: in revision mode give a whole number, e.g. 10000 (0 turns auto-compaction off)` };
    }
    const count = Number(text);
    return { settings: count === 0 ? { mode: 'off' } : { mode: 'revision', retentionRevisions: count } };
  }
  if (mode === 'periodic') {
    if (/^\d+$/.test(text)) {
      const hours = Number(text);
      return { settings: hours === 0 ? { mode: 'off' } : { mode: 'periodic', retentionMs: hours * HOUR_MS } };
    }
    const parsed = parseGoDuration(text);
    if (parsed.error !== undefined || parsed.ns! < 0) {
      return { error: `-auto-compaction-retention=${retention} is not a duration: in periodic mode give a Go duration (5m, 1h) or whole hours (1), 0 for off${parsed.error === undefined ? '' : ` (${parsed.error})`}` };
    }
    const retentionMs = Math.floor(parsed.ns! / 1e6);
    if (parsed.ns! > 0 && retentionMs < 1_000) return { error: `-auto-compaction-retention=${retention} is under a second: keep at least 1s of history, or 0 for off` };
    return { settings: retentionMs === 0 ? { mode: 'off' } : { mode: 'periodic', retentionMs } };
  }
  return { error: `-auto-compaction-mode=${mode} is not a mode: use periodic or revision` };
}

/** The store as the policy sees it, at one moment on one server. */
export interface CompactionInput {
  readonly nowMs: number;
  readonly currentRevision: number;
  /** The last compaction applied here; 0 when none. */
  readonly compactRevision: number;
  /** Whether this server leads now: only a leader proposes; every server samples. */
  readonly leader: boolean;
}

interface Sample {
  readonly atMs: number;
  readonly revision: number;
}

export class AutoCompactionPolicy {
  /** Periodic mode: samples in time order, one per interval; the oldest is the newest one old enough. */
  private readonly samples: Sample[] = [];

  constructor(readonly settings: AutoCompactionSettings) {}

  get enabled(): boolean {
    return this.settings.mode !== 'off';
  }

  /** How often the shell should call `decide`. */
  get checkIntervalMs(): number {
    return this.settings.mode === 'periodic' ? sampleIntervalMs(this.settings.retentionMs) : REVISION_CHECK_MS;
  }

  /** A revision to compact to now, or undefined for none. Records a periodic sample on every server. */
  decide(input: CompactionInput): number | undefined {
    const settings = this.settings;
    let target: number;
    if (settings.mode === 'off') return undefined;
    if (settings.mode === 'periodic') {
      this.sample(input, settings.retentionMs);
      const old = this.samples[0];
      if (old === undefined || old.atMs > input.nowMs - settings.retentionMs) return undefined;
      // Nothing written for `retention`: everything below the current revision is that old.
      target = Math.min(old.revision, input.currentRevision - 1);
    } else {
      target = input.currentRevision - settings.retentionRevisions;
      if (target - input.compactRevision < Math.max(1, Math.floor(settings.retentionRevisions / 10))) return undefined;
    }
    if (!input.leader || target <= input.compactRevision || target >= input.currentRevision) return undefined;
    return target;
  }

  /**
   * Keeps a sample per call at most every half interval (a timer may fire a little early), and
   * of the samples old enough only the newest: about 22 at most, whoever calls how often.
   */
  private sample(input: CompactionInput, retentionMs: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last === undefined || input.nowMs - last.atMs >= sampleIntervalMs(retentionMs) / 2) this.samples.push({ atMs: input.nowMs, revision: input.currentRevision });
    const oldEnough = input.nowMs - retentionMs;
    while (this.samples.length > 1 && this.samples[1].atMs <= oldEnough) this.samples.shift();
  }
}

function sampleIntervalMs(retentionMs: number): number {
  return Math.min(MAX_SAMPLE_MS, Math.max(MIN_SAMPLE_MS, Math.floor(retentionMs / 10)));
}
