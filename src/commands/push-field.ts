/** `legacy push-field`: one record (arguments) or thousands (--from), with optimistic locking. */
import { resolve } from 'node:path';
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { requireConfirmation } from '../cli/prompt.js';
import { command, wholeNumber } from '../cli/spec.js';
import { CancelledError, ExitCode, UsageError } from '../errors/index.js';
import type { DataClass } from '../rest/types.js';
import type { ValueType } from '../push/coerce.js';
import type { ChangeTotals, RowReport } from '../push/index.js';
import type { ReportFormat } from '../push/report.js';

interface PushOptions {
  type?: ValueType;
  dryRun?: boolean;
  yes?: boolean;
  json?: boolean;
  force?: boolean;
  from?: string;
  keyColumn?: string;
  batchSize?: number;
  continueOnError?: boolean;
  report?: ReportFormat;
  delimiter?: string;
  conflicts?: string;
  excelSafe?: boolean;
}

export const spec = command<PushOptions>({
  name: 'push-field <table> [args...]',
  complete: ['tables', 'none'],
  usage: '<Table> <key> <field> <value> [options]  |  <Table> --from <file|-> [options]',
  description: 'update fields of records safely (optimistic locking with __STAMP)',
  options: [
    {
      flags: '--type <type>',
      description: 'value type (default auto: from the catalog)',
      choices: ['auto', 'string', 'number', 'bool', 'date', 'time', 'json'],
    },
    {
      flags: '--from <file>',
      description:
        'bulk: a CSV (header row), NDJSON, JSON or .xlsx file (as get-table writes it; - for stdin, not xlsx): a key column and field columns; with __STAMP (get-table --meta) a record saved since the export is a conflict, not overwritten',
    },
    { flags: '--key-column <name>', description: "bulk: the column holding the key (default: __KEY when present, else the table's key)" },
    { flags: '--delimiter <c>', description: 'bulk: the CSV delimiter (default: detected from the header row: , ; TAB or |)' },
    { flags: '--conflicts <file>', description: 'bulk: write the conflicting fields to this CSV file (.xlsx: a workbook), with a command to re-export them' },
    { flags: '--excel-safe', description: "bulk: the file was exported with get-table --excel-safe (one ' is removed before = + - @ TAB CR)" },
    { flags: '--batch-size <n>', description: 'bulk: records per update request (default 100)', parse: wholeNumber('--batch-size', 1, 1000) },
    { flags: '--continue-on-error', description: 'bulk: keep going after rows that fail' },
    { flags: '--report <format>', description: 'bulk: report format (default: table on a terminal, else ndjson)', choices: ['table', 'ndjson', 'csv'] },
    { flags: '--dry-run', description: 'read and validate, show what would change, write nothing' },
    { flags: '-y, --yes', description: 'do not ask for confirmation (required when not on a terminal)' },
    { flags: '--json', description: 'JSON result (one object; NDJSON report in bulk)' },
    { flags: '--force', description: 'overwrite even if someone else changed the record since it was exported or read (recorded in the audit log)' },
  ],
  examples: [
    "legacy push-field Artikel 7464FEB39C516942B01E62F44B1ED454 Bezeichnung 'Engel, groß' --yes",
    'legacy push-field Artikel 7464FEB3... Auslaufdatum 2026-12-31 --dry-run',
    'legacy push-field Kunden --from kunden-plz.csv --key-column KundenNr --yes',
    'legacy get-table Kunden --meta -o kunden.xlsx   # edit, then:',
    'legacy push-field Kunden --from kunden.xlsx --dry-run',
    'legacy push-field Kunden --from kunden.xlsx --conflicts konflikte.csv --yes',
  ],
  run,
});

/** The command line's rules, before anything is read. */
function checkUsage(ctx: CommandContext, rest: string[], opts: PushOptions): void {
  if (opts.from === undefined && rest.length !== 3) {
    throw new UsageError('push-field needs <Table> <key> <field> <value>, or <Table> --from <file>', { hint: "see 'legacy help push-field'" });
  }
  if (opts.from !== undefined && rest.length > 0) throw new UsageError('give either <key> <field> <value> or --from, not both');
  requireConfirmation(ctx.io, opts.yes || opts.dryRun, 'push-field writes to the server', 'or --dry-run to preview');
  if (opts.from === '-' && !opts.yes && !opts.dryRun) throw new UsageError('with --from - (stdin) add --yes: the terminal cannot be used for confirmation');
  if (opts.from === undefined) {
    const bulkOnly = (['delimiter', 'conflicts', 'excelSafe', 'keyColumn', 'batchSize', 'continueOnError', 'report'] as const).filter(
      (o) => opts[o] !== undefined,
    );
    if (bulkOnly.length) throw new UsageError(`--${bulkOnly[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} applies to --from only`);
  }
  if (opts.delimiter !== undefined) {
    if (opts.delimiter === '\\t' || opts.delimiter.toLowerCase() === 'tab') opts.delimiter = '\t';
    if ([...opts.delimiter].length !== 1) throw new UsageError('--delimiter must be a single character (or tab)');
    if (/["\r\n]/.test(opts.delimiter)) throw new UsageError('--delimiter cannot be a quote or a line break');
  }
}

async function run(ctx: CommandContext, args: string[], opts: PushOptions): Promise<number> {
  const [table, ...rest] = args;
  checkUsage(ctx, rest, opts);
  const [{ Pusher, errorForReport, pushExitCode }, { AuditLog }, { describeChange }, { confirm }] = await Promise.all([
    import('../push/index.js'),
    import('../push/audit.js'),
    import('../push/report.js'),
    import('../cli/prompt.js'),
  ]);
  ctx.metrics.table(table!);
  const client = await ctx.client();
  const dc = await client.dataClass(table!);
  const confirmFn =
    opts.yes || opts.dryRun
      ? undefined
      : async (changes: RowReport[], total?: ChangeTotals) => {
          const records = total?.records ?? changes.length;
          const preview = changes
            .slice(0, 20)
            .map((c) => describeChange(dc.name, c))
            .join('\n');
          const shownRecords = Math.min(changes.length, 20);
          ctx.io.stderr.write(`${preview}${records > shownRecords ? `\n… and ${records - shownRecords} more record(s)` : ''}\n`);
          const fields = total ? ` (${total.fields} field(s) in ${records} record(s))` : '';
          return confirm(ctx.io, `write ${records} change(s)${fields} to ${client.baseUrl}?`, ctx.signal);
        };
  const pusher = new Pusher(client, dc, {
    batchSize: opts.batchSize,
    dryRun: opts.dryRun,
    force: opts.force,
    type: opts.type ?? 'auto',
    logger: ctx.logger,
    audit: new AuditLog(ctx.settings.dataDir),
    env: ctx.settings.envName,
    confirm: confirmFn,
    signal: ctx.signal,
  });
  if (opts.from !== undefined) return bulk(ctx, pusher, dc, { ...opts, from: opts.from }, confirmFn);

  const [key, field, value] = rest as [string, string, string];
  pusher.checkFields([field]);
  const [r] = (await pusher.push([{ key, fields: { [field]: value } }])) as [RowReport];
  ctx.metrics.rows({ read: 1, written: r.result === 'updated' ? 1 : 0 });
  if (opts.json) await write(ctx.io.stdout, `${JSON.stringify(r)}\n`);
  else if (r.result === 'updated' || r.result === 'would-update' || r.result === 'unchanged') {
    const suffix =
      r.result === 'updated'
        ? ` (stamp ${r.stampBefore} → ${r.stampAfter})`
        : r.result === 'unchanged'
          ? ' (already set; nothing written)'
          : ' (dry run; nothing written)';
    await write(ctx.io.stdout, `${describeChange(dc.name, r)}${suffix}\n`);
  }
  if (pushExitCode([r]) !== ExitCode.ok) throw errorForReport(r);
  return ExitCode.ok;
}

/** `--from`: the library's bulk loop, a report as chunks finish, conflicts to their file, a summary line at the end. */
async function bulk(
  ctx: CommandContext,
  pusher: import('../push/index.js').Pusher,
  dc: DataClass,
  opts: PushOptions & { from: string },
  confirmFn: ((changes: RowReport[], total: ChangeTotals) => Promise<boolean>) | undefined,
): Promise<number> {
  const table = dc.name;
  const [{ pushBulk }, { REPORT_TABLE_HEADER, reportWriter }, input, { ConflictReport }, { columns }] = await Promise.all([
    import('../push/bulk.js'),
    import('../push/report.js'),
    import('../push/input.js'),
    import('../push/conflicts.js'),
    import('../cli/render.js'),
  ]);
  const spec = { path: opts.from, cwd: ctx.io.cwd, stdin: ctx.io.stdin, delimiter: opts.delimiter };
  const format = await input.detectFormat(spec);
  if (opts.delimiter !== undefined && format !== 'csv') throw new UsageError(`--delimiter applies to CSV input, and ${opts.from} is ${format.toUpperCase()}`);
  let delimiter: string | undefined;
  const open = async () => {
    const opened = await input.openRows(spec, format);
    delimiter = opened.delimiter;
    return opened;
  };
  const conflicts = await ConflictReport.open(
    dc,
    {
      input: opts.from,
      get delimiter() {
        return delimiter;
      },
    },
    opts.conflicts,
    ctx.io.cwd,
  );
  const report = reportWriter(opts.report ?? (opts.json ? 'ndjson' : ctx.io.stdout.isTTY ? 'table' : 'ndjson'), ctx.io.stdout);
  const startProgress = async () => (ctx.interactive ? (await import('../cli/progress.js')).startProgress(ctx.io.stderr, `${table}: updating`) : undefined);
  let progress = await startProgress();
  let done = 0;
  let result: Awaited<ReturnType<typeof pushBulk>>;
  try {
    result = await pushBulk(pusher, open, opts.from !== '-', {
      keyColumn: opts.keyColumn,
      batchSize: opts.batchSize ?? 100,
      continueOnError: opts.continueOnError === true,
      signal: ctx.signal,
      source: opts.from === '-' ? '(stdin)' : opts.from,
      excelSafe: opts.excelSafe === true,
      force: opts.force === true,
      // The spinner stops while the person is asked, and goes on for the writes.
      confirm:
        confirmFn &&
        (async (changes, total) => {
          progress?.stop();
          progress = undefined;
          const yes = await confirmFn(changes, total);
          if (yes) progress = await startProgress();
          return yes;
        }),
      fingerprint: async () => {
        const { stat } = await import('node:fs/promises');
        // A file that cannot be read is reported by the reading (exit 64).
        const st = await stat(resolve(ctx.io.cwd, opts.from)).catch(() => undefined);
        return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}` : 'unreadable';
      },
      warn: (m) => ctx.logger.warn(m),
      onReports: async (reports) => {
        ctx.metrics.rows({ read: reports.length, written: reports.filter((r) => r.result === 'updated').length });
        await report.add(reports);
        await conflicts.add(reports);
        done += reports.length;
        progress?.update({ rows: done, label: table });
      },
    }).finally(() => progress?.stop());
  } catch (error) {
    // Interrupted or failed: a conflict report of part of the file is not put in place as if it were whole.
    await conflicts.abort();
    throw error;
  }
  if (result.declined) {
    await conflicts.abort();
    throw new CancelledError(`cancelled: nothing was written (${result.declined.records} record(s), ${result.declined.fields} field(s) not confirmed)`);
  }
  const reportPath = await conflicts.finish();
  if (report.tableRows.length) await write(ctx.io.stdout, columns(report.tableRows, REPORT_TABLE_HEADER));
  const summary = Object.entries(result.counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  if (conflicts.conflicts > 0) {
    ctx.logger.error(
      `push-field: ${conflicts.conflicts} record(s) in conflict were left as the server has them${reportPath ? `; see ${reportPath}` : ''}; re-export them with: ${conflicts.followUp()}`,
    );
  }
  if (result.exitCode !== ExitCode.ok)
    ctx.logger.error(
      `push-field: ${summary}${opts.continueOnError || !result.stopped ? '' : ' (stopped at the first failing row; --continue-on-error to go on)'}`,
    );
  else if (ctx.interactive) ctx.io.stderr.write(`${summary}${opts.dryRun ? ' (dry run: nothing written)' : ''}\n`);
  else ctx.logger.info(`push-field: ${summary}${opts.dryRun ? ' (dry run: nothing written)' : ''}`);
  return result.exitCode;
}
