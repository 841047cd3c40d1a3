/**
 * Values of a `--from` file, converted back into the 4D wire encoding exactly as `get-table` wrote
 * them (table/convert.ts) and as a spreadsheet program saves them again: dates `YYYY-MM-DD` (or
 * `DD.MM.YYYY` from German Excel, `D!M!YYYY` from --raw, serial numbers in a workbook), times
 * `HH:MM:SS` (or a fraction of a day), booleans true/false (WAHR/FALSCH), numbers with a decimal
 * point (or comma, in a `;` CSV or a workbook), an empty cell as no value.
 *
 * Nothing is coerced silently: a value that is not of the field's type, or whose digits the field
 * cannot hold exactly (an integer beyond 2^53, more decimals than a double keeps, a whole-number
 * field given 2.5, a 16-bit field given 70000), is an error for its row. A number or boolean
 * where the field is text (Excel turns a retyped `01067` into 1067) is accepted only when it
 * leaves the server's value as it is.
 */
import { BadDataError } from '../errors/index.js';
import type { Attribute } from '../rest/types.js';
import { isoToFourDDate } from '../table/convert.js';
import { typeOf } from './coerce.js';

export interface FileValueContext {
  /** Where the values come from: CSV text, typed JSON/NDJSON values, or workbook cells. */
  source: 'text' | 'json' | 'xlsx';
  /** `39,5` is 39.5 (a CSV whose delimiter is not a comma, or a workbook). */
  decimalComma: boolean;
  /** xlsx: serial dates count from 1904-01-01. */
  date1904?: boolean;
  /** The file was exported with --excel-safe: a `'` before = + - @ is the export's, not the data's. */
  excelSafe?: boolean;
  /** The value is the cached result of a workbook formula (the cell's text was turned into a formula). */
  formula?: boolean;
}

/** A workbook formula cell: its formula and its cached result (undefined: the file holds none). */
export interface FormulaCell {
  formula: string;
  value: unknown;
}

export const isFormulaCell = (v: unknown): v is FormulaCell =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as FormulaCell).formula === 'string' && Object.keys(v).length <= 2;

export interface FileValue {
  /** The value to send (wire encoding). */
  value: unknown;
  /** When set: the value is only accepted if it leaves the server's value unchanged; else this is the row's error. */
  onlyIfUnchanged?: string;
  /**
   * Called with the server's (wire) value when the file's value differs from it: a message refuses
   * the row (the difference is a spreadsheet's rendering or an escape, not an edit).
   */
  check?: (server: unknown) => string | undefined;
}

const DAY_MS = 86_400_000;
const INTEGER_RANGES: Record<string, [number, number]> = {
  word: [-32_768, 32_767],
  long: [-2_147_483_648, 2_147_483_647],
  integer: [-2_147_483_648, 2_147_483_647],
  byte: [-128, 255],
};
/** get-table --excel-safe's escape: one `'` before text that starts with = + - @ TAB CR or with `'`s and one of those (table/output/csv.ts). */
const EXCEL_SAFE_ESCAPED = /^'+[=+\-@\t\r]/;
/** Excel's cell text limit: longer text is cut by get-table --xlsx and by Excel itself. */
export const EXCEL_MAX_CELL_TEXT = 32_767;
/** Excel's error values, in English and German (a formula that failed, saved as its result). */
const EXCEL_ERRORS = new Set([
  '#NULL!',
  '#DIV/0!',
  '#VALUE!',
  '#REF!',
  '#NAME?',
  '#NUM!',
  '#N/A',
  '#GETTING_DATA',
  '#SPILL!',
  '#CALC!',
  '#FIELD!',
  '#BLOCKED!',
  '#CONNECT!',
  '#BUSY!',
  '#UNKNOWN!',
  '#WERT!',
  '#BEZUG!',
  '#ZAHL!',
  '#NV',
  '#ÜBERLAUF!',
  '#BERECHNEN!',
  '#FELD!',
  '#BLOCKIERT!',
  '#VERBINDEN!',
  '#UNBEKANNT!',
  '#AUSSTEHEND!',
]);
/** A plain decimal numeral, with a decimal point or comma (what a spreadsheet reads as a number). */
const NUMERAL = /^[+-]?\d+(?:[.,]\d+)?$/;
/** A number in E-notation (`1,23E+16`, `1.23457E+16`): how Excel shows a long digit string. */
const E_NOTATION = /^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$/;
/** German thousands grouping (`1.234`, `12.345.678`, `1.234,5`): read with a decimal point it is another number. */
const GROUPED_THOUSANDS = /^[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?$/;
const KEEP_TEXT =
  'format the column as Text in the spreadsheet before opening the file (Excel: Data > From Text/CSV, column type Text), or export to .xlsx, which keeps text as text';

function shown(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
}

function bad(attr: Attribute, value: unknown, why: string, hint?: string): BadDataError {
  return new BadDataError(`invalid value for ${attr.name} (${attr.type}): ${shown(value)} ${why}`, hint ? { hint } : undefined);
}

/** sign, significant digits and exponent of a decimal numeral; undefined when it is none. */
function decimalParts(text: string): { neg: boolean; digits: string; exp: number } | undefined {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m || `${m[2]}${m[3] ?? ''}` === '') return undefined;
  const fraction = m[3] ?? '';
  let digits = `${m[2]}${fraction}`.replace(/^0+/, '');
  let exp = Number(m[4] ?? 0) - fraction.length;
  if (digits === '') return { neg: false, digits: '0', exp: 0 };
  const zeros = /0*$/.exec(digits)![0].length;
  digits = digits.slice(0, digits.length - zeros);
  exp += zeros;
  return { neg: m[1] === '-', digits, exp };
}

/** Does the double `n` carry exactly the decimal `text` (same digits once trailing zeros go)? */
export function exactDecimal(text: string, n: number): boolean {
  const a = decimalParts(text);
  const b = decimalParts(String(n).replace('e+', 'e'));
  return a !== undefined && b !== undefined && a.neg === b.neg && a.digits === b.digits && a.exp === b.exp;
}

/** A number field's value from text: decimal point, or a decimal comma where allowed; exactly. */
function numberFromText(attr: Attribute, raw: string, ctx: FileValueContext): FileValue {
  const text = raw.trim();
  if (text === '') return { value: null };
  if (ctx.decimalComma && GROUPED_THOUSANDS.test(text)) {
    // `1.234` in a decimal-comma file: 1.234 as written by get-table, or 1234 as German Excel groups it.
    const asPoint = text.includes(',') ? undefined : Number(text);
    const message = `invalid value for ${attr.name} (${attr.type}): ${shown(raw)} is ambiguous in a file with decimal commas (German Excel writes 1234 as 1.234); write it without thousands separators`;
    if (asPoint === undefined) throw new BadDataError(message);
    return { value: checkNumber(attr, asPoint, raw), check: () => message };
  }
  let numeral = text;
  if (/^[+-]?\d+,\d+$/.test(text)) {
    if (!ctx.decimalComma)
      throw bad(
        attr,
        raw,
        'is not a number',
        'write decimals with a point (39.5); a comma is read as a decimal comma only in a CSV with ; or TAB, or a workbook',
      );
    numeral = text.replace(',', '.');
  } else if (text.includes(',')) {
    throw bad(attr, raw, 'is not a number (a thousands separator?)', 'format the column without thousands separators');
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(numeral)) throw bad(attr, raw, 'is not a number');
  const n = Number(numeral);
  if (!Number.isFinite(n)) throw bad(attr, raw, 'is not a finite number');
  if (!exactDecimal(numeral, n)) throw bad(attr, raw, `cannot be stored exactly (a ${attr.type} field would hold ${n})`);
  return { value: checkNumber(attr, n, raw) };
}

function checkNumber(attr: Attribute, n: number, shownAs: unknown): number {
  const range = INTEGER_RANGES[attr.type];
  if (range || attr.type === 'long64') {
    if (!Number.isInteger(n)) throw bad(attr, shownAs, 'is not a whole number');
    if (!Number.isSafeInteger(n)) throw bad(attr, shownAs, 'is beyond 2^53 and cannot be carried exactly');
    if (range && (n < range[0] || n > range[1])) throw bad(attr, shownAs, `is out of range for a ${attr.type} field (${range[0]}..${range[1]})`);
  } else if (Number.isInteger(n) && !Number.isSafeInteger(n)) {
    throw bad(attr, shownAs, 'is beyond 2^53 and cannot be carried exactly');
  }
  return n;
}

function boolFromText(attr: Attribute, raw: string): boolean | null {
  const v = raw.trim().toLowerCase();
  if (v === '') return null;
  if (['true', 'wahr', '1', 'yes', 'y', 'ja'].includes(v)) return true;
  if (['false', 'falsch', '0', 'no', 'n', 'nein'].includes(v)) return false;
  throw bad(attr, raw, 'is not a boolean (true/false)');
}

function validDate(year: number, month: number, day: number): boolean {
  const d = new Date(Date.UTC(year, month - 1, day));
  return year >= 1 && d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

function dateFromText(attr: Attribute, raw: string): string {
  const text = raw.trim();
  if (text === '') return '0!0!0'; // no date: what export writes for null and 0!0!0 alike
  let m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?Z?)?$/.exec(text);
  let ymd: [number, number, number] | undefined = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
  if (!ymd) {
    m = /^(\d{1,2})\.(\d{1,2})\.(\d{4})$/.exec(text);
    if (m) ymd = [Number(m[3]), Number(m[2]), Number(m[1])];
  }
  if (!ymd) {
    m = /^(\d{1,2})!(\d{1,2})!(\d{4})$/.exec(text);
    if (m) {
      if (text === '0!0!0') return '0!0!0';
      ymd = [Number(m[3]), Number(m[2]), Number(m[1])];
    }
  }
  if (!ymd) {
    if (/^\d{1,4}[-./]\d{1,2}[-./]\d{1,4}/.test(text) && /[ T]\d{1,2}:\d{2}/.test(text))
      throw bad(attr, raw, 'has a time of day; a date field keeps only the date');
    throw bad(attr, raw, 'is not a date (YYYY-MM-DD)', 'write dates as 2025-01-27 (or 27.01.2025)');
  }
  if (!validDate(...ymd)) throw bad(attr, raw, 'is not a date (YYYY-MM-DD)');
  return isoToFourDDate(`${pad(ymd[0], 4)}-${pad(ymd[1])}-${pad(ymd[2])}`);
}

function timeFromText(attr: Attribute, raw: string): number | null {
  const text = raw.trim();
  if (text === '') return null;
  const m = /^(-?)(\d{1,3}):(\d{2})(?::(\d{2}))?$/.exec(text);
  if (!m || Number(m[3]) > 59 || Number(m[4] ?? 0) > 59) throw bad(attr, raw, 'is not a time (HH:MM:SS)');
  const ms = ((Number(m[2]) * 60 + Number(m[3])) * 60 + Number(m[4] ?? 0)) * 1000;
  return m[1] === '-' ? -ms : ms;
}

function objectFromText(attr: Attribute, raw: string): unknown {
  if (raw.trim() === '') return null;
  try {
    const parsed = JSON.parse(raw);
    if (parsed !== null && typeof parsed === 'object') return parsed;
  } catch {}
  throw bad(attr, raw, 'is not a JSON object');
}

/**
 * Why a text value that differs from the server's (`server`, wire value) is a spreadsheet's rendering
 * of it rather than an edit; undefined when it may be an edit.
 */
function spreadsheetRendering(attr: Attribute, file: string, server: unknown, ctx: FileValueContext): string | undefined {
  const before = typeof server === 'string' ? server : server === null || server === undefined ? '' : String(server);
  const field = `${attr.name}: the file has ${shown(file)} where the server has ${shown(before)}`;
  const trimmed = file.trim();
  if (EXCEL_ERRORS.has(trimmed.toUpperCase())) return `${field}, which is a spreadsheet's error value (a formula failed); not written`;
  if (file.length === EXCEL_MAX_CELL_TEXT && before.length > EXCEL_MAX_CELL_TEXT && before.startsWith(file))
    return `${field.replace(/ where the server has .*/, '')}, the server's text of ${before.length} characters cut to Excel's ${EXCEL_MAX_CELL_TEXT}; not written (edit this text outside a spreadsheet, e.g. with get-table --ndjson)`;
  if (E_NOTATION.test(trimmed)) return `${field}: a spreadsheet showed a long number in E-notation and lost its digits; not written: ${KEEP_TEXT}`;
  // A spreadsheet writes a number as it shows it: no leading zeros, no + sign, no trailing zeros in the
  // fraction. The same number with more digits in the file (01067 where the server has 1067) is an edit.
  const asNumber = trimmed.replace(',', '.');
  const rendered = NUMERAL.test(trimmed) && String(Number(asNumber)) === asNumber.replace(/^-0$/, '0');
  if (rendered && NUMERAL.test(before.trim()) && Number(asNumber) === Number(before.trim().replace(',', '.')))
    return `${field}: the same number written differently (a spreadsheet read the text as a number${/^[+-]?0\d/.test(before.trim()) ? ' and dropped its leading zeros' : ''}); not written: ${KEEP_TEXT}`;
  if (before.startsWith('=') && (ctx.formula || (ctx.source === 'text' && !ctx.excelSafe)))
    return `${field}: a spreadsheet ran the server's text as a formula and saved its result; not written: ${KEEP_TEXT}${ctx.source === 'text' ? ', or export with --excel-safe and push with --excel-safe' : ''}`;
  return undefined;
}

/** A text field's value from text; an --excel-safe escape is undone or, when not declared, caught. */
function stringFromText(attr: Attribute, raw: string, ctx: FileValueContext): FileValue {
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(raw)) throw bad(attr, raw, 'contains control characters');
  const spreadsheet = ctx.source === 'text' || ctx.source === 'xlsx';
  if (EXCEL_SAFE_ESCAPED.test(raw)) {
    // get-table --excel-safe put exactly one ' before such text (also before text that already started with 's): remove one.
    if (ctx.excelSafe) {
      const value = raw.slice(1);
      return spreadsheet ? { value, check: (server) => spreadsheetRendering(attr, value, server, ctx) } : { value };
    }
    return {
      value: raw,
      check: (server) =>
        server === raw.slice(1)
          ? `${attr.name}: ${shown(raw)} looks like get-table --excel-safe's escape of ${shown(raw.slice(1))}; add --excel-safe to read it back`
          : spreadsheet
            ? spreadsheetRendering(attr, raw, server, ctx)
            : undefined,
    };
  }
  return spreadsheet ? { value: raw, check: (server) => spreadsheetRendering(attr, raw, server, ctx) } : { value: raw };
}

function fromText(attr: Attribute, raw: string, ctx: FileValueContext): FileValue {
  switch (typeOf(attr)) {
    case 'number':
      return numberFromText(attr, raw, ctx);
    case 'bool':
      return { value: boolFromText(attr, raw) };
    case 'date':
      return { value: dateFromText(attr, raw) };
    case 'time':
      return { value: timeFromText(attr, raw) };
    case 'json':
      return { value: objectFromText(attr, raw) };
    default:
      return stringFromText(attr, raw, ctx);
  }
}

/** Excel's serial day → `D!M!YYYY`; a serial with a time of day, or before 1900-03-01, is refused. */
function dateFromSerial(attr: Attribute, serial: number, date1904: boolean): string {
  if (!Number.isInteger(serial)) throw bad(attr, serial, 'is a date with a time of day; a date field keeps only the date');
  if (!date1904 && serial < 61) throw bad(attr, serial, 'is a date before 1900-03-01, which Excel cannot show reliably; write it as text (YYYY-MM-DD)');
  const ms = (serial - 25_569 + (date1904 ? 1462 : 0)) * DAY_MS;
  const d = new Date(ms);
  return `${d.getUTCDate()}!${d.getUTCMonth() + 1}!${d.getUTCFullYear()}`;
}

/** A fraction of a day (Excel's time) → ms, to the second; fractions of a second are refused. */
function timeFromSerial(attr: Attribute, days: number): number {
  const ms = days * DAY_MS;
  const seconds = Math.round(ms / 1000);
  if (Math.abs(ms - seconds * 1000) > 1) throw bad(attr, days, 'has fractions of a second, which a time field does not keep');
  return seconds * 1000;
}

/**
 * The value to send for one cell of the file. Throws BadDataError (the row's error) for a value
 * that is not of the field's type or cannot be held exactly.
 */
export function fromFile(attr: Attribute, input: unknown, ctx: FileValueContext): FileValue {
  const type = typeOf(attr);
  if (input === undefined || input === null) return { value: type === 'date' ? '0!0!0' : null };
  if (ctx.source === 'xlsx' && isFormulaCell(input)) {
    if (input.value === undefined)
      throw bad(
        attr,
        `=${input.formula}`,
        'is a formula the file holds no result for (saved by a program that does not calculate, e.g. openpyxl)',
        'open and save the workbook in Excel, or type the value instead of a formula',
      );
    return fromFile(attr, input.value, { ...ctx, formula: true });
  }
  if (typeof input === 'object' && !Array.isArray(input) && ctx.source === 'xlsx' && 'error' in (input as object))
    throw bad(attr, (input as { error: string }).error, 'is an Excel error value');
  if (typeof input === 'string') return fromText(attr, input, ctx);
  if (typeof input === 'number') {
    switch (type) {
      case 'number':
        if (!Number.isFinite(input)) throw bad(attr, input, 'is not a finite number');
        return { value: checkNumber(attr, input, input) };
      case 'date':
        if (ctx.source === 'xlsx') return { value: dateFromSerial(attr, input, ctx.date1904 === true) };
        throw bad(attr, input, 'is a number, not a date (YYYY-MM-DD)');
      case 'time':
        if (ctx.source === 'xlsx') return { value: timeFromSerial(attr, input) };
        if (Number.isInteger(input)) return { value: input }; // --raw: milliseconds
        throw bad(attr, input, 'is not a time (HH:MM:SS)');
      case 'string': {
        const text = String(input);
        return {
          value: text,
          onlyIfUnchanged: `invalid value for ${attr.name} (${attr.type}): the file holds the number ${text} where the field is text${ctx.source === 'xlsx' ? '; format the column as Text in Excel and type the value again' : '; write it as a string'}`,
        };
      }
      default:
        throw bad(attr, input, `is a number, not a ${type === 'bool' ? 'boolean' : type === 'json' ? 'JSON object' : type}`);
    }
  }
  if (typeof input === 'boolean') {
    if (type === 'bool') return { value: input };
    if (type === 'string')
      return {
        value: String(input),
        onlyIfUnchanged: `invalid value for ${attr.name} (${attr.type}): the file holds the boolean ${input} where the field is text`,
      };
    throw bad(attr, input, `is a boolean, not a ${type === 'json' ? 'JSON object' : type}`);
  }
  if (typeof input === 'object') {
    if (type === 'json') return { value: input };
    throw bad(attr, input, `is a JSON ${Array.isArray(input) ? 'array' : 'object'}, not a ${type}`);
  }
  throw bad(attr, input, 'cannot be read');
}
