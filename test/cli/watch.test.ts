/**
 * `legacy watch`, the change feed. Compared with the emulator's own record of every change
 * it made (GET /__emulator/changes): no changed record is missing, each record's last event carries
 * its final state (its __STAMP) and kind, untouched records get no event. With 4D change tracking on
 * and off (then deletions and updates that keep their dates are found by the reconcile at the end
 * of --once). Sinks: stdout, a real HTTP receiver verifying Standard Webhooks signatures, a real
 * Redis stream. The kill -9 loop under churn is in reliability/watch-crash.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { cleanupTempDirs, collect, spawnCli, tempDir } from '../helpers/cli.js';
import { IN_MATRIX, itOnce, startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { promtool, startPostgres, startRedis } from '../helpers/services.mjs';
import { expectFeedMatches, parseEvents, type FeedEvent } from '../helpers/watch.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(() => cleanupTempDirs());

const watch = (args: string[], env: Record<string, string>, input?: string) => runMain(['watch', ...args], { env, input });

describe.each([
  ['tracks changes', ['Kunden']],
  ['does not track changes', false],
] as const)('a server that %s', (_label, changeTracking) => {
  it('starts at now, then emits exactly the changes: created, updated (changed fields), deleted', async () => {
    server = await startServer({ rows: { Kunden: 60 }, changeTracking: changeTracking as string[] | false });
    const first = await watch(['Kunden', '--once'], server.env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe('');
    expect(await server.control('mutate', { table: 'Kunden', update: 4, insert: 2, delete: 2 })).toBeTruthy();
    // Changes behind the dates' back: only the reconcile (or 4D's change tracking) sees them.
    await server.control('mutate', { table: 'Kunden', update: 2, insert: 1, delete: 1, dates: 'keep' });
    const second = await watch(['Kunden', '--once'], server.env);
    expect(second.code, second.stderr).toBe(0);
    const events = parseEvents(second.stdout);
    await expectFeedMatches(server, 'Kunden', events);
    expect(events.filter((e) => e.type === 'legacy.record.created')).toHaveLength(3);
    expect(events.filter((e) => e.type === 'legacy.record.deleted')).toHaveLength(3);
    const updated = events.filter((e) => e.type === 'legacy.record.updated');
    expect(updated).toHaveLength(6);
    for (const e of updated) {
      expect(e.data.changedFields!.length).toBeGreaterThan(0);
      expect(e.data.changedFields).not.toContain('KundenNr');
    }
    for (const e of events) {
      expect(e.specversion).toBe('1.0');
      expect(e.source).toBe('urn:legacy:test:Kunden');
      expect(Number.isNaN(Date.parse(e.time))).toBe(false);
    }
    // Nothing changed since: nothing to say, and no event twice.
    const third = await watch(['Kunden', '--once'], server.env);
    expect(third.stdout).toBe('');
  });
});

describe('watch', () => {
  itOnce('--from beginning sends every record as created; a second consumer keeps its own cursor', async () => {
    server = await startServer({ rows: { Kunden: 40 }, changeTracking: ['Kunden'] });
    const all = await watch(['Kunden', '--once', '--from', 'beginning', '--consumer', 'full'], server.env);
    expect(all.code, all.stderr).toBe(0);
    const events = parseEvents(all.stdout);
    expect(events).toHaveLength(40);
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(['legacy.record.created']));
    expect(new Set(events.map((e) => e.id)).size).toBe(40);
    // In change order (4D's global stamp).
    const stamps = events.map((e) => (e.data as { globalStamp?: number }).globalStamp!);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
    await server.control('mutate', { table: 'Kunden', update: 1 });
    expect(parseEvents((await watch(['Kunden', '--once', '--consumer', 'full'], server.env)).stdout)).toHaveLength(1);
    // Another consumer starting now sees only what comes after its start.
    expect((await watch(['Kunden', '--once', '--consumer', 'late'], server.env)).stdout).toBe('');
    const status = await runMain(['watch', 'status', '--json'], { env: server.env });
    expect(status.code).toBe(0);
    const consumers = JSON.parse(status.stdout).consumers as Array<{ consumer: string; table: string; records: number }>;
    expect(consumers.map((c) => [c.consumer, c.table, c.records])).toEqual([
      ['full', 'Kunden', 40],
      ['late', 'Kunden', 40],
    ]);
  });

  itOnce('events of several tracked tables come in global-stamp order across the tables', async () => {
    // Enough rows that the seeded picks of the updates below never hit one record twice.
    server = await startServer({ rows: { Kunden: 2000, Artikel: 2000 }, changeTracking: ['Kunden', 'Artikel'] });
    expect((await watch(['Kunden', 'Artikel', '--once'], server.env)).code).toBe(0);
    for (let i = 0; i < 3; i++) {
      await server.control('mutate', { table: 'Artikel', update: 1 });
      await server.control('mutate', { table: 'Kunden', update: 1 });
    }
    // (A deletion could pick a record updated above: one event for both, the feed reads state.)
    await server.control('mutate', { table: 'Artikel', insert: 1 });
    await server.control('mutate', { table: 'Kunden', insert: 1 });
    const r = await watch(['Kunden', 'Artikel', '--once'], server.env);
    expect(r.code, r.stderr).toBe(0);
    const events = parseEvents(r.stdout);
    expect(events.map((e) => e.data.table)).toEqual(['Artikel', 'Kunden', 'Artikel', 'Kunden', 'Artikel', 'Kunden', 'Artikel', 'Kunden']);
    const stamps = events.map((e) => (e.data as { globalStamp?: number }).globalStamp!);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
    await expectFeedMatches(server, 'Kunden', events);
    await expectFeedMatches(server, 'Artikel', events);
  });

  itOnce('on a terminal a status line on stderr counts the events, unless the events go to that terminal', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    expect((await watch(['Kunden', '--once'], server.env)).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 2 });
    const piped = await runMain(['watch', 'Kunden', '--once'], { env: server.env, stderrTty: true });
    expect(piped.code).toBe(0);
    expect(piped.stderr).toContain('0 created, 2 updated, 0 deleted event(s)');
    expect(parseEvents(piped.stdout)).toHaveLength(2);
    await server.control('mutate', { table: 'Kunden', update: 1 });
    const onTerminal = await runMain(['watch', 'Kunden', '--once'], { env: server.env, stderrTty: true, tty: true });
    expect(onTerminal.code).toBe(0);
    expect(onTerminal.stderr).not.toContain('event(s)');
    expect(parseEvents(onTerminal.stdout)).toHaveLength(1);
  });

  itOnce('a poll whose one answer holds fewer rows than it counts is not taken as the whole window: it fails loudly, nothing lost', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    expect((await watch(['Kunden', '--once'], server.env)).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 3 });
    // Three changed rows, pages of three: the server sends two and counts three.
    await server.control('options', { brokenPaging: 'short' });
    const short = await watch(['Kunden', '--once', '--page-size', '3'], server.env);
    expect(short.code).toBe(65);
    // What it sent before it stopped (a batch may commit while the check is on its way) is real;
    // the rest comes with the next poll: nothing is lost.
    expect(parseEvents(short.stdout).length).toBeLessThan(3);
    await server.control('options', { brokenPaging: 'none' });
    const r = await watch(['Kunden', '--once', '--page-size', '3'], server.env);
    expect(r.code, r.stderr).toBe(0);
    await expectFeedMatches(server, 'Kunden', [...parseEvents(short.stdout), ...parseEvents(r.stdout)]);
  });

  itOnce('reset forgets a consumer (with --yes off a terminal); state is 0600', async () => {
    server = await startServer({ rows: { Kunden: 20 } });
    expect((await watch(['Kunden', '--once', '--consumer', 'c1'], server.env)).code).toBe(0);
    const db = join(server.dataDir, 'watch', 'test', 'c1.sqlite');
    expect(statSync(db).mode & 0o077).toBe(0);
    const refused = await runMain(['watch', 'reset', '--consumer', 'c1'], { env: server.env });
    expect(refused.code).toBe(64);
    expect(existsSync(db)).toBe(true);
    expect((await runMain(['watch', 'reset', '--consumer', 'c1', '--yes'], { env: server.env })).code).toBe(0);
    expect(existsSync(db)).toBe(false);
  });

  itOnce('names the tables, refuses two sinks, and wants the webhook secret from the environment', async () => {
    server = await startServer({ rows: { Kunden: 5 } });
    expect((await watch([], server.env)).code).toBe(64);
    expect((await watch(['Kunden', '--webhook', 'http://127.0.0.1:1/x', '--redis-stream', 'redis://127.0.0.1:1'], server.env)).code).toBe(64);
    const noSecret = await watch(['Kunden', '--webhook', 'http://127.0.0.1:1/x'], server.env);
    expect(noSecret.code).toBe(78);
    expect(noSecret.stderr).toMatch(/LEGACY_WEBHOOK_SECRET/);
  });

  itOnce('Ctrl-C stops the follower cleanly: exit 0, and the next run goes on from where it was', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    const r = await interruptWhenFollowing(['watch', 'Kunden', '--interval', '100ms', '-v'], server.env);
    expect(r.code, r.stderr).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 2 });
    expect(parseEvents((await watch(['Kunden', '--once'], server.env)).stdout)).toHaveLength(2);
  });
});

describe('state in PostgreSQL, and sync --follow', async () => {
  const postgres = await startPostgres();
  afterAll(async () => {
    await postgres?.stop();
  });

  it.skipIf(IN_MATRIX || !postgres)('a consumer keeps its state in PostgreSQL (for fleets): same events', async () => {
    server = await startServer({ rows: { Kunden: 40 }, changeTracking: ['Kunden'] });
    const state = ['--state', await postgres!.newDatabase()];
    expect((await watch(['Kunden', '--once', ...state], server.env)).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 3, insert: 2, delete: 1 });
    const r = await watch(['Kunden', '--once', ...state], server.env);
    expect(r.code, r.stderr).toBe(0);
    const events = parseEvents(r.stdout);
    expect(events).toHaveLength(6);
    await expectFeedMatches(server, 'Kunden', events);
    expect(events.filter((e) => e.type === 'legacy.record.updated').every((e) => e.data.changedFields!.length > 0)).toBe(true);
  });

  itOnce('sync --follow keeps the copy current until Ctrl-C (exit 0)', async () => {
    server = await startServer({ rows: { Kunden: 40 } });
    const db = join(tempDir(), 'follow.sqlite');
    const child = spawnCli(['sync', 'Kunden', '--db', db, '--follow', '--interval', '100ms'], { env: server.env });
    const done = collect(child, { timeoutMs: 30_000 });
    let changed: { inserted: string[] };
    try {
      await waitUntil(() => existsSync(db) && count(db) === 40);
      changed = await server.control<{ inserted: string[] }>('mutate', { table: 'Kunden', insert: 3 });
      await waitUntil(() => count(db) === 43);
    } finally {
      // SIGINT, or (the wait failed) never leave the follower running behind the test.
      child.kill('SIGINT');
    }
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(changed.inserted).toHaveLength(3);
  });
});

/**
 * Start a follower and SIGINT it `after` ms after it said it is watching (a loaded machine starts
 * slowly), or, given a test, once its stderr so far passes it.
 */
async function interruptWhenFollowing(args: string[], env: Record<string, string>, after: number | ((stderr: string) => boolean) = 1000) {
  const child = spawnCli(args, { env });
  const done = collect(child, { timeoutMs: 60_000 });
  let seen = '';
  child.stderr!.on('data', (d: Buffer | string) => {
    seen += String(d);
  });
  try {
    await waitUntil(() => seen.includes('watching '));
  } catch (error) {
    // Never leave a follower running behind a failed test.
    child.kill('SIGKILL');
    await done.catch(() => undefined);
    throw error;
  }
  if (typeof after === 'number') await new Promise((resolve) => setTimeout(resolve, after));
  else await waitUntil(() => after(seen)).catch(() => undefined); // not met: the test's checks say why
  child.kill('SIGINT');
  return done;
}

function count(db: string): number {
  try {
    const d = new Database(db, { readonly: true });
    try {
      return (d.prepare('SELECT count(*) AS n FROM "Kunden" WHERE _deleted_at IS NULL').get() as { n: number }).n;
    } finally {
      d.close();
    }
  } catch {
    return -1;
  }
}

async function waitUntil(ok: () => boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('watch metrics', () => {
  itOnce('--metrics-file: events by kind, polls and lag, added up across runs (promtool accepts it)', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    const file = join(tempDir(), 'legacy.prom');
    const args = ['Kunden', '--once', '--consumer', 'shop', '--metrics-file', file];
    expect((await runMain(['watch', ...args], { env: server.env })).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 2, delete: 1 });
    expect((await runMain(['watch', ...args], { env: server.env })).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 1 });
    expect((await runMain(['watch', ...args], { env: server.env })).code).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('legacy_watch_events_total{consumer="shop",env="test",kind="updated"} 3');
    expect(text).toContain('legacy_watch_events_total{consumer="shop",env="test",kind="deleted"} 1');
    expect(text).toContain('legacy_watch_polls_total{consumer="shop",env="test"} 3');
    expect(text).toMatch(/legacy_watch_lag_seconds\{consumer="shop",env="test"\} \d/);
    const tool = promtool();
    if (tool) expect(spawnSync(tool, ['check', 'metrics'], { input: text }).status).toBe(0);
  });
});

describe('polling that is kind to the server', () => {
  it('one request per table per round when nothing changed (no entity set, no deletions query)', async () => {
    server = await startServer({ rows: { Kunden: 30, Artikel: 30 }, changeTracking: ['Kunden'] });
    expect((await watch(['Kunden', 'Artikel', '--once'], server.env)).code).toBe(0);
    const r = await interruptWhenFollowing(['watch', 'Kunden', 'Artikel', '--interval', '100ms', '--max-interval', '100ms', '-vv'], server.env, (stderr) =>
      // Seven rounds done: each logs its line when it ends.
      /round 7:/.test(stderr),
    );
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n');
    const firstRound = lines.findIndex((l) => /round 1:/.test(l));
    const rounds = lines.filter((l) => /round \d+:/.test(l)).length;
    const later = lines.slice(firstRound + 1).filter((l) => /debug: http (GET|POST)/.test(l));
    expect(rounds).toBeGreaterThan(3);
    // After the first round (catalog, checks): one page request per table per round.
    expect(later.length).toBeLessThanOrEqual(2 * rounds);
    expect(later.every((l) => /GET \/rest\/(Kunden|Artikel)\?/.test(l))).toBe(true);
  });
});

describe('the webhook sink', () => {
  const SECRET = `whsec_${Buffer.from('a-test-secret-of-enough-length!!').toString('base64')}`;
  let receiver: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => receiver?.close(resolve) ?? resolve(undefined));
    receiver = undefined;
  });

  /** A receiver that verifies every request's signature; `refuse(n)` says whether to answer 503 to the n-th. */
  async function startReceiver(refuse: (n: number) => boolean) {
    const verifier = new Webhook(SECRET);
    const got: { batches: FeedEvent[][]; ids: string[]; tried: string[]; requests: number; badSignatures: number } = {
      batches: [],
      ids: [],
      tried: [],
      requests: 0,
      badSignatures: 0,
    };
    receiver = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks).toString('utf8');
      got.requests++;
      got.tried.push(String(req.headers['webhook-id']));
      try {
        verifier.verify(body, req.headers as Record<string, string>);
      } catch {
        got.badSignatures++;
        res.writeHead(401).end();
        return;
      }
      if (refuse(got.requests)) {
        res.writeHead(503).end();
        return;
      }
      got.batches.push(JSON.parse(body));
      got.ids.push(String(req.headers['webhook-id']));
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
    const port = (receiver.address() as { port: number }).port;
    return { got, url: `http://127.0.0.1:${port}/hooks/erp` };
  }

  itOnce('POSTs signed batches, retries a receiver that is down, and never loses a change', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    const { got, url } = await startReceiver((n) => n <= 3);
    const env = { ...server.env, LEGACY_WEBHOOK_SECRET: SECRET, LEGACY_WEBHOOK_BACKOFF_MS: '20' };
    expect((await watch(['Kunden', '--once', '--webhook', url], env)).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 3, insert: 1, delete: 1 });
    const r = await watch(['Kunden', '--once', '--webhook', url], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/not taken \(HTTP 503\); attempt 1 of 8/);
    expect(got.badSignatures).toBe(0);
    // The same batch was retried under the same webhook-id (receivers drop duplicates by it).
    expect(new Set(got.tried.slice(0, 4)).size).toBe(1);
    expect(got.ids[0]).toBe(got.tried[0]);
    await expectFeedMatches(server, 'Kunden', got.batches.flat());
    expect(r.stderr).not.toContain(SECRET);
  });

  itOnce('a redirect is not delivery: exit 69, nothing committed, and the message names where it points', async () => {
    server = await startServer({ rows: { Kunden: 20 }, changeTracking: ['Kunden'] });
    const { got, url } = await startReceiver(() => false);
    let gets = 0;
    const redirector = createServer((req, res) => {
      if (req.method === 'GET') gets++;
      res.writeHead(302, { location: url }).end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const moved = `http://127.0.0.1:${(redirector.address() as { port: number }).port}/old?token=s3cr3t-token`;
      const env = { ...server.env, LEGACY_WEBHOOK_SECRET: SECRET, LEGACY_WEBHOOK_BACKOFF_MS: '10' };
      expect((await watch(['Kunden', '--once', '--webhook', moved], env)).code).toBe(0);
      await server.control('mutate', { table: 'Kunden', update: 1 });
      const r = await watch(['Kunden', '--once', '--webhook', moved, '-v'], env);
      expect(r.code).toBe(69);
      expect(r.stderr).toMatch(/HTTP 302, a redirect to http:\/\/127\.0\.0\.1:\d+: give --webhook the final URL/);
      expect(r.stderr).not.toContain('s3cr3t-token');
      expect(gets).toBe(0);
      expect(got.batches).toHaveLength(0);
      // Nothing was committed: the final URL gets the change.
      expect((await watch(['Kunden', '--once', '--webhook', url], env)).code).toBe(0);
      await expectFeedMatches(server, 'Kunden', got.batches.flat());
    } finally {
      await new Promise((resolve) => redirector.close(resolve));
    }
  });

  itOnce('a receiver that stays down: exit 69 and nothing committed (resent next time), or a dead-letter file', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    let down = true;
    const { got, url } = await startReceiver(() => down);
    const env = { ...server.env, LEGACY_WEBHOOK_SECRET: SECRET, LEGACY_WEBHOOK_BACKOFF_MS: '10' };
    expect((await watch(['Kunden', '--once', '--webhook', url], env)).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 2 });
    const stopped = await watch(['Kunden', '--once', '--webhook', url, '--webhook-attempts', '2'], env);
    expect(stopped.code).toBe(69);
    expect(stopped.stderr).toMatch(/did not take a batch of 2 event\(s\).*nothing was committed/);
    down = false;
    expect((await watch(['Kunden', '--once', '--webhook', url], env)).code).toBe(0);
    await expectFeedMatches(server, 'Kunden', got.batches.flat());
    // Dead letter: the batch goes to a 0600 file and the feed goes on.
    down = true;
    await server.control('mutate', { table: 'Kunden', update: 1 });
    const dlq = join(tempDir(), 'dead.ndjson');
    const dead = await watch(['Kunden', '--once', '--webhook', url, '--webhook-attempts', '1', '--on-failure', 'dead-letter', '--dead-letter', dlq], env);
    expect(dead.code, dead.stderr).toBe(0);
    const lines = readFileSync(dlq, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!).event.type).toBe('legacy.record.updated');
    expect(statSync(dlq).mode & 0o077).toBe(0);
  });
});

describe('the Redis stream sink', async () => {
  const redis = await startRedis();
  afterAll(async () => {
    await redis?.stop();
  });
  it.skipIf(IN_MATRIX || !redis)('XADDs one entry per event, readable by a consumer group', async () => {
    server = await startServer({ rows: { Kunden: 30 }, changeTracking: ['Kunden'] });
    const args = ['Kunden', '--once', '--redis-stream', redis!.url, '--stream-key', 'erp:events'];
    expect((await watch(args, server.env)).code).toBe(0);
    await server.control('mutate', { table: 'Kunden', update: 2, insert: 1, delete: 1 });
    const client = new Redis(redis!.url);
    try {
      await client.xgroup('CREATE', 'erp:events', 'shop', '0', 'MKSTREAM');
      const r = await watch(args, server.env);
      expect(r.code, r.stderr).toBe(0);
      const read = (await client.xreadgroup('GROUP', 'shop', 'c1', 'COUNT', 100, 'STREAMS', 'erp:events', '>')) as Array<[string, Array<[string, string[]]>]>;
      const events = read[0]![1].map(([, fields]) => JSON.parse(fields[1]!) as FeedEvent);
      expect(events).toHaveLength(4);
      await expectFeedMatches(server, 'Kunden', events);
    } finally {
      client.disconnect();
    }
  });
});
