/**
 * The per-row report of a bulk push-field: NDJSON or CSV streamed as batches finish (every row),
 * or a terminal table written at the end: the diff, one line per changed field of the rows that
 * change, conflict or fail (unchanged rows are only counted; it needs its rows to size its
 * columns, and is only used on a terminal).
 */
import type { Writable } from 'node:stream';
import { write } from '../streams/write.js';
import { csvEncoder } from '../table/output/csv.js';
import type { RowReport } from './index.js';

export type ReportFormat = 'table' | 'ndjson' | 'csv';

/** How a value shows in a report or a confirmation: JSON, or ∅ for no value. */
export const show = (v: unknown) => (v === undefined ? '∅' : JSON.stringify(v));

/** `Table[key].field: old → new` lines of one row's change. */
export function describeChange(table: string, r: RowReport): string {
  return r.fields.map((f) => `${table}[${r.key}].${f}: ${show(r.old[f])} → ${show(r.new[f])}`).join('\n');
}

export interface ReportWriter {
  add(reports: RowReport[]): Promise<void>;
  /** The rows of a table report, for the caller to render at the end (empty for the streamed formats). */
  readonly tableRows: string[][];
}

export const REPORT_TABLE_HEADER = ['KEY', 'FIELD', 'SERVER', 'FILE', 'RESULT', 'MESSAGE'];

export function reportWriter(format: ReportFormat, out: Writable): ReportWriter {
  const tableRows: string[][] = [];
  let csvHeader = false;
  return {
    tableRows,
    async add(reports) {
      if (format === 'ndjson') {
        await write(out, reports.map((r) => `${JSON.stringify(r)}\n`).join(''));
      } else if (format === 'csv') {
        const csv = csvEncoder();
        const head = csvHeader ? '' : csv.row(['line', 'key', 'fields', 'old', 'new', 'result', 'message']);
        csvHeader = true;
        await write(out, head + reports.map((r) => csv.row([r.line ?? '', r.key, r.fields.join(' '), r.old, r.new, r.result, r.message ?? ''])).join(''));
      } else {
        for (const r of reports) {
          if (r.result === 'unchanged') continue;
          const fields = r.fields.length ? r.fields : [''];
          for (const [i, f] of fields.entries())
            tableRows.push([
              i === 0 ? r.key : '',
              f,
              f && f in r.old ? show(r.old[f]) : '',
              f && f in r.new ? show(r.new[f]) : '',
              i === 0 ? r.result : '',
              i === 0 ? (r.message ?? '') : '',
            ]);
        }
      }
    },
  };
}
