/** `legacy get-table <Table>`: parse options, run the export library, render. */
import type { Writable } from 'node:stream';
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { InterruptedError, SelectionChangedError, UsageError } from '../errors/index.js';
import { assertPositive, countRows, exportEncoded, exportRows, parseFields, planExport, type ExportProgress, type ExportSummary } from '../table/export.js';
import { cellKindFor } from '../table/convert.js';
import { createWriter, type Format } from '../table/formats.js';
import { openAtomic, type AtomicFile } from '../table/output.js';
import { startProgress } from '../cli/progress.js';

interface GetTableOptions {
  csv?: boolean;
  json?: boolean;
  ndjson?: boolean;
  table?: boolean;
  xlsx?: boolean;
  format?: Format;
  output?: string;
  fields?: string;
  where?: string[];
  filter?: string;
  orderBy?: string;
  limit?: string;
  skip?: string;
  pageSize?: string;
  concurrency?: string;
  raw?: boolean;
  meta?: boolean;
  delimiter?: string;
  bom?: boolean;
  excelSafe?: boolean;
  header?: boolean;
  count?: boolean;
  entityset?: boolean;
}

function chooseFormat(opts: GetTableOptions, toTerminal: boolean): Format {
  const chosen = (['csv', 'json', 'ndjson', 'table', 'xlsx'] as const).filter((f) => opts[f]);
  if (chosen.length > 1) throw new UsageError(`choose one format, not ${chosen.map((f) => `--${f}`).join(' and ')}`);
  if (chosen.length === 1 && opts.format && opts.format !== chosen[0]) throw new UsageError(`--${chosen[0]} conflicts with --format ${opts.format}`);
  return chosen[0] ?? opts.format ?? (toTerminal ? 'table' : 'csv');
}

const nf = new Intl.NumberFormat('en-US');

export async function run(ctx: CommandContext, args: string[], opts: GetTableOptions): Promise<number> {
  const table = args[0]!;
  const toFile = opts.output !== undefined && opts.output !== '-';
  const format = chooseFormat(opts, !toFile && ctx.io.stdout.isTTY === true);
  if (format === 'xlsx') {
    if (!toFile && ctx.io.stdout.isTTY === true) {
      throw new UsageError('an Excel workbook is binary: write it to a file with -o FILE.xlsx, or redirect standard output');
    }
    const csvOnly = (['delimiter', 'bom', 'excelSafe'] as const).filter((o) => opts[o] !== undefined && opts[o] !== false);
    if (csvOnly.length) throw new UsageError(`${csvOnly.map((o) => (o === 'excelSafe' ? '--excel-safe' : `--${o}`)).join(', ')} ${csvOnly.length === 1 ? 'applies' : 'apply'} to CSV, not to --xlsx`);
  }
  if (opts.delimiter !== undefined && [...opts.delimiter].length !== 1) throw new UsageError('--delimiter must be a single character');
  if (opts.delimiter !== undefined && /["\r\n]/.test(opts.delimiter)) throw new UsageError('--delimiter cannot be a quote or a line break');
  const limit = assertPositive(opts.limit, '--limit', 0);
  const skip = assertPositive(opts.skip, '--skip', 0);
  const pageSize = assertPositive(opts.pageSize, '--page-size', 1) ?? ctx.settings.pageSize;
  const pinned = assertPositive(opts.concurrency, '--concurrency', 1) ?? ctx.settings.envConfig?.concurrency ?? ctx.config.defaults?.concurrency;
  const concurrency = pinned ?? ctx.settings.concurrency;
  if (concurrency > 16) throw new UsageError('--concurrency is at most 16 (one session serves every request)');
  if (pageSize > 100_000) throw new UsageError('--page-size is at most 100000');

  ctx.metrics.table(table);
  const client = await ctx.client();
  const plan = await planExport(client, {
    table,
    fields: parseFields(opts.fields),
    where: opts.where,
    filter: opts.filter,
    orderBy: opts.orderBy,
    // The table format shows at most 100 rows unless --limit says otherwise.
    limit: format === 'table' && limit === undefined && !opts.count ? undefined : limit,
    skip,
    pageSize,
    // Not pinned by --concurrency or the config: adapted to the server (table/concurrency.ts).
    concurrency: pinned,
    raw: opts.raw,
    meta: opts.meta,
    entitySet: opts.entityset !== false,
  });

  if (opts.count) {
    const n = await countRows(client, plan);
    await write(ctx.io.stdout, `${n}\n`);
    return 0;
  }

  const tableCap = format === 'table' ? limit ?? 100 : undefined;
  if (format === 'table' && limit === undefined) plan.options.limit = tableCap;

  const started = Date.now();
  const progress = ctx.interactive ? await startProgress(ctx.io.stderr, `${table}: reading`) : undefined;
  let summary: Partial<ExportSummary> = {};
  let file: AtomicFile | undefined;
  // Nothing is written before the first page has arrived and passed its checks: a rejected filter,
  // an unknown field or a server that ignores the filter leaves stdout empty, not a header-only
  // "export". A file is written under a temporary name and renamed only on success.
  let begun = false;
  let countWritten = () => 0;
  const exportOnce = async () => {
    summary = {};
    let out: Writable = ctx.io.stdout;
    if (toFile) {
      file = await openAtomic(opts.output!, ctx.io.cwd);
      out = file.stream;
    }
    const writer = await createWriter(format, plan.columns.map((c) => c.name), out, {
      delimiter: opts.delimiter,
      bom: opts.bom,
      excelSafe: opts.excelSafe,
      header: opts.header,
      color: ctx.color.stdout,
      width: ctx.io.stdout.columns,
      maxRows: tableCap,
      sheetName: plan.dataClass.name,
      kinds: plan.columns.map((c) => cellKindFor(c.attribute, opts.raw === true)),
      warn: (message) => ctx.logger.warn(message),
    });
    countWritten = () => writer.written;
    let begunHere = false;
    const hooks = {
      logger: ctx.logger,
      summary,
      onStart: (total: number) => progress?.update({ rows: 0, total, label: table }),
      onPage: (p: ExportProgress) => progress?.update({ ...p, label: table }),
    };
    // CSV, JSON and NDJSON are encoded straight from the pages' bytes, the other formats get rows
    // built from them (table/transcode.ts); LEGACY_TRANSCODE=0 takes the reference path (JSON.parse
    // of each page, then the writer), byte for byte the same.
    const reference = ctx.io.env.LEGACY_TRANSCODE === '0';
    const encoder = reference ? undefined : writer.encoder?.(plan.columns);
    try {
      for await (const rows of encoder ? exportEncoded(client, plan, encoder, hooks) : exportRows(client, plan, hooks, { reference })) {
        if (ctx.signal.aborted) break;
        if (!begunHere) {
          begunHere = true;
          if (!toFile) begun = true;
          await writer.begin();
        }
        await (Array.isArray(rows) ? writer.write(rows) : writer.writeEncoded!(rows));
      }
      if (ctx.signal.aborted) throw new InterruptedError('interrupted');
      if (!begunHere) await writer.begin();
      await writer.end();
      if (file) await file.commit();
    } catch (error) {
      if (file) await file.abort();
      throw error;
    }
  };
  try {
    try {
      await exportOnce();
    } catch (error) {
      // The server rebuilt a lost selection differently: start over once, if nothing reached the reader yet.
      if (!(error instanceof SelectionChangedError) || begun || ctx.signal.aborted) throw error;
      ctx.logger.warn(`${(error as Error).message}; starting the export again`);
      await exportOnce();
    }
    progress?.stop();
  } catch (error) {
    progress?.stop();
    // What reached stdout stays there; a file that was not committed holds nothing.
    ctx.metrics.rows({ read: summary.rows ?? 0, written: file ? 0 : countWritten() });
    throw ctx.signal.aborted && ctx.signal.reason === 'interrupt' ? new InterruptedError('interrupted') : error;
  }
  ctx.metrics.rows({ read: summary.rows ?? 0, written: countWritten() });

  const seconds = (Date.now() - started) / 1000;
  const rowsWritten = summary.rows ?? 0;
  if (format === 'table' && (summary.serverCount ?? 0) > rowsWritten) {
    ctx.io.stderr.write(`showing ${nf.format(rowsWritten)} of ${nf.format(Math.max(0, (summary.serverCount ?? 0) - (skip ?? 0)))} rows (use --limit, or --csv/--json for all)\n`);
  } else if (ctx.interactive) {
    ctx.io.stderr.write(`${nf.format(rowsWritten)} rows in ${seconds.toFixed(1)} s${file ? ` → ${opts.output}` : ''}\n`);
  }
  ctx.logger.info(`exported ${rowsWritten} rows of ${table} in ${seconds.toFixed(1)} s`, { entitySet: summary.usedEntitySet });
  if (format !== 'table' && summary.expected !== undefined && rowsWritten !== summary.expected) {
    ctx.logger.warn(
      `wrote ${rowsWritten} rows but the server counted ${summary.expected} at the start${summary.vanished ? ` (${summary.vanished} deleted during the export)` : ''}; the table changed while it was being exported`,
    );
  }
  return 0;
}
