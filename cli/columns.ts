/**
 * ryanuber/columnize as Consul's CLI uses it: cells split on " | ", each column padded to its
 * widest cell, two spaces between columns, the last column not padded.
 */
export function columnize(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')).join('\n');
}
