import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// The SWIM core is pure (DESIGN.md, STYLE.md): no sockets, files, timers or clock. Time comes in
// as tick(), the network as receivePacket()/receiveStream(), randomness through the config. The
// wire codec sits beside it and is pure too (bytes in, messages out).
const sources = readdirSync(__dirname).filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'));

describe('the SWIM core is pure', () => {
  test.each(sources)('%s imports only its siblings, lib/invariant and generated messages, and reads no clock', (file) => {
    const text = readFileSync(join(__dirname, file), 'utf8');
    for (const [, source] of text.matchAll(/from '([^']+)'/g)) {
      const allowed = source.startsWith('./') || source === '../invariant' || source.startsWith('../../gen/') || source === '@bufbuild/protobuf/wire';
      expect([source, allowed]).toEqual([source, true]);
    }
    expect(text).not.toMatch(/\brequire\(|Date\.now|new Date\(|Math\.random|setTimeout|setInterval|setImmediate|process\.|performance\.now/);
  });
});
