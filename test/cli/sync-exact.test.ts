/**
 * A sync that provably equals the server. Changes a date window cannot see (updates that
 * leave modified_date alone, inserts with old dates, deletes, a table without date fields) are
 * found by `sync --reconcile` (every row's key and stamp) and reported by `sync verify` (exit 1,
 * JSON differences); where 4D tracks changes (__GlobalStamp, __DeletedRecords) an incremental run
 * reads exactly the changed rows. Under both URL decoding orders, into SQLite and PostgreSQL.
 * In-process (main(argv, io)); the crash loop with a killed reconcile is in reliability/crash.
 */
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { startServer, URL_DECODINGS, type TestServer } from '../helpers/emulator.js';
import { runMain, type MainResult } from '../helpers/run.js';
import { startPostgres } from '../helpers/services.mjs';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const postgres = await startPostgres();

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(async () => {
  await postgres?.stop();
  cleanupTempDirs();
});

type Row = Record<string, unknown>;
type Target = { name: string; db: () => Promise<string>; rows: (db: string, table: string) => Promise<Row[]> };

const sqlite: Target = {
  name: 'SQLite',
  db: async () => join(tempDir(), 'copy.sqlite'),
  rows: async (path, table) => {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare(`SELECT * FROM "${table}" WHERE _deleted_at IS NULL`).all() as Row[];
    } finally {
      db.close();
    }
  },
};
const postgresql: Target = {
  name: 'PostgreSQL',
  db: () => postgres!.newDatabase(),
  rows: async (url, table) => {
    const client = new pg.Client({
      connectionString: url,
      types: { getTypeParser: ((oid: number, format: 'text') => (oid === 20 ? Number : pg.types.getTypeParser(oid, format))) as never },
    });
    await client.connect();
    try {
      return (await client.query(`SELECT * FROM "${table}" WHERE _deleted_at IS NULL`)).rows as Row[];
    } finally {
      await client.end();
    }
  },
};
const TARGETS = postgres ? [sqlite, postgresql] : [sqlite];
const MATRIX = URL_DECODINGS.flatMap((decoding) => TARGETS.map((target) => [decoding, target.name, target] as const));

const legacy = (s: TestServer, db: string, args: string[]) => runMain(args[0] === 'sync' ? [...args, '--db', db] : args, { env: s.env });
const tables = (r: MainResult) => JSON.parse(r.stdout).tables as Array<Record<string, any>>;

/** The copy's live keys and _stamp equal the server's, row for row. */
async function expectSameKeysAndStamps(s: TestServer, target: Target, db: string, table: string, key: string): Promise<void> {
  const r = await runMain(['get-table', table, '--ndjson', '--meta', '--fields', key], { env: s.env });
  expect(r.code, r.stderr).toBe(0);
  const server = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Row)
    .map((row) => [String(row[key]), row.__STAMP]);
  const local = (await target.rows(db, table)).map((row) => [String(row[key]), Number(row._stamp)]);
  const byKey = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
  expect(local.sort(byKey)).toEqual(server.sort(byKey));
}

describe.each(MATRIX)('drift a date window cannot see (%s URL decoding, %s)', (urlDecoding, _name, target) => {
  it('verify exits 1 and lists it; --reconcile repairs it; verify exits 0', async () => {
    server = await startServer({ rows: { Artikel: 2000 }, urlDecoding, maxSessions: 10 });
    const db = await target.db();
    const first = await legacy(server, db, ['sync', 'Artikel', '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect((await legacy(server, db, ['sync', 'verify', 'Artikel'])).code).toBe(0);

    // A script updates rows without touching modified_*, an import inserts rows with old dates, rows are deleted.
    const changed = await server.control<{ updated: string[]; inserted: string[]; deleted: string[] }>('mutate', {
      table: 'Artikel',
      update: 20,
      insert: 5,
      delete: 3,
      dates: 'keep',
    });
    const incremental = await legacy(server, db, ['sync', 'Artikel', '--json']);
    expect(tables(incremental)[0]).toMatchObject({ mode: 'incremental' });
    const before = await legacy(server, db, ['sync', 'verify', 'Artikel', '--json']);
    expect(before.code).toBe(1);
    const report = JSON.parse(before.stdout);
    expect(report.equal).toBe(false);
    expect(report.tables[0]).toMatchObject({ table: 'Artikel', server: 2002, local: 2000, missing: 5, extra: 3, stale: 20, equal: false });
    for (const key of report.tables[0].examples.missing) expect(changed.inserted).toContain(String(key));
    for (const key of report.tables[0].examples.extra) expect(changed.deleted).toContain(String(key));
    for (const key of report.tables[0].examples.stale) expect(changed.updated).toContain(String(key));
    const text = await legacy(server, db, ['sync', 'verify', 'Artikel']);
    expect(text.stdout).toMatch(/Artikel\s+2002\s+2000\s+5\s+3\s+20\s+DIFFERS/);

    const repaired = await legacy(server, db, ['sync', 'Artikel', '--reconcile', '--json']);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(tables(repaired)[0].reconcile).toEqual({ missing: 5, extra: 3, stale: 20, fetched: 25, deleted: 3, remaining: 0 });
    await expectSameKeysAndStamps(server, target, db, 'Artikel', 'UID');
    const after = await legacy(server, db, ['sync', 'verify', 'Artikel', '--json']);
    expect(after.code, after.stdout).toBe(0);
    expect(JSON.parse(after.stdout).tables[0]).toMatchObject({ missing: 0, extra: 0, stale: 0, equal: true });

    const status = JSON.parse((await legacy(server, db, ['sync', 'status', '--json'])).stdout).tables[0];
    expect(status.tracking).toMatch(/^date/);
    expect(status.lastReconcile).toMatchObject({ missing: 5, extra: 3, stale: 20 });
    expect(status.lastVerify).toMatchObject({ missing: 0, extra: 0, stale: 0 });
  });

  it('a table without date fields: read in full each time, and verify/reconcile keep it equal', async () => {
    server = await startServer({ data: FIXTURE, urlDecoding });
    const db = await target.db();
    expect((await legacy(server, db, ['sync', 'Teile', '--json'])).code).toBe(0);
    await server.control('row', { table: 'Teile', key: '2', set: { Preis: 7 } });
    await server.control('mutate', { table: 'Teile', delete: 1 });
    expect((await legacy(server, db, ['sync', 'verify', 'Teile'])).code).toBe(1);
    const again = tables(await legacy(server, db, ['sync', 'Teile', '--reconcile', '--json']))[0];
    expect(again).toMatchObject({ tracking: 'full', mode: 'full' });
    await expectSameKeysAndStamps(server, target, db, 'Teile', 'ID');
    expect((await legacy(server, db, ['sync', 'verify', 'Teile'])).code).toBe(0);
  });
});

describe.each(MATRIX)('4D change tracking (%s URL decoding, %s)', (urlDecoding, _name, target) => {
  it('an incremental run after 1% of changes reads only the changed rows and ends equal', async () => {
    server = await startServer({ rows: { Artikel: 3000 }, changeTracking: ['Artikel'], urlDecoding, maxSessions: 10 });
    const db = await target.db();
    const first = tables(await legacy(server, db, ['sync', 'Artikel', '--json']))[0];
    expect(first).toMatchObject({ tracking: 'global stamp', mode: 'full', inserted: 3000 });
    // 1%: updates that leave the dates alone, inserts with old dates, deletes.
    await server.control('mutate', { table: 'Artikel', update: 15, insert: 8, delete: 7, dates: 'keep' });
    const second = tables(await legacy(server, db, ['sync', 'Artikel', '--json']))[0];
    expect(second).toMatchObject({ tracking: 'global stamp', mode: 'incremental', fetched: 23, inserted: 8, updated: 15, deleted: 7 });
    await expectSameKeysAndStamps(server, target, db, 'Artikel', 'UID');
    expect((await legacy(server, db, ['sync', 'verify', 'Artikel'])).code).toBe(0);
    // Nothing changed: nothing read. A row deleted and created again with the same key stays live.
    const idle = tables(await legacy(server, db, ['sync', 'Artikel', '--json']))[0];
    expect(idle).toMatchObject({ fetched: 0, deleted: 0 });
    const status = JSON.parse((await legacy(server, db, ['sync', 'status', '--json'])).stdout).tables[0];
    expect(status).toMatchObject({ tracking: 'global stamp', cursor: expect.stringMatching(/^\d+$/) });
  });
});

describe('the finer date window', () => {
  it('date+time where the server accepts > on dates, whole days where it does not', async () => {
    server = await startServer({ rows: { Artikel: 1500 }, maxSessions: 10 });
    const db = join(tempDir(), 'w.sqlite');
    expect((await legacy(server, db, ['sync', 'Artikel'])).code).toBe(0);
    await server.control('mutate', { table: 'Artikel', update: 10 });
    const fine = tables(await legacy(server, db, ['sync', 'Artikel', '--json']))[0];
    expect(fine).toMatchObject({ tracking: 'date+time', mode: 'incremental', updated: 10 });
    // A server that rejects strict date comparison (and a fresh config: asked again).
    const strict = await startServer({ rows: { Artikel: 1500 }, strictDateCompare: 'reject', maxSessions: 10 });
    try {
      const db2 = join(tempDir(), 'd.sqlite');
      expect((await legacy(strict, db2, ['sync', 'Artikel'])).code).toBe(0);
      await strict.control('mutate', { table: 'Artikel', update: 10 });
      const days = tables(await legacy(strict, db2, ['sync', 'Artikel', '--json']))[0];
      expect(days).toMatchObject({ tracking: 'date', mode: 'incremental', updated: 10 });
      expect(days.fetched).toBeGreaterThanOrEqual(fine.fetched);
    } finally {
      await strict.stop();
    }
  });
});

describe('cursors and scans that cannot be fooled by changes during a pass', () => {
  it('a row changed during a pass after it was read is read by the next run (date+time cursor)', async () => {
    server = await startServer({ rows: { Artikel: 800 }, maxSessions: 10 });
    const db = join(tempDir(), 'c.sqlite');
    expect((await legacy(server, db, ['sync', 'Artikel'])).code).toBe(0);
    const changed = await server.control<{ updated: string[] }>('mutate', { table: 'Artikel', update: 300 });
    const keys = [...changed.updated].sort();
    const [first, last] = [keys[0]!, keys[keys.length - 1]!];
    // A slow pass in pages of 20. As soon as the first row's page is stored, that row changes again;
    // a second later (second resolution) the last one changes, before its page is read: the newest
    // cursor stored is then the last row's, a second after the first row's unread change.
    await server.control('options', { latencyMs: 150 });
    const passStart = new Date().toISOString();
    const synced = (key: string) => {
      try {
        const d = new Database(db, { readonly: true });
        try {
          return (d.prepare('SELECT _synced_at AS s FROM "Artikel" WHERE "UID" = ?').get(key) as { s: string }).s > passStart;
        } finally {
          d.close();
        }
      } catch {
        return false;
      }
    };
    const timers: NodeJS.Timeout[] = [];
    const poll = setInterval(() => {
      if (!synced(first)) return;
      clearInterval(poll);
      void server!.control('row', { table: 'Artikel', key: first, set: { Bezeichnung: 'changed during the pass (first)' } });
      timers.push(setTimeout(() => void server!.control('row', { table: 'Artikel', key: last, set: { Bezeichnung: 'changed during the pass (last)' } }), 1100));
    }, 20);
    writeFileSync(join(server.configDir, 'config.json'), JSON.stringify({ defaults: { concurrency: 1 }, environments: {} }), { mode: 0o600 });
    const pass = tables(await legacy(server, db, ['sync', 'Artikel', '--page-size', '20', '--json']))[0];
    clearInterval(poll);
    expect(synced(last)).toBe(true);
    timers.forEach(clearTimeout);
    await server.control('options', { latencyMs: 0 });
    expect(pass).toMatchObject({ tracking: 'date+time', mode: 'incremental' });
    expect((await legacy(server, db, ['sync', 'Artikel'])).code).toBe(0);
    await expectSameKeysAndStamps(server, sqlite, db, 'Artikel', 'UID');
  });

  it('a reconcile whose scan is not a consistent snapshot never marks a live row deleted', async () => {
    server = await startServer({ rows: { Artikel: 600 }, maxSessions: 50 });
    const db = join(tempDir(), 'r.sqlite');
    expect((await legacy(server, db, ['sync', 'Artikel'])).code).toBe(0);
    await server.control('mutate', { table: 'Artikel', delete: 2 });
    // The server drops the session (and its entity sets) every few requests, scans included.
    await server.control('options', { faults: { expireEvery: 3 } });
    const r = await legacy(server, db, ['sync', 'Artikel', '--reconcile', '--page-size', '100', '--json']);
    await server.control('options', { faults: { expireEvery: 0 } });
    expect(r.code, r.stderr).toBe(0);
    const live = new Set((await sqlite.rows(db, 'Artikel')).map((row) => String(row.UID)));
    const onServer = (await runMain(['get-table', 'Artikel', '--fields', 'UID', '--csv', '--no-header'], { env: server.env })).stdout.trim().split('\n');
    for (const uid of onServer) expect(live.has(uid), uid).toBe(true);
    if (tables(r)[0].reconcile.deleted < 2) expect(r.stderr).toMatch(/not a consistent snapshot|not marked deleted/);
  });
});

describe('change tracking: deletions are never skipped', () => {
  it('a --full pass still reads the deletions since the last stamp (a full read marks none)', async () => {
    server = await startServer({ rows: { Artikel: 500 }, changeTracking: ['Artikel'], maxSessions: 10 });
    const db = join(tempDir(), 't.sqlite');
    expect((await legacy(server, db, ['sync', 'Artikel'])).code).toBe(0);
    await server.control('mutate', { table: 'Artikel', delete: 4 });
    const full = tables(await legacy(server, db, ['sync', 'Artikel', '--full', '--json']))[0];
    expect(full).toMatchObject({ mode: 'full', tracking: 'global stamp', deleted: 4 });
    await expectSameKeysAndStamps(server, sqlite, db, 'Artikel', 'UID');
  });
});
