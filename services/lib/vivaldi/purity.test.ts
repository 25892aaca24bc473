import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// Vivaldi is a protocol core (DESIGN.md, STYLE.md): no sockets, files, timers, clock or hidden
// randomness. RTTs come in from the shell; randomness through the injected `random`.
const sources = readdirSync(__dirname).filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'));

describe('the Vivaldi core is pure', () => {
  test('there is something to check', () => expect(sources).toEqual(expect.arrayContaining(['client.ts', 'codec.ts', 'config.ts', 'coordinate.ts'])));

  test.each(sources)('%s imports only its siblings, and reads no clock or Math.random', (file) => {
    const text = readFileSync(join(__dirname, file), 'utf8');
    for (const [, source] of text.matchAll(/from '([^']+)'/g)) expect([source, source.startsWith('./')]).toEqual([source, true]);
    expect(text).not.toMatch(/\brequire\(|\bimport\(|Date\.now|new Date\(|Math\.random|setTimeout|setInterval|setImmediate|process\.|performance\.now/);
  });
});
