/**
 * Key-and-stamp comparison of a copy with the server, for `sync --reconcile` and `sync verify`.
 *
 * The server's keys and `__STAMP`s are read in large pages (`$attributes` = the key; the envelope
 * fields come with every entity) into a temporary table of the database, never into memory, and
 * compared there with the copy: rows missing here, rows here that the server no longer has, rows
 * here with another stamp. `--reconcile` then fetches the missing and stale rows in batches
 * (`key IN :1`, checked: only the asked keys count; any not sent are read one by one) and marks the
 * vanished ones `_deleted_at`, so that afterwards the copy has exactly the server's keys with the
 * server's stamps. `sync verify` only reports.
 */
import { FilterNotAppliedError } from '../errors/index.js';
import type { RestClient } from '../http/index.js';
import type { Attribute, DataClass } from '../http/types.js';
import type { Logger } from '../log/index.js';
import { paramsJson } from '../protocol/url.js';
import { exportRows, planExport, toRow, type ExportPlan } from '../table/export.js';
import type { ScanDiff, StampScan, SyncStore } from './store.js';

/** Rows per page of the key scan: keys and stamps are small. */
const SCAN_PAGE_SIZE = 10_000;
/** Keys read from the scan per round, and the budget of one `key IN :1` request's `$params` (URL length). */
const FETCH_ROUND = 1_000;
const PARAMS_BUDGET = 6_000;

export interface ScanOptions {
  pageSize?: number;
  concurrency?: number;
  logger: Logger;
  signal?: AbortSignal;
}

/** The server's keys and stamps of `dc`, into `scan`. */
export async function scanServer(client: RestClient, dc: DataClass, keyAttr: Attribute, scan: StampScan, options: ScanOptions): Promise<void> {
  const plan = await planExport(client, {
    table: dc.name,
    fields: [keyAttr.name],
    meta: true, // [__KEY, __STAMP, __TIMESTAMP, key]
    pageSize: Math.max(options.pageSize ?? 0, SCAN_PAGE_SIZE),
    concurrency: options.concurrency,
  });
  for await (const rows of exportRows(client, plan, { logger: options.logger })) {
    if (options.signal?.aborted) throw new Error('interrupted');
    await scan.add(rows.map((r) => [r[3], r[1]]));
  }
}

/** Split keys into batches whose `$params` JSON stays within the URL budget. */
export function fetchBatches(keys: unknown[]): unknown[][] {
  const batches: unknown[][] = [];
  let batch: unknown[] = [];
  let size = 0;
  for (const key of keys) {
    const cost = paramsJson([key]).length;
    if (batch.length && size + cost > PARAMS_BUDGET) {
      batches.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(key);
    size += cost;
  }
  if (batch.length) batches.push(batch);
  return batches;
}

export interface ReconcileResult {
  at: string;
  /** What differed before the repair. */
  before: ScanDiff;
  /** Rows fetched and written again; rows marked deleted; rows that vanished between scan and fetch. */
  fetched: number;
  deleted: number;
  goneMeanwhile: number;
  /** What still differs after it (changes on the server during the reconcile). */
  after: ScanDiff;
}

/** Where reconcile writes: the table's upsert and the run's progress, one transaction per batch. */
export interface ReconcileTarget {
  store: SyncStore;
  table: string;
  keyColumn: string;
  /** The main pass's plan (meta columns first), so fetched rows are laid out and converted the same. */
  plan: ExportPlan;
  /** Upsert export rows (layout included); returns how many were written. */
  write(rows: unknown[][]): Promise<number>;
}

/** The rows of `keys`: one checked `key IN :1` read, then one GET per key the server did not send. */
async function fetchRows(client: RestClient, target: ReconcileTarget, keyAttr: Attribute, keys: unknown[], state: { filtersWork: boolean }, logger: Logger): Promise<{ rows: unknown[][]; gone: unknown[] }> {
  const wanted = new Map(keys.map((k) => [String(k), k]));
  const rows: unknown[][] = [];
  const keyIndex = target.plan.columns.findIndex((c) => c.name === keyAttr.name);
  if (state.filtersWork) {
    const plan: ExportPlan = {
      ...target.plan,
      query: { ...target.plan.query, filter: `${keyAttr.name} IN :1`, params: [keys], check: undefined },
      options: { ...target.plan.options, entitySet: false, pageSize: keys.length, skip: 0, limit: undefined },
    };
    try {
      for await (const page of exportRows(client, plan, { logger })) {
        for (const row of page) {
          // Verify, don't trust: only the asked keys count (a server that drops filters sends others).
          if (wanted.delete(String(row[keyIndex]))) rows.push(row);
        }
      }
    } catch (error) {
      if (!(error instanceof FilterNotAppliedError)) throw error;
      state.filtersWork = false;
      logger.warn(`${target.table}: ${error.message}; reading the rows to repair one by one`);
    }
  }
  const gone: unknown[] = [];
  for (const key of wanted.values()) {
    const entity = await client.entity(target.table, String(key));
    if (entity) rows.push(toRow(target.plan, entity));
    else gone.push(key);
  }
  return { rows, gone };
}

/** `sync --reconcile`: make the copy's keys and stamps equal to the server's (see the header). */
export async function reconcile(client: RestClient, target: ReconcileTarget, dc: DataClass, keyAttr: Attribute, options: ScanOptions & { onBatch?: (fetched: number) => Promise<void> }): Promise<ReconcileResult> {
  const { store, table, keyColumn } = target;
  const scan = await store.beginStampScan(table, keyColumn);
  try {
    await scanServer(client, dc, keyAttr, scan, options);
    const before = await scan.diff();
    let fetched = 0;
    let goneMeanwhile = 0;
    const state = { filtersWork: true };
    let after: unknown;
    if (before.missing + before.stale > 0) {
      for (;;) {
        const keys = await scan.toFetch(after, FETCH_ROUND);
        if (keys.length === 0) break;
        after = keys[keys.length - 1];
        for (const batch of fetchBatches(keys)) {
          if (options.signal?.aborted) throw new Error('interrupted');
          const { rows, gone } = await fetchRows(client, target, keyAttr, batch, state, options.logger);
          fetched += await target.write(rows);
          // Deleted on the server between the scan and the fetch.
          if (gone.length) goneMeanwhile += await store.markDeleted(table, keyColumn, gone.map((key) => ({ key })), new Date().toISOString());
        }
      }
    }
    const at = new Date().toISOString();
    const deleted = before.extra ? await scan.markVanished(at) : 0;
    // Nothing differed: nothing was repaired, and the comparison need not run twice.
    const same = before.missing + before.extra + before.stale === 0;
    return { at, before, fetched, deleted: deleted + goneMeanwhile, goneMeanwhile, after: same ? before : await scan.diff() };
  } finally {
    await scan.drop().catch(() => undefined);
  }
}

/** `sync verify`: the same comparison, read-only. */
export async function compare(client: RestClient, store: SyncStore, dc: DataClass, keyAttr: Attribute, options: ScanOptions): Promise<ScanDiff> {
  const scan = await store.beginStampScan(dc.name, keyAttr.name);
  try {
    await scanServer(client, dc, keyAttr, scan, options);
    return await scan.diff();
  } finally {
    await scan.drop().catch(() => undefined);
  }
}
