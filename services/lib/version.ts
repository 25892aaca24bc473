/** The Consulate version and install root, from package.json, so the CLI, logs and spans agree. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The folder holding Consulate's package.json, found from here whether we run from dist/ or from source. */
export const PACKAGE_ROOT: string = findPackageRoot(__dirname);

export const VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate) && (JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name === 'consulate') return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find Consulate's package.json above ${start}`);
  }
}
