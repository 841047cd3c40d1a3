/**
 * Issue 21: one licence per environment whatever the 4D server does. Runs under every generation
 * of the matrix (test/vitest.config.ts): v18 (WASID4D), v20 (4DSID_<App> only), v20r (both),
 * v21 (4DSID_<App> + force login through authentify(), refusals 401 or 403).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runCli, runProcess, tempDir } from '../helpers/cli.js';
import { FORCE_LOGIN, GENERATION, MATRIX_AUTH, startServer, type TestServer } from '../helpers/emulator.js';
import { startRedis, type RunningRedis } from '../helpers/services.mjs';

let server: TestServer | undefined;
let redis: RunningRedis | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(async () => {
  await redis?.stop();
  cleanupTempDirs();
});

/** Licensed sessions the server opened (guest sessions of force login take no licence and are not counted). */
async function licensed(s: TestServer): Promise<number> {
  return (await s.stats()).sessionsCreated;
}

/** How many times a run logged in: `$directory/login` accepted, or `authentify()` called under force login. */
async function logins(s: TestServer): Promise<number> {
  const stats = await s.stats();
  return FORCE_LOGIN ? stats.authentifyCalls : stats.logins;
}

const EXPORT = ['get-table', 'Kunden', '--csv', '--limit', '50'];

function storedCookies(configDir: string): Record<string, string> {
  return JSON.parse(readFileSync(join(configDir, 'sessions.json'), 'utf8')).sessions[0].cookies;
}

describe(`sessions under 4D ${GENERATION}`, () => {
  it('the stored identity is the cookie(s) the server set, whatever their names', async () => {
    server = await startServer({ maxSessions: 3 });
    const r = await runCli(EXPORT, { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const names = Object.keys(storedCookies(server.configDir)).sort();
    const expected = { v18: ['WASID4D'], v20: ['4DSID_WSZ-DB'], v20r: ['4DSID_WSZ-DB', 'WASID4D'], v21: ['4DSID_WSZ-DB'] }[GENERATION];
    expect(names).toEqual(expected);
  });

  it('30 sequential exports, then 8 concurrent ones: exactly one licensed session', async () => {
    server = await startServer({ maxSessions: 3 });
    for (let i = 0; i < 30; i++) {
      const r = await runCli(EXPORT, { env: server.env });
      expect(r.code, r.stderr).toBe(0);
    }
    const runs = await Promise.all(Array.from({ length: 8 }, () => runProcess(EXPORT, { env: server!.env })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(await licensed(server)).toBe(1);
    expect((await server.stats()).duplicateCookieRejections).toBe(0);
  });

  it('8 cold concurrent exports: exactly one licensed session, one login at most', async () => {
    server = await startServer({ maxSessions: 3, latencyMs: 10 });
    const runs = await Promise.all(Array.from({ length: 8 }, () => runProcess(EXPORT, { env: server!.env })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(await licensed(server)).toBe(1);
    expect(await logins(server)).toBe(FORCE_LOGIN ? 1 : 0);
  });

  it('3 licences, the server drops its sessions, 8 exports start together: one new session, all succeed (3 rounds)', async () => {
    server = await startServer({ maxSessions: 3, latencyMs: 5 });
    const warm = await runCli(EXPORT, { env: server.env });
    expect(warm.code, warm.stderr).toBe(0);
    for (let round = 1; round <= 3; round++) {
      const before = await licensed(server);
      const loginsBefore = await logins(server);
      await server.control('expire-sessions', {});
      const runs = await Promise.all(Array.from({ length: 8 }, () => runProcess(EXPORT, { env: server!.env })));
      for (const r of runs) expect(r.code, `round ${round}: ${r.stderr}`).toBe(0);
      expect(await licensed(server), `round ${round}`).toBe(before + 1);
      expect(await logins(server), `round ${round}`).toBe(loginsBefore + (FORCE_LOGIN ? 1 : 0));
      expect((await server.stats()).rejected402, `round ${round}`).toBe(0);
    }
  });

  it('with login required: 8 concurrent exports after the drop log in exactly once', async () => {
    const auth = { user: 'erp', password: 'S3cret-pw!' };
    server = await startServer({ maxSessions: 3, auth, latencyMs: 5 });
    const env = { ...server.env, LEGACY_USERNAME: auth.user, LEGACY_PASSWORD: auth.password };
    expect((await runCli(EXPORT, { env })).code).toBe(0);
    await server.control('expire-sessions', {});
    const before = await logins(server);
    const created = await licensed(server);
    const runs = await Promise.all(Array.from({ length: 8 }, () => runProcess(EXPORT, { env })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(await logins(server)).toBe(before + 1);
    expect(await licensed(server)).toBe(created + 1);
  });

  it('a wrong password exits 77 in one line and leaves no licensed session', async () => {
    const auth = { user: 'erp', password: 'S3cret-pw!' };
    server = await startServer({ maxSessions: 3, auth });
    const r = await runCli(EXPORT, { env: { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: 'wrong-pw' } });
    expect(r.code).toBe(77);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toContain('wrong-pw');
    if (FORCE_LOGIN) expect(r.stderr).toMatch(/authentify\(\).*not accepted: Wrong password/);
    expect(await licensed(server)).toBe(0);
    expect((await server.control<Array<{ guest?: boolean }>>('sessions')).filter((s) => !s.guest)).toHaveLength(0);
  });

  it('session status --server shows our session as ours', async () => {
    server = await startServer({ maxSessions: 3 });
    expect((await runCli(EXPORT, { env: server.env })).code).toBe(0);
    const r = await runCli(['session', 'status', '--server', '--json'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const view = JSON.parse(r.stdout).server;
    expect(view.ours).toBe(true);
    expect(view.sessions.filter((s: { ours: boolean }) => s.ours)).toHaveLength(1);
  });

  it('doctor exits 0 and names the generation and the login mode', async () => {
    server = await startServer({ maxSessions: 3 });
    const r = await runCli(['doctor', '--json'], { env: server.env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const checks = JSON.parse(r.stdout).checks as Array<{ name: string; detail: string }>;
    const line = checks.find((c) => c.name === 'server')!.detail;
    const generation = {
      v18: /v17\/v18 \(WASID4D\)/,
      v20: /v19\+ scalable sessions \(4DSID_WSZ-DB\)/,
      v20r: /WASID4D and 4DSID_WSZ-DB/,
      v21: /v19\+ scalable/,
    }[GENERATION];
    expect(line).toMatch(generation);
    expect(line).toMatch(FORCE_LOGIN ? /force login/ : /none needed/);
  });

  it('two hosts sharing the Redis store: 8 exports after the drop open one new session', async () => {
    redis ??= await startRedis();
    if (!redis) return; // the services banner says why; CI requires Redis
    server = await startServer({ maxSessions: 3, latencyMs: 5 });
    const hosts = [0, 1].map(() => ({ ...server!.env, LEGACY_CONFIG_DIR: tempDir('legacy-host-'), LEGACY_SESSION_STORE: redis!.url }));
    expect((await runCli(EXPORT, { env: hosts[0] })).code).toBe(0);
    for (let round = 1; round <= 2; round++) {
      const before = await licensed(server);
      await server.control('expire-sessions', {});
      const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => runProcess(EXPORT, { env: hosts[i % 2] })));
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      expect(await licensed(server), `round ${round}`).toBe(before + 1);
    }
  });
});

describe('force login specifics', () => {
  it.runIf(FORCE_LOGIN)('the catalog is served without a licence; data needs the login', async () => {
    server = await startServer({ maxSessions: 3 });
    const tables = await runCli(['tables'], { env: { ...server.env, LEGACY_USERNAME: undefined, LEGACY_PASSWORD: undefined } });
    expect(tables.code, tables.stderr).toBe(0);
    expect(await licensed(server)).toBe(0);
    const data = await runCli(EXPORT, { env: { ...server.env, LEGACY_USERNAME: undefined, LEGACY_PASSWORD: undefined } });
    expect(data.code).toBe(77);
    expect(data.stderr).toMatch(/LEGACY_USERNAME/);
    const ok = await runCli(EXPORT, { env: server.env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(await licensed(server)).toBe(1);
  });

  it.runIf(FORCE_LOGIN)('the authentify body template is configurable ({user}, {password})', async () => {
    server = await startServer({ maxSessions: 3, authentifyUserField: 'identifier' });
    const plain = await runCli(EXPORT, { env: server.env });
    expect(plain.code).toBe(77);
    const templated = await runCli(EXPORT, {
      env: { ...server.env, LEGACY_CONFIG_DIR: tempDir(), LEGACY_AUTHENTIFY_BODY: '[{"identifier":"{user}","password":"{password}"}]' },
    });
    expect(templated.code, templated.stderr).toBe(0);
    expect(await licensed(server)).toBe(1);
    expect(MATRIX_AUTH.user).toBe('cron');
  });
});
