/**
 * A 4D long64 (Integer 64 bits) beyond 2^53 — 2^53 + 1, -(2^63), 2^63 - 1, as keys and as values —
 * carried exactly: get-table CSV, JSON, NDJSON (from the page bytes and on the JSON.parse reference
 * path), xlsx (text cells where Excel cannot hold the number, numbers elsewhere in the column), sync
 * into SQLite (INTEGER) and PostgreSQL (bigint), read back exactly; `sync verify` says equal, and
 * differs when one digit of a stored key differs. Before, each of these stopped with exit 65.
 *
 * And `sync verify` while another connection holds the database's write (SQLite) or a lock it needs
 * (PostgreSQL): exit 75 with one line saying a sync is writing, never 1 ("the copy differs").
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { openpyxlPython, startPostgres } from '../helpers/services.mjs';
import { readXlsx } from '../helpers/xlsx.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/long64.json', import.meta.url));
const SMALL = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const python = openpyxlPython();
const postgres = await startPostgres();

const P53 = '9007199254740993'; // 2^53 + 1
const MIN = '-9223372036854775808'; // -(2^63)
const MAX = '9223372036854775807'; // 2^63 - 1
/** The fixture's rows in key order (the export's order): [ID, Saldo, Name]. */
const ROWS = [
  [MIN, MAX, '-(2^63)'],
  ['7', '-12', 'klein'],
  [P53, MIN, '2^53 + 1'],
  [MAX, P53, '2^63 - 1'],
];

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(async () => {
  await postgres?.stop();
  cleanupTempDirs();
});

describe('get-table: the digits the server sent, in every format', () => {
  it.each([
    ['CSV', ['--csv'], `ID,Saldo,Name\n${ROWS.map((r) => r.join(',')).join('\n')}\n`],
    ['NDJSON', ['--ndjson'], ROWS.map(([id, saldo, name]) => `{"ID":${id},"Saldo":${saldo},"Name":"${name}"}\n`).join('')],
    ['JSON', ['--json'], `[\n${ROWS.map(([id, saldo, name]) => `{"ID":${id},"Saldo":${saldo},"Name":"${name}"}`).join(',\n')}\n]\n`],
  ])('%s, from the page bytes and on the JSON.parse reference path alike', async (_name, flags, want) => {
    server = await startServer({ data: FIXTURE });
    for (const transcode of ['1', '0']) {
      const r = await runMain(['get-table', 'Konto', ...flags], { env: { ...server.env, LEGACY_TRANSCODE: transcode } });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(want);
    }
  });

  it.skipIf(!python)('xlsx: a text cell where Excel cannot hold the number, the rest of the column numbers', async () => {
    server = await startServer({ data: FIXTURE });
    const file = join(tempDir(), 'konto.xlsx');
    const r = await runMain(['get-table', 'Konto', '--xlsx', '-o', file], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const [sheet] = await readXlsx(python!, file);
    expect(sheet!.rows).toEqual([
      ['ID', 'Saldo', 'Name'],
      [MIN, MAX, '-(2^63)'],
      [7, -12, 'klein'],
      [P53, MIN, '2^53 + 1'],
      [MAX, P53, '2^63 - 1'],
    ]);
  });
});

type Target = {
  name: string;
  db: () => Promise<string>;
  /** The copy's live rows [ID, Saldo] as exact decimal text, in key order. */
  rows: (db: string) => Promise<string[][]>;
  /** Change one digit of a stored key. */
  corrupt: (db: string) => Promise<void>;
};
const sqlite: Target = {
  name: 'SQLite',
  db: async () => join(tempDir(), 'copy.sqlite'),
  rows: async (path) => {
    const db = new Database(path, { readonly: true });
    try {
      const stmt = db.prepare('SELECT "ID", "Saldo", typeof("ID") AS t, typeof("Saldo") AS u FROM "Konto" WHERE _deleted_at IS NULL ORDER BY "ID"');
      const rows = stmt.safeIntegers(true).all() as Array<{ ID: bigint; Saldo: bigint; t: string; u: string }>;
      for (const row of rows) expect([row.t, row.u]).toEqual(['integer', 'integer']);
      return rows.map((r) => [String(r.ID), String(r.Saldo)]);
    } finally {
      db.close();
    }
  },
  corrupt: async (path) => {
    const db = new Database(path);
    try {
      expect(db.prepare(`UPDATE "Konto" SET "ID" = ${P53.slice(0, -1)}5 WHERE "ID" = ${P53}`).run().changes).toBe(1);
    } finally {
      db.close();
    }
  },
};
const withPg = async <T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
};
const postgresql: Target = {
  name: 'PostgreSQL',
  db: () => postgres!.newDatabase(),
  // node-postgres hands bigint columns back as text: the exact digits.
  rows: (url) =>
    withPg(url, async (client) => {
      const types = (await client.query(`SELECT data_type FROM information_schema.columns WHERE table_name = 'Konto' AND column_name IN ('ID', 'Saldo')`)).rows;
      expect(types.map((t) => t.data_type)).toEqual(['bigint', 'bigint']);
      const rows = (await client.query('SELECT "ID", "Saldo" FROM "Konto" WHERE _deleted_at IS NULL ORDER BY "ID"')).rows as Array<{
        ID: string;
        Saldo: string;
      }>;
      return rows.map((r) => [r.ID, r.Saldo]);
    }),
  corrupt: (url) =>
    withPg(url, async (client) => {
      expect((await client.query(`UPDATE "Konto" SET "ID" = ${P53.slice(0, -1)}5 WHERE "ID" = ${P53}`)).rowCount).toBe(1);
    }),
};
const TARGETS = postgres ? [sqlite, postgresql] : [sqlite];

describe.each(TARGETS.map((t) => [t.name, t] as const))('sync into %s', (_name, target) => {
  it('stores the values exactly; verify is equal, and differs when one digit of a key differs', async () => {
    server = await startServer({ data: FIXTURE });
    const db = await target.db();
    const synced = await runMain(['sync', 'Konto', '--db', db, '--json'], { env: server.env });
    expect(synced.code, synced.stderr).toBe(0);
    expect(await target.rows(db)).toEqual(ROWS.map(([id, saldo]) => [id, saldo]));

    const equal = await runMain(['sync', 'verify', 'Konto', '--db', db, '--json'], { env: server.env });
    expect(equal.code, equal.stdout + equal.stderr).toBe(0);
    expect(JSON.parse(equal.stdout).tables[0]).toMatchObject({ server: 4, local: 4, missing: 0, extra: 0, stale: 0, equal: true });

    await target.corrupt(db);
    const differs = await runMain(['sync', 'verify', 'Konto', '--db', db, '--json'], { env: server.env });
    expect(differs.code).toBe(1);
    // 64-bit keys in --json are exact decimal strings (cli/io.ts).
    expect(JSON.parse(differs.stdout).tables[0]).toMatchObject({
      missing: 1,
      extra: 1,
      stale: 0,
      equal: false,
      examples: { missing: [P53], extra: [`${P53.slice(0, -1)}5`] },
    });

    // --reconcile fetches the missing key by its exact value and marks the wrong one deleted.
    const repaired = await runMain(['sync', 'Konto', '--reconcile', '--db', db, '--json'], { env: server.env });
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(await target.rows(db)).toEqual(ROWS.map(([id, saldo]) => [id, saldo]));
    expect((await runMain(['sync', 'verify', 'Konto', '--db', db], { env: server.env })).code).toBe(0);

    // A changed value on the server reaches the copy exactly.
    await server.control('row', { table: 'Konto', key: MAX, set: { Saldo: MAX } });
    expect((await runMain(['sync', 'Konto', '--db', db], { env: server.env })).code).toBe(0);
    expect((await target.rows(db)).at(-1)).toEqual([MAX, MAX]);
  });
});

describe('watch', () => {
  it('events carry such keys and values exactly (as text beyond 2^53), and a changed one is named', async () => {
    server = await startServer({ data: FIXTURE });
    const env = server.env;
    const state = join(tempDir(), 'watch.sqlite');
    const poll = async (...args: string[]) => {
      const r = await runMain(['watch', 'Konto', '--once', '--state', state, ...args], { env });
      expect(r.code, r.stderr).toBe(0);
      return r.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { type: string; data: { key: unknown; row: Record<string, unknown>; changedFields?: string[] } });
    };
    const created = await poll('--from', 'beginning');
    const exact = (v: string) => (Number.isSafeInteger(Number(v)) ? Number(v) : v);
    expect(created.map((e) => [e.data.key, e.data.row.ID, e.data.row.Saldo]).sort((a, b) => String(a[0]).localeCompare(String(b[0])))).toEqual(
      ROWS.map(([id, saldo]) => [exact(id!), exact(id!), exact(saldo!)]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
    // One digit changes on the server: the copy's stored value, read back exactly, differs from the new one.
    await server.control('row', { table: 'Konto', key: P53, set: { Saldo: '-9223372036854775807' } });
    const updated = await poll();
    expect(updated).toHaveLength(1);
    expect(updated[0]!.type).toMatch(/updated$/);
    expect(updated[0]!.data).toMatchObject({ key: P53, changedFields: ['Saldo'], row: { ID: P53, Saldo: '-9223372036854775807' } });
  });
});

const BUSY_LINE = /^legacy: sync database .* is busy: a sync is writing it.*; try again when it has finished/m;

describe('sync verify while a sync is writing', () => {
  it('SQLite: waits the busy timeout, then exit 75 with one line, never 1', async () => {
    server = await startServer({ data: SMALL });
    const db = join(tempDir(), 'busy.sqlite');
    expect((await runMain(['sync', 'Teile', '--db', db], { env: server.env })).code).toBe(0);
    // A sync's write transaction, held open on the same file.
    const writer = new Database(db);
    try {
      writer.exec('BEGIN IMMEDIATE');
      writer.exec('UPDATE "Teile" SET "Name" = "Name"');
      const r = await runMain(['sync', 'verify', 'Teile', '--db', db], { env: { ...server.env, LEGACY_SYNC_BUSY_TIMEOUT_MS: '300' } });
      expect(r.code, r.stderr).toBe(75);
      expect(r.stderr).toMatch(BUSY_LINE);
      expect(r.stderr).toContain('waited 300 ms');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toBe('');
      writer.exec('ROLLBACK');
      // The write done, verify runs as usual.
      expect((await runMain(['sync', 'verify', 'Teile', '--db', db], { env: server.env })).code).toBe(0);
    } finally {
      writer.close();
    }
  });

  it.skipIf(!postgres)('PostgreSQL: a lock a sync holds is waited for up to the busy timeout, then exit 75', async () => {
    server = await startServer({ data: SMALL });
    const db = await postgres!.newDatabase();
    expect((await runMain(['sync', 'Teile', '--db', db], { env: server.env })).code).toBe(0);
    await withPg(db, async (client) => {
      // What a sync's schema change holds (ALTER TABLE … ADD COLUMN) until its transaction commits.
      await client.query('BEGIN');
      await client.query('LOCK TABLE _legacy_sync_state IN ACCESS EXCLUSIVE MODE');
      const r = await runMain(['sync', 'verify', 'Teile', '--db', db], { env: { ...server!.env, LEGACY_SYNC_BUSY_TIMEOUT_MS: '300' } });
      expect(r.code, r.stderr).toBe(75);
      expect(r.stderr).toMatch(BUSY_LINE);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      await client.query('ROLLBACK');
    });
    expect((await runMain(['sync', 'verify', 'Teile', '--db', db], { env: server.env })).code).toBe(0);
  });
});

describe.each(TARGETS.map((t) => [t.name, t] as const))('a tracked long64 table in %s', (_name, target) => {
  it('--reconcile fetches the keys it misses by their exact digits (a $params value beyond 2^53)', async () => {
    server = await startServer({ data: FIXTURE, changeTracking: ['Konto'] });
    const db = await target.db();
    expect((await runMain(['sync', 'Konto', '--db', db], { env: server.env })).code).toBe(0);
    await target.corrupt(db);
    const repaired = await runMain(['sync', 'Konto', '--reconcile', '--db', db, '--json'], { env: server.env });
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(await target.rows(db)).toEqual(ROWS.map(([id, saldo]) => [id, saldo]));
    expect((await runMain(['sync', 'verify', 'Konto', '--db', db], { env: server.env })).code).toBe(0);
  });
});

describe('push-field: never a rounded write', () => {
  it('a long64 beyond 2^53 is refused (exit 65), the server keeps its value; within 2^53 it is written', async () => {
    server = await startServer({ data: FIXTURE });
    const refused = await runMain(['push-field', 'Konto', '7', 'Saldo', P53, '--yes'], { env: server.env });
    expect(refused.code, refused.stderr).toBe(65);
    expect(refused.stderr).toMatch(/beyond 2\^53/);
    const kept = await runMain(['get-table', 'Konto', '--csv'], { env: server.env });
    expect(kept.stdout).toContain('\n7,-12,klein\n');
    const ok = await runMain(['push-field', 'Konto', '7', 'Saldo', '9007199254740991', '--yes'], { env: server.env });
    expect(ok.code, ok.stderr).toBe(0);
    expect((await runMain(['get-table', 'Konto', '--csv'], { env: server.env })).stdout).toContain('\n7,9007199254740991,klein\n');
  });
});
