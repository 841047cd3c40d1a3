/**
 * Incremental, crash-safe replication of tables into SQLite or PostgreSQL (./store.ts), built on
 * the get-table exporter (same paging, same value conversion, same checks of what the server did).
 *
 * - How changes are found (./window.ts): 4D's global stamp where the server tracks changes, else a
 *   date+time or date window (with a lookback), else a full read. The first pass, or --full, reads
 *   every row. Rows are upserted comparing __STAMP, so re-reads never duplicate or rewrite a row.
 * - The cursor only advances when a table's pass completed: rows and the run's progress commit
 *   together, a batch of pages per transaction, and the new cursor is taken from what was stored (and, for
 *   the global stamp, from before the pass began). A crash at any point leaves the database
 *   consistent and the next run re-reads from the old cursor, so nothing is lost or duplicated.
 * - A window the server rejects, or a server that does not apply filters at all: a full read of
 *   that table, said as such (never shown as incremental).
 * - --reconcile (./reconcile.ts): every row's key and stamp compared with the copy; missing and
 *   stale rows fetched, vanished ones marked _deleted_at. `sync verify` runs the same comparison
 *   read-only.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SyncTableConfig } from '../config/store.js';
import {
  BadDataError,
  CannotCreateError,
  FilterNotAppliedError,
  InterruptedError,
  RequestRejectedError,
  abortedBecause,
  formatErrorLine,
  interruptionOf,
} from '../errors/index.js';
import type { RestClient } from '../rest/index.js';
import type { Attribute, DataClass } from '../rest/types.js';
import type { Logger } from '../log/index.js';
import { exportRows, type ExportSummary } from '../table/paging/read.js';
import { planExport, type ExportPlan } from '../table/plan/plan.js';
import { jsonText } from '../table/convert.js';
import { attributeNamed } from '../table/plan/query.js';
import { allOf, conditionCheck } from '../table/verify.js';
import { modeText } from './mode.js';
import { compare, reconcile, type ReconcileResult } from './reconcile.js';
import { exactInteger, sqlTypeOf, type ScanDiff, type StoredColumn, type SyncStore, type TableState, type UpsertCounts } from './store.js';

import { DELETED_RECORDS, GLOBAL_STAMP, chooseWindow, cursorFields, globalStampOf, type Tracking, type Window } from './window.js';

export { SyncStore, type SyncTarget, type ScanDiff } from './store.js';
export { openSyncStore, syncTarget } from './open.js';
export type { Tracking } from './window.js';

export interface SyncOptions {
  full?: boolean;
  reconcile?: boolean;
  dryRun?: boolean;
  /** Re-read this far behind the cursor (ms). Default: 0 (the cursor's day or second is always re-read). */
  lookbackMs?: number;
  pageSize?: number;
  /** Pages in flight, fixed (sync does not adapt them as get-table does); default DEFAULT_PAGES_IN_FLIGHT. */
  concurrency?: number;
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (table: string, rows: number, total?: number) => void;
  /** Entity sets for the incremental reads (default true; 'auto': only when a window has more than a page). */
  entitySet?: boolean | 'auto';
  /**
   * 4D's global stamp the previous pass of this table saw (TableResult.serverStamp): the same again
   * means nothing was written or deleted anywhere since, so `__DeletedRecords` is not asked.
   */
  serverStampBefore?: number;
}

export type VerifyResult = ScanDiff & { table: string; equal: boolean };

/** Rows written in one transaction (a batch of pages), unless WRITE_BATCH_MS passed first (see readPass). */
const WRITE_BATCH_ROWS = 20_000;
const WRITE_BATCH_MS = 2_000;
/** How long an open batch waits for the next page before it is committed (see readPass). */
const WRITE_BATCH_GRACE_MS = 5;

/** Whether `promise` settles (either way) within `ms`. */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    late,
  ]).finally(() => clearTimeout(timer));
}

export interface TableResult {
  table: string;
  mode: 'full' | 'incremental';
  /** Why a pass meant to be incremental read everything (absent: it did not, or it was meant to be full). */
  reason?: 'cursor filter rejected' | 'window not applied by the server';
  /** How changes were found this pass. */
  tracking?: Tracking;
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
  /** What the key-and-stamp comparison of --reconcile found and repaired. */
  reconcile?: { missing: number; extra: number; stale: number; fetched: number; deleted: number; remaining: number };
  addedColumns: string[];
  vanishedColumns: string[];
  error?: string;
  /** 4D's global stamp when the pass read its first page (0: the server does not track changes). */
  serverStamp?: number;
}

export { normaliseTableConfig } from './open.js';

export function catalogHash(attrs: Attribute[]): string {
  return createHash('sha256')
    .update(attrs.map((a) => `${a.name}:${a.kind}:${a.type}`).join('\n'))
    .digest('hex')
    .slice(0, 16);
}

/** A `YYYY-MM-DDTHH:MM:SS` cursor (server-local, no zone) moved by `ms`. */
function shiftCursor(cursor: string, ms: number): string {
  const t = Date.parse(`${cursor.length === 10 ? `${cursor}T00:00:00` : cursor}Z`);
  return Number.isFinite(t) ? new Date(t + ms).toISOString().slice(0, 19) : cursor;
}

/** `2025-01-27T20:35:41` from converted date/time values, or null. */
function cursorOf(date: unknown, time: unknown): string | null {
  if (typeof date !== 'string' || !date) return null;
  return `${date}T${typeof time === 'string' && time ? time : '00:00:00'}`;
}

/** What a table's pass works with, from the catalog and the stored state. */
interface TableContext {
  config: SyncTableConfig;
  dc: DataClass;
  keyAttr: Attribute;
  attrs: Attribute[];
  columns: StoredColumn[];
  hash: string;
  pairs: Array<[Attribute, Attribute | undefined]>;
  globalStamp?: Attribute;
  state?: TableState;
}

const emptyResult = (table: string, cursor: string | null): TableResult => ({
  table,
  mode: 'full',
  status: 'completed',
  fetched: 0,
  inserted: 0,
  updated: 0,
  unchanged: 0,
  deleted: 0,
  cursor,
  addedColumns: [],
  vanishedColumns: [],
});

export class Syncer {
  private readonly options: SyncOptions;

  constructor(
    private readonly client: RestClient,
    private readonly store: SyncStore | undefined,
    options: SyncOptions,
  ) {
    // Pages in flight adapt to the server as get-table's do, unless the config pins them.
    this.options = options;
  }

  /** The database of a run that writes (a dry run or a verify without a copy yet has none). */
  private get db(): SyncStore {
    if (!this.store) throw new Error('this sync pass needs its database, and none is open');
    return this.store;
  }

  /** The table's attributes, key, cursor fields and change tracking, and its stored state. */
  async context(config: SyncTableConfig): Promise<TableContext> {
    const dc = await this.client.dataClass(config.name);
    const keyName = config.key ?? dc.key[0]?.name;
    if (!keyName) throw new BadDataError(`${dc.name} has no primary key in the catalog; set "key" for it in sync.tables`);
    const keyAttr = attributeNamed(dc, keyName, 'key');
    const attrs = dc.attributes.filter((a) => a.kind === 'storage' || a.kind === 'relatedEntity');
    const catalog = (await this.client.catalog()).map((c) => c.name);
    return {
      config,
      dc,
      keyAttr,
      attrs,
      columns: attrs.map((a) => ({ name: a.name, sqlType: sqlTypeOf(a) })),
      hash: catalogHash(attrs),
      pairs: cursorFields(dc, config),
      globalStamp: globalStampOf(dc, catalog),
      state: await this.store?.state(dc.name),
    };
  }

  /** This pass's read (./window.ts), checked against what the server does with filters. */
  private async window(t: TableContext, result: TableResult): Promise<Window> {
    const { logger, full, lookbackMs } = this.options;
    const strictDates =
      !full && t.state?.cursor_value && t.pairs.length && t.pairs.every(([, time]) => time) && !t.globalStamp
        ? await this.client.acceptsStrictDates(t.dc, t.pairs[0]![0])
        : false;
    const window = chooseWindow({
      dc: t.dc,
      pairs: t.pairs,
      globalStamp: t.globalStamp,
      dateCursor: t.state?.cursor_value ?? null,
      stampCursor: t.state?.stamp_cursor != null && t.state.tracking === 'global stamp' ? Number(t.state.stamp_cursor) : null,
      full: full === true,
      lookbackMs: lookbackMs ?? 0,
      strictDates: Boolean(strictDates),
    });
    result.tracking = window.tracking;
    if (!window.filter) {
      if (!full && t.state?.last_success && window.tracking === 'full')
        logger.warn(`${t.dc.name} has no modification or creation date fields; reading it in full`);
      return window;
    }
    result.mode = 'incremental';
    try {
      // Sync's windows are checked row by row and read by key, so extra rows are harmless: a cached
      // canary answer may be trusted here.
      await this.client.ensureFiltersApplied(t.dc, true);
    } catch (error) {
      if (!(error instanceof FilterNotAppliedError)) throw error;
      // Reading everything is correct (upserts compare stamps), only slower: say so, never pretend.
      logger.warn(`${t.dc.name}: ${error.message.replace(/; nothing was read$/, '')}; the incremental window cannot be applied, reading the whole table`);
      result.mode = 'full';
      result.reason = 'window not applied by the server';
      return { tracking: window.tracking, params: [] };
    }
    return window;
  }

  private async plan(t: TableContext, window?: Window): Promise<ExportPlan> {
    const p = await planExport(this.client, {
      table: t.dc.name,
      meta: true,
      pageSize: this.options.pageSize,
      concurrency: this.options.concurrency,
      entitySet: window?.filter ? (this.options.entitySet ?? true) : true,
    });
    if (window?.filter) p.query = { ...p.query, filter: window.filter, params: window.params, check: window.check, onMismatch: 'count' };
    return p;
  }

  async syncTable(config: SyncTableConfig, runId: string): Promise<TableResult> {
    const t = await this.context(config);
    const result = emptyResult(t.dc.name, t.state?.cursor_value ?? null);
    let window = await this.window(t, result);
    if (this.options.dryRun) return this.dryRun(t, window, result);

    const { logger } = this.options;
    const store = this.db;
    const { dc } = t;
    await this.prepareTable(t, result);
    await store.startRun({ run_id: runId, table_name: dc.name, started: new Date().toISOString(), mode: modeText(result) });
    // What the cursors may not pass: when the pass began, and the newest global stamp stored before it.
    const before = { at: Date.now(), stamp: t.globalStamp ? await store.maxOf(dc.name, GLOBAL_STAMP) : null };
    try {
      let pass: Partial<ExportSummary>;
      try {
        pass = await this.readPass(t, window, runId, result);
      } catch (error) {
        // The server rejected the window's filter: never silently miss rows, read everything.
        if (!(error instanceof RequestRejectedError) || !window.filter || result.fetched > 0) throw error;
        logger.warn(`${dc.name}: the server rejected the incremental filter (${error.message}); reading the whole table instead`);
        result.mode = 'full';
        result.reason = 'cursor filter rejected';
        window = { tracking: window.tracking, params: [] };
        pass = await this.readPass(t, window, runId, result);
      }
      if (pass.outsideFilter) {
        // Harmless for the copy (every row is upserted by stamp), but the window is not what it seems.
        result.outsideWindow = pass.outsideFilter;
        logger.warn(`${dc.name}: the server sent ${pass.outsideFilter} row(s) outside the incremental window (${window.filter}); it did not apply the window`);
      }
      // Deletions since the last stamp cursor, whatever this pass read (a full read marks none).
      const lastStamp = t.state?.tracking === 'global stamp' && t.state.stamp_cursor != null ? Number(t.state.stamp_cursor) : undefined;
      result.serverStamp = pass.globalStamp ?? 0;
      // Nothing written anywhere since the previous pass: the same global stamp, and (should a server
      // not move it as documented) no row read either. A pass that read rows always asks, and a pass
      // that skips does not move the stamp cursor, so a deletion it missed is found by the next ask.
      const untouched =
        this.options.serverStampBefore !== undefined && result.serverStamp > 0 && result.serverStamp === this.options.serverStampBefore && result.fetched === 0;
      if (t.globalStamp && lastStamp !== undefined && !untouched)
        result.deleted += await this.trackedDeletions(t, lastStamp, runId, result.reason !== 'window not applied by the server');
      let reconciled: ReconcileResult | undefined;
      if (this.options.reconcile) {
        reconciled = await this.reconcile(t, runId, result);
        result.deleted += reconciled.deleted;
      }
      await this.finish(t, window, pass, before, runId, result, reconciled);
      return result;
    } catch (error) {
      await this.recordFailure(t, runId, error as Error);
      throw error;
    }
  }

  private async dryRun(t: TableContext, window: Window, result: TableResult): Promise<TableResult> {
    result.status = 'dry-run';
    try {
      result.expected = await this.client.count(t.dc.name, { filter: window.filter, params: window.params });
    } catch (error) {
      if (!(error instanceof RequestRejectedError) || !window.filter) throw error;
      result.mode = 'full';
      result.reason = 'cursor filter rejected';
      result.expected = await this.client.count(t.dc.name, {});
    }
    return result;
  }

  /** Create the table, or absorb new attributes; keep vanished ones and warn once. */
  private async prepareTable(t: TableContext, result: TableResult): Promise<void> {
    const { logger } = this.options;
    const store = this.db;
    result.addedColumns = await store.ensureTable(t.dc.name, t.keyAttr.name, t.columns, sqlTypeOf(t.keyAttr));
    if (result.addedColumns.length) logger.warn(`${t.dc.name}: new attributes in the catalog, added columns ${result.addedColumns.join(', ')}`);
    // The global-stamp cursor is the largest stamp stored: an index keeps that one lookup.
    if (t.globalStamp) await store.ensureIndex(t.dc.name, GLOBAL_STAMP);
    const have = (await store.existingColumns(t.dc.name)).filter((c) => !c.startsWith('_') || c === GLOBAL_STAMP);
    result.vanishedColumns = have.filter((c) => !t.attrs.some((a) => a.name === c));
    const warned = new Set<string>(JSON.parse(t.state?.vanished_warned ?? '[]') as string[]);
    const newlyVanished = result.vanishedColumns.filter((c) => !warned.has(c));
    if (newlyVanished.length) logger.warn(`${t.dc.name}: attributes no longer in the catalog, kept as columns: ${newlyVanished.join(', ')}`);
  }

  /** Export rows laid out for the upsert: [key, __STAMP, __TIMESTAMP, cursor, ...data]. */
  private layout(t: TableContext, plan: ExportPlan): (row: unknown[]) => unknown[] {
    const index = new Map(plan.columns.map((c, i) => [c.name, i]));
    const keyIdx = index.get(t.keyAttr.name)!;
    const dataIdx = t.attrs.filter((a) => a.name !== t.keyAttr.name).map((a) => index.get(a.name)!);
    const pairIdx = t.pairs.map(([d, time]) => [index.get(d.name)!, time ? index.get(time.name) : undefined] as const);
    return (row) => {
      let cursor: string | null = null;
      for (const [d, time] of pairIdx) {
        cursor = cursorOf(row[d], time === undefined ? undefined : row[time]);
        if (cursor) break;
      }
      const out = new Array<unknown>(4 + dataIdx.length);
      out[0] = row[keyIdx];
      out[1] = row[1];
      out[2] = row[2];
      out[3] = cursor;
      for (let j = 0; j < dataIdx.length; j++) out[4 + j] = row[dataIdx[j]!];
      return out;
    };
  }

  /**
   * A writer of export rows: page and progress in one transaction of their own, or, with `inOpen`,
   * in the transaction the caller holds open.
   */
  private async writer(t: TableContext, plan: ExportPlan, runId: string, result: TableResult, inOpen = false): Promise<(rows: unknown[][]) => Promise<number>> {
    const store = this.db;
    const schemaChanged = result.addedColumns.length > 0 || (t.state?.catalog_hash != null && t.state.catalog_hash !== t.hash);
    const upsert = await store.upserter(
      t.dc.name,
      t.keyAttr.name,
      t.attrs.map((a) => a.name),
      schemaChanged,
    );
    const layout = this.layout(t, plan);
    return async (rows) => {
      const syncedAt = new Date().toISOString();
      const page = async () => {
        const c = await upsert(rows.map(layout), syncedAt);
        await store.progressRun(runId, t.dc.name, { rows_fetched: rows.length, inserted: c.inserted, updated: c.updated });
        return c;
      };
      const counts: UpsertCounts = inOpen ? await page() : await store.transaction(page);
      result.fetched += rows.length;
      result.inserted += counts.inserted;
      result.updated += counts.updated;
      result.unchanged += counts.unchanged;
      return counts.inserted + counts.updated;
    };
  }

  /** Read the window's rows and upsert them page by page. */
  private async readPass(t: TableContext, window: Window, runId: string, result: TableResult): Promise<Partial<ExportSummary>> {
    const plan = await this.plan(t, window);
    const store = this.db;
    const write = await this.writer(t, plan, runId, result, true);
    const summary: Partial<ExportSummary> = {};
    // Pages are committed in batches (WRITE_BATCH_ROWS rows, or what came in WRITE_BATCH_MS): a
    // commit writes out every index page it touched, and keys arrive in no index's order, so a
    // commit per page of 1,000 rewrote most of each index on every page (measured on 200,000 rows:
    // 4.4 s in SQLite, 2.3 s in batches of 20,000). A batch never waits for the server: when the
    // next page is not there within WRITE_BATCH_GRACE_MS it is committed first, so the write lock
    // (SQLite) or an idle transaction (PostgreSQL) is not held across network or licence waits.
    // A crash still keeps whole batches only.
    const pages = exportRows(this.client, plan, {
      logger: this.options.logger,
      summary,
      onStart: (total) => this.options.onProgress?.(t.dc.name, 0, total),
      onPage: (pr) => this.options.onProgress?.(t.dc.name, pr.rows, pr.total),
    });
    let open = false;
    let batchRows = 0;
    let since = 0;
    const rebuildIndexes = await store.deferIndexes(t.dc.name, t.keyAttr.name);
    let failed = false;
    // A page's write is awaited only when the next page is in hand: while a database server
    // (PostgreSQL) works on page n, this process reads and decodes page n + 1. Writes never overlap
    // one another, and a batch commits only after its last write. (SQLite writes within the call.)
    let writing: Promise<number> | undefined;
    const written = async () => {
      const w = writing;
      writing = undefined;
      await w;
    };
    const commit = async () => {
      await written();
      await store.commit();
      open = false;
    };
    try {
      for (;;) {
        const next = pages.next();
        if (open && !(await settlesWithin(next, WRITE_BATCH_GRACE_MS))) await commit();
        const { value: rows, done } = await next;
        await written();
        if (done) break;
        if (this.options.signal?.aborted) throw interruptionOf(this.options.signal) ?? new InterruptedError('interrupted');
        if (!open) {
          await store.begin();
          open = true;
          batchRows = 0;
          since = performance.now();
        }
        writing = write(rows);
        writing.catch(() => undefined); // awaited (and thrown) at the next page or commit
        batchRows += rows.length;
        if (batchRows >= WRITE_BATCH_ROWS || performance.now() - since >= WRITE_BATCH_MS) await commit();
      }
      if (open) await commit();
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      await writing?.catch(() => undefined);
      // A failed COMMIT too: SQLite asks for a ROLLBACK after one (BUSY, FULL, IOERR).
      if (open) await store.rollback().catch(() => undefined);
      await pages.return(undefined).catch(() => undefined);
      // After a failure the indexes are built here, best effort; not after Ctrl-C or SIGTERM (the
      // build of a large table takes seconds, and a stop must be quick): the next run's ensureTable
      // builds what is left out.
      if (failed && !this.options.signal?.aborted) await rebuildIndexes?.().catch(() => undefined);
    }
    await rebuildIndexes?.();
    return summary;
  }

  /**
   * Change tracking: deletions since the cursor, from `__DeletedRecords`, matched on the primary
   * key (what `__PrimaryKey` holds, whatever key the sync uses). Without working filters every
   * deletion record is read and the table's own are picked here.
   */
  private async trackedDeletions(t: TableContext, since: number, runId: string, filtersWork: boolean): Promise<number> {
    const deleted = await this.client.dataClass(DELETED_RECORDS);
    const stamp = attributeNamed(deleted, '__Stamp', 'attribute');
    const name = attributeNamed(deleted, '__TableName', 'attribute');
    const plan = await planExport(this.client, {
      table: DELETED_RECORDS,
      fields: ['__PrimaryKey', '__Stamp', '__TableName'],
      pageSize: this.options.pageSize,
      concurrency: this.options.concurrency,
      entitySet: this.options.entitySet ?? true,
    });
    if (filtersWork) {
      const check = allOf(
        [conditionCheck(stamp, '>=', since, `__Stamp>=${since}`), conditionCheck(name, '=', t.dc.name, `__TableName=${t.dc.name}`)].filter(
          (c) => c !== undefined,
        ),
      );
      plan.query = { ...plan.query, filter: '__Stamp >= :1 AND __TableName = :2', params: [since, t.dc.name], check, onMismatch: 'count' };
    }
    if (filtersWork) {
      try {
        return await this.markDeletions(t, plan, since, runId);
      } catch (error) {
        // The server refused or ignored the deletions' filter: read them all, pick ours here.
        if (!(error instanceof RequestRejectedError)) throw error;
        this.options.logger.warn(`${t.dc.name}: reading every ${DELETED_RECORDS} entry (${error.message})`);
        plan.query = { ...plan.query, filter: undefined, params: [], check: undefined };
      }
    }
    return this.markDeletions(t, plan, since, runId);
  }

  private async markDeletions(t: TableContext, plan: ExportPlan, since: number, runId: string): Promise<number> {
    const store = this.db;
    const pk = t.dc.attributes.find((a) => a.name === t.dc.key[0]?.name) ?? t.keyAttr;
    const numericKey = sqlTypeOf(pk) !== 'TEXT';
    let marked = 0;
    for await (const rows of exportRows(this.client, plan, { logger: this.options.logger })) {
      // Only the rows the filter asked for count, whatever the server sent.
      const mine = rows.filter((r) => r[2] === t.dc.name && typeof r[1] === 'number' && r[1] >= since);
      const deletions = mine
        .map((r) => ({ key: numericKey ? numericKeyOf(r[0]) : String(r[0]), stamp: r[1] as number }))
        .filter((d) => !(numericKey && Number.isNaN(d.key)));
      const at = new Date().toISOString();
      marked += await store.transaction(async () => {
        const count = await store.markDeleted(t.dc.name, pk.name, deletions, at, GLOBAL_STAMP);
        await store.progressRun(runId, t.dc.name, { rows_fetched: 0, inserted: 0, updated: 0, deleted: count });
        return count;
      });
    }
    return marked;
  }

  /** --reconcile: keys and stamps compared, differences fetched, vanished rows marked. */
  private async reconcile(t: TableContext, runId: string, result: TableResult): Promise<ReconcileResult> {
    const store = this.db;
    const plan = await this.plan(t);
    const write = await this.writer(t, plan, runId, result);
    const r = await reconcile(this.client, { store, table: t.dc.name, keyColumn: t.keyAttr.name, plan, write }, t.dc, t.keyAttr, this.options);
    if (r.deleted) await store.progressRun(runId, t.dc.name, { rows_fetched: 0, inserted: 0, updated: 0, deleted: r.deleted });
    const remaining = r.after.missing + r.after.extra + r.after.stale;
    result.reconcile = { missing: r.before.missing, extra: r.before.extra, stale: r.before.stale, fetched: r.fetched, deleted: r.deleted, remaining };
    if (remaining) this.options.logger.warn(`${t.dc.name}: ${remaining} row(s) changed on the server during the reconcile; run it again to catch them`);
    return r;
  }

  /**
   * The pass is complete: advance the cursors together with the run's end. Neither may pass a change
   * made while the pass ran (a row read early and changed later would be missed):
   * - the date cursor: the newest row cursor stored (ignoring dates more than two days ahead: a typo
   *   must not freeze the window), less the pass's duration and a minute;
   * - the global stamp: the server's stamp when the pass began (never past the newest stored + 1),
   *   else the newest stamp stored before the pass + 1, else none (the next pass reads everything).
   */
  private async finish(
    t: TableContext,
    window: Window,
    pass: Partial<ExportSummary>,
    before: { at: number; stamp: number | null },
    runId: string,
    result: TableResult,
    reconciled?: ReconcileResult,
  ): Promise<void> {
    const store = this.db;
    const finished = new Date().toISOString();
    const horizon = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 19);
    const { cursor: newest, boundary } = await store.cursorOf(t.dc.name, t.keyAttr.name, horizon);
    const cursor = newest ? shiftCursor(newest, -(Date.now() - before.at) - 60_000) : null;
    let stampCursor: string | null = null;
    if (t.globalStamp) {
      const storedAfter = await store.maxOf(t.dc.name, GLOBAL_STAMP);
      const candidates =
        pass.globalStamp && pass.globalStamp > 0
          ? [pass.globalStamp, ...(storedAfter !== null ? [storedAfter + 1] : [])]
          : before.stamp !== null
            ? [before.stamp + 1]
            : [];
      stampCursor = candidates.length ? String(Math.min(...candidates)) : null;
      if (!candidates.length) this.options.logger.warn(`${t.dc.name}: the server reports no global stamp yet; the next pass reads the whole table again`);
    }
    const next: TableState = {
      ...(t.state ?? { last_reconcile: null, reconcile_result: null, last_verify: null, verify_result: null }),
      table_name: t.dc.name,
      key_column: t.keyAttr.name,
      cursor_value: cursor ?? t.state?.cursor_value ?? null,
      boundary_keys: jsonText(boundary),
      last_full_sync: result.mode === 'incremental' ? (t.state?.last_full_sync ?? null) : finished,
      last_success: finished,
      catalog_hash: t.hash,
      columns: JSON.stringify(t.columns),
      vanished_warned: JSON.stringify(result.vanishedColumns),
      last_error: null,
      tracking: window.tracking,
      stamp_cursor: stampCursor,
      ...(reconciled ? { last_reconcile: reconciled.at, reconcile_result: JSON.stringify(result.reconcile) } : {}),
    };
    await store.transaction(async () => {
      await store.saveState(next);
      await store.finishRun(runId, t.dc.name, 'completed', finished);
    });
    result.cursor = t.globalStamp ? stampCursor : next.cursor_value;
  }

  private async recordFailure(t: TableContext, runId: string, error: Error): Promise<void> {
    const store = this.db;
    const finished = new Date().toISOString();
    const { signal } = this.options;
    // Stopped from outside: what happened, not what the aborted request or wait threw.
    const message = signal?.aborted ? abortedBecause(signal) : error.message;
    try {
      await store.transaction(async () => {
        await store.finishRun(runId, t.dc.name, signal?.aborted ? 'interrupted' : 'failed', finished, message);
        if (t.state) await store.saveState({ ...t.state, last_error: message });
        else {
          await store.saveState({
            table_name: t.dc.name,
            key_column: t.keyAttr.name,
            cursor_value: null,
            boundary_keys: null,
            last_full_sync: null,
            last_success: null,
            catalog_hash: t.hash,
            columns: JSON.stringify(t.columns),
            vanished_warned: null,
            last_error: message,
            tracking: null,
            stamp_cursor: null,
            last_reconcile: null,
            reconcile_result: null,
            last_verify: null,
            verify_result: null,
          });
        }
      });
    } catch (recording) {
      // The database itself failed (e.g. the connection dropped): the first error says more.
      this.options.logger.debug(`could not record the failed run: ${(recording as Error).message}`);
    }
  }

  /**
   * A run over several tables: runs left unfinished by a killed process are marked first; each
   * table's failure is recorded and reported and the others still run (Ctrl-C stops the run).
   */
  async syncTables(
    tables: SyncTableConfig[],
    runId: string,
    hooks: { onTable?: (result: TableResult, ms: number) => void; onError?: (table: string, error: unknown) => void } = {},
  ): Promise<{ results: TableResult[]; firstError?: unknown }> {
    const interrupted = this.options.dryRun ? 0 : await this.db.markInterrupted(new Date().toISOString());
    if (interrupted) this.options.logger.warn(`marked ${interrupted} run(s) left unfinished by an earlier process as interrupted`);
    const results: TableResult[] = [];
    let firstError: unknown;
    for (const table of tables) {
      const started = Date.now();
      try {
        const r = await this.syncTable(table, runId);
        results.push(r);
        hooks.onTable?.(r, Date.now() - started);
      } catch (error) {
        // Ctrl-C, and a database that cannot take more (full disk, exit 73), stop the whole run.
        if (this.options.signal?.aborted || error instanceof CannotCreateError) throw error;
        firstError ??= error;
        results.push({ ...emptyResult(table.name, null), status: 'failed', error: formatErrorLine(error) });
        hooks.onError?.(table.name, error);
      }
    }
    return { results, firstError };
  }

  /**
   * `sync verify`: every row's key and stamp compared with the copy, read-only (the finding is
   * noted in the table's state for `sync status`). A table never synced here: all rows missing.
   */
  async verifyTable(config: SyncTableConfig): Promise<VerifyResult> {
    const store = this.store;
    const t = await this.context(config);
    let diff: ScanDiff;
    if (!store || !t.state || (await store.existingColumns(t.dc.name)).length === 0) {
      const server = (await this.client.page(t.dc.name, { top: 1, skip: 0 })).__COUNT;
      diff = { server, local: 0, missing: server, extra: 0, stale: 0, examples: { missing: [], extra: [], stale: [] } };
    } else {
      diff = await compare(this.client, store, t.dc, t.keyAttr, this.options);
      await store.noteComparison(t.dc.name, 'verify', new Date().toISOString(), {
        missing: diff.missing,
        extra: diff.extra,
        stale: diff.stale,
        server: diff.server,
        local: diff.local,
      });
    }
    return { table: t.dc.name, ...diff, equal: diff.missing + diff.extra + diff.stale === 0 };
  }

  /** `sync verify` of several tables (no database yet: every server row is missing). */
  async verifyTables(tables: SyncTableConfig[]): Promise<VerifyResult[]> {
    const results: VerifyResult[] = [];
    for (const table of tables) results.push(await this.verifyTable(table));
    return results;
  }
}

/** A deleted record's primary key (4D sends it as text) for a numeric key column: a long64 beyond 2^53 stays exact (bigint). */
function numericKeyOf(value: unknown): number | bigint {
  const text = String(value);
  return /^-?\d{16,}$/.test(text) ? exactInteger(BigInt(text)) : Number(text);
}

export function newRunId(): string {
  return `${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}-${randomBytes(3).toString('hex')}`;
}

export { parseDuration } from '../config/duration.js';
