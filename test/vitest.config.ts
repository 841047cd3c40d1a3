import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The behaviour tests of sessions, export, push-field, sync and watch run once per 4D generation the
 * emulator plays (test/helpers/emulator.ts reads EMU_GENERATION and EMU_REFUSAL_STATUS): the
 * default project runs every test against v20r (both cookies), and each matrix project runs the
 * behaviour files again against one other generation: the tests whose outcome the generation can
 * change (sessions, logins, refusals, requests counted, runs stopped or faulted in a session); the
 * others are `itOnce` (test/helpers/emulator.ts). A matrix in the runner, not copied files.
 */
const BEHAVIOUR = [
  'test/cli/session.test.ts',
  'test/cli/session-generations.test.ts',
  'test/cli/get-table.test.ts',
  'test/cli/push-field.test.ts',
  'test/cli/roundtrip.test.ts',
  'test/cli/sync.test.ts',
  'test/cli/watch.test.ts',
];
const MEMORY = ['test/emulator/scale.test.ts'];
const MATRIX: Array<{ name: string; env: Record<string, string> }> = [
  { name: 'v18', env: { EMU_GENERATION: 'v18' } },
  { name: 'v20', env: { EMU_GENERATION: 'v20' } },
  { name: 'v21-401', env: { EMU_GENERATION: 'v21', EMU_REFUSAL_STATUS: '401' } },
  { name: 'v21-403', env: { EMU_GENERATION: 'v21', EMU_REFUSAL_STATUS: '403' } },
];

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 3,
    isolate: false,
    setupFiles: ['test/setup.ts'],
    projects: [
      { extends: true, test: { name: 'v20r', include: ['test/**/*.test.ts'], exclude: MEMORY } },
      // Measures this process's memory: alone in a fresh worker, never after other files' garbage.
      { extends: true, test: { name: 'memory', include: MEMORY, isolate: true } },
      ...MATRIX.map(({ name, env }) => ({ extends: true, test: { name, include: BEHAVIOUR, env } })),
    ],
  },
});
