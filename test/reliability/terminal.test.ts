/**
 * A terminal whose width is 0 (`script -qc …`, some CI terminals) must not hang
 * the CLI. A pseudo-terminal made by script(1) has 0 columns and 0 rows; the progress display,
 * which cannot tell how many lines its text takes there, draws nothing instead.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanupTempDirs, runShell } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';

const haveScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    process.stderr.write('!!!! script(1) (util-linux) is not installed: the 0-column terminal test is SKIPPED\n');
    return false;
  }
})();

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ rows: { Artikel: 3000 } });
});
afterAll(async () => {
  await server?.stop();
  cleanupTempDirs();
});

describe.skipIf(!haveScript)('a pseudo-terminal with 0 columns', () => {
  it('get-table finishes at once, prints its rows and no endless cursor escapes', async () => {
    const command = `${process.execPath} ${BIN} get-table Artikel --limit 3000 --csv`;
    // The inner timeout ends a hang (the old behaviour: 100% CPU writing escapes) with 137.
    const r = await runShell(`timeout -s KILL 30 script -qec ${JSON.stringify(command)} /dev/null`, { env: server.env, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('UID');
    expect(r.stdout.length).toBeLessThan(2_000_000);
  });
});
