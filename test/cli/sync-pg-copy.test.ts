/**
 * Sync into PostgreSQL writes pages by COPY (text format, our own escaper) instead of statement
 * parameters. Differential: the same emulator data synced into SQLite (which binds every value as
 * a parameter, untouched by the escaper) and into PostgreSQL must give the same counts and the same
 * rows, value for value, through a first load (COPY straight into the empty table), a pass with
 * updates, inserts and deletions (COPY into staging, then the merge) and a pass with nothing
 * changed; with values that COPY's text format must escape (tab, newline, CR, backslash, `\N` as
 * text), unicode, empty text and null, a long64 beyond 2^53, doubles (0.1, 1e-300) and objects.
 * And the store itself: keys that repeat inside a page and across pages of a first load.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { syncTarget, openSyncStore } from '../../src/sync/open.js';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { startPostgres } from '../helpers/services.mjs';

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

const P53 = '9007199254740993'; // 2^53 + 1: a double would round it to ...992
/** Texts COPY's text format must carry exactly (each one is also tried as the whole value). */
const AWKWARD = [
  'tab\there',
  'line\nbreak',
  'cr\rand crlf\r\n',
  'back\\slash',
  '\\N',
  '\\.',
  '\\t is not a tab',
  'ends with a backslash \\',
  '',
  'Größe ✓ 😀 ｶﾀｶﾅ',
  '\t\n\r\\',
  'a\u0001b\u007fc',
];
/** Objects arrive as JS values and are stored as JSON text: its escapes too. */
const OBJECT = { s: 'x\ty\\z\n', n: null, a: [0.1, 1e-300, '\\N'], u: 'ü' };

function fixture(): string {
  const rows: Array<Record<string, unknown>> = AWKWARD.map((text, i) => ({
    ID: i + 1,
    Text: text,
    Notiz: `vorne ${text} hinten`,
    Zahl: [0.1, 1e-300, -0, 1.7976931348623157e308, 123456.789][i % 5],
    Gross: i % 2 ? P53 : -i,
    Flag: i % 3 === 0,
    Daten: i % 2 ? OBJECT : null,
  }));
  rows.push({ ID: 100, Text: null, Notiz: null, Zahl: null, Gross: null, Flag: null, Daten: null });
  rows.push({ ID: 101, Text: 'plain', Notiz: 'plain', Zahl: 2, Gross: '-9223372036854775808', Flag: false, Daten: { Coll: [] } });
  const file = join(tempDir(), 'awkward.json');
  writeFileSync(
    file,
    JSON.stringify({
      dataClasses: [
        {
          name: 'Schwierig',
          key: 'ID',
          attributes: [
            { name: 'ID', type: 'long' },
            { name: 'Text', type: 'string' },
            { name: 'Notiz', type: 'string' },
            { name: 'Zahl', type: 'number' },
            { name: 'Gross', type: 'long64' },
            { name: 'Flag', type: 'bool' },
            { name: 'Daten', type: 'object' },
          ],
          rows,
        },
      ],
    }),
  );
  return file;
}

type Row = Record<string, string | null>;

/** Every column as text (exact digits; doubles as String writes them), `_deleted_at` as a yes/no, without `_synced_at`. */
function normalised(row: Record<string, unknown>): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (k === '_synced_at') continue;
    out[k] = k === '_deleted_at' ? String(v !== null) : v === null ? null : String(v);
  }
  return out;
}

async function pgRows(url: string): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url }); // bigint as its exact text, double as a number
  await client.connect();
  try {
    return (await client.query('SELECT * FROM "Schwierig" ORDER BY "ID"')).rows.map(normalised);
  } finally {
    await client.end();
  }
}

function sqliteRows(path: string): Row[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT * FROM "Schwierig" ORDER BY "ID"').safeIntegers(true).all() as Array<Record<string, unknown>>).map(normalised);
  } finally {
    db.close();
  }
}

const counts = (stdout: string) => {
  const t = (JSON.parse(stdout) as { tables: Array<Record<string, number>> }).tables[0]!;
  return { fetched: t.fetched, inserted: t.inserted, updated: t.updated, unchanged: t.unchanged, deleted: t.deleted };
};

describe.skipIf(!postgres)('sync into PostgreSQL by COPY: the same rows and counts as SQLite', () => {
  it('a first load, a pass with updates, inserts and deletions, and a pass with nothing changed', async () => {
    server = await startServer({ data: fixture() });
    const url = await postgres!.newDatabase();
    const file = join(tempDir(), 'copy.sqlite');
    const both = async (args: string[]) => {
      const a = await runMain(['sync', 'Schwierig', '--db', file, '--json', ...args], { env: server!.env });
      const b = await runMain(['sync', 'Schwierig', '--db', url, '--json', ...args], { env: server!.env });
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(counts(b.stdout)).toEqual(counts(a.stdout));
      const want = sqliteRows(file);
      expect(await pgRows(url)).toEqual(want);
      return { counts: counts(b.stdout), rows: want };
    };

    const first = await both([]);
    expect(first.counts).toMatchObject({ inserted: AWKWARD.length + 2, updated: 0 });
    // Fixed expectations too (SQLite could be wrong the same way): the texts, digits and JSON exactly.
    const byId = new Map(first.rows.map((r) => [Number(r.ID), r]));
    AWKWARD.forEach((text, i) => {
      expect(byId.get(i + 1)!.Text).toBe(text);
      expect(byId.get(i + 1)!.Notiz).toBe(`vorne ${text} hinten`);
    });
    expect(byId.get(2)!.Gross).toBe(P53);
    expect(byId.get(101)!.Gross).toBe('-9223372036854775808');
    expect([byId.get(1)!.Zahl, byId.get(2)!.Zahl, byId.get(4)!.Zahl]).toEqual(['0.1', '1e-300', '1.7976931348623157e+308']);
    expect([byId.get(1)!.Flag, byId.get(2)!.Flag]).toEqual(['1', '0']);
    expect(JSON.parse(byId.get(2)!.Daten!)).toEqual(OBJECT);
    expect(byId.get(100)).toMatchObject({ Text: null, Notiz: null, Zahl: null, Gross: null, Flag: null, Daten: null });
    expect(byId.get(9)!.Text).toBe(''); // empty text is not null

    // Updates (one to awkward values, one to null), inserts (copies of awkward rows) and deletions.
    await server.control('row', { table: 'Schwierig', key: '3', set: { Text: 'neu\\N\tneu', Zahl: 1e-300, Gross: P53, Daten: OBJECT } });
    await server.control('row', { table: 'Schwierig', key: '4', set: { Text: null, Notiz: '' } });
    await server.control('mutate', { table: 'Schwierig', update: 2, insert: 3, delete: 2, seed: 7 });
    const second = await both(['--reconcile']);
    expect(second.counts.inserted).toBeGreaterThanOrEqual(3);
    expect(second.counts.updated).toBeGreaterThanOrEqual(2);
    expect(second.counts.deleted).toBe(2);
    expect(second.rows.find((r) => r.ID === '3')).toMatchObject({ Text: 'neu\\N\tneu', Zahl: '1e-300', Gross: P53 });

    const third = await both(['--full']);
    expect(third.counts).toMatchObject({ inserted: 0, updated: 0, deleted: 0 });
    expect(third.counts.unchanged).toBe(third.counts.fetched);
  });
});

describe.skipIf(!postgres)('the PostgreSQL upserter: repeated keys', () => {
  it('a key repeated in a page and across pages of a first load: the last wins, rows as SQLite, counts exact', async () => {
    const pages: unknown[][][] = [
      // [key, stamp, timestamp, cursor, ...data]: the second 2 wins in its page.
      [
        [1, 1, 't1', null, 'eins'],
        [2, 1, 't1', null, 'zwei (alt)'],
        [2, 2, 't2', null, 'zwei\tneu'],
      ],
      // A key of the earlier page again (it moved while paging): the page COPY straight in fails, the merge takes it.
      [
        [2, 3, 't3', null, 'zwei\\N'],
        [3, 1, 't1', null, null],
      ],
      // The same again: unchanged.
      [
        [2, 3, 't3', null, 'zwei\\N'],
        [3, 1, 't1', null, null],
      ],
      [[4, 1, 't1', null, '']],
    ];
    const results: Array<{ counts: unknown[]; rows: unknown[] }> = [];
    for (const db of [join(tempDir(), 'u.sqlite'), await postgres!.newDatabase()]) {
      const store = await openSyncStore(syncTarget(db, process.cwd(), 'unused.sqlite'), 'run');
      try {
        await store.ensureTable(
          'T',
          'ID',
          [
            { name: 'ID', sqlType: 'INTEGER' },
            { name: 'Wert', sqlType: 'TEXT' },
          ],
          'INTEGER',
        );
        const upsert = await store.upserter('T', 'ID', ['ID', 'Wert']);
        const counts: unknown[] = [];
        await store.begin();
        for (const page of pages) counts.push(await upsert(page, '2025-01-01T00:00:00.000Z'));
        await store.commit();
        const rows = await (store as unknown as { query(sql: string): Promise<{ rows: Array<Record<string, unknown>> }> }).query(
          'SELECT "ID", "Wert", _stamp, _timestamp FROM "T" ORDER BY "ID"',
        );
        results.push({ counts, rows: rows.rows.map((r) => Object.values(r).map((v) => (v === null ? null : String(v)))) });
      } finally {
        await store.close();
      }
    }
    // As the unnest() statement counted: a page's repeated key once (SQLite writes it twice: 2 inserted, 1 updated).
    expect(results[1]!.counts).toEqual([
      { inserted: 2, updated: 0, unchanged: 1 },
      { inserted: 1, updated: 1, unchanged: 0 },
      { inserted: 0, updated: 0, unchanged: 2 },
      { inserted: 1, updated: 0, unchanged: 0 },
    ]);
    expect(results[1]!.counts.slice(1)).toEqual(results[0]!.counts.slice(1));
    expect(results[1]!.rows).toEqual(results[0]!.rows);
    expect(results[1]!.rows).toEqual([
      ['1', 'eins', '1', 't1'],
      ['2', 'zwei\\N', '3', 't3'],
      ['3', null, '1', 't1'],
      ['4', '', '1', 't1'],
    ]);
  });
});
