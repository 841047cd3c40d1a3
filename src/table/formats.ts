/**
 * Output formats. All of them take the same converted rows, so every format carries the same
 * data for the same row. CSV/JSON/NDJSON stream page by page; the terminal table is capped.
 */
import { WriteStream } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { write } from '../streams/write.js';
import type { EncodedRows, PageEncoder, RowWriter } from './writer.js';
import { csvEncoder } from './csv.js';
import { jsonText } from './convert.js';
import { ByteSink, csvTranscoder, jsonTranscoder, type Transcoder } from './transcode.js';
import { xlsxWriter, type CellKind } from './xlsx.js';

export type Format = 'csv' | 'json' | 'ndjson' | 'table' | 'xlsx';

export interface WriterOptions {
  delimiter?: string;
  bom?: boolean;
  excelSafe?: boolean;
  header?: boolean;
  /** table: colour the header/borders */
  color?: boolean;
  /** table: terminal width */
  width?: number;
  /** table: rows to show at most */
  maxRows?: number;
  /** xlsx: the sheet's name (the table) */
  sheetName?: string;
  /** xlsx: how each column's values become typed cells */
  kinds?: CellKind[];
  /** xlsx: rows per sheet including the header (default Excel's 1,048,576) */
  maxRowsPerSheet?: number;
  /** xlsx: lossy cells are reported here */
  warn?: (message: string) => void;
  /**
   * csv, json, ndjson: carry on a file that already holds this many rows (a resumed export,
   * ./resume.ts): begin() writes nothing (the header or `[` is there), and the rows continue the
   * count (JSON's separators), so the file ends as one written in one go would.
   */
  resumeAt?: number;
}

export type { EncodedRows, PageEncoder, RowWriter } from './writer.js';

/** A page encoder around a transcoder, with the text of a row of values as its reference. */
function pageEncoder(
  transcoder: Transcoder,
  rowText: (values: readonly unknown[]) => string,
  frame: { before?: (index: number) => string; after?: number } = {},
  start = 0,
): PageEncoder {
  const sink = new ByteSink();
  let total = start;
  let pending = 0;
  const { before, after } = frame;
  return {
    entity(page, i) {
      if (before) sink.ascii(before(total));
      transcoder.entity(sink, page, i);
      if (after !== undefined) sink.byte(after);
      total++;
      pending++;
    },
    row(values) {
      if (before) sink.ascii(before(total));
      sink.text(rowText(values));
      if (after !== undefined) sink.byte(after);
      total++;
      pending++;
    },
    take() {
      const bytes = sink.take();
      const page = { bytes, rows: pending, release: () => sink.recycle(bytes) };
      pending = 0;
      return page;
    },
  };
}

/**
 * Write encoded rows, and hand their buffer back once the output no longer holds it: when it is a
 * file or a socket (a pipe, a terminal) with nothing left queued, the bytes are with the kernel.
 * Any other stream may keep the very buffer (a PassThrough does), so it is left to the GC.
 */
async function writeEncoded(out: Writable, page: EncodedRows): Promise<void> {
  await write(out, page.bytes);
  const copies = out instanceof WriteStream || out instanceof Socket || out.constructor.name === 'SyncWriteStream';
  if (copies && out.writableLength === 0) page.release();
}

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

function csvWriter(columns: string[], out: Writable, options: WriterOptions): RowWriter {
  const encoder = csvEncoder({ delimiter: options.delimiter, excelSafe: options.excelSafe });
  const header = csvEncoder({ delimiter: options.delimiter });
  const resumed = options.resumeAt !== undefined;
  let written = options.resumeAt ?? 0;
  return {
    get written() {
      return written;
    },
    async begin() {
      if (resumed) return;
      let head = options.bom ? '\ufeff' : '';
      if (options.header !== false) head += header.row(columns);
      if (head) await write(out, head);
    },
    async write(rows) {
      written += rows.length;
      let chunk = '';
      for (const row of rows) chunk += encoder.row(row);
      await write(out, chunk);
    },
    async end() {},
    encoder(cols) {
      const transcoder = csvTranscoder(cols, options);
      return transcoder && pageEncoder(transcoder, encoder.row);
    },
    async writeEncoded(page) {
      written += page.rows;
      await writeEncoded(out, page);
    },
  };
}

function jsonWriter(columns: string[], out: Writable, ndjson: boolean, resumeAt?: number): RowWriter {
  let written = resumeAt ?? 0;
  // Build each object with the keys in column order.
  const toObject = (row: readonly unknown[]) => {
    const obj: Record<string, unknown> = {};
    for (let i = 0; i < columns.length; i++) obj[columns[i]!] = row[i] ?? null;
    return obj;
  };
  // JSON: a line break before the first row, a comma and one before every other.
  const separator = (index: number) => (index === 0 ? '\n' : ',\n');
  return {
    get written() {
      return written;
    },
    async begin() {
      if (!ndjson && resumeAt === undefined) await write(out, '[');
    },
    async write(rows) {
      let chunk = '';
      for (const row of rows) {
        const text = jsonText(toObject(row));
        if (ndjson) chunk += `${text}\n`;
        else chunk += `${separator(written)}${text}`;
        written++;
      }
      await write(out, chunk);
    },
    async end() {
      if (!ndjson) await write(out, written === 0 ? ']\n' : '\n]\n');
    },
    encoder(cols) {
      const transcoder = jsonTranscoder(cols);
      if (!transcoder) return undefined;
      return pageEncoder(transcoder, (row) => jsonText(toObject(row)), ndjson ? { after: 0x0a } : { before: separator }, written);
    },
    async writeEncoded(page) {
      written += page.rows;
      await writeEncoded(out, page);
    },
  };
}

function cellText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function truncate(text: string, width: number): string {
  const flat = text.replace(/[\r\n\t]+/g, ' ');
  const chars = [...flat];
  return chars.length <= width ? flat : `${chars.slice(0, Math.max(1, width - 1)).join('')}…`;
}

function tableWriter(columns: string[], out: Writable, options: WriterOptions): RowWriter {
  const maxRows = options.maxRows ?? 100;
  const rows: string[][] = [];
  let written = 0;
  return {
    get written() {
      return written;
    },
    async begin() {},
    async write(page) {
      for (const row of page) {
        if (rows.length >= maxRows) return;
        rows.push(row.map(cellText));
        written++;
      }
    },
    async end() {
      const { default: Table } = await import('cli-table3');
      // Fit the terminal: natural widths, then shrink the widest columns until the table fits.
      const total = options.width ?? 120;
      const natural = columns.map((c, i) => Math.min(60, Math.max([...c].length, ...rows.map((r) => [...(r[i] ?? '')].length), 1)));
      const overhead = columns.length * 3 + 1; // borders and padding
      const widths = [...natural];
      while (widths.reduce((a, b) => a + b, 0) + overhead > total) {
        const widest = widths.indexOf(Math.max(...widths));
        if (widths[widest]! <= 4) break;
        widths[widest]! -= 1;
      }
      const style = options.color ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] };
      const table = new Table({ head: columns.map((c, i) => truncate(c, widths[i]!)), style, colWidths: widths.map((w) => w + 2), wordWrap: false });
      for (const r of rows) table.push(r.map((cell, i) => truncate(cell, widths[i]!)));
      await write(out, `${table.toString()}\n`);
    },
  };
}
