/**
 * `get-table` writes byte for byte what it wrote before the transcoder, in every format and
 * with every option that changes the bytes, on a table with every kind of value, through the
 * emulator over real HTTP. LEGACY_TRANSCODE=0 takes the reference path (JSON.parse of each page,
 * then the writer); the default encodes straight from the page bytes (src/table/output/transcode.ts).
 * Files (-o: an fs stream) and pipes (stdout: a socket) are both compared, as both let the
 * encoder reuse its output buffers.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runCli, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';

afterAll(cleanupTempDirs);

const TEXTS = [
  'plain',
  '',
  'Straße "Süd", Nr. 5',
  'Zeile 1\nZeile 2',
  'CR\rallein',
  'CRLF\r\nEnde',
  'Tab\tmitten',
  '\tTab vorn',
  '\rCR vorn',
  '=SUMME(A1)',
  '+49 30',
  '-Rest-',
  '@home',
  "O'Reilly",
  'back\\slash',
  'slash/es',
  '😀 astral 𝄞',
  'e\u0301 kombiniert',
  'RTL שלום',
  'Zeilen\u2028Trenner',
  'Steuer\u0001\u001f\u007f',
  'Null\u0000Byte',
  'a;b|c,d',
  ' Leerzeichen ',
  '„Original“ €',
  '\ud800 einsam',
  'x'.repeat(70_000),
  '"',
  '""',
  '\\"',
  '\\u0041 wörtlich',
  '</script>',
  '1.50',
];
const NUMBERS = [0, -3.5, 39.5, 0.1, 1e21, 1e-7, 123456.789, 2 ** 53 + 2, -42, 0.000001, 99.16, 1.5e300];
const OBJECTS: unknown[] = [
  { Coll: [{ Art: 'Laden', Preis: 39.5, VE: 1 }] },
  {},
  [],
  { q: '"zitiert"', u: 'ü😀', nl: 'a\nb', n: null, tief: { a: [1, 2.5, { b: true, c: [] }] } },
  { 1: 'eins', b: 2, 0: 'null' },
  { values: ['Webshop', 'Laden'], geerbt: true },
  ['a', 1, null, false, { x: 'y' }],
  { 'Schlüssel mit "Anführung"': '\t', '': 'leer' },
  null,
];
const DATES = ['27!1!2025', '5!3!2024', '0!0!0', '31!12!1999', '1!1!1900', '29!2!2024', null];
const DURATIONS = [0, 74_141_000, 2 * 86_400_000 + 5_000, 3_600_000, 1_500, 499, null];

function fixture(): string {
  const rows = Array.from({ length: 60 }, (_, i) => ({
    ID: i + 1,
    Text: TEXTS[i % TEXTS.length],
    Zahl: NUMBERS[i % NUMBERS.length],
    Gross: i % 5 === 0 ? null : (i - 30) * 1_000_003,
    Wort: i % 7,
    Aktiv: i % 3 === 0 ? null : i % 2 === 0,
    Datum: DATES[i % DATES.length],
    Dauer: DURATIONS[i % DURATIONS.length],
    Objekt: OBJECTS[i % OBJECTS.length],
    Bild: i % 4 === 0 ? null : true,
    Anhang: i % 3 === 0 ? true : null,
    Kennung: i % 2 === 0 ? null : `${String(i).padStart(8, '0')}-0000-4000-8000-00000000ABCD`,
    Gruppe: i % 6 === 0 ? null : ['A1', 'B,2', 'C"3', 'Ä4'][i % 4],
  }));
  return JSON.stringify({
    dataClasses: [
      {
        name: 'Gruppe',
        key: 'UID',
        attributes: [
          { name: 'UID', type: 'string' },
          { name: 'Name', type: 'string' },
          { name: 'Werte', kind: 'relatedEntities', type: 'WerteSelection', related: 'Werte', path: 'Gruppe' },
        ],
        rows: ['A1', 'B,2', 'C"3', 'Ä4'].map((UID) => ({ UID, Name: `Gruppe ${UID}` })),
      },
      {
        name: 'Werte',
        key: 'ID',
        attributes: [
          ...Object.entries({ ID: 'long', Text: 'string', Zahl: 'number', Gross: 'long64', Wort: 'word', Aktiv: 'bool', Datum: 'date' }).map(
            ([name, type]) => ({ name, type }),
          ),
          ...Object.entries({ Dauer: 'duration', Objekt: 'object', Bild: 'image', Anhang: 'blob', Kennung: 'uuid' }).map(([name, type]) => ({ name, type })),
          { name: 'Gruppe', kind: 'relatedEntity', type: 'Gruppe', related: 'Gruppe' },
        ],
        rows,
      },
    ],
  });
}

const CASES: string[][] = [
  ['--csv'],
  ['--csv', '--meta', '--excel-safe', '--delimiter', ';', '--bom'],
  ['--csv', '--delimiter', '\t', '--no-header', '--excel-safe'],
  ['--csv', '--delimiter', '|', '--raw', '--meta'],
  ['--csv', '--delimiter', '§'],
  ['--csv', '--fields', 'Text,ID,Gruppe,Datum', '--where', 'ID>=7', '--where', 'Wort!=3', '--page-size', '4'],
  ['--csv', '--no-entityset', '--page-size', '7', '--skip', '3', '--limit', '40'],
  ['--ndjson'],
  ['--ndjson', '--meta', '--page-size', '3'],
  ['--ndjson', '--raw', '--fields', 'Gruppe,Bild,Objekt,Dauer'],
  ['--json'],
  ['--json', '--raw', '--meta', '--page-size', '1', '--limit', '9'],
  ['--json', '--limit', '0'],
  ['--json', '--where', 'ID>1000'],
];

describe('get-table: the transcoder writes the same bytes as the reference path', () => {
  let server: TestServer;
  let dir: string;
  beforeAll(async () => {
    dir = tempDir('legacy-transcode-');
    const data = join(dir, 'werte.json');
    writeFileSync(data, fixture());
    server = await startServer({ data });
  });
  afterAll(() => server.stop());

  it.for(CASES.map((args) => ({ name: args.join(' '), args })))('$name', async ({ args }) => {
    const out = (name: string) => join(dir, `${name}-${args.join('_').replace(/[^\w-]/g, '')}`);
    const reference = await runCli(['get-table', 'Werte', ...args, '-o', out('reference')], { env: { ...server.env, LEGACY_TRANSCODE: '0' } });
    expect(reference.code, reference.stderr).toBe(0);
    const fast = await runCli(['get-table', 'Werte', ...args, '-o', out('fast'), '--debug'], { env: server.env });
    expect(fast.code, fast.stderr).toBe(0);
    expect(readFileSync(out('fast')).equals(readFileSync(out('reference'))), 'the file differs from the reference').toBe(true);
    // The comparison means something: every page was encoded from its bytes (but for a delimiter
    // the transcoder leaves to the reference, and the cases without rows).
    const declined = args.includes('§');
    const empty = args.join(' ').includes('--limit 0') || args.includes('ID>1000');
    if (!declined && !empty) expect(fast.stderr).toMatch(/[1-9]\d* page\(s\) encoded from their bytes, 0 parsed with JSON\.parse/);
  });

  it('through a pipe too', async () => {
    for (const args of [['--csv', '--meta'], ['--ndjson'], ['--json', '--raw']]) {
      const reference = await runCli(['get-table', 'Werte', ...args], { env: { ...server.env, LEGACY_TRANSCODE: '0' } });
      const fast = await runCli(['get-table', 'Werte', ...args], { env: server.env });
      expect(reference.code, reference.stderr).toBe(0);
      expect(fast.code, fast.stderr).toBe(0);
      expect(fast.stdout === reference.stdout, `${args.join(' ')} differs`).toBe(true);
    }
  });
});
