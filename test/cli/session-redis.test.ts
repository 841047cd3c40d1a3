/**
 * Sessions shared across hosts through a real Redis (started on loopback by the test).
 * "Hosts" are separate config dirs: nothing is shared between them but the Redis server.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runCli, runProcess, spawnCli, collect, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { startRedis, type RunningRedis } from '../helpers/services.mjs';
import { RedisSessionStore, slotKey } from '../../src/session/redis.js';
import { silentLogger } from '../../src/log/index.js';

const redis: RunningRedis | undefined = await startRedis();

let server: TestServer | undefined;
let client: Redis | undefined;

beforeAll(async () => {
  if (!redis) return;
  client = new Redis(redis.url);
});
beforeEach(async () => {
  await client?.flushall();
});
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(async () => {
  await client?.quit();
  await redis?.stop();
  cleanupTempDirs();
});

/** The environment of one simulated host: its own config dir, the shared Redis. */
function host(s: TestServer, extra: Record<string, string> = {}): Record<string, string> {
  return { ...s.env, LEGACY_CONFIG_DIR: tempDir('legacy-host-'), LEGACY_DATA_DIR: tempDir('legacy-hostdata-'), LEGACY_SESSION_STORE: redis!.url, ...extra };
}

describe.skipIf(!redis)('sessions in Redis', () => {
  it('two hosts x 16 concurrent cold runs create exactly one server session, stored in Redis only', async () => {
    server = await startServer({ maxSessions: 3, latencyMs: 20 });
    const hosts = [host(server), host(server)];
    const runs = await Promise.all(Array.from({ length: 32 }, (_, i) => runProcess(['tables'], { env: hosts[i % 2] })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const stats = await server.stats();
    expect(stats.sessionsCreated).toBe(1);
    expect(stats.rejected402).toBe(0);
    expect(stats.duplicateCookieRejections).toBe(0);
    expect(stats.requestsWithoutCookie).toBe(1);
    for (const env of hosts) expect(existsSync(join(env.LEGACY_CONFIG_DIR, 'sessions.json'))).toBe(false);
    const stored = await client!.hvals('legacy:v1:sessions');
    expect(stored).toHaveLength(1);
    // A later run on either host reuses it without a round trip to create one.
    const again = await runCli(['session', 'status', '--json'], { env: hosts[1] });
    expect(again.code, again.stderr).toBe(0);
    const status = JSON.parse(again.stdout);
    expect(status.store).toEqual({ kind: 'redis', location: redis!.url });
    expect(status.sessions[0].state).toBe('confirmed');
  });

  it('licence budget 2, six named sessions wanted at once (twice over): never more than 2 live, all runs finish', async () => {
    server = await startServer({ maxSessions: 10, latencyMs: 15, rows: { Artikel: 2000 } });
    const a = host(server, { LEGACY_MAX_SESSIONS: '2' });
    const b = host(server, { LEGACY_MAX_SESSIONS: '2' });
    const runs = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        runProcess(['--session', `s${i % 6}`, '-v', 'get-table', 'Artikel', '--ndjson', '--page-size', '250', '--concurrency', '1'], {
          env: i % 2 ? a : b,
          timeoutMs: 120_000,
        }),
      ),
    );
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(2000);
    }
    const stats = await server.stats();
    expect(stats.maxLiveSessions).toBeLessThanOrEqual(2);
    expect(stats.liveSessions).toBeLessThanOrEqual(2);
    expect(stats.rejected402).toBe(0);
    // Six names through two places: idle ones were logged out to make room.
    expect(stats.logouts).toBeGreaterThanOrEqual(4);
    expect(runs.some((r) => /licence budget full: logging out the idle test\/s\d session/.test(r.stderr))).toBe(true);
    expect(await client!.zrange(`legacy:v1:leases:${server.url}`, 0, -1)).toEqual([]);
  });

  it('a budget equal to the licences: runs wait for a place instead of hitting 402', async () => {
    server = await startServer({ maxSessions: 2, latencyMs: 10, rows: { Artikel: 1000 } });
    const env = host(server, { LEGACY_MAX_SESSIONS: '2' });
    const runs = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        runProcess(['--session', `n${i}`, 'get-table', 'Artikel', '--csv', '--page-size', '200', '--concurrency', '1'], { env }),
      ),
    );
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const stats = await server.stats();
    expect(stats.rejected402).toBe(0);
    expect(stats.maxLiveSessions).toBeLessThanOrEqual(2);
  });

  it('every place leased and the wait spent: exit 75 with one line', async () => {
    server = await startServer({ maxSessions: 10, rows: { Artikel: 1000 } });
    const env = host(server, { LEGACY_MAX_SESSIONS: '1', LEGACY_LICENCE_WAIT_MS: '1500' });
    // A slow export holds the only place.
    await server.control('options', { latencyMs: 400 });
    const holder = spawnCli(['--session', 'holder', 'get-table', 'Artikel', '--csv', '--page-size', '100', '--concurrency', '1'], { env });
    const held = collect(holder);
    for (let i = 0; i < 100 && (await client!.zcard(`legacy:v1:leases:${server.url}`)) === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const r = await runCli(['--session', 'other', 'tables'], { env });
    expect(r.code).toBe(75);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/licence budget of 1 session\(s\) for .* is in use by other runs/);
    holder.kill('SIGTERM');
    await held;
  });

  it('a run slower than its lease keeps its place; killed, it gives the place back once the lease lapses', async () => {
    const LEASE_MS = 5000; // the least licenceLeaseMs takes
    // 60 pages of 300 ms: still running well after the lease would have lapsed unrenewed.
    server = await startServer({ maxSessions: 10, latencyMs: 300, rows: { Artikel: 6000 } });
    const env = host(server, { LEGACY_MAX_SESSIONS: '1', LEGACY_LICENCE_WAIT_MS: '60000', LEGACY_LICENCE_LEASE_MS: String(LEASE_MS) });
    const leases = `legacy:v1:leases:${server.url}`;
    const redisNow = async () => {
      const [seconds, micros] = await client!.time();
      return Number(seconds) * 1000 + Number(micros) / 1000;
    };
    const victim = spawnCli(['--session', 'killed', 'get-table', 'Artikel', '--csv', '--page-size', '100', '--concurrency', '1'], { env });
    const done = collect(victim);
    // Killed once it holds its lease and has stored the session it opened (killed earlier, its first
    // request may still reach the server and open a session nobody ever hears of: a live orphan).
    const holding = async () => (await client!.zcard(leases)) > 0 && (await client!.hlen('legacy:v1:sessions')) > 0;
    for (let i = 0; i < 100 && !(await holding()); i++) await new Promise((r) => setTimeout(r, 50));
    // Held for longer than a lease: renewed, never lapsed.
    await new Promise((r) => setTimeout(r, LEASE_MS * 1.2));
    const expiryWhileHeld = Number((await client!.zrange(leases, 0, -1, 'WITHSCORES'))[1]);
    expect(expiryWhileHeld).toBeGreaterThan(await redisNow());
    victim.kill('SIGKILL');
    const killed = Date.now();
    expect((await done).signal).toBe('SIGKILL');
    // When the dead run's lease lapses (its last renewal plus a lease), by Redis's clock.
    const lapses = Number((await client!.zrange(leases, 0, -1, 'WITHSCORES'))[1]);
    await server.control('options', { latencyMs: 0 });
    const r = await runCli(['--session', 'next', 'tables'], { env });
    expect(r.code, r.stderr).toBe(0);
    // The next run got the place once the lease lapsed, not before, and not much later.
    expect(await redisNow()).toBeGreaterThanOrEqual(lapses);
    expect(Date.now() - killed).toBeLessThan(LEASE_MS + 15_000);
    expect((await server.stats()).maxLiveSessions).toBeLessThanOrEqual(1);
  });

  it('the store and the budget can come from the config file, per environment; bad values are 78', async () => {
    server = await startServer();
    const env = host(server, { LEGACY_SESSION_STORE: '' });
    const write = (test: Record<string, unknown>) =>
      writeFileSync(join(env.LEGACY_CONFIG_DIR, 'config.json'), JSON.stringify({ environments: { test: { baseUrl: server!.url, ...test } } }), { mode: 0o600 });
    write({ sessionStore: redis!.url, maxSessions: 1, sessionStoreStrict: true });
    const current = JSON.parse((await runCli(['env', 'current', '--json'], { env })).stdout);
    expect(current).toMatchObject({ sessionStore: redis!.url, sessionStoreSource: 'config', sessionStoreStrict: true, maxSessions: 1 });
    const doctor = await runCli(['doctor'], { env });
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    expect(doctor.stdout).toMatch(/session store redis .* \(licence budget 1\)/);
    expect(await client!.hlen('legacy:v1:sessions')).toBe(1);
    for (const bad of [{ sessionStore: 'mysql://x' }, { maxSessions: 0 }, { sessionStoreStrict: 'yes' }]) {
      write(bad);
      const r = await runCli(['tables'], { env });
      expect(r.code, JSON.stringify(bad)).toBe(78);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('session status, refresh and clear work on the Redis store', async () => {
    server = await startServer();
    const env = host(server);
    expect((await runCli(['session', 'refresh'], { env })).code).toBe(0);
    const other = host(server); // another host sees the same session
    const status = await runCli(['session', 'status'], { env: other });
    expect(status.stdout).toMatch(/test\/default .* confirmed/);
    expect(status.stdout).toMatch(/\(shared session store: redis:\/\/127\.0\.0\.1:\d+\)\n$/);
    const cleared = await runCli(['session', 'clear'], { env: other });
    expect(cleared.stdout).toMatch(/forgot test\/default/);
    expect(await client!.hlen('legacy:v1:sessions')).toBe(0);
    const doctor = await runCli(['doctor'], { env });
    expect(doctor.code, doctor.stdout).toBe(0);
    expect(doctor.stdout).toMatch(/session store redis redis:\/\/127\.0\.0\.1:\d+/);
  });
});

describe.skipIf(!redis)('the Redis lock (SET NX PX, renewed, compare-and-delete)', () => {
  const slot = { env: 'e', name: 'n', baseUrl: 'http://127.0.0.1:9' };
  const key = `legacy:v1:lock:${slotKey(slot)}`;
  const open = () => RedisSessionStore.connect({ url: redis!.url, logger: silentLogger, idleMinutes: 60, lockTtlMs: 300 });

  it('is renewed while held, so a holder slower than the TTL keeps it; released after', async () => {
    const [a, b] = await Promise.all([open(), open()]);
    try {
      let contender: unknown;
      await a.withSlotLock(
        slot,
        async () => {
          await new Promise((r) => setTimeout(r, 1000)); // > 3 TTLs
          contender = await b.withSlotLock(slot, async () => 'got it', { what: 'x', timeoutMs: 200 }).catch((e: Error) => e);
        },
        { what: 'x', timeoutMs: 1000 },
      );
      expect(String(contender)).toMatch(/locked by another legacy process/);
      expect(await client!.exists(key)).toBe(0);
      expect(await b.withSlotLock(slot, async () => 'got it', { what: 'x', timeoutMs: 200 })).toBe('got it');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a lock left by a dead holder expires; a holder never deletes a lock that is no longer its own', async () => {
    const a = await open();
    try {
      await client!.set(key, 'dead-holder', 'PX', 300);
      const started = Date.now();
      await a.withSlotLock(
        slot,
        async () => {
          expect(Date.now() - started).toBeGreaterThanOrEqual(200);
          // Someone else's token appears (our lock expired during a long pause): we must leave it.
          await client!.set(key, 'someone-else', 'PX', 5000);
        },
        { what: 'x', timeoutMs: 5000 },
      );
      expect(await client!.get(key)).toBe('someone-else');
    } finally {
      await a.close();
    }
  });
});

describe.skipIf(!redis)('Redis unavailable', () => {
  it('falls back to the local file store for the run, with one warning', async () => {
    server = await startServer();
    const env = host(server, { LEGACY_SESSION_STORE: 'redis://127.0.0.1:1/0' });
    const r = await runCli(['tables'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/warning: session store redis:\/\/127\.0\.0\.1:1\/0 is unreachable \(ECONNREFUSED\); using the local session file/);
    expect(JSON.parse(readFileSync(join(env.LEGACY_CONFIG_DIR, 'sessions.json'), 'utf8')).sessions).toHaveLength(1);
    const doctor = await runCli(['doctor'], { env });
    expect(doctor.code).toBe(69);
    expect(doctor.stdout).toMatch(/FAIL {2}session store Redis is unreachable/);
  });

  it('Redis lost in the middle of a run: the run completes, with one warning', async () => {
    const own = await startRedis();
    try {
      server = await startServer({ rows: { Artikel: 600 }, latencyMs: 150 });
      const env = host(server, { LEGACY_SESSION_STORE: own!.url, LEGACY_MAX_SESSIONS: '3' });
      const child = spawnCli(['get-table', 'Artikel', '--ndjson', '--page-size', '50', '--concurrency', '1'], { env });
      const done = collect(child, { timeoutMs: 60_000 });
      const watcher = new Redis(own!.url);
      for (let i = 0; i < 200 && (await watcher.zcard(`legacy:v1:leases:${server.url}`)) === 0; i++) await new Promise((r) => setTimeout(r, 25));
      watcher.disconnect();
      own!.kill();
      const r = await done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(600);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/warning: session store redis:\/\/127\.0\.0\.1:\d+: .* failed: .*; this run goes on without the shared session store/);
    } finally {
      await own!.stop();
    }
  });

  it('strict: exit 69 with one line, the password masked, no session created', async () => {
    server = await startServer();
    const env = host(server, { LEGACY_SESSION_STORE: 'redis://:hunter2secret@127.0.0.1:1/0', LEGACY_SESSION_STORE_STRICT: '1' });
    const r = await runCli(['-vv', 'tables'], { env });
    expect(r.code).toBe(69);
    expect(r.stderr).not.toContain('hunter2secret');
    expect(r.stderr).toMatch(/session store redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0 is unreachable/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect((await server.stats()).sessionsCreated).toBe(0);
  });

  it('a bad store setting is a config error (78)', async () => {
    server = await startServer();
    for (const bad of ['http://127.0.0.1:6379', 'redis://127.0.0.1:6379/x', 'nonsense']) {
      const r = await runCli(['tables'], { env: host(server, { LEGACY_SESSION_STORE: bad }) });
      expect(r.code, bad).toBe(78);
      expect(r.stderr).toMatch(/LEGACY_SESSION_STORE/);
    }
  });

  it('Redis with a password: the right one works and never shows; a wrong one is 78', async () => {
    const own = await startRedis();
    const admin = new Redis(own!.url);
    await admin.config('SET', 'requirepass', 's3cretRedisPw');
    admin.disconnect();
    try {
      server = await startServer();
      const good = host(server, { LEGACY_SESSION_STORE: `redis://:s3cretRedisPw@127.0.0.1:${own!.port}/2` });
      const r = await runCli(['-vv', '--log-format', 'json', 'tables'], { env: good });
      expect(r.code, r.stderr).toBe(0);
      const status = await runCli(['session', 'status', '--json'], { env: good });
      const current = await runCli(['env', 'current', '--json'], { env: good });
      for (const out of [r.stdout, r.stderr, status.stdout, status.stderr, current.stdout]) expect(out).not.toContain('s3cretRedisPw');
      expect(JSON.parse(status.stdout).store.location).toBe(`redis://:***@127.0.0.1:${own!.port}/2`);
      const wrong = await runCli(['tables'], { env: host(server, { LEGACY_SESSION_STORE: `redis://:nope@127.0.0.1:${own!.port}/2` }) });
      expect(wrong.code).toBe(78);
      expect(wrong.stderr).not.toContain('nope@');
    } finally {
      await own!.stop();
    }
  });
});
