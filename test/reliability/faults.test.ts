/**
 * Exports under injected faults. Every run writes with -o into its own
 * directory, so "never a silently short file" is checked directly: after each run the directory
 * holds either the complete file, byte-identical to a clean run, or nothing at all (and then the
 * exit status is the documented 69 with one line on stderr).
 *
 * Default run: 5,000 rows in pages of 100 (50 data requests per export). Stress: 50,000 rows in
 * pages of 500 (100 data requests), and the 10% mix with three seeds.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, collect, runCli, spawnCli, tempDir, type CliResult } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import type { FaultOptions } from '../../src/emulator/index.js';
import { expectCleanFailure, listDir, resumableLeftovers, sha256, size, STRESS, tempFilesFor, waitFor } from './support.js';

const ROWS = size(5_000, 50_000);
const PAGE = size(100, 500);
const OUT = 'artikel.csv';

let server: TestServer;
let clean: Buffer;

afterAll(async () => {
  await server?.stop();
  cleanupTempDirs();
});

beforeAll(async () => {
  // A small licence pool. When the session expires while several pages are in flight, the server
  // answers each of them in a new session; only one can be kept and the client must log the others
  // out at once (before 105abd5 they held their licence for an hour and the mix ended in 402/75).
  // Not 3: a session the server opens for a request whose answer is then lost (reset, truncated,
  // timed out) can never be released by the client, and the 10% mix produces a few of those per
  // run; they hold a licence until the server's idle timeout.
  server = await startServer({ rows: { Artikel: ROWS }, maxSessions: 10 });
  // Runs here fail on purpose, one after another, in one config dir: that opens the environment's
  // circuit breaker, as it should in production, and the next runs would be refused without a
  // request. This file is about each run's own retries; the breaker's tests are test/cli/breaker.test.ts.
  server.env.LEGACY_BREAKER = '0';
  const dir = tempDir('legacy-faults-');
  const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', String(PAGE), '-o', join(dir, OUT)], { env: server.env, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  clean = readFileSync(join(dir, OUT));
  // The reference itself is complete: every row once, in key order.
  const rows = parse(clean, { columns: true }) as Array<{ UID: string }>;
  expect(rows).toHaveLength(ROWS);
  expect(new Set(rows.map((row) => row.UID)).size).toBe(ROWS);
}, 180_000);

afterEach(async () => {
  await server.control('faults', undefined, 'DELETE');
  await server.control('options', { faults: { rate: 0, expireEvery: 0 }, latencyMs: 0 });
});

/** Fresh counters and sessions, then these faults. */
async function arm(faults: FaultOptions): Promise<void> {
  await server.control('reset', {});
  await server.control('options', { faults });
}

/** Export with -o into a fresh directory; return the result and what the directory holds. */
async function exportTo(extra: string[]): Promise<{ r: CliResult; dir: string; files: string[] }> {
  const dir = tempDir('legacy-faults-');
  const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', String(PAGE), '-o', join(dir, OUT), ...extra], {
    env: server.env,
    timeoutMs: 240_000,
  });
  return { r, dir, files: listDir(dir) };
}

/** The property of every run: complete and identical, or a clean 69 and no file at all. */
function expectCompleteOrAbsent({ r, dir, files }: { r: CliResult; dir: string; files: string[] }): 'complete' | 'failed' {
  if (r.code === 0) {
    expect(files).toEqual([OUT]);
    const got = readFileSync(join(dir, OUT));
    expect(got.length, 'output size').toBe(clean.length);
    expect(sha256(got), 'output bytes').toBe(sha256(clean));
    return 'complete';
  }
  expectCleanFailure(r, 69);
  expect(files, 'a failed export leaves nothing under the final name, no temporary file; at most its resumable partial file and record').not.toContain(OUT);
  expect(resumableLeftovers(dir, OUT), files.join(' ')).toBe(true);
  return 'failed';
}

const totalFaults = (stats: Record<string, any>) => Object.values(stats.faults as Record<string, number>).reduce((a, b) => a + b, 0);

interface KindCase {
  name: string;
  faults: FaultOptions;
  args: string[];
  /** The stats.faults counter that proves the fault fired. */
  counter: string;
}

const KINDS: KindCase[] = [
  { name: 'HTTP 500 (HTML body)', faults: { rate: 0.15, kinds: ['500'], seed: 11 }, args: ['--retries', '6'], counter: '500' },
  { name: 'HTTP 503', faults: { rate: 0.15, kinds: ['503'], seed: 12 }, args: ['--retries', '6'], counter: '503' },
  { name: 'connection reset', faults: { rate: 0.15, kinds: ['reset'], seed: 13 }, args: ['--retries', '6'], counter: 'reset' },
  { name: 'truncated body', faults: { rate: 0.15, kinds: ['truncate'], seed: 14 }, args: ['--retries', '6'], counter: 'truncate' },
  {
    name: 'slow answers beyond --timeout',
    faults: { rate: 0.06, kinds: ['slow'], slowMs: 3000, seed: 15 }, // each costs a full --timeout, so fewer
    args: ['--timeout', '1000', '--retries', '6'],
    counter: 'slow',
  },
  { name: 'forced session expiry every 4 data requests', faults: { rate: 0, expireEvery: 4 }, args: [], counter: 'expire' },
];

describe(`faults, one kind at a time (${ROWS} rows)`, () => {
  it.for(KINDS)('$name: the output is byte-identical to a clean run', async (kase) => {
    await arm(kase.faults);
    const run = await exportTo(kase.args);
    expect(run.r.code, run.r.stderr).toBe(0); // with this retry budget the export must get through
    expect(expectCompleteOrAbsent(run)).toBe('complete');
    const stats = await server.stats();
    expect(stats.faults[kase.counter], `${kase.counter} faults fired`).toBeGreaterThan(0);
    expect(stats.duplicateCookieRejections).toBe(0);
  });
});

const EXHAUSTED: KindCase[] = [
  { name: 'HTTP 500 on every request', faults: { rate: 1, kinds: ['500'], seed: 21 }, args: ['--retries', '1'], counter: '500' },
  { name: 'HTTP 503 on every request', faults: { rate: 1, kinds: ['503'], seed: 22 }, args: ['--retries', '1'], counter: '503' },
  { name: 'reset on every request', faults: { rate: 1, kinds: ['reset'], seed: 23 }, args: ['--retries', '1'], counter: 'reset' },
  { name: 'truncated on every request', faults: { rate: 1, kinds: ['truncate'], seed: 24 }, args: ['--retries', '1'], counter: 'truncate' },
  {
    name: 'slow on every request',
    faults: { rate: 1, kinds: ['slow'], slowMs: 3000, seed: 25 },
    args: ['--timeout', '500', '--retries', '1'],
    counter: 'slow',
  },
];

describe('retries run out: a clean failure (69) and no file', () => {
  it.for(EXHAUSTED)('$name', async (kase) => {
    await arm(kase.faults);
    const run = await exportTo(kase.args);
    expect(expectCompleteOrAbsent(run)).toBe('failed');
    expect((await server.stats()).faults[kase.counter]).toBeGreaterThanOrEqual(2); // the first try and one retry
  });

  it('the server starts failing half-way through: the partial data never reaches the final name', async () => {
    await arm({ rate: 0 });
    await server.control('options', { latencyMs: 15 });
    const dir = tempDir('legacy-faults-');
    const child = spawnCli(['get-table', 'Artikel', '--csv', '--page-size', '50', '--concurrency', '1', '--retries', '2', '-o', join(dir, OUT)], {
      env: server.env,
    });
    const done = collect(child, { timeoutMs: 120_000 });
    // Wait until rows are being written into the partial file, then break the server.
    await waitFor(() => tempFilesFor(dir, OUT).some((f) => statSync(join(dir, f)).size > 10_000), 60_000, 'rows in the partial file');
    await server.control('options', { faults: { rate: 1, kinds: ['503'], seed: 3 } });
    const r = await done;
    expectCleanFailure(r, 69, /503/);
    // Nothing under the final name; the rows so far stay beside it, resumable (get-table-resume.test.ts).
    expect(listDir(dir)).toEqual([`.${OUT}.partial`, `.${OUT}.resume.json`]);
    // The server is back: the next run carries on to the same bytes as a clean run.
    await server.control('options', { faults: { rate: 0 } });
    const again = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '50', '-o', join(dir, OUT)], { env: server.env, timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('resuming');
    expect(sha256(readFileSync(join(dir, OUT)))).toBe(sha256(clean));
    expect(listDir(dir)).toEqual([OUT]);
  });
});

const MIX_SEEDS = STRESS ? [101, 202, 303] : [101];

describe('a 10% mix of every fault kind plus forced session expiry', () => {
  it.for(MIX_SEEDS)('seed %i: byte-identical output', async (seed) => {
    await arm({ rate: 0.1, kinds: ['500', '503', 'reset', 'truncate', 'slow'], slowMs: 3000, seed, expireEvery: 7 });
    const run = await exportTo(['--timeout', '1000', '--retries', '8']);
    expect(run.r.code, run.r.stderr).toBe(0);
    expect(expectCompleteOrAbsent(run)).toBe('complete');
    const stats = await server.stats();
    expect(stats.faults.expire).toBeGreaterThan(0);
    expect(totalFaults(stats) - stats.faults.expire).toBeGreaterThanOrEqual(3);
    expect(stats.duplicateCookieRejections).toBe(0);
  });

  it('the same mix with low retries: complete, or a clean 69 with no file — never a short one', async () => {
    const outcomes: string[] = [];
    for (let i = 0; i < size(3, 8); i++) {
      await arm({ rate: 0.1, kinds: ['500', '503', 'reset', 'truncate'], seed: 404 + i, expireEvery: 7 });
      outcomes.push(expectCompleteOrAbsent(await exportTo(['--retries', '0'])));
    }
    // With no retries at 10% faults over dozens of requests, failures are practically certain:
    // this proves the failure path was exercised, not just the happy one.
    expect(outcomes).toContain('failed');
  });
});

describe.skipIf(!STRESS)('stress: every output format, and plain paging, under the 10% mix', () => {
  const FORMATS: Array<{ name: string; args: string[] }> = [
    { name: 'NDJSON', args: ['--ndjson'] },
    { name: 'JSON', args: ['--json'] },
    { name: 'CSV with --meta', args: ['--csv', '--meta'] },
    { name: 'CSV paged with $skip/$top (--no-entityset)', args: ['--csv', '--no-entityset'] },
  ];
  it.for(FORMATS)('$name: byte-identical to a clean run of the same format', async ({ args }) => {
    await arm({ rate: 0 });
    const cleanDir = tempDir('legacy-faults-');
    const base = ['get-table', 'Artikel', ...args, '--page-size', String(PAGE)];
    const reference = await runCli([...base, '-o', join(cleanDir, 'out')], { env: server.env, timeoutMs: 240_000 });
    expect(reference.code, reference.stderr).toBe(0);
    await arm({ rate: 0.1, kinds: ['500', '503', 'reset', 'truncate', 'slow'], slowMs: 3000, seed: 505, expireEvery: 9 });
    const dir = tempDir('legacy-faults-');
    const r = await runCli([...base, '--timeout', '1000', '--retries', '8', '-o', join(dir, 'out')], { env: server.env, timeoutMs: 600_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(listDir(dir)).toEqual(['out']);
    expect(sha256(readFileSync(join(dir, 'out')))).toBe(sha256(readFileSync(join(cleanDir, 'out'))));
    expect(totalFaults(await server.stats())).toBeGreaterThan(5);
  });
});

describe('forced session expiry on a server that requires a login', () => {
  // Was a defect (fixed in be0fe9a): a request allowed one login only, so a page re-sent after a
  // login that met the next expiry ended the export with 77 "check the username and password".
  it('the export is byte-identical to a clean one (re-login mid-run at the default concurrency)', async () => {
    const auth = await startServer({ rows: { Artikel: 1_000 }, maxSessions: 50, auth: { user: 'erp', password: 'Pw-faults-1' } });
    try {
      const env = { ...auth.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: 'Pw-faults-1' };
      const cleanRun = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '50'], { env });
      expect(cleanRun.code, cleanRun.stderr).toBe(0);
      await auth.control('options', { faults: { expireEvery: 7 } });
      const dir = tempDir('legacy-faults-');
      const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '50', '-o', join(dir, OUT)], { env });
      expect((await auth.stats()).faults.expire).toBeGreaterThan(0);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(join(dir, OUT), 'utf8') === cleanRun.stdout).toBe(true);
    } finally {
      await auth.stop();
    }
  });
});

// TODO(sync): the same fault matrix for `legacy sync` once it exists (issue 7): the sync database
// must end up identical to a clean sync, or unchanged with exit 69 when retries run out.
