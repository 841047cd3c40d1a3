/**
 * One licence per environment whatever the 4D server does. Runs under every generation
 * of the matrix (test/vitest.config.ts): v18 (WASID4D), v20 (4DSID_<App> only), v20r (both),
 * v21 (4DSID_<App> + force login through authentify(), refusals 401 or 403).
 */
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runCli, runProcess, tempDir } from '../helpers/cli.js';
import { COOKIE_NAMES, FORCE_LOGIN, GENERATION, MATRIX_AUTH, REFUSAL_STATUS, startServer, type TestServer } from '../helpers/emulator.js';
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

/**
 * Where the runs of a burst run. Under the default generation (v20r, both cookies) and under force
 * login (v21, refused with 401) each run is a process of its own: the single flight across
 * processes. The other projects differ from these two only in what the generation changes (the
 * cookie's name, the refusal's status), so their runs share the test's process and still meet at
 * the same session file and lock, or the same Redis keys: the same single flight, without paying
 * again for the cross-process proof (half a second of CPU per process, 72 per project).
 */
const ACROSS_PROCESSES = GENERATION === 'v20r' || (FORCE_LOGIN && REFUSAL_STATUS === 401);

/** `n` exports started together, run `i` with `env(i)`. */
function burst(n: number, env: (i: number) => Record<string, string>) {
  const run = ACROSS_PROCESSES ? runProcess : runCli;
  return Promise.all(Array.from({ length: n }, (_, i) => run(EXPORT, { env: env(i) })));
}

/**
 * Run `fn` with a loopback HTTP proxy in front of `s`: it passes every request on with the headers
 * `request` returns, and every answer back with the Set-Cookie values `answer` returns.
 */
async function withProxy(
  s: TestServer,
  edit: { request?: (headers: IncomingHttpHeaders) => IncomingHttpHeaders; answer?: (setCookie: string[]) => string[] },
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const upstream = new URL(s.url);
  const proxy = createServer((req, res) => {
    const headers = edit.request ? edit.request(req.headers) : req.headers;
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers }, (answer) => {
      const setCookie = (answer.headers['set-cookie'] as string[] | undefined) ?? [];
      res.writeHead(answer.statusCode ?? 502, { ...answer.headers, 'set-cookie': edit.answer ? edit.answer(setCookie) : setCookie });
      answer.pipe(res);
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    await fn(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
  } finally {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
}

function storedCookies(configDir: string): Record<string, string> {
  return JSON.parse(readFileSync(join(configDir, 'sessions.json'), 'utf8')).sessions[0].cookies;
}

describe(`sessions under 4D ${GENERATION}`, () => {
  it('the stored identity is the cookie(s) the server set, whatever their names', async () => {
    server = await startServer({ maxSessions: 3 });
    const r = await runCli(EXPORT, { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const names = Object.keys(storedCookies(server.configDir)).sort();
    expect(names).toEqual(COOKIE_NAMES);
  });

  it('30 sequential exports, then 8 concurrent ones: exactly one licensed session', async () => {
    server = await startServer({ maxSessions: 3 });
    for (let i = 0; i < 30; i++) {
      const r = await runCli(EXPORT, { env: server.env });
      expect(r.code, r.stderr).toBe(0);
    }
    const runs = await burst(8, () => server!.env);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(await licensed(server)).toBe(1);
    expect((await server.stats()).duplicateCookieRejections).toBe(0);
  });

  it('8 cold concurrent exports: exactly one licensed session, one login at most', async () => {
    server = await startServer({ maxSessions: 3, latencyMs: 10 });
    const runs = await burst(8, () => server!.env);
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
      const runs = await burst(8, () => server!.env);
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
    const runs = await burst(8, () => env);
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
    for (let round = 1; round <= 3; round++) {
      const before = await licensed(server);
      await server.control('expire-sessions', {});
      const runs = await burst(8, (i) => hosts[i % 2]);
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

describe(`sessions ops can manage (${GENERATION})`, () => {
  it('session clear says what it leaves on the server; --logout ends it and frees the licence', async () => {
    server = await startServer({ maxSessions: 3 });
    expect((await runCli(EXPORT, { env: server.env })).code).toBe(0);
    const live = async () => (await server!.control<Array<{ guest?: boolean; occupied?: boolean }>>('sessions')).filter((s) => !s.guest && !s.occupied).length;
    expect(await live()).toBe(1);
    const cleared = await runCli(['session', 'clear'], { env: server.env });
    expect(cleared.code).toBe(0);
    expect(cleared.stdout).toMatch(/the server keeps it, and its licence, until it has been idle for 60 min.*session clear --logout/);
    expect(await live()).toBe(1);
    expect((await runCli(EXPORT, { env: server.env })).code).toBe(0);
    expect(await live()).toBe(2);
    const out = await runCli(['session', 'clear', '--logout'], { env: server.env });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/logged out test\/default .*freed its licence/);
    expect(await live()).toBe(1);
    expect((await runCli(['session', 'status', '--json'], { env: server.env })).stdout).toMatch(/"state": "none"/);
  });

  it('every licence taken and no session held: status --server and the 402 message say what to do', async () => {
    server = await startServer({ maxSessions: 1 });
    await server.control('occupy', { count: 1 });
    const status = await runCli(['session', 'status', '--server'], { env: server.env });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/no stored session.*every licence is in use.*free up after 60 min idle.*administrator/);
    const r = await runCli(EXPORT, { env: { ...server.env, LEGACY_LICENCE_WAIT_MS: '300', LEGACY_LICENCE_RETRIES: '1' } });
    expect(r.code).toBe(75);
    expect(r.stderr).toMatch(/this tool holds none/);
  });

  for (const headerDecoding of ['utf8', 'latin1'] as const) {
    for (const loginRefusal of ['result-false', '401'] as const) {
      it(`a non-ASCII password logs in when the server decodes login headers as ${headerDecoding} (refusal ${loginRefusal})`, async () => {
        const auth = { user: 'erp', password: 'geheim ä' };
        server = await startServer({ maxSessions: 3, auth, headerDecoding, loginRefusal });
        const env = { ...server.env, LEGACY_USERNAME: auth.user, LEGACY_PASSWORD: auth.password };
        const r = await runCli(EXPORT, { env });
        expect(r.code, r.stderr).toBe(0);
        expect(await licensed(server)).toBe(1);
        const again = await runCli(EXPORT, { env });
        expect(again.code, again.stderr).toBe(0);
        expect(await licensed(server)).toBe(1);
        const wrong = await runCli(EXPORT, { env: { ...env, LEGACY_CONFIG_DIR: tempDir(), LEGACY_PASSWORD: 'geheim ö' } });
        expect(wrong.code).toBe(77);
        expect(await licensed(server)).toBe(1);
        if (!FORCE_LOGIN) expect(wrong.stderr).toMatch(/non-ASCII/);
      });
    }
  }

  it('$info only for admins: doctor says so and still exits 0; status --server explains', async () => {
    server = await startServer({ maxSessions: 3, infoAdminOnly: true });
    const r = await runCli(['doctor'], { env: server.env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/licences\s+not allowed to read \$info/);
    expect(r.stdout).not.toMatch(/unavailable/);
    const status = await runCli(['session', 'status', '--server'], { env: server.env });
    expect(status.stdout).toMatch(/did not show its sessions .*admin/);
  });

  it('a refused read names the table and the operation (exit 77)', async () => {
    // Under force login without credentials every data request is refused; elsewhere a guest-less
    // server with a login refuses it before dispatch (1822: the login message instead).
    server = await startServer({ maxSessions: 3 });
    const r = await runCli(EXPORT, { env: { ...server.env, LEGACY_USERNAME: undefined, LEGACY_PASSWORD: undefined } });
    if (FORCE_LOGIN) {
      expect(r.code).toBe(77);
      expect(r.stderr).toMatch(/not allowed to read Kunden.*LEGACY_USERNAME/);
    } else expect(r.code, r.stderr).toBe(0);
  });
});

describe('4D query semantics', () => {
  it("--where 'Ort=Sei*' returns only rows whose value is literally Sei* (only @ is a wildcard)", async () => {
    server = await startServer({ maxSessions: 3 });
    await server.control('row', { table: 'Kunden', key: '10001', set: { Ort: 'Sei*' } });
    await server.control('row', { table: 'Kunden', key: '10002', set: { Ort: 'Seiffen' } });
    const r = await runCli(['get-table', 'Kunden', '--where', 'Ort=Sei*', '--fields', 'KundenNr,Ort', '--csv'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['KundenNr,Ort', '10001,Sei*']);
    const wild = await runCli(['get-table', 'Kunden', '--where', 'Ort=Sei@', '--fields', 'KundenNr,Ort', '--csv'], { env: server.env });
    expect(wild.code, wild.stderr).toBe(0);
    expect(wild.stdout).toContain('10002,Seiffen');
  });
});

describe(`what the client must not misread (${GENERATION})`, () => {
  it("a proxy's own cookie, changed on every answer, is neither the session nor a replacement of it", async () => {
    server = await startServer({ maxSessions: 3, rows: { Artikel: 3000 } });
    let n = 0;
    // A load balancer in front of the server: passes everything on, adds a rotating affinity cookie.
    const rotating = (setCookie: string[]) => [...setCookie, `AWSALB=${(n++).toString(16).padStart(8, '0')}; Path=/`];
    await withProxy(server, { answer: rotating }, async (url) => {
      const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '200', '--concurrency', '4'], { env: { ...server!.env, LEGACY_BASE_URL: url } });
      expect(r.code, r.stderr).toBe(0);
      const stats = await server!.stats();
      expect(stats.sessionsCreated).toBe(1);
      expect(stats.logouts).toBe(0);
      expect(Object.keys(storedCookies(server!.configDir)).sort()).toEqual(COOKIE_NAMES);
      const direct = await runCli(['get-table', 'Artikel', '--csv'], { env: server!.env }); // another base URL: its own slot
      expect(direct.stdout).toBe(r.stdout);
    });
  });

  it('status --server after the server dropped our session: says so and gives back the session it opened', async () => {
    server = await startServer({ maxSessions: 3 });
    expect((await runCli(EXPORT, { env: server.env })).code).toBe(0);
    await server.control('expire-sessions', {});
    const r = await runCli(['session', 'status', '--server'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    if (!FORCE_LOGIN) expect(r.stdout).toMatch(/the stored session is gone on the server/);
    const live = (await server.control<Array<{ guest?: boolean; occupied?: boolean }>>('sessions')).filter((s) => !s.guest && !s.occupied);
    expect(live).toHaveLength(0);
  });

  it('a wrong password is tried once per run, however many requests are in flight', async () => {
    const auth = { user: 'erp', password: 'S3cret-pw!' };
    server = await startServer({ maxSessions: 3, auth, rows: { Artikel: 3000 } });
    const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '200', '--concurrency', '4'], {
      env: { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: 'wrong-pw' },
    });
    expect(r.code).toBe(77);
    const stats = await server.stats();
    if (FORCE_LOGIN) expect(stats.authentifyCalls).toBe(1);
    else expect(stats.authFailures).toBeLessThanOrEqual(2); // the first request's own refusal, then one login
  });
});

describe(`a server that does not take its cookie back (${GENERATION})`, () => {
  it('logging in again stops after two logins whose session never answered: exit 77, one line', async () => {
    const auth = { user: 'erp', password: 'S3cret-pw!' };
    server = await startServer({ maxSessions: 10, auth });
    // A proxy that drops the Cookie header of every request.
    const dropCookie = ({ cookie: _dropped, ...headers }: IncomingHttpHeaders) => headers;
    await withProxy(server, { request: dropCookie }, async (url) => {
      const r = await runCli(EXPORT, { env: { ...server!.env, LEGACY_BASE_URL: url, LEGACY_USERNAME: auth.user, LEGACY_PASSWORD: auth.password } });
      expect(r.code).toBe(77);
      expect(r.stderr).toMatch(/does not take its session cookie back/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(await licensed(server!)).toBeLessThanOrEqual(2);
    });
  });
});

describe('doctor against a server that is not 4D (issue 22 item 9)', () => {
  it('fails at the REST prefix and reports no session or licence check on that answer', async () => {
    const web = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><body>Not Found</body></html>');
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
      const r = await runCli(['doctor'], { env: { LEGACY_CONFIG_DIR: tempDir(), LEGACY_BASE_URL: url, LEGACY_ENV: 'web' } });
      expect(r.code).toBe(69);
      expect(r.stdout).toMatch(/FAIL\s+rest prefix/);
      expect(r.stdout).not.toMatch(/^ok\s+(session {2,}|licences|server )/m);
    } finally {
      web.closeAllConnections();
      await new Promise((resolve) => web.close(resolve));
    }
  });
});
