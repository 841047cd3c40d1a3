/**
 * Bulk push-field: rows streamed from a CSV, NDJSON, JSON or xlsx input (./input.ts), checked
 * before the first write, planned against the server a chunk at a time and written in batches of
 * changed records only.
 *
 * The columns of a `get-table --meta` export are understood: `__KEY` is the key, `__STAMP` the
 * version each row was exported at (a record saved since then is a conflict, see ./index.ts),
 * `__TIMESTAMP` and other `__` columns are 4D's own and never written; the table's key field, a
 * relation or a picture column is compared with the server and never written.
 *
 * A file is read twice: first whole, to check its format, its columns and every value against the
 * catalog (a bad file or, without --continue-on-error, a bad value stops the run before anything
 * is written); then to push it. Stdin is read once.
 *
 * Requests: one batch read (`key IN :1`, as many keys as fit a URL) per chunk of up to 1,000 rows,
 * and one update request per `batchSize` changed records: a 10,000-row file with 12 edits sends
 * 12 updates in about 1 + 10 requests, not 100.
 *
 * Stop rules: without `continueOnError` the run stops at the first failing row: rows before it
 * are written (a row that fails only when written ends its update request), none after it.
 */
import { BadDataError, ExitCode, UsageError } from '../errors/index.js';
import type { Attribute } from '../rest/types.js';
import { MEDIA_TYPES } from '../table/convert.js';
import { attributeNamed } from '../table/query.js';
import { pushExitCode, type Planned, type Pusher, type PushRequestRow, type RowReport } from './index.js';
import type { InputRow, OpenedInput } from './input.js';
import { type FileValueContext, fromFile } from './values.js';

export interface BulkOptions {
  /** --key-column (default: `__KEY` when the input has it, else the table's key). */
  keyColumn?: string;
  batchSize: number;
  continueOnError: boolean;
  signal: AbortSignal;
  /** Where the input came from, for messages. */
  source: string;
  /** --excel-safe: a `'` before = + - @ is get-table's escape. */
  excelSafe?: boolean;
  /** --force: a row without a __STAMP (in a file that has the column) is written unchecked. */
  force?: boolean;
  /** Each chunk's reports, as they finish. */
  onReports: (reports: RowReport[]) => Promise<void>;
  /** One line for the person (stderr). */
  warn: (message: string) => void;
}

export interface BulkResult {
  /** Rows by result (updated, unchanged, conflict, not-found, invalid, ...). */
  counts: Record<string, number>;
  /** 0; 77 when the server refused a row for lack of permission; else 65 when a row failed; else 1 when a prompt was declined. */
  exitCode: number;
  /** True when the stop rule ended the run before the input did. */
  stopped: boolean;
  /** The input had a __STAMP column: changes made on the server since the export were checked. */
  stamped: boolean;
}

/** Rows planned (read and compared) together: one or a few batch reads. */
const CHUNK_ROWS = 1000;
const ENVELOPE = new Set(['__KEY', '__STAMP', '__TIMESTAMP']);

type Role = { kind: 'field'; attr: Attribute } | { kind: 'fixed'; attr: Attribute } | { kind: 'ignored' } | { kind: 'key' } | { kind: 'stamp' };

/** How the columns of the input are used: the key, the stamp, fields written, columns only compared. */
class Columns {
  readonly keyColumn: string;
  readonly stamped: boolean;
  private readonly roles = new Map<string, Role>();

  constructor(
    private readonly pusher: Pusher,
    names: string[],
    o: BulkOptions,
  ) {
    const dc = pusher.dataClass;
    const primary = dc.key[0]?.name;
    if (names.includes('__KEY')) {
      if (o.keyColumn !== undefined && o.keyColumn !== '__KEY' && o.keyColumn !== primary) {
        throw new UsageError(`the input has a __KEY column, which is the key; --key-column ${o.keyColumn} cannot replace it`, {
          hint: 'leave out --key-column',
        });
      }
      this.keyColumn = '__KEY';
    } else {
      const key = o.keyColumn ?? primary;
      if (!key) throw new UsageError(`${dc.name} has no primary key in the catalog; name the key column with --key-column`);
      if (!names.includes(key)) {
        throw new BadDataError(`the input has no key column '${key}' (columns: ${names.join(', ')})`, {
          hint: 'name it with --key-column, or export with get-table --meta (its __KEY column is the key)',
        });
      }
      this.keyColumn = key;
    }
    this.stamped = names.includes('__STAMP');
    for (const name of names) this.role(name);
    const written = names.filter((n) => this.roles.get(n)?.kind === 'field');
    if (written.length === 0) throw new BadDataError('the input has no field columns besides the key', { hint: 'add a column named like the field to update' });
  }

  /** A column's role; an unknown field name is an error (with suggestions). */
  role(name: string): Role {
    let role = this.roles.get(name);
    if (role) return role;
    const dc = this.pusher.dataClass;
    if (name === this.keyColumn) role = { kind: 'key' };
    else if (name === '__STAMP') role = { kind: 'stamp' };
    else if (ENVELOPE.has(name)) role = { kind: 'ignored' };
    else if (name === '') throw new BadDataError('the input has a value in a column without a name', { hint: 'give the column a header, or delete it' });
    else if (name.startsWith('__')) role = { kind: 'ignored' };
    else {
      const attr = attributeNamed(dc, name, 'field');
      if (dc.key.some((k) => k.name === attr.name) || attr.kind === 'relatedEntity' || attr.kind === 'relatedEntities' || MEDIA_TYPES.has(attr.type))
        role = { kind: 'fixed', attr };
      else if (attr.kind === 'storage') role = { kind: 'field', attr };
      else role = { kind: 'ignored' };
    }
    this.roles.set(name, role);
    return role;
  }

  /** Names of the columns of one kind (for messages). */
  named(kind: Role['kind']): string[] {
    return [...this.roles].filter(([, r]) => r.kind === kind).map(([n]) => n);
  }

  /** One input row as a request row, or the report of a row that cannot be one. */
  request(row: InputRow, force: boolean): PushRequestRow | RowReport {
    const fields: Record<string, unknown> = {};
    const fixed: Record<string, unknown> = {};
    let stamp: number | undefined;
    const invalid = (message: string): RowReport => ({
      line: row.line,
      key: keyText(row.values[this.keyColumn]),
      fields: [],
      old: {},
      new: {},
      result: 'invalid',
      message,
    });
    for (const [name, value] of Object.entries(row.values)) {
      let role: Role;
      try {
        role = this.role(name);
      } catch (error) {
        return invalid(`line ${row.line}: ${(error as Error).message}`);
      }
      if (role.kind === 'field') fields[role.attr.name] = value;
      else if (role.kind === 'fixed') fixed[role.attr.name] = value;
      else if (role.kind === 'stamp') {
        const parsed = stampOf(value);
        if (parsed === 'bad') return invalid(`line ${row.line}: __STAMP ${JSON.stringify(value)} is not a stamp (a whole number)`);
        stamp = parsed;
      }
    }
    const key = keyText(row.values[this.keyColumn]);
    if (key === '') return invalid(`line ${row.line}: empty key`);
    if (this.stamped && stamp === undefined && !force) {
      return invalid(
        `line ${row.line}: __STAMP is empty, so edits made on the server since the export cannot be detected; export the row again with --meta, or --force to write it unchecked`,
      );
    }
    return { line: row.line, key, fields, ...(stamp !== undefined ? { stamp } : {}), ...(Object.keys(fixed).length ? { fixed } : {}) };
  }
}

function keyText(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value.trim() : String(value);
}

function stampOf(value: unknown): number | undefined | 'bad' {
  if (value === undefined || value === null || value === '') return undefined;
  const n = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(String(value)) ? Number(value) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : 'bad';
}

const isReport = (item: PushRequestRow | RowReport): item is RowReport => 'result' in item;
const failedAtPlan = (r: RowReport) => r.result === 'invalid' || r.result === 'not-found' || r.result === 'conflict';

/** How the input's values are read back (see ./values.ts). */
export function valueContext(input: OpenedInput, excelSafe: boolean): FileValueContext {
  return {
    source: input.format === 'csv' ? 'text' : input.format === 'xlsx' ? 'xlsx' : 'json',
    decimalComma: input.format === 'xlsx' || (input.format === 'csv' && input.delimiter !== ','),
    date1904: input.date1904,
    excelSafe,
  };
}

/**
 * Read a whole file once without writing: its format and columns, and every value against the
 * catalog. A bad value stops the run here (nothing written) unless `continueOnError`.
 */
async function check(pusher: Pusher, input: OpenedInput, o: BulkOptions): Promise<void> {
  let columns: Columns | undefined;
  const ctx = valueContext(input, o.excelSafe === true);
  let first: string | undefined;
  let bad = 0;
  try {
    for await (const row of input.rows) {
      columns ??= new Columns(pusher, input.header ?? Object.keys(row.values), o);
      const request = columns.request(row, o.force === true);
      let problem = isReport(request) ? request.message : undefined;
      if (!isReport(request)) {
        for (const [name, value] of Object.entries(request.fields)) {
          try {
            fromFile(pusher.dataClass.attributes.find((a) => a.name === name)!, value, ctx);
          } catch (error) {
            problem = `line ${row.line}: ${(error as Error).message}`;
            break;
          }
        }
      }
      if (problem !== undefined) {
        bad += 1;
        first ??= problem;
      }
      if (o.signal.aborted) return;
    }
  } finally {
    input.close();
  }
  if (!columns) throw new BadDataError(`the input ${o.source} has no rows`);
  if (bad > 0 && !o.continueOnError) {
    throw new BadDataError(`${first}${bad > 1 ? ` (and ${bad - 1} more row(s) with a bad value)` : ''}; nothing was written`, {
      hint: 'fix the file, or add --continue-on-error to write the good rows and report the others',
    });
  }
}

/**
 * Push an input. `open` opens it (again); `reopenable` (a file, not stdin) lets it be checked
 * whole first.
 */
export async function pushBulk(pusher: Pusher, open: () => Promise<OpenedInput>, reopenable: boolean, o: BulkOptions): Promise<BulkResult> {
  if (reopenable) await check(pusher, await open(), o);
  if (o.signal.aborted) return { counts: {}, exitCode: ExitCode.ok, stopped: true, stamped: false };
  const input = await open();
  const ctx = valueContext(input, o.excelSafe === true);
  pusher.convertWith((attr, value) => fromFile(attr, value, ctx));
  const result: BulkResult = { counts: {}, exitCode: ExitCode.ok, stopped: false, stamped: false };
  const rank = (c: number) => (c === ExitCode.auth ? 3 : c === ExitCode.badData ? 2 : c === ExitCode.ok ? 0 : 1);
  const tally = async (reports: RowReport[]) => {
    for (const r of reports) result.counts[r.result] = (result.counts[r.result] ?? 0) + 1;
    await o.onReports(reports);
    const code = pushExitCode(reports);
    // A refusal for lack of permission (77) outranks bad rows (65), which outrank a declined prompt (1).
    if (rank(code) > rank(result.exitCode)) result.exitCode = code;
    return code === ExitCode.ok || o.continueOnError;
  };
  /** Plan a chunk, write its changes, report it; false: the stop rule ends the run. */
  const run = async (items: Array<PushRequestRow | RowReport>): Promise<boolean> => {
    const rows = items.filter((i): i is PushRequestRow => !isReport(i));
    const planned = rows.length ? await pusher.plan(rows) : [];
    let j = 0;
    const all: Planned[] = items.map((i) => (isReport(i) ? { report: i } : planned[j++]!));
    const firstFailure = o.continueOnError ? -1 : all.findIndex((p) => failedAtPlan(p.report));
    const limit = firstFailure < 0 ? all.length : firstFailure;
    const applied = await pusher.apply(all.slice(0, limit), !o.continueOnError);
    const end = applied < limit ? applied : firstFailure < 0 ? all.length : firstFailure + 1;
    // An unchanged row is reported by key alone: a round trip's thousands of untouched rows need no values.
    const reports = all
      .slice(0, end)
      .map((p) => (p.report.result === 'unchanged' && !p.report.message ? { ...p.report, fields: [], old: {}, new: {} } : p.report));
    const goOn = await tally(reports);
    return goOn && end === all.length;
  };
  let columns: Columns | undefined;
  let chunk: Array<PushRequestRow | RowReport> = [];
  try {
    for await (const row of input.rows) {
      if (!columns) {
        columns = new Columns(pusher, input.header ?? Object.keys(row.values), o);
        result.stamped = columns.stamped;
        if (!columns.stamped) {
          o.warn(
            `${o.source} has no __STAMP column: changes made on the server since the file was exported are not detected and may be overwritten (export with get-table --meta to protect them)`,
          );
        }
      }
      chunk.push(columns.request(row, o.force === true));
      if (chunk.length >= Math.max(CHUNK_ROWS, o.batchSize)) {
        const items = chunk;
        chunk = [];
        if (!(await run(items))) {
          result.stopped = true;
          return result;
        }
      }
      if (o.signal.aborted) return result;
    }
    if (!columns) throw new BadDataError(`the input ${o.source} has no rows`);
    if (chunk.length > 0 && !(await run(chunk))) result.stopped = true;
    return result;
  } finally {
    input.close();
  }
}
