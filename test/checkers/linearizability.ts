/**
 * A linearizability checker: given a concurrent history of operations on an object and a
 * sequential model of that object, decide whether some total order of the operations (1) respects
 * real time — an operation that returned before another was called comes first — and (2) is a
 * legal run of the model (Herlihy & Wing, "Linearizability: A Correctness Condition for Concurrent
 * Objects", TOPLAS 1990).
 *
 * Why our own: no JS/TS checker exists (see /work/shared/reference/reliability.md §5); the Raft
 * simulator and the Jepsen-style tests need one to turn client histories into a verdict.
 *
 * The algorithm is Wing & Gong's search ("Testing and Verifying Concurrent Objects", JPDC 1993)
 * with Lowe's memoization ("Testing for Linearizability", CCPE 2017) — together "WGL" — as
 * implemented by porcupine (github.com/anishathalye/porcupine, `checker.go`, `checkSingle`):
 *   - the history is a doubly linked list of call and return entries sorted by time;
 *   - scanning from the head, a call entry is a candidate to linearize next; if the model accepts
 *     it, the operation is "lifted" out of the list (call and return) and the scan restarts; on
 *     meeting a return entry, the operation it ends was not linearized in time: backtrack;
 *   - a cache of (set of linearized operations, model state) pairs already explored prunes the
 *     search (Lowe): two prefixes that linearized the same operations into the same state have
 *     the same future. The set is a bitset; its hash is a Zobrist hash (xor of one random word per
 *     operation) kept up to date in O(1) per step.
 * P-compositionality (Horn & Kroening, "Faster linearizability checking via P-compositionality",
 * FORTE 2015, arXiv 1504.00204): if the model can split the history into independent parts (e.g.
 * one per key of a map), the history is linearizable iff every part is, and each part is checked
 * alone — exponentially cheaper than the whole.
 *
 * Unknown outcomes (a request that timed out, a client that crashed) are handled as porcupine and
 * Knossos do: the operation gets `return = Infinity` and `output = undefined`, and the model accepts
 * any result for an undefined output. It may then be linearized anywhere after its call; placing it
 * after every other operation is the same as it never having happened.
 *
 * Limits: a time budget (the verdict is 'unknown' when it runs out; the clock is read every
 * CLOCK_CHECK_INTERVAL steps, so a check never hangs), a size limit on the history, and a memory
 * limit on the cache (also 'unknown' when reached).
 */

export { registerModel, kvModel } from './models';
export type { RegisterInput, RegisterOutput, RegisterState, KvInput, KvOutput, KvState } from './models';

/** One operation of a history, as a client saw it. */
export interface Operation<Input, Output> {
  /** Who issued it; only used to describe the operation. */
  readonly clientId: number;
  readonly input: Input;
  /** What it returned; `undefined` when the outcome is unknown (then `return` is Infinity). */
  readonly output: Output;
  /** When it was invoked: a finite number (virtual or real time, any unit). */
  readonly call: number;
  /**
   * When it returned, >= call; Infinity when the outcome is unknown. An operation is concurrent
   * with another whose call is at the same instant as its return.
   */
  readonly return: number;
}

/** The sequential specification of the object the history ran against. */
export interface Model<State, Input, Output> {
  init(): State;
  /**
   * Applies `input` to `state`; `ok` says whether the object could have returned `output` from
   * that state. With `output === undefined` (unknown outcome) any result is acceptable. Must not
   * mutate `state`.
   */
  step(state: State, input: Input, output: Output): { ok: boolean; state: State };
  equal(a: State, b: State): boolean;
  /** A string that equal states share; speeds up the cache when states are many. */
  hash?(state: State): string;
  /** Splits a history into independent parts (P-compositionality), e.g. one per key. */
  partition?(ops: readonly Operation<Input, Output>[]): Operation<Input, Output>[][];
  /** One operation in a few words, for explanations, e.g. "cas 1→2 failed". */
  describe?(input: Input, output: Output): string;
  describeState?(state: State): string;
}

export interface CheckOptions {
  /** Time budget for the whole history; past it the verdict is 'unknown'. */
  readonly timeoutMs: number;
  /** Histories larger than this are refused (RangeError). */
  readonly maxOperations?: number;
  /** Memory the memoization cache may take, estimated; past it the verdict is 'unknown'. */
  readonly maxCacheBytes?: number;
}

export interface IllegalExplanation<Input, Output> {
  /** Index of the part (as returned by `model.partition`) that has no linearization. */
  readonly partitionIndex: number;
  readonly partitionSize: number;
  /** The longest prefix of that part the search could linearize, in linearization order. */
  readonly longestPrefix: readonly Operation<Input, Output>[];
  /** The operations that could have come next after that prefix; none of them leads to a linearization. */
  readonly nextCandidates: readonly Operation<Input, Output>[];
  readonly message: string;
}

interface CheckSummary {
  readonly partitions: number;
  /** Parts whose verdict was reached (all of them when the verdict is 'ok'). */
  readonly partitionsChecked: number;
  readonly elapsedMs: number;
}

export type CheckResult<Input, Output> =
  | (CheckSummary & { readonly verdict: 'ok' })
  | (CheckSummary & { readonly verdict: 'illegal'; readonly explanation: IllegalExplanation<Input, Output> })
  | (CheckSummary & { readonly verdict: 'unknown'; readonly reason: 'timeout' | 'cache-limit' });

export const DEFAULT_MAX_OPERATIONS = 100_000;
export const DEFAULT_MAX_CACHE_BYTES = 256 * 1024 * 1024;
/** Steps between two reads of the clock: cheap enough to ignore, frequent enough to stop in time. */
const CLOCK_CHECK_INTERVAL = 1024;
/** Estimated bytes per cache entry besides its bitset: state reference, chain link, map slot. */
const CACHE_ENTRY_OVERHEAD_BYTES = 48;
/** How many operations an explanation lists before eliding. */
const EXPLANATION_OPERATIONS = 6;

/** Checks `ops` against `model`; see the header for the algorithm and the meaning of the verdicts. */
export function checkOperations<State, Input, Output>(
  model: Model<State, Input, Output>,
  ops: readonly Operation<Input, Output>[],
  options: CheckOptions,
): CheckResult<Input, Output> {
  const started = performance.now();
  const deadline = started + options.timeoutMs;
  const maxOperations = options.maxOperations ?? DEFAULT_MAX_OPERATIONS;
  if (ops.length > maxOperations) {
    throw new RangeError(`history has ${ops.length} operations, more than the limit of ${maxOperations}`);
  }
  ops.forEach(validateOperation);

  const parts = (model.partition ? model.partition(ops) : [ops]).filter((part) => part.length > 0);
  const summary = (partitionsChecked: number): CheckSummary => ({
    partitions: parts.length,
    partitionsChecked,
    elapsedMs: performance.now() - started,
  });
  for (let index = 0; index < parts.length; index++) {
    if (performance.now() > deadline) return { ...summary(index), verdict: 'unknown', reason: 'timeout' };
    const outcome = checkPartition(model, parts[index], deadline, options.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES);
    switch (outcome.kind) {
      case 'ok':
        continue;
      case 'illegal':
        return { ...summary(index + 1), verdict: 'illegal', explanation: explain(model, parts[index], index, outcome.longestPrefix) };
      case 'timeout':
      case 'cache-limit':
        return { ...summary(index), verdict: 'unknown', reason: outcome.kind };
    }
  }
  return { ...summary(parts.length), verdict: 'ok' };
}

function validateOperation<Input, Output>(op: Operation<Input, Output>, index: number): void {
  if (!Number.isFinite(op.call) || Number.isNaN(op.return) || op.return < op.call) {
    throw new RangeError(`operation ${index}: need a finite call time and return >= call, got [${op.call}, ${op.return}]`);
  }
}

type PartitionOutcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'illegal'; readonly longestPrefix: readonly number[] }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'cache-limit' };

/** End of the linked list. */
const NIL = -1;
/** The sentinel before the first entry. */
const HEAD = 0;

/**
 * WGL on one part (porcupine `checkSingle`). Nodes are integers: 0 is the head sentinel, operation
 * i has its call entry at 2i+1 (odd) and its return entry at 2i+2 (even), so a call's matching
 * return is `node + 1` and its operation is `(node - 1) >> 1`.
 */
function checkPartition<State, Input, Output>(
  model: Model<State, Input, Output>,
  ops: readonly Operation<Input, Output>[],
  deadline: number,
  maxCacheBytes: number,
): PartitionOutcome {
  const count = ops.length;
  const { next, prev } = linkEntriesByTime(ops);
  const lift = (call: number): void => {
    next[prev[call]] = next[call];
    prev[next[call]] = prev[call]; // a call is always followed by at least its own return
    const ret = call + 1;
    next[prev[ret]] = next[ret];
    if (next[ret] !== NIL) prev[next[ret]] = prev[ret];
  };
  const unlift = (call: number): void => {
    const ret = call + 1;
    next[prev[ret]] = ret;
    if (next[ret] !== NIL) prev[next[ret]] = ret;
    next[prev[call]] = call;
    prev[next[call]] = call;
  };

  const linearized = new Uint32Array(Math.ceil(count / 32));
  const zobrist = zobristTable(count);
  let linearizedHash = 0;
  const cache = new VisitedCache<State>(linearized.length, model.equal.bind(model), maxCacheBytes);

  // The stack of linearized operations: their call entries and the state before each.
  const stackCalls = new Int32Array(count);
  const stackStates: State[] = new Array<State>(count);
  let depth = 0;
  let longestPrefix: number[] = [];

  let state = model.init();
  let entry = next[HEAD];
  let steps = 0;
  while (next[HEAD] !== NIL) {
    if (++steps % CLOCK_CHECK_INTERVAL === 0 && performance.now() > deadline) return { kind: 'timeout' };
    if (entry & 1) {
      const opIndex = (entry - 1) >> 1;
      const op = ops[opIndex];
      const result = model.step(state, op.input, op.output);
      if (!result.ok) {
        entry = next[entry];
        continue;
      }
      const word = opIndex >>> 5;
      const bit = 1 << (opIndex & 31);
      linearized[word] |= bit;
      const candidateHash = linearizedHash ^ zobrist[opIndex];
      const stateHash = model.hash ? fnv1a(model.hash(result.state)) : 0;
      const added = cache.addIfAbsent((candidateHash ^ stateHash) & 0x3fffffff, linearized, result.state);
      if (added === 'full') return { kind: 'cache-limit' };
      if (added === 'present') {
        linearized[word] &= ~bit;
        entry = next[entry];
        continue;
      }
      linearizedHash = candidateHash;
      stackCalls[depth] = entry;
      stackStates[depth] = state;
      depth++;
      state = result.state;
      lift(entry);
      entry = next[HEAD];
    } else {
      // A return entry: the operation it ends had to be linearized before this point. Backtrack.
      if (depth > longestPrefix.length) {
        longestPrefix = Array.from(stackCalls.subarray(0, depth), (call) => (call - 1) >> 1);
      }
      if (depth === 0) return { kind: 'illegal', longestPrefix };
      depth--;
      const call = stackCalls[depth];
      state = stackStates[depth];
      const opIndex = (call - 1) >> 1;
      linearized[opIndex >>> 5] &= ~(1 << (opIndex & 31));
      linearizedHash ^= zobrist[opIndex];
      unlift(call);
      entry = next[call];
    }
  }
  return { kind: 'ok' };
}

/** The call and return entries of `ops` as a doubly linked list in time order (calls first on ties). */
function linkEntriesByTime<Input, Output>(ops: readonly Operation<Input, Output>[]): { next: Int32Array; prev: Int32Array } {
  const nodeCount = 2 * ops.length + 1;
  const timeOf = (node: number): number => {
    const op = ops[(node - 1) >> 1];
    return node & 1 ? op.call : op.return;
  };
  const order = Array.from({ length: nodeCount - 1 }, (_, i) => i + 1);
  // Not `timeOf(a) - timeOf(b)`: Infinity - Infinity is NaN, which would misorder unknown outcomes.
  order.sort((a, b) => {
    const ta = timeOf(a);
    const tb = timeOf(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    return (b & 1) - (a & 1) || a - b; // calls (odd) before returns, then by operation
  });
  const next = new Int32Array(nodeCount).fill(NIL);
  const prev = new Int32Array(nodeCount).fill(NIL);
  let last = HEAD;
  for (const node of order) {
    next[last] = node;
    prev[node] = last;
    last = node;
  }
  return { next, prev };
}

/**
 * Math.imul held in a module binding: under Jest the code runs in a vm context where every read of
 * a global (`Math`) is intercepted, which made the hashing in the search loop four times slower.
 */
const imul = Math.imul;

/** One pseudo-random 32-bit word per operation, deterministic (murmur3's finalizer of i). */
function zobristTable(count: number): Int32Array {
  const table = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    let h = (i + 0x9e3779b9) | 0;
    h = imul(h ^ (h >>> 16), 0x85ebca6b);
    h = imul(h ^ (h >>> 13), 0xc2b2ae35);
    table[i] = h ^ (h >>> 16);
  }
  return table;
}

/** FNV-1a of a string, 32 bits. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = imul(h ^ text.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * The (linearized set, state) pairs already explored (Lowe's memoization). Bitsets live in one
 * growing pool, entries with the same key are chained; a lookup compares bitsets word by word and
 * states with `equal`, so hash collisions only cost time.
 */
class VisitedCache<State> {
  private pool: Uint32Array;
  private chain: Int32Array;
  private readonly states: State[] = [];
  private readonly firstByKey = new Map<number, number>();
  private size = 0;
  private readonly maxEntries: number;

  constructor(
    private readonly words: number,
    private readonly equal: (a: State, b: State) => boolean,
    maxBytes: number,
  ) {
    this.maxEntries = Math.max(1, Math.floor(maxBytes / (words * 4 + CACHE_ENTRY_OVERHEAD_BYTES)));
    const initial = Math.min(1024, this.maxEntries);
    this.pool = new Uint32Array(initial * words);
    this.chain = new Int32Array(initial);
  }

  addIfAbsent(key: number, linearized: Uint32Array, state: State): 'added' | 'present' | 'full' {
    const first = this.firstByKey.get(key) ?? NIL;
    for (let entry = first; entry !== NIL; entry = this.chain[entry]) {
      if (this.sameBits(entry, linearized) && this.equal(this.states[entry], state)) return 'present';
    }
    if (this.size === this.maxEntries) return 'full';
    if (this.size === this.chain.length) this.grow();
    const entry = this.size++;
    this.pool.set(linearized, entry * this.words);
    this.states.push(state);
    this.chain[entry] = first;
    this.firstByKey.set(key, entry);
    return 'added';
  }

  private sameBits(entry: number, linearized: Uint32Array): boolean {
    const offset = entry * this.words;
    for (let w = 0; w < this.words; w++) if (this.pool[offset + w] !== linearized[w]) return false;
    return true;
  }

  private grow(): void {
    const capacity = Math.min(this.chain.length * 2, this.maxEntries);
    const pool = new Uint32Array(capacity * this.words);
    pool.set(this.pool);
    const chain = new Int32Array(capacity);
    chain.set(this.chain);
    this.pool = pool;
    this.chain = chain;
  }
}

function explain<State, Input, Output>(
  model: Model<State, Input, Output>,
  ops: readonly Operation<Input, Output>[],
  partitionIndex: number,
  longestPrefixIndexes: readonly number[],
): IllegalExplanation<Input, Output> {
  const longestPrefix = longestPrefixIndexes.map((i) => ops[i]);
  const inPrefix = new Set(longestPrefixIndexes);
  const rest = ops.filter((_, i) => !inPrefix.has(i));
  // Next candidates: every remaining operation called no later than the first remaining return.
  const firstReturn = rest.reduce((earliest, op) => (op.return < earliest ? op.return : earliest), Infinity);
  const nextCandidates = rest.filter((op) => op.call <= firstReturn);
  let state = model.init();
  for (const op of longestPrefix) state = model.step(state, op.input, op.output).state;

  const describeOp = (op: Operation<Input, Output>): string => {
    const what = model.describe ? model.describe(op.input, op.output) : JSON.stringify({ input: op.input, output: op.output });
    const span = op.return === Infinity ? `[${op.call}, ∞)` : `[${op.call}, ${op.return}]`;
    return `client ${op.clientId} ${what} ${span}`;
  };
  const list = (listed: readonly Operation<Input, Output>[], fromEnd: boolean): string => {
    if (listed.length <= EXPLANATION_OPERATIONS) return listed.map(describeOp).join('; ');
    const shown = fromEnd ? listed.slice(-EXPLANATION_OPERATIONS) : listed.slice(0, EXPLANATION_OPERATIONS);
    const elided = `… ${listed.length - EXPLANATION_OPERATIONS} more`;
    return fromEnd ? [elided, ...shown.map(describeOp)].join('; ') : [...shown.map(describeOp), elided].join('; ');
  };
  const stateText = model.describeState ? model.describeState(state) : JSON.stringify(state);
  const message =
    `partition ${partitionIndex} (${ops.length} operations) is not linearizable: ` +
    `the longest linearizable prefix has ${longestPrefix.length} operations (${list(longestPrefix, true) || 'none'}) ` +
    `and leaves the state at ${stateText}; no continuation exists from there, whichever of these comes next: ${list(nextCandidates, false)}`;
  return { partitionIndex, partitionSize: ops.length, longestPrefix, nextCandidates, message };
}
