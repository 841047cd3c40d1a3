/** `legacy push-field`: one record (arguments) or thousands (--from), with optimistic locking. */
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { requireConfirmation } from '../cli/prompt.js';
import { command, wholeNumber } from '../cli/spec.js';
import { ExitCode, UsageError } from '../errors/index.js';
import type { DataClass } from '../rest/types.js';
import type { ValueType } from '../push/coerce.js';
import type { RowReport } from '../push/index.js';
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
}

export const spec = command<PushOptions>({
  name: 'push-field <table> [args...]',
  usage: '<Table> <key> <field> <value> [options]  |  <Table> --from <file|-> [options]',
  description: 'update fields of records safely (optimistic locking with __STAMP)',
  options: [
    {
      flags: '--type <type>',
      description: 'value type (default auto: from the catalog)',
      choices: ['auto', 'string', 'number', 'bool', 'date', 'time', 'json'],
    },
    { flags: '--from <file>', description: 'bulk: CSV (header row) or NDJSON file, - for stdin; a key column and one or more field columns' },
    { flags: '--key-column <name>', description: "bulk: the column holding the key (default: the table's key)" },
    { flags: '--batch-size <n>', description: 'bulk: records per update request (default 100)', parse: wholeNumber('--batch-size', 1, 1000) },
    { flags: '--continue-on-error', description: 'bulk: keep going after rows that fail' },
    { flags: '--report <format>', description: 'bulk: report format (default: table on a terminal, else ndjson)', choices: ['table', 'ndjson', 'csv'] },
    { flags: '--dry-run', description: 'read and validate, show what would change, write nothing' },
    { flags: '-y, --yes', description: 'do not ask for confirmation (required when not on a terminal)' },
    { flags: '--json', description: 'JSON result (one object; NDJSON report in bulk)' },
    { flags: '--force', description: 'overwrite even if someone else changed the field since it was read' },
  ],
  examples: [
    "legacy push-field Artikel 7464FEB39C516942B01E62F44B1ED454 Bezeichnung 'Engel, groß' --yes",
    'legacy push-field Artikel 7464FEB3... Auslaufdatum 2026-12-31 --dry-run',
    'legacy push-field Kunden --from kunden-plz.csv --key-column KundenNr --yes',
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
      : async (changes: RowReport[]) => {
          const preview = changes
            .slice(0, 20)
            .map((c) => describeChange(dc.name, c))
            .join('\n');
          ctx.io.stderr.write(`${preview}${changes.length > 20 ? `\n… and ${changes.length - 20} more` : ''}\n`);
          return confirm(ctx.io, `write ${changes.length} change(s) to ${client.baseUrl}?`, ctx.signal);
        };
  const pusher = new Pusher(client, dc, {
    dryRun: opts.dryRun,
    force: opts.force,
    type: opts.type ?? 'auto',
    logger: ctx.logger,
    audit: new AuditLog(ctx.settings.dataDir),
    env: ctx.settings.envName,
    confirm: confirmFn,
  });
  if (opts.from !== undefined) return bulk(ctx, pusher, dc, { ...opts, from: opts.from });

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

/** `--from`: the library's bulk loop, a report as batches finish, a summary line at the end. */
async function bulk(ctx: CommandContext, pusher: import('../push/index.js').Pusher, dc: DataClass, opts: PushOptions & { from: string }): Promise<number> {
  const table = dc.name;
  const [{ pushBulk }, { REPORT_TABLE_HEADER, reportWriter }, input, { columns }] = await Promise.all([
    import('../push/bulk.js'),
    import('../push/report.js'),
    import('../push/input.js'),
    import('../cli/render.js'),
  ]);
  const format = opts.from === '-' ? await input.detectStdinFormat(ctx.io.stdin) : await input.detectFormat(opts.from, ctx.io.cwd).catch(() => 'csv' as const);
  const source = await input.openInput(opts.from, ctx.io.cwd, ctx.io.stdin);
  const keyColumn = opts.keyColumn ?? dc.key[0]?.name;
  if (!keyColumn) throw new UsageError(`${table} has no primary key in the catalog; name the key column with --key-column`);
  const report = reportWriter(opts.report ?? (opts.json ? 'ndjson' : ctx.io.stdout.isTTY ? 'table' : 'ndjson'), ctx.io.stdout);
  const progress = ctx.interactive ? await (await import('../cli/progress.js')).startProgress(ctx.io.stderr, `${table}: updating`) : undefined;
  let done = 0;
  const result = await pushBulk(pusher, source, format, {
    keyColumn,
    batchSize: opts.batchSize ?? 100,
    continueOnError: opts.continueOnError === true,
    signal: ctx.signal,
    source: opts.from === '-' ? '(stdin)' : opts.from,
    onReports: async (reports) => {
      ctx.metrics.rows({ read: reports.length, written: reports.filter((r) => r.result === 'updated').length });
      await report.add(reports);
      done += reports.length;
      progress?.update({ rows: done, label: table });
    },
  }).finally(() => progress?.stop());
  if (report.tableRows.length) await write(ctx.io.stdout, columns(report.tableRows, REPORT_TABLE_HEADER));
  const summary = Object.entries(result.counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  if (result.exitCode !== ExitCode.ok)
    ctx.logger.error(`push-field: ${summary}${opts.continueOnError ? '' : ' (stopped at the first failing batch; --continue-on-error to go on)'}`);
  else if (ctx.interactive) ctx.io.stderr.write(`${summary}\n`);
  else ctx.logger.info(`push-field: ${summary}`);
  return result.exitCode;
}
