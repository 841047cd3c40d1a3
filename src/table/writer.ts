/** What every output format implements (./formats.ts, ./xlsx.ts): rows in, in order, page by page. */
import type { ScannedPage } from './scan.js';
import type { TranscodeColumn } from './transcode.js';

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
