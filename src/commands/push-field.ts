/** `legacy push-field`: one record (argv) or thousands (--from), with optimistic locking. */
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { confirm } from '../cli/prompt.js';
import { columns } from '../cli/render.js';
import { BadDataError, UsageError } from '../errors/index.js';
import { AuditLog } from '../push/audit.js';
import { VALUE_TYPES, type ValueType } from '../push/coerce.js';
import { Pusher, errorForReport, pushExitCode, type PushRequestRow, type RowReport } from '../push/index.js';
import { detectFormat, detectStdinFormat, openInput, readRows } from '../push/input.js';
import { assertPositive } from '../table/export.js';
import { csvEncoder } from '../table/csv.js';
import { startProgress } from '../cli/progress.js';

interface PushOptions {
  type?: string;
  dryRun?: boolean;
  yes?: boolean;
  json?: boolean;
  force?: boolean;
  from?: string;
  keyColumn?: string;
  batchSize?: string;
  continueOnError?: boolean;
  report?: string;
}

const show = (v: unknown) => (v === undefined ? '∅' : JSON.stringify(v));

function describeChange(table: string, r: RowReport): string {
  return r.fields.map((f) => `${table}[${r.key}].${f}: ${show(r.old[f])} → ${show(r.new[f])}`).join('\n');
}

export async function run(ctx: CommandContext, args: string[], opts: PushOptions): Promise<number> {
  const type = (opts.type ?? 'auto') as ValueType;
  if (!VALUE_TYPES.includes(type)) throw new UsageError(`--type must be one of ${VALUE_TYPES.join(', ')}`);
  const [table, ...rest] = args;
  if (opts.from === undefined && rest.length !== 3) {
    throw new UsageError('push-field needs <Table> <key> <field> <value>, or <Table> --from <file>', { hint: "see 'legacy help push-field'" });
  }
  if (opts.from !== undefined && rest.length > 0) throw new UsageError('give either <key> <field> <value> or --from, not both');
  const interactive = ctx.io.stdin.isTTY === true && ctx.io.stderr.isTTY === true;
  if (!opts.dryRun && !opts.yes && !interactive) {
    throw new UsageError('push-field writes to the server; add --yes to confirm when not on a terminal (or --dry-run to preview)');
  }
  if (opts.from === '-' && !opts.yes && !opts.dryRun) throw new UsageError('with --from - (stdin) add --yes: the terminal cannot be used for confirmation');
  const batchSize = assertPositive(opts.batchSize, '--batch-size', 1) ?? 100;
  if (batchSize > 1000) throw new UsageError('--batch-size is at most 1000');

  ctx.metrics.table(table!);
  const client = await ctx.client();
  const dc = await client.dataClass(table!);
  const confirmFn = opts.yes || opts.dryRun
    ? undefined
    : async (changes: RowReport[]) => {
        const preview = changes.slice(0, 20).map((c) => describeChange(dc.name, c)).join('\n');
        ctx.io.stderr.write(`${preview}${changes.length > 20 ? `\n… and ${changes.length - 20} more` : ''}\n`);
        return confirm(ctx.io, `write ${changes.length} change(s) to ${client.baseUrl}?`, ctx.signal);
      };
  const pusher = new Pusher(client, dc, {
    dryRun: opts.dryRun,
    force: opts.force,
    type,
    logger: ctx.logger,
    audit: new AuditLog(ctx.settings.dataDir),
    env: ctx.settings.envName,
    confirm: confirmFn,
  });

  if (opts.from === undefined) {
    const [key, field, value] = rest as [string, string, string];
    pusher.checkFields([field]);
    const [report] = await pusher.push([{ key, fields: { [field]: value } }]);
    const r = report!;
    ctx.metrics.rows({ read: 1, written: r.result === 'updated' ? 1 : 0 });
    if (opts.json) await write(ctx.io.stdout, `${JSON.stringify(r)}\n`);
    else if (r.result === 'updated' || r.result === 'would-update' || r.result === 'unchanged') {
      const suffix = r.result === 'updated' ? ` (stamp ${r.stampBefore} → ${r.stampAfter})` : r.result === 'unchanged' ? ' (already set; nothing written)' : ' (dry run; nothing written)';
      await write(ctx.io.stdout, `${describeChange(dc.name, r)}${suffix}\n`);
    }
    if (pushExitCode([r]) !== 0) throw errorForReport(r);
    return 0;
  }

  // Bulk: stream the input in batches; check the header before any write.
  const format = opts.from === '-' ? await detectStdinFormat(ctx.io.stdin) : await detectFormat(opts.from, ctx.io.cwd).catch(() => 'csv' as const);
  const input = await openInput(opts.from, ctx.io.cwd, ctx.io.stdin);
  const keyColumn = opts.keyColumn ?? dc.key[0]?.name;
  if (!keyColumn) throw new UsageError(`${dc.name} has no primary key in the catalog; name the key column with --key-column`);
  const reportFormat = opts.report ?? (opts.json ? 'ndjson' : ctx.io.stdout.isTTY ? 'table' : 'ndjson');
  if (!['table', 'ndjson', 'csv'].includes(reportFormat)) throw new UsageError('--report must be table, ndjson or csv');
  const tableRows: string[][] = [];
  let csvHeader = false;
  const emit = async (reports: RowReport[]) => {
    if (reportFormat === 'ndjson') {
      await write(ctx.io.stdout, reports.map((r) => `${JSON.stringify(r)}\n`).join(''));
    } else if (reportFormat === 'csv') {
      const csv = csvEncoder();
      const head = csvHeader ? '' : csv.row(['line', 'key', 'fields', 'old', 'new', 'result', 'message']);
      csvHeader = true;
      await write(ctx.io.stdout, head + reports.map((r) => csv.row([r.line ?? '', r.key, r.fields.join(' '), r.old, r.new, r.result, r.message ?? ''])).join(''));
    } else {
      for (const r of reports) tableRows.push([r.key, r.fields.join(','), r.fields.map((f) => show(r.old[f])).join(','), r.fields.map((f) => show(r.new[f])).join(','), r.result, r.message ?? '']);
    }
  };

  const counts: Record<string, number> = {};
  let exitCode = 0;
  let total = 0;
  const progress = ctx.interactive ? await startProgress(ctx.io.stderr, `${dc.name}: updating`) : undefined;
  let fieldsChecked = false;
  let batch: PushRequestRow[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const reports = await pusher.push(batch);
    batch = [];
    for (const r of reports) counts[r.result] = (counts[r.result] ?? 0) + 1;
    ctx.metrics.rows({ read: reports.length, written: reports.filter((r) => r.result === 'updated').length });
    await emit(reports);
    total += reports.length;
    progress?.update({ rows: total, label: dc.name });
    if (pushExitCode(reports) !== 0) {
      exitCode = 65;
      if (!opts.continueOnError) return false;
    }
    return true;
  };
  try {
    let stopped = false;
    for await (const row of readRows(input, format)) {
      if (!fieldsChecked) {
        const names = Object.keys(row.values);
        if (!names.includes(keyColumn)) throw new BadDataError(`the input has no key column '${keyColumn}' (columns: ${names.join(', ')})`, { hint: 'name it with --key-column' });
        const fieldNames = names.filter((n) => n !== keyColumn);
        if (fieldNames.length === 0) throw new BadDataError('the input has no field columns besides the key');
        pusher.checkFields(fieldNames);
        fieldsChecked = true;
      }
      const { [keyColumn]: keyValue, ...fields } = row.values;
      if (keyValue === undefined || keyValue === null || String(keyValue) === '') {
        await emit([{ line: row.line, key: '', fields: Object.keys(fields), old: {}, new: fields, result: 'invalid', message: `line ${row.line}: empty key` }]);
        counts.invalid = (counts.invalid ?? 0) + 1;
        exitCode = 65;
        if (!opts.continueOnError) {
          stopped = true;
          break;
        }
        continue;
      }
      batch.push({ line: row.line, key: String(keyValue), fields });
      if (batch.length >= batchSize && !(await flush())) {
        stopped = true;
        break;
      }
      if (ctx.signal.aborted) break;
    }
    if (!stopped && !ctx.signal.aborted) await flush();
    if (!fieldsChecked) throw new BadDataError(`the input ${opts.from === '-' ? '(stdin)' : opts.from} has no rows`);
  } finally {
    progress?.stop();
  }
  if (tableRows.length) await write(ctx.io.stdout, columns(tableRows, ['KEY', 'FIELDS', 'OLD', 'NEW', 'RESULT', 'MESSAGE']));
  const summary = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ');
  if (exitCode !== 0) {
    ctx.logger.error(`push-field: ${summary}${opts.continueOnError ? '' : ' (stopped at the first failing batch; --continue-on-error to go on)'}`);
  } else if (ctx.interactive) ctx.io.stderr.write(`${summary}\n`);
  else ctx.logger.info(`push-field: ${summary}`);
  return exitCode;
}
