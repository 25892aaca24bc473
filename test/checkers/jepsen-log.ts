/**
 * Parses a Jepsen register log (the format of /work/shared/data/jepsen-etcd/README.md, as written
 * by Jepsen's `jepsen.util` logger) into operations for `registerModel`, so the checker can be
 * proven on histories whose verdicts are known (porcupine's `test_data/jepsen`, taken from
 * github.com/ahorn/linearizability-checker). Mirrors porcupine's `parseJepsenLog`.
 *
 * Time is the line number (1-based). How each event ends an operation:
 *   :ok                       → a definite outcome, returned at that line;
 *   :fail :cas                → definite: the compare did not match, the register is unchanged;
 *   :fail/:info :read :timed-out → the read is dropped (a read with no result constrains nothing);
 *   :info (timed out)         → unknown outcome: return = Infinity, output undefined; the process
 *                               then continues under a new number, which needs no special case;
 *   no return before the end  → unknown outcome as for :info (a pending read is dropped).
 * Anything else (an unknown line, a second invoke on a busy process, a return that does not match
 * its invoke) throws: a history we misread would make every verdict worthless.
 */
import type { Operation, RegisterInput, RegisterOutput } from './linearizability';

export type RegisterOperation = Operation<RegisterInput, RegisterOutput>;

const EVENT_LINE = /^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(nil|\d+|\[\d+\s+\d+\]|:timed-out)\s*$/;

interface PendingOperation {
  readonly input: RegisterInput;
  readonly call: number;
  /** The invoke's argument as logged, which a definite return repeats (except a read's). */
  readonly argument: string;
}

export function parseJepsenLog(text: string): RegisterOperation[] {
  const operations: RegisterOperation[] = [];
  const pendingByProcess = new Map<number, PendingOperation>();
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    const lineNumber = index + 1;
    if (line.trim() === '') return;
    const match = EVENT_LINE.exec(line);
    if (!match) throw new SyntaxError(`line ${lineNumber}: not a Jepsen register event: ${JSON.stringify(line)}`);
    const [, processText, type, kind, argument] = match;
    const process = Number(processText);
    const fail = (why: string): never => {
      throw new SyntaxError(`line ${lineNumber}: ${why}: ${JSON.stringify(line)}`);
    };

    if (type === 'invoke') {
      if (pendingByProcess.has(process)) fail(`process ${process} invokes while its previous operation is pending`);
      pendingByProcess.set(process, { input: parseInput(kind, argument) ?? fail('bad invoke argument'), call: lineNumber, argument });
      return;
    }
    const pending = pendingByProcess.get(process) ?? fail(`process ${process} returns without a pending operation`);
    if (pending.input.kind !== kind) fail(`process ${process} returns a ${kind} but invoked a ${pending.input.kind}`);
    pendingByProcess.delete(process);
    const complete = (output: RegisterOutput, returnTime: number): void => {
      operations.push({ clientId: process, input: pending.input, output, call: pending.call, return: returnTime });
    };

    if (argument === ':timed-out') {
      if (kind === 'read') return; // :fail or :info, the read is dropped
      if (type !== 'info') fail(`a timed-out ${kind} is :info (outcome unknown)`);
      complete(undefined, Infinity);
      return;
    }
    if (kind === 'read') {
      if (type !== 'ok' || argument.startsWith('[')) fail('a read returns :ok with nil or a number');
      complete({ kind: 'read', value: argument === 'nil' ? null : Number(argument) }, lineNumber);
      return;
    }
    if (argument !== pending.argument) fail(`the return's argument differs from the invoke's ${pending.argument}`);
    if (kind === 'write' && type === 'ok') complete({ kind: 'write' }, lineNumber);
    else if (kind === 'cas' && (type === 'ok' || type === 'fail')) complete({ kind: 'cas', ok: type === 'ok' }, lineNumber);
    else fail(`unexpected :${type} for a ${kind}`);
  });

  for (const [process, pending] of pendingByProcess) {
    if (pending.input.kind !== 'read') {
      operations.push({ clientId: process, input: pending.input, output: undefined, call: pending.call, return: Infinity });
    }
  }
  return operations;
}

function parseInput(kind: string, argument: string): RegisterInput | undefined {
  if (kind === 'read') return argument === 'nil' ? { kind: 'read' } : undefined;
  if (kind === 'write') return /^\d+$/.test(argument) ? { kind: 'write', value: Number(argument) } : undefined;
  const pair = /^\[(\d+)\s+(\d+)\]$/.exec(argument);
  return pair ? { kind: 'cas', from: Number(pair[1]), to: Number(pair[2]) } : undefined;
}
