/**
 * Ready-made sequential models for the linearizability checker (linearizability.ts):
 *   - `registerModel`: one compare-and-set register, Jepsen's `cas-register` semantics (Knossos
 *     `knossos.model/cas-register`, porcupine's etcd model in `porcupine_test.go`) — what the
 *     Jepsen etcd histories in /work/shared/data/jepsen-etcd were recorded against;
 *   - `kvModel`: a key-value map (get/put/cas/delete), partitioned per key: keys are independent,
 *     so each key's history is checked alone (P-compositionality, Horn & Kroening 2015; the same
 *     split Jepsen's `independent` checker and porcupine's kv example make). The Raft simulator
 *     checks its client histories against this one.
 * Every model accepts any result for an operation whose output is `undefined` (unknown outcome).
 */
import type { Model, Operation } from './linearizability';

/** The register's value; null until the first write (Jepsen's nil). */
export type RegisterState = number | null;

export type RegisterInput =
  | { readonly kind: 'read' }
  | { readonly kind: 'write'; readonly value: number }
  /** Sets the register to `to` if it holds `from` at the linearization point. */
  | { readonly kind: 'cas'; readonly from: number; readonly to: number };

/** Same `kind` as the input; `undefined` when the outcome is unknown. */
export type RegisterOutput =
  /** `value` null: the register was never written. */
  | { readonly kind: 'read'; readonly value: number | null }
  | { readonly kind: 'write' }
  /** `ok` false: the compare did not match, the register is unchanged (Jepsen `:fail :cas`). */
  | { readonly kind: 'cas'; readonly ok: boolean }
  | undefined;

export const registerModel: Model<RegisterState, RegisterInput, RegisterOutput> = {
  init: () => null,
  step(state, input, output) {
    requireSameKind(input, output);
    switch (input.kind) {
      case 'read':
        return { ok: output?.kind !== 'read' || output.value === state, state };
      case 'write':
        return { ok: true, state: input.value };
      case 'cas': {
        const matches = state === input.from;
        return { ok: output?.kind !== 'cas' || output.ok === matches, state: matches ? input.to : state };
      }
    }
  },
  equal: (a, b) => a === b,
  hash: (state) => (state === null ? 'nil' : `${state}`),
  describe(input, output) {
    const outcome = output === undefined ? ' (outcome unknown)' : '';
    switch (input.kind) {
      case 'read':
        return output?.kind === 'read' ? `read → ${output.value ?? 'nil'}` : `read${outcome}`;
      case 'write':
        return `write ${input.value}${outcome}`;
      case 'cas':
        return `cas ${input.from}→${input.to}${output?.kind === 'cas' ? (output.ok ? ' ok' : ' failed') : outcome}`;
    }
  },
  describeState: (state) => (state === null ? 'nil' : String(state)),
};

/**
 * The state of one partition, i.e. of one key: its value, null when absent. (The model is only
 * ever stepped on one key's operations: `partition` splits by key before any step.)
 */
export type KvState = string | null;

export type KvInput =
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  /** Sets `key` to `value` if its value is `expected` (null: only if absent, i.e. create). */
  | { readonly kind: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string }
  | { readonly kind: 'delete'; readonly key: string };

/** Same `kind` as the input; `undefined` when the outcome is unknown (timeout, crash). */
export type KvOutput =
  /** `value` null: the key was absent. */
  | { readonly kind: 'get'; readonly value: string | null }
  | { readonly kind: 'put' }
  /** `ok` false: the compare did not match and nothing changed. */
  | { readonly kind: 'cas'; readonly ok: boolean }
  /** `existed`, when the store reports it (etcd's `deleted` count), is checked too. */
  | { readonly kind: 'delete'; readonly existed?: boolean }
  | undefined;

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    requireSameKind(input, output);
    switch (input.kind) {
      case 'get':
        return { ok: output?.kind !== 'get' || output.value === state, state };
      case 'put':
        return { ok: true, state: input.value };
      case 'cas': {
        const matches = state === input.expected;
        return { ok: output?.kind !== 'cas' || output.ok === matches, state: matches ? input.value : state };
      }
      case 'delete':
        return { ok: output?.kind !== 'delete' || output.existed === undefined || output.existed === (state !== null), state: null };
    }
  },
  equal: (a, b) => a === b,
  hash: (state) => state ?? '',
  partition(ops) {
    const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
    for (const op of ops) {
      const forKey = byKey.get(op.input.key);
      if (forKey) forKey.push(op);
      else byKey.set(op.input.key, [op]);
    }
    return [...byKey.values()];
  },
  describe(input, output) {
    const outcome = output === undefined ? ' (outcome unknown)' : '';
    const key = JSON.stringify(input.key);
    const shown = (value: string | null): string => (value === null ? 'absent' : JSON.stringify(value));
    switch (input.kind) {
      case 'get':
        return output?.kind === 'get' ? `get ${key} → ${shown(output.value)}` : `get ${key}${outcome}`;
      case 'put':
        return `put ${key}=${shown(input.value)}${outcome}`;
      case 'cas':
        return `cas ${key} ${shown(input.expected)}→${shown(input.value)}${output?.kind === 'cas' ? (output.ok ? ' ok' : ' failed') : outcome}`;
      case 'delete':
        return `delete ${key}${output?.kind === 'delete' && output.existed !== undefined ? ` (existed: ${output.existed})` : outcome}`;
    }
  },
  describeState: (state) => (state === null ? 'absent' : JSON.stringify(state)),
};

/** An output of another kind than its input is a bug in the history, not a linearizability verdict. */
function requireSameKind(input: { readonly kind: string }, output: { readonly kind: string } | undefined): void {
  if (output !== undefined && output.kind !== input.kind) {
    throw new TypeError(`a ${input.kind} operation cannot have a ${output.kind} output`);
  }
}
