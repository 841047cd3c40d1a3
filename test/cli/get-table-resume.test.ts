/**
 * `get-table -o FILE` resumes (issue 27): an export killed (SIGKILL, Ctrl-C) leaves its partial
 * file and record beside FILE, and the next run carries on to a file byte for byte the same as an
 * uninterrupted export, also after the server dropped its entity sets. Spawned processes (dist/)
 * for the signals; the emulator is slowed per page so the kill lands where the test wants it.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, collect, runCli, spawnCli, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';

afterAll(cleanupTempDirs);

const ROWS = 2000;
/**
 * Per request: 20 pages of 100 rows take about 0.8 s. The latest kill point (85% of the file) is
 * reached while page 18 is written, with the next page already asked for: about two pages (80 ms)
 * remain for the poll, every 10 ms, to see it.
 */
const LATENCY_MS = 40;
const PAGE = ['--page-size', '100', '--concurrency', '1'];
const FORMATS = ['csv', 'ndjson', 'json'] as const;
type Fmt = (typeof FORMATS)[number];

let server: TestServer;
const reference = new Map<string, Buffer>();

beforeAll(async () => {
  server = await startServer({ rows: { Artikel: ROWS }, latencyMs: LATENCY_MS });
});
afterAll(() => server?.stop());

/** The uninterrupted export of the same data and options, to compare with. */
async function uninterrupted(format: Fmt, extra: string[] = []): Promise<Buffer> {
  const id = `${format} ${extra.join(' ')}`;
  const known = reference.get(id);
  if (known) return known;
  const dir = tempDir('legacy-resume-ref-');
  const file = join(dir, `ref.${format}`);
  const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE, ...extra], { env: server.env });
  expect(r.code, r.stderr).toBe(0);
  const bytes = readFileSync(file);
  reference.set(id, bytes);
  return bytes;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function side(file: string) {
  const dir = join(file, '..');
  const name = file.slice(dir.length + 1);
  return { partial: join(dir, `.${name}.partial`), record: join(dir, `.${name}.resume.json`), lock: join(dir, `.${name}.resume.lock`) };
}

/**
 * Start an export to `file`, wait until `when` holds (checked every 10 ms; the final name must
 * never hold anything meanwhile), then send `signal`. Returns the outcome of the killed run.
 */
async function interrupt(file: string, args: string[], when: () => boolean, signal: NodeJS.Signals = 'SIGKILL', before?: Buffer) {
  const child = spawnCli(['get-table', 'Artikel', '-o', file, ...PAGE, ...args], { env: server.env });
  const done = collect(child);
  let finished = false;
  void done.then(() => (finished = true));
  for (let i = 0; i < 3000 && !finished && !when(); i++) {
    if (before) expect(readFileSync(file).equals(before)).toBe(true);
    else expect(existsSync(file)).toBe(false);
    await sleep(10);
  }
  expect(finished, 'the export ended before it could be interrupted').toBe(false);
  child.kill(signal);
  const r = await done;
  if (before) expect(readFileSync(file).equals(before)).toBe(true);
  else expect(existsSync(file)).toBe(false);
  return r;
}

function record(file: string): Record<string, any> {
  return JSON.parse(readFileSync(side(file).record, 'utf8')) as Record<string, any>;
}

const size = (path: string) => (existsSync(path) ? statSync(path).size : 0);

/** Where in the export the kill lands: after the first page, half way, near the end. */
const POINTS = {
  'after one page': (_file: string, _full: number) => (path: string) => existsSync(side(path).record),
  'mid-file': (_file: string, full: number) => (path: string) => size(side(path).partial) >= full * 0.5,
  'near the end': (_file: string, full: number) => (path: string) => size(side(path).partial) >= full * 0.85,
} as const;

describe('an export killed with SIGKILL, then resumed, is byte-identical to an uninterrupted one', () => {
  const cases = FORMATS.flatMap((format) => (Object.keys(POINTS) as Array<keyof typeof POINTS>).map((point) => [format, point] as const));
  it.each(cases)('%s, killed %s', async (format, point) => {
    const full = await uninterrupted(format);
    const dir = tempDir('legacy-resume-');
    const file = join(dir, `Artikel.${format}`);
    const killed = await interrupt(file, [], () => POINTS[point](file, full.length)(file));
    expect(killed.signal).toBe('SIGKILL');
    // Left beside the file: the partial output and its record (0600), never the final name.
    expect(existsSync(side(file).partial)).toBe(true);
    expect(statSync(side(file).record).mode & 0o777).toBe(0o600);
    const rec = record(file);
    expect(rec).toMatchObject({ table: 'Artikel', format, environment: 'test', baseUrl: server.url, key: 'UID', filter: null });
    expect(rec.rows).toBeGreaterThan(0);
    expect(rec.rows).toBeLessThan(ROWS);
    expect(size(side(file).partial)).toBeGreaterThanOrEqual(rec.bytes);

    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    // One line says it resumed, and from where.
    expect(r.stderr).toMatch(new RegExp(`^legacy: warning: resuming Artikel\\.${format} after ${rec.rows} rows .*\\n$`));
    expect(readFileSync(file).equals(full)).toBe(true);
    if (format === 'json') expect(JSON.parse(readFileSync(file, 'utf8'))).toHaveLength(ROWS);
    // Nothing left beside it.
    expect(readdirSync(dir)).toEqual([`Artikel.${format}`]);
  });
});

describe('--skip and --limit across the interruption', () => {
  it('the resumed run reads what is left of the limit after the key, and the count over the file includes the skipped rows', async () => {
    const extra = ['--skip', '150', '--limit', '1500', '--where', 'Aktiv=true'];
    const full = await uninterrupted('csv', extra);
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.csv');
    await interrupt(file, extra, () => size(side(file).partial) >= full.length * 0.5 && existsSync(side(file).record));
    expect(record(file)).toMatchObject({ skip: 150, limit: 1500, filter: 'Aktiv = :1', params: [true] });
    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE, ...extra], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('resuming');
    expect(readFileSync(file).equals(full)).toBe(true);
  });
});

describe('resuming after the server dropped its entity sets', () => {
  it.each(FORMATS)('%s: the rest is read by key, not by the position in a set that is gone', async (format) => {
    const full = await uninterrupted(format);
    const dir = tempDir('legacy-resume-');
    const file = join(dir, `Artikel.${format}`);
    await interrupt(file, [], () => size(side(file).partial) >= full.length * 0.4 && existsSync(side(file).record));
    // The killed run's session and its entity set are gone on the server (a page request of the
    // killed run still being answered may recreate the set in a new session: expire until none is left).
    for (let i = 0; i < 20; i++) {
      await server.control('expire-sessions', {});
      await sleep(150);
      if ((await server.stats()).entitySets === 0) break;
    }
    expect((await server.stats()).entitySets).toBe(0);
    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('resuming');
    expect(readFileSync(file).equals(full)).toBe(true);
  });
});

describe('the partial file is cut back to its last complete page', () => {
  it('bytes after the recorded length (a half-written page) never reach the file', async () => {
    const full = await uninterrupted('json');
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.json');
    await interrupt(file, [], () => size(side(file).partial) >= full.length * 0.5 && existsSync(side(file).record));
    // What a run killed in the middle of a page leaves after the record's length.
    writeFileSync(side(file).partial, '{"UID":"half a row', { flag: 'a' });
    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE, '--resume'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(file).equals(full)).toBe(true);
  });

  it('a second run to the same file while one is writing it exits 75; the lock of a killed run is taken over', async () => {
    const full = await uninterrupted('csv');
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.csv');
    const child = spawnCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    const done = collect(child);
    for (let i = 0; i < 3000 && !existsSync(side(file).record); i++) await sleep(10);
    const second = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    expect(second.code).toBe(75);
    expect(second.stderr).toContain(`another legacy run (pid ${child.pid}) is writing ${file}`);
    child.kill('SIGKILL');
    await done;
    expect(readFileSync(side(file).lock, 'utf8').trim()).toBe(String(child.pid));
    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(file).equals(full)).toBe(true);
    expect(readdirSync(dir)).toEqual(['Artikel.csv']);
  });
});

describe('Ctrl-C', () => {
  it('SIGINT exits 130 and leaves a resumable partial export, which the next run completes', async () => {
    const full = await uninterrupted('csv');
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.csv');
    const r = await interrupt(file, [], () => size(side(file).partial) >= full.length * 0.3, 'SIGINT');
    expect(r.code).toBe(130);
    expect(r.stderr.trim().split('\n')).toEqual(['legacy: interrupted (SIGINT)']);
    const rec = record(file);
    // The last page written before the signal is recorded (a final checkpoint), not only the last throttled one.
    expect(rec.rows).toBeGreaterThanOrEqual(Math.floor((ROWS * 0.3) / 100) * 100 - 100);
    expect(existsSync(side(file).lock)).toBe(false);
    const again = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE, '--resume'], { env: server.env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`resuming Artikel.csv after ${rec.rows} rows`);
    expect(readFileSync(file).equals(full)).toBe(true);
  });
});

describe('what does not resume', () => {
  it('a record made with another filter does not resume: automatic starts over and says so, --resume is a usage error', async () => {
    const full = await uninterrupted('csv');
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.csv');
    await interrupt(file, ['--where', 'Aktiv=true'], () => existsSync(side(file).record));
    expect(record(file).filter).toBe('Aktiv = :1');

    const forced = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE, '--resume'], { env: server.env });
    expect(forced.code).toBe(64);
    expect(forced.stderr).toContain('cannot resume Artikel.csv: its partial export was made with another filter');
    expect(existsSync(file)).toBe(false);
    expect(existsSync(side(file).record)).toBe(true);

    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('legacy: warning: the partial export of Artikel.csv was made with another filter; starting over\n');
    expect(readFileSync(file).equals(full)).toBe(true);
    expect(readdirSync(dir)).toEqual(['Artikel.csv']);
  });

  it('--no-resume starts over and removes what the interrupted run left', async () => {
    const full = await uninterrupted('ndjson');
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.ndjson');
    await interrupt(file, [], () => size(side(file).partial) >= full.length * 0.5 && existsSync(side(file).record));
    // A partial file whose bytes would show if it were carried on.
    writeFileSync(side(file).partial, 'not an export\n', { flag: 'a' });
    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE, '--no-resume'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('starting Artikel.ndjson over (--no-resume)');
    expect(r.stderr).not.toContain('resuming');
    expect(readFileSync(file).equals(full)).toBe(true);
    expect(readdirSync(dir)).toEqual(['Artikel.ndjson']);
  });

  it('xlsx cannot resume: --resume is a usage error (64) in one line', async () => {
    const dir = tempDir('legacy-resume-');
    const r = await runCli(['get-table', 'Artikel', '-o', join(dir, 'a.xlsx'), '--resume'], { env: server.env });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^legacy: --resume: an xlsx workbook cannot be resumed[^\n]*\n(hint: [^\n]*\n)?$/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('xlsx over a partial CSV export of the same name starts over and says so', async () => {
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.out');
    await interrupt(file, ['--csv'], () => existsSync(side(file).record));
    const r = await runCli(['get-table', 'Artikel', '-o', file, '--xlsx', '--limit', '50'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(
      'legacy: warning: cannot resume Artikel.out: an xlsx workbook cannot be appended to (it is a zip archive written whole); starting over\n',
    );
    expect(readFileSync(file).subarray(0, 2).toString()).toBe('PK');
    expect(readdirSync(dir)).toEqual(['Artikel.out']);
  });

  it('an export to standard output does not resume', async () => {
    const r = await runCli(['get-table', 'Artikel', '--csv', '--resume', '--limit', '1'], { env: server.env });
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--resume needs -o FILE');
  });
});

describe('the final name and the count over the whole file', () => {
  it('an existing file keeps its old content and mode until the resumed export replaces it', async () => {
    const full = await uninterrupted('csv');
    const dir = tempDir('legacy-resume-');
    const file = join(dir, 'Artikel.csv');
    writeFileSync(file, 'old,content\n', { mode: 0o640 });
    const old = readFileSync(file);
    await interrupt(file, [], () => size(side(file).partial) >= full.length * 0.5, 'SIGKILL', old);
    expect(statSync(side(file).partial).mode & 0o777).toBe(0o600);
    const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(file).equals(full)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o640);
  });

  it('rows deleted below the resume point between the runs: exit 65, no file, nothing left to resume', async () => {
    const server2 = await startServer({ rows: { Artikel: ROWS }, latencyMs: LATENCY_MS });
    try {
      const dir = tempDir('legacy-resume-');
      const file = join(dir, 'Artikel.csv');
      const child = spawnCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server2.env });
      const done = collect(child);
      for (let i = 0; i < 3000 && size(side(file).partial) < 700_000; i++) await sleep(10);
      child.kill('SIGKILL');
      await done;
      // Twenty random rows go: some of them were already in the partial file.
      await server2.control('mutate', { table: 'Artikel', delete: 20, seed: 7 });
      const r = await runCli(['get-table', 'Artikel', '-o', file, ...PAGE], { env: server2.env });
      expect(r.code).toBe(65);
      expect(r.stderr).toMatch(/the table changed between the interrupted run and this one/);
      expect(existsSync(file)).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      await server2.stop();
    }
  });
});
