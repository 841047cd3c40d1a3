/**
 * What every output format implements (./csv.ts, ./json.ts, ./terminal.ts, ./xlsx.ts): rows in,
 * in order, page by page; and what the formats share to write rows encoded from page bytes.
 */
import { WriteStream } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { write } from '../../streams/write.js';
import type { ScannedPage } from '../paging/scan.js';
import type { CellKind } from './excel.js';
import { ByteSink, type Transcoder, type TranscodeColumn } from './transcode.js';

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

export interface RowWriter {
  begin(): Promise<void>;
  write(rows: unknown[][]): Promise<void>;
  end(): Promise<void>;
  /** Rows actually written (the table format stops at its cap). */
  readonly written: number;
  /**
   * csv, json, ndjson, xlsx: an encoder of rows straight from the export's scanned pages (./transcode.ts),
   * writing the bytes write() would; its pages go to writeEncoded. Undefined when these options
   * need the reference path. Every row of an export goes one way or the other, never both.
   */
  encoder?(columns: readonly TranscodeColumn[]): PageEncoder | undefined;
  writeEncoded?(page: EncodedRows): Promise<void>;
}

/** Rows already encoded for the output. */
export interface EncodedRows {
  bytes: Buffer;
  rows: number;
  /** The output is done with `bytes` (the encoder may use their buffer again). */
  release(): void;
}

export interface PageEncoder {
  /** Entity `i` of a scanned page as one row. */
  entity(page: ScannedPage, i: number): void;
  /** One row of converted values (from a page the scanner left to JSON.parse). */
  row(values: readonly unknown[]): void;
  /** The rows encoded since the last call. */
  take(): EncodedRows;
}

/** A page encoder around a transcoder, with the text of a row of values as its reference. */
export function pageEncoder(
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
export async function writeEncoded(out: Writable, page: EncodedRows): Promise<void> {
  await write(out, page.bytes);
  const copies = out instanceof WriteStream || out instanceof Socket || out.constructor.name === 'SyncWriteStream';
  if (copies && out.writableLength === 0) page.release();
}
