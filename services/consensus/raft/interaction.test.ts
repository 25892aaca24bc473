/**
 * Runs every golden transcript in testdata/ (etcd-io/raft's interaction tests): the output of
 * each command must match the transcript exactly. UPDATE_GOLDEN=1 rewrites the transcripts;
 * review the diff before committing it.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { InteractionEnv } from './testing/interaction-env';

const dir = join(__dirname, 'testdata');

describe('golden transcripts', () => {
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.txt')).sort()) {
    test(file, () => {
      const path = join(dir, file);
      const expected = readFileSync(path, 'utf8');
      const actual = new InteractionEnv().run(expected);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(path, actual);
      else expect(actual).toBe(expected);
    });
  }
});
