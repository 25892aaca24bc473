import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// The Raft core is pure (DESIGN.md, STYLE.md): no sockets, files, timers or clock. Time comes
// in as tick(), the network as step(), randomness through the config.
const sources = readdirSync(__dirname).filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'));

describe('the Raft core is pure', () => {
  test.each(sources)('%s imports only its siblings and lib/invariant, and reads no clock', (file) => {
    const text = readFileSync(join(__dirname, file), 'utf8');
    for (const [, source] of text.matchAll(/from '([^']+)'/g)) expect([source, source.startsWith('./') || source === '../../lib/invariant']).toEqual([source, true]);
    expect(text).not.toMatch(/\brequire\(|Date\.now|new Date\(|Math\.random|setTimeout|setInterval|setImmediate|process\.|performance\.now/);
  });
});
