/**
 * The sync store's write side driven directly, in real SQLite and a real PostgreSQL: the counts an
 * upsert reports (inserted, updated, unchanged) and the rows it stores, whichever way it takes (a
 * load into an empty table inserts first; later pages of known rows read the stamp first), and the
 * indexes a first load puts off and builds at the end.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { openSyncStore, syncTarget } from '../../src/sync/open.js';
import type { SyncStore } from '../../src/sync/store.js';
import { startPostgres } from '../helpers/services.mjs';
import { join } from 'node:path';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';

const pg = await startPostgres();
afterAll(async () => {
  await pg?.stop();
  cleanupTempDirs();
});

const COLUMNS = [
  { name: 'ID', sqlType: 'TEXT' as const },
  { name: 'Name', sqlType: 'TEXT' as const },
  { name: 'Menge', sqlType: 'INTEGER' as const },
  { name: 'Preis', sqlType: 'REAL' as const },
];
const NAMES = COLUMNS.map((c) => c.name);
/** [key, __STAMP, __TIMESTAMP, cursor, ...data] as the Syncer lays rows out. */
const row = (id: string, stamp: number, name: string | null, menge: number | bigint | null, preis: number | null) => [
  id,
  stamp,
  '2026-12-07T10:00:00Z',
  '2026-12-07T10:00:00',
  name,
  menge,
  preis,
];

async function storeFor(target: 'SQLite' | 'PostgreSQL'): Promise<SyncStore> {
  const db = target === 'SQLite' ? join(tempDir('legacy-store-'), 'x.sqlite') : await pg!.newDatabase();
  const store = await openSyncStore(syncTarget(db, process.cwd(), 'unused.sqlite'), 'run');
  await store.ensureTable('T', 'ID', COLUMNS, 'TEXT');
  return store;
}

async function stored(store: SyncStore): Promise<unknown[]> {
  const { rows } = await (store as any).query('SELECT "ID", "Name", "Menge", "Preis", _stamp, _deleted_at FROM "T" ORDER BY "ID"');
  return rows.map((r: Record<string, unknown>) => [r.ID, r.Name, r.Menge === null ? null : Number(r.Menge), r.Preis, Number(r._stamp), r._deleted_at]);
}

async function indexes(store: SyncStore): Promise<string[]> {
  const sql = store.display.startsWith('postgres')
    ? `SELECT indexname AS name FROM pg_indexes WHERE tablename = 'T' AND indexname LIKE 'T\\_\\_%' ORDER BY 1`
    : `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'T' AND name LIKE 'T\\_\\_%' ESCAPE '\\' ORDER BY 1`;
  return (await (store as any).query(sql)).rows.map((r: { name: string }) => r.name);
}

describe.each(['SQLite', 'PostgreSQL'] as const)('the upsert into %s', (target) => {
  it.skipIf(target === 'PostgreSQL' && !pg)('counts and stores the same whichever way a page goes', async () => {
    const store = await storeFor(target);
    try {
      const upsert = await store.upserter('T', 'ID', NAMES);
      const at = '2026-12-07T11:00:00Z';
      const write = (rows: unknown[][]) => store.transaction(() => upsert(rows, at));
      // An empty table: every row new, one key twice on the same page (the last one wins; SQLite
      // counts the second as an update, PostgreSQL, which writes a page in one statement, as unchanged).
      const first = await write([row('a', 1, 'A', 1, 0.1), row('b', 1, 'B\ttab', 2, 1e-300), row('c', 1, null, null, null), row('a', 2, 'A2', 3, 2.5)]);
      expect(first.inserted).toBe(3);
      expect(first.updated + first.unchanged).toBe(1);
      // Mostly new before: one unchanged, one changed, one new.
      expect(await write([row('a', 2, 'A2', 3, 2.5), row('b', 5, 'B5', 5, 5), row('d', 1, 'D', 4, 4)])).toEqual({ inserted: 1, updated: 1, unchanged: 1 });
      // Mostly known before: the same again, all unchanged; then a change among known rows.
      expect(await write([row('a', 2, 'A2', 3, 2.5), row('b', 5, 'B5', 5, 5), row('d', 1, 'D', 4, 4)])).toEqual({ inserted: 0, updated: 0, unchanged: 3 });
      expect(await write([row('c', 7, 'C7', 7, 7), row('e', 1, 'E', 1, 1)])).toEqual({ inserted: 1, updated: 1, unchanged: 0 });
      expect(await stored(store)).toEqual([
        ['a', 'A2', 3, 2.5, 2, null],
        ['b', 'B5', 5, 5, 5, null],
        ['c', 'C7', 7, 7, 7, null],
        ['d', 'D', 4, 4, 1, null],
        ['e', 'E', 1, 1, 1, null],
      ]);
      // A rewrite to fill new columns rewrites unchanged rows too, and counts them as updated.
      const rewrite = await store.upserter('T', 'ID', NAMES, true);
      expect(await store.transaction(() => rewrite([row('a', 2, 'A2', 3, 2.5), row('f', 1, 'F', 1, 1)], at))).toEqual({
        inserted: 1,
        updated: 1,
        unchanged: 0,
      });
    } finally {
      await store.close();
    }
  });

  it.skipIf(target === 'PostgreSQL' && !pg)('a first load puts its indexes off and builds them at the end; a table with rows keeps them', async () => {
    const store = await storeFor(target);
    try {
      expect(await indexes(store)).toEqual(['T__cursor', 'T__stamp']);
      const rebuild = await store.deferIndexes('T', 'ID');
      expect(rebuild).toBeTypeOf('function');
      expect(await indexes(store)).toEqual([]);
      const upsert = await store.upserter('T', 'ID', NAMES);
      await store.transaction(() => upsert([row('a', 1, 'A', 1, 1)], 'now'));
      await rebuild!();
      expect(await indexes(store)).toEqual(['T__cursor', 'T__stamp']);
      expect(await store.deferIndexes('T', 'ID')).toBeUndefined();
      // A load killed before its rebuild: the next run's ensureTable builds what is missing.
      await (store as any).exec('DROP INDEX "T__cursor"; DROP INDEX "T__stamp"');
      await store.ensureTable('T', 'ID', COLUMNS, 'TEXT');
      expect(await indexes(store)).toEqual(['T__cursor', 'T__stamp']);
    } finally {
      await store.close();
    }
  });
});
