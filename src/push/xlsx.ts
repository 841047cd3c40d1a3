/**
 * Reading an .xlsx workbook row by row, for `push-field --from FILE.xlsx`: the rows of the first
 * visible sheet and of its continuation sheets (an export longer than Excel's 1,048,576 rows goes
 * on on `Artikel (2)`, see table/output/xlsx.ts), as typed cells. A continuation sheet is one named as
 * the export names it, after a full sheet, with the same header. Another visible sheet with the
 * same header (Excel names a copied sheet `Artikel (2)` too) is refused: its rows would be taken
 * for the export's. Sheets with another header (notes, a pivot) are left out; so are hidden ones.
 *
 * The zip is read by yauzl (the reading half of yazl) and the XML by
 * saxes, both streamed: a sheet is never held whole, only the shared-string table (Excel keeps
 * every distinct text there) is. The SpreadsheetML layer is ours because the streaming readers on
 * npm corrupt text silently: exceljs's WorkbookReader decodes every zip chunk on its own (a
 * multi-byte character cut at a chunk boundary becomes U+FFFD; exceljs issues 2063 and 2316, fixes
 * open since 2021) and decodes the XML entities of inline strings twice (`&amp;lt;` reads as `<`).
 * Here the bytes go through one streaming, fatal UTF-8 decoder per part, entities are decoded once
 * (by saxes), and `_xHHHH_` escapes (ECMA-376 ST_Xstring) are undone.
 *
 * Cells come back as Excel holds them: text, numbers (dates and times are serial numbers; the
 * column's catalog type says how to read them), booleans, `{ error }` for `#N/A` and the like,
 * null for an empty cell. A formula cell gives `{ formula, value }`: its cached result, or
 * undefined when the file holds none (openpyxl writes formulas without computing them).
 */
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import type { Entry, ZipFile } from 'yauzl';
import { BadDataError } from '../errors/index.js';
import { EXCEL_MAX_ROWS, sheetName } from '../table/output/xlsx.js';

export type XlsxValue = string | number | boolean | null | { error: string };
/** A formula cell: the formula (without `=`) and its cached result (undefined: none in the file). */
export type XlsxFormula = { formula: string; value: XlsxValue | undefined };
export type XlsxCell = XlsxValue | XlsxFormula;

export interface XlsxOptions {
  /** Rows per sheet, header included, after which an export goes on on a continuation sheet (Excel's limit unless a test says). */
  rowsPerSheet?: number;
}

export interface XlsxRow {
  /** The sheet's name. */
  sheet: string;
  /** The row number in the sheet (1 is the header). */
  row: number;
  /** Cells by column index (0 = A); missing cells are undefined. */
  cells: XlsxCell[];
}

export interface XlsxWorkbook {
  /** Serial dates count from 1904-01-01 (Excel for Mac's old default) instead of 1899-12-30. */
  date1904: boolean;
  /** The header row of the first visible sheet. */
  header: string[];
  /** The data rows (after each sheet's header row). */
  rows: AsyncGenerator<XlsxRow>;
  close(): void;
}

const localName = (name: string) => {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
};

/** ECMA-376 ST_Xstring: `_x000D_` is a CR, `_x005F_` a literal underscore. */
const decodeEscapes = (text: string) =>
  text.includes('_x') ? text.replace(/_x([0-9A-Fa-f]{4})_/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))) : text;

/** `AB12` → 27 (0-based column index). */
function columnIndex(ref: string): number {
  let n = 0;
  for (const ch of ref) {
    const code = ch.charCodeAt(0);
    if (code < 65 || code > 90) break;
    n = n * 26 + (code - 64);
  }
  return n - 1;
}

function unreadable(path: string, why: string): BadDataError {
  return new BadDataError(`${path} is not a readable .xlsx workbook: ${why}`, { hint: 'open it in Excel and save it again as an Excel workbook (.xlsx)' });
}

/** Parse a part with saxes, handing every tag and text to `on`; yields after each chunk so callers can stream. */
async function* parsePart(zip: ZipFile, entry: Entry, path: string, on: XmlHandler): AsyncGenerator<void> {
  const stream = await zip.openReadStreamPromise(entry);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const parser = new SaxesParser({ xmlns: false });
  let failure: Error | undefined;
  parser.on('error', (error) => {
    failure ??= error;
  });
  parser.on('opentag', (tag) => on.open(localName(tag.name), tag as SaxesTagPlain));
  parser.on('closetag', (tag) => on.close(localName(tag.name)));
  parser.on('text', (text) => on.text(text));
  parser.on('cdata', (text) => on.text(text));
  try {
    for await (const chunk of stream) {
      let text: string;
      try {
        text = decoder.decode(chunk as Buffer, { stream: true });
      } catch {
        throw unreadable(path, `${entry.fileName} is not UTF-8`);
      }
      parser.write(text);
      if (failure) throw unreadable(path, `${entry.fileName}: ${failure.message.split('\n')[0]}`);
      yield;
    }
    parser.close();
    if (failure) throw unreadable(path, `${entry.fileName}: ${(failure as Error).message.split('\n')[0]}`);
  } finally {
    stream.destroy();
  }
}

interface XmlHandler {
  open(name: string, tag: SaxesTagPlain): void;
  close(name: string): void;
  text(text: string): void;
}

async function readWhole(zip: ZipFile, entry: Entry, path: string, on: XmlHandler): Promise<void> {
  for await (const _ of parsePart(zip, entry, path, on)) {
    // the handler collects
  }
}

/** The text of `<si>` / `<is>`: its `<t>` runs, without phonetic runs (`<rPh>`). */
function richTextCollector() {
  let text = '';
  let inT = false;
  let inPhonetic = false;
  return {
    reset() {
      text = '';
    },
    get value() {
      return decodeEscapes(text);
    },
    open(name: string) {
      if (name === 't' && !inPhonetic) inT = true;
      else if (name === 'rPh') inPhonetic = true;
    },
    close(name: string) {
      if (name === 't') inT = false;
      else if (name === 'rPh') inPhonetic = false;
    },
    text(t: string) {
      if (inT) text += t;
    },
  };
}

/** A header cell's name. */
const headerName = (c: XlsxCell | undefined): string => {
  const v = c !== null && typeof c === 'object' && 'formula' in c ? c.value : c;
  return v === null || v === undefined || typeof v === 'object' ? '' : String(v);
};

function headerOf(row: XlsxRow | undefined): string[] {
  const names = row ? Array.from(row.cells, headerName) : [];
  while (names.length > 0 && names[names.length - 1] === '') names.pop();
  return names;
}

/** Open a workbook: its sheets, date system and shared strings are read; rows stream from `rows`. */
export async function openXlsx(path: string, options: XlsxOptions = {}): Promise<XlsxWorkbook> {
  const rowsPerSheet = options.rowsPerSheet ?? EXCEL_MAX_ROWS;
  const yauzl = await import('yauzl');
  let zip: ZipFile;
  try {
    zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code) throw error;
    throw unreadable(path, (error as Error).message);
  }
  try {
    const entries = new Map<string, Entry>();
    for await (const entry of zip.eachEntry()) entries.set(entry.fileName, entry);
    const part = (name: string) => entries.get(name);

    // The workbook: sheet names and order, hidden sheets, the date system.
    const workbookEntry = part('xl/workbook.xml');
    if (!workbookEntry) throw unreadable(path, 'it has no xl/workbook.xml');
    const sheets: Array<{ name: string; rid: string; hidden: boolean }> = [];
    let date1904 = false;
    await readWhole(zip, workbookEntry, path, {
      open(name, tag) {
        if (name === 'sheet') {
          const rid = Object.entries(tag.attributes).find(([k]) => localName(k) === 'id' && k.includes(':'))?.[1] ?? '';
          sheets.push({
            name: String(tag.attributes.name ?? ''),
            rid: String(rid),
            hidden: tag.attributes.state !== undefined && tag.attributes.state !== 'visible',
          });
        } else if (name === 'workbookPr') {
          const v = String(tag.attributes.date1904 ?? '');
          date1904 = v === '1' || v === 'true';
        }
      },
      close() {},
      text() {},
    });
    const targets = new Map<string, string>();
    const relsEntry = part('xl/_rels/workbook.xml.rels');
    if (relsEntry) {
      await readWhole(zip, relsEntry, path, {
        open(name, tag) {
          if (name === 'Relationship') {
            const target = String(tag.attributes.Target ?? '');
            targets.set(String(tag.attributes.Id ?? ''), target.startsWith('/') ? target.slice(1) : `xl/${target}`);
          }
        },
        close() {},
        text() {},
      });
    }
    const sheetParts = sheets
      .filter((s) => !s.hidden)
      .map((s, i) => ({ name: s.name, entry: part(targets.get(s.rid) ?? `xl/worksheets/sheet${i + 1}.xml`) }))
      .filter((s): s is { name: string; entry: Entry } => s.entry !== undefined);
    if (sheetParts.length === 0) throw unreadable(path, 'it has no visible worksheet');

    // Shared strings: every distinct text of the workbook (Excel writes all text there).
    const shared: string[] = [];
    const sharedEntry = part('xl/sharedStrings.xml');
    if (sharedEntry) {
      const rich = richTextCollector();
      await readWhole(zip, sharedEntry, path, {
        open(name) {
          if (name === 'si') rich.reset();
          else rich.open(name);
        },
        close(name) {
          if (name === 'si') shared.push(rich.value);
          else rich.close(name);
        },
        text: (t) => rich.text(t),
      });
    }

    const sheetRows = (sheet: { name: string; entry: Entry }) => readSheet(zip, sheet.entry, sheet.name, path, shared);
    // The first sheet's header decides; its continuation sheets follow it.
    const firstSheet = sheetParts[0]!;
    const first = sheetRows(firstSheet);
    const head = await first.next();
    const header = headerOf(head.done ? undefined : head.value);
    const seen = new Set<string>();
    for (const name of header) {
      if (name !== '' && seen.has(name))
        throw new BadDataError(`the header of sheet '${firstSheet.name}' names the column '${name}' twice`, {
          hint: 'rename or delete one of the two columns',
        });
      seen.add(name);
    }
    async function* rows(): AsyncGenerator<XlsxRow> {
      let lastRow = head.done ? 0 : head.value.row;
      let current = firstSheet.name;
      for await (const row of first) {
        lastRow = row.row;
        yield row;
      }
      let next = 2;
      for (const sheet of sheetParts.slice(1)) {
        const it = sheetRows(sheet);
        const h = await it.next();
        if (headerOf(h.done ? undefined : h.value).join('\u0000') !== header.join('\u0000')) {
          await it.return(undefined);
          continue;
        }
        const expected = sheetName(firstSheet.name, ` (${next})`);
        if (sheet.name !== expected || lastRow !== rowsPerSheet) {
          await it.return(undefined);
          throw new BadDataError(
            `sheet '${sheet.name}' has the columns of '${firstSheet.name}' but is not its continuation (an export goes on on '${expected}' only after ${rowsPerSheet.toLocaleString('en-US')} rows on '${current}'); its rows would be pushed too`,
            { hint: 'delete or hide that sheet (a copy of the export?), or move its rows onto the first sheet' },
          );
        }
        next += 1;
        current = sheet.name;
        lastRow = h.done ? 0 : h.value.row;
        for await (const row of it) {
          lastRow = row.row;
          yield row;
        }
      }
    }
    return { date1904, header, rows: rows(), close: () => zip.close() };
  } catch (error) {
    zip.close();
    throw error;
  }
}

/** The rows of one worksheet, streamed. Empty rows are skipped. */
async function* readSheet(zip: ZipFile, entry: Entry, sheet: string, path: string, shared: string[]): AsyncGenerator<XlsxRow> {
  const done: XlsxRow[] = [];
  let row: XlsxRow | undefined;
  let nextRow = 1;
  let cellRef: string | undefined;
  let cellType = 'n';
  let nextColumn = 0;
  let value = '';
  let inValue = false;
  let inInline = false;
  let hasValue = false;
  let inFormula = false;
  let formula: string | undefined;
  const inline = richTextCollector();
  const handler: XmlHandler = {
    open(name, tag) {
      if (name === 'row') {
        const r = Number(tag.attributes.r ?? nextRow);
        row = { sheet, row: r, cells: [] };
        nextRow = r + 1;
        nextColumn = 0;
      } else if (name === 'c' && row) {
        cellRef = tag.attributes.r === undefined ? undefined : String(tag.attributes.r);
        cellType = String(tag.attributes.t ?? 'n');
        value = '';
        hasValue = false;
        formula = undefined;
      } else if (name === 'f' && row && !inInline) {
        // A formula (also a shared one, `<f t="shared" si="0"/>`, whose text is on another cell).
        inFormula = true;
        formula ??= '';
      } else if (name === 'v' && row) {
        inValue = true;
        hasValue = true;
      } else if (name === 'is' && row) {
        inInline = true;
        hasValue = true;
        inline.reset();
      } else if (inInline) inline.open(name);
    },
    close(name) {
      if (name === 'v') inValue = false;
      else if (name === 'f') inFormula = false;
      else if (name === 'is') inInline = false;
      else if (inInline) inline.close(name);
      else if (name === 'c' && row) {
        const index = cellRef ? columnIndex(cellRef) : nextColumn;
        nextColumn = index + 1;
        // A formula's result is cached in <v>; openpyxl writes none (or an empty one): no value to read.
        const cached = hasValue && (value.trim() !== '' || cellType === 'str' || cellType === 'inlineStr');
        row.cells[index] = formula === undefined ? cellValue() : { formula, value: cached ? cellValue() : undefined };
      } else if (name === 'row' && row) {
        if (row.cells.some((c) => c !== null && c !== undefined && c !== '')) done.push(row);
        row = undefined;
      }
    },
    text(t) {
      if (inInline) inline.text(t);
      else if (inValue) value += t;
      else if (inFormula) formula += t;
    },
  };
  const cellValue = (): XlsxValue => {
    if (!hasValue) return null;
    switch (cellType) {
      case 's': {
        const text = shared[Number(value)];
        if (text === undefined) throw unreadable(path, `cell ${cellRef ?? '?'} of ${sheet} names shared string ${value}, which does not exist`);
        return text;
      }
      case 'inlineStr':
        return inline.value;
      case 'str':
        return decodeEscapes(value);
      case 'b':
        return value.trim() !== '0' && value.trim() !== 'false';
      case 'e':
        return { error: value };
      case 'd':
        return value; // ISO 8601 (strict OOXML): text, read by the column's type
      default: {
        if (value.trim() === '') return null;
        const n = Number(value);
        if (!Number.isFinite(n)) throw unreadable(path, `cell ${cellRef ?? '?'} of ${sheet} holds ${JSON.stringify(value)}, which is not a number`);
        return n;
      }
    }
  };
  for await (const _ of parsePart(zip, entry, path, handler)) {
    while (done.length > 0) yield done.shift()!;
  }
  while (done.length > 0) yield done.shift()!;
}
