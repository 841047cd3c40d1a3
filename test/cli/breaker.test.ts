/**
 * The circuit breaker shared by every run of an environment (src/session/breaker.ts), through real
 * processes, a real emulator over HTTP, a real Redis, and a "down server": a loopback port where an
 * emulator ran, now held by a plain net.Server that counts each connection and drops it.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, interruptCli, runCli, runProcess, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { startRedis, type RunningRedis } from '../helpers/services.mjs';
import { FileBreakerStore, recordFailure } from '../../src/session/breaker.js';
import { silentLogger } from '../../src/log/index.js';

const redis: RunningRedis | undefined = await startRedis();
let redisClient: Redis | undefined;
const servers: TestServer[] = [];
const downs: DownServer[] = [];

beforeAll(() => {
  if (redis) redisClient = new Redis(redis.url);
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  for (const d of downs.splice(0)) await d.close();
});
afterAll(async () => {
  await redisClient?.quit();
  await redis?.stop();
  cleanupTempDirs();
});

interface DownServer {
  port: number;
  url: string;
  /** When each connection arrived (ms), in order. */
  connections: number[];
  close(): Promise<void>;
}

/** Start an emulator, note its port, stop it, and hold the port with a server that drops every connection. */
async function downServer(): Promise<DownServer> {
  const emu = await startServer();
  const url = emu.url;
  const port = Number(new URL(url).port);
  await emu.stop();
  const connections: number[] = [];
  const server: Server = createServer((socket) => {
    connections.push(Date.now());
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const down: DownServer = {
    port,
    url,
    connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  downs.push(down);
  return down;
}

const COOL_DOWN_MS = 3000;

function breakerEnv(url: string, store: 'file' | 'redis', extra: Record<string, string> = {}): Record<string, string> {
  return {
    LEGACY_CONFIG_DIR: tempDir('legacy-brk-'),
    LEGACY_DATA_DIR: tempDir('legacy-brkdata-'),
    LEGACY_BASE_URL: url,
    LEGACY_ENV: 'test',
    LEGACY_RETRIES: '0',
    LEGACY_TIMEOUT: '5000',
    LEGACY_BREAKER_FAILURES: '3',
    LEGACY_BREAKER_WINDOW_MS: '60000',
    LEGACY_BREAKER_COOL_DOWN_MS: String(COOL_DOWN_MS),
    LEGACY_BREAKER_MAX_COOL_DOWN_MS: String(COOL_DOWN_MS * 2),
    ...(store === 'redis' ? { LEGACY_SESSION_STORE: redis!.url, LEGACY_SESSION_STORE_STRICT: '1' } : {}),
    ...extra,
  };
}

async function breakerStatus(env: Record<string, string>): Promise<Record<string, any>> {
  const r = await runCli(['session', 'status', '--json'], { env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).breakers[0];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Wait until the stored breaker's cool-down is over (it is half-open: the next run probes). */
async function untilProbeDue(env: Record<string, string>): Promise<void> {
  const status = await breakerStatus(env);
  expect(status.state).not.toBe('closed');
  await sleep(Date.parse(status.nextProbeAt) - Date.now() + 50);
}

/** No two connections closer together than a cool-down: at most one request per cool-down window. */
function expectOnePerCoolDown(times: number[]): void {
  for (let i = 1; i < times.length; i += 1) expect(times[i]! - times[i - 1]!, `connections at ${times.join(', ')}`).toBeGreaterThanOrEqual(COOL_DOWN_MS - 100);
}

describe.each(['file', 'redis'] as const)('circuit breaker in the %s store', (store) => {
  it.skipIf(store === 'redis' && !redis)(
    '20 concurrent runs against a stopped server: fail fast without touching it, one probe per cool-down, and the first run after it returns closes it',
    async () => {
      const down = await downServer();
      // Two "hosts" for Redis (their own config dirs, one Redis); one config dir for the file store.
      const first = breakerEnv(down.url, store);
      const hosts = store === 'redis' ? [first, { ...first, LEGACY_CONFIG_DIR: tempDir('legacy-brk-'), LEGACY_DATA_DIR: tempDir('legacy-brkdata-') }] : [first];

      // Three unavailable runs open it.
      for (let i = 0; i < 3; i += 1) {
        const r = await runProcess(['tables'], { env: hosts[i % hosts.length] });
        expect(r.code, r.stderr).toBe(69);
        expect(r.stderr).toMatch(/cannot reach/);
      }
      expect(down.connections).toHaveLength(3);
      const opened = await breakerStatus(first);
      expect(opened).toMatchObject({ state: 'open', failures: 3, threshold: 3, coolDownMs: COOL_DOWN_MS });
      expect(opened.lastError).toMatch(/^no answer \(E[A-Z]+\)$/);

      // Open: 20 runs at once, on every host, exit 69 with one line, and none reaches the address
      // but a probe when a cool-down ends meanwhile (20 processes may take longer than one on a busy
      // machine): one try each, with retries set or not, at most one per cool-down.
      const retrying = hosts.map((env) => ({ ...env, LEGACY_RETRIES: '2' }));
      const before = down.connections.length;
      const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => runProcess(['tables'], { env: retrying[i % hosts.length] })));
      for (const r of runs) {
        expect(r.code, r.stderr).toBe(69);
        expect(r.stdout).toBe('');
      }
      const refused = runs.filter((r) => /circuit breaker of test open since/.test(r.stderr));
      const probes = down.connections.length - before;
      expect(refused.length, runs.map((r) => r.stderr).join('')).toBe(20 - probes);
      for (const r of refused) {
        expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
        expect(r.stderr).toMatch(
          /open since \d{4}-\d\d-\d\dT[^,]+, \d+ failure\(s\), last: no answer .*(next probe due \d{4}-|another run is probing).*nothing was sent/,
        );
      }
      expectOnePerCoolDown(down.connections.slice(3));

      // Half-open: of 20 runs at once one probes (one try); the others fail fast.
      await untilProbeDue(first);
      const probeBefore = down.connections.length;
      const probing = await Promise.all(Array.from({ length: 20 }, (_, i) => runProcess(['tables'], { env: retrying[i % hosts.length] })));
      for (const r of probing) expect(r.code, r.stderr).toBe(69);
      expect(down.connections.length - probeBefore).toBeGreaterThanOrEqual(1);
      expectOnePerCoolDown(down.connections.slice(3));
      const reopened = await breakerStatus(first);
      expect(reopened.state).toBe('open');
      expect(reopened.coolDownMs).toBe(COOL_DOWN_MS * 2); // a failed probe doubles it (up to the maximum)

      // The server returns on the same port; the first run once the cool-down is over closes it.
      await down.close();
      downs.splice(downs.indexOf(down), 1);
      const back = await startServer({ port: down.port });
      servers.push(back);
      await untilProbeDue(first);
      const probe = await runProcess(['tables'], { env: { ...hosts[1 % hosts.length]!, ...authOf(back) } });
      expect(probe.code, probe.stderr).toBe(0);
      expect(probe.stdout).toMatch(/Artikel/);
      for (const env of hosts) expect(await breakerStatus(env)).toMatchObject({ state: 'closed', failures: 0 });
      const after = await Promise.all(Array.from({ length: 4 }, (_, i) => runProcess(['tables'], { env: { ...hosts[i % hosts.length]!, ...authOf(back) } })));
      for (const r of after) expect(r.code, r.stderr).toBe(0);
    },
    180_000,
  );
});

/** The matrix's login, when the emulator plays a force-login generation. */
function authOf(server: TestServer): Record<string, string> {
  const { LEGACY_USERNAME, LEGACY_PASSWORD } = server.env;
  return LEGACY_USERNAME && LEGACY_PASSWORD ? { LEGACY_USERNAME, LEGACY_PASSWORD } : {};
}

describe('circuit breaker: what counts, what bypasses it, what shows it', () => {
  it('402 (licences all in use) never opens it, and neither do other answers; 503 after retries does', async () => {
    const server = await startServer({ maxSessions: 1 });
    servers.push(server);
    await server.control('occupy', { count: 1 });
    const env = { ...breakerEnv(server.url, 'file', { LEGACY_LICENCE_WAIT_MS: '0', LEGACY_LICENCE_RETRIES: '0' }), ...authOf(server) };
    for (let i = 0; i < 4; i += 1) {
      const r = await runCli(['tables'], { env });
      expect(r.code, r.stderr).toBe(75);
    }
    // An unknown table is an answer too (65).
    await server.control('release-occupied', {});
    const unknown = await runCli(['get-table', 'NoSuchTable', '--csv'], { env });
    expect(unknown.code, unknown.stderr).toBe(65);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed', failures: 0 });
    const stats = await server.stats();
    expect(stats.rejected402).toBeGreaterThanOrEqual(4);

    // 503 after the retries: counted, and three such runs open it.
    await server.control('faults', { queue: [{ kind: '503', count: 30 }] });
    for (let i = 0; i < 3; i += 1) {
      const r = await runCli(['get-table', 'Artikel', '--csv'], { env });
      expect(r.code, r.stderr).toBe(69);
    }
    expect(await breakerStatus(env)).toMatchObject({ state: 'open', failures: 3, lastError: 'HTTP 503' });
  });

  it('--no-breaker and LEGACY_BREAKER=0 send anyway and record nothing; status, doctor and the metrics file show it', async () => {
    const down = await downServer();
    const metrics = join(tempDir('legacy-brkm-'), 'legacy.prom');
    const env = breakerEnv(down.url, 'file', { LEGACY_METRICS_FILE: metrics });
    for (let i = 0; i < 3; i += 1) expect((await runCli(['tables'], { env })).code).toBe(69);
    expect(down.connections).toHaveLength(3);

    const fast = await runCli(['tables'], { env });
    expect(fast.code).toBe(69);
    expect(fast.stderr).toMatch(/circuit breaker of test open since/);
    expect(down.connections).toHaveLength(3);

    for (const args of [['--no-breaker', 'tables'], ['tables']]) {
      const r = await runCli(args, { env: args[0] === 'tables' ? { ...env, LEGACY_BREAKER: '0' } : env });
      expect(r.code, r.stderr).toBe(69);
      expect(r.stderr).toMatch(/cannot reach/);
      expect(r.stderr).not.toMatch(/circuit breaker/);
    }
    expect(down.connections).toHaveLength(5);
    const status = await breakerStatus(env);
    expect(status).toMatchObject({ state: 'open', failures: 3 });

    const text = await runCli(['session', 'status'], { env });
    expect(text.stdout).toMatch(/circuit breaker test \(http:\/\/127\.0\.0\.1:\d+\): open since .*3 failure\(s\).*next probe due/);
    const doctor = await runCli(['doctor'], { env });
    expect(doctor.code).toBe(69);
    expect(doctor.stdout).toMatch(/FAIL {2}breaker {7}open since/);
    expect(down.connections).toHaveLength(5);

    const prom = readFileSync(metrics, 'utf8');
    expect(prom).toMatch(/^legacy_breaker_state\{env="test"\} 1$/m);
    expect(prom).toMatch(/^legacy_breaker_failures\{env="test"\} 3$/m);
    expect(prom).toMatch(new RegExp(`^legacy_breaker_opened_timestamp_seconds\\{env="test"\\} ${Date.parse(status.openedAt) / 1000}$`, 'm'));
    // Two runs were refused (tables, doctor); the runs that ignored the breaker wrote nothing of it.
    expect(prom).toMatch(/^legacy_breaker_fast_failures_total\{env="test"\} 2$/m);
    expect(prom).toMatch(/# TYPE legacy_breaker_fast_failures_total counter/);

    // The state file: 0600, no cookie or password in it.
    const file = join(env.LEGACY_CONFIG_DIR, 'breakers.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).not.toMatch(/cookie|password|WASID|4DSID/i);
  });

  it('a damaged state file never stops a run: it reads as closed, with one warning', async () => {
    const server = await startServer();
    servers.push(server);
    const env = { ...breakerEnv(server.url, 'file'), ...authOf(server) };
    writeFileSync(join(env.LEGACY_CONFIG_DIR, 'breakers.json'), '{"version":1,"breakers":[{"env":', { mode: 0o600 });
    const r = await runCli(['tables'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/circuit breaker state .* is damaged/g)).toHaveLength(1);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed' });
  });

  it('a run that started before the breaker opened and gets its answers afterwards closes it', async () => {
    const server = await startServer({ latencyMs: 150, rows: { Artikel: 3000 } });
    servers.push(server);
    const env = { ...breakerEnv(server.url, 'file'), ...authOf(server) };
    const run = runCli(['get-table', 'Artikel', '--ndjson', '--page-size', '200', '--concurrency', '1'], { env, timeoutMs: 60_000 });
    await sleep(600);
    // Meanwhile other runs found the server unavailable and opened it (recorded as they would record it).
    const breakers = new FileBreakerStore(env.LEGACY_CONFIG_DIR, silentLogger);
    const settings = { enabled: true, failures: 3, windowMs: 60_000, coolDownMs: 60_000, maxCoolDownMs: 60_000 };
    const key = { env: 'test', baseUrl: server.url };
    for (let i = 0; i < 3; i += 1) await breakers.update(key, (s) => recordFailure(s, key, Date.now(), settings, 'HTTP 503', false));
    expect(await breakerStatus(env)).toMatchObject({ state: 'open' });
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(3000);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed', failures: 0 });
  });

  it('a 500 that carries a 4D error is an answer: it never opens the breaker, while an HTML 500 does', async () => {
    const server = await startServer();
    servers.push(server);
    const env = { ...breakerEnv(server.url, 'file'), ...authOf(server) };
    await server.control('faults', { queue: [{ kind: '4d500', count: 30 }] });
    for (let i = 0; i < 4; i += 1) expect((await runCli(['get-table', 'Artikel', '--csv'], { env })).code).toBe(69);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed', failures: 0 });
    await server.control('faults', undefined, 'DELETE');
    await server.control('faults', { queue: [{ kind: '500', count: 30 }] });
    for (let i = 0; i < 3; i += 1) expect((await runCli(['get-table', 'Artikel', '--csv'], { env })).code).toBe(69);
    expect(await breakerStatus(env)).toMatchObject({ state: 'open', failures: 3 });
  });

  it('a next probe further away than the cool-down (a clock that ran ahead) is taken as due', async () => {
    const server = await startServer();
    servers.push(server);
    const env = { ...breakerEnv(server.url, 'file'), ...authOf(server) };
    const breakers = new FileBreakerStore(env.LEGACY_CONFIG_DIR, silentLogger);
    const key = { env: 'test', baseUrl: server.url };
    const year = 365 * 24 * 3600 * 1000;
    const settings = { enabled: true, failures: 3, windowMs: 60_000, coolDownMs: COOL_DOWN_MS, maxCoolDownMs: COOL_DOWN_MS };
    // Failures recorded by a host whose clock is a year ahead.
    for (let i = 0; i < 3; i += 1) await breakers.update(key, (s) => recordFailure(s, key, Date.now() + year, settings, 'HTTP 503', false));
    const r = await runCli(['get-table', 'Artikel', '--csv'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed' });
  });

  it('a follower started while it is open waits, probes when the cool-down ends, and goes on polling', async () => {
    const server = await startServer({ rows: { Artikel: 50 }, changeTracking: ['Artikel'] });
    servers.push(server);
    const env = { ...breakerEnv(server.url, 'file', { LEGACY_BREAKER_COOL_DOWN_MS: '5000' }), ...authOf(server) };
    const breakers = new FileBreakerStore(env.LEGACY_CONFIG_DIR, silentLogger);
    const key = { env: 'test', baseUrl: server.url };
    const settings = { enabled: true, failures: 3, windowMs: 60_000, coolDownMs: 5000, maxCoolDownMs: 5000 };
    for (let i = 0; i < 3; i += 1) await breakers.update(key, (s) => recordFailure(s, key, Date.now(), settings, 'HTTP 503', false));
    // A cool-down longer than a loaded machine takes to start the process: its first polls are refused.
    const db = join(tempDir('legacy-brk-follow-'), 'copy.sqlite');
    const before = (await server.stats()).requests;
    const r = await interruptCli(['sync', 'Artikel', '--follow', '--interval', '200ms', '--db', db], {
      env,
      afterMs: 500,
      until: async () => (await breakerStatus(env)).state === 'closed' && (await server.stats()).requests > before + 2,
    });
    expect([0, 130]).toContain(r.code);
    expect(r.stderr).toMatch(/circuit breaker/);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed' });
    expect((await server.stats()).requests).toBeGreaterThan(before + 2);
  });

  it('session clear --reset-breaker closes it by hand: the next run goes to the server; the sessions stay', async () => {
    const server = await startServer();
    servers.push(server);
    const env = { ...breakerEnv(server.url, 'file'), ...authOf(server) };
    expect((await runCli(['tables'], { env })).code).toBe(0); // a stored session
    const breakers = new FileBreakerStore(env.LEGACY_CONFIG_DIR, silentLogger);
    const key = { env: 'test', baseUrl: server.url };
    const settings = { enabled: true, failures: 3, windowMs: 60_000, coolDownMs: 60_000, maxCoolDownMs: 60_000 };
    for (let i = 0; i < 3; i += 1) await breakers.update(key, (s) => recordFailure(s, key, Date.now(), settings, 'HTTP 503', false));
    expect((await runCli(['tables'], { env })).code).toBe(69);
    const cleared = await runCli(['session', 'clear', '--reset-breaker'], { env });
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.stdout).toBe(`closed the circuit breaker of test (${server.url}): the next run goes to the server\n`);
    expect(await breakerStatus(env)).toMatchObject({ state: 'closed', failures: 0 });
    expect((await runCli(['tables'], { env })).code).toBe(0);
    expect((await server.stats()).sessionsCreated).toBe(1);
    expect((await runCli(['session', 'clear', '--reset-breaker'], { env })).stdout).toBe('no circuit breaker to clear\n');
    expect((await runCli(['session', 'clear', '--reset-breaker', '--logout'], { env })).code).toBe(64);
  });
});
