/** The export's CSV encoder writes exactly what csv-stringify (the reference) writes, and parses back. */
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { describe, expect, it } from 'vitest';
import { csvEncoder } from '../../src/table/output/csv.js';

const tricky = [
  '',
  'plain',
  'a,b',
  'a;b',
  'quote "x"',
  '"',
  'line1\nline2',
  'tab\tx',
  '=SUM(A1)',
  '+1',
  '-x',
  '@home',
  '\tlead',
  ' spaced ',
  'Ärger & Söhne',
  '„Original“',
  'x'.repeat(500),
];
const values: unknown[] = [...tricky, 0, -3, 39.5, 1e21, true, false, null, undefined, { Coll: [{ Art: 'Laden', Preis: 39.5 }] }, [], {}];

function reference(rows: unknown[][], delimiter: string, excelSafe: boolean): string {
  return stringify(rows, {
    delimiter,
    record_delimiter: 'unix',
    escape_formulas: excelSafe,
    cast: { boolean: (v: boolean) => (v ? 'true' : 'false'), object: (v: object) => JSON.stringify(v), number: (v: number) => String(v) },
  });
}

function random(seed: number): () => number {
  let s = seed >>> 0;
  // biome-ignore lint/suspicious/noAssignInExpressions: the idiomatic loop/step form
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

describe('csvEncoder', () => {
  it('quotes a lone CR too (csv-stringify with unix line ends does not; spreadsheets break lines on it)', () => {
    expect(csvEncoder().row(['cr\rlf', 'x'])).toBe('"cr\rlf",x\n');
  });

  for (const delimiter of [',', ';', '\t', '|']) {
    for (const excelSafe of [false, true]) {
      it(`matches csv-stringify (delimiter ${JSON.stringify(delimiter)}, excelSafe ${excelSafe})`, () => {
        const rand = random(delimiter.charCodeAt(0) + (excelSafe ? 1000 : 0));
        const rows: unknown[][] = [values];
        for (let r = 0; r < 300; r++) rows.push(Array.from({ length: 7 }, () => values[Math.floor(rand() * values.length)]));
        const enc = csvEncoder({ delimiter, excelSafe });
        const ours = rows.map((row) => enc.row(row)).join('');
        expect(ours).toBe(reference(rows, delimiter, excelSafe));
        const back = parse(ours, { delimiter, relax_column_count: true }) as string[][];
        expect(back).toHaveLength(rows.length);
      });
    }
  }
});
