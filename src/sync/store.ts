/**
 * The storage side of sync: one table per dataclass plus `_legacy_sync_state` and `_legacy_sync_runs`,
 * in SQLite (the default, ./sqlite.ts) or PostgreSQL (./postgres.ts, `--db postgres://…`). Both share
 * the SQL below; a subclass supplies the driver (three primitives), its column types, the run lock and
 * the upsert loop. Rows are upserted together with the table's progress in one transaction (a batch
 * of pages, see Syncer.readPass), so a crash at any point leaves a consistent database.
 */
import type { Attribute } from '../rest/types.js';
import { NUMBER_TYPES } from '../table/convert.js';
import { GLOBAL_STAMP } from './window.js';

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

/**
 * A value as the database stores it: booleans 0/1, objects as JSON text, a long64 beyond 2^53 as
 * the bigint it was read as (bound as a 64-bit integer: SQLite INTEGER, PostgreSQL bigint, exact).
 */
export function toSql(value: unknown): string | number | bigint | null {
  if (typeof value === 'string' || typeof value === 'number') return value;
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value; // never rounded
  return JSON.stringify(value);
}

/**
 * A 64-bit integer read back from a database, exact: a number within 2^53, else a bigint (both
 * drivers would otherwise hand back the nearest double, silently).
 */
export function exactInteger(value: bigint): number | bigint {
  return value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : value;
}
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

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
  /** How changes are found: 'global stamp', 'date+time', 'date' or 'full' (see ./window.ts). */
  tracking: string | null;
  /** The global-stamp cursor (a number, as text: 4D stamps are 64-bit). */
  stamp_cursor: string | null;
  /** The last key-and-stamp comparison with the server (reconcile or verify): when, and what it found (JSON). */
  last_reconcile: string | null;
  reconcile_result: string | null;
  last_verify: string | null;
  verify_result: string | null;
}

/** What a key-and-stamp comparison (reconcile or verify) found, and when. */
export interface Comparison {
  at: string;
  missing?: number;
  extra?: number;
  stale?: number;
  server?: number;
  local?: number;
  fetched?: number;
  deleted?: number;
  remaining?: number;
}

/** One table of a copy as `sync status` and `watch status` show it (SyncStore.status). */
export interface TableStatus {
  table: string;
  rows: number;
  deleted: number;
  lastSuccess: string | null;
  lastFullSync: string | null;
  /** How changes are found: 'global stamp', 'date+time', 'date' or 'full'. */
  tracking: string;
  /** The global stamp or the date cursor, whichever the table's tracking uses. */
  cursor: string | null;
  lastReconcile: Comparison | null;
  lastVerify: Comparison | null;
  lastError: string | null;
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

/**
 * A change the store made to a copy's row, as the change feed (watch/) hears it: before the
 * transaction that made it commits, so a feed commits its cursor only after its sink took the events.
 */
export interface StoredChange {
  table: string;
  kind: 'created' | 'updated' | 'deleted';
  key: unknown;
  /** The record's `__STAMP` after the change (deleted: the last one stored). */
  stamp: number | null;
  /** `__TIMESTAMP` as exported (deleted: the last one stored). */
  timestamp: string | null;
  /** 4D's global stamp of the change, where the server tracks changes. */
  globalStamp: number | null;
  /** The row after the change, as exported (deleted: null). */
  row: Record<string, unknown> | null;
  /** Updated: the fields whose stored value changed. */
  changedFields?: string[];
  /** Deleted: the record's last `__TIMESTAMP` stored (it tells a re-created record's deletion from the first one's). */
  previousTimestamp?: string | null;
}

/** Told the changes of each transaction before it commits; a throw rolls the transaction back. */
export interface ChangeObserver {
  beforeCommit(changes: StoredChange[]): Promise<void>;
}

/** What an upsert did to one row, for the change feed: created (new or re-created after a deletion) or updated. */
export function rowChange(
  table: string,
  keyColumn: string,
  dataColumns: string[],
  row: unknown[],
  before: ({ _deleted_at: string | null } & Record<string, unknown>) | undefined,
): StoredChange {
  const after: Record<string, unknown> = { [keyColumn]: row[0] };
  dataColumns.forEach((c, i) => {
    after[c] = row[4 + i];
  });
  const live = before !== undefined && before._deleted_at === null;
  const stamp = typeof row[1] === 'number' ? row[1] : row[1] == null ? null : Number(row[1]);
  const global = after[GLOBAL_STAMP];
  return {
    table,
    kind: live ? 'updated' : 'created',
    key: row[0],
    stamp,
    timestamp: typeof row[2] === 'string' ? row[2] : null,
    globalStamp: global === null || global === undefined ? null : Number(global),
    row: after,
    ...(live ? { changedFields: dataColumns.filter((c) => c !== GLOBAL_STAMP && !sameStored(after[c], before[c])) } : {}),
  };
}

/** A value as exported against the same value as stored (drivers hand 64-bit integers back as text). */
function sameStored(value: unknown, stored: unknown): boolean {
  const v = toSql(value);
  if (v === null || stored === null || stored === undefined) return v === null && (stored === null || stored === undefined);
  return v === stored || String(v) === String(stored);
}

/** Rows laid out as [key, __STAMP, __TIMESTAMP, cursor, ...data columns] → the upsert's parameters. */
export type Upsert = (rows: unknown[][], syncedAt: string) => Promise<UpsertCounts>;

/** What a key-and-stamp comparison found: rows the copy lacks, has too many, or holds with another stamp. */
export interface ScanDiff {
  server: number;
  local: number;
  missing: number;
  extra: number;
  stale: number;
  /** A few keys of each kind, for messages. */
  examples: { missing: unknown[]; extra: unknown[]; stale: unknown[] };
}

/**
 * The server's keys and stamps, as pages arrive, in a temporary table of the database (never in
 * memory), compared there with the copy.
 */
export interface StampScan {
  add(rows: Array<[key: unknown, stamp: unknown]>): Promise<void>;
  diff(examples?: number): Promise<ScanDiff>;
  /** Keys the copy lacks or holds with another stamp, in key order, after `after` (keyset paging). */
  toFetch(after: unknown, limit: number): Promise<unknown[]>;
  /** Mark the copy's live rows whose key the server no longer has; returns how many. */
  markVanished(at: string): Promise<number>;
  drop(): Promise<void>;
}

/** What differs in the SQL of the two targets. */
export interface Dialect {
  type(t: SqlType): string;
  /** Columns (name, type) of a table, none if there is no such table; one parameter, the table name. */
  columnsSql: string;
  /** Null-safe "differs". */
  distinct: string;
  /** The temporary key-and-stamp table of a reconcile or verify. */
  scan: string;
  /** (Re)create the scan table (k, s) with the types of the key and of _stamp. */
  scanTableSql(table: string, keyColumn: string): string;
}

const STATE_FIELDS = [
  'table_name',
  'key_column',
  'cursor_value',
  'boundary_keys',
  'last_full_sync',
  'last_success',
  'catalog_hash',
  'columns',
  'vanished_warned',
  'last_error',
  'tracking',
  'stamp_cursor',
  'last_reconcile',
  'reconcile_result',
  'last_verify',
  'verify_result',
] as const;
/** State columns added after the first release: created on databases made before them. */
const LATER_STATE_FIELDS = ['tracking', 'stamp_cursor', 'last_reconcile', 'reconcile_result', 'last_verify', 'verify_result'] as const;

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
    last_error TEXT,
    tracking TEXT,
    stamp_cursor TEXT,
    last_reconcile TEXT,
    reconcile_result TEXT,
    last_verify TEXT,
    verify_result TEXT
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
export function upsertParams(row: unknown[], syncedAt: string): Array<string | number | bigint | null> {
  // A loop into one array: this runs for every row of a sync (the spread-and-map form made three).
  const n = row.length;
  const out = new Array<string | number | bigint | null>(n + 1);
  out[0] = toSql(row[0]);
  let j = 1;
  for (let i = 4; i < n; i++) out[j++] = toSql(row[i]);
  out[j++] = toSql(row[1]);
  out[j++] = toSql(row[2]);
  out[j++] = toSql(row[3]);
  out[j] = syncedAt;
  return out;
}

/** Changes a round holds before telling its observer early (see SyncStore.beginRound). */
export const ROUND_CHANGE_LIMIT = 10_000;

export abstract class SyncStore {
  /** The path, or the URL with its password masked: safe to print. */
  abstract readonly display: string;
  protected abstract readonly dialect: Dialect;
  /** The change feed listening to this store's row changes (none for sync). */
  changeObserver?: ChangeObserver;
  private pendingChanges: StoredChange[] = [];

  /** Note a row change for the observer (told at the next commit). */
  protected noteChange(change: StoredChange): void {
    if (this.changeObserver) this.pendingChanges.push(change);
  }

  /** Run one statement (`?` placeholders). */
  protected abstract query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: T[]; changes: number }>;
  /** Run several statements without parameters. */
  protected abstract exec(sql: string): Promise<void>;
  /** One sync per target: throws LockBusyError (exit 75) at once when another holds it. */
  abstract acquireRunLock(): Promise<void>;
  /** Insert (key, stamp) pairs into the scan table (each target its fastest way). */
  protected abstract insertScan(rows: Array<[unknown, unknown]>, table: string, keyColumn: string): Promise<void>;
  /** A function upserting pages of rows; a row whose stamp is unchanged is skipped, unless `rewriteAll` (new columns to fill). */
  abstract upserter(table: string, keyColumn: string, columns: string[], rewriteAll?: boolean): Promise<Upsert>;
  abstract close(): Promise<void>;

  async migrate(): Promise<void> {
    await this.exec(SCHEMA);
    const have = new Set(await this.existingColumns('_legacy_sync_state'));
    for (const field of LATER_STATE_FIELDS) if (!have.has(field)) await this.exec(`ALTER TABLE _legacy_sync_state ADD COLUMN ${field} TEXT`);
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.begin();
    try {
      const result = await fn();
      await this.commit();
      return result;
    } catch (error) {
      await this.rollback().catch(() => undefined);
      throw error;
    }
  }

  /** A transaction held open across several calls (sync's batches of pages); prefer transaction(). */
  async begin(): Promise<void> {
    if (this.round) {
      this.round.marks.push(this.pendingChanges.length);
      await this.exec(`SAVEPOINT legacy_${this.round.marks.length}`);
      return;
    }
    await this.exec('BEGIN');
  }

  async commit(): Promise<void> {
    if (this.round) {
      const depth = this.round.marks.length;
      if (depth === 0) return;
      await this.exec(`RELEASE SAVEPOINT legacy_${depth}`);
      this.round.marks.pop();
      // A round that found a great many changes tells them early, to keep memory bounded.
      if (depth === 1 && this.pendingChanges.length >= ROUND_CHANGE_LIMIT) {
        await this.tellObserver();
        await this.exec('COMMIT');
        await this.exec('BEGIN');
      }
      return;
    }
    await this.tellObserver();
    await this.exec('COMMIT');
  }

  async rollback(): Promise<void> {
    if (this.round) {
      const depth = this.round.marks.length;
      if (depth === 0) return;
      this.pendingChanges.length = this.round.marks.pop()!;
      await this.exec(`ROLLBACK TO SAVEPOINT legacy_${depth}`);
      await this.exec(`RELEASE SAVEPOINT legacy_${depth}`);
      return;
    }
    this.pendingChanges = [];
    await this.exec('ROLLBACK');
  }

  /** A sink that did not take the changes fails the commit: the caller rolls back, nothing is lost. */
  private async tellObserver(): Promise<void> {
    if (this.changeObserver && this.pendingChanges.length) {
      const changes = this.pendingChanges;
      this.pendingChanges = [];
      await this.changeObserver.beforeCommit(changes);
    }
  }

  /** The open round, if any: its transactions are savepoints; `marks` the changes noted before each. */
  private round?: { marks: number[] };

  /**
   * One transaction around several passes (a change feed's poll over its tables): the passes' own
   * transactions become savepoints, and the observer hears the round's changes together at
   * commitRound, so it can put them in one order across tables. Beyond ROUND_CHANGE_LIMIT changes
   * they are told early (at the next savepoint released to the round).
   */
  async beginRound(): Promise<void> {
    await this.exec('BEGIN');
    this.round = { marks: [] };
  }

  async commitRound(): Promise<void> {
    this.round = undefined;
    await this.tellObserver();
    await this.exec('COMMIT');
  }

  async rollbackRound(): Promise<void> {
    this.round = undefined;
    this.pendingChanges = [];
    await this.exec('ROLLBACK');
  }

  /** Runs left `running` by a killed process (we hold the run lock, so none is alive). */
  async markInterrupted(now: string): Promise<number> {
    const r = await this.query(
      `UPDATE _legacy_sync_runs SET status = 'interrupted', finished = ?, error = coalesce(error, 'the process ended before the run finished') WHERE status = 'running'`,
      [now],
    );
    return r.changes;
  }

  /** A state row, with the later columns null on a database opened read-only before its upgrade. */
  private static complete(row: Partial<TableState>): TableState {
    const out = { ...row } as Record<string, unknown>;
    for (const field of LATER_STATE_FIELDS) out[field] ??= null;
    return out as unknown as TableState;
  }

  async state(table: string): Promise<TableState | undefined> {
    const row = (await this.query<TableState>('SELECT * FROM _legacy_sync_state WHERE table_name = ?', [table])).rows[0];
    return row && SyncStore.complete(row);
  }

  /** Every table's state, counts and last checks, typed (no stored JSON text leaves the store). */
  async status(): Promise<TableStatus[]> {
    const comparison = (at: string | null, text: string | null): Comparison | null => {
      if (!at) return null;
      let found: Record<string, number> = {};
      try {
        found = text ? (JSON.parse(text) as Record<string, number>) : {};
      } catch {
        // A damaged note is only a note: the time still says a check ran.
      }
      return { ...found, at };
    };
    const out: TableStatus[] = [];
    for (const s of await this.allStates()) {
      const n = await this.counts(s.table_name);
      out.push({
        table: s.table_name,
        rows: n.rows ?? 0,
        deleted: n.deleted ?? 0,
        lastSuccess: s.last_success,
        lastFullSync: s.last_full_sync,
        tracking: s.tracking ?? 'date',
        cursor: s.tracking === 'global stamp' ? s.stamp_cursor : s.cursor_value,
        lastReconcile: comparison(s.last_reconcile, s.reconcile_result),
        lastVerify: comparison(s.last_verify, s.verify_result),
        lastError: s.last_error,
      });
    }
    return out;
  }

  async allStates(): Promise<TableState[]> {
    return (await this.query<TableState>('SELECT * FROM _legacy_sync_state ORDER BY table_name')).rows.map(SyncStore.complete);
  }

  /** Record what a reconcile or verify found, without touching the rest of the state. */
  async noteComparison(table: string, kind: 'reconcile' | 'verify', at: string, result: unknown): Promise<void> {
    const [when, what] = kind === 'reconcile' ? ['last_reconcile', 'reconcile_result'] : ['last_verify', 'verify_result'];
    await this.query(`UPDATE _legacy_sync_state SET ${when} = ?, ${what} = ? WHERE table_name = ?`, [at, JSON.stringify(result), table]);
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
      await this.transaction(() => this.exec(`CREATE TABLE ${quoteId(table)} (${defs.join(', ')}); ${this.indexSql(table, keyColumn)}`));
      return [];
    }
    const added = columns.filter((c) => !have.has(c.name));
    for (const c of added) await this.exec(`ALTER TABLE ${quoteId(table)} ADD COLUMN ${quoteId(c.name)} ${type(c.sqlType)}`);
    // A first load killed before it rebuilt the indexes it had put off (deferIndexes) left them out.
    await this.exec(this.indexSql(table, keyColumn));
    return added.map((c) => c.name);
  }

  /**
   * The data table's own indexes: `_cursor` (the incremental window), and a covering index for the
   * key-and-stamp comparison (it reads the index, never the wide rows).
   */
  private indexSql(table: string, keyColumn: string): string {
    return `CREATE INDEX IF NOT EXISTS ${quoteId(`${table}__cursor`)} ON ${quoteId(table)} (_cursor); ${this.stampIndexSql(table, keyColumn)}`;
  }

  private stampIndexSql(table: string, keyColumn: string): string {
    return `CREATE INDEX IF NOT EXISTS ${quoteId(`${table}__stamp`)} ON ${quoteId(table)} (${quoteId(keyColumn)}, _stamp, _deleted_at)`;
  }

  /** Does the data table hold no row at all (a first load starts)? */
  protected async isEmpty(table: string): Promise<boolean> {
    return (await this.query(`SELECT 1 AS one FROM ${quoteId(table)} LIMIT 1`)).rows.length === 0;
  }

  /**
   * A load into an empty table puts off its indexes (indexSql): they are dropped, and built once
   * from the loaded rows by the function returned, which the caller runs when the load is over
   * (also after a failure). Keys and cursors arrive in no index's order, so keeping the indexes
   * during the load writes most of their pages again at every commit; building them at the end
   * sorts once (measured on 200,000 rows: see the commit). A process killed before the rebuild
   * leaves them out: the next run's ensureTable builds them. Undefined when the table holds rows,
   * or inside a change feed's round (whose savepoints the DDL would cross).
   */
  async deferIndexes(table: string, keyColumn: string): Promise<(() => Promise<void>) | undefined> {
    if (this.round || this.changeObserver) return undefined;
    if (!(await this.isEmpty(table))) return undefined;
    await this.transaction(() => this.exec(`DROP INDEX IF EXISTS ${quoteId(`${table}__cursor`)}; DROP INDEX IF EXISTS ${quoteId(`${table}__stamp`)}`));
    return () => this.transaction(() => this.exec(this.indexSql(table, keyColumn)));
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
    return `${this.insertSql(table, keyColumn, dataColumns, source)} ON CONFLICT (${quoteId(keyColumn)}) DO UPDATE SET ${set.join(', ')}${guard}${returning}`;
  }

  /** INSERT of upsertColumns from `source`, without a conflict clause. */
  protected insertSql(table: string, keyColumn: string, dataColumns: string[], source: string): string {
    return `INSERT INTO ${quoteId(table)} (${this.upsertColumns(keyColumn, dataColumns).map(quoteId).join(', ')}) ${source}`;
  }

  /** An index on one column (idempotent). */
  async ensureIndex(table: string, column: string): Promise<void> {
    await this.exec(`CREATE INDEX IF NOT EXISTS ${quoteId(`${table}_${column}`)} ON ${quoteId(table)} (${quoteId(column)})`);
  }

  /** The largest value of a numeric column among the live rows (the global stamp), or null. */
  async maxOf(table: string, column: string): Promise<number | null> {
    const v = (await this.query<{ m: number | string | null }>(`SELECT max(${quoteId(column)}) AS m FROM ${quoteId(table)}`)).rows[0]?.m;
    return v === null || v === undefined ? null : Number(v);
  }

  /**
   * Mark rows deleted on the server. With `stampColumn` (change tracking: `__DeletedRecords`), not
   * a row written again after the deletion (its global stamp is newer: the key was re-created).
   */
  async markDeleted(table: string, keyColumn: string, deletions: Array<{ key: unknown; stamp?: number }>, at: string, stampColumn?: string): Promise<number> {
    let marked = 0;
    const where = `${quoteId(keyColumn)} = ? AND _deleted_at IS NULL${stampColumn ? ` AND coalesce(${quoteId(stampColumn)}, -1) <= ?` : ''}`;
    for (const d of deletions) {
      const params = stampColumn ? [toSql(d.key), d.stamp ?? 0] : [toSql(d.key)];
      if (this.changeObserver) {
        const rows = (await this.query<Record<string, unknown>>(`SELECT _stamp, _timestamp FROM ${quoteId(table)} WHERE ${where}`, params)).rows;
        for (const r of rows) this.noteDeletion(table, d.key, r, d.stamp ?? null);
      }
      marked += (await this.query(`UPDATE ${quoteId(table)} SET _deleted_at = ? WHERE ${where}`, [at, ...params])).changes;
    }
    return marked;
  }

  private noteDeletion(table: string, key: unknown, stored: Record<string, unknown>, globalStamp: number | null): void {
    const stamp = stored._stamp === null || stored._stamp === undefined ? null : Number(stored._stamp);
    // The time of a deletion is not stored anywhere: the event says when the feed saw it (timestamp null).
    const previousTimestamp = typeof stored._timestamp === 'string' ? stored._timestamp : null;
    this.noteChange({ table, kind: 'deleted', key, stamp, timestamp: null, globalStamp, row: null, previousTimestamp });
  }

  /** The newest row cursor stored for a table (not after `notAfter`), and the keys of the rows at it (at most 1,000). */
  async cursorOf(table: string, keyColumn: string, notAfter = '9999'): Promise<{ cursor: string | null; boundary: unknown[] }> {
    const c = (await this.query<{ c: string | null }>(`SELECT max(_cursor) AS c FROM ${quoteId(table)} WHERE _cursor <= ?`, [notAfter])).rows[0]?.c;
    if (!c) return { cursor: null, boundary: [] };
    const rows = (await this.query<{ k: unknown }>(`SELECT ${quoteId(keyColumn)} AS k FROM ${quoteId(table)} WHERE _cursor = ? LIMIT 1000`, [c])).rows;
    return { cursor: c, boundary: rows.map((r) => r.k) };
  }

  async saveState(state: TableState): Promise<void> {
    await this.query(
      `INSERT INTO _legacy_sync_state (${STATE_FIELDS.join(', ')}) VALUES (${STATE_FIELDS.map(() => '?').join(', ')})
       ON CONFLICT (table_name) DO UPDATE SET ${STATE_FIELDS.slice(1)
         .map((f) => `${f} = excluded.${f}`)
         .join(', ')}`,
      STATE_FIELDS.map((f) => state[f]),
    );
  }

  async startRun(run: Pick<RunRow, 'run_id' | 'table_name' | 'started' | 'mode'>): Promise<void> {
    await this.query(`INSERT INTO _legacy_sync_runs (run_id, table_name, started, status, mode, pid) VALUES (?, ?, ?, 'running', ?, ?)`, [
      run.run_id,
      run.table_name,
      run.started,
      run.mode,
      process.pid,
    ]);
  }

  async progressRun(runId: string, table: string, delta: { rows_fetched: number; inserted: number; updated: number; deleted?: number }): Promise<void> {
    await this.query(
      `UPDATE _legacy_sync_runs SET rows_fetched = rows_fetched + ?, inserted = inserted + ?, updated = updated + ?, deleted = deleted + ? WHERE run_id = ? AND table_name = ?`,
      [delta.rows_fetched, delta.inserted, delta.updated, delta.deleted ?? 0, runId, table],
    );
  }

  async finishRun(runId: string, table: string, status: RunRow['status'], finished: string, error?: string): Promise<void> {
    await this.query(`UPDATE _legacy_sync_runs SET status = ?, finished = ?, error = ? WHERE run_id = ? AND table_name = ?`, [
      status,
      finished,
      error ?? null,
      runId,
      table,
    ]);
  }

  async runs(limit: number): Promise<RunRow[]> {
    return (
      await this.query<RunRow>(
        `SELECT run_id, table_name, started, finished, status, mode, rows_fetched, inserted, updated, deleted, error FROM _legacy_sync_runs ORDER BY started DESC, table_name LIMIT ?`,
        [limit],
      )
    ).rows;
  }

  async pruneRuns(before: string): Promise<number> {
    return (await this.query(`DELETE FROM _legacy_sync_runs WHERE started < ? AND status != 'running'`, [before])).changes;
  }

  async counts(table: string): Promise<{ rows: number; deleted: number }> {
    if ((await this.existingColumns(table)).length === 0) return { rows: 0, deleted: 0 };
    return (
      await this.query<{ rows: number; deleted: number }>(`SELECT count(*) - count(_deleted_at) AS rows, count(_deleted_at) AS deleted FROM ${quoteId(table)}`)
    ).rows[0]!;
  }

  /**
   * Reconcile and verify: the server's keys and stamps arrive in pages into a temporary table, and
   * the comparison with the copy is SQL over the two (missing: on the server, not live here; stale:
   * live here with another stamp; extra: live here, gone from the server).
   */
  async beginStampScan(table: string, keyColumn: string): Promise<StampScan> {
    const { scan, scanTableSql, distinct } = this.dialect;
    await this.exec(this.stampIndexSql(table, keyColumn)); // tables made before the index existed
    await this.exec(scanTableSql(table, keyColumn));
    const t = quoteId(table);
    const k = quoteId(keyColumn);
    const live = `${t}._deleted_at IS NULL`;
    // Two passes, both index-only: over the server's keys (missing, stale) and over the copy's (local, extra).
    const serverSide = `FROM ${scan} AS s LEFT JOIN ${t} ON ${t}.${k} = s.k AND ${live}`;
    const isMissing = `${t}.${k} IS NULL`;
    const isStale = `${t}.${k} IS NOT NULL AND ${t}._stamp ${distinct} s.s`;
    const isExtra = `NOT EXISTS (SELECT 1 FROM ${scan} AS s WHERE s.k = ${t}.${k})`;
    const n = (v: unknown) => Number(v ?? 0);
    const keys = async (column: string, from: string, where: string, limit: number) =>
      limit > 0 ? (await this.query<{ k: unknown }>(`SELECT ${column} AS k ${from} WHERE ${where} ORDER BY 1 LIMIT ?`, [limit])).rows.map((r) => r.k) : [];
    return {
      add: (rows) => this.transaction(() => this.insertScan(rows, table, keyColumn)),
      diff: async (examples = 5) => {
        const a = (
          await this.query<Record<string, unknown>>(
            `SELECT count(*) AS server, sum(CASE WHEN ${isMissing} THEN 1 ELSE 0 END) AS missing, sum(CASE WHEN ${isStale} THEN 1 ELSE 0 END) AS stale ${serverSide}`,
          )
        ).rows[0]!;
        const b = (
          await this.query<Record<string, unknown>>(`SELECT count(*) AS local, sum(CASE WHEN ${isExtra} THEN 1 ELSE 0 END) AS extra FROM ${t} WHERE ${live}`)
        ).rows[0]!;
        const diff = { server: n(a.server), local: n(b.local), missing: n(a.missing), extra: n(b.extra), stale: n(a.stale) };
        return {
          ...diff,
          examples: {
            missing: await keys('s.k', serverSide, isMissing, diff.missing && examples),
            extra: await keys(`${t}.${k}`, `FROM ${t}`, `${live} AND ${isExtra}`, diff.extra && examples),
            stale: await keys('s.k', serverSide, isStale, diff.stale && examples),
          },
        };
      },
      toFetch: async (after, limit) => {
        const where = `(${isMissing} OR ${isStale})`;
        const sql =
          after === undefined
            ? `SELECT s.k AS k ${serverSide} WHERE ${where} ORDER BY s.k LIMIT ?`
            : `SELECT s.k AS k ${serverSide} WHERE ${where} AND s.k > ? ORDER BY s.k LIMIT ?`;
        return (await this.query<{ k: unknown }>(sql, after === undefined ? [limit] : [toSql(after), limit])).rows.map((r) => r.k);
      },
      markVanished: (at) =>
        this.transaction(async () => {
          if (this.changeObserver) {
            const gone = await this.query<Record<string, unknown>>(`SELECT ${k} AS k, _stamp, _timestamp FROM ${t} WHERE ${live} AND ${isExtra}`);
            for (const r of gone.rows) this.noteDeletion(table, r.k, r, null);
          }
          return (await this.query(`UPDATE ${t} SET _deleted_at = ? WHERE ${live} AND ${isExtra}`, [at])).changes;
        }),
      drop: () => this.exec(`DROP TABLE IF EXISTS ${scan}`),
    };
  }
}

/** Where sync stores: an SQLite file (the default) or a PostgreSQL database. `display` is safe to print. */
export type SyncTarget = { kind: 'sqlite'; path: string; display: string } | { kind: 'postgres'; url: string; display: string };
