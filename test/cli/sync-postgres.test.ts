/** `sync --db postgres://…` keeps the same tables and guarantees in a real PostgreSQL. */
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, collect, runCli, spawnCli, tempDir, type CliResult } from '../helpers/cli.js';
import { startServer, URL_DECODINGS, type TestServer } from '../helpers/emulator.js';
import { startPostgres } from '../helpers/services.mjs';

const postgres = await startPostgres();
const SECRET = 'Geheim-42';

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

/** A fresh database; its URL carries a password (trust auth ignores it) that must never be printed. */
async function newDb(): Promise<{ url: string; masked: string }> {
  const url = new URL(await postgres!.newDatabase());
  url.password = SECRET;
  return { url: url.href, masked: url.href.replace(SECRET, '***') };
}

/** Every output is checked: the password never shows. */
async function legacy(s: TestServer, args: string[], extra: Record<string, string> = {}): Promise<CliResult> {
  const r = await runCli(args, { env: { ...s.env, ...extra } });
  expect(r.stdout + r.stderr).not.toContain(SECRET);
  return r;
}

async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: url,
    types: { getTypeParser: ((oid: number, format: 'text') => (oid === 20 ? Number : pg.types.getTypeParser(oid, format))) as never },
  });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const select = (url: string, sql: string) => withPg(url, async (c) => (await c.query(sql)).rows as Row[]);

/** Rows stored, or 0 while the table does not exist yet. */
const stored = (url: string, table: string) =>
  select(url, `SELECT count(*) AS n FROM "${table}"`).then(
    (r) => r[0]!.n as number,
    () => 0,
  );

async function untilStored(url: string, table: string, n: number): Promise<void> {
  for (let i = 0; i < 100 && (await stored(url, table)) < n; i++) await new Promise((r) => setTimeout(r, 100));
}

/** The live rows of the table equal what get-table --meta exports, stamp and converted value for value. */
async function expectLevel(s: TestServer, url: string, table: string, key: string): Promise<void> {
  const r = await runCli(['get-table', table, '--ndjson', '--meta'], { env: s.env });
  expect(r.code, r.stderr).toBe(0);
  const asStored = (v: unknown) => (v === null ? null : typeof v === 'boolean' ? Number(v) : typeof v === 'object' ? JSON.stringify(v) : v);
  const exported = r.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Row);
  const names = Object.keys(exported[0]!).filter((n) => !n.startsWith('__'));
  const want = exported.map((row) => [String(row.__KEY), row.__STAMP, ...names.map((n) => asStored(row[n]))]);
  const got = (await select(url, `SELECT * FROM "${table}" WHERE _deleted_at IS NULL`)).map((row) => [
    String(row[key]),
    row._stamp,
    ...names.map((n) => row[n]),
  ]);
  const byKey = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
  expect(got.sort(byKey)).toEqual(want.sort(byKey));
}

const summary = (r: CliResult) => JSON.parse(r.stdout).tables as Array<Record<string, any>>;

describe.skipIf(!postgres)('sync into PostgreSQL', () => {
  it.each(URL_DECODINGS)(
    'full, then incremental after updates and inserts, then --reconcile: the tables equal the emulator row for row (%s URL decoding)',
    async (urlDecoding) => {
      server = await startServer({ rows: { Artikel: 1500, Kunden: 300 }, urlDecoding });
      const { url, masked } = await newDb();
      const first = await legacy(server, ['sync', 'Artikel', 'Kunden', '--db', url, '--json']);
      expect(first.code, first.stderr).toBe(0);
      expect(JSON.parse(first.stdout).database).toBe(masked);
      expect(summary(first).map((t) => [t.table, t.mode, t.inserted])).toEqual([
        ['Artikel', 'full', 1500],
        ['Kunden', 'full', 300],
      ]);
      await expectLevel(server, url, 'Artikel', 'UID');
      await expectLevel(server, url, 'Kunden', 'KundenNr');
      const columns = await select(
        url,
        `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'Artikel' AND column_name IN ('Nummer', 'Preis', 'Aktiv', '_stamp') ORDER BY column_name`,
      );
      expect(columns.map((c) => `${c.column_name}:${c.data_type}`)).toEqual(['Aktiv:bigint', 'Nummer:bigint', 'Preis:double precision', '_stamp:bigint']);

      await server.control('mutate', { table: 'Artikel', update: 20, insert: 5, delete: 4 });
      const second = summary(await legacy(server, ['sync', 'Artikel', '--db', url, '--json']))[0]!;
      expect([second.mode, second.inserted, second.updated]).toEqual(['incremental', 5, 20]);
      expect(second.fetched).toBeLessThan(100);
      const third = summary(await legacy(server, ['sync', 'Artikel', '--db', url, '--reconcile', '--json']))[0]!;
      expect([third.deleted, third.inserted + third.updated]).toEqual([4, 0]);
      await expectLevel(server, url, 'Artikel', 'UID');
      expect((await select(url, `SELECT count(*) AS n FROM "Artikel" WHERE _deleted_at IS NOT NULL`))[0]!.n).toBe(4);

      const idle = summary(await legacy(server, ['sync', 'Artikel', '--db', url, '--json']))[0]!;
      expect(idle.inserted + idle.updated + idle.deleted).toBe(0);
      const state = await select(url, `SELECT table_name, cursor_value, last_error FROM _legacy_sync_state ORDER BY table_name`);
      expect(state.map((s) => s.table_name)).toEqual(['Artikel', 'Kunden']);
      expect(state[0]!.cursor_value).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    },
  );

  it('a sync killed in the middle, then re-run, ends equal; whole pages were committed; the killed run is marked interrupted', async () => {
    server = await startServer({ rows: { Artikel: 3000 }, latencyMs: 300 });
    const { url } = await newDb();
    const child = spawnCli(['sync', 'Artikel', '--db', url, '--page-size', '100'], { env: server.env });
    const done = collect(child);
    await untilStored(url, 'Artikel', 200);
    child.kill('SIGKILL');
    await done;
    const partial = await stored(url, 'Artikel');
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(3000);
    expect(partial % 100).toBe(0); // a page commits whole or not at all
    await server.control('options', { latencyMs: 0 });
    await server.control('mutate', { table: 'Artikel', update: 10 });
    // PostgreSQL dropped the killed run's lock with its connection: the re-run is not refused.
    const again = await legacy(server, ['sync', 'Artikel', '--db', url, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/interrupted/);
    expect(summary(again)[0]!.mode).toBe('full');
    await expectLevel(server, url, 'Artikel', 'UID');
    const runs = JSON.parse((await legacy(server, ['sync', 'runs', '--db', url, '--json'])).stdout) as Array<{ status: string }>;
    expect(runs.map((r) => r.status)).toEqual(['completed', 'interrupted']);
  });

  it('the target can come from the config (sync.db) or LEGACY_SYNC_DB; --db wins; a bad sync.db is 78', async () => {
    server = await startServer({ rows: { Artikel: 300, Kunden: 50 } });
    const fromConfig = await newDb();
    const fromEnv = await newDb();
    const config = (sync: Record<string, unknown>) =>
      writeFileSync(join(server!.configDir, 'config.json'), JSON.stringify({ environments: { test: { baseUrl: server!.url, sync } } }), { mode: 0o600 });
    config({ tables: ['Artikel'], db: fromConfig.url });
    const r = await legacy(server, ['sync', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).database).toBe(fromConfig.masked);
    expect(await stored(fromConfig.url, 'Artikel')).toBe(300);
    const viaEnv = await legacy(server, ['sync', 'Kunden', '--json'], { LEGACY_SYNC_DB: fromEnv.url });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect(await stored(fromEnv.url, 'Kunden')).toBe(50);
    expect(await stored(fromConfig.url, 'Kunden')).toBe(0);
    const sqlite = join(tempDir('legacy-syncdb-'), 'x.sqlite');
    const viaFlag = await legacy(server, ['sync', '--db', sqlite, '--json'], { LEGACY_SYNC_DB: fromEnv.url });
    expect(JSON.parse(viaFlag.stdout).database).toBe(sqlite);
    config({ tables: ['Artikel'], db: 'relative/path.sqlite' });
    const bad = await legacy(server, ['sync']);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/sync\.db must be an absolute path or a postgres:\/\/ URL/);
  });

  it('two syncs at once on the same database: the second exits 75 at once', async () => {
    server = await startServer({ rows: { Artikel: 2000 }, latencyMs: 300 });
    const { url, masked } = await newDb();
    const first = collect(spawnCli(['sync', 'Artikel', '--db', url, '--page-size', '100'], { env: server.env }));
    await untilStored(url, 'Artikel', 100);
    const started = Date.now();
    const second = await legacy(server, ['sync', 'Artikel', '--db', url]);
    expect({ code: second.code, fast: Date.now() - started < 5000 }).toEqual({ code: 75, fast: true });
    expect(second.stderr.trim()).toBe(`legacy: another sync is already running on ${masked} (wait for it to finish; overlapping runs are refused)`);
    await server.control('options', { latencyMs: 0 });
    expect((await first).code, 'the first sync still completes').toBe(0);
  });

  it('sync status, runs and prune work on PostgreSQL and show the URL masked', async () => {
    server = await startServer({ rows: { Kunden: 50 } });
    const { url, masked } = await newDb();
    const none = await legacy(server, ['sync', 'status', '--db', url]);
    expect(none.stdout).toBe(`no sync database yet at ${masked}\n`);
    expect((await legacy(server, ['sync', 'Kunden', '--db', url])).code).toBe(0);
    expect((await legacy(server, ['sync', 'Kunden', '--db', url])).code).toBe(0);
    const status = JSON.parse((await legacy(server, ['sync', 'status', '--db', url, '--json'])).stdout);
    expect(status.database).toBe(masked);
    expect(status.tables).toEqual([expect.objectContaining({ table: 'Kunden', rows: 50, deleted: 0, lastError: null })]);
    expect(status.runs.map((r: { status: string; mode: string }) => `${r.status}/${r.mode}`)).toEqual(['completed/incremental', 'completed/full']);
    expect(status.runs[1]).toMatchObject({ rows_fetched: 50, inserted: 50, updated: 0 });
    const runs = JSON.parse((await legacy(server, ['sync', 'runs', '--db', url, '--limit', '1', '--json'])).stdout);
    expect(runs).toHaveLength(1);
    expect((await legacy(server, ['sync', 'prune', '--db', url, '--older-than', '7d'])).stdout).toMatch(/removed 0 run/);
    const dry = await legacy(server, ['sync', 'Kunden', '--db', url, '--dry-run']);
    expect(dry.stdout).toMatch(/Kunden\s+incremental\s+\d{4}-/);
  });

  it('a new attribute in the catalog becomes a new column (ALTER TABLE)', async () => {
    const small = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
    server = await startServer({ data: small });
    const { url } = await newDb();
    expect((await legacy(server, ['sync', 'Teile', '--db', url])).code).toBe(0);
    const fixture = JSON.parse(readFileSync(small, 'utf8'));
    const teile = fixture.dataClasses.find((d: { name: string }) => d.name === 'Teile');
    teile.attributes.push({ name: 'Gewicht', type: 'long' });
    for (const [i, row] of (teile.rows as Row[]).entries()) row.Gewicht = i * 10;
    const file = join(tempDir(), 'v2.json');
    writeFileSync(file, JSON.stringify(fixture));
    await server.stop();
    server = await startServer({ data: file });
    const r = await legacy(server, ['sync', 'Teile', '--db', url, '--full', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r)[0]!.addedColumns).toEqual(['Gewicht']);
    await expectLevel(server, url, 'Teile', 'ID');
  });

  it('errors are one line with the house exit codes, and never show the password', async () => {
    server = await startServer({ rows: { Kunden: 5 } });
    const { url } = await newDb();
    const free = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const at = (change: (u: URL) => void) => {
      const u = new URL(url);
      change(u);
      return u.href;
    };
    const cases: Array<[string, number, RegExp]> = [
      [`postgres://legacy:${SECRET}@127.0.0.1:port/x`, 64, /not a valid PostgreSQL URL/],
      [`postgresql://legacy:${SECRET}/x@127.0.0.1/db`, 64, /not a valid PostgreSQL URL|no host|only the database name/],
      [`postgres://legacy@127.0.0.1:port/x?password=${SECRET}`, 64, /password=\*\*\*/],
      [at((u) => (u.port = String(free))), 69, /cannot reach PostgreSQL at postgres:\/\/legacy:\*\*\*@127\.0\.0\.1:\d+\/\w+: connection refused/],
      [at((u) => (u.pathname = '/no_such_db')), 78, /database "no_such_db" does not exist \(create it first/],
      [at((u) => (u.username = 'nobody')), 77, /PostgreSQL refused the login .*role "nobody" does not exist/],
    ];
    for (const [db, code, message] of cases) {
      for (const args of [
        ['sync', 'Kunden', '--db', db],
        ['sync', 'status', '--db', db, '--json'],
      ]) {
        const r = await legacy(server, args);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
        expect(r.stderr).toMatch(message);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stdout).toBe('');
      }
    }
  });
});
