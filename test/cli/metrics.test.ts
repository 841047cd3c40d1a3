/** --metrics-file: Prometheus textfile metrics shared by several runs, checked with promtool. */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, interruptCli, runCli, runProcess, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { promtool } from '../helpers/services.mjs';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const promtoolBin = promtool();

afterAll(cleanupTempDirs);

/** The series of a metrics file as `name{labels}` → value, read with a plain regex (not our parser). */
function series(file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m) out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return out;
}

const run = (command: string, table: string, env = 'test') => `{command="${command}",env="${env}",table="${table}"}`;

/** promtool reads the exposition on stdin; exit 0 and no lint complaints. */
function promtoolCheck(file: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(promtoolBin!, ['check', 'metrics'], (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? (error.code as unknown as number) : 0, output: `${stdout}${stderr}` });
    });
    child.stdin!.end(readFileSync(file));
  });
}

describe.skipIf(!promtoolBin)('--metrics-file shared by several runs', () => {
  let server: TestServer;
  let dir: string;
  let file: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    server = await startServer({ data: FIXTURE, maxSessions: 5 });
    dir = tempDir('legacy-metrics-');
    file = join(dir, 'legacy.prom');
    env = { ...server.env, LEGACY_METRICS_FILE: file };
  });
  afterAll(() => server.stop());

  it('successes, failures and two runs at once all land in one valid file', async () => {
    const ok = await runCli(['get-table', 'Teile', '--csv'], { env });
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await runCli(['get-table', 'Nope'], { env });
    expect(bad.code).toBe(65);
    const usage = await runCli(['get-table', 'Teile', '--limit', 'x'], { env });
    expect(usage.code).toBe(64);
    // Two (four) at once: the lock and the merge keep every run.
    const together = await Promise.all([
      runProcess(['get-table', 'Teile', '--ndjson'], { env }),
      runProcess(['get-table', 'Gruppe', '--csv'], { env }),
      runProcess(['get-table', 'Teile', '--json'], { env }),
      runProcess(['get-table', 'Gruppe', '--json'], { env }),
    ]);
    for (const r of together) expect(r.code, r.stderr).toBe(0);
    const refresh = await runCli(['session', 'refresh'], { env });
    expect(refresh.code, refresh.stderr).toBe(0);
    // A transient failure is retried: one retry, one 5xx.
    await server.control('faults', { queue: [{ kind: '503', match: 'read', count: 1 }] });
    const retried = await runCli(['get-table', 'Gruppe', '--csv'], { env });
    expect(retried.code, retried.stderr).toBe(0);
    // --metrics-file wins over LEGACY_METRICS_FILE, and a relative path is taken from the working directory.
    const flag = await runCli(['tables', '--metrics-file', 'legacy.prom'], { env: { ...env, LEGACY_METRICS_FILE: join(dir, 'other.prom') }, cwd: dir });
    expect(flag.code, flag.stderr).toBe(0);

    const check = await promtoolCheck(file);
    expect(check, check.output).toEqual({ code: 0, output: '' });
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir)).toEqual(['legacy.prom']); // no temporary file, no lock left behind

    const m = series(file);
    const teile = run('get-table', 'Teile');
    expect(m.get(`legacy_runs_total${teile}`)).toBe(3);
    expect(m.get(`legacy_rows_read_total${teile}`)).toBe(12);
    expect(m.get(`legacy_rows_written_total${teile}`)).toBe(12);
    expect(m.get(`legacy_last_run_rows_written${teile}`)).toBe(4);
    expect(m.get(`legacy_last_run_exit_code${teile}`)).toBe(0);
    expect(m.get(`legacy_last_success_timestamp_seconds${teile}`)).toBe(m.get(`legacy_last_run_timestamp_seconds${teile}`));
    expect(m.get(`legacy_last_run_timestamp_seconds${teile}`)).toBeGreaterThan(Date.now() / 1000 - 120);
    expect(m.get(`legacy_last_run_duration_seconds${teile}`)).toBeGreaterThan(0);
    expect(m.get(`legacy_http_requests_total{code="2xx",command="get-table",env="test",table="Teile"}`)).toBeGreaterThanOrEqual(6);
    const gruppe = run('get-table', 'Gruppe');
    expect(m.get(`legacy_runs_total${gruppe}`)).toBe(3);
    expect(m.get(`legacy_rows_written_total${gruppe}`)).toBe(6);
    // The first run created the one server session; nobody else did.
    const created = [...m].filter(([k]) => k.startsWith('legacy_sessions_created_total')).reduce((a, [, v]) => a + v, 0);
    expect(created).toBe(1);
    expect(m.get('legacy_session_age_seconds{env="test"}')).toBeGreaterThanOrEqual(0);

    // A failed run updates its series, but not its last success.
    const nope = run('get-table', 'Nope');
    expect(m.get(`legacy_last_run_exit_code${nope}`)).toBe(65);
    expect(m.get(`legacy_runs_total${nope}`)).toBe(1);
    expect(m.has(`legacy_last_success_timestamp_seconds${nope}`)).toBe(false);
    expect(m.get(`legacy_last_run_exit_code${run('get-table', '')}`)).toBe(64);

    expect(m.get(`legacy_last_run_exit_code${run('session refresh', '')}`)).toBe(0);
    expect(m.get(`legacy_http_retries_total${gruppe}`)).toBe(1);
    expect(m.get(`legacy_http_requests_total{code="5xx",command="get-table",env="test",table="Gruppe"}`)).toBe(1);
    expect(m.get(`legacy_runs_total${run('tables', '')}`)).toBe(1);
    expect(existsSync(join(dir, 'other.prom'))).toBe(false);
  });

  it('sync gets its command label and rows; the environment from the config; Ctrl-C is recorded as 130', async () => {
    const configFile = join(server.configDir, 'config.json');
    const own = join(dir, 'config.prom');
    writeFileSync(configFile, JSON.stringify({ environments: { test: { baseUrl: server.url, metricsFile: own } } }));
    try {
      const synced = await runCli(['sync', 'Teile', 'Gruppe'], { env: server.env });
      expect(synced.code, synced.stderr).toBe(0);
      const status = await runCli(['sync', 'status'], { env: server.env });
      expect(status.code, status.stderr).toBe(0);
      await server.control('options', { latencyMs: 600 });
      const before = (await server.stats()).requests;
      const interrupted = await interruptCli(['get-table', 'Teile', '--page-size', '1', '--concurrency', '1', '-o', join(dir, 'teile.csv')], {
        env: server.env,
        until: async () => (await server.stats()).requests > before,
      });
      expect(interrupted.code).toBe(130);
    } finally {
      await server.control('options', { latencyMs: 0 });
      writeFileSync(configFile, JSON.stringify({ environments: {} }));
    }
    expect((await promtoolCheck(own)).code).toBe(0);
    const m = series(own);
    const sync = run('sync', 'Teile,Gruppe');
    expect(m.get(`legacy_last_run_exit_code${sync}`)).toBe(0);
    expect(m.get(`legacy_last_run_rows_read${sync}`)).toBe(6);
    expect(m.get(`legacy_last_run_rows_written${sync}`)).toBe(6);
    expect(m.get(`legacy_last_run_exit_code${run('sync status', '')}`)).toBe(0);
    expect(m.get(`legacy_last_run_exit_code${run('get-table', 'Teile')}`)).toBe(130);
  });

  it('a metrics file that cannot be written is a warning and never changes the exit code', async () => {
    const r = await runCli(['get-table', 'Teile', '--csv', '--metrics-file', join(dir, 'missing', 'x.prom')], { env });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('ID,Name,Notiz,PLZ,Preis,Aktiv,Datum,Leer,Zeit,Daten,Familie');
    expect(r.stderr).toMatch(/cannot write metrics file .*missing\/x\.prom/);
    const failing = await runCli(['get-table', 'Nope', '--metrics-file', join(dir, 'missing', 'x.prom')], { env });
    expect(failing.code).toBe(65);
  });
});

describe.skipIf(!promtoolBin)('--metrics-file: licence waits', () => {
  it('402 waits are counted on a run that ends in exit 75', async () => {
    const server = await startServer({ data: FIXTURE, maxSessions: 1 });
    try {
      await server.control('occupy', { count: 1 });
      const file = join(tempDir('legacy-metrics-'), 'legacy.prom');
      const r = await runCli(['tables', '--metrics-file', file], {
        env: { ...server.env, LEGACY_ENV: 'busy', LEGACY_LICENCE_WAIT_MS: '600', LEGACY_LICENCE_RETRIES: '2' },
      });
      expect(r.code).toBe(75);
      expect((await promtoolCheck(file)).code).toBe(0);
      const m = series(file);
      expect(m.get(`legacy_last_run_exit_code${run('tables', '', 'busy')}`)).toBe(75);
      expect(m.get(`legacy_licence_waits_total${run('tables', '', 'busy')}`)).toBe(2);
      expect(m.get(`legacy_http_requests_total{code="4xx",command="tables",env="busy",table=""}`)).toBe(3);
    } finally {
      await server.stop();
    }
  });
});
