/**
 * Resumable `get-table -o FILE` exports (issue 27): what an interrupted run leaves, and how the
 * next one carries on.
 *
 * A CSV, JSON or NDJSON export to a regular file in the primary key's order (no --order-by) is
 * written to `.FILE.partial` beside the file, and after a page (at most once a second, and after
 * the first) the partial file is synced and `.FILE.resume.json` (0600) records what is complete: the
 * rows, the pages, the partial file's length in bytes at that point (for JSON: where the closing
 * bracket goes), the `__KEY` of the last row, and the options that made the file, with their
 * fingerprint. A run that ends well renames the partial file over FILE and removes the record;
 * one that stops (an error, Ctrl-C, SIGKILL, a reboot) leaves both.
 *
 * The next run to the same FILE whose options have the same fingerprint (table, filter and where,
 * fields, format and its options, environment and base URL, key, skip and limit) cuts the partial
 * file back to the recorded length (a half-written page never survives) and reads on with the
 * filter `key > last key`: never by a position in the server's entity set, which may have expired
 * in between. The rows come in the same order, so the file is byte for byte the file an
 * uninterrupted export of the same data writes. At the end one count checks the whole file:
 * the server's rows of the selection up to the last key must be the rows in the file (plus
 * --skip); otherwise the table changed between the runs, and the file is not delivered (exit 65).
 *
 * `.FILE.resume.lock` holds the writing run's pid: a second run to the same FILE while one is
 * writing exits 75; the lock of a dead run (SIGKILL) is taken over at once.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BadDataError, LockBusyError, UsageError } from '../../errors/index.js';
import { writeFileAtomic } from '../../fs/index.js';
import type { Logger } from '../../log/index.js';
import type { RestClient } from '../../rest/index.js';
import { type PartialFile, processAlive } from '../../streams/output-file.js';
import type { ExportPlan } from '../plan/plan.js';
import type { Format, WriterOptions } from './formats.js';

/** `--resume` (must resume or say why not), automatic (resume when the record matches), `--no-resume` (start over). */
export type ResumeMode = 'resume' | 'auto' | 'off';

/** Formats whose file can be carried on by appending. */
const APPENDABLE: ReadonlySet<Format> = new Set(['csv', 'json', 'ndjson']);
/** Key types a `key > value` filter pages exactly (the server orders and compares them the same way). */
const KEY_TYPES = new Set(['long', 'long64', 'word', 'byte', 'integer', 'string', 'text', 'uuid']);
const RECORD_VERSION = 1;
/** Checkpoints (sync + record) at most this often, and after the first page. */
const CHECKPOINT_EVERY_MS = 1000;

/** What the run is and where it reads from: the parts of the record that must match. */
export interface ResumeIdentity {
  table: string;
  filter: string | null;
  params: unknown[];
  fields: string[];
  format: Format;
  formatOptions: Record<string, unknown>;
  environment: string;
  baseUrl: string | null;
  key: string;
  orderBy: string | null;
  skip: number;
  limit: number | null;
  raw: boolean;
}

export interface ResumeRecord extends ResumeIdentity {
  version: number;
  fingerprint: string;
  /** The partial file's name (beside the target). */
  partial: string;
  /** Complete rows in the partial file, and the pages they came in (over every run). */
  rows: number;
  pages: number;
  /** The partial file's length when it held exactly `rows` rows (JSON: where the closing bracket goes). */
  bytes: number;
  /** `__KEY` of the last complete row. */
  lastKey: string;
  startedAt: string;
  updatedAt: string;
}

export interface ResumePaths {
  final: string;
  partial: string;
  record: string;
  lock: string;
}

export function resumePaths(finalPath: string): ResumePaths {
  const dir = dirname(finalPath);
  const name = basename(finalPath);
  return { final: finalPath, partial: join(dir, `.${name}.partial`), record: join(dir, `.${name}.resume.json`), lock: join(dir, `.${name}.resume.lock`) };
}

/** Why an export cannot be resumed (undefined: it can). */
export function notResumable(plan: ExportPlan, format: Format): string | undefined {
  if (format === 'xlsx') return 'an xlsx workbook cannot be appended to (it is a zip archive written whole)';
  if (!APPENDABLE.has(format)) return `the ${format} format cannot be resumed`;
  if (plan.options.orderBy) return '--order-by sorts by other fields than the key, and an export resumes by its key';
  const keys = plan.dataClass.key;
  if (keys.length !== 1) return `${plan.dataClass.name} has ${keys.length === 0 ? 'no' : 'a composite'} primary key`;
  const attr = plan.dataClass.attributes.find((a) => a.name === keys[0]!.name);
  if (attr?.kind !== 'storage' || !KEY_TYPES.has(attr.type)) return `the key ${keys[0]!.name} of ${plan.dataClass.name} is not a number or text`;
  return undefined;
}

export function identityOf(plan: ExportPlan, format: Format, writer: WriterOptions, place: { environment: string; baseUrl?: string }): ResumeIdentity {
  const formatOptions: Record<string, unknown> =
    format === 'csv'
      ? { delimiter: writer.delimiter ?? ',', bom: writer.bom === true, excelSafe: writer.excelSafe === true, header: writer.header !== false }
      : {};
  return {
    table: plan.dataClass.name,
    filter: plan.query.filter ?? null,
    params: plan.query.params,
    fields: plan.columns.map((c) => c.name),
    format,
    formatOptions,
    environment: place.environment,
    baseUrl: place.baseUrl ?? null,
    key: plan.dataClass.key[0]?.name ?? '',
    orderBy: plan.query.orderBy ?? null,
    skip: plan.options.skip,
    limit: plan.options.limit ?? null,
    raw: plan.options.raw === true,
  };
}

export function fingerprintOf(identity: ResumeIdentity): string {
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex');
}

/** The first part of the identity that differs, for the one-line message. */
function difference(a: ResumeIdentity, b: ResumeIdentity): string {
  const names: Array<[keyof ResumeIdentity, string]> = [
    ['table', 'table'],
    ['filter', 'filter'],
    ['params', 'filter'],
    ['format', 'format'],
    ['environment', 'environment'],
    ['baseUrl', 'base URL'],
    ['fields', 'fields'],
    ['formatOptions', 'format options'],
    ['key', 'key'],
    ['orderBy', 'order'],
    ['skip', '--skip'],
    ['limit', '--limit'],
    ['raw', '--raw'],
  ];
  for (const [k, label] of names) if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) return label;
  return 'options';
}

async function readRecord(path: string): Promise<ResumeRecord | 'damaged' | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return 'damaged';
  }
  try {
    const record = JSON.parse(text) as ResumeRecord;
    const ok =
      record.version === RECORD_VERSION &&
      typeof record.fingerprint === 'string' &&
      Number.isSafeInteger(record.rows) &&
      record.rows >= 0 &&
      Number.isSafeInteger(record.bytes) &&
      record.bytes >= 0 &&
      typeof record.lastKey === 'string';
    return ok ? record : 'damaged';
  } catch {
    return 'damaged';
  }
}

/**
 * Take `.FILE.resume.lock` (our pid, created exclusively). A lock whose process is gone (killed)
 * is taken over; a live one is another run writing the same file: exit 75.
 */
async function lock(paths: ResumePaths): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(paths.lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => unlink(paths.lock).catch(() => undefined);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        // A read-only directory or a full disk fails later, as exit 73, naming the file; a lock
        // created but not written (ENOSPC) goes now.
        await unlink(paths.lock).catch(() => undefined);
        return async () => undefined;
      }
      const pid = Number((await readFile(paths.lock, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new LockBusyError(`another legacy run (pid ${pid}) is writing ${paths.final}`, {
          hint: `wait for it to finish, or remove ${paths.lock} if no legacy process is running`,
        });
      }
      await unlink(paths.lock).catch(() => undefined);
    }
  }
  throw new LockBusyError(`could not take the lock ${paths.lock} for ${paths.final}`, { hint: 'try again' });
}

/** The decision for one run: start over, or carry on from a record. */
export interface ResumeStart {
  paths: ResumePaths;
  identity: ResumeIdentity;
  fingerprint: string;
  /** The record to carry on from; undefined: a new partial file. */
  from?: ResumeRecord;
  release(): Promise<void>;
}

/**
 * The temporary files of record writes a killed run did not finish (write-file-atomic names them
 * `<record>.<number>`): ours to remove while we hold the lock.
 */
async function removeStaleRecordTemps(paths: ResumePaths): Promise<void> {
  const prefix = `${basename(paths.record)}.`;
  const names = await readdir(dirname(paths.record)).catch(() => [] as string[]);
  for (const n of names) if (n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length))) await unlink(join(dirname(paths.record), n)).catch(() => undefined);
}

/** Remove what an interrupted export to `paths.final` left (under its lock): a run that cannot carry it on starts over. */
export async function discardResumable(paths: ResumePaths): Promise<void> {
  const release = await lock(paths);
  try {
    await removeStaleRecordTemps(paths);
    await removeState(paths);
  } finally {
    await release();
  }
}

async function removeState(paths: ResumePaths): Promise<void> {
  await unlink(paths.partial).catch(() => undefined);
  await unlink(paths.record).catch(() => undefined);
}

/**
 * Before a resumable export to `paths.final`: take the lock, read the record, and decide. A
 * mismatch, a damaged record or a partial file shorter than recorded starts over (the stale files
 * removed), said in one line; with `--resume` a mismatch is a usage error (64), since carrying on
 * would mix two exports in one file.
 */
export async function startResumable(
  paths: ResumePaths,
  identity: ResumeIdentity,
  mode: ResumeMode,
  logger: Logger,
  { quiet = false }: { quiet?: boolean } = {},
): Promise<ResumeStart> {
  const release = await lock(paths);
  const fingerprint = fingerprintOf(identity);
  const name = basename(paths.final);
  try {
    await removeStaleRecordTemps(paths);
    const record = await readRecord(paths.record);
    const start = (from?: ResumeRecord): ResumeStart => ({ paths, identity, fingerprint, from, release });
    if (mode === 'off') {
      if (record) logger.warn(`starting ${name} over (--no-resume): removed the partial export of an earlier run`);
      await removeState(paths);
      return start();
    }
    if (record === undefined) {
      if (mode === 'resume') logger.warn(`no interrupted export of ${name} to resume; starting from the first row`);
      await unlink(paths.partial).catch(() => undefined);
      return start();
    }
    if (record === 'damaged') {
      logger.warn(`the resume record of ${name} (${paths.record}) is unreadable; starting over`);
      await removeState(paths);
      return start();
    }
    if (record.fingerprint !== fingerprint) {
      const what = difference(record, identity);
      if (mode === 'resume') {
        throw new UsageError(`cannot resume ${name}: its partial export was made with another ${what}`, {
          hint: 'run it with the options of the interrupted run, or with --no-resume to start over',
        });
      }
      logger.warn(`the partial export of ${name} was made with another ${what}; starting over`);
      await removeState(paths);
      return start();
    }
    if (record.lastKey.includes('@')) {
      // 4D reads @ in a text value as a wildcard: `key > 'A@B'` may not mean what the order means.
      logger.warn(`the last key written to ${name} contains @, the 4D wildcard, so the export cannot carry on after it; starting over`);
      await removeState(paths);
      return start();
    }
    const size = (await stat(paths.partial).catch(() => undefined))?.size;
    if (size === undefined || size < record.bytes) {
      logger.warn(
        `the partial file of ${name} is ${size === undefined ? 'missing' : `shorter than recorded (${size} of ${record.bytes} bytes)`}; starting over`,
      );
      await removeState(paths);
      return start();
    }
    // Quiet: the run carries on its own partial export (its warning said so).
    if (!quiet) logger.warn(`resuming ${name} after ${record.rows} rows (${record.pages} pages, key ${record.lastKey}); --no-resume starts over`);
    return start(record);
  } catch (error) {
    await release();
    throw error;
  }
}

/**
 * The export's side of a resumable file: checkpoints after pages, and what stays when it stops.
 * `rows` and `lastKey` are those of the whole file (every run).
 */
export class ResumeLog {
  private rows: number;
  private pages: number;
  private lastKey: string | undefined;
  /** The partial file's length at the end of the last complete page. */
  private boundary: number;
  private recorded = false;
  private discarded = false;
  private lastCheckpoint = 0;
  private readonly startedAt: string;

  constructor(
    private readonly start: ResumeStart,
    private readonly file: PartialFile,
  ) {
    this.rows = start.from?.rows ?? 0;
    this.pages = start.from?.pages ?? 0;
    this.lastKey = start.from?.lastKey;
    this.boundary = start.from?.bytes ?? 0;
    this.recorded = start.from !== undefined;
    this.startedAt = start.from?.startedAt ?? new Date().toISOString();
  }

  /** Rows written before this run. */
  get before(): number {
    return this.start.from?.rows ?? 0;
  }

  get totalRows(): number {
    return this.rows;
  }

  get lastKeyWritten(): string | undefined {
    return this.lastKey;
  }

  /** A page is completely handed to the file: `rows` (this run's so far) up to `lastKey`. Checkpoints when due. */
  async page(rowsThisRun: number, lastKey: string | undefined): Promise<void> {
    this.rows = this.before + rowsThisRun;
    this.pages++;
    if (lastKey !== undefined) this.lastKey = lastKey;
    this.boundary = this.file.offset();
    const now = Date.now();
    if (!this.recorded || now - this.lastCheckpoint >= CHECKPOINT_EVERY_MS) await this.checkpoint();
  }

  /**
   * Sync the partial file and record where its complete pages end (the boundary noted after the
   * last page, not the file's length: a page being written when the run stopped is cut off on resume).
   */
  async checkpoint(): Promise<void> {
    if (this.lastKey === undefined) return; // nothing to carry on after
    await this.file.checkpoint();
    const bytes = this.boundary;
    const record: ResumeRecord = {
      version: RECORD_VERSION,
      ...this.start.identity,
      fingerprint: this.start.fingerprint,
      partial: basename(this.start.paths.partial),
      rows: this.rows,
      pages: this.pages,
      bytes,
      lastKey: this.lastKey,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
    };
    await writeFileAtomic(this.start.paths.record, `${JSON.stringify(record, null, 2)}\n`, 'resume record');
    this.recorded = true;
    this.lastCheckpoint = Date.now();
  }

  /** The run stopped: keep the partial file and its record when they allow a resume, else remove them. */
  async stopped(finalCheckpoint: boolean, logger: Logger): Promise<void> {
    try {
      if (this.discarded) return; // the lock is released below all the same
      if (finalCheckpoint) await this.checkpoint().catch(() => undefined);
      if (this.recorded) {
        await this.file.keep();
        // Info, not a warning: the failure keeps its one line; the next run says that it resumes.
        logger.info(`kept the partial export of ${basename(this.start.paths.final)} (${this.rows} rows); run the same command again to resume it`);
      } else {
        await this.file.abort();
        await unlink(this.start.paths.record).catch(() => undefined);
      }
    } finally {
      await this.start.release();
    }
  }

  /** Nothing of the file is worth carrying on: the partial file and the record go. */
  async discard(): Promise<void> {
    this.discarded = true;
    await this.file.abort();
    await unlink(this.start.paths.record).catch(() => undefined);
    this.recorded = false;
  }

  /** The file is complete and renamed: the record goes. */
  async done(): Promise<void> {
    await unlink(this.start.paths.record).catch(() => undefined);
    await this.start.release();
  }
}

/**
 * The count check over a resumed file: the server's rows of the whole selection up to the last
 * key written must be the rows in the file (plus the rows --skip left out). Rows added or deleted
 * below the resume point between the runs make the file differ from any one export: exit 65.
 */
export async function checkResumedCount(client: RestClient, plan: ExportPlan, log: ResumeLog): Promise<void> {
  const last = log.lastKeyWritten;
  if (last === undefined || log.totalRows === 0) return;
  const keyName = plan.dataClass.key[0]!.name;
  const { typedValue } = await import('../plan/query.js');
  const attr = plan.dataClass.attributes.find((a) => a.name === keyName)!;
  const params = [...plan.query.params, typedValue(attr, last, 'the resumed export')];
  const condition = `${keyName} <= :${params.length}`;
  const filter = plan.query.filter ? `(${plan.query.filter}) AND ${condition}` : condition;
  const counted = await client.count(plan.dataClass.name, { filter, params });
  const expected = log.totalRows + plan.options.skip;
  if (counted !== expected) {
    throw new BadDataError(
      `the resumed export of ${plan.dataClass.name} holds ${log.totalRows} rows up to key ${last}, but the server now has ${counted - plan.options.skip}: the table changed between the interrupted run and this one`,
      { hint: 'run the export again with --no-resume' },
    );
  }
}
