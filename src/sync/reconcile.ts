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
import { FilterNotAppliedError, InterruptedError, TemporaryError, interruptionOf } from '../errors/index.js';
import type { RestClient } from '../rest/index.js';
import type { Attribute, DataClass } from '../rest/types.js';
import type { Logger } from '../log/index.js';
import { paramsJson } from '../protocol/url.js';
import { exportRows, toRow, type ExportSummary } from '../table/paging/read.js';
import { planExport, type ExportPlan } from '../table/plan/plan.js';
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

/**
 * The server's keys and stamps of `dc`, into `scan`. Returns why the scan is not a consistent
 * snapshot, if it is not: only a complete one may mark rows deleted (a key missing from a scan that
 * was paged without an entity set, or across a rebuilt set, may simply have shifted to another page).
 */
export async function scanServer(client: RestClient, dc: DataClass, keyAttr: Attribute, scan: StampScan, options: ScanOptions): Promise<string | undefined> {
  const plan = await planExport(client, {
    table: dc.name,
    fields: [keyAttr.name],
    meta: true, // [__KEY, __STAMP, __TIMESTAMP, key]
    pageSize: Math.max(options.pageSize ?? 0, SCAN_PAGE_SIZE),
    concurrency: options.concurrency,
  });
  const summary: Partial<ExportSummary> = {};
  const adoptedBefore = client.session.events.adopted;
  for await (const rows of exportRows(client, plan, { logger: options.logger, summary })) {
    if (options.signal?.aborted) throw interruptionOf(options.signal) ?? new InterruptedError('interrupted');
    await scan.add(rows.map((r) => [r[3], r[1]]));
  }
  if (!summary.usedEntitySet) return 'the server returned no entity set, so the scan was paged while the table could change';
  if (client.session.events.adopted !== adoptedBefore) return 'the server replaced the session during the scan, so its entity set was rebuilt';
  if ((summary.rows ?? 0) + (summary.vanished ?? 0) !== summary.expected)
    return `the scan read ${summary.rows} rows of the ${summary.expected} the server counted`;
  return undefined;
}

/** Scan, and once more if the first scan was not a consistent snapshot. */
async function scanTwice(
  client: RestClient,
  store: SyncStore,
  dc: DataClass,
  keyAttr: Attribute,
  options: ScanOptions,
): Promise<{ scan: StampScan; incomplete?: string }> {
  let scan = await store.beginStampScan(dc.name, keyAttr.name);
  let incomplete = await scanServer(client, dc, keyAttr, scan, options);
  if (incomplete) {
    options.logger.info(`${dc.name}: ${incomplete}; scanning again`);
    await scan.drop();
    scan = await store.beginStampScan(dc.name, keyAttr.name);
    incomplete = await scanServer(client, dc, keyAttr, scan, options);
  }
  return { scan, incomplete };
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
  /** Why deletions were not marked (the scan was not a consistent snapshot, twice), if so. */
  incomplete?: string;
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

/**
 * The rows of `keys`: one checked `key IN :1` read, then the keys the server did not send one by
 * one: by primary key (`T[key]`, gone only on 4D's own "no such entity"), or, for a sync key that is
 * not the primary key, `key = :1` (gone only when that filter is known to work).
 */
async function fetchRows(
  client: RestClient,
  target: ReconcileTarget,
  keyAttr: Attribute,
  keys: unknown[],
  state: { filtersWork: boolean },
  logger: Logger,
): Promise<{ rows: unknown[][]; gone: unknown[] }> {
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
  const byPrimaryKey = target.plan.dataClass.key[0]?.name === keyAttr.name;
  for (const key of wanted.values()) {
    if (byPrimaryKey) {
      const entity = await client.entity(target.table, String(key), { exact: true });
      if (entity) rows.push(toRow(target.plan, entity));
      else gone.push(key);
    } else if (state.filtersWork) {
      const page = await client.page(
        target.table,
        {
          filter: `${keyAttr.name} = :1`,
          params: [key],
          attributes: target.plan.query.attributes,
          top: 2,
          skip: 0,
        },
        { exact: true },
      );
      const found = page.__ENTITIES.find((e) => String(toRow(target.plan, e)[keyIndex]) === String(key));
      if (found) rows.push(toRow(target.plan, found));
      else if (page.__COUNT === 0) gone.push(key);
    }
  }
  return { rows, gone };
}

/** `sync --reconcile`: make the copy's keys and stamps equal to the server's (see the header). */
export async function reconcile(
  client: RestClient,
  target: ReconcileTarget,
  dc: DataClass,
  keyAttr: Attribute,
  options: ScanOptions & { onBatch?: (fetched: number) => Promise<void> },
): Promise<ReconcileResult> {
  const { store, table, keyColumn } = target;
  const { scan, incomplete } = await scanTwice(client, store, dc, keyAttr, options);
  try {
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
          if (options.signal?.aborted) throw interruptionOf(options.signal) ?? new InterruptedError('interrupted');
          const { rows, gone } = await fetchRows(client, target, keyAttr, batch, state, options.logger);
          fetched += await target.write(rows);
          // Deleted on the server between the scan and the fetch.
          if (gone.length)
            goneMeanwhile += await store.markDeleted(
              table,
              keyColumn,
              gone.map((key) => ({ key })),
              new Date().toISOString(),
            );
        }
      }
    }
    const at = new Date().toISOString();
    // Only a consistent snapshot may mark rows deleted.
    const deleted = before.extra && !incomplete ? await scan.markVanished(at) : 0;
    if (incomplete && before.extra) options.logger.warn(`${table}: ${incomplete}; the ${before.extra} row(s) it did not see were not marked deleted this time`);
    // Nothing differed: nothing was repaired, and the comparison need not run twice.
    const same = before.missing + before.extra + before.stale === 0;
    return { at, incomplete, before, fetched, deleted: deleted + goneMeanwhile, goneMeanwhile, after: same ? before : await scan.diff() };
  } finally {
    await scan.drop().catch(() => undefined);
  }
}

/** `sync verify`: the same comparison, read-only. A scan that is not a consistent snapshot (twice) proves nothing: 75. */
export async function compare(client: RestClient, store: SyncStore, dc: DataClass, keyAttr: Attribute, options: ScanOptions): Promise<ScanDiff> {
  const { scan, incomplete } = await scanTwice(client, store, dc, keyAttr, options);
  try {
    if (incomplete) throw new TemporaryError(`cannot verify ${dc.name}: ${incomplete}`, { hint: 'run sync verify again' });
    return await scan.diff();
  } finally {
    await scan.drop().catch(() => undefined);
  }
}
