/**
 * The PostgreSQL target of sync (node-postgres, imported only for a `postgres://` --db). One client for
 * the whole run; it also holds the session-level advisory lock that allows one sync per database and
 * schema, which PostgreSQL frees by itself when a killed process's connection drops.
 */
import type { Client } from 'pg';
import { AuthError, BadDataError, ConfigError, LegacyError, LockBusyError, TemporaryError, UnavailableError } from '../errors/index.js';
import { SyncStore, quoteId, rowChange, toSql, upsertParams, type Dialect, type SyncTarget, type Upsert } from './store.js';

const TYPES = { INTEGER: 'BIGINT', REAL: 'DOUBLE PRECISION', TEXT: 'TEXT' } as const;

const dialect: Dialect = {
  type: (t) => TYPES[t],
  columnsSql:
    'SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = to_regclass(quote_ident(?)) AND attnum > 0 AND NOT attisdropped ORDER BY attnum',
  distinct: 'IS DISTINCT FROM',
  scan: 'pg_temp._legacy_scan',
  scanTableSql: (table, key) =>
    `DROP TABLE IF EXISTS pg_temp._legacy_scan; CREATE TEMP TABLE _legacy_scan AS SELECT ${quoteId(key)} AS k, _stamp AS s FROM ${quoteId(table)} WITH NO DATA; ALTER TABLE pg_temp._legacy_scan ADD PRIMARY KEY (k)`,
};

/** `?` placeholders → `$1, $2, …` (not inside quoted names or literals). */
const numbered = new Map<string, string>();
function toPg(sql: string): string {
  let text = numbered.get(sql);
  if (text === undefined) {
    let n = 0;
    text = sql.replace(/"(?:[^"]|"")*"|'(?:[^']|'')*'|\?/g, (m) => (m === '?' ? `$${++n}` : m));
    numbered.set(sql, text);
  }
  return text;
}

/** A pg or network error → the house error (and exit code). Messages carry the masked URL only. */
export function pgError(error: unknown, display: string): unknown {
  if (error instanceof LegacyError) return error;
  const { code = '', message = String(error) } = error as { code?: string; message?: string };
  if (code === '3D000')
    return new ConfigError(`PostgreSQL at ${display}: ${message}`, { hint: 'create it first with createdb, or name an existing database in --db' });
  if (code.startsWith('28') || /password must be/i.test(message)) {
    const why = code ? message : 'the server asks for a password and none was given';
    return new AuthError(`PostgreSQL refused the login at ${display}: ${why}`, {
      hint: 'check the user in --db and the password: PGPASSWORD, ~/.pgpass or the URL',
    });
  }
  if (code === '53300' || code === '57P03') return new TemporaryError(`PostgreSQL at ${display} takes no connections now: ${message}`);
  // lock_timeout (sync verify, status, …): a sync holds a lock this statement needs.
  if (code === '55P03')
    return new TemporaryError(`sync database ${display} is busy: a sync is writing it (${message}); try again when it has finished`, {
      hint: 'LEGACY_SYNC_BUSY_TIMEOUT_MS or syncBusyTimeoutMs waits longer',
    });
  if (/^E[A-Z]+$/.test(code) || code.startsWith('08') || code.startsWith('57P') || (!code && /connection|timeout|terminated/i.test(message))) {
    const why = code === 'ECONNREFUSED' ? 'connection refused' : message;
    return new UnavailableError(`cannot reach PostgreSQL at ${display}: ${why}`, { hint: 'check that the server runs and listens on that host and port' });
  }
  if (code.startsWith('22')) return new BadDataError(`PostgreSQL rejected a value: ${message}`);
  return error;
}

/** A bigint column's text: a number within 2^53, else the exact bigint (Number() would round it, silently). */
function exactInt8(text: string): number | bigint {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
}

export class PostgresSyncStore extends SyncStore {
  protected readonly dialect = dialect;

  private constructor(
    readonly display: string,
    private readonly client: Client,
  ) {
    super();
  }

  /** `lockTimeoutMs`: how long a statement waits for a lock another run (a sync) holds, then exit 75 (default: no limit). */
  static async connect(
    target: Extract<SyncTarget, { kind: 'postgres' }>,
    options: { readOnly?: boolean; lockTimeoutMs?: number } = {},
  ): Promise<PostgresSyncStore> {
    const pg = (await import('pg')).default;
    const client = new pg.Client({
      connectionString: target.url,
      connectionTimeoutMillis: 10_000,
      application_name: 'legacy sync',
      // BIGINT columns read back as numbers, as from SQLite; a long64 beyond 2^53 as the exact bigint.
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === pg.types.builtins.INT8 ? exactInt8 : pg.types.getTypeParser(oid, format)) as never,
      },
    });
    client.on('error', () => undefined); // a dropped connection surfaces as the next query's error
    try {
      await client.connect();
      if (options.readOnly) await client.query('SET default_transaction_read_only = on');
      // 0 would mean "wait for ever" to PostgreSQL: the shortest wait it has is 1 ms.
      if (options.lockTimeoutMs !== undefined) await client.query(`SET lock_timeout = ${Math.max(1, Math.trunc(options.lockTimeoutMs))}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw pgError(error, target.display);
    }
    return new PostgresSyncStore(target.display, client);
  }

  protected async query<T>(sql: string, params: unknown[] = []): Promise<{ rows: T[]; changes: number }> {
    try {
      const r = await this.client.query(toPg(sql), params);
      return { rows: r.rows as T[], changes: r.rowCount ?? 0 };
    } catch (error) {
      throw pgError(error, this.display);
    }
  }

  protected async exec(sql: string): Promise<void> {
    await this.query(sql);
  }

  async acquireRunLock(): Promise<void> {
    const { rows } = await this.query<{ ok: boolean }>(
      `SELECT pg_try_advisory_lock(hashtextextended('legacy sync ' || coalesce(current_schema(), ''), 0)) AS ok`,
    );
    if (!rows[0]?.ok)
      throw new LockBusyError(`another sync is already running on ${this.display}`, { hint: 'wait for it to finish; overlapping runs are refused' });
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  /** One statement per page: the keys and the stamps as two array parameters, typed like the table's columns. */
  protected async insertScan(rows: Array<[unknown, unknown]>, table: string, keyColumn: string): Promise<void> {
    const keyType = (await this.tableColumns(table)).find((c) => c.name === keyColumn)?.type ?? 'text';
    await this.query(`INSERT INTO ${dialect.scan} (k, s) SELECT * FROM unnest(?::${keyType}[], ?::bigint[]) ON CONFLICT DO NOTHING`, [
      rows.map((r) => toSql(r[0])),
      rows.map((r) => toSql(r[1])),
    ]);
  }

  /**
   * One statement per page: each column arrives as one array parameter (`unnest($1::text[], $2::bigint[], …)`,
   * typed like the table's columns), so a page never nears the 65,535-parameter limit and the statement
   * text stays the same. `RETURNING (xmax = 0)` tells inserted from updated rows; skipped rows return nothing.
   */
  async upserter(table: string, keyColumn: string, columns: string[], rewriteAll = false): Promise<Upsert> {
    const dataColumns = columns.filter((c) => c !== keyColumn);
    const types = new Map((await this.tableColumns(table)).map((c) => [c.name, c.type]));
    const source = `SELECT * FROM unnest(${this.upsertColumns(keyColumn, dataColumns)
      .map((c) => `?::${types.get(c)}[]`)
      .join(', ')})`;
    const k = quoteId(keyColumn);
    const sql = this.upsertSql(table, keyColumn, dataColumns, source, !rewriteAll, ` RETURNING (xmax = 0) AS inserted, ${k}::text AS k`);
    // A change feed needs the stored rows to name the changed fields (read in the same transaction).
    const observed = this.changeObserver !== undefined;
    const previous = `SELECT *, ${k}::text AS _k FROM ${quoteId(table)} WHERE ${k} = ANY(?::${types.get(keyColumn)}[])`;
    return async (rows, syncedAt) => {
      // One statement may not touch a row twice: of repeated keys the last wins.
      const last = [...new Map(rows.map((r) => [toSql(r[0]), r])).values()];
      const unique = last.map((r) => upsertParams(r, syncedAt));
      const arrays = unique[0]?.map((_, i) => unique.map((r) => r[i])) ?? [];
      const before =
        observed && unique.length ? new Map((await this.query<Record<string, unknown>>(previous, [arrays[0]])).rows.map((r) => [String(r._k), r])) : undefined;
      const written = unique.length ? (await this.query<{ inserted: boolean; k: string }>(sql, arrays)).rows : [];
      if (before) {
        const byKey = new Map(last.map((r) => [String(toSql(r[0])), r]));
        for (const w of written) {
          const row = byKey.get(w.k);
          const old = before.get(w.k);
          // A row rewritten only to fill new columns (rewriteAll) did not change on the server.
          const same = old !== undefined && old._deleted_at === null && String(old._stamp) === String(toSql(row?.[1]));
          if (row && !same) this.noteChange(rowChange(table, keyColumn, dataColumns, row, old as never));
        }
      }
      const inserted = written.filter((w) => w.inserted).length;
      return { inserted, updated: written.length - inserted, unchanged: rows.length - written.length };
    };
  }
}
