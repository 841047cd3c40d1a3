/** The SQLite target of sync (better-sqlite3, synchronous underneath the async SyncStore interface). */
import { mkdirSync, statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type { Database as Db, Statement } from 'better-sqlite3';
import { ConfigError, LockBusyError, TemporaryError, cannotWriteError, noSpaceReason } from '../errors/index.js';
import { SyncStore, exactInteger, quoteId, rowChange, toSql, upsertParams, type Dialect, type Upsert, type UpsertCounts } from './store.js';

const require = createRequire(import.meta.url);
const load = () => require('better-sqlite3') as typeof import('better-sqlite3');

const dialect: Dialect = {
  type: (t) => t,
  columnsSql: 'SELECT name, type FROM pragma_table_info(?)',
  distinct: 'IS NOT',
  scan: 'temp._legacy_scan',
  scanTableSql: () => 'DROP TABLE IF EXISTS temp._legacy_scan; CREATE TEMP TABLE _legacy_scan (k PRIMARY KEY, s) WITHOUT ROWID',
};

export class SqliteSyncStore extends SyncStore {
  protected readonly dialect = dialect;
  private lockDb?: Db;
  private readonly statements = new Map<string, Statement>();

  readonly display: string;

  private constructor(
    readonly path: string,
    readonly db: Db,
    private readonly busyTimeoutMs: number,
  ) {
    super();
    this.display = path;
  }

  /**
   * Open (creating the file) the database. `readOnly` never creates anything. A statement that finds
   * the file locked by another run's write waits up to `busyTimeoutMs` (default 5 s), then fails
   * with exit 75 (storeError).
   */
  static open(path: string, options: { readOnly?: boolean; busyTimeoutMs?: number } = {}): SqliteSyncStore {
    const Database = load();
    let db: Db;
    try {
      if (!options.readOnly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new Database(path, { readonly: options.readOnly === true, fileMustExist: options.readOnly === true, timeout: options.busyTimeoutMs ?? 5000 });
    } catch (error) {
      throw new ConfigError(`cannot open sync database ${path}: ${(error as Error).message}`, { hint: 'choose another path with --db or --data-dir' });
    }
    if (!options.readOnly) {
      try {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
      } catch (error) {
        db.close();
        throw storeError(error, path, options.busyTimeoutMs ?? 5000);
      }
    }
    // SQLite's own default page cache (2 MB): better-sqlite3 builds with 16 MB, which a load fills
    // and an index build's sort then uses on top. Keys arrive in order, so the load and the scans
    // touch few pages at a time; measured on a first sync of 1,000,000 rows, peak RSS 139-142 MB
    // against 161-164 MB, in the same time (24.0-24.1 s against 24.2-24.5 s).
    db.pragma('cache_size = -2000');
    return new SqliteSyncStore(path, db, options.busyTimeoutMs ?? 5000);
  }

  /** Run a statement; a full disk ("database or disk is full") is exit 73 naming the database. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw storeError(error, this.path, this.busyTimeoutMs);
    }
  }

  private prepare(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = exactReader(this.db.prepare(sql));
      this.statements.set(sql, statement);
    }
    return statement;
  }

  protected async query<T>(sql: string, params: unknown[] = []): Promise<{ rows: T[]; changes: number }> {
    return this.guard(() => {
      const statement = this.prepare(sql);
      if (statement.reader) return { rows: (statement.all(...params) as Array<Record<string, unknown>>).map(exactRow) as T[], changes: 0 };
      return { rows: [], changes: statement.run(...params).changes };
    });
  }

  protected async exec(sql: string): Promise<void> {
    this.guard(() => this.db.exec(sql));
  }

  /**
   * An exclusive transaction on a side lock database. SQLite's file lock is released by the
   * operating system when the process dies (even on SIGKILL), so there are no stale locks to reclaim.
   * A second sync gets SQLITE_BUSY at once → LockBusyError (exit 75).
   *
   * The file stays after the run, on purpose: the lock is on the open file, not its name. Removing it
   * on release would let a sync that opened the old file just before the removal lock it just after,
   * while the next one creates and locks a new file of the same name: two syncs at once. Telling the
   * two apart needs the descriptor SQLite holds (fstat against stat), which better-sqlite3 does not
   * expose, and a second descriptor on the file would drop SQLite's POSIX locks when closed.
   */
  async acquireRunLock(): Promise<void> {
    const lockDb = new (load())(`${this.path}.lock`, { timeout: 0 });
    try {
      lockDb.exec('BEGIN EXCLUSIVE');
    } catch (error) {
      lockDb.close();
      if ((error as { code?: string }).code === 'SQLITE_BUSY') {
        throw new LockBusyError(`another sync is already running on ${this.path}`, { hint: 'wait for it to finish; overlapping runs are refused' });
      }
      throw storeError(error, this.path);
    }
    this.lockDb = lockDb;
  }

  async close(): Promise<void> {
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

  /** One prepared single-row insert per pair (in the caller's transaction): the fastest way into SQLite. */
  protected async insertScan(rows: Array<[unknown, unknown]>): Promise<void> {
    const insert = this.prepare(`INSERT INTO ${dialect.scan} (k, s) VALUES (?, ?) ON CONFLICT DO NOTHING`);
    this.guard(() => {
      for (const [key, stamp] of rows) insert.run(toSql(key), toSql(stamp));
    });
  }

  /**
   * Row by row, each row's values bound as one array. Two ways to the same counts, chosen per page
   * by what the previous page found (the first by whether the table holds any row):
   * - mostly new rows (a first full load): insert, and only when the key is already there run the
   *   upsert, which rewrites the row unless its stamp is unchanged (`changes` tells which);
   * - mostly known rows (incremental, re-reads): read the stored stamp first and skip an unchanged
   *   row without writing. On a first load of 200,000 rows the first way costs one B-tree search
   *   per row instead of two.
   * A change feed (an observer) needs the stored row before the write, so it always reads first.
   */
  async upserter(table: string, keyColumn: string, columns: string[], rewriteAll = false): Promise<Upsert> {
    const dataColumns = columns.filter((c) => c !== keyColumn);
    const values = `VALUES (${this.upsertColumns(keyColumn, dataColumns)
      .map(() => '?')
      .join(', ')})`;
    const upsert = this.db.prepare(this.upsertSql(table, keyColumn, dataColumns, values, !rewriteAll));
    const rewrite = this.db.prepare(this.upsertSql(table, keyColumn, dataColumns, values, false));
    const insertNew = this.db.prepare(`${this.insertSql(table, keyColumn, dataColumns, values)} ON CONFLICT DO NOTHING`);
    // A change feed needs the stored row to name the changed fields; sync only the stamp.
    const observed = this.changeObserver !== undefined;
    const existing = exactReader(this.db.prepare(`SELECT ${observed ? '*' : '_stamp, _deleted_at'} FROM ${quoteId(table)} WHERE ${quoteId(keyColumn)} = ?`));
    let mostlyNew = !observed && (await this.isEmpty(table));
    return async (rows, syncedAt) =>
      this.guard(() => {
        const counts: UpsertCounts = { inserted: 0, updated: 0, unchanged: 0 };
        if (mostlyNew) {
          for (const row of rows) {
            const params = upsertParams(row, syncedAt);
            if (insertNew.run(params).changes === 1) counts.inserted++;
            else if (upsert.run(params).changes === 1) counts.updated++;
            else counts.unchanged++;
          }
        } else {
          for (const row of rows) {
            const stored = existing.get(toSql(row[0])) as Record<string, unknown> | undefined;
            const before = (stored && exactRow(stored)) as ({ _stamp: number | null; _deleted_at: string | null } & Record<string, unknown>) | undefined;
            // A row rewritten only to fill new columns (rewriteAll) did not change on the server.
            const same = before !== undefined && before._stamp === row[1] && before._deleted_at === null;
            if (same && !rewriteAll) {
              counts.unchanged++;
              continue;
            }
            rewrite.run(upsertParams(row, syncedAt));
            if (before) counts.updated++;
            else counts.inserted++;
            if (observed && !same) this.noteChange(rowChange(table, keyColumn, dataColumns, row, before));
          }
        }
        mostlyNew = !observed && counts.inserted * 2 > rows.length;
        return counts;
      });
  }
}

/** A reading statement that hands back 64-bit integers whole (bigint), for exactRow. */
function exactReader(statement: Statement): Statement {
  return statement.reader ? statement.safeIntegers(true) : statement;
}

/** A row of exactReader: integers within 2^53 as numbers, as before; beyond, the exact bigint (not the nearest double). */
function exactRow(row: Record<string, unknown>): Record<string, unknown> {
  for (const key in row) {
    const v = row[key];
    if (typeof v === 'bigint') row[key] = exactInteger(v);
  }
  return row;
}

/**
 * A failure of the database file as the error it is. SQLITE_BUSY (after the busy timeout: another
 * run, a sync, holds the write lock) is exit 75, temporary: `sync verify` must not report it as a
 * copy that differs (exit 1), which monitoring reads as drift. A full disk is exit 73 ("cannot create output").
 * SQLite says "database or disk is full" (SQLITE_FULL) when a write finds no space, but only "disk
 * I/O error" when its shared-memory file cannot grow (SQLITE_IOERR_SHMSIZE): an I/O error on a file
 * system with no block left is the full disk too.
 */
function storeError(error: unknown, path: string, busyTimeoutMs?: number): unknown {
  if (noSpaceReason(error)) return cannotWriteError(error, `sync database ${path}`);
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))) {
    return new TemporaryError(
      `sync database ${path} is busy: a sync is writing it${busyTimeoutMs ? ` (waited ${busyTimeoutMs} ms)` : ''}; try again when it has finished`,
      {
        hint: 'LEGACY_SYNC_BUSY_TIMEOUT_MS or syncBusyTimeoutMs waits longer',
      },
    );
  }
  if (typeof code === 'string' && code.startsWith('SQLITE_IOERR') && noSpaceLeft(dirname(path))) {
    return cannotWriteError(error, `sync database ${path}`, 'write', noSpaceReason({ code: 'ENOSPC' }));
  }
  return error;
}

function noSpaceLeft(dir: string): boolean {
  try {
    return statfsSync(dir).bavail === 0;
  } catch {
    return false;
  }
}
