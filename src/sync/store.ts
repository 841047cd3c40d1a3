/**
 * The storage side of sync: one table per dataclass plus `_legacy_sync_state` and `_legacy_sync_runs`,
 * in SQLite (the default, ./sqlite.ts) or PostgreSQL (./postgres.ts, `--db postgres://…`). Both share
 * the SQL below; a subclass supplies the driver (three primitives), its column types, the run lock and
 * the upsert loop. Each page of rows is upserted together with the table's progress in one
 * transaction, so a crash at any point leaves a consistent database.
 */
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { maskUrl } from '../config/store.js';
import { UsageError } from '../errors/index.js';
import type { Attribute } from '../http/types.js';
import { NUMBER_TYPES } from '../table/convert.js';

export const quoteId = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export type SqlType = 'INTEGER' | 'REAL' | 'TEXT';

export interface StoredColumn {
  name: string;
  sqlType: SqlType;
}

export function sqlTypeOf(attr: Attribute): SqlType {
  if (attr.kind === 'relatedEntity') return 'TEXT';
  if (['long', 'long64', 'word', 'byte', 'integer', 'bool'].includes(attr.type)) return 'INTEGER';
  if (NUMBER_TYPES.has(attr.type)) return 'REAL';
  return 'TEXT';
}

/** A value as the database stores it: booleans 0/1, objects as JSON text. */
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

/** Rows laid out as [key, __STAMP, __TIMESTAMP, cursor, ...data columns] → the upsert's parameters. */
export type Upsert = (rows: unknown[][], syncedAt: string) => Promise<UpsertCounts>;

export interface KeyScan {
  add(keys: unknown[]): Promise<void>;
  /** Mark the rows whose key was not added; returns how many. */
  finish(at: string): Promise<number>;
}

/** What differs in the SQL of the two targets. */
export interface Dialect {
  type(t: SqlType): string;
  /** Columns (name, type) of a table, none if there is no such table; one parameter, the table name. */
  columnsSql: string;
  /** Null-safe "differs". */
  distinct: string;
  /** The temporary key table of a reconcile. */
  keys: string;
  /** (Re)create the key table with the key's type. */
  keyTableSql(table: string, keyColumn: string): string;
}

/** Keys per INSERT of a reconcile (SQLite allows 32,766 parameters per statement, PostgreSQL 65,535). */
const KEYS_PER_INSERT = 10_000;

const STATE_FIELDS = ['table_name', 'key_column', 'cursor_value', 'boundary_keys', 'last_full_sync', 'last_success', 'catalog_hash', 'columns', 'vanished_warned', 'last_error'] as const;

const SCHEMA = `
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
`;

/** [key, stamp, timestamp, cursor, ...values] → the values of one upserted row, in upsertColumns order. */
export function upsertParams(row: unknown[], syncedAt: string): Array<string | number | null> {
  const [key, stamp, timestamp, cursor, ...values] = row;
  return [...[key, ...values, stamp, timestamp, cursor].map(toSql), syncedAt];
}

export abstract class SyncStore {
  /** The path, or the URL with its password masked: safe to print. */
  abstract readonly display: string;
  protected abstract readonly dialect: Dialect;

  /** Run one statement (`?` placeholders). */
  protected abstract query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: T[]; changes: number }>;
  /** Run several statements without parameters. */
  protected abstract exec(sql: string): Promise<void>;
  /** One sync per target: throws LockBusyError (exit 75) at once when another holds it. */
  abstract acquireRunLock(): Promise<void>;
  /** A function upserting pages of rows; a row whose stamp is unchanged is skipped, unless `rewriteAll` (new columns to fill). */
  abstract upserter(table: string, keyColumn: string, columns: string[], rewriteAll?: boolean): Promise<Upsert>;
  abstract close(): Promise<void>;

  async migrate(): Promise<void> {
    await this.exec(SCHEMA);
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.exec('BEGIN');
    try {
      const result = await fn();
      await this.exec('COMMIT');
      return result;
    } catch (error) {
      await this.exec('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  /** Runs left `running` by a killed process (we hold the run lock, so none is alive). */
  async markInterrupted(now: string): Promise<number> {
    const r = await this.query(`UPDATE _legacy_sync_runs SET status = 'interrupted', finished = ?, error = coalesce(error, 'the process ended before the run finished') WHERE status = 'running'`, [now]);
    return r.changes;
  }

  async state(table: string): Promise<TableState | undefined> {
    return (await this.query<TableState>('SELECT * FROM _legacy_sync_state WHERE table_name = ?', [table])).rows[0];
  }

  async allStates(): Promise<TableState[]> {
    return (await this.query<TableState>('SELECT * FROM _legacy_sync_state ORDER BY table_name')).rows;
  }

  async tableColumns(table: string): Promise<Array<{ name: string; type: string }>> {
    return (await this.query<{ name: string; type: string }>(this.dialect.columnsSql, [table])).rows;
  }

  async existingColumns(table: string): Promise<string[]> {
    return (await this.tableColumns(table)).map((c) => c.name);
  }

  /** Create the data table, or add columns for attributes that are new in the catalog. Returns the added names. */
  async ensureTable(table: string, keyColumn: string, columns: StoredColumn[], keyType: SqlType): Promise<string[]> {
    const type = (t: SqlType) => this.dialect.type(t);
    const have = new Set(await this.existingColumns(table));
    if (have.size === 0) {
      const defs = columns.map((c) => `${quoteId(c.name)} ${type(c.sqlType)}${c.name === keyColumn ? ' PRIMARY KEY' : ''}`);
      if (!columns.some((c) => c.name === keyColumn)) defs.unshift(`${quoteId(keyColumn)} ${type(keyType)} PRIMARY KEY`);
      defs.push(`_stamp ${type('INTEGER')}`, '_timestamp TEXT', '_synced_at TEXT', '_deleted_at TEXT', '_cursor TEXT');
      await this.transaction(() =>
        this.exec(`CREATE TABLE ${quoteId(table)} (${defs.join(', ')}); CREATE INDEX ${quoteId(`${table}__cursor`)} ON ${quoteId(table)} (_cursor)`),
      );
      return [];
    }
    const added = columns.filter((c) => !have.has(c.name));
    for (const c of added) await this.exec(`ALTER TABLE ${quoteId(table)} ADD COLUMN ${quoteId(c.name)} ${type(c.sqlType)}`);
    return added.map((c) => c.name);
  }

  /** The columns an upsert writes, in upsertParams order. */
  protected upsertColumns(keyColumn: string, dataColumns: string[]): string[] {
    return [keyColumn, ...dataColumns, '_stamp', '_timestamp', '_cursor', '_synced_at'];
  }

  /**
   * INSERT … ON CONFLICT DO UPDATE from `source` (VALUES or a SELECT of upsertColumns); a row written
   * is live again (`_deleted_at` NULL). `onlyChanged` leaves rows whose stamp is unchanged alone.
   */
  protected upsertSql(table: string, keyColumn: string, dataColumns: string[], source: string, onlyChanged: boolean, returning = ''): string {
    const all = this.upsertColumns(keyColumn, dataColumns);
    const t = quoteId(table);
    const guard = onlyChanged ? ` WHERE ${t}._stamp ${this.dialect.distinct} excluded._stamp OR ${t}._deleted_at IS NOT NULL` : '';
    const set = [...all.slice(1).map((c) => `${quoteId(c)} = excluded.${quoteId(c)}`), '_deleted_at = NULL'];
    return `INSERT INTO ${t} (${all.map(quoteId).join(', ')}) ${source} ON CONFLICT (${quoteId(keyColumn)}) DO UPDATE SET ${set.join(', ')}${guard}${returning}`;
  }

  /** The newest row cursor stored for a table, and the keys of the rows at it (at most 1,000). */
  async cursorOf(table: string, keyColumn: string): Promise<{ cursor: string | null; boundary: unknown[] }> {
    const c = (await this.query<{ c: string | null }>(`SELECT max(_cursor) AS c FROM ${quoteId(table)}`)).rows[0]?.c;
    if (!c) return { cursor: null, boundary: [] };
    const rows = (await this.query<{ k: unknown }>(`SELECT ${quoteId(keyColumn)} AS k FROM ${quoteId(table)} WHERE _cursor = ? LIMIT 1000`, [c])).rows;
    return { cursor: c, boundary: rows.map((r) => r.k) };
  }

  async saveState(state: TableState): Promise<void> {
    await this.query(
      `INSERT INTO _legacy_sync_state (${STATE_FIELDS.join(', ')}) VALUES (${STATE_FIELDS.map(() => '?').join(', ')})
       ON CONFLICT (table_name) DO UPDATE SET ${STATE_FIELDS.slice(1).map((f) => `${f} = excluded.${f}`).join(', ')}`,
      STATE_FIELDS.map((f) => state[f]),
    );
  }

  async startRun(run: Pick<RunRow, 'run_id' | 'table_name' | 'started' | 'mode'>): Promise<void> {
    await this.query(`INSERT INTO _legacy_sync_runs (run_id, table_name, started, status, mode, pid) VALUES (?, ?, ?, 'running', ?, ?)`, [run.run_id, run.table_name, run.started, run.mode, process.pid]);
  }

  async progressRun(runId: string, table: string, delta: { rows_fetched: number; inserted: number; updated: number; deleted?: number }): Promise<void> {
    await this.query(
      `UPDATE _legacy_sync_runs SET rows_fetched = rows_fetched + ?, inserted = inserted + ?, updated = updated + ?, deleted = deleted + ? WHERE run_id = ? AND table_name = ?`,
      [delta.rows_fetched, delta.inserted, delta.updated, delta.deleted ?? 0, runId, table],
    );
  }

  async finishRun(runId: string, table: string, status: RunRow['status'], finished: string, error?: string): Promise<void> {
    await this.query(`UPDATE _legacy_sync_runs SET status = ?, finished = ?, error = ? WHERE run_id = ? AND table_name = ?`, [status, finished, error ?? null, runId, table]);
  }

  async runs(limit: number): Promise<RunRow[]> {
    return (await this.query<RunRow>(`SELECT run_id, table_name, started, finished, status, mode, rows_fetched, inserted, updated, deleted, error FROM _legacy_sync_runs ORDER BY started DESC, table_name LIMIT ?`, [limit])).rows;
  }

  async pruneRuns(before: string): Promise<number> {
    return (await this.query(`DELETE FROM _legacy_sync_runs WHERE started < ? AND status != 'running'`, [before])).changes;
  }

  async counts(table: string): Promise<{ rows: number; deleted: number }> {
    if ((await this.existingColumns(table)).length === 0) return { rows: 0, deleted: 0 };
    return (await this.query<{ rows: number; deleted: number }>(`SELECT count(*) - count(_deleted_at) AS rows, count(_deleted_at) AS deleted FROM ${quoteId(table)}`)).rows[0]!;
  }

  /** Reconcile: mark rows whose key the server no longer has. Keys arrive in pages into a temporary table. */
  async beginKeyScan(table: string, keyColumn: string): Promise<KeyScan> {
    const { keys, keyTableSql } = this.dialect;
    await this.exec(keyTableSql(table, keyColumn));
    const chunk = KEYS_PER_INSERT;
    return {
      add: (list) =>
        this.transaction(async () => {
          for (let i = 0; i < list.length; i += chunk) {
            const part = list.slice(i, i + chunk);
            await this.query(`INSERT INTO ${keys} (k) VALUES ${part.map(() => '(?)').join(', ')} ON CONFLICT DO NOTHING`, part.map(toSql));
          }
        }),
      finish: (at) =>
        this.transaction(async () => {
          const t = quoteId(table);
          const { changes } = await this.query(`UPDATE ${t} SET _deleted_at = ? WHERE _deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM ${keys} AS s WHERE s.k = ${t}.${quoteId(keyColumn)})`, [at]);
          await this.exec(`DROP TABLE ${keys}`);
          return changes;
        }),
    };
  }
}

/** Where sync stores: an SQLite file (the default) or a PostgreSQL database. `display` is safe to print. */
export type SyncTarget = { kind: 'sqlite'; path: string; display: string } | { kind: 'postgres'; url: string; display: string };

const POSTGRES_URL = /^postgres(?:ql)?:/i;

/** `--db` → the target: `postgres://` or `postgresql://` URLs go to PostgreSQL, anything else is an SQLite path. */
export function syncTarget(db: string | undefined, cwd: string, defaultPath: string, what = '--db'): SyncTarget {
  if (!db || !POSTGRES_URL.test(db)) {
    const path = db ? resolve(cwd, db) : defaultPath;
    return { kind: 'sqlite', path, display: path };
  }
  const bad = (why: string) => new UsageError(`${what} ${maskUrl(db)}: ${why}`, { hint: 'use postgres://user@host:port/database; give the password with PGPASSWORD or ~/.pgpass' });
  let url: URL;
  try {
    url = new URL(db);
  } catch {
    throw bad('not a valid PostgreSQL URL');
  }
  if (!url.hostname && !url.searchParams.get('host')) throw bad('no host');
  if (!/^\/?[^/]*$/.test(url.pathname)) throw bad('the path must be only the database name');
  return { kind: 'postgres', url: url.href, display: maskUrl(url.href) };
}

/**
 * Open a target. `run`: create it if needed, take the one-sync-per-target lock, create or upgrade the
 * schema. `read` (read-only) and `write`: only an existing store, else undefined.
 */
export async function openSyncStore(target: SyncTarget, mode: 'run'): Promise<SyncStore>;
export async function openSyncStore(target: SyncTarget, mode: 'read' | 'write'): Promise<SyncStore | undefined>;
export async function openSyncStore(target: SyncTarget, mode: 'run' | 'read' | 'write'): Promise<SyncStore | undefined> {
  let store: SyncStore;
  if (target.kind === 'postgres') {
    const { PostgresSyncStore } = await import('./postgres.js');
    store = await PostgresSyncStore.connect(target, { readOnly: mode === 'read' });
    if (mode !== 'run' && (await store.existingColumns('_legacy_sync_runs')).length === 0) {
      await store.close();
      return undefined;
    }
  } else {
    if (mode !== 'run' && !existsSync(target.path)) return undefined;
    const { SqliteSyncStore } = await import('./sqlite.js');
    store = SqliteSyncStore.open(target.path, { readOnly: mode === 'read' });
  }
  if (mode === 'read') return store;
  try {
    if (mode === 'run') await store.acquireRunLock();
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}
