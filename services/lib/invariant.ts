/**
 * Assertions that stay on in production (TigerBeetle's rule): a broken invariant means the
 * process can no longer be trusted, so it stops loudly instead of corrupting state further.
 */
export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
}

export function invariant(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new InvariantViolation(typeof message === 'string' ? message : message());
}
