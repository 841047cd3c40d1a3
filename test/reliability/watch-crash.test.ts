/**
 * The change feed under churn and kill -9. The emulator changes Kunden at 50 changes/s;
 * a follower is started and SIGKILLed again and again (10 times; 30 under LEGACY_STRESS), then the
 * churn stops and one `watch --once` drains. Over all the runs' output: no changed record is
 * missing, each record's last event carries its final state and kind, untouched records get none;
 * duplicates are allowed (at least once) and are the same event (same id) each time.
 * With 4D change tracking on and off.
 */
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, collect, spawnCli } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { openClient, openSyncStore, runFeed, silentLogger, StdoutSink } from '../../src/index.js';
import { expectFeedMatches, parseEvents, type FeedEvent } from '../helpers/watch.js';
import { seededRandom, size, sleep } from './support.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.control('churn', undefined, 'DELETE').catch(() => undefined);
  await server?.stop();
  server = undefined;
});
afterAll(() => cleanupTempDirs());

describe.each([
  ['tracks changes', ['Kunden']],
  ['does not track changes', false],
] as const)('a server that %s', (_label, changeTracking) => {
  it('kill -9 and restart under churn: nothing missing, last events carry the final state', async () => {
    server = await startServer({ rows: { Kunden: 300 }, changeTracking: changeTracking as string[] | false, maxSessions: 20 });
    const random = seededRandom(25);
    // Start at now, before the churn: the feed's first run only takes its snapshot.
    expect((await runMain(['watch', 'Kunden', '--once'], { env: server.env })).code).toBe(0);
    await server.control('churn', { tables: ['Kunden'], rate: 50, seed: 7 });
    let output = '';
    let killed = 0;
    for (let i = 0; i < size(10, 30); i++) {
      const child = spawnCli(['watch', 'Kunden', '--interval', '100ms', '--reconcile-interval', '1s'], { env: server.env });
      const done = collect(child, { timeoutMs: 60_000 });
      await sleep(700 + Math.floor(random() * 900));
      child.kill('SIGKILL');
      const r = await done;
      if (r.signal === 'SIGKILL') killed++;
      expect(r.stderr).not.toMatch(/\n\s+at\s/);
      // Complete lines only: a kill mid-write leaves a cut last line, which a line reader never
      // takes (glued to the next run's first line it would look like one object).
      output += r.stdout.slice(0, r.stdout.lastIndexOf('\n') + 1);
    }
    expect(killed).toBeGreaterThanOrEqual(size(10, 30) - 1);
    await server.control('churn', undefined, 'DELETE');
    const drain = await runMain(['watch', 'Kunden', '--once'], { env: server.env });
    expect(drain.code, drain.stderr).toBe(0);
    const events: FeedEvent[] = parseEvents(output + drain.stdout);
    expect(events.length).toBeGreaterThan(50);
    await expectFeedMatches(server, 'Kunden', events);
    // A duplicate is the same change: same id, same content.
    const byId = new Map<string, string>();
    for (const e of events) {
      const text = JSON.stringify({ ...e, time: undefined });
      if (byId.has(e.id)) expect(text).toBe(byId.get(e.id));
      byId.set(e.id, text);
    }
  });
});

describe('a webhook receiver that is down for a while, and a kill -9 meanwhile', () => {
  const SECRET = `whsec_${Buffer.from('another-test-secret-long-enough!').toString('base64')}`;
  it(
    'the feed waits it out (or is restarted) and delivers every change, signed',
    async () => {
      server = await startServer({ rows: { Kunden: 200 }, changeTracking: ['Kunden'], maxSessions: 20 });
      const verifier = new Webhook(SECRET);
      const received: FeedEvent[] = [];
      let down = false;
      let bad = 0;
      const receiver: Server = createServer(async (req, res) => {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const body = Buffer.concat(chunks).toString('utf8');
        try {
          verifier.verify(body, req.headers as Record<string, string>);
        } catch {
          bad++;
          res.writeHead(401).end();
          return;
        }
        if (down) {
          res.writeHead(503).end();
          return;
        }
        received.push(...(JSON.parse(body) as FeedEvent[]));
        res.writeHead(200).end();
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      try {
        const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/erp`;
        // Eight attempts from 100 ms doubling (with jitter): about 13 s of patience per batch.
        const env = { ...server.env, LEGACY_WEBHOOK_SECRET: SECRET, LEGACY_WEBHOOK_BACKOFF_MS: '100' };
        const args = ['watch', 'Kunden', '--webhook', url, '--interval', '200ms'];
        expect((await runMain([...args.slice(0, 2), '--once', ...args.slice(2, 4)], { env })).code).toBe(0);
        await server.control('churn', { tables: ['Kunden'], rate: 50, seed: 11 });
        const first = spawnCli(args, { env });
        const firstDone = collect(first, { timeoutMs: 120_000 });
        await sleep(1500);
        down = true;
        const outage = size(6_000, 60_000);
        // Killed while it retries a batch the receiver does not take; the next one starts while it is still down.
        await sleep(Math.min(2_000, outage / 3));
        first.kill('SIGKILL');
        expect((await firstDone).signal).toBe('SIGKILL');
        const second = spawnCli([...args, '--webhook-attempts', '30'], { env });
        const secondDone = collect(second, { timeoutMs: 180_000 });
        try {
          await sleep(outage - Math.min(2_000, outage / 3));
          down = false;
          await sleep(3_000);
          await server.control('churn', undefined, 'DELETE');
          await sleep(1_500);
        } finally {
          // Also when a step above failed: never leave the follower running behind the test.
          second.kill('SIGTERM');
        }
        const r = await secondDone;
        expect(r.code, r.stderr).toBe(0);
        const drain = await runMain([...args.slice(0, 2), '--once', ...args.slice(2, 4)], { env });
        expect(drain.code, drain.stderr).toBe(0);
        expect(bad).toBe(0);
        expect(received.length).toBeGreaterThan(50);
        await expectFeedMatches(server, 'Kunden', received);
      } finally {
        await new Promise((resolve) => receiver.close(resolve));
      }
    },
    size(60_000, 180_000),
  );
});

describe('a poll over several tables that fails half way', () => {
  it('rolls back whole, and the next poll still asks for the deletions (nothing lost)', async () => {
    server = await startServer({ rows: { Kunden: 50, Artikel: 50 }, changeTracking: ['Kunden', 'Artikel'] });
    expect((await runMain(['watch', 'Kunden', 'Artikel', '--once'], { env: server.env })).code).toBe(0);
    const client = await openClient({ env: 'test', baseUrl: server.url, configDir: server.configDir, retries: '0', environment: server.env });
    const store = await openSyncStore({ kind: 'sqlite', path: join(server.dataDir, 'watch', 'test', 'default.sqlite'), display: 'state' }, 'run');
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => {
      text += String(d);
    });
    const controller = new AbortController();
    // The changes are made between two rounds (after Artikel's pass), so the next round's Kunden pass is the one that
    // sees them; right after that pass the server fails Artikel's, and the round must roll back as a whole.
    let phase: 'idle' | 'mutate' | 'arm' | 'armed' = 'idle';
    let deleted: string[] = [];
    let failedPolls = 0;
    let goodPollsAfterFailure = 0;
    const feed = runFeed(client, store, new StdoutSink(out), {
      env: 'test',
      tables: [{ name: 'Kunden' }, { name: 'Artikel' }],
      from: 'now',
      intervalMs: 50,
      maxIntervalMs: 50,
      reconcileIntervalMs: 600_000,
      once: false,
      logger: silentLogger,
      signal: controller.signal,
      onTable: async (r) => {
        if (r.table === 'Artikel' && phase === 'mutate') {
          deleted = (await server!.control<{ deleted: string[] }>('mutate', { table: 'Kunden', delete: 1 })).deleted;
          await server!.control('mutate', { table: 'Kunden', update: 1 });
          phase = 'arm';
        } else if (r.table === 'Kunden' && phase === 'arm') {
          phase = 'armed';
          await server!.control('faults', { queue: [{ kind: '503', count: 3 }] });
        }
      },
      onPoll: (ok) => {
        if (!ok) failedPolls++;
        else if (failedPolls) goodPollsAfterFailure++;
      },
    });
    await sleep(300);
    phase = 'mutate';
    const deadline = Date.now() + 30_000;
    while ((failedPolls === 0 || goodPollsAfterFailure < 2) && Date.now() < deadline) await sleep(50);
    expect(phase).toBe('armed');
    expect(failedPolls, 'the armed round must have failed').toBeGreaterThan(0);
    controller.abort('interrupt');
    await feed;
    await store.close();
    await client.close();
    const events = parseEvents(text);
    expect(events.filter((e) => e.type === 'legacy.record.deleted').map((e) => e.subject)).toEqual(deleted);
    await expectFeedMatches(server, 'Kunden', events);
  });
});
