/** One server session per environment, shared by every run and process. */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runCli, runProcess, tempDir } from '../helpers/cli.js';
import { runMain } from '../helpers/run.js';
import { itOnce, COOKIE_NAMES, startServer, type TestServer } from '../helpers/emulator.js';

/**
 * A run that needs a licensed session under every generation (under force login, v21, `tables` is
 * served to a guest session without a licence, so it would prove nothing here).
 */
const RUN = ['get-table', 'Kunden', '--limit', '1', '--csv'];

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(cleanupTempDirs);

function storedCookie(configDir: string): string | undefined {
  const file = JSON.parse(readFileSync(join(configDir, 'sessions.json'), 'utf8'));
  const cookies = file.sessions[0]?.cookies as Record<string, string> | undefined;
  return cookies ? Object.values(cookies)[0] : undefined;
}

describe('session reuse', () => {
  itOnce('50 sequential runs create exactly one server session, never a duplicate cookie', async () => {
    server = await startServer({ maxSessions: 3 });
    for (let i = 0; i < 50; i++) {
      const r = await runCli(RUN, { env: server.env });
      expect(r.code, r.stderr).toBe(0);
    }
    const stats = await server.stats();
    expect(stats.sessionsCreated).toBe(1);
    expect(stats.duplicateCookieRejections).toBe(0);
    expect(stats.requestsWithoutCookie).toBe(1);
    expect(statSync(join(server.configDir, 'sessions.json')).mode & 0o777).toBe(0o600);
  });

  itOnce('16 concurrent cold runs create exactly one server session', async () => {
    server = await startServer({ maxSessions: 3, latencyMs: 20 });
    const runs = await Promise.all(Array.from({ length: 16 }, () => runProcess(RUN, { env: server!.env })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const stats = await server.stats();
    expect(stats.sessionsCreated).toBe(1);
    expect(stats.rejected402).toBe(0);
    expect(stats.duplicateCookieRejections).toBe(0);
  });

  it('a session replaced by the server mid-run is adopted and persisted; the run succeeds', async () => {
    server = await startServer({ rows: { Artikel: 3000 } });
    expect((await runCli(RUN, { env: server.env })).code).toBe(0);
    const first = storedCookie(server.configDir);
    await server.control('options', { faults: { expireEvery: 2 } });
    const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '500', '--concurrency', '1'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const rows = parse(r.stdout, { columns: true }) as Array<{ UID: string }>;
    expect(rows).toHaveLength(3000);
    expect(new Set(rows.map((x) => x.UID)).size).toBe(3000);
    const after = storedCookie(server.configDir);
    expect(after).not.toBe(first);
    const stats = await server.stats();
    expect(stats.duplicateCookieRejections).toBe(0);
  });

  it('an expired session (all sessions dropped by the server) is replaced silently on the next run', async () => {
    server = await startServer();
    expect((await runCli(RUN, { env: server.env })).code).toBe(0);
    const first = storedCookie(server.configDir);
    await server.control('expire-sessions', {});
    const r = await runCli(RUN, { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(storedCookie(server.configDir)).not.toBe(first);
    expect((await server.stats()).sessionsCreated).toBe(2);
  });
});

describe('licences (HTTP 402)', () => {
  it('402 while licences are taken, then a licence is freed: the run waits and succeeds', async () => {
    server = await startServer({ maxSessions: 2 });
    await server.control('occupy', { count: 2 });
    const createdBefore = (await server.stats()).sessionsCreated;
    const run = runCli(RUN, { env: { ...server.env, LEGACY_LICENCE_WAIT_MS: '20000', LEGACY_LICENCE_RETRIES: '8' } });
    await new Promise((r) => setTimeout(r, 1500));
    await server.control('release-occupied', {});
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    const stats = await server.stats();
    expect(stats.rejected402).toBeGreaterThan(0);
    expect(stats.sessionsCreated - createdBefore).toBe(1); // ours, once a licence was free
  });

  itOnce('402 that persists: exit 75 within the configured budget, with a clear message', async () => {
    server = await startServer({ maxSessions: 1 });
    await server.control('occupy', { count: 1 });
    const createdBefore = (await server.stats()).sessionsCreated;
    const started = Date.now();
    const r = await runCli(RUN, { env: { ...server.env, LEGACY_LICENCE_WAIT_MS: '2000', LEGACY_LICENCE_RETRIES: '3' } });
    const elapsed = Date.now() - started;
    expect(r.code).toBe(75);
    expect(r.stderr).toMatch(/licences are all in use/);
    // Holding no session, it cannot ask the server for its sessions: it says what to do instead.
    expect(r.stderr).toMatch(/this tool holds none.*free up after 60 min idle.*administrator/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(elapsed).toBeLessThan(2000 + 8000); // budget plus process start-up
    const stats = await server.stats();
    expect(stats.sessionsCreated - createdBefore).toBe(0); // we never opened a session while waiting
  });

  itOnce('the 402 message says how many tries were made and how long they really took (issue 22 item 10)', async () => {
    server = await startServer({ maxSessions: 1 });
    await server.control('occupy', { count: 1 });
    // The waits double from budget/(2^retries - 1) with jitter (x0.5 to x1): 3 retries in a 2 s budget
    // wait 1.0 to 2.0 s in all, so the run gives up before its budget is spent.
    const started = Date.now();
    const r = await runCli(RUN, { env: { ...server.env, LEGACY_LICENCE_WAIT_MS: '2000', LEGACY_LICENCE_RETRIES: '3' } });
    const elapsed = (Date.now() - started) / 1000;
    expect(r.code).toBe(75);
    const said = /HTTP 402 [^;]*; 4 tries over (\d+\.\d) s\)/.exec(r.stderr);
    expect(said, r.stderr).not.toBeNull();
    const seconds = Number(said![1]);
    expect(seconds).toBeGreaterThanOrEqual(0.9);
    expect(seconds).toBeLessThanOrEqual(elapsed + 0.05);
    // No retries: one try, at once; not "over 60 s" (the default budget it never waited).
    const once = await runCli(RUN, { env: { ...server.env, LEGACY_LICENCE_RETRIES: '0' } });
    expect(once.code).toBe(75);
    expect(once.stderr).toMatch(/HTTP 402 [^;]*; 1 try, no retry\)/);
    expect(once.stderr).not.toMatch(/over 60 s/);
  });
});

describe('store', () => {
  itOnce('a corrupted store is moved aside with a warning and the run starts clean', async () => {
    server = await startServer();
    writeFileSync(join(server.configDir, 'sessions.json'), '{"version":1,"sessions":[{"env":', { mode: 0o600 });
    const r = await runCli(RUN, { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/damaged/);
    expect(readdirSync(server.configDir).some((f) => f.startsWith('sessions.json.corrupt-'))).toBe(true);
    expect(storedCookie(server.configDir)).toMatch(/^[0-9A-F]{32}$/);
  });

  itOnce('a malformed entry is dropped, good entries are kept', async () => {
    server = await startServer();
    expect((await runCli(RUN, { env: server.env })).code).toBe(0);
    const path = join(server.configDir, 'sessions.json');
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.sessions.push({ env: 'broken' });
    writeFileSync(path, JSON.stringify(file), { mode: 0o600 });
    const r = await runCli(['session', 'status', '--json'], { env: server.env });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).sessions[0].state).toBe('confirmed');
    expect((await server.stats()).sessionsCreated).toBe(1);
  });

  it('a cookie is never sent to another base URL; each server gets its own slot', async () => {
    server = await startServer();
    const other = await startServer();
    try {
      expect((await runCli(RUN, { env: server.env })).code).toBe(0);
      const r = await runCli(['--base-url', other.url, ...RUN], { env: server.env });
      expect(r.code, r.stderr).toBe(0);
      const otherStats = await other.stats();
      expect(otherStats.requestsWithoutCookie).toBe(1);
      expect(otherStats.sessionsCreated).toBe(1);
      const file = JSON.parse(readFileSync(join(server.configDir, 'sessions.json'), 'utf8'));
      expect(file.sessions.map((s: { baseUrl: string }) => s.baseUrl).sort()).toEqual([server.url, other.url].sort());
    } finally {
      await other.stop();
    }
  });

  it('named sessions keep separate slots, each reused', async () => {
    server = await startServer({ maxSessions: 3 });
    for (let i = 0; i < 3; i++) {
      expect((await runCli(RUN, { env: server.env })).code).toBe(0);
      expect((await runCli(['--session', 'nightly', ...RUN], { env: server.env })).code).toBe(0);
    }
    expect((await server.stats()).sessionsCreated).toBe(2);
  });
});

describe('session commands', () => {
  it('status works with no server running, never creates a session, and masks the cookie', async () => {
    server = await startServer();
    expect((await runCli(RUN, { env: server.env })).code).toBe(0);
    const cookie = storedCookie(server.configDir)!;
    await server.stop();
    const env = server.env;
    server = undefined;
    const r = await runCli(['session', 'status'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${cookie.slice(0, 4)}…`);
    expect(r.stdout).not.toContain(cookie);
    const json = JSON.parse((await runCli(['session', 'status', '--json'], { env })).stdout);
    expect(json.sessions[0]).toMatchObject({ env: 'test', name: 'default', state: 'confirmed' });
    expect([...json.sessions[0].cookieNames].sort()).toEqual(COOKIE_NAMES);
  });

  itOnce('status with an empty store says none and exits 0', async () => {
    const r = await runCli(['session', 'status', '--json'], { env: { LEGACY_CONFIG_DIR: tempDir(), LEGACY_BASE_URL: 'http://127.0.0.1:9', LEGACY_ENV: 'x' } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).sessions[0].state).toBe('none');
  });

  it('status --server shows the server view with our session among them', async () => {
    server = await startServer({ maxSessions: 3 });
    await server.control('occupy', { count: 1 });
    expect((await runCli(['session', 'refresh'], { env: server.env })).code).toBe(0);
    const r = await runCli(['session', 'status', '--server', '--json'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.server.live).toBe(2);
    expect(json.server.ours).toBe(true);
    const cookie = storedCookie(server.configDir)!;
    expect(r.stdout).not.toContain(cookie);
  });

  it('refresh creates, then confirms; clear forgets locally without logging out', async () => {
    server = await startServer();
    const a = await runCli(['session', 'refresh', '--json'], { env: server.env });
    expect(JSON.parse(a.stdout).outcome).toBe('created');
    const b = await runCli(['session', 'refresh', '--json'], { env: server.env });
    expect(JSON.parse(b.stdout).outcome).toBe('confirmed');
    await server.control('expire-sessions', {});
    const c = await runCli(['session', 'refresh', '--json'], { env: server.env });
    expect(JSON.parse(c.stdout).outcome).toBe('replaced');
    const clear = await runCli(['session', 'clear'], { env: server.env });
    expect(clear.code).toBe(0);
    expect(clear.stdout).toMatch(/forgot test\/default/);
    const stats = await server.stats();
    expect(stats.logouts).toBe(0);
    expect(stats.liveSessions).toBe(1);
    const status = JSON.parse((await runCli(['session', 'status', '--json'], { env: server.env })).stdout);
    expect(status.sessions[0].state).toBe('none');
  });

  itOnce('clear --all needs --yes when not on a terminal', async () => {
    server = await startServer();
    await runCli(RUN, { env: server.env });
    expect((await runCli(['session', 'clear', '--all'], { env: server.env })).code).toBe(64);
    expect((await runCli(['session', 'clear', '--all', '--yes'], { env: server.env })).code).toBe(0);
  });

  itOnce('one confirmation rule for session clear --all and push-field: asked on a terminal, refused elsewhere without --yes (issue 22 item 10)', async () => {
    server = await startServer();
    await runCli(RUN, { env: server.env });
    const key = (await runCli(['get-table', 'Kunden', '--limit', '1', '--fields', 'KundenNr', '--csv', '--no-header'], { env: server.env })).stdout.trim();
    const commands = {
      'session clear --all': { argv: ['session', 'clear', '--all'], cancelled: /cancelled: nothing was cleared/ },
      'push-field': { argv: ['push-field', 'Kunden', key, 'Ort', 'Nirgendwo'], cancelled: /cancelled: nothing was written/ },
    };
    const stored = async () => JSON.parse((await runCli(['session', 'status', '--all', '--json'], { env: server!.env })).stdout).sessions.length;
    for (const [name, { argv, cancelled }] of Object.entries(commands)) {
      // Off a terminal, and at a terminal whose stderr (where the question would go) is redirected.
      for (const tty of [{}, { stdinTty: true, stderrTty: false }]) {
        const r = await runMain(argv, { env: server.env, input: 'y\n', ...tty });
        expect(r.code, `${name} ${JSON.stringify(tty)}: ${r.stderr}`).toBe(64);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(/add --yes to confirm when not on a terminal/);
      }
      // On a terminal a "no" changes nothing and exits 1, like every declined prompt.
      const no = await runMain(argv, { env: server.env, stdinTty: true, input: 'n\n' });
      expect(no.code, `${name}: ${no.stderr}`).toBe(1);
      expect(no.stderr).toMatch(cancelled);
      expect(no.stdout).toBe('');
    }
    expect(await stored()).toBe(1);
    const yes = await runMain(['session', 'clear', '--all'], { env: server.env, stdinTty: true, input: 'y\n' });
    expect(yes.code, yes.stderr).toBe(0);
    expect(await stored()).toBe(0);
  });

  it('doctor checks everything in one line each', async () => {
    server = await startServer();
    const r = await runCli(['doctor'], { env: server.env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ok\s+config/);
    expect(r.stdout).toMatch(/ok\s+rest prefix/);
    await server.stop();
    const env = server.env;
    server = undefined;
    const down = await runCli(['doctor', '--retries', '0'], { env });
    expect(down.code).toBe(69);
    expect(down.stdout).toMatch(/FAIL\s+server/);
  });
});

describe('login and secrets', () => {
  it('servers that require login: no credentials → 77; right ones → logged in once and reused; wrong → 77', async () => {
    server = await startServer({ auth: { user: 'erp', password: 'S3cret-pw!' } });
    const none = await runCli(RUN, { env: server.env });
    expect(none.code).toBe(77);
    expect(none.stderr).toMatch(/LEGACY_USERNAME/);
    const good = { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: 'S3cret-pw!' };
    expect((await runCli(RUN, { env: good })).code).toBe(0);
    expect((await runCli(RUN, { env: good })).code).toBe(0);
    expect((await server.stats()).sessionsCreated).toBe(1);
    const wrong = await runCli(RUN, { env: { ...server.env, LEGACY_CONFIG_DIR: tempDir(), LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: 'nope' } });
    expect(wrong.code).toBe(77);
    expect(wrong.stderr).not.toContain('nope');
  });

  it('--password-stdin provides the password', async () => {
    server = await startServer({ auth: { user: 'erp', password: 'pw-from-stdin' } });
    const r = await runCli(['--password-stdin', ...RUN], { env: { ...server.env, LEGACY_USERNAME: 'erp' }, input: 'pw-from-stdin\n' });
    expect(r.code, r.stderr).toBe(0);
  });

  it('cookie values and passwords never appear in output or logs, at any level', async () => {
    server = await startServer({ auth: { user: 'erp', password: 'Very-Secret-Pw' } });
    const log = join(tempDir(), 'legacy.log');
    const env = { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: 'Very-Secret-Pw' };
    const outputs: string[] = [];
    for (const args of [
      ['-vv', '--log-file', log, 'tables'],
      ['-vv', '--log-file', log, '--log-format', 'json', 'get-table', 'Kunden', '--limit', '5'],
      ['-vv', '--log-file', log, 'session', 'status', '--server'],
    ]) {
      const r = await runCli(args, { env });
      expect(r.code, r.stderr).toBe(0);
      outputs.push(r.stdout, r.stderr);
    }
    await server.control('expire-sessions', {});
    const r = await runCli(['-vv', '--log-file', log, 'session', 'refresh'], { env });
    outputs.push(r.stdout, r.stderr);
    const cookies = (JSON.parse(readFileSync(join(server.configDir, 'sessions.json'), 'utf8')).sessions as Array<{ cookies: Record<string, string> }>).flatMap(
      (s) => Object.values(s.cookies),
    );
    const sessions = (await server.control<Array<{ id: string }>>('sessions')).map((s) => s.id);
    const logText = readFileSync(log, 'utf8');
    expect(logText).toMatch(/http GET/);
    expect(existsSync(log) && statSync(log).mode & 0o777).toBe(0o600);
    for (const secret of [...cookies, ...sessions, 'Very-Secret-Pw']) {
      expect(secret.length).toBeGreaterThan(4);
      for (const text of [...outputs, logText]) expect(text).not.toContain(secret);
    }
  });
});
