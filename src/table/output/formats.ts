/**
 * Output formats: one writer per format, each in its file (./csv.ts, ./json.ts, ./terminal.ts,
 * ./xlsx.ts) on the contract of ./writer.ts. All of them take the same converted rows, so every
 * format carries the same data for the same row. CSV/JSON/NDJSON stream page by page; the terminal
 * table is capped.
 */
import type { Writable } from 'node:stream';
import { csvWriter } from './csv.js';
import { jsonWriter } from './json.js';
import { tableWriter } from './terminal.js';
import type { RowWriter, WriterOptions } from './writer.js';
import { xlsxWriter } from './xlsx.js';

export type Format = 'csv' | 'json' | 'ndjson' | 'table' | 'xlsx';

export type { EncodedRows, PageEncoder, RowWriter, WriterOptions } from './writer.js';

export async function createWriter(format: Format, columns: string[], out: Writable, options: WriterOptions = {}): Promise<RowWriter> {
  switch (format) {
    case 'csv':
      return csvWriter(columns, out, options);
    case 'json':
      return jsonWriter(columns, out, false, options.resumeAt);
    case 'ndjson':
      return jsonWriter(columns, out, true, options.resumeAt);
    case 'table':
      return tableWriter(columns, out, options);
    case 'xlsx':
      return xlsxWriter(columns, out, { ...options, sheetName: options.sheetName ?? 'Sheet1' });
  }
}
