/**
 * The conflict report of a round trip (`push-field --from FILE --conflicts conflicts.csv|.xlsx`):
 * one row per conflicting field with the key, the file's value, the exported value (when known),
 * the server's value now, and the command that re-exports that record; written atomically as CSV,
 * or as a workbook when the name ends in .xlsx. And the one command that re-exports every
 * conflicting record, to edit them again on top of what the server has now.
 */
import { extname } from 'node:path';
import { UsageError } from '../errors/index.js';
import type { DataClass } from '../rest/types.js';
import { openOutputFile, type OutputFile } from '../streams/output-file.js';
import { createWriter, type RowWriter } from '../table/output/formats.js';
import type { RowReport } from './index.js';

export const CONFLICT_COLUMNS = [
  'key',
  'field',
  'file_value',
  'exported_value',
  'server_value',
  'exported_stamp',
  'server_stamp',
  'line',
  'message',
  'reexport',
];

/** Keys kept for the follow-up command (a longer list would not fit a request URL anyway). */
const MAX_FOLLOW_UP_KEYS = 300;

export interface ExportHints {
  /** The input file's name (the re-export gets a name beside it, in the same format). */
  input: string;
  /** The input's CSV delimiter, when it was not a comma. */
  delimiter?: string;
}

const shellQuote = (text: string) => (/^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`);

/** `legacy get-table T --meta --filter 'ID in [3,17]' -o kunden-conflicts.csv`: re-export these records. */
export function reexportCommand(dc: DataClass, keys: string[], hints: ExportHints): string {
  const key = dc.key[0]?.name ?? '__KEY';
  const attr = dc.attributes.find((a) => a.name === key);
  const numeric = attr !== undefined && ['long', 'long64', 'word', 'number', 'integer'].includes(attr.type);
  const list = keys.map((k) => (numeric && /^-?\d+$/.test(k) ? k : JSON.stringify(k))).join(',');
  const ext = extname(hints.input).toLowerCase() || '.csv';
  const base = hints.input === '-' ? dc.name : hints.input.slice(0, hints.input.length - extname(hints.input).length);
  const out = `${base}-conflicts${ext === '.jsonl' ? '.ndjson' : ext}`;
  const csv = ext === '.csv' || ext === '.txt' || ext === '.tsv';
  const delimiter = csv && hints.delimiter && hints.delimiter !== ',' ? ` --delimiter ${shellQuote(hints.delimiter)} --bom` : '';
  return `legacy get-table ${shellQuote(dc.name)} --meta --filter ${shellQuote(`${key} in [${list}]`)}${delimiter} -o ${shellQuote(out)}`;
}

export class ConflictReport {
  private count = 0;
  private readonly keys = new Set<string>();
  private more = 0;

  private constructor(
    private readonly dc: DataClass,
    private readonly hints: ExportHints,
    private readonly file?: OutputFile,
    private readonly writer?: RowWriter,
  ) {}

  /** Open the report file (created atomically when finished); without a path, only the keys are kept. */
  static async open(dc: DataClass, hints: ExportHints, path: string | undefined, cwd: string): Promise<ConflictReport> {
    if (path === undefined) return new ConflictReport(dc, hints);
    if (path === '-') throw new UsageError('--conflicts needs a file name (the report goes beside the per-row report on stdout otherwise)');
    const format = extname(path).toLowerCase() === '.xlsx' ? 'xlsx' : 'csv';
    const file = await openOutputFile(path, cwd, { what: 'conflict report' });
    const writer = await createWriter(format, CONFLICT_COLUMNS, file.stream, { sheetName: `${dc.name} conflicts` });
    await writer.begin();
    return new ConflictReport(dc, hints, file, writer);
  }

  /** The conflicts among a chunk's reports. */
  async add(reports: RowReport[]): Promise<void> {
    const rows: unknown[][] = [];
    for (const r of reports) {
      if (r.result !== 'conflict') continue;
      this.count += 1;
      if (this.keys.size < MAX_FOLLOW_UP_KEYS) this.keys.add(r.key);
      else if (!this.keys.has(r.key)) this.more += 1;
      const one = reexportCommand(this.dc, [r.key], this.hints);
      for (const field of r.fields.length ? r.fields : ['']) {
        rows.push([
          r.key,
          field,
          r.new[field] ?? null,
          r.exported?.[field] ?? null,
          r.old[field] ?? null,
          r.stampExported ?? null,
          r.stampAfter ?? r.stampBefore ?? null,
          r.line ?? null,
          r.message ?? null,
          one,
        ]);
      }
    }
    if (rows.length && this.writer) await this.writer.write(rows);
  }

  /** Conflicting records seen so far. */
  get conflicts(): number {
    return this.count;
  }

  /** The command that re-exports the conflicting records (undefined: none). */
  followUp(): string | undefined {
    if (this.keys.size === 0) return undefined;
    return reexportCommand(this.dc, [...this.keys], this.hints) + (this.more ? ` # and ${this.more} more record(s), see the report` : '');
  }

  /** Finish the file and put it in place. */
  async finish(): Promise<string | undefined> {
    if (!this.writer || !this.file) return undefined;
    await this.writer.end();
    await this.file.commit();
    return this.file.path;
  }

  async abort(): Promise<void> {
    await this.file?.abort();
  }
}
