/**
 * An area's ID, as the router's store makes them (randomUUID): 8-4-4-4-12 hex digits. The router
 * refuses any other ID before it looks anything up (reliability.md S4), and the catalog's test
 * router answers as it does.
 */
const AREA_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Why `id` cannot name an area, or undefined when it can. */
export function areaIdProblem(id: string): string | undefined {
  if (id === '') return 'Missing area ID';
  if (!AREA_ID.test(id)) return `Invalid area ID "${id}": an area ID is a UUID (8-4-4-4-12 hex digits)`;
  return undefined;
}
