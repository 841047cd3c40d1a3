/**
 * push-field's reading of file values (src/push/values.ts) on its own: the --excel-safe escape is
 * undone exactly (every value get-table --excel-safe can write comes back as it was), and what a
 * spreadsheet does to text is told apart from an edit.
 */
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import type { Attribute } from '../../src/rest/types.js';
import { fromFile, type FileValueContext } from '../../src/push/values.js';
import { csvEncoder } from '../../src/table/output/csv.js';

const text: Attribute = { name: 'Notiz', kind: 'storage', type: 'string' } as Attribute;
const number: Attribute = { name: 'Preis', kind: 'storage', type: 'number' } as Attribute;
const csv = (extra: Partial<FileValueContext> = {}): FileValueContext => ({ source: 'text', decimalComma: false, ...extra });

/** Every string of 0..5 characters over the characters that matter to the escape. */
function* strings(alphabet: string[], max: number): Generator<string> {
  yield '';
  let level = [''];
  for (let n = 1; n <= max; n++) {
    const next: string[] = [];
    for (const prefix of level) for (const c of alphabet) next.push(prefix + c);
    yield* next;
    level = next;
  }
}

describe('--excel-safe is exact both ways', () => {
  const alphabet = ["'", '=', '+', '-', '@', '\t', '\r', 'a'];

  it('every value comes back from its export: decode(encode(v)) = v', () => {
    for (const delimiter of [',', ';']) {
      const enc = csvEncoder({ delimiter, excelSafe: true });
      let n = 0;
      for (const value of strings(alphabet, 5)) {
        const cell = parse(enc.row(['k', value]), { delimiter, relax_quotes: true })[0][1] as string;
        const back = fromFile(text, cell, csv({ excelSafe: true, decimalComma: delimiter !== ',' })).value;
        if (back !== value) expect.fail(`${JSON.stringify(value)} was exported as ${JSON.stringify(cell)} and read back as ${JSON.stringify(back)}`);
        n++;
      }
      expect(n).toBe(37_449);
    }
  });

  it('every cell the export writes is written again from what it reads: encode(decode(c)) = c', () => {
    const enc = csvEncoder({ excelSafe: true });
    for (const value of strings(alphabet, 4)) {
      const cell = parse(enc.row(['k', value]), { relax_quotes: true })[0][1] as string;
      const again = parse(enc.row(['k', fromFile(text, cell, csv({ excelSafe: true })).value]), { relax_quotes: true })[0][1];
      expect(again).toBe(cell);
    }
  });

  it("without --excel-safe an escaped cell is refused where the server holds the text without the '", () => {
    const read = fromFile(text, "''-5 Rabatt", csv());
    expect(read.value).toBe("''-5 Rabatt");
    expect(read.check?.("'-5 Rabatt")).toMatch(/looks like get-table --excel-safe's escape of "'-5 Rabatt"; add --excel-safe/);
    expect(read.check?.('anders')).toBeUndefined();
  });
});

describe("a spreadsheet's rendering of text is not an edit", () => {
  const refusal = (file: string, server: unknown, ctx = csv()) => fromFile(text, file, ctx).check?.(server);

  it('the same number written differently, E-notation, error values, an evaluated formula, a cut cell', () => {
    expect(refusal('1067', '01067')).toMatch(/the same number written differently .*dropped its leading zeros.*format the column as Text/);
    expect(refusal('1.5', '1.50')).toMatch(/the same number written differently/);
    expect(refusal('1,5', '1.50')).toMatch(/the same number written differently/);
    expect(refusal('491234', '+491234')).toMatch(/the same number/);
    expect(refusal('1,23457E+16', '12345678901234567')).toMatch(/E-notation and lost its digits/);
    expect(refusal('1.2E3', 'alt')).toMatch(/E-notation/);
    for (const error of ['#WERT!', '#NAME?', '#VALUE!', '#DIV/0!', '#NV', '#N/A', '#BEZUG!', '#ÜBERLAUF!', '#spill!'])
      expect(refusal(error, 'alt'), error).toMatch(/a spreadsheet's error value/);
    expect(refusal('0', '=SUMME(A1)')).toMatch(/ran the server's text as a formula/);
    // Declared --excel-safe: the export escaped it, so no spreadsheet ran it; a different value is an edit.
    expect(refusal('neu', '=SUMME(A1)', csv({ excelSafe: true }))).toBeUndefined();
    const long = 'x'.repeat(40_000);
    expect(refusal(long.slice(0, 32_767), long)).toMatch(/the server's text of 40000 characters cut to Excel's 32767/);
    expect(refusal(long.slice(0, 32_766), long)).toBeUndefined();
  });

  it('edits stay edits: other numbers, other text, and JSON input is never second-guessed', () => {
    expect(refusal('1068', '01067')).toBeUndefined();
    // A spreadsheet drops zeros, it never adds them: putting leading zeros back is an edit.
    expect(refusal('01067', '1067')).toBeUndefined();
    expect(refusal('1.50', '1.5')).toBeUndefined();
    expect(refusal('neu', 'alt')).toBeUndefined();
    expect(refusal('=A1', 'alt')).toBeUndefined();
    expect(refusal('#1 Kunde', 'alt')).toBeUndefined();
    expect(fromFile(text, '1067', { source: 'json', decimalComma: false }).check).toBeUndefined();
  });

  it('a workbook: the = rule only for a formula cell; a formula without a result is an error', () => {
    const xlsx: FileValueContext = { source: 'xlsx', decimalComma: true };
    expect(fromFile(text, 'neu', xlsx).check?.('=SUMME(A1)')).toBeUndefined();
    expect(fromFile(text, { formula: 'SUMME(A1)', value: 0 }, xlsx).onlyIfUnchanged).toMatch(/number 0 where the field is text/);
    expect(fromFile(text, { formula: 'A1&""', value: '0' }, xlsx).check?.('=SUMME(A1)')).toMatch(/ran the server's text as a formula/);
    expect(() => fromFile(text, { formula: 'A1&"x"', value: undefined }, xlsx)).toThrow(/"=A1&\\"x\\"" is a formula the file holds no result for/);
  });
});

describe('grouped thousands in a decimal-comma file', () => {
  it('1.234 is ambiguous there when it changes the value, and plain elsewhere', () => {
    const de = csv({ decimalComma: true });
    const read = fromFile(number, '1.234', de);
    expect(read.value).toBe(1.234);
    expect(read.check?.(1234)).toMatch(/"1\.234" is ambiguous in a file with decimal commas/);
    expect(() => fromFile(number, '1.234,5', de)).toThrow(/ambiguous/);
    expect(() => fromFile(number, '-12.345.678', de)).not.toThrow();
    expect(fromFile(number, '-12.345.678', de).check?.(0)).toMatch(/ambiguous/);
    expect(fromFile(number, '1,5', de).value).toBe(1.5);
    expect(fromFile(number, '0.125', de).check).toBeUndefined();
    expect(fromFile(number, '1.5', de).check).toBeUndefined();
    expect(fromFile(number, '1.234', csv()).check).toBeUndefined();
  });
});
