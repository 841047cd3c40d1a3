/** What every output format implements (./formats.ts, ./xlsx.ts): rows in, in order, page by page. */
export interface RowWriter {
  begin(): Promise<void>;
  write(rows: unknown[][]): Promise<void>;
  end(): Promise<void>;
  /** Rows actually written (the table format stops at its cap). */
  readonly written: number;
}
