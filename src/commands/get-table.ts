/** `legacy get-table <Table>`: stream a whole table out. Parses and checks options, runs the export library, reports. */
import { extname } from 'node:path';
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { command, list, repeatable, wholeNumber } from '../cli/spec.js';
import { UsageError } from '../errors/index.js';
import type { ExportSummary } from '../table/paging/read.js';
import type { ExportPlan } from '../table/plan/plan.js';
import type { Format, WriterOptions } from '../table/output/formats.js';

const FORMATS = ['csv', 'json', 'ndjson', 'table', 'xlsx'] as const;

interface GetTableOptions {
  csv?: boolean;
  json?: boolean;
  ndjson?: boolean;
  table?: boolean;
  xlsx?: boolean;
  format?: Format;
  output?: string;
  fields?: string[];
  where?: string[];
  filter?: string;
  orderBy?: string;
  limit?: number;
  skip?: number;
  pageSize?: number;
  concurrency?: number;
  raw?: boolean;
  meta?: boolean;
  delimiter?: string;
  bom?: boolean;
  excelSafe?: boolean;
  header?: boolean;
  count?: boolean;
  entityset?: boolean;
  resume?: boolean;
}

export const spec = command<GetTableOptions>({
  name: 'get-table <table>',
  complete: ['tables'],
  description: 'stream a whole table out as CSV, JSON, NDJSON, an Excel workbook or a terminal table',
  options: [
    { flags: '--csv', description: 'CSV (default when stdout is not a terminal)' },
    { flags: '--json', description: 'one JSON array' },
    { flags: '--ndjson', description: 'one JSON object per line' },
    { flags: '--table', description: 'a terminal table (default on a terminal; at most 100 rows unless --limit)' },
    { flags: '--xlsx', description: 'an Excel workbook with typed cells (needs -o FILE or a redirected stdout)' },
    { flags: '-f, --format <format>', description: 'output format', choices: FORMATS },
    {
      flags: '-o, --output <file>',
      description:
        'write to this file (atomically: temp file, renamed on success; through symlinks, devices and FIFOs in place); - for stdout; without a format flag, .csv .json .ndjson .jsonl .xlsx pick the format',
    },
    { flags: '--fields <list>', description: 'comma-separated attributes, in this order', parse: list },
    { flags: '--where <cond>', description: 'condition <field><op><value>, op one of = != < > <= >= begin (repeatable, ANDed)', parse: repeatable },
    { flags: '--filter <query>', description: 'a raw 4D query, sent as $filter (text values in single quotes)' },
    { flags: '--order-by <spec>', description: 'sort, e.g. "Nummer desc,Bezeichnung"' },
    { flags: '--limit <n>', description: 'at most n rows', parse: wholeNumber('--limit', 0) },
    { flags: '--skip <n>', description: 'skip the first n rows', parse: wholeNumber('--skip', 0) },
    { flags: '--page-size <n>', description: 'rows per request (default 1000)', parse: wholeNumber('--page-size', 1, 100_000) },
    {
      flags: '--concurrency <n>',
      description: 'pages fetched in parallel (default: adapted to the server, 3 to 8; at most 16, one session serves every request)',
      parse: wholeNumber('--concurrency', 1, 16),
    },
    { flags: '--raw', description: 'values as the server sends them (no date/time conversion)' },
    { flags: '--meta', description: 'add __KEY, __STAMP and __TIMESTAMP columns' },
    { flags: '--delimiter <c>', description: 'CSV delimiter (default ,)' },
    { flags: '--bom', description: 'start CSV with a UTF-8 byte order mark (for Excel)' },
    { flags: '--excel-safe', description: "neutralise CSV cells starting with = + - @ TAB CR (a ' before them; push-field --excel-safe removes it)" },
    { flags: '--no-header', description: 'no CSV header row' },
    { flags: '--count', description: 'print the number of rows (respecting filters) and nothing else' },
    { flags: '--no-entityset', description: 'page with $skip/$top instead of a server-side entity set' },
    {
      flags: '--resume',
      description: 'carry on the interrupted export to -o FILE from its last complete page (automatic when its options match; csv, json, ndjson in key order)',
    },
    { flags: '--no-resume', description: 'start the export to -o FILE over, removing what an interrupted run left' },
  ],
  examples: [
    'legacy get-table Artikel --csv > artikel.csv',
    "legacy get-table Artikel --where 'Bezeichnung=Engel@' --fields Nummer,Bezeichnung --limit 20",
    'legacy get-table Kunden --ndjson -o kunden.ndjson',
    'legacy get-table Artikel --xlsx -o artikel.xlsx',
    'legacy get-table Artikel --csv -o artikel.csv --resume',
    "legacy get-table Belege --count --where 'Datum>=2025-01-01'",
  ],
  run,
});

/** The format an output file's name asks for (as pandas and DuckDB read it); undefined: the name says nothing. */
const FORMAT_OF_EXTENSION: Record<string, Format> = { '.csv': 'csv', '.json': 'json', '.ndjson': 'ndjson', '.jsonl': 'ndjson', '.xlsx': 'xlsx' };

/**
 * The one format asked for: a flag; else the `-o` file's extension; else the default for where the
 * output goes. A flag that contradicts the extension is refused (`--csv -o k.json`). Then its option rules.
 */
function chooseFormat(opts: GetTableOptions, toFile: boolean, terminal: boolean): Format {
  const chosen = FORMATS.filter((f) => opts[f]);
  if (chosen.length > 1) throw new UsageError(`choose one format, not ${chosen.map((f) => `--${f}`).join(' and ')}`);
  if (chosen.length === 1 && opts.format && opts.format !== chosen[0]) throw new UsageError(`--${chosen[0]} conflicts with --format ${opts.format}`);
  const asked = chosen[0] ?? opts.format;
  const named = toFile ? FORMAT_OF_EXTENSION[extname(opts.output!).toLowerCase()] : undefined;
  if (asked && named && asked !== named) {
    throw new UsageError(`-o ${opts.output} names a ${named.toUpperCase()} file, but --${asked} asks for ${asked.toUpperCase()}`, {
      hint: `drop --${asked} (the extension decides), or give the file a .${asked === 'ndjson' ? 'ndjson' : asked} name`,
    });
  }
  const format = asked ?? named ?? (!toFile && terminal ? 'table' : 'csv');
  if (format === 'xlsx') {
    if (!toFile && terminal) throw new UsageError('an Excel workbook is binary: write it to a file with -o FILE.xlsx, or redirect standard output');
    const csvOnly = (['delimiter', 'bom', 'excelSafe'] as const).filter((o) => opts[o] !== undefined && opts[o] !== false);
    if (csvOnly.length)
      throw new UsageError(
        `${csvOnly.map((o) => (o === 'excelSafe' ? '--excel-safe' : `--${o}`)).join(', ')} ${csvOnly.length === 1 ? 'applies' : 'apply'} to CSV, not to --xlsx`,
      );
  }
  if (opts.delimiter !== undefined && [...opts.delimiter].length !== 1) throw new UsageError('--delimiter must be a single character');
  if (opts.delimiter !== undefined && /["\r\n]/.test(opts.delimiter)) throw new UsageError('--delimiter cannot be a quote or a line break');
  return format;
}

const nf = new Intl.NumberFormat('en-US');

async function run(ctx: CommandContext, args: string[], opts: GetTableOptions): Promise<number> {
  const table = args[0]!;
  const toFile = opts.output !== undefined && opts.output !== '-';
  const format = chooseFormat(opts, toFile, ctx.io.stdout.isTTY === true);
  if (opts.resume !== undefined && !opts.count) {
    const flag = opts.resume ? '--resume' : '--no-resume';
    if (!toFile) throw new UsageError(`${flag} needs -o FILE: an export to standard output does not resume`);
    if (opts.resume && format === 'xlsx')
      throw new UsageError('--resume: an xlsx workbook cannot be resumed (it is a zip archive written whole)', {
        hint: 'drop --resume to export it again, or export --csv',
      });
    if (opts.resume && opts.orderBy !== undefined)
      throw new UsageError('--resume: an export resumes in key order, which --order-by replaces', { hint: 'drop --order-by, or --resume' });
  }
  const [{ countRows }, { planExport }] = await Promise.all([import('../table/paging/read.js'), import('../table/plan/plan.js')]);
  const { deliverExport } = await import('../table/output/deliver.js');
  const { cellKindFor } = await import('../table/convert.js');
  ctx.metrics.table(table);
  const client = await ctx.client();
  // The table format shows at most 100 rows unless --limit says otherwise.
  const tableCap = format === 'table' && !opts.count ? (opts.limit ?? 100) : undefined;
  const plan = await planExport(client, {
    table,
    fields: opts.fields,
    where: opts.where,
    filter: opts.filter,
    orderBy: opts.orderBy,
    limit: tableCap ?? opts.limit,
    skip: opts.skip,
    pageSize: opts.pageSize ?? ctx.settings.pageSize,
    // Not pinned by --concurrency or the config: adapted to the server (table/paging/concurrency.ts).
    concurrency: opts.concurrency ?? ctx.settings.concurrency,
    raw: opts.raw,
    meta: opts.meta,
    entitySet: opts.entityset !== false,
  });
  if (opts.count) {
    await write(ctx.io.stdout, `${await countRows(client, plan)}\n`);
    return 0;
  }

  const started = Date.now();
  const progress = ctx.interactive ? await (await import('../cli/progress.js')).startProgress(ctx.io.stderr, `${table}: reading`) : undefined;
  const summary = await deliverExport(client, plan, {
    format,
    output: toFile ? opts.output : undefined,
    stdout: ctx.io.stdout,
    cwd: ctx.io.cwd,
    writer: { ...writerOptions(ctx, opts, plan, tableCap), kinds: plan.columns.map((c) => cellKindFor(c.attribute, opts.raw === true)) },
    logger: ctx.logger,
    signal: ctx.signal,
    // LEGACY_TRANSCODE=0: the reference path (JSON.parse of each page, then the writer), byte for byte the same.
    reference: !ctx.settings.transcode,
    onStart: (total) => progress?.update({ rows: 0, total, label: table }),
    onPage: (p) => progress?.update({ ...p, label: table }),
    onDone: (counts) => ctx.metrics.rows(counts),
    resume: toFile
      ? { mode: opts.resume === true ? 'resume' : opts.resume === false ? 'off' : 'auto', environment: ctx.settings.envName, baseUrl: ctx.settings.baseUrl }
      : undefined,
  }).finally(() => progress?.stop());

  report(ctx, table, format, opts, summary, (Date.now() - started) / 1000);
  return 0;
}

/** How the rows are written: the format's options (xlsx's cell kinds are added by run). */
function writerOptions(ctx: CommandContext, opts: GetTableOptions, plan: ExportPlan, tableCap: number | undefined): WriterOptions {
  return {
    delimiter: opts.delimiter,
    bom: opts.bom,
    excelSafe: opts.excelSafe,
    header: opts.header,
    color: ctx.color.stdout,
    width: ctx.io.stdout.columns,
    maxRows: tableCap,
    sheetName: plan.dataClass.name,
    warn: (m) => ctx.logger.warn(m),
  };
}

/** The end of an export on stderr: what a capped table left out, the rows and time on a terminal, a changed table. */
function report(ctx: CommandContext, table: string, format: Format, opts: GetTableOptions, summary: Partial<ExportSummary>, seconds: number): void {
  const toFile = opts.output !== undefined && opts.output !== '-';
  const rows = summary.rows ?? 0;
  if (format === 'table' && (summary.serverCount ?? 0) > rows) {
    ctx.io.stderr.write(
      `showing ${nf.format(rows)} of ${nf.format(Math.max(0, (summary.serverCount ?? 0) - (opts.skip ?? 0)))} rows (use --limit, or --csv/--json for all)\n`,
    );
  } else if (ctx.interactive) {
    ctx.io.stderr.write(`${nf.format(rows)} rows in ${seconds.toFixed(1)} s${toFile ? ` → ${opts.output}` : ''}\n`);
  }
  ctx.logger.info(`exported ${rows} rows of ${table} in ${seconds.toFixed(1)} s`, { entitySet: summary.usedEntitySet, resumedAfter: summary.resumed });
  if (format !== 'table' && summary.expected !== undefined && rows !== summary.expected) {
    ctx.logger.warn(
      `wrote ${rows} rows but the server counted ${summary.expected} at the start${summary.vanished ? ` (${summary.vanished} deleted during the export)` : ''}; the table changed while it was being exported`,
    );
  }
}
