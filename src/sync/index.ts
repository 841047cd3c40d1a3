/**
 * Incremental, crash-safe replication of tables into SQLite or PostgreSQL (./store.ts), built on
 * the get-table exporter (same paging, same value conversion).
 *
 * - First run of a table, or --full: every row, paged, upserted.
 * - Later runs: rows whose modification date (or, for never-modified rows, creation date) is on or
 *   after the stored cursor minus the lookback window. Dates are compared with an inclusive `>=`
 *   (the real server rejected strict `<`/`>` on dates), so equal timestamps at the boundary are
 *   re-read, and upserts compare __STAMP so re-reads never duplicate or rewrite a row.
 * - The cursor only advances when a table's pass completed: each page's rows and the run's
 *   progress commit in one transaction, and the new cursor is the maximum row cursor stored.
 *   A crash at any point leaves the database consistent and the next run re-reads from the old
 *   cursor, so nothing is lost or duplicated.
 * - A cursor filter the server rejects → a full read of that table, with a warning.
 * - --reconcile: the server's current key set (keys only) is compared and missing rows get _deleted_at.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SyncTableConfig } from '../config/store.js';
import { BadDataError, FilterNotAppliedError, NotFoundError, UsageError } from '../errors/index.js';
import type { RestClient } from '../http/index.js';
import type { Attribute, DataClass } from '../http/types.js';
import type { Logger } from '../log/index.js';
import { exportRows, planExport, type ExportPlan, type ExportSummary } from '../table/export.js';
import { attributeNamed } from '../table/query.js';
import { anyOf, conditionCheck, type RowCheck } from '../table/verify.js';
import { sqlTypeOf, type StoredColumn, type SyncStore, type TableState, type UpsertCounts } from './store.js';

export { SyncStore, openSyncStore, syncTarget, type SyncTarget } from './store.js';

export interface SyncOptions {
  full?: boolean;
  reconcile?: boolean;
  dryRun?: boolean;
  /** Re-read this far behind the cursor (ms). Default: 0 (the cursor's day is always re-read). */
  lookbackMs?: number;
  pageSize?: number;
  concurrency?: number;
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (table: string, rows: number, total?: number) => void;
}

export interface TableResult {
  table: string;
  mode: 'full' | 'incremental' | 'full (cursor filter rejected)' | 'full (window not applied by the server)';
  status: 'completed' | 'failed' | 'dry-run';
  fetched: number;
  inserted: number;
  updated: number;
  unchanged: number;
  deleted: number;
  cursor: string | null;
  expected?: number;
  /** Rows the server sent although they are outside the incremental window (it did not apply it). */
  outsideWindow?: number;
  addedColumns: string[];
  vanishedColumns: string[];
  error?: string;
}

const DEFAULT_CURSOR = [['modified_date', 'modified_time'], ['created_date', 'created_time']] as const;

export function normaliseTableConfig(entry: string | SyncTableConfig): SyncTableConfig {
  return typeof entry === 'string' ? { name: entry } : entry;
}

export function catalogHash(attrs: Attribute[]): string {
  return createHash('sha256').update(attrs.map((a) => `${a.name}:${a.kind}:${a.type}`).join('\n')).digest('hex').slice(0, 16);
}

/** Cursor field pairs [date, time] that exist in the dataclass, most specific first. */
function cursorFields(dc: DataClass, config: SyncTableConfig): Array<[Attribute, Attribute | undefined]> {
  const names: string[][] = config.cursor?.length ? [config.cursor] : DEFAULT_CURSOR.map((p) => [...p]);
  const pairs: Array<[Attribute, Attribute | undefined]> = [];
  for (const [dateName, timeName] of names as Array<[string, string | undefined]>) {
    const date = dc.attributes.find((a) => a.name === dateName && a.kind === 'storage');
    if (!date) continue;
    const time = timeName ? dc.attributes.find((a) => a.name === timeName && a.kind === 'storage') : undefined;
    pairs.push([date, time]);
  }
  if (config.cursor?.length && pairs.length === 0) {
    attributeNamed(dc, config.cursor[0]!, 'cursor field'); // throws with suggestions
  }
  return pairs;
}

/** `2025-01-27T20:35:41` from converted date/time values, or null. */
function cursorOf(date: unknown, time: unknown): string | null {
  if (typeof date !== 'string' || !date) return null;
  return `${date}T${typeof time === 'string' && time ? time : '00:00:00'}`;
}

function dayMinus(cursor: string, ms: number): string {
  const t = Date.parse(`${cursor.slice(0, 10)}T00:00:00Z`) - ms;
  return new Date(t).toISOString().slice(0, 10);
}

export class Syncer {
  constructor(
    private readonly client: RestClient,
    private readonly store: SyncStore | undefined,
    private readonly options: SyncOptions,
  ) {}

  async syncTable(config: SyncTableConfig, runId: string): Promise<TableResult> {
    const { logger } = this.options;
    const dc = await this.client.dataClass(config.name);
    const keyName = config.key ?? dc.key[0]?.name;
    if (!keyName) throw new BadDataError(`${dc.name} has no primary key in the catalog; set "key" for it in sync.tables`);
    const keyAttr = attributeNamed(dc, keyName, 'key');
    const attrs = dc.attributes.filter((a) => a.kind === 'storage' || a.kind === 'relatedEntity');
    const columns: StoredColumn[] = attrs.map((a) => ({ name: a.name, sqlType: sqlTypeOf(a) }));
    const hash = catalogHash(attrs);
    const pairs = cursorFields(dc, config);
    const state = await this.store?.state(dc.name);
    const result: TableResult = {
      table: dc.name,
      mode: 'full',
      status: 'completed',
      fetched: 0,
      inserted: 0,
      updated: 0,
      unchanged: 0,
      deleted: 0,
      cursor: state?.cursor_value ?? null,
      addedColumns: [],
      vanishedColumns: [],
    };

    // Incremental when we have a cursor and may use it, and the server applies filters.
    let where: { filter?: string; params: unknown[]; check?: RowCheck } | undefined;
    if (!this.options.full && state?.cursor_value && pairs.length > 0) {
      const since = dayMinus(state.cursor_value, this.options.lookbackMs ?? 0);
      const parts = pairs.map(([date]) => `${date.name} >= :1`);
      const checks = pairs.map(([date]) => conditionCheck(date, '>=', since, `${date.name}>=${since}`)).filter((c): c is RowCheck => c !== undefined);
      where = { filter: parts.join(' OR '), params: [since], check: checks.length === pairs.length ? anyOf(checks, parts.join(' OR ')) : undefined };
      result.mode = 'incremental';
      try {
        await this.client.ensureFiltersApplied(dc);
      } catch (error) {
        if (!(error instanceof FilterNotAppliedError)) throw error;
        // Reading everything is correct (upserts compare stamps), only slower: say so, never pretend.
        logger.warn(`${dc.name}: ${error.message.replace(/; nothing was read$/, '')}; the incremental window cannot be applied, reading the whole table`);
        result.mode = 'full (window not applied by the server)';
        where = undefined;
      }
    } else if (!this.options.full && state?.cursor_value && pairs.length === 0) {
      logger.warn(`${dc.name} has no modification or creation date fields; reading it in full`);
    }

    const plan = async (filter?: { filter?: string; params: unknown[]; check?: RowCheck }): Promise<ExportPlan> => {
      const p = await planExport(this.client, {
        table: dc.name,
        meta: true,
        pageSize: this.options.pageSize,
        concurrency: this.options.concurrency,
      });
      if (filter) p.query = { ...p.query, filter: filter.filter, params: filter.params, check: filter.check, onMismatch: 'count' };
      return p;
    };

    if (this.options.dryRun) {
      const p = await plan(where);
      result.status = 'dry-run';
      try {
        result.expected = await this.client.count(dc.name, { filter: p.query.filter, params: p.query.params });
      } catch (error) {
        if (!(error instanceof BadDataError) || error instanceof NotFoundError || !where) throw error;
        result.mode = 'full (cursor filter rejected)';
        result.expected = await this.client.count(dc.name, {});
      }
      return result;
    }

    const store = this.store!;
    const started = new Date().toISOString();
    // Schema: create, or absorb new attributes; keep vanished ones and warn once.
    result.addedColumns = await store.ensureTable(dc.name, keyAttr.name, columns, sqlTypeOf(keyAttr));
    if (result.addedColumns.length) logger.warn(`${dc.name}: new attributes in the catalog, added columns ${result.addedColumns.join(', ')}`);
    const have = (await store.existingColumns(dc.name)).filter((c) => !c.startsWith('_'));
    const vanished = have.filter((c) => !attrs.some((a) => a.name === c));
    const warned = new Set<string>(JSON.parse(state?.vanished_warned ?? '[]') as string[]);
    const newlyVanished = vanished.filter((c) => !warned.has(c));
    if (newlyVanished.length) logger.warn(`${dc.name}: attributes no longer in the catalog, kept as columns: ${newlyVanished.join(', ')}`);
    result.vanishedColumns = vanished;

    await store.startRun({ run_id: runId, table_name: dc.name, started, mode: result.mode });
    try {
      let p = await plan(where);
      const schemaChanged = result.addedColumns.length > 0 || (state?.catalog_hash != null && state.catalog_hash !== hash);
      const upsert = await store.upserter(dc.name, keyAttr.name, attrs.map((a) => a.name), schemaChanged);
      // Column positions in the exported rows: [__KEY, __STAMP, __TIMESTAMP, ...attrs].
      const index = new Map(p.columns.map((c, i) => [c.name, i]));
      const keyIdx = index.get(keyAttr.name)!;
      const dataIdx = attrs.filter((a) => a.name !== keyAttr.name).map((a) => index.get(a.name)!);
      const pairIdx = pairs.map(([d, t]) => [index.get(d.name)!, t ? index.get(t.name) : undefined] as const);
      const layout = (row: unknown[]): unknown[] => {
        let cursor: string | null = null;
        for (const [d, t] of pairIdx) {
          cursor = cursorOf(row[d], t === undefined ? undefined : row[t]);
          if (cursor) break;
        }
        return [row[keyIdx], row[1], row[2], cursor, ...dataIdx.map((i) => row[i])];
      };

      const summary: Partial<ExportSummary> = {};
      const runPages = async () => {
        for await (const rows of exportRows(this.client, p, {
          logger,
          summary,
          onStart: (total) => this.options.onProgress?.(dc.name, 0, total),
          onPage: (pr) => this.options.onProgress?.(dc.name, pr.rows, pr.total),
        })) {
          if (this.options.signal?.aborted) throw new Error('interrupted');
          const syncedAt = new Date().toISOString();
          // The page and the run's progress commit together.
          const counts: UpsertCounts = await store.transaction(async () => {
            const c = await upsert(rows.map(layout), syncedAt);
            await store.progressRun(runId, dc.name, { rows_fetched: rows.length, inserted: c.inserted, updated: c.updated });
            return c;
          });
          result.fetched += rows.length;
          result.inserted += counts.inserted;
          result.updated += counts.updated;
          result.unchanged += counts.unchanged;
        }
      };
      try {
        await runPages();
      } catch (error) {
        // The server rejected the cursor filter: never silently miss rows, read everything.
        if (!(error instanceof BadDataError) || error instanceof NotFoundError || !where || result.fetched > 0) throw error;
        logger.warn(`${dc.name}: the server rejected the incremental filter (${error.message}); reading the whole table instead`);
        result.mode = 'full (cursor filter rejected)';
        where = undefined;
        p = await plan();
        await runPages();
      }

      if (summary.outsideFilter) {
        // Harmless for the copy (every row is upserted by stamp), but the window is not what it seems.
        result.outsideWindow = summary.outsideFilter;
        logger.warn(`${dc.name}: the server sent ${summary.outsideFilter} row(s) outside the incremental window (${where?.filter}); it did not apply the window`);
      }
      if (this.options.reconcile) result.deleted = await this.reconcile(dc, keyAttr, runId);

      // The pass is complete: advance the cursor together with the run's end.
      const finished = new Date().toISOString();
      const { cursor, boundary } = await store.cursorOf(dc.name, keyAttr.name);
      const next: TableState = {
        table_name: dc.name,
        key_column: keyAttr.name,
        cursor_value: cursor ?? state?.cursor_value ?? null,
        boundary_keys: JSON.stringify(boundary),
        last_full_sync: result.mode === 'incremental' ? state?.last_full_sync ?? null : finished,
        last_success: finished,
        catalog_hash: hash,
        columns: JSON.stringify(columns),
        vanished_warned: JSON.stringify(vanished),
        last_error: null,
      };
      await store.transaction(async () => {
        await store.saveState(next);
        await store.finishRun(runId, dc.name, 'completed', finished);
      });
      result.cursor = next.cursor_value;
      return result;
    } catch (error) {
      const message = (error as Error).message;
      const finished = new Date().toISOString();
      try {
        await store.transaction(async () => {
          await store.finishRun(runId, dc.name, this.options.signal?.aborted ? 'interrupted' : 'failed', finished, message);
          if (state) await store.saveState({ ...state, last_error: message });
          else await store.saveState({ table_name: dc.name, key_column: keyAttr.name, cursor_value: null, boundary_keys: null, last_full_sync: null, last_success: null, catalog_hash: hash, columns: JSON.stringify(columns), vanished_warned: null, last_error: message });
        });
      } catch (recording) {
        // The database itself failed (e.g. the connection dropped): the first error says more.
        logger.debug(`could not record the failed run: ${(recording as Error).message}`);
      }
      throw error;
    }
  }

  /** Mark rows the server no longer has. Reads the key set only, in large pages, into a temp table. */
  private async reconcile(dc: DataClass, keyAttr: Attribute, runId: string): Promise<number> {
    const store = this.store!;
    const scan = await store.beginKeyScan(dc.name, keyAttr.name);
    const p = await planExport(this.client, { table: dc.name, fields: [keyAttr.name], pageSize: Math.max(this.options.pageSize ?? 1000, 5000), concurrency: this.options.concurrency });
    for await (const rows of exportRows(this.client, p, { logger: this.options.logger })) {
      await scan.add(rows.map((r) => r[0]));
    }
    const deleted = await scan.finish(new Date().toISOString());
    if (deleted) await store.progressRun(runId, dc.name, { rows_fetched: 0, inserted: 0, updated: 0, deleted });
    return deleted;
  }
}

export function newRunId(): string {
  return `${new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
}

/** `7d`, `12h`, `30m`, `45s` → ms. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!m) throw new UsageError(`'${text}' is not a duration like 7d, 12h or 30m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 'ms'];
  return Number(m[1]) * unit;
}
