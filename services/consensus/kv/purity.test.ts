/**
 * Holds the "pure core" rule of STYLE.md by reading the code: the state machine imports no I/O and
 * reads no clock or randomness, so every server applying the same log computes the same state.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const sources = readdirSync(__dirname).filter((file) => file.endsWith('.ts') && !file.endsWith('.test.ts'));

describe('the kv state machine is pure', () => {
  test.each(sources)('%s imports only the generated protos (and their wire runtime), its siblings and node:crypto', (file) => {
    const text = readFileSync(join(__dirname, file), 'utf8');
    const imports = [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
    for (const source of imports) {
      // lib/invariant is pure: an assertion that throws; @bufbuild/protobuf/wire is what the generated protos encode with.
      expect(source.startsWith('./') || source.startsWith('../../gen/consulate/consensus/v1/') || source === '../../lib/invariant' || source === 'node:crypto' || source === '@bufbuild/protobuf/wire').toBe(true);
    }
    expect(text).not.toMatch(/\brequire\(|Date\.now|new Date\(|Math\.random|setTimeout|setInterval|setImmediate|process\.(hrtime|env)|performance\.now/);
  });
});
