/**
 * push-field's streaming xlsx reader (src/push/xlsx.ts) on real workbooks: written by our own
 * exporter (inline strings, `_xHHHH_` escapes, continuation sheets), by openpyxl (formulas without
 * results, hidden sheets, the 1904 date system, duplicate headers), and parts written as Excel
 * writes them (shared strings with rich-text and phonetic runs, cells without references or with
 * gaps, shared formulas, error and boolean cells) where openpyxl writes otherwise.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { openXlsx, type XlsxRow } from '../../src/push/xlsx.js';
import { xlsxWriter } from '../../src/table/output/xlsx.js';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { openpyxlPython } from '../helpers/services.mjs';

const python = openpyxlPython();
afterAll(cleanupTempDirs);

async function exported(columns: string[], rows: unknown[][], options: Partial<Parameters<typeof xlsxWriter>[2]> = {}): Promise<string> {
  const file = join(tempDir(), 'export.xlsx');
  const out = createWriteStream(file);
  const writer = xlsxWriter(columns, out, { sheetName: 'Artikel', ...options });
  await writer.begin();
  await writer.write(rows);
  await writer.end();
  out.end();
  await finished(out);
  return file;
}

async function read(file: string, rowsPerSheet?: number): Promise<{ header: string[]; date1904: boolean; rows: XlsxRow[] }> {
  const book = await openXlsx(file, rowsPerSheet === undefined ? {} : { rowsPerSheet });
  try {
    const rows: XlsxRow[] = [];
    for await (const row of book.rows) rows.push(row);
    return { header: book.header, date1904: book.date1904, rows };
  } finally {
    book.close();
  }
}

/** A workbook from its parts, zipped by yazl as a spreadsheet program would. */
async function handMade(sheets: Array<{ name: string; xml: string; hidden?: boolean }>, shared?: string, workbookPr = ''): Promise<string> {
  const yazl = await import('yazl');
  const file = join(tempDir(), 'hand.xlsx');
  const zip = new yazl.ZipFile();
  const NS = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
  const R = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
  const add = (name: string, xml: string) => zip.addBuffer(Buffer.from(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n${xml}`, 'utf8'), name);
  add(
    'xl/workbook.xml',
    `<workbook xmlns="${NS}" xmlns:r="${R}">${workbookPr}<sheets>${sheets
      .map((s, i) => `<sheet name="${s.name}" sheetId="${i + 1}"${s.hidden ? ' state="hidden"' : ''} r:id="rId${i + 1}"/>`)
      .join('')}</sheets></workbook>`,
  );
  add(
    'xl/_rels/workbook.xml.rels',
    `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">${sheets
      .map((_, i) => `<Relationship Id="rId${i + 1}" Type="${R}/worksheet" Target="worksheets/sheet${i + 1}.xml"/>`)
      .join('')}</Relationships>`,
  );
  for (const [i, s] of sheets.entries()) add(`xl/worksheets/sheet${i + 1}.xml`, `<worksheet xmlns="${NS}"><sheetData>${s.xml}</sheetData></worksheet>`);
  if (shared !== undefined) add('xl/sharedStrings.xml', `<sst xmlns="${NS}">${shared}</sst>`);
  zip.end();
  const out = createWriteStream(file);
  zip.outputStream.pipe(out);
  await finished(out);
  return file;
}

describe('workbooks written by our exporter', () => {
  it('inline strings with _xHHHH_ escapes, CR, control characters and multi-byte text split across zip chunks come back exactly', async () => {
    const texts = [
      'a_x0041_b', // a literal escape-lookalike: written _x005F_x0041_
      'ctl\u0001x\u001f',
      'cr\r\nlf',
      ' spaced ',
      '&lt; <b> "q" \'a\'',
      'ü€😀'.repeat(8000), // 32,000 UTF-16 units, 72 KB of UTF-8: many inflate chunks cut a character
      '😀'.repeat(16_383),
    ];
    const rows = texts.map((t, i) => [i + 1, t, i % 2 === 0, 39.5 + i]);
    const file = await exported(['ID', 'Text', 'Aktiv', 'Preis'], rows);
    const back = await read(file);
    expect(back.header).toEqual(['ID', 'Text', 'Aktiv', 'Preis']);
    expect(back.rows.map((r) => r.cells)).toEqual(rows);
    expect(back.rows.map((r) => [r.sheet, r.row])).toEqual(texts.map((_, i) => ['Artikel', i + 2]));
  });

  it("continuation sheets ('Artikel (2)' after a full sheet) are read on; with Excel's limit the same book is refused", async () => {
    const rows = Array.from({ length: 7 }, (_, i) => [i + 1, `Teil ${i + 1}`]);
    const file = await exported(['ID', 'Name'], rows, { maxRowsPerSheet: 3 });
    const back = await read(file, 3);
    expect(back.rows.map((r) => [r.sheet, r.row, r.cells[0]])).toEqual([
      ['Artikel', 2, 1],
      ['Artikel', 3, 2],
      ['Artikel (2)', 2, 3],
      ['Artikel (2)', 3, 4],
      ['Artikel (3)', 2, 5],
      ['Artikel (3)', 3, 6],
      ['Artikel (4)', 2, 7],
    ]);
    await expect(read(file)).rejects.toThrow(/sheet 'Artikel \(2\)' has the columns of 'Artikel' but is not its continuation/);
  });

  it('a long table name: the continuation is named as the exporter cuts it', async () => {
    const name = 'Artikel_mit_einem_sehr_langen_Namen_X';
    const file = await exported(['ID'], [[1], [2], [3]], { sheetName: name, maxRowsPerSheet: 2 });
    const back = await read(file, 2);
    expect(back.rows.map((r) => r.sheet)).toEqual(['Artikel_mit_einem_sehr_langen_N', 'Artikel_mit_einem_sehr_lang (2)', 'Artikel_mit_einem_sehr_lang (3)']);
  });
});

describe('parts as Excel writes them', () => {
  it('shared strings (rich text, phonetic runs, _x000D_), cells without references and with gaps, booleans, errors, str and shared formulas, the 1904 system', async () => {
    const shared = [
      '<si><t>ID</t></si>',
      '<si><t>Name</t></si>',
      '<si><t>Notiz</t></si>',
      '<si><r><rPr><b/></rPr><t>Eng</t></r><r><t xml:space="preserve">el </t></r><rPh sb="0" eb="1"><t>エ</t></rPh></si>',
      '<si><t>Zeile 1_x000D_\nZeile 2 _x005F_x0041_</t></si>',
    ].join('');
    const sheet = [
      '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c><c r="D1" t="inlineStr"><is><t>Aktiv</t></is></c></row>',
      // No r on the cells: they follow one another.
      '<row r="2"><c><v>1</v></c><c t="s"><v>3</v></c><c t="s"><v>4</v></c><c t="b"><v>1</v></c></row>',
      // Gaps: B3 and C3 are missing; the row number jumps.
      '<row r="5"><c r="A5"><v>2</v></c><c r="D5" t="b"><v>0</v></c></row>',
      '<row r="6"><c r="A6"><v>3</v></c><c r="B6" t="e"><v>#NAME?</v></c><c r="C6" t="str"><f>B6&amp;""</f><v>x</v></c></row>',
      '<row r="7"><c r="A7"><v>4</v></c><c r="B7"><f t="shared" ref="B7:B8" si="0">A7*2</f><v>8</v></c><c r="C7"><f t="shared" si="0"/><v></v></c></row>',
      '<row r="8"/>',
    ].join('');
    const file = await handMade(
      [
        { name: 'Versteckt', xml: '<row r="1"><c r="A1" t="inlineStr"><is><t>nicht</t></is></c></row>', hidden: true },
        { name: 'Teile', xml: sheet },
      ],
      shared,
      '<workbookPr date1904="1"/>',
    );
    const back = await read(file);
    expect(back.date1904).toBe(true);
    expect(back.header).toEqual(['ID', 'Name', 'Notiz', 'Aktiv']);
    expect(back.rows.map((r) => [r.sheet, r.row, r.cells])).toEqual([
      ['Teile', 2, [1, 'Engel ', 'Zeile 1\r\nZeile 2 _x0041_', true]],
      ['Teile', 5, [2, undefined, undefined, false]],
      ['Teile', 6, [3, { error: '#NAME?' }, { formula: 'B6&""', value: 'x' }]],
      ['Teile', 7, [4, { formula: 'A7*2', value: 8 }, { formula: '', value: undefined }]],
    ]);
  });

  it('a header that names a column twice is refused; a shared string that does not exist is an unreadable workbook', async () => {
    const twice = await handMade([
      {
        name: 'Teile',
        xml: '<row r="1"><c r="A1" t="inlineStr"><is><t>ID</t></is></c><c r="B1" t="inlineStr"><is><t>Name</t></is></c><c r="C1" t="inlineStr"><is><t>Name</t></is></c></row>',
      },
    ]);
    await expect(read(twice)).rejects.toThrow(/the header of sheet 'Teile' names the column 'Name' twice/);
    const missing = await handMade([{ name: 'Teile', xml: '<row r="1"><c r="A1" t="s"><v>7</v></c></row>' }], '<si><t>ID</t></si>');
    await expect(read(missing)).rejects.toThrow(/names shared string 7, which does not exist/);
  });
});

describe.skipIf(!python)('workbooks written by openpyxl', () => {
  it('a hidden sheet first, the 1904 date system, a formula without a result, a copied sheet that is refused', async () => {
    const file = join(tempDir(), 'openpyxl.xlsx');
    execFileSync(python!, [
      '-c',
      `
import sys, datetime, openpyxl
wb = openpyxl.Workbook()
hidden = wb.active
hidden.title = 'Notizen'
hidden.append(['nicht', 'lesen'])
hidden.sheet_state = 'hidden'
ws = wb.create_sheet('Teile')
ws.append(['ID', 'Datum', 'Formel', 'Text'])
ws.append([1, datetime.datetime(2025, 1, 27), '=A2*2', 'Ärger & <Co>'])
other = wb.create_sheet('Summen')
other.append(['Summe'])
wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
wb.save(sys.argv[1])
copy = wb.copy_worksheet(ws)
copy.title = 'Teile (2)'
wb.save(sys.argv[1].replace('.xlsx', '-copy.xlsx'))
`,
      file,
    ]);
    const back = await read(file);
    expect(back.date1904).toBe(true);
    expect(back.header).toEqual(['ID', 'Datum', 'Formel', 'Text']);
    // 2025-01-27 is day 45,684 of the 1900 system and 1,462 days less in the 1904 one.
    expect(back.rows.map((r) => [r.sheet, r.cells])).toEqual([['Teile', [1, 45_684 - 1462, { formula: 'A2*2', value: undefined }, 'Ärger & <Co>']]]);
    await expect(read(file.replace('.xlsx', '-copy.xlsx'))).rejects.toThrow(/sheet 'Teile \(2\)' has the columns of 'Teile' but is not its continuation/);
  });
});
