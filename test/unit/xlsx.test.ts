/** The xlsx writer on its own: sheets that overflow, names Excel accepts, text XML cannot hold; read back with openpyxl. */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { columnLetters, sheetName, xlsxWriter } from '../../src/table/output/xlsx.js';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { openpyxlPython } from '../helpers/services.mjs';
import { readXlsx } from '../helpers/xlsx.js';

const python = openpyxlPython();
afterAll(cleanupTempDirs);

async function workbook(columns: string[], pages: unknown[][][], options: Partial<Parameters<typeof xlsxWriter>[2]> = {}): Promise<string> {
  const file = join(tempDir(), 'book.xlsx');
  const out = createWriteStream(file);
  const writer = xlsxWriter(columns, out, { sheetName: 'Artikel', ...options });
  await writer.begin();
  for (const page of pages) await writer.write(page);
  await writer.end();
  out.end();
  await finished(out);
  return file;
}

describe('names', () => {
  it('column letters and sheet names', () => {
    expect([0, 25, 26, 51, 52, 701, 702].map(columnLetters)).toEqual(['A', 'Z', 'AA', 'AZ', 'BA', 'ZZ', 'AAA']);
    expect(sheetName('Artikel')).toBe('Artikel');
    expect(sheetName('a/b:c*d?[e]')).toBe('a_b_c_d__e_');
    expect(sheetName('x'.repeat(40), ' (2)')).toBe(`${'x'.repeat(27)} (2)`);
    expect(sheetName("'")).toBe('Sheet');
  });
});

describe.skipIf(!python)('read back with openpyxl', () => {
  it('past the rows of a sheet the rows go on on the next sheet, each with the header', async () => {
    const rows = Array.from({ length: 11 }, (_, i) => [i + 1, `r${i + 1}`]);
    const file = await workbook(['ID', 'Name'], [rows.slice(0, 7), rows.slice(7)], { maxRowsPerSheet: 5 });
    const sheets = await readXlsx(python!, file);
    expect(sheets.map((s) => s.title)).toEqual(['Artikel', 'Artikel (2)', 'Artikel (3)']);
    expect(sheets.map((s) => s.rows.length)).toEqual([5, 5, 4]);
    for (const s of sheets) {
      expect(s.rows[0]).toEqual(['ID', 'Name']);
      expect(s.freeze).toBe('A2');
      expect(s.autoFilter).toBe(`A1:B${s.rows.length}`);
    }
    expect(sheets.flatMap((s) => s.rows.slice(1))).toEqual(rows);
  });

  it('text XML cannot carry, markup, long text, durations, early dates and an empty table', async () => {
    const long = 'x'.repeat(40_000);
    const warnings: string[] = [];
    const file = await workbook(
      ['T', 'D', 'Z'],
      [
        [
          ['a\u0001b', '1899-12-31', '25:00:00'],
          ['<b>&amp;</b> "q"', '2025-02-28', '-01:00:00'],
          ['  spaced  ', 'kein Datum', '00:00:01'],
          ['Zeile 1\r\nZeile 2\rEnde', '2025-13-45', '1:2:3'],
          [long, null, null],
          ['leap', '2024-02-29', null],
          ['no leap', '2100-02-29', null],
          ['first', '1900-03-01', null],
          ['year 50', '0050-01-01', null],
        ],
      ],
      { kinds: ['auto', 'date', 'time'], warn: (m) => warnings.push(m) },
    );
    const [sheet] = await readXlsx(python!, file);
    expect(sheet!.rows.slice(1)).toEqual([
      // Excel decodes the ST_Xstring escape back to U+0001; openpyxl shows it as written.
      ['a_x0001_b', '1899-12-31', { time: '25:00:00' }],
      ['<b>&amp;</b> "q"', { date: '2025-02-28' }, '-01:00:00'],
      ['  spaced  ', 'kein Datum', { time: '00:00:01' }],
      ['Zeile 1\r\nZeile 2\rEnde', '2025-13-45', '1:2:3'],
      ['x'.repeat(32_767), null, null],
      ['leap', { date: '2024-02-29' }, null],
      ['no leap', '2100-02-29', null],
      ['first', { date: '1900-03-01' }, null],
      ['year 50', '0050-01-01', null],
    ]);
    expect(warnings).toEqual([expect.stringMatching(/^1 cell\(s\) longer than Excel's 32767 characters/)]);

    const empty = await workbook(['ID', 'Name'], []);
    const [none] = await readXlsx(python!, empty);
    expect(none!.rows).toEqual([['ID', 'Name']]);
  });

  it('integers of 16 digits and more are text (Excel keeps 15 significant digits), shorter ones numbers', async () => {
    const file = await workbook(['N'], [[[1234567890123456], [-9007199254740991], [999999999999999], [1.5]]]);
    const [sheet] = await readXlsx(python!, file);
    expect(sheet!.rows.slice(1).map((r) => r[0])).toEqual(['1234567890123456', '-9007199254740991', 999999999999999, 1.5]);
  });
});
