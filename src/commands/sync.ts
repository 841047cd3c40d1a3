/** `legacy sync [<Table>...]` and `sync status|verify|runs|prune`: replication into SQLite or PostgreSQL. */
import { join } from 'node:path';
import type { CommandContext } from '../cli/context.js';
import { write, writeJson } from '../cli/io.js';
import { columns } from '../cli/render.js';
import { command, duration, JSON_OPTION, wholeNumber, type OptionSpec } from '../cli/spec.js';
import type { SyncTableConfig } from '../config/store.js';
import { EXIT_DIFFERS, ExitCode, UsageError, exitCodeFor, formatErrorLine } from '../errors/index.js';
import { normaliseTableConfig, openSyncStore, syncTarget } from '../sync/open.js';
import type { TableResult } from '../sync/index.js';
import { modeText } from '../sync/mode.js';
import type { RunRow, SyncTarget, TableStatus } from '../sync/store.js';
import { parseDuration } from '../config/duration.js';

interface SyncOptions {
  db?: string;
  full?: boolean;
  reconcile?: boolean;
  json?: boolean;
  dryRun?: boolean;
  lookback?: number;
  pageSize?: number;
  limit?: number;
  olderThan?: string;
  follow?: boolean;
  interval?: number;
}

/** `--older-than`: checked as a duration, kept as written (the message repeats it). */
const keepDuration = (value: string): string => {
  duration(value);
  return value;
};

const DB_OPTION: OptionSpec = {
  flags: '--db <path|url>',
  description: 'SQLite file (default: <data dir>/<environment>.sqlite) or postgres://user@host:port/db',
};

export const spec = command<SyncOptions>({
  name: 'sync [tables...]',
  complete: ['tables'],
  description: 'incremental, crash-safe replication of tables into SQLite or PostgreSQL (default tables: sync.tables of the environment)',
  options: [
    DB_OPTION,
    { flags: '--full', description: 'read every row again instead of the incremental window' },
    {
      flags: '--reconcile',
      description: "also compare every row's key and stamp with the server: fetch missing and stale rows, mark vanished ones _deleted_at",
    },
    { flags: '--lookback <duration>', description: "re-read this far behind the cursor, e.g. 2d (default: the cursor's own day or second)", parse: duration },
    { flags: '--page-size <n>', description: 'rows per request (default 1000)', parse: wholeNumber('--page-size', 1, 100_000) },
    { flags: '--json', description: 'JSON summary' },
    { flags: '--dry-run', description: 'say what would be read, write nothing' },
    { flags: '--follow', description: 'keep going: poll for changes every --interval until Ctrl-C (the copy stays seconds behind)' },
    { flags: '--interval <duration>', description: 'with --follow: time between polls (default 1s; idle polls back off to 5s)', parse: duration },
  ],
  examples: [
    'legacy sync Artikel Kunden                 # incremental after the first (full) run',
    'legacy sync --reconcile                    # tables from the config; keys and stamps compared too',
    'legacy sync verify --json || alert          # exit 1 when the copy drifted from the server',
    'legacy sync status --json',
  ],
  subcommands: [
    command<SyncOptions>({
      name: 'status',
      description: 'per table: rows, change tracking, last success, cursor, last check, last error; recent runs',
      options: [DB_OPTION, JSON_OPTION],
      run: runStatus,
    }),
    command<SyncOptions>({
      name: 'verify [tables...]',
      complete: ['tables'],
      description: "compare every row's key and stamp with the server, read-only; exit 0 when equal, 1 when the copy differs",
      options: [DB_OPTION, { flags: '--json', description: 'JSON output: counts of missing, extra and stale rows, example keys' }],
      run: runVerify,
    }),
    command<SyncOptions>({
      name: 'runs',
      description: 'run history',
      options: [DB_OPTION, { flags: '--limit <n>', description: 'at most n runs (default 20)', parse: wholeNumber('--limit', 1) }, JSON_OPTION],
      run: runRuns,
    }),
    command<SyncOptions>({
      name: 'prune',
      description: 'delete run history older than a duration',
      options: [DB_OPTION, { flags: '--older-than <duration>', description: 'e.g. 7d, 12h', parse: keepDuration, required: true }],
      run: runPrune,
    }),
  ],
  run: runSync,
});

/**
 * Where to sync: --db, else LEGACY_SYNC_DB, else the environment's sync.db in the config, else
 * <data dir>/<env>.sqlite. An SQLite path or a postgres:// URL (64 if malformed).
 */
function target(ctx: CommandContext, opts: SyncOptions): SyncTarget {
  const { db, what } = opts.db ? { db: opts.db, what: '--db' } : ctx.settings.syncDb;
  return syncTarget(db, ctx.io.cwd, join(ctx.settings.dataDir, `${ctx.settings.envName}.sqlite`), what);
}

/** The tables to work on: the arguments, else the environment's sync.tables; config entries (key, cursor) apply to both. */
function tablesOf(ctx: CommandContext, args: string[], what: string): SyncTableConfig[] {
  const configured = ctx.settings.envConfig?.sync?.tables ?? [];
  const tables = args.length ? args.map((name) => ({ name })) : configured.map(normaliseTableConfig);
  if (tables.length === 0) {
    throw new UsageError(`no tables to ${what}`, {
      hint: `name them (legacy sync Artikel Kunden) or list them under environments.${ctx.settings.envName}.sync.tables in the config`,
    });
  }
  const byName = new Map(configured.map(normaliseTableConfig).map((t) => [t.name, t]));
  return tables.map((t) => byName.get(t.name) ?? t);
}

async function runSync(ctx: CommandContext, args: string[], opts: SyncOptions): Promise<number> {
  const tables = tablesOf(ctx, args, 'sync');
  if (opts.follow) return follow(ctx, tables, opts);
  if (opts.interval !== undefined) throw new UsageError('--interval applies to --follow');
  ctx.metrics.table(tables.map((t) => t.name).join(','));
  const db = target(ctx, opts);
  const { Syncer, newRunId } = await import('../sync/index.js');
  const client = await ctx.client();
  // A sync run holds the target's lock until it closes the store; a dry run only reads.
  const store = opts.dryRun
    ? await openSyncStore(db, 'read', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs })
    : await openSyncStore(db, 'run', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  const progress = ctx.interactive && !opts.json ? await (await import('../cli/progress.js')).startProgress(ctx.io.stderr, 'sync') : undefined;
  const syncer = new Syncer(client, store, {
    full: opts.full,
    reconcile: opts.reconcile,
    dryRun: opts.dryRun,
    lookbackMs: opts.lookback ?? 0,
    pageSize: opts.pageSize ?? ctx.settings.pageSize,
    concurrency: ctx.settings.concurrency,
    logger: ctx.logger,
    signal: ctx.signal,
    onProgress: (table, rows, total) => progress?.update({ rows, total, label: table }),
  });
  const runId = newRunId();
  const { results, firstError } = await syncer
    .syncTables(tables, runId, {
      onTable: (r, ms) => {
        ctx.metrics.rows({ read: r.fetched, written: r.inserted + r.updated });
        ctx.logger.info(
          `${r.table}: ${modeText(r)}, ${r.fetched} fetched, ${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted in ${(ms / 1000).toFixed(1)} s`,
        );
      },
      onError: (table, error) => ctx.logger.error(`${table}: ${formatErrorLine(error)}`),
    })
    .finally(async () => {
      progress?.stop();
      await store?.close();
    });
  if (opts.json) {
    await writeJson(ctx.io, { runId, database: db.display, dryRun: opts.dryRun === true, tables: results });
  } else {
    await write(ctx.io.stdout, resultsText(results, opts.dryRun === true));
  }
  // The per-table errors were reported above; the exit code says what kind the first one was.
  return firstError ? exitCodeFor(firstError) : ExitCode.ok;
}

/**
 * `sync --follow`: the change feed's polling (../watch/feed.ts) without a sink: each poll is an
 * incremental pass, one request per table when nothing changed, the reconcile every 10 minutes
 * where the server does not track changes; transient failures wait and go on; Ctrl-C exits 0.
 */
async function follow(ctx: CommandContext, tables: SyncTableConfig[], opts: SyncOptions): Promise<number> {
  if (opts.dryRun || opts.full || opts.json) throw new UsageError('--follow cannot be combined with --dry-run, --full or --json');
  ctx.metrics.table(tables.map((t) => t.name).join(','));
  const db = target(ctx, opts);
  const { runFeed } = await import('../watch/feed.js');
  const client = await ctx.client();
  const store = await openSyncStore(db, 'run', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  ctx.logger.info(`following ${tables.map((t) => t.name).join(', ')} into ${db.display}; Ctrl-C to stop`);
  try {
    const interval = opts.interval ?? 1000;
    const summary = await runFeed(client, store, undefined, {
      env: ctx.settings.envName,
      tables,
      from: 'beginning',
      intervalMs: interval,
      maxIntervalMs: Math.max(5_000, interval),
      reconcileIntervalMs: opts.reconcile ? 0 : 600_000,
      once: false,
      pageSize: opts.pageSize ?? ctx.settings.pageSize,
      concurrency: ctx.settings.concurrency,
      logger: ctx.logger,
      signal: ctx.signal,
      onTable: (r) => {
        ctx.metrics.rows({ read: r.fetched, written: r.inserted + r.updated });
        if (r.inserted + r.updated + r.deleted) ctx.logger.info(`${r.table}: ${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted`);
      },
    });
    ctx.logger.info(`stopped after ${summary.rounds} poll(s)`);
  } finally {
    await store.close();
  }
  return ExitCode.ok;
}

/** A run's tables: what a dry run would read, or what the run did. */
function resultsText(results: TableResult[], dryRun: boolean): string {
  if (dryRun) {
    return columns(
      results.map((r) => [r.table, modeText(r), r.cursor ?? '-', String(r.expected ?? '-')]),
      ['TABLE', 'WOULD READ', 'CURSOR', 'ROWS'],
    );
  }
  const rows = results.map((r) => [
    r.table,
    r.status,
    modeText(r),
    r.tracking ?? '-',
    String(r.fetched),
    String(r.inserted),
    String(r.updated),
    String(r.deleted),
    r.cursor ?? '-',
  ]);
  return columns(rows, ['TABLE', 'STATUS', 'MODE', 'TRACKING', 'FETCHED', 'INSERTED', 'UPDATED', 'DELETED', 'CURSOR']);
}

async function runStatus(ctx: CommandContext, _args: string[], opts: SyncOptions): Promise<number> {
  const db = target(ctx, opts);
  const store = await openSyncStore(db, 'read', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  if (!store) {
    if (opts.json) await writeJson(ctx.io, { database: db.display, tables: [], runs: [] });
    else await write(ctx.io.stdout, `no sync database yet at ${db.display}\n`);
    return 0;
  }
  try {
    const runs = await store.runs(10);
    const tables = await store.status();
    if (opts.json) await writeJson(ctx.io, { database: db.display, tables, runs });
    else await write(ctx.io.stdout, statusText(tables, runs));
    return 0;
  } finally {
    await store.close();
  }
}

/** `sync status` as tables: each table's state and last check, then the recent runs. */
function statusText(tables: TableStatus[], runs: RunRow[]): string {
  type Check = { at: string; missing?: number; extra?: number; stale?: number };
  const found = (c: Check, kind: string) =>
    `${kind} ${c.at}: ${(c.missing ?? 0) + (c.extra ?? 0) + (c.stale ?? 0) === 0 ? 'equal' : `${c.missing ?? 0} missing, ${c.extra ?? 0} extra, ${c.stale ?? 0} stale`}`;
  // The latest of the two by time, with its whole timestamp (as LAST SUCCESS has it).
  const checked = (t: TableStatus) => {
    const checks = [
      ['verify', t.lastVerify],
      ['reconcile', t.lastReconcile],
    ].filter((c): c is [string, Check] => c[1] !== null);
    const latest = checks.sort((a, b) => b[1].at.localeCompare(a[1].at))[0];
    return latest ? found(latest[1], latest[0]) : '-';
  };
  const head = columns(
    tables.map((t) => [t.table, String(t.rows), String(t.deleted), t.tracking, t.lastSuccess ?? '-', t.cursor ?? '-', checked(t), t.lastError ?? '']),
    ['TABLE', 'ROWS', 'DELETED', 'TRACKING', 'LAST SUCCESS', 'CURSOR', 'LAST CHECK', 'LAST ERROR'],
  );
  return `${head}\nrecent runs:\n${columns(
    runs.map((r) => [r.run_id, r.table_name, r.status, r.mode, r.started, String(r.rows_fetched), String(r.inserted), String(r.updated), String(r.deleted)]),
    ['RUN', 'TABLE', 'STATUS', 'MODE', 'STARTED', 'FETCHED', 'INSERTED', 'UPDATED', 'DELETED'],
  )}`;
}

/**
 * `legacy sync verify [<Table>...]`: every row's key and stamp compared with the copy, read-only.
 * Exit 0 when the copy equals the server, 1 when it differs (like cmp), so cron can alert on drift.
 */
async function runVerify(ctx: CommandContext, args: string[], opts: SyncOptions): Promise<number> {
  const tables = tablesOf(ctx, args, 'verify');
  ctx.metrics.table(tables.map((t) => t.name).join(','));
  const db = target(ctx, opts);
  const { Syncer } = await import('../sync/index.js');
  const client = await ctx.client();
  const store = await openSyncStore(db, 'write', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  const syncer = new Syncer(client, store, { pageSize: ctx.settings.pageSize, concurrency: ctx.settings.concurrency, logger: ctx.logger, signal: ctx.signal });
  const results = await syncer.verifyTables(tables).finally(() => store?.close());
  for (const r of results) ctx.metrics.rows({ read: r.server });
  const equal = results.every((r) => r.equal);
  if (opts.json) {
    await writeJson(ctx.io, { database: db.display, equal, tables: results });
  } else {
    const rows = results.map((r) => [
      r.table,
      String(r.server),
      String(r.local),
      String(r.missing),
      String(r.extra),
      String(r.stale),
      r.equal ? 'equal' : 'DIFFERS',
    ]);
    const examples = results.flatMap((r) =>
      (['missing', 'extra', 'stale'] as const)
        .filter((k) => r.examples[k].length)
        .map((k) => `  ${r.table} ${k}: ${r.examples[k].map(String).join(', ')}${r[k] > r.examples[k].length ? ', …' : ''}\n`),
    );
    await write(ctx.io.stdout, `${columns(rows, ['TABLE', 'SERVER', 'LOCAL', 'MISSING', 'EXTRA', 'STALE', 'RESULT'])}${examples.join('')}`);
    if (!store) await write(ctx.io.stdout, `(no sync database at ${db.display} yet)\n`);
  }
  if (!equal) ctx.logger.info(`the copy at ${db.display} differs from the server; 'legacy sync --reconcile' repairs it`);
  // Like cmp: 1 when the copy differs (an error keeps its own code).
  return equal ? ExitCode.ok : EXIT_DIFFERS;
}

async function runRuns(ctx: CommandContext, _args: string[], opts: SyncOptions): Promise<number> {
  const limit = opts.limit ?? 20;
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number ≥ 1');
  const store = await openSyncStore(target(ctx, opts), 'read', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  const runs = store ? await store.runs(limit).finally(() => store.close()) : [];
  if (opts.json) await writeJson(ctx.io, runs);
  else
    await write(
      ctx.io.stdout,
      columns(
        runs.map((r) => [r.run_id, r.table_name, r.status, r.mode, r.started, r.finished ?? '-', String(r.rows_fetched), r.error ?? '']),
        ['RUN', 'TABLE', 'STATUS', 'MODE', 'STARTED', 'FINISHED', 'FETCHED', 'ERROR'],
      ),
    );
  return 0;
}

async function runPrune(ctx: CommandContext, _args: string[], opts: SyncOptions): Promise<number> {
  if (!opts.olderThan) throw new UsageError('sync prune needs --older-than, e.g. --older-than 7d');
  const ms = parseDuration(opts.olderThan);
  const db = target(ctx, opts);
  const store = await openSyncStore(db, 'write', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
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
