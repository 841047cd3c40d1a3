/**
 * Spreadsheet cells of converted values: the reference encoding of `--xlsx` (./xlsx.ts writes the
 * workbook around it; ./transcode.ts xlsxTranscoder writes the same bytes straight from a page's).
 *
 * Cells are typed from the catalog: numbers as numbers, dates as Excel dates, times as times of
 * day, booleans as booleans, objects as JSON text, text as text (so `0012` stays `0012`), null and
 * `0!0!0` as empty cells.
 */

/** How a column's converted values become cells: `date` ('YYYY-MM-DD'), `time` ('HH:MM:SS'), or by their JS type. */
export type CellKind = 'date' | 'time' | 'auto';

export const EXCEL_MAX_CELL_TEXT = 32_767;
const DAY_MS = 86_400_000;
/** Excel's day 0 is 1899-12-30 (in the 1900 system, from 1900-03-01 on). */
const EXCEL_EPOCH_DAYS = 25_569;
/** Serial numbers before 1900-03-01 are off by Excel's 1900 leap-year bug: such dates stay text. */
const FIRST_SAFE_DATE = Date.UTC(1900, 2, 1);

/** Cell styles, indexes into cellXfs of the workbook's styles.xml (./xlsx.ts). */
export const STYLE = { header: 1, date: 2, time: 3, duration: 4 } as const;

/** Column letters: 0 → A, 25 → Z, 26 → AA. */
export function columnLetters(index: number): string {
  let n = index + 1;
  let letters = '';
  while (n > 0) {
    const rest = (n - 1) % 26;
    letters = String.fromCharCode(65 + rest) + letters;
    n = Math.floor((n - 1) / 26);
  }
  return letters;
}

/** Markup, and CR, which an XML parser would otherwise turn (with a following LF) into a plain LF. */
const XML_SPECIAL = /[&<>"\r]/g;
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\r': '&#13;' };
/** Characters XML 1.0 cannot carry, and text Excel would read as such an escape (`_x0041_`). */
// eslint-disable-next-line no-control-regex
const NOT_XML = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|_(?=x[0-9A-Fa-f]{4}_)/g;

const HAS_NOT_XML = new RegExp(NOT_XML.source);

export function xmlText(text: string): string {
  // ECMA-376 ST_Xstring: a character XML cannot hold is written _xHHHH_, and a literal "_xHHHH_" keeps its "_" as _x005F_.
  const safe = HAS_NOT_XML.test(text) ? text.replace(NOT_XML, (c) => `_x${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}_`) : text;
  return safe.replace(XML_SPECIAL, (c) => ESCAPES[c]!);
}

/** `YYYY-MM-DD` → Excel's serial day number, or undefined when Excel cannot show it (before 1900-03-01). */
function excelDate(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  return m ? excelSerial(Number(m[1]), Number(m[2]), Number(m[3])) : undefined;
}

/** A calendar date → Excel's serial day number, or undefined when it is no date or Excel cannot show it. */
export function excelSerial(year: number, month: number, day: number): number | undefined {
  // 2025-13-45 or 2025-02-30 is no date and stays text (Date.UTC would roll it over).
  if (year < 1900 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  const ms = Date.UTC(year, month - 1, day);
  return ms < FIRST_SAFE_DATE ? undefined : ms / DAY_MS + EXCEL_EPOCH_DAYS;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** `HH:MM:SS` → a fraction of a day (hours may exceed 24; a negative duration stays text). */
function excelTime(text: string): number | undefined {
  const m = /^(\d+):(\d{2}):(\d{2})$/.exec(text);
  return m ? (((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000) / DAY_MS : undefined;
}

/** A time cell's text (`HH:MM:SS`) as what follows its reference: ` s="3"><v>0.5</v></c>`, or undefined when it stays text. */
export function timeCellTail(text: string): string | undefined {
  const days = excelTime(text);
  // A duration of a day or more keeps counting hours instead of wrapping at midnight.
  return days === undefined ? undefined : ` s="${days >= 1 ? STYLE.duration : STYLE.time}"><v>${days}</v></c>`;
}

/** Cells of converted values, and a count of the text cells cut to Excel's limit. */
export interface CellEncoder {
  /** The cell at `ref` ('' for an empty one). */
  cell(ref: string, value: unknown, kind: CellKind): string;
  inlineString(ref: string, text: string, style?: string): string;
  readonly truncated: number;
}

export function cellEncoder(): CellEncoder {
  let truncated = 0;

  const inlineString = (ref: string, text: string, style = ''): string => {
    if (text.length > EXCEL_MAX_CELL_TEXT) {
      truncated += 1;
      text = text.slice(0, EXCEL_MAX_CELL_TEXT);
    }
    const space = /^\s|\s$/.test(text) ? ' xml:space="preserve"' : '';
    return `<c r="${ref}"${style} t="inlineStr"><is><t${space}>${xmlText(text)}</t></is></c>`;
  };

  const cell = (ref: string, value: unknown, kind: CellKind): string => {
    if (value === null || value === undefined || value === '') return '';
    if (typeof value === 'string') {
      if (kind === 'date') {
        const serial = excelDate(value);
        if (serial !== undefined) return `<c r="${ref}" s="${STYLE.date}"><v>${serial}</v></c>`;
      } else if (kind === 'time') {
        const tail = timeCellTail(value);
        if (tail !== undefined) return `<c r="${ref}"${tail}`;
      }
      return inlineString(ref, value);
    }
    // Excel keeps 15 significant digits: a longer integer (a long64, a key) is text, or its last digits would be lost.
    if (typeof value === 'number') {
      return Number.isFinite(value) && !(Number.isInteger(value) && Math.abs(value) >= 1e15)
        ? `<c r="${ref}"><v>${value}</v></c>`
        : inlineString(ref, String(value));
    }
    if (typeof value === 'boolean') return `<c r="${ref}" t="b"><v>${value ? 1 : 0}</v></c>`;
    return inlineString(ref, typeof value === 'object' ? JSON.stringify(value) : String(value));
  };

  return {
    cell,
    inlineString,
    get truncated() {
      return truncated;
    },
  };
}
