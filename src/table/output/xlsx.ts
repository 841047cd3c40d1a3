/**
 * `--xlsx`: an Excel workbook (Office Open XML SpreadsheetML), streamed.
 *
 * The sheet XML is generated here page by page and zipped as it goes (../streams/zip.ts: native
 * zlib, one entry per sheet, data descriptors, ZIP64 when needed), with backpressure all the way to
 * the output: memory stays flat however many rows. Strings are written inline, never into a shared
 * string table that would grow with the table. (exceljs's streaming writer was measured first:
 * its memory grew with the row count and it took more than twice as long as CSV.)
 *
 * The rows come one of two ways, byte for byte the same: `write()` of converted values, the
 * reference (cells by ./excel.ts), or the export's page encoder (`encoder()`, ./transcode.ts
 * xlsxTranscoder), which writes the sheet XML straight from the scanned page bytes.
 *
 * Cells are typed from the catalog: numbers as numbers, dates as Excel dates, times as times of
 * day, booleans as booleans, objects as JSON text, text as text (so `0012` stays `0012`), null and
 * `0!0!0` as empty cells (./excel.ts). The header row is bold and frozen, with an autofilter over the rows.
 *
 * Excel holds at most 1,048,576 rows per sheet: further rows go on on a second sheet
 * (`Artikel (2)`, with the same header), and so on.
 */
import type { Writable } from 'node:stream';
import { ZipWriter, type ZipEntryWriter } from '../../streams/zip.js';
import { cellEncoder, columnLetters, EXCEL_MAX_CELL_TEXT, STYLE, xmlText, type CellKind } from './excel.js';
import { ByteSink, rowTranscoder, xlsxTranscoder, type TranscodeColumn } from './transcode.js';
import type { EncodedRows, PageEncoder, RowWriter } from './writer.js';

export { columnLetters, type CellKind } from './excel.js';

export interface XlsxOptions {
  /** The sheet name (the table); cut to Excel's 31 characters without the characters Excel forbids. */
  sheetName: string;
  kinds?: CellKind[];
  header?: boolean;
  /** Rows per sheet including the header (Excel's limit unless a test asks for fewer). */
  maxRowsPerSheet?: number;
  /** Told at the end about lossy cells (text cut to Excel's 32,767 characters). */
  warn?: (message: string) => void;
}

export const EXCEL_MAX_ROWS = 1_048_576;

const NS_MAIN = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
const NS_REL = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
/** zlib level for the sheets: measured at 200,000 rows, 3 is as fast as 1 and 7% smaller; 6 is 15% slower for 12%. */
const DEFLATE_LEVEL = 3;
const XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n';

const STYLES_XML = `${XML_HEAD}<styleSheet xmlns="${NS_MAIN}">\
<numFmts count="1"><numFmt numFmtId="164" formatCode="hh:mm:ss"/></numFmts>\
<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font><font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>\
<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>\
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>\
<cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>\
<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>\
<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="46" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>\
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>`;

/** Excel sheet names: at most 31 characters, none of \ / ? * [ ] :, no leading or trailing quote, not empty. */
export function sheetName(name: string, suffix = ''): string {
  const clean = name.replace(/[\\/?*[\]:]/g, '_').replace(/^'+|'+$/g, '') || 'Sheet';
  return `${[...clean].slice(0, 31 - suffix.length).join('')}${suffix}`;
}

interface Part {
  name: string;
  state: { rows: number };
}

/** Encoded rows of a sheet, with where in them the sheet is full and the next one starts. */
interface SheetRows extends EncodedRows {
  /** Offsets into `bytes` at which a new sheet starts. */
  breaks: number[];
  /** The row number (within its sheet) of the last row. */
  lastRow: number;
}

/** Rows of the first page measured for the column widths. */
const MEASURED_ROWS = 500;

export function xlsxWriter(columns: string[], out: Writable, options: XlsxOptions): RowWriter {
  const kinds = columns.map((_, i) => options.kinds?.[i] ?? 'auto');
  const letters = columns.map((_, i) => columnLetters(i));
  const header = options.header !== false;
  const headerRows = header ? 1 : 0;
  const perSheet = (options.maxRowsPerSheet ?? EXCEL_MAX_ROWS) - headerRows;
  if (perSheet < 1) throw new RangeError('maxRowsPerSheet leaves no room for rows');
  const lastColumn = letters[letters.length - 1] ?? 'A';
  const cells = cellEncoder();

  /** The reference: a row of converted values as sheet XML. */
  const rowXml = (row: readonly unknown[], rowNumber: number): string => {
    let xml = `<row r="${rowNumber}">`;
    for (let i = 0; i < row.length; i++) xml += cells.cell(`${letters[i]}${rowNumber}`, row[i], kinds[i]!);
    return `${xml}</row>`;
  };

  let zip: ZipWriter | undefined;
  let sheet: ZipEntryWriter | undefined;
  const sheets: Part[] = [];
  let rowNumber = 0;
  let written = 0;
  let widths: number[] | undefined;
  /** The encoder's first page's rows, measured for the widths. */
  let firstRows: unknown[][] | undefined;
  let failed: Error | undefined;
  /** Rejects when the output fails (a closed pipe, a full disk), so a waiting write never hangs. */
  let outputFailed: Promise<never> = new Promise(() => undefined);

  /** Into the current sheet; `done` once zlib no longer needs the bytes. */
  const send = async (chunk: string | Buffer, done?: () => void): Promise<void> => {
    if (failed) throw failed;
    await Promise.race([sheet!.write(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk, done), outputFailed]);
  };
  const race = async (step: Promise<void>): Promise<void> => {
    if (failed) throw failed;
    await Promise.race([step, outputFailed]);
  };

  /** Widths in characters from the header and the first page, within 8..60. */
  const measure = (rows: unknown[][]): number[] =>
    columns.map((name, i) => {
      if (kinds[i] === 'date') return Math.max(12, name.length + 3);
      if (kinds[i] === 'time') return Math.max(10, name.length + 3);
      let widest = name.length + 3; // room for the filter button
      for (const row of rows.slice(0, MEASURED_ROWS)) {
        const v = row[i];
        if (v === null || v === undefined) continue;
        widest = Math.max(widest, Math.min(60, (typeof v === 'object' ? JSON.stringify(v) : String(v)).length + 1));
      }
      return Math.min(60, Math.max(8, widest));
    });

  const startSheet = async () => {
    const index = sheets.length + 1;
    sheets.push({ name: sheetName(options.sheetName, index > 1 ? ` (${index})` : ''), state: { rows: 0 } });
    sheet = await zip!.entry(`xl/worksheets/sheet${index}.xml`, DEFLATE_LEVEL);
    rowNumber = 0;
    const pane = header
      ? '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
      : '';
    let head = `${XML_HEAD}<worksheet xmlns="${NS_MAIN}" xmlns:r="${NS_REL}">`;
    head += `<sheetViews><sheetView workbookViewId="0"${index === 1 ? ' tabSelected="1"' : ''}>${pane}</sheetView></sheetViews>`;
    head += '<sheetFormatPr defaultRowHeight="15"/><cols>';
    for (const [i, w] of widths!.entries()) head += `<col min="${i + 1}" max="${i + 1}" width="${w}" customWidth="1"/>`;
    head += '</cols><sheetData>';
    if (header) {
      rowNumber = 1;
      head += `<row r="1">${columns.map((name, i) => cells.inlineString(`${letters[i]}1`, name, ` s="${STYLE.header}"`)).join('')}</row>`;
    }
    await send(head);
  };

  const endSheet = async () => {
    const part = sheets[sheets.length - 1]!;
    part.state.rows = rowNumber;
    const filter = header ? `<autoFilter ref="A1:${lastColumn}${Math.max(1, rowNumber)}"/>` : '';
    await send(`</sheetData>${filter}<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/></worksheet>`);
    await race(sheet!.end());
  };

  const quoteSheet = (name: string) => `'${name.replace(/'/g, "''")}'`;

  const addPackageParts = async () => {
    const z = zip!;
    const add = (name: string, xml: string) => race(z.addBuffer(name, Buffer.from(xml, 'utf8')));
    const sheetTypes = sheets.map(
      (_, i) =>
        `<Override PartName="/xl/worksheets/sheet${i + 1}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>`,
    );
    await add(
      '[Content_Types].xml',
      `${XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>\
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>\
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>${sheetTypes.join('')}</Types>`,
    );
    await add(
      '_rels/.rels',
      `${XML_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\
<Relationship Id="rId1" Type="${NS_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>`,
    );
    const rels = sheets.map((_, i) => `<Relationship Id="rId${i + 1}" Type="${NS_REL}/worksheet" Target="worksheets/sheet${i + 1}.xml"/>`);
    await add(
      'xl/_rels/workbook.xml.rels',
      `${XML_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">${rels.join('')}\
<Relationship Id="rId${sheets.length + 1}" Type="${NS_REL}/styles" Target="styles.xml"/></Relationships>`,
    );
    const names = sheets.map((s, i) => `<sheet name="${xmlText(s.name)}" sheetId="${i + 1}" r:id="rId${i + 1}"/>`);
    const filters = header
      ? `<definedNames>${sheets.map((s, i) => `<definedName name="_xlnm._FilterDatabase" localSheetId="${i}" hidden="1">${xmlText(`${quoteSheet(s.name)}!$A$1:$${lastColumn}$${Math.max(1, s.state.rows)}`)}</definedName>`).join('')}</definedNames>`
      : '';
    await add(
      'xl/workbook.xml',
      `${XML_HEAD}<workbook xmlns="${NS_MAIN}" xmlns:r="${NS_REL}"><bookViews><workbookView activeTab="0"/></bookViews>\
<sheets>${names.join('')}</sheets>${filters}</workbook>`,
    );
    await add('xl/styles.xml', STYLES_XML);
  };

  return {
    get written() {
      return written;
    },
    async begin() {
      zip = new ZipWriter(out);
      outputFailed = new Promise<never>((_, reject) =>
        out.once('error', (error: Error) => {
          failed ??= error;
          reject(error);
        }),
      );
      outputFailed.catch(() => undefined);
    },
    async write(rows) {
      if (!widths) {
        widths = measure(rows);
        await startSheet();
      }
      let chunk = '';
      for (const row of rows) {
        if (rowNumber - headerRows >= perSheet) {
          await send(chunk);
          chunk = '';
          await endSheet();
          await startSheet();
        }
        rowNumber += 1;
        chunk += rowXml(row, rowNumber);
        written += 1;
      }
      await send(chunk);
    },
    encoder(cols: readonly TranscodeColumn[]): PageEncoder {
      const transcoder = xlsxTranscoder(cols, kinds, cells.cell);
      const rowOf = rowTranscoder(cols);
      const sink = new ByteSink();
      // The first page's rows, for the widths (the reference measures the rows of its first write()).
      let sample: unknown[][] | undefined = [];
      let pending = 0;
      let breaks: number[] = [];
      // The encoder runs ahead of the writer: its own count of the rows in the current sheet.
      let row = headerRows;
      const next = () => {
        if (row - headerRows >= perSheet) {
          breaks.push(sink.pos);
          row = headerRows;
        }
        row += 1;
        pending += 1;
      };
      return {
        entity(page, i) {
          next();
          transcoder.entity(sink, page, i, row);
          if (sample && sample.length < MEASURED_ROWS) sample.push(rowOf(page, i));
        },
        row(values) {
          next();
          sink.text(rowXml(values, row));
          if (sample && sample.length < MEASURED_ROWS) sample.push([...values]);
        },
        take(): SheetRows {
          if (sample) {
            firstRows = sample;
            sample = undefined;
          }
          const bytes = sink.take();
          const page: SheetRows = { bytes, rows: pending, breaks, lastRow: row, release: () => sink.recycle(bytes) };
          pending = 0;
          breaks = [];
          return page;
        },
      };
    },
    async writeEncoded(encoded) {
      const page = encoded as SheetRows;
      if (!widths) {
        widths = measure(firstRows ?? []);
        await startSheet();
      }
      let from = 0;
      for (const at of page.breaks) {
        await send(page.bytes.subarray(from, at));
        from = at;
        rowNumber = perSheet + headerRows;
        await endSheet();
        await startSheet();
      }
      // zlib takes the bytes in order: after the last ones, the buffer is free again.
      await send(page.bytes.subarray(from), page.release);
      rowNumber = page.lastRow;
      written += page.rows;
    },
    async end() {
      if (!widths) {
        widths = measure([]);
        await startSheet();
      }
      await endSheet();
      await addPackageParts();
      await race(zip!.end());
      const truncated = cells.truncated;
      if (truncated) options.warn?.(`${truncated} cell(s) longer than Excel's ${EXCEL_MAX_CELL_TEXT} characters were cut to fit`);
    },
  };
}
