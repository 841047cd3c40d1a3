/**
 * The SQLite side of sync (better-sqlite3): one table per dataclass plus `_legacy_sync_state` and
 * `_legacy_sync_runs`. Each page of rows is upserted together with the table's progress in one
 * transaction, so a crash at any point leaves a consistent database.
 */
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type { Database as Db, Statement } from 'better-sqlite3';
import { ConfigError, LockBusyError } from '../errors/index.js';
import type { Attribute } from '../http/types.js';
import { NUMBER_TYPES } from '../table/convert.js';

const require = createRequire(import.meta.url);

export const quoteId = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export interface StoredColumn {
  name: string;
  sqlType: 'INTEGER' | 'REAL' | 'TEXT';
}

export function sqlTypeOf(attr: Attribute): StoredColumn['sqlType'] {
  if (attr.kind === 'relatedEntity') return 'TEXT';
  if (['long', 'long64', 'word', 'byte', 'integer', 'bool'].includes(attr.type)) return 'INTEGER';
  if (NUMBER_TYPES.has(attr.type)) return 'REAL';
  return 'TEXT';
}

/** A value as SQLite stores it: booleans 0/1, objects as JSON text. */
export function toSql(value: unknown): string | number | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number' || typeof value === 'string') return value;
  if (typeof value === 'bigint') return Number(value);
  return JSON.stringify(value);
}

export interface TableState {
  table_name: string;
  key_column: string;
  cursor_value: string | null;
  boundary_keys: string | null;
  last_full_sync: string | null;
  last_success: string | null;
  catalog_hash: string | null;
  columns: string;
  vanished_warned: string | null;
  last_error: string | null;
}

export interface RunRow {
  run_id: string;
  table_name: string;
  started: string;
  finished: string | null;
  status: 'running' | 'completed' | 'failed' | 'interrupted';
  mode: string;
  rows_fetched: number;
  inserted: number;
  updated: number;
  deleted: number;
  error: string | null;
}

export interface UpsertCounts {
  inserted: number;
  updated: number;
  unchanged: number;
}

export class SyncStore {
  readonly db: Db;
  private lockDb?: Db;

  private constructor(readonly path: string, db: Db) {
    this.db = db;
  }

  /** Open (creating) the database. `readOnly` never creates anything. */
  static open(path: string, options: { readOnly?: boolean } = {}): SyncStore {
    const Database = require('better-sqlite3') as typeof import('better-sqlite3');
    let db: Db;
    try {
      if (!options.readOnly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new Database(path, { readonly: options.readOnly === true, fileMustExist: options.readOnly === true, timeout: 5000 });
    } catch (error) {
      throw new ConfigError(`cannot open sync database ${path}: ${(error as Error).message}`, { hint: 'choose another path with --db or --data-dir' });
    }
    const store = new SyncStore(path, db);
    if (!options.readOnly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      store.migrate();
    }
    return store;
  }

  /**
   * One sync per database: an exclusive transaction on a side lock database. SQLite's file lock is
   * released by the operating system when the process dies (even on SIGKILL), so there are no
   * stale locks to reclaim. A second sync gets SQLITE_BUSY at once → LockBusyError (exit 75).
   */
  acquireRunLock(): void {
    const Database = require('better-sqlite3') as typeof import('better-sqlite3');
    const lockPath = `${this.path}.lock`;
    const lockDb = new Database(lockPath, { timeout: 0 });
    try {
      lockDb.exec('BEGIN EXCLUSIVE');
    } catch (error) {
      lockDb.close();
      if ((error as { code?: string }).code === 'SQLITE_BUSY') {
        throw new LockBusyError(`another sync is already running on ${this.path}`, { hint: 'wait for it to finish; overlapping runs are refused' });
      }
      throw error;
    }
    this.lockDb = lockDb;
  }

  close(): void {
    if (this.lockDb) {
      try {
        this.lockDb.exec('ROLLBACK');
      } catch {
        /* already gone */
      }
      this.lockDb.close();
      this.lockDb = undefined;
    }
    this.db.close();
  }

  private migrate(): void {
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS _legacy_sync_state (
        table_name TEXT PRIMARY KEY,
        key_column TEXT NOT NULL,
        cursor_value TEXT,
        boundary_keys TEXT,
        last_full_sync TEXT,
        last_success TEXT,
        catalog_hash TEXT,
        columns TEXT NOT NULL DEFAULT '[]',
        vanished_warned TEXT,
        last_error TEXT
      );
      CREATE TABLE IF NOT EXISTS _legacy_sync_runs (
        run_id TEXT NOT NULL,
        table_name TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT,
        status TEXT NOT NULL CHECK (status IN ('running','completed','failed','interrupted')),
        mode TEXT NOT NULL,
        rows_fetched INTEGER NOT NULL DEFAULT 0,
        inserted INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        pid INTEGER,
        PRIMARY KEY (run_id, table_name)
      );
      CREATE INDEX IF NOT EXISTS _legacy_sync_runs_started ON _legacy_sync_runs (started);
    `);
  }

  /** Runs left `running` by a killed process (we hold the run lock, so none is alive). */
  markInterrupted(now: string): number {
    return this.db.prepare(`UPDATE _legacy_sync_runs SET status = 'interrupted', finished = ? , error = coalesce(error, 'the process ended before the run finished') WHERE status = 'running'`).run(now).changes;
  }

  state(table: string): TableState | undefined {
    return this.db.prepare('SELECT * FROM _legacy_sync_state WHERE table_name = ?').get(table) as TableState | undefined;
  }

  allStates(): TableState[] {
    return this.db.prepare('SELECT * FROM _legacy_sync_state ORDER BY table_name').all() as TableState[];
  }

  private hasTable(table: string): boolean {
    return this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(table) !== undefined;
  }

  /** Create the data table, or add columns for attributes that are new in the catalog. Returns the added names. */
  ensureTable(table: string, keyColumn: string, columns: StoredColumn[], keyType: StoredColumn['sqlType']): string[] {
    const exists = this.hasTable(table);
    if (!exists) {
      const defs = columns.map((c) => `${quoteId(c.name)} ${c.sqlType}${c.name === keyColumn ? ` PRIMARY KEY` : ''}`);
      if (!columns.some((c) => c.name === keyColumn)) defs.unshift(`${quoteId(keyColumn)} ${keyType} PRIMARY KEY`);
      defs.push('_stamp INTEGER', '_timestamp TEXT', '_synced_at TEXT', '_deleted_at TEXT', '_cursor TEXT');
      this.db.exec(`CREATE TABLE ${quoteId(table)} (${defs.join(', ')})`);
      this.db.exec(`CREATE INDEX ${quoteId(`${table}__cursor`)} ON ${quoteId(table)} (_cursor)`);
      return [];
    }
    const have = new Set((this.db.prepare(`PRAGMA table_info(${quoteId(table)})`).all() as Array<{ name: string }>).map((c) => c.name));
    const added: string[] = [];
    for (const c of columns) {
      if (!have.has(c.name)) {
        this.db.exec(`ALTER TABLE ${quoteId(table)} ADD COLUMN ${quoteId(c.name)} ${c.sqlType}`);
        added.push(c.name);
      }
    }
    return added;
  }

  existingColumns(table: string): string[] {
    return (this.db.prepare(`PRAGMA table_info(${quoteId(table)})`).all() as Array<{ name: string }>).map((c) => c.name);
  }

  /**
   * A prepared upsert for rows laid out as [key, __STAMP, __TIMESTAMP, cursor, ...columns]. A row whose
   * stamp is unchanged is skipped, unless `rewriteAll` (after a schema change: new columns to fill).
   */
  upserter(table: string, keyColumn: string, columns: string[], rewriteAll = false): (rows: unknown[][], syncedAt: string) => UpsertCounts {
    const dataColumns = columns.filter((c) => c !== keyColumn);
    const all = [keyColumn, ...dataColumns, '_stamp', '_timestamp', '_cursor', '_synced_at', '_deleted_at'];
    const insert: Statement = this.db.prepare(
      `INSERT INTO ${quoteId(table)} (${all.map(quoteId).join(', ')}) VALUES (${all.map(() => '?').join(', ')})
       ON CONFLICT(${quoteId(keyColumn)}) DO UPDATE SET ${[...dataColumns, '_stamp', '_timestamp', '_cursor', '_synced_at', '_deleted_at'].map((c) => `${quoteId(c)} = excluded.${quoteId(c)}`).join(', ')}`,
    );
    const existing: Statement = this.db.prepare(`SELECT _stamp, _deleted_at FROM ${quoteId(table)} WHERE ${quoteId(keyColumn)} = ?`);
    return (rows, syncedAt) => {
      const counts: UpsertCounts = { inserted: 0, updated: 0, unchanged: 0 };
      for (const row of rows) {
        const [key, stamp, timestamp, cursor, ...values] = row;
        const keyValue = toSql(key);
        const before = existing.get(keyValue) as { _stamp: number | null; _deleted_at: string | null } | undefined;
        if (!rewriteAll && before && before._stamp === stamp && before._deleted_at === null) {
          counts.unchanged++;
          continue;
        }
        insert.run(keyValue, ...values.map(toSql), toSql(stamp), toSql(timestamp), toSql(cursor), syncedAt, null);
        if (before) counts.updated++;
        else counts.inserted++;
      }
      return counts;
    };
  }

  /** The newest row cursor stored for a table, and the keys of the rows at it (at most 1,000). */
  cursorOf(table: string, keyColumn: string): { cursor: string | null; boundary: unknown[] } {
    const { c } = this.db.prepare(`SELECT max(_cursor) AS c FROM ${quoteId(table)}`).get() as { c: string | null };
    if (!c) return { cursor: null, boundary: [] };
    const rows = this.db.prepare(`SELECT ${quoteId(keyColumn)} AS k FROM ${quoteId(table)} WHERE _cursor = ? LIMIT 1000`).all(c) as Array<{ k: unknown }>;
    return { cursor: c, boundary: rows.map((r) => r.k) };
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  saveState(state: TableState): void {
    this.db
      .prepare(
        `INSERT INTO _legacy_sync_state (table_name, key_column, cursor_value, boundary_keys, last_full_sync, last_success, catalog_hash, columns, vanished_warned, last_error)
         VALUES (@table_name, @key_column, @cursor_value, @boundary_keys, @last_full_sync, @last_success, @catalog_hash, @columns, @vanished_warned, @last_error)
         ON CONFLICT(table_name) DO UPDATE SET key_column = excluded.key_column, cursor_value = excluded.cursor_value,
           boundary_keys = excluded.boundary_keys, last_full_sync = excluded.last_full_sync, last_success = excluded.last_success,
           catalog_hash = excluded.catalog_hash, columns = excluded.columns, vanished_warned = excluded.vanished_warned, last_error = excluded.last_error`,
      )
      .run(state);
  }

  startRun(run: Pick<RunRow, 'run_id' | 'table_name' | 'started' | 'mode'>): void {
    this.db.prepare(`INSERT INTO _legacy_sync_runs (run_id, table_name, started, status, mode, pid) VALUES (?, ?, ?, 'running', ?, ?)`).run(run.run_id, run.table_name, run.started, run.mode, process.pid);
  }

  progressRun(runId: string, table: string, delta: { rows_fetched: number; inserted: number; updated: number; deleted?: number }): void {
    this.db
      .prepare(`UPDATE _legacy_sync_runs SET rows_fetched = rows_fetched + ?, inserted = inserted + ?, updated = updated + ?, deleted = deleted + ? WHERE run_id = ? AND table_name = ?`)
      .run(delta.rows_fetched, delta.inserted, delta.updated, delta.deleted ?? 0, runId, table);
  }

  finishRun(runId: string, table: string, status: RunRow['status'], finished: string, error?: string): void {
    this.db.prepare(`UPDATE _legacy_sync_runs SET status = ?, finished = ?, error = ? WHERE run_id = ? AND table_name = ?`).run(status, finished, error ?? null, runId, table);
  }

  runs(limit: number): RunRow[] {
    return this.db.prepare(`SELECT run_id, table_name, started, finished, status, mode, rows_fetched, inserted, updated, deleted, error FROM _legacy_sync_runs ORDER BY started DESC, table_name LIMIT ?`).all(limit) as RunRow[];
  }

  pruneRuns(before: string): number {
    return this.db.prepare(`DELETE FROM _legacy_sync_runs WHERE started < ? AND status != 'running'`).run(before).changes;
  }

  counts(table: string): { rows: number; deleted: number } {
    const exists = this.hasTable(table);
    if (!exists) return { rows: 0, deleted: 0 };
    return this.db.prepare(`SELECT sum(_deleted_at IS NULL) AS rows, sum(_deleted_at IS NOT NULL) AS deleted FROM ${quoteId(table)}`).get() as { rows: number; deleted: number };
  }

  /** Reconcile: mark rows whose key the server no longer has. Keys arrive in pages into a temp table. */
  beginKeyScan(): { add(keys: unknown[]): void; finish(table: string, keyColumn: string, at: string): number } {
    this.db.exec('DROP TABLE IF EXISTS temp._legacy_keys; CREATE TEMP TABLE _legacy_keys (k PRIMARY KEY) WITHOUT ROWID');
    const add = this.db.prepare('INSERT OR IGNORE INTO temp._legacy_keys (k) VALUES (?)');
    return {
      add: (keys) => this.transaction(() => keys.forEach((k) => add.run(toSql(k)))),
      finish: (table, keyColumn, at) =>
        this.transaction(() => {
          const changes = this.db
            .prepare(`UPDATE ${quoteId(table)} SET _deleted_at = ? WHERE _deleted_at IS NULL AND ${quoteId(keyColumn)} NOT IN (SELECT k FROM temp._legacy_keys)`)
            .run(at).changes;
          this.db.exec('DROP TABLE temp._legacy_keys');
          return changes;
        }),
    };
  }
}
