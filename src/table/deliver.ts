/**
 * An export delivered: the rows of a plan, in order, into a writer of one format, on standard
 * output or into a file written atomically (temporary name, renamed only on success).
 *
 * Nothing is written before the first page has arrived and passed its checks: a rejected filter,
 * an unknown field or a server that ignores the filter leaves stdout empty, not a header-only
 * "export". When the server rebuilds a lost selection differently (SelectionChangedError) the
 * export starts over once, if nothing has reached the reader yet (always the case with a file).
 */
import type { Writable } from 'node:stream';
import { openOutputFile, type OutputFile } from '../streams/output-file.js';
import { InterruptedError, SelectionChangedError, interruptionOf } from '../errors/index.js';
import type { RestClient } from '../rest/index.js';
import type { Logger } from '../log/index.js';
import { exportEncoded, exportRows, type ExportPlan, type ExportProgress, type ExportSummary } from './export.js';
import { createWriter, type Format, type WriterOptions } from './formats.js';

export interface DeliverOptions {
  format: Format;
  /** A file (streams/output-file.ts: atomically, through links, in place for devices); undefined: `stdout`. */
  output?: string;
  stdout: Writable;
  cwd: string;
  writer: WriterOptions;
  logger: Logger;
  signal: AbortSignal;
  /**
   * CSV, JSON and NDJSON are encoded straight from the pages' bytes, the other formats get rows
   * built from them (./transcode.ts); `reference` parses each page with JSON.parse and hands the
   * rows to the writer instead, byte for byte the same output.
   */
  reference?: boolean;
  onStart?: (total: number) => void;
  onPage?: (progress: ExportProgress) => void;
  /** Told the rows read and written when the delivery ends, whatever the outcome. */
  onDone?: (counts: { read: number; written: number }) => void;
}

export async function deliverExport(client: RestClient, plan: ExportPlan, o: DeliverOptions): Promise<Partial<ExportSummary>> {
  let summary: Partial<ExportSummary> = {};
  let file: OutputFile | undefined;
  let reachedStdout = false;
  let written = () => 0;
  const once = async () => {
    summary = {};
    let out: Writable = o.stdout;
    if (o.output !== undefined) {
      file = await openOutputFile(o.output, o.cwd, { stdio: { stdout: o.stdout } });
      out = file.stream;
    }
    const writer = await createWriter(
      o.format,
      plan.columns.map((c) => c.name),
      out,
      o.writer,
    );
    written = () => writer.written;
    let begun = false;
    const hooks = { logger: o.logger, summary, onStart: o.onStart, onPage: o.onPage };
    const encoder = o.reference ? undefined : writer.encoder?.(plan.columns);
    try {
      for await (const rows of encoder ? exportEncoded(client, plan, encoder, hooks) : exportRows(client, plan, hooks, { reference: o.reference })) {
        if (o.signal.aborted) break;
        if (!begun) {
          begun = true;
          reachedStdout ||= !file || file.direct;
          await writer.begin();
        }
        await (Array.isArray(rows) ? writer.write(rows) : writer.writeEncoded!(rows));
      }
      if (o.signal.aborted) throw interruptionOf(o.signal) ?? new InterruptedError('interrupted');
      if (!begun) await writer.begin();
      await writer.end();
      if (file) await file.commit();
    } catch (error) {
      if (file) {
        await file.abort();
        throw file.explain(error);
      }
      throw error;
    }
  };
  try {
    try {
      await once();
    } catch (error) {
      if (!(error instanceof SelectionChangedError) || reachedStdout || o.signal.aborted) throw error;
      o.logger.warn(`${error.message}; starting the export again`);
      await once();
    }
    o.onDone?.({ read: summary.rows ?? 0, written: written() });
    return summary;
  } catch (error) {
    // What reached stdout (or a device, a FIFO) stays there; a file that was not committed holds nothing.
    o.onDone?.({ read: summary.rows ?? 0, written: file && !file.direct ? 0 : written() });
    throw interruptionOf(o.signal) ?? error;
  }
}
