/**
 * Bulk push-field: rows streamed from a CSV, NDJSON, JSON or xlsx input (./input.ts), planned
 * against the server a chunk at a time and written in batches of changed records only.
 *
 * The columns of a `get-table --meta` export are understood: `__KEY` is the key, `__STAMP` the
 * version each row was exported at (a record saved since then is a conflict, see ./index.ts),
 * `__TIMESTAMP` and other `__` columns are 4D's own and never written; the table's key field, a
 * relation or a picture column is compared with the server and never written.
 *
 * A file is read twice. First whole, without writing: its format, its columns and every row are
 * planned against the server (one batch read per chunk), which gives the number of records and
 * fields the run changes (asked once on a terminal), the rows that cannot be written (a bad value,
 * a spreadsheet's rendering of text, a key changed by two rows: without --continue-on-error the run
 * stops here with nothing written), and the set of changes: each changed record's key and the line
 * that changes it. Then again to push it: only those changes are written, each from its line,
 * so a row that did not change its record when the run began never writes (an unchanged duplicate
 * row cannot undo an edit, a record someone else saved meanwhile is not overwritten from a row
 * that did not edit it). Memory follows the edits (a key and a line number per changed record or
 * failing row), not the rows. Stdin is read once: a key is written from its first changing row,
 * and a later row that would change it again is refused.
 *
 * Requests: one batch read (`key IN :1`, as many keys as fit a URL) per chunk of up to 1,000 rows
 * in the first pass, one per chunk holding a change or a failure in the second, and one update
 * request per `batchSize` changed records of a chunk: a 10,000-row file with 12 edits sends 12
 * updates in at most 10 update requests, not 10,000 (bench:push: 1% of 10,000 rows edited, 50
 * reads and 10 updates; 40 reads before the first pass planned against the server).
 *
 * Stop rules: without `continueOnError` a row that cannot be written as planned stops the run
 * before anything is written; a missing record or a conflict stops it at that row: rows before it
 * are written (a row that fails only when written ends its update request), none after it. Ctrl-C
 * stops before the next update request and throws the interruption.
 */
import { BadDataError, EXIT_CANCELLED, ExitCode, InterruptedError, UsageError, interruptionOf } from '../errors/index.js';
import type { Attribute } from '../rest/types.js';
import { MEDIA_TYPES } from '../table/convert.js';
import { attributeNamed } from '../table/plan/query.js';
import { type ChangeTotals, pushExitCode, type Planned, type Pusher, type PushRequestRow, type RowReport } from './index.js';
import type { InputRow, OpenedInput } from './input.js';
import { type FileValueContext, fromFile, isFormulaCell } from './values.js';

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
  /** Asked once, before the first write, with the first planned changes and the whole file's totals; false: nothing is written. */
  confirm?: (changes: RowReport[], total: ChangeTotals) => Promise<boolean>;
  /** Something that changes when the input file does (size, mtime): checked between the two readings. */
  fingerprint?: () => Promise<string>;
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
  /** The person declined the confirmation: nothing was written. */
  declined?: ChangeTotals;
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
    /** Workbook cells: a formula cell's result is the value of a key, stamp or read-only column. */
    private readonly xlsx = false,
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
    const keyValue = row.values[this.keyColumn];
    const invalid = (message: string): RowReport => ({
      line: row.line,
      key: keyText(this.xlsx && isFormulaCell(keyValue) ? keyValue.value : keyValue),
      fields: [],
      old: {},
      new: {},
      result: 'invalid',
      message,
    });
    for (const [name, cell] of Object.entries(row.values)) {
      let role: Role;
      try {
        role = this.role(name);
      } catch (error) {
        return invalid(`line ${row.line}: ${(error as Error).message}`);
      }
      if (role.kind === 'ignored') continue;
      // A workbook formula: a field's value is read by values.ts; elsewhere its result is the value.
      let value = cell;
      if (role.kind !== 'field' && this.xlsx && isFormulaCell(cell)) {
        if (cell.value === undefined) return invalid(`line ${row.line}: ${name} holds the formula =${cell.formula}, and the file holds no result for it`);
        value = cell.value;
      }
      if (role.kind === 'field') fields[role.attr.name] = value;
      else if (role.kind === 'fixed') fixed[role.attr.name] = value;
      else if (role.kind === 'stamp') {
        const parsed = stampOf(value);
        if (parsed === 'bad') return invalid(`line ${row.line}: __STAMP ${JSON.stringify(value)} is not a stamp (a whole number)`);
        stamp = parsed;
      }
    }
    const keyCell = row.values[this.keyColumn];
    const key = keyText(this.xlsx && isFormulaCell(keyCell) ? keyCell.value : keyCell);
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

const interrupted = (signal: AbortSignal) => interruptionOf(signal) ?? new InterruptedError('interrupted');

/** An unchanged row is reported by key alone: a round trip's thousands of untouched rows need no values. */
const brief = (r: RowReport): RowReport => (r.result === 'unchanged' && !r.message ? { ...r, fields: [], old: {}, new: {} } : r);

const withLine = (r: RowReport) =>
  r.message && !r.message.startsWith('line ') && r.line !== undefined ? `line ${r.line}: ${r.message}` : (r.message ?? r.result);

/** A record changed by two rows of one file: which one the person meant cannot be told. */
function duplicateMessage(key: string, other: number): string {
  return `the key ${key} is on line ${other} too, and both rows change it; a record can be changed from one row only: not written`;
}

/** The first reading: every row planned, nothing written. */
interface Survey {
  /** Key → the line that changes it, and how many fields. */
  changes: Map<string, { line: number; fields: number }>;
  /** Keys changed by two rows or more (→ the first two lines). */
  duplicates: Map<string, [number, number]>;
  /** Lines to plan again when pushing (→ key): the changes, the failing rows, rows with a message. */
  replan: Map<number, string>;
  /** Rows that cannot be written as planned (invalid, a duplicate): the first one, and how many. */
  bad: number;
  firstBad?: string;
  /** The first row that is missing or in conflict: without --continue-on-error the run stops there. */
  stopLine?: number;
  /** The first planned changes, for the confirmation. */
  preview: RowReport[];
  stamped: boolean;
}

const PREVIEW = 20;

/** Read the whole file and plan every row against the server, writing nothing (see the top of this file). */
async function survey(pusher: Pusher, input: OpenedInput, o: BulkOptions): Promise<Survey> {
  const s: Survey = { changes: new Map(), duplicates: new Map(), replan: new Map(), bad: 0, preview: [], stamped: false };
  let columns: Columns | undefined;
  const plan = async (items: Array<PushRequestRow | RowReport>) => {
    const rows = items.filter((i): i is PushRequestRow => !isReport(i));
    const planned = rows.length ? await pusher.plan(rows) : [];
    let j = 0;
    for (const item of items) {
      const p: Planned = isReport(item) ? { report: item } : planned[j++]!;
      const r = p.report;
      const line = r.line ?? 0;
      if (p.values) {
        s.replan.set(line, r.key);
        const first = s.changes.get(r.key);
        if (first) {
          if (!s.duplicates.has(r.key)) {
            s.duplicates.set(r.key, [first.line, line]);
            s.bad += 1; // the first row too
          }
          s.bad += 1;
          s.firstBad ??= `line ${line}: ${duplicateMessage(r.key, first.line)}`;
        } else {
          s.changes.set(r.key, { line, fields: p.attrs?.length ?? 0 });
          if (s.preview.length < PREVIEW * 2) s.preview.push(r);
        }
      } else if (r.result === 'invalid') {
        s.replan.set(line, r.key);
        s.bad += 1;
        s.firstBad ??= withLine(r);
      } else if (r.result !== 'unchanged' || r.message) {
        s.replan.set(line, r.key);
        if (failedAtPlan(r)) s.stopLine ??= line;
      }
    }
  };
  let chunk: Array<PushRequestRow | RowReport> = [];
  try {
    for await (const row of input.rows) {
      if (!columns) {
        columns = new Columns(pusher, input.header ?? Object.keys(row.values), o, input.format === 'xlsx');
        s.stamped = columns.stamped;
      }
      chunk.push(columns.request(row, o.force === true));
      if (chunk.length >= Math.max(CHUNK_ROWS, o.batchSize)) {
        await plan(chunk);
        chunk = [];
      }
      if (o.signal.aborted) throw interrupted(o.signal);
    }
    if (!columns) throw new BadDataError(`the input ${o.source} has no rows`);
    if (chunk.length > 0) await plan(chunk);
  } finally {
    input.close();
  }
  return s;
}

/** What the confirmed run writes: the changes before the stop line, without the duplicated keys. */
function totals(s: Survey, continueOnError: boolean): ChangeTotals {
  const stop = continueOnError || s.stopLine === undefined ? Number.POSITIVE_INFINITY : s.stopLine;
  let records = 0;
  let fields = 0;
  for (const [key, c] of s.changes) {
    if (c.line >= stop || s.duplicates.has(key)) continue;
    records += 1;
    fields += c.fields;
  }
  return { records, fields };
}

/**
 * Push an input. `open` opens it (again); `reopenable` (a file, not stdin) lets it be planned
 * whole first.
 */
export async function pushBulk(pusher: Pusher, open: () => Promise<OpenedInput>, reopenable: boolean, o: BulkOptions): Promise<BulkResult> {
  let plan: Survey | undefined;
  let before: string | undefined;
  if (reopenable) {
    before = await o.fingerprint?.();
    const input = await open();
    pusher.convertWith((attr, value) => fromFile(attr, value, valueContext(input, o.excelSafe === true)));
    plan = await survey(pusher, input, o);
    if (plan.bad > 0 && !o.continueOnError) {
      throw new BadDataError(`${plan.firstBad}${plan.bad > 1 ? ` (and ${plan.bad - 1} more row(s) that cannot be written)` : ''}; nothing was written`, {
        hint: 'fix the file, or add --continue-on-error to write the good rows and report the others',
      });
    }
    const total = totals(plan, o.continueOnError);
    if (o.confirm && total.records > 0) {
      const stop = o.continueOnError ? undefined : plan.stopLine;
      const preview = plan.preview.filter((r) => !plan!.duplicates.has(r.key) && (stop === undefined || (r.line ?? 0) < stop));
      if (!(await o.confirm(preview.slice(0, PREVIEW), total)))
        return { counts: { cancelled: total.records }, exitCode: EXIT_CANCELLED, stopped: true, stamped: plan.stamped, declined: total };
    }
    if (o.signal.aborted) throw interrupted(o.signal);
    if (before !== undefined && (await o.fingerprint?.()) !== before) {
      throw new BadDataError(`${o.source} changed while push-field was reading it; nothing was written`, {
        hint: 'run push-field again once the file is saved',
      });
    }
  }
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
  /** Stdin: the key → line of every change planned so far (a later row changing the key again is refused). */
  const planned = new Map<string, number>();
  /** A planned change that is not the one the first reading found (or, on stdin, not the first for its key) is not written. */
  const guard = (p: Planned) => {
    if (!p.values) return;
    const r = p.report;
    const line = r.line ?? 0;
    let refusal: string | undefined;
    let result: RowReport['result'] = 'invalid';
    if (plan) {
      const dup = plan.duplicates.get(r.key);
      const change = plan.changes.get(r.key);
      if (dup !== undefined) refusal = duplicateMessage(r.key, dup[0] === line ? dup[1] : dup[0]);
      else if (!change || change.line !== line) {
        // The row matched the server when the run began: the record was saved meanwhile (or another row wrote it).
        result = 'conflict';
        refusal = `${pusher.dataClass.name}[${r.key}] was saved on the server during this run${change && change.line < line ? ` (by this run, from line ${change.line})` : ''}, and this row did not edit it; not written`;
      }
    } else {
      const first = planned.get(r.key);
      if (first !== undefined && first !== line) refusal = duplicateMessage(r.key, first);
      else planned.set(r.key, line);
    }
    if (refusal === undefined) return;
    r.result = result;
    r.message = refusal;
    r.forced = undefined;
    p.values = undefined;
    p.attrs = undefined;
  };
  /** Plan a chunk, write its changes, report it; false: the stop rule ends the run. */
  const run = async (items: Array<PushRequestRow | RowReport>): Promise<boolean> => {
    const rows = items.filter((i): i is PushRequestRow => !isReport(i) && (!plan || plan.replan.has(i.line ?? 0)));
    for (const row of rows) {
      if (plan && plan.replan.get(row.line ?? 0) !== row.key)
        throw new BadDataError(`${o.source} changed while push-field was reading it (line ${row.line} has another key now); rows before it may be written`);
    }
    const fresh = rows.length ? await pusher.plan(rows) : [];
    let j = 0;
    const all: Planned[] = items.map((i) => {
      if (isReport(i)) return { report: i };
      if (plan && !plan.replan.has(i.line ?? 0)) return { report: { line: i.line, key: i.key, fields: [], old: {}, new: {}, result: 'unchanged' } };
      return fresh[j++]!;
    });
    for (const p of all) guard(p);
    const firstFailure = o.continueOnError ? -1 : all.findIndex((p) => failedAtPlan(p.report));
    const limit = firstFailure < 0 ? all.length : firstFailure;
    const applied = await pusher.apply(all.slice(0, limit), !o.continueOnError, false);
    const end = applied < limit ? applied : firstFailure < 0 ? all.length : firstFailure + 1;
    const goOn = await tally(all.slice(0, end).map((p) => brief(p.report)));
    if (o.signal.aborted) throw interrupted(o.signal);
    return goOn && end === all.length;
  };
  let columns: Columns | undefined;
  let chunk: Array<PushRequestRow | RowReport> = [];
  try {
    for await (const row of input.rows) {
      if (!columns) {
        columns = new Columns(pusher, input.header ?? Object.keys(row.values), o, input.format === 'xlsx');
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
      if (o.signal.aborted) throw interrupted(o.signal);
    }
    if (!columns) throw new BadDataError(`the input ${o.source} has no rows`);
    if (chunk.length > 0 && !(await run(chunk))) result.stopped = true;
    return result;
  } finally {
    input.close();
  }
}
