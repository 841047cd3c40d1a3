/** `legacy sync [<Table>...]`, `sync status`, `sync runs`, `sync prune`: replication into SQLite or PostgreSQL. */
import { join } from 'node:path';
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { startProgress } from '../cli/progress.js';
import { columns } from '../cli/render.js';
import { UsageError, exitCodeFor, formatErrorLine } from '../errors/index.js';
import type { SyncTableConfig } from '../config/store.js';
import { Syncer, newRunId, normaliseTableConfig, openSyncStore, parseDuration, syncTarget, type ScanDiff, type SyncTarget, type TableResult } from '../sync/index.js';

interface SyncOptions {
  db?: string;
  full?: boolean;
  reconcile?: boolean;
  json?: boolean;
  dryRun?: boolean;
  lookback?: string;
  pageSize?: string;
  limit?: string;
  olderThan?: string;
}

/**
 * Where to sync: --db, else LEGACY_SYNC_DB, else the environment's sync.db in the config, else
 * <data dir>/<env>.sqlite. An SQLite path or a postgres:// URL (64 if malformed).
 */
function target(ctx: CommandContext, opts: SyncOptions): SyncTarget {
  const fromEnv = ctx.io.env.LEGACY_SYNC_DB || undefined;
  const fromConfig = ctx.settings.envConfig?.sync?.db;
  const [db, what] = opts.db ? [opts.db, '--db'] : fromEnv ? [fromEnv, 'LEGACY_SYNC_DB'] : [fromConfig, `environments.${ctx.settings.envName}.sync.db`];
  return syncTarget(db, ctx.io.cwd, join(ctx.settings.dataDir, `${ctx.settings.envName}.sqlite`), what);
}

/** The tables to work on: the arguments, else the environment's sync.tables; config entries (key, cursor) apply to both. */
function tablesOf(ctx: CommandContext, args: string[], what: string): SyncTableConfig[] {
  const configured = ctx.settings.envConfig?.sync?.tables ?? [];
  const tables = args.length ? args.map((name) => ({ name })) : configured.map(normaliseTableConfig);
  if (tables.length === 0) {
    throw new UsageError(`no tables to ${what}`, { hint: `name them (legacy sync Artikel Kunden) or list them under environments.${ctx.settings.envName}.sync.tables in the config` });
  }
  const byName = new Map(configured.map(normaliseTableConfig).map((t) => [t.name, t]));
  return tables.map((t) => byName.get(t.name) ?? t);
}

export async function runSync(ctx: CommandContext, args: string[], opts: SyncOptions): Promise<number> {
  const plan = tablesOf(ctx, args, 'sync');
  const lookbackMs = opts.lookback ? parseDuration(opts.lookback) : 0;
  const pageSize = opts.pageSize ? Number(opts.pageSize) : ctx.settings.pageSize;
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new UsageError('--page-size must be a whole number ≥ 1');

  ctx.metrics.table(plan.map((t) => t.name).join(','));
  const db = target(ctx, opts);
  const client = await ctx.client();
  // A sync run holds the target's lock until it closes the store; a dry run only reads.
  const store = opts.dryRun ? await openSyncStore(db, 'read') : await openSyncStore(db, 'run');
  const progress = ctx.interactive && !opts.json ? await startProgress(ctx.io.stderr, 'sync') : undefined;
  const syncer = new Syncer(client, store, {
    full: opts.full,
    reconcile: opts.reconcile,
    dryRun: opts.dryRun,
    lookbackMs,
    pageSize,
    concurrency: ctx.settings.concurrency,
    logger: ctx.logger,
    signal: ctx.signal,
    onProgress: (table, rows, total) => progress?.update({ rows, total, label: table }),
  });

  const runId = newRunId();
  const results: TableResult[] = [];
  let firstError: unknown;
  try {
    const interrupted = opts.dryRun ? 0 : await store!.markInterrupted(new Date().toISOString());
    if (interrupted) ctx.logger.warn(`marked ${interrupted} run(s) left unfinished by an earlier process as interrupted`);
    for (const table of plan) {
      const started = Date.now();
      try {
        const r = await syncer.syncTable(table, runId);
        results.push(r);
        ctx.metrics.rows({ read: r.fetched, written: r.inserted + r.updated });
        ctx.logger.info(`${r.table}: ${r.mode}, ${r.fetched} fetched, ${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        firstError ??= error;
        results.push({ table: table.name, mode: 'full', status: 'failed', fetched: 0, inserted: 0, updated: 0, unchanged: 0, deleted: 0, cursor: null, addedColumns: [], vanishedColumns: [], error: formatErrorLine(error) });
        ctx.logger.error(`${table.name}: ${formatErrorLine(error)}`);
      }
    }
  } finally {
    progress?.stop();
    await store?.close();
  }

  if (opts.json) {
    await write(ctx.io.stdout, `${JSON.stringify({ runId, database: db.display, dryRun: opts.dryRun === true, tables: results }, null, 2)}\n`);
  } else {
    const rows = results.map((r) =>
      opts.dryRun
        ? [r.table, r.mode, r.cursor ?? '-', String(r.expected ?? '-')]
        : [r.table, r.status, r.mode, r.tracking ?? '-', String(r.fetched), String(r.inserted), String(r.updated), String(r.deleted), r.cursor ?? '-'],
    );
    const head = opts.dryRun ? ['TABLE', 'WOULD READ', 'CURSOR', 'ROWS'] : ['TABLE', 'STATUS', 'MODE', 'TRACKING', 'FETCHED', 'INSERTED', 'UPDATED', 'DELETED', 'CURSOR'];
    await write(ctx.io.stdout, columns(rows, head));
  }
  if (firstError) {
    // The per-table errors were reported above; the exit code says what kind the first one was.
    return exitCodeFor(firstError);
  }
  return 0;
}

export async function runStatus(ctx: CommandContext, _args: string[], opts: SyncOptions): Promise<number> {
  const db = target(ctx, opts);
  const store = await openSyncStore(db, 'read');
  if (!store) {
    if (opts.json) await write(ctx.io.stdout, `${JSON.stringify({ database: db.display, tables: [], runs: [] }, null, 2)}\n`);
    else await write(ctx.io.stdout, `no sync database yet at ${db.display}\n`);
    return 0;
  }
  try {
    const runs = await store.runs(10);
    const states = await store.allStates();
    const counted = [];
    for (const s of states) counted.push({ s, n: await store.counts(s.table_name) });
    const parse = (text: string | null) => (text ? (JSON.parse(text) as Record<string, number>) : undefined);
    const tables = counted.map(({ s, n }) => ({
      table: s.table_name,
      rows: n.rows ?? 0,
      deleted: n.deleted ?? 0,
      lastSuccess: s.last_success,
      lastFullSync: s.last_full_sync,
      tracking: s.tracking ?? 'date',
      cursor: s.tracking === 'global stamp' ? s.stamp_cursor : s.cursor_value,
      lastReconcile: s.last_reconcile ? { at: s.last_reconcile, ...parse(s.reconcile_result) } : null,
      lastVerify: s.last_verify ? { at: s.last_verify, ...parse(s.verify_result) } : null,
      lastError: s.last_error,
    }));
    if (opts.json) {
      await write(ctx.io.stdout, `${JSON.stringify({ database: db.display, tables, runs }, null, 2)}\n`);
      return 0;
    }
    const found = (c: { at: string; missing?: number; extra?: number; stale?: number } | null, kind: string) =>
      c ? `${kind} ${c.at.slice(0, 16)}: ${(c.missing ?? 0) + (c.extra ?? 0) + (c.stale ?? 0) === 0 ? 'equal' : `${c.missing ?? 0} missing, ${c.extra ?? 0} extra, ${c.stale ?? 0} stale`}` : '';
    const checked = (t: (typeof tables)[number]) =>
      [found(t.lastVerify, 'verify'), found(t.lastReconcile, 'reconcile')].filter(Boolean).sort().reverse()[0] ?? '-';
    await write(
      ctx.io.stdout,
      columns(
        tables.map((t) => [t.table, String(t.rows), String(t.deleted), t.tracking, t.lastSuccess ?? '-', t.cursor ?? '-', checked(t), t.lastError ?? '']),
        ['TABLE', 'ROWS', 'DELETED', 'TRACKING', 'LAST SUCCESS', 'CURSOR', 'LAST CHECK', 'LAST ERROR'],
      ),
    );
    await write(ctx.io.stdout, `\nrecent runs:\n${columns(runs.map((r) => [r.run_id, r.table_name, r.status, r.mode, r.started, String(r.rows_fetched), String(r.inserted), String(r.updated), String(r.deleted)]), ['RUN', 'TABLE', 'STATUS', 'MODE', 'STARTED', 'FETCHED', 'INSERTED', 'UPDATED', 'DELETED'])}`);
    return 0;
  } finally {
    await store.close();
  }
}

/**
 * `legacy sync verify [<Table>...]`: every row's key and stamp compared with the copy, read-only.
 * Exit 0 when the copy equals the server, 1 when it differs (like cmp), so cron can alert on drift.
 */
export async function runVerify(ctx: CommandContext, args: string[], opts: SyncOptions): Promise<number> {
  const plan = tablesOf(ctx, args, 'verify');
  ctx.metrics.table(plan.map((t) => t.name).join(','));
  const db = target(ctx, opts);
  const client = await ctx.client();
  const store = await openSyncStore(db, 'write');
  const results: Array<ScanDiff & { table: string; equal: boolean }> = [];
  try {
    const syncer = new Syncer(client, store, { pageSize: ctx.settings.pageSize, concurrency: ctx.settings.concurrency, logger: ctx.logger, signal: ctx.signal });
    for (const table of plan) {
      if (!store) {
        const server = (await client.page((await client.dataClass(table.name)).name, { top: 1, skip: 0 })).__COUNT;
        results.push({ table: table.name, server, local: 0, missing: server, extra: 0, stale: 0, examples: { missing: [], extra: [], stale: [] }, equal: server === 0 });
        continue;
      }
      const r = await syncer.verifyTable(table);
      ctx.metrics.rows({ read: r.server });
      results.push(r);
    }
  } finally {
    await store?.close();
  }
  const equal = results.every((r) => r.equal);
  if (opts.json) {
    await write(ctx.io.stdout, `${JSON.stringify({ database: db.display, equal, tables: results }, null, 2)}\n`);
  } else {
    const rows = results.map((r) => [r.table, String(r.server), String(r.local), String(r.missing), String(r.extra), String(r.stale), r.equal ? 'equal' : 'DIFFERS']);
    const examples = results.flatMap((r) =>
      (['missing', 'extra', 'stale'] as const).filter((k) => r.examples[k].length).map((k) => `  ${r.table} ${k}: ${r.examples[k].map(String).join(', ')}${r[k] > r.examples[k].length ? ', …' : ''}\n`),
    );
    await write(ctx.io.stdout, `${columns(rows, ['TABLE', 'SERVER', 'LOCAL', 'MISSING', 'EXTRA', 'STALE', 'RESULT'])}${examples.join('')}`);
    if (!store) await write(ctx.io.stdout, `(no sync database at ${db.display} yet)\n`);
  }
  if (!equal) ctx.logger.info(`the copy at ${db.display} differs from the server; 'legacy sync --reconcile' repairs it`);
  return equal ? 0 : 1;
}

export async function runRuns(ctx: CommandContext, _args: string[], opts: SyncOptions): Promise<number> {
  const limit = opts.limit ? Number(opts.limit) : 20;
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number ≥ 1');
  const store = await openSyncStore(target(ctx, opts), 'read');
  const runs = store ? await store.runs(limit).finally(() => store.close()) : [];
  if (opts.json) await write(ctx.io.stdout, `${JSON.stringify(runs, null, 2)}\n`);
  else await write(ctx.io.stdout, columns(runs.map((r) => [r.run_id, r.table_name, r.status, r.mode, r.started, r.finished ?? '-', String(r.rows_fetched), r.error ?? '']), ['RUN', 'TABLE', 'STATUS', 'MODE', 'STARTED', 'FINISHED', 'FETCHED', 'ERROR']));
  return 0;
}

export async function runPrune(ctx: CommandContext, _args: string[], opts: SyncOptions): Promise<number> {
  if (!opts.olderThan) throw new UsageError('sync prune needs --older-than, e.g. --older-than 7d');
  const ms = parseDuration(opts.olderThan);
  const db = target(ctx, opts);
  const store = await openSyncStore(db, 'write');
  if (!store) {
    await write(ctx.io.stdout, `no sync database at ${db.display}\n`);
    return 0;
  }
  try {
    const removed = await store.pruneRuns(new Date(Date.now() - ms).toISOString());
    await write(ctx.io.stdout, `removed ${removed} run record(s) older than ${opts.olderThan}\n`);
  } finally {
    await store.close();
  }
  return 0;
}
