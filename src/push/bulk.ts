/**
 * Bulk push-field: rows streamed from a CSV or NDJSON input, checked (key column, field names) before
 * the first write, pushed in batches. Stop rules: without `continueOnError` the run stops after the
 * first batch with a failing row (or the first row without a key); with it, every row is tried.
 */
import type { Readable } from 'node:stream';
import { BadDataError, ExitCode } from '../errors/index.js';
import { pushExitCode, type Pusher, type PushRequestRow, type RowReport } from './index.js';
import { readRows, type InputFormat } from './input.js';

export interface BulkOptions {
  keyColumn: string;
  batchSize: number;
  continueOnError: boolean;
  signal: AbortSignal;
  /** Where the input came from, for messages. */
  source: string;
  /** Each batch's reports, as they finish. */
  onReports: (reports: RowReport[]) => Promise<void>;
}

export interface BulkResult {
  /** Rows by result (updated, unchanged, conflict, not-found, invalid, ...). */
  counts: Record<string, number>;
  /** 0; 77 when the server refused a row for lack of permission; else 65 when a row failed; else 1 when a prompt was declined. */
  exitCode: number;
  /** True when the stop rule ended the run before the input did. */
  stopped: boolean;
}

export async function pushBulk(pusher: Pusher, input: Readable, format: InputFormat, o: BulkOptions): Promise<BulkResult> {
  const result: BulkResult = { counts: {}, exitCode: ExitCode.ok, stopped: false };
  const tally = async (reports: RowReport[]) => {
    for (const r of reports) result.counts[r.result] = (result.counts[r.result] ?? 0) + 1;
    await o.onReports(reports);
    const code = pushExitCode(reports);
    // A refusal for lack of permission (77) outranks bad rows (65), which outrank a declined prompt (1).
    const rank = (c: number) => (c === ExitCode.auth ? 3 : c === ExitCode.badData ? 2 : c === ExitCode.ok ? 0 : 1);
    if (rank(code) > rank(result.exitCode)) result.exitCode = code;
    return code === ExitCode.ok || o.continueOnError;
  };
  let batch: PushRequestRow[] = [];
  const flush = async () => {
    const rows = batch;
    batch = [];
    return rows.length === 0 || tally(await pusher.push(rows));
  };
  let fieldsChecked = false;
  for await (const row of readRows(input, format)) {
    if (!fieldsChecked) {
      const names = Object.keys(row.values);
      if (!names.includes(o.keyColumn))
        throw new BadDataError(`the input has no key column '${o.keyColumn}' (columns: ${names.join(', ')})`, { hint: 'name it with --key-column' });
      const fieldNames = names.filter((n) => n !== o.keyColumn);
      if (fieldNames.length === 0) throw new BadDataError('the input has no field columns besides the key');
      pusher.checkFields(fieldNames);
      fieldsChecked = true;
    }
    const { [o.keyColumn]: keyValue, ...fields } = row.values;
    let goOn: boolean;
    if (keyValue === undefined || keyValue === null || String(keyValue) === '') {
      goOn = await tally([
        { line: row.line, key: '', fields: Object.keys(fields), old: {}, new: fields, result: 'invalid', message: `line ${row.line}: empty key` },
      ]);
    } else {
      batch.push({ line: row.line, key: String(keyValue), fields });
      goOn = batch.length < o.batchSize || (await flush());
    }
    if (!goOn) {
      result.stopped = true;
      return result;
    }
    if (o.signal.aborted) return result;
  }
  if (!(await flush())) result.stopped = true;
  if (!fieldsChecked) throw new BadDataError(`the input ${o.source} has no rows`);
  return result;
}
