/** Sync replicates tables into SQLite incrementally and survives crashes. */
import { createServer, request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, collect, runCli, spawnCli, tempDir } from '../helpers/cli.js';
import { itOnce, startServer, URL_DECODINGS, type TestServer } from '../helpers/emulator.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(cleanupTempDirs);

type Row = Record<string, unknown>;

/** The emulator's current rows, converted exactly as get-table converts them. */
async function serverRows(s: TestServer, table: string, env = s.env): Promise<Map<string, Row>> {
  const r = await runCli(['get-table', table, '--ndjson', '--meta'], { env });
  expect(r.code, r.stderr).toBe(0);
  const rows = new Map<string, Row>();
  for (const line of r.stdout.trim().split('\n').filter(Boolean)) {
    const row = JSON.parse(line) as Row;
    rows.set(String(row.__KEY), row);
  }
  return rows;
}

function dbRows(path: string, table: string, key: string): Map<string, Row> {
  const db = new Database(path, { readonly: true });
  try {
    const rows = new Map<string, Row>();
    for (const row of db.prepare(`SELECT * FROM "${table}" WHERE _deleted_at IS NULL`).all() as Row[]) rows.set(String(row[key]), row);
    return rows;
  } finally {
    db.close();
  }
}

/** The database holds exactly the server's rows, with the same stamps and values. */
async function expectEqual(s: TestServer, dbPath: string, table: string, key: string): Promise<void> {
  const expected = await serverRows(s, table);
  const actual = dbRows(dbPath, table, key);
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [k, exp] of expected) {
    const got = actual.get(k)!;
    expect(got._stamp, `stamp of ${k}`).toBe(exp.__STAMP);
    for (const [name, value] of Object.entries(exp)) {
      if (name.startsWith('__')) continue;
      const stored = got[name];
      const want = value === null ? null : typeof value === 'boolean' ? (value ? 1 : 0) : typeof value === 'object' ? JSON.stringify(value) : value;
      expect(stored, `${table}[${k}].${name}`).toEqual(want);
    }
  }
}

function countRows(path: string): number {
  try {
    const db = new Database(path, { readonly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM Artikel').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0; // not created yet
  }
}

/** Wait (up to 10 s) until a running sync has committed at least `n` Artikel rows. */
async function untilRows(path: string, n: number): Promise<void> {
  for (let i = 0; i < 100 && !(existsSync(path) && countRows(path) >= n); i++) await new Promise((r) => setTimeout(r, 100));
}

const sync = (s: TestServer, args: string[], extra: Record<string, string> = {}) => runCli(['sync', ...args], { env: { ...s.env, ...extra } });

describe('sync into SQLite', () => {
  it.each(URL_DECODINGS)(
    'a full sync equals the emulator row for row; later runs are incremental and equal again after updates, inserts and deletes (%s URL decoding)',
    async (urlDecoding) => {
      server = await startServer({ rows: { Artikel: 1500, Kunden: 300 }, urlDecoding });
      const db = join(server.dataDir, 'test.sqlite');
      const first = await sync(server, ['Artikel', 'Kunden', '--json']);
      expect(first.code, first.stderr).toBe(0);
      const summary = JSON.parse(first.stdout);
      expect(summary.database).toBe(db);
      expect(summary.tables.map((t: { table: string; mode: string; inserted: number }) => [t.table, t.mode, t.inserted])).toEqual([
        ['Artikel', 'full', 1500],
        ['Kunden', 'full', 300],
      ]);
      await expectEqual(server, db, 'Artikel', 'UID');
      await expectEqual(server, db, 'Kunden', 'KundenNr');

      const mutated = await server.control<{ updated: string[]; inserted: string[]; deleted: string[] }>('mutate', {
        table: 'Artikel',
        update: 20,
        insert: 5,
        delete: 4,
      });
      const second = JSON.parse((await sync(server, ['Artikel', '--json'])).stdout).tables[0];
      expect(second.mode).toBe('incremental');
      expect(second.inserted).toBe(5);
      expect(second.updated).toBe(20);
      expect(second.fetched).toBeLessThan(100); // only the changed window, not the table
      // Deletions are only seen with --reconcile.
      const third = JSON.parse((await sync(server, ['Artikel', '--reconcile', '--json'])).stdout).tables[0];
      expect(third.deleted).toBe(4);
      expect(third.inserted + third.updated).toBe(0); // re-reading the window changes nothing
      await expectEqual(server, db, 'Artikel', 'UID');
      const gone = new Database(db, { readonly: true });
      const marked = gone.prepare(`SELECT count(*) AS n FROM Artikel WHERE _deleted_at IS NOT NULL`).get() as { n: number };
      gone.close();
      expect(marked.n).toBe(4);
      expect(mutated.deleted).toHaveLength(4);

      // Nothing changed: an incremental run reads only the cursor's own day and writes nothing.
      const idle = JSON.parse((await sync(server, ['Artikel', '--json'])).stdout).tables[0];
      expect(idle.inserted + idle.updated + idle.deleted).toBe(0);
    },
  );

  itOnce('sync status --json and sync runs report what happened; prune keeps recent runs', async () => {
    server = await startServer({ rows: { Kunden: 50 } });
    await sync(server, ['Kunden']);
    await sync(server, ['Kunden']);
    const status = JSON.parse((await runCli(['sync', 'status', '--json'], { env: server.env })).stdout);
    expect(status.tables).toEqual([expect.objectContaining({ table: 'Kunden', rows: 50, deleted: 0, lastError: null })]);
    expect(status.tables[0].cursor).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    expect(status.runs.map((r: { status: string; mode: string }) => `${r.status}/${r.mode}`)).toEqual(['completed/incremental', 'completed/full']);
    const runs = JSON.parse((await runCli(['sync', 'runs', '--limit', '1', '--json'], { env: server.env })).stdout);
    expect(runs).toHaveLength(1);
    const prune = await runCli(['sync', 'prune', '--older-than', '7d'], { env: server.env });
    expect(prune.stdout).toMatch(/removed 0 run/);
  });

  itOnce('a sync killed in the middle, then re-run, ends equal; the killed run is marked interrupted', async () => {
    server = await startServer({ rows: { Artikel: 3000 }, latencyMs: 300 });
    const db = join(server.dataDir, 'test.sqlite');
    const child = spawnCli(['sync', 'Artikel', '--page-size', '100'], { env: server.env });
    const done = collect(child);
    // Kill once some pages are committed (the database has rows) but long before the end.
    await untilRows(db, 200);
    child.kill('SIGKILL');
    await done;
    const partial = dbRows(db, 'Artikel', 'UID').size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(3000);
    await server.control('options', { latencyMs: 0 });
    await server.control('mutate', { table: 'Artikel', update: 10 });
    const again = await sync(server, ['Artikel', '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/interrupted/);
    // No cursor was saved by the killed run, so the re-run reads everything again.
    expect(JSON.parse(again.stdout).tables[0].mode).toBe('full');
    await expectEqual(server, db, 'Artikel', 'UID');
    const runs = JSON.parse((await runCli(['sync', 'runs', '--json'], { env: server.env })).stdout) as Array<{ status: string }>;
    expect(runs.map((r) => r.status)).toEqual(['completed', 'interrupted']);
  });

  itOnce('two syncs at once: the second exits 75 immediately', async () => {
    server = await startServer({ rows: { Artikel: 2000 }, latencyMs: 300 });
    const db = join(server.dataDir, 'test.sqlite');
    const child = spawnCli(['sync', 'Artikel', '--page-size', '100'], { env: server.env });
    const first = collect(child);
    await untilRows(db, 100);
    const started = Date.now();
    const second = await sync(server, ['Artikel']);
    expect(second.code).toBe(75);
    expect(second.stderr).toMatch(/another sync is already running/);
    expect(Date.now() - started).toBeLessThan(5000);
    await server.control('options', { latencyMs: 0 });
    expect((await first).code).toBe(0);
  });

  itOnce('a new attribute in the catalog is absorbed as a new column', async () => {
    const dir = tempDir();
    const db = join(dir, 'teile.sqlite');
    server = await startServer({ data: FIXTURE });
    expect((await sync(server, ['Teile', '--db', db])).code).toBe(0);
    await server.stop();
    const fixture = JSON.parse(readFileSync(FIXTURE, 'utf8'));
    const teile = fixture.dataClasses.find((d: { name: string }) => d.name === 'Teile');
    teile.attributes.push({ name: 'Farbe', type: 'string' });
    for (const row of teile.rows) row.Farbe = `F${row.ID}`;
    const v2 = join(dir, 'v2.json');
    writeFileSync(v2, JSON.stringify(fixture));
    const env = server.env;
    server = await startServer({ data: v2 });
    server.env.LEGACY_CONFIG_DIR = env.LEGACY_CONFIG_DIR!;
    const r = await sync(server, ['Teile', '--db', db, '--full', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).tables[0].addedColumns).toEqual(['Farbe']);
    expect(r.stderr).toMatch(/added columns Farbe/);
    const rows = dbRows(db, 'Teile', 'ID');
    expect(rows.get('1')!.Farbe).toBe('F1');
  });

  itOnce('a cursor filter the server rejects: a full read of that table, said on stderr', async () => {
    server = await startServer({ rows: { Kunden: 40 } });
    expect((await sync(server, ['Kunden'])).code).toBe(0);
    // A front that answers like a 4D server refusing the query for any filter on modified_date.
    const target = new URL(server.url);
    const proxy: Server = createServer((req, res) => {
      if (/\$filter=[^&]*modified_date/.test(decodeURIComponent(req.url ?? ''))) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ __ERROR: [{ message: 'Query is invalid', componentSignature: 'dbmg', errCode: 1162 }] }));
        return;
      }
      const upstream = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const port = (proxy.address() as { port: number }).port;
    try {
      const db = join(server.dataDir, 'test.sqlite');
      const r = await sync(server, ['Kunden', '--db', db, '--json'], { LEGACY_BASE_URL: `http://127.0.0.1:${port}` });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/rejected the incremental filter/);
      const t = JSON.parse(r.stdout).tables[0];
      expect([t.mode, t.reason]).toEqual(['full', 'cursor filter rejected']);
      expect(t.fetched).toBe(40);
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });

  itOnce('usage: no tables → 64; unknown table → 65; --dry-run writes nothing', async () => {
    server = await startServer({ rows: { Kunden: 10 } });
    expect((await sync(server, [])).code).toBe(64);
    const unknown = await sync(server, ['Kundne']);
    expect(unknown.code).toBe(65);
    expect(unknown.stderr).toMatch(/did you mean Kunden/);
    const dry = await sync(server, ['Kunden', '--dry-run', '--db', join(tempDir(), 'none.sqlite')]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/Kunden\s+full\s+-\s+10/);
  });
});

describe('sync status, the run lock and interruptions (issue 22 item 10)', () => {
  itOnce('sync status shows the latest check with its whole timestamp, never cut', async () => {
    server = await startServer({ rows: { Kunden: 50 } });
    expect((await sync(server, ['Kunden'])).code).toBe(0);
    const lastCheck = async () => {
      const text = (await runCli(['sync', 'status'], { env: server!.env })).stdout;
      const [head, row] = text.split('\n');
      // The column starts where its header does; the cell runs to LAST ERROR (empty: end of line).
      return row!.slice(head!.indexOf('LAST CHECK')).trim();
    };
    const json = async () => JSON.parse((await runCli(['sync', 'status', '--json'], { env: server!.env })).stdout).tables[0];
    expect((await sync(server, ['verify', 'Kunden'])).code).toBe(0);
    expect(await lastCheck()).toBe(`verify ${(await json()).lastVerify.at}: equal`);
    await new Promise((r) => setTimeout(r, 5));
    expect((await sync(server, ['Kunden', '--reconcile'])).code).toBe(0);
    // The later check is the reconcile, whatever the names sort like.
    const status = await json();
    expect(status.lastReconcile.at > status.lastVerify.at).toBe(true);
    expect(await lastCheck()).toBe(`reconcile ${status.lastReconcile.at}: equal`);
    expect(status.lastReconcile.at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  itOnce('the .sqlite.lock file stays, as documented, and a left-over one never blocks a sync (not even after SIGKILL)', async () => {
    // The README once said the file exists only while a sync runs; the lock is the OS lock on it.
    server = await startServer({ rows: { Artikel: 2000 }, latencyMs: 200 });
    const db = join(server.dataDir, 'test.sqlite');
    const child = spawnCli(['sync', 'Artikel', '--page-size', '100'], { env: server.env });
    const done = collect(child);
    await untilRows(db, 100);
    child.kill('SIGKILL');
    await done;
    expect(existsSync(`${db}.lock`)).toBe(true);
    await server.control('options', { latencyMs: 0 });
    const next = await sync(server, ['Artikel']);
    expect(next.code, next.stderr).toBe(0);
    expect(existsSync(`${db}.lock`)).toBe(true);
    expect(statSync(`${db}.lock`).size).toBe(0);
    expect((await sync(server, ['Artikel'])).code).toBe(0);
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).not.toMatch(/\.lock` beside it while a sync runs/);
  });

  itOnce.each(['SIGINT', 'SIGTERM'] as const)('a sync stopped with %s records that it was interrupted, and by what', async (signal) => {
    server = await startServer({ rows: { Artikel: 3000 }, latencyMs: 300 });
    const db = join(server.dataDir, 'test.sqlite');
    const child = spawnCli(['sync', 'Artikel', '--page-size', '100'], { env: server.env });
    const done = collect(child);
    await untilRows(db, 200);
    child.kill(signal);
    const r = await done;
    expect(r.code).toBe(130);
    const runs = JSON.parse((await runCli(['sync', 'runs', '--json'], { env: server.env })).stdout) as Array<{ status: string; error: string }>;
    expect(runs[0]).toMatchObject({ status: 'interrupted', error: `interrupted (${signal})` });
    const status = JSON.parse((await runCli(['sync', 'status', '--json'], { env: server.env })).stdout);
    expect(status.tables[0].lastError).toBe(`interrupted (${signal})`);
    expect(r.stderr).toContain(`legacy: interrupted (${signal})`);
    // A first load puts its indexes off to its end; a stopped one leaves them to the next run, which builds them.
    const indexes = () => {
      const d = new Database(db, { readonly: true });
      try {
        return (
          d.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'Artikel' AND name LIKE 'Artikel__%'`).all() as Array<{ name: string }>
        )
          .map((x) => x.name)
          .filter((n) => n.startsWith('Artikel__'))
          .sort();
      } finally {
        d.close();
      }
    };
    expect(indexes()).toEqual([]);
    await server.control('options', { latencyMs: 0 });
    const next = await sync(server, ['Artikel']);
    expect(next.code, next.stderr).toBe(0);
    expect(indexes()).toEqual(['Artikel__cursor', 'Artikel__stamp']);
  });
});
