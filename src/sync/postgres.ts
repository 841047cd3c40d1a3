/**
 * The PostgreSQL target of sync (node-postgres, imported only for a `postgres://` --db). One client for
 * the whole run; it also holds the session-level advisory lock that allows one sync per database and
 * schema, which PostgreSQL frees by itself when a killed process's connection drops.
 */
import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import type { from as CopyFrom } from 'pg-copy-streams';
import { AuthError, BadDataError, ConfigError, LegacyError, LockBusyError, TemporaryError, UnavailableError } from '../errors/index.js';
import { SyncStore, quoteId, rowChange, toSql, type Dialect, type SyncTarget, type Upsert } from './store.js';

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
    private readonly copyFrom: typeof CopyFrom,
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
    return new PostgresSyncStore(target.display, client, (await import('pg-copy-streams')).default.from);
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
   * Pages go in by COPY (text format, ./postgres.ts copyLine), not as statement parameters: pg's
   * array-literal serializer cost more client CPU than the rest of the sync together. Of repeated
   * keys in a page the last wins (one statement may not touch a row twice).
   * - A table empty when the pass starts (a first load): COPY straight into it, under a savepoint;
   *   a key already there (a row that moved between pages, or someone else's insert) rolls the
   *   page back, and it and the rest of the pass take the general way.
   * - Otherwise: COPY into a temporary staging table, then one INSERT … SELECT … ON CONFLICT of the
   *   rows that are new, re-created or have another stamp (unchanged rows are neither written nor
   *   locked; ON CONFLICT would lock each one). `RETURNING (xmax = 0)` tells inserted from updated.
   * The batches' commits are asynchronous (synchronous_commit off, see asyncCommit).
   */
  async upserter(table: string, keyColumn: string, columns: string[], rewriteAll = false): Promise<Upsert> {
    const dataColumns = columns.filter((c) => c !== keyColumn);
    const all = this.upsertColumns(keyColumn, dataColumns);
    const t = quoteId(table);
    const k = quoteId(keyColumn);
    const list = all.map(quoteId).join(', ');
    // One staging table per layout (a column added later makes another), in this session's pg_temp.
    const stage = `pg_temp.${quoteId(
      `_legacy_stage_${createHash('sha256')
        .update(JSON.stringify([table, all]))
        .digest('hex')
        .slice(0, 16)}`,
    )}`;
    const changedOnly = rewriteAll
      ? ''
      : ` LEFT JOIN ${t} AS o ON o.${k} = s.${k} WHERE o.${k} IS NULL OR o._stamp IS DISTINCT FROM s._stamp OR o._deleted_at IS NOT NULL`;
    const source = `SELECT ${all.map((c) => `s.${quoteId(c)}`).join(', ')} FROM ${stage} AS s${changedOnly}`;
    // A change feed needs the stored rows to name the changed fields (read in the same transaction).
    const observed = this.changeObserver !== undefined;
    const merge = observed
      ? this.upsertSql(table, keyColumn, dataColumns, source, !rewriteAll, ` RETURNING (xmax = 0) AS inserted, ${k}::text AS k`)
      : `WITH w AS (${this.upsertSql(table, keyColumn, dataColumns, source, !rewriteAll, ' RETURNING (xmax = 0) AS i')}) SELECT count(*) FILTER (WHERE i) AS inserted, count(*) AS written FROM w`;
    const previous = `SELECT o.*, o.${k}::text AS _k FROM ${t} AS o JOIN ${stage} AS s ON s.${k} = o.${k}`;
    const prepare = `${this.asyncCommit(observed)}CREATE TEMP TABLE IF NOT EXISTS ${stage.slice('pg_temp.'.length)} AS SELECT ${list} FROM ${t} WITH NO DATA; TRUNCATE ${stage}`;
    let pageBytes = 0;
    let direct = await this.isEmpty(table);

    const staged = async (rows: unknown[][], unique: unknown[][], text: Buffer) => {
      await this.run(prepare);
      await this.copyIn(`COPY ${stage} (${list}) FROM STDIN`, text);
      if (!observed) {
        const [n] = (await this.query<{ inserted: number; written: number }>(merge)).rows;
        const written = Number(n?.written ?? 0);
        const inserted = Number(n?.inserted ?? 0);
        return { inserted, updated: written - inserted, unchanged: rows.length - written };
      }
      const before = new Map((await this.query<Record<string, unknown>>(previous)).rows.map((r) => [String(r._k), r]));
      const written = (await this.query<{ inserted: boolean; k: string }>(merge)).rows;
      const byKey = new Map(unique.map((r) => [String(toSql(r[0])), r]));
      for (const w of written) {
        const row = byKey.get(w.k);
        const old = before.get(w.k);
        // A row rewritten only to fill new columns (rewriteAll) did not change on the server.
        const same = old !== undefined && old._deleted_at === null && String(old._stamp) === String(toSql(row?.[1]));
        if (row && !same) this.noteChange(rowChange(table, keyColumn, dataColumns, row, old as never));
      }
      const inserted = written.filter((w) => w.inserted).length;
      return { inserted, updated: written.length - inserted, unchanged: rows.length - written.length };
    };

    return async (rows, syncedAt) => {
      // One statement may not touch a row twice: of repeated keys the last wins.
      const unique = lastOfEachKey(rows);
      if (!unique.length) return { inserted: 0, updated: 0, unchanged: rows.length };
      const text = copyText(unique, syncedAt, pageBytes);
      pageBytes = Math.ceil(text.length * 1.25);
      if (direct) {
        await this.run(`${this.asyncCommit(observed)}SAVEPOINT legacy_copy`);
        try {
          await this.copyIn(`COPY ${t} (${list}) FROM STDIN`, text);
          await this.run('RELEASE SAVEPOINT legacy_copy');
          if (observed) for (const row of unique) this.noteChange(rowChange(table, keyColumn, dataColumns, row, undefined));
          return { inserted: unique.length, updated: 0, unchanged: rows.length - unique.length };
        } catch (error) {
          if ((error as { code?: string }).code !== '23505') throw pgError(error, this.display);
          // A key is there already: this page and the rest of the pass go the general way.
          await this.run('ROLLBACK TO SAVEPOINT legacy_copy; RELEASE SAVEPOINT legacy_copy');
          direct = false;
        }
      }
      return staged(rows, unique, text);
    };
  }

  /**
   * `SET LOCAL synchronous_commit = off` for a sync's batch: its COMMIT does not wait for the WAL
   * flush. A server crash may lose the last few batches committed, never part of one, and the table's
   * state (its cursor) commits in its own transaction after them all, with the session's setting: a
   * synchronous commit flushes all WAL before it, so a sync that finished is durable as a whole, and
   * one cut short re-reads from the old cursor. Not under a change feed: the feed tells its sink
   * before the commit, and a commit lost after that would make it tell the change twice.
   */
  private asyncCommit(observed: boolean): string {
    return observed ? '' : 'SET LOCAL synchronous_commit = off; ';
  }

  /** Statements without parameters or results (several at once, the simple protocol). */
  private async run(sql: string): Promise<void> {
    try {
      await this.client.query(sql);
    } catch (error) {
      throw pgError(error, this.display);
    }
  }

  /** COPY … FROM STDIN of one page's text; rejects with pg's error (its code intact). */
  private copyIn(sql: string, text: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const stream = this.client.query(this.copyFrom(sql));
      stream.on('error', reject);
      stream.on('finish', resolve);
      stream.end(text);
    });
  }
}

/** The last row of each key, in first-seen order (the rows themselves when no key repeats). */
function lastOfEachKey(rows: unknown[][]): unknown[][] {
  const byKey = new Map<unknown, unknown[]>();
  for (const r of rows) byKey.set(toSql(r[0]), r);
  return byKey.size === rows.length ? rows : [...byKey.values()];
}

const SPECIAL = /[\\\t\n\r]/;
const SPECIALS = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const escaped = (c: string) => ESCAPES[c]!;

/**
 * One value as a field of COPY's text format, stored as toSql stores it: `\N` for null, booleans
 * 0/1, objects as JSON text, numbers as String() writes them (the shortest text that reads back as
 * the same double), bigints exact; backslash, tab, newline and carriage return escaped.
 */
export function copyField(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return SPECIAL.test(value) ? value.replace(SPECIALS, escaped) : value;
    case 'number':
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? '1' : '0';
    case 'undefined':
      return '\\N';
    default:
      return value === null ? '\\N' : copyField(JSON.stringify(value));
  }
}

/**
 * Rows [key, stamp, timestamp, cursor, ...data] as COPY text, in upsertColumns order (as upsertParams).
 * Each line is encoded on its own: one string of a whole page, flattened and encoded at once, cost
 * twice as much (a single non-ASCII character makes all of it a two-byte string).
 */
export function copyText(rows: unknown[][], syncedAt: string, sizeHint = 0): Buffer {
  const tail = `\t${copyField(syncedAt)}\n`;
  let buf = Buffer.allocUnsafe(Math.max(sizeHint, 64 * 1024));
  let at = 0;
  for (const r of rows) {
    let line = copyField(r[0]);
    for (let i = 4; i < r.length; i++) line += `\t${copyField(r[i])}`;
    line += `\t${copyField(r[1])}\t${copyField(r[2])}\t${copyField(r[3])}${tail}`;
    if (buf.length - at < line.length * 3) {
      const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, at + line.length * 3));
      buf.copy(bigger, 0, 0, at);
      buf = bigger;
    }
    at += buf.write(line, at);
  }
  return buf.subarray(0, at);
}
