/**
 * A fleet of two hosts (separate config dirs) sharing sessions and a licence
 * budget through a real Redis. Lanes run CLI processes back to back for ~8 s (stress: 60 s), each
 * asking for one of five named sessions, against a server with exactly as many licences as the
 * budget (2). While they run, the server's live sessions are polled every 20 ms.
 *
 * Properties: every command exits 0 with the full table; the server never has more than 2 live
 * sessions and never answers 402; no lease is left behind; Redis never holds a malformed entry.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runProcess, tempDir, type CliResult } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { startRedis } from '../helpers/services.mjs';
import { seededRandom, size, sleep } from './support.js';

const LANES = 8;
const DURATION_MS = size(8_000, 60_000);
const ROWS = 1_500;
const NAMES = ['a', 'b', 'c', 'd', 'e'];

const redis = await startRedis();
let server: TestServer | undefined;
afterAll(async () => {
  await server?.stop();
  await redis?.stop();
  cleanupTempDirs();
});

describe.skipIf(!redis)(`fleet load through Redis (${LANES} lanes, ${DURATION_MS / 1000} s, budget 2 = licences)`, () => {
  it('all runs finish, never more than 2 live sessions, no 402', async () => {
    server = await startServer({ rows: { Artikel: ROWS }, maxSessions: 2, latencyMs: 5 });
    const hosts = [0, 1].map(() => ({
      ...server!.env,
      LEGACY_CONFIG_DIR: tempDir('legacy-fleet-'),
      LEGACY_SESSION_STORE: redis!.url,
      LEGACY_MAX_SESSIONS: '2',
      // Up to 4 runs may want 5 names through 2 places at once: give them time.
      LEGACY_LICENCE_WAIT_MS: '120000',
    }));
    let maxLive = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const stats = await server!.stats();
        maxLive = Math.max(maxLive, stats.liveSessions);
        await sleep(20);
      }
    })();
    const deadline = Date.now() + DURATION_MS;
    const runs: Array<{ args: string[]; r: CliResult }> = [];
    await Promise.all(
      Array.from({ length: LANES }, async (_, lane) => {
        const rand = seededRandom(900 + lane);
        while (Date.now() < deadline) {
          const name = NAMES[Math.floor(rand() * NAMES.length)]!;
          const args =
            rand() < 0.7
              ? ['--session', name, 'get-table', 'Artikel', '--fields', 'UID', '--ndjson', '--page-size', '500']
              : ['--session', name, 'session', 'refresh'];
          runs.push({ args, r: await runProcess(args, { env: hosts[lane % 2], timeoutMs: 180_000 }) });
        }
      }),
    );
    polling = false;
    await poller;
    for (const { args, r } of runs) {
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      if (args.includes('get-table')) expect(r.stdout.trim().split('\n')).toHaveLength(ROWS);
    }
    const stats = await server.stats();
    expect(stats.rejected402).toBe(0);
    expect(Math.max(maxLive, stats.maxLiveSessions)).toBeLessThanOrEqual(2);
    const client = new Redis(redis!.url);
    try {
      expect(await client.zcard(`legacy:v1:leases:${server.url}`)).toBe(0);
      for (const raw of await client.hvals('legacy:v1:sessions')) expect(JSON.parse(String(raw)).cookies.WASID4D).toBeTruthy();
    } finally {
      await client.quit();
    }
    console.log(
      `fleet: ${runs.length} commands on 2 hosts, ${stats.sessionsCreated} sessions created, ${stats.logouts} evicted, max live ${Math.max(maxLive, stats.maxLiveSessions)}, 402s ${stats.rejected402}`,
    );
  }, 300_000);
});
