/**
 * An export delivered: the rows of a plan, in order, into a writer of one format, on standard
 * output or into a file written atomically (temporary name, renamed only on success).
 *
 * Nothing is written before the first page has arrived and passed its checks: a rejected filter,
 * an unknown field or a server that ignores the filter leaves stdout empty, not a header-only
 * "export". When the server rebuilds a lost selection differently (SelectionChangedError) the
 * export starts over once, if nothing has reached the reader yet (always the case with a file).
 * A CSV, JSON or NDJSON export to a regular file in key order is resumable (./resume.ts): it is
 * written through `.FILE.partial`, which an interrupted run keeps for the next one to carry on.
 */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { Writable } from 'node:stream';
import { openOutputFile, openPartialFile, renamedTarget, type OutputFile } from '../../streams/output-file.js';
import { ExitCode, InterruptedError, SelectionChangedError, UsageError, exitCodeFor, interruptionOf } from '../../errors/index.js';
import type { RestClient } from '../../rest/index.js';
import type { Logger } from '../../log/index.js';
import { exportEncoded, exportRows, type ExportProgress, type ExportSummary } from '../paging/read.js';
import { planAfter, type ExportPlan } from '../plan/plan.js';
import { createWriter, type Format, type WriterOptions } from './formats.js';
import {
  checkResumedCount,
  discardResumable,
  identityOf,
  notResumable,
  ResumeLog,
  resumePaths,
  startResumable,
  type ResumeMode,
  type ResumeStart,
} from './resume.js';

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
   * CSV, JSON, NDJSON and XLSX are encoded straight from the pages' bytes, the other formats get rows
   * built from them (./transcode.ts); `reference` parses each page with JSON.parse and hands the
   * rows to the writer instead, byte for byte the same output.
   */
  reference?: boolean;
  onStart?: (total: number) => void;
  onPage?: (progress: ExportProgress) => void;
  /** Told the rows read and written when the delivery ends, whatever the outcome. */
  onDone?: (counts: { read: number; written: number }) => void;
  /**
   * A file export that an interrupted run left may be carried on (./resume.ts): how (`resume`:
   * --resume, `auto`: when the record matches, `off`: --no-resume), and where the rows come from.
   * Absent: never resumable (stdout, other callers).
   */
  resume?: { mode: ResumeMode; environment: string; baseUrl?: string };
}

export async function deliverExport(client: RestClient, plan: ExportPlan, o: DeliverOptions): Promise<Partial<ExportSummary>> {
  if (o.output !== undefined && o.resume) {
    const target = await renamedTarget(o.output, o.cwd);
    const why = notResumable(plan, o.format) ?? (target ? undefined : `${o.output} is not a regular file (it is written in place)`);
    if (!why) return deliverResumable(client, plan, o, target!.path);
    if (o.resume.mode === 'resume') throw new UsageError(`cannot resume ${o.output}: ${why}`, { hint: 'drop --resume; the export starts from the first row' });
    if (target && o.resume.mode === 'auto' && existsSync(resumePaths(target.path).record)) {
      // A partial export of this name that this run cannot carry on (e.g. --xlsx now): start over.
      o.logger.warn(`cannot resume ${basename(target.path)}: ${why}; starting over`);
      await discardResumable(resumePaths(target.path));
    }
  }
  return deliverOnce(client, plan, o);
}

async function deliverOnce(client: RestClient, plan: ExportPlan, o: DeliverOptions): Promise<Partial<ExportSummary>> {
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

/**
 * An export to a regular file that survives an interruption (./resume.ts): written to the partial
 * file beside it with checkpoints, carried on from the last complete page when a matching record
 * is there, renamed over the file only when complete and counted.
 */
async function deliverResumable(client: RestClient, plan: ExportPlan, o: DeliverOptions, finalPath: string): Promise<Partial<ExportSummary>> {
  const resume = o.resume!;
  const paths = resumePaths(finalPath);
  const identity = identityOf(plan, o.format, o.writer, resume);
  let summary: Partial<ExportSummary> = {};
  let committed = 0;
  const once = async (start: ResumeStart) => {
    summary = {};
    const from = start.from;
    let log: ResumeLog | undefined;
    try {
      const runPlan = from ? planAfter(plan, from.lastKey, from.rows) : plan;
      const file = await openPartialFile(finalPath, paths.partial, { append: from?.bytes });
      log = new ResumeLog(start, file);
      const writer = await createWriter(
        o.format,
        plan.columns.map((c) => c.name),
        file.stream,
        { ...o.writer, resumeAt: from?.rows },
      );
      if (from) summary.resumed = from.rows;
      let begun = from !== undefined;
      const hooks = { logger: o.logger, summary, onStart: o.onStart, onPage: o.onPage };
      const encoder = o.reference ? undefined : writer.encoder?.(plan.columns);
      try {
        for await (const rows of encoder ? exportEncoded(client, runPlan, encoder, hooks) : exportRows(client, runPlan, hooks, { reference: o.reference })) {
          if (o.signal.aborted) break;
          if (!begun) {
            begun = true;
            await writer.begin();
          }
          await (Array.isArray(rows) ? writer.write(rows) : writer.writeEncoded!(rows));
          await log.page(summary.rows ?? 0, summary.lastKey);
        }
        if (o.signal.aborted) throw interruptionOf(o.signal) ?? new InterruptedError('interrupted');
        if (!begun) await writer.begin();
        // A count that does not match (65) discards the partial export below: the file would not be
        // any one export of the table.
        if (from) await checkResumedCount(client, plan, log);
        await writer.end();
        await file.commit();
        await log.done();
        committed = summary.rows ?? 0;
      } catch (error) {
        const explained = file.explain(error);
        if (!o.signal.aborted && (exitCodeFor(explained) === ExitCode.badData || exitCodeFor(explained) === ExitCode.unexpected)) {
          // Pages not as asked, a filter not applied, a bug: what was written may be wrong (a short
          // page is only found at the end), so nothing of it is carried on.
          await log.discard();
          await log.stopped(false, o.logger);
        } else {
          // Interrupted, the server unavailable or busy: the complete pages stay for the next run.
          // A failure of the file itself (a full disk) leaves the last checkpoint as it was.
          await log.stopped(explained === error, o.logger);
        }
        throw explained;
      }
    } catch (error) {
      if (!log) await start.release();
      throw error;
    }
  };
  try {
    try {
      await once(await startResumable(paths, identity, resume.mode, o.logger));
    } catch (error) {
      if (!(error instanceof SelectionChangedError) || o.signal.aborted) throw error;
      o.logger.warn(`${error.message}; starting the export again from its last complete page`);
      await once(await startResumable(paths, identity, 'auto', o.logger, { quiet: true }));
    }
    o.onDone?.({ read: summary.rows ?? 0, written: committed });
    return summary;
  } catch (error) {
    o.onDone?.({ read: summary.rows ?? 0, written: 0 });
    throw interruptionOf(o.signal) ?? error;
  }
}
