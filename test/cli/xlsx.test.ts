/** `get-table --xlsx` writes a typed, streamed workbook that an independent reader (openpyxl) reads back. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanupTempDirs, interruptCli, runCli, runShell, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { openpyxlPython } from '../helpers/services.mjs';
import { readXlsx } from '../helpers/xlsx.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const python = openpyxlPython();

afterAll(cleanupTempDirs);

/** What a cell read back from the workbook must be, given the NDJSON value of the same field. */
function expectedCell(value: unknown, type: string): unknown {
  if (value === null || value === '') return null;
  if (type === 'date') return { date: value };
  if (type === 'duration') return { time: value };
  if (typeof value === 'object') return JSON.stringify(value);
  return value;
}

describe.skipIf(!python)('--xlsx read back with openpyxl', () => {
  let server: TestServer;
  let key: string;
  beforeAll(async () => {
    server = await startServer({ rows: { Artikel: 2500 } });
    const first = await runCli(['get-table', 'Artikel', '--fields', 'UID', '--limit', '1', '--no-header'], { env: server.env });
    key = first.stdout.trim();
    // Text with leading zeros must stay text in Excel.
    await server.control('row', { table: 'Artikel', key, set: { alteNummer: '0012' } });
  });
  afterAll(() => server.stop());

  it('Artikel: every row, dates as dates, numbers as numbers, text with leading zeros intact, header frozen', async () => {
    const dir = tempDir();
    const out = join(dir, 'artikel.xlsx');
    const r = await runCli(['get-table', 'Artikel', '--xlsx', '-o', out], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(readdirSync(dir)).toEqual(['artikel.xlsx']);

    const nd = await runCli(['get-table', 'Artikel', '--ndjson'], { env: server.env });
    const rows = nd.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const described = JSON.parse((await runCli(['describe', 'Artikel', '--json'], { env: server.env })).stdout) as {
      attributes: Array<{ name: string; type: string }>;
    };
    const typeOf = new Map(described.attributes.map((a) => [a.name, a.type]));

    const [sheet, ...more] = await readXlsx(python!, out);
    expect(more).toEqual([]);
    expect(sheet!.title).toBe('Artikel');
    expect(sheet!.freeze).toBe('A2');
    expect(sheet!.headerBold).toBe(true);
    const columns = Object.keys(rows[0]!);
    expect(sheet!.rows[0]).toEqual(columns);
    expect(sheet!.autoFilter).toMatch(new RegExp(`^A1:[A-Z]+${rows.length + 1}$`));
    expect(sheet!.rows).toHaveLength(rows.length + 1);
    expect(rows).toHaveLength(2500);

    rows.forEach((row, i) => {
      const got = sheet!.rows[i + 1]!;
      columns.forEach((name, c) => {
        expect(got[c], `${name} of row ${i + 1}`).toEqual(expectedCell(row[name], typeOf.get(name) ?? ''));
      });
    });
    // The kinds of cells Excel shows, spelled out once.
    const at = (name: string) => columns.indexOf(name);
    const zero = sheet!.rows.find((r) => r[at('UID')] === key)!;
    expect(zero[at('alteNummer')]).toBe('0012');
    expect(typeof zero[at('Nummer')]).toBe('number');
    expect(typeof zero[at('Preis')]).toBe('number');
    expect(typeof zero[at('Aktiv')]).toBe('boolean');
    expect(zero[at('Release_Date')]).toEqual({ date: expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/) });
    expect(sheet!.rows.some((r) => r[at('Auslaufdatum')] === null)).toBe(true); // 0!0!0 → empty
    // Widths come from the header and the data, within bounds.
    expect(Object.values(sheet!.widths).every((w) => w >= 8 && w <= 60)).toBe(true);
  });

  it('-f xlsx to a pipe writes the same workbook; | head ends with exit 0', async () => {
    const dir = tempDir();
    const piped = join(dir, 'piped.xlsx');
    const r = await runShell(`node ${BIN} get-table Artikel -f xlsx --limit 1200 > ${piped}`, { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const [sheet] = await readXlsx(python!, piped);
    expect(sheet!.rows).toHaveLength(1201);
    const head = await runShell(`node ${BIN} get-table Artikel --xlsx | head -c 100 > /dev/null; echo "status=\${PIPESTATUS[0]}"`, { env: server.env });
    expect(head.stdout).toContain('status=0');
    expect(head.stderr).toBe('');
  });

  it('refuses a terminal (64) and CSV-only options (64), before any request', async () => {
    // `script` gives the CLI a real terminal as standard output.
    const tty = await runShell(`script -qec "node ${BIN} get-table Artikel --xlsx" /dev/null`, { env: server.env });
    expect(tty.code).toBe(64);
    expect(tty.stdout).toMatch(/binary.*-o FILE/);
    const bom = await runCli(['get-table', 'Artikel', '--xlsx', '--bom', '-o', join(tempDir(), 'x.xlsx')], { env: server.env });
    expect(bom.code).toBe(64);
    expect(bom.stderr).toMatch(/--bom applies to CSV/);
  });

  it('Ctrl-C during -o: exit 130 and no file, not even a temporary one', async () => {
    await server.control('options', { latencyMs: 300 });
    try {
      const dir = tempDir();
      const out = join(dir, 'artikel.xlsx');
      const r = await interruptCli(['get-table', 'Artikel', '--xlsx', '-o', out, '--page-size', '100', '--concurrency', '1'], { env: server.env });
      expect(r.code).toBe(130);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      await server.control('options', { latencyMs: 0 });
    }
  });
});

describe.skipIf(!python)('--xlsx cell types on a small fixture', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ data: FIXTURE });
  });
  afterAll(() => server.stop());

  it('times as times of day, empty dates empty, objects as JSON text, formulas never evaluated', async () => {
    const out = join(tempDir(), 'teile.xlsx');
    const r = await runCli(['get-table', 'Teile', '--xlsx', '-o', out], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out).subarray(0, 2).toString()).toBe('PK');
    const [sheet] = await readXlsx(python!, out);
    expect(sheet!.title).toBe('Teile');
    expect(sheet!.rows).toEqual([
      ['ID', 'Name', 'Notiz', 'PLZ', 'Preis', 'Aktiv', 'Datum', 'Leer', 'Zeit', 'Daten', 'Familie'],
      [
        1,
        'Straße "Süd", Nr. 5',
        'Zeile 1\nZeile 2; mit Semikolon',
        '01067',
        39.5,
        true,
        { date: '2025-01-27' },
        null,
        { time: '20:35:41' },
        '{"Coll":[{"Art":"Laden","Preis":39.5}]}',
        'A1',
      ],
      [2, '=SUMME(A1)', null, '00100', -3, false, null, { date: '1999-12-01' }, null, null, null],
      [3, 'O\'Reilly & "Söhne" #1', '@home', '20095', 12, false, { date: '1999-12-31' }, null, { time: '01:00:00' }, '{}', 'A1'],
      [10, 'Ärger & Co', 'Komma, "Zitat"', '80331', 0.1, true, { date: '2024-03-05' }, null, { time: '00:00:00' }, '{"values":[],"geerbt":true}', 'B2'],
    ]);
  });

  it('--raw keeps the server encoding as text; --no-header has no frozen row', async () => {
    const out = join(tempDir(), 'raw.xlsx');
    const r = await runCli(['get-table', 'Teile', '--xlsx', '--raw', '--no-header', '--fields', 'ID,Datum,Zeit', '-o', out], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const [sheet] = await readXlsx(python!, out);
    expect(sheet!.freeze).toBeNull();
    expect(sheet!.autoFilter).toBeNull();
    expect(sheet!.rows[0]).toEqual([1, '27!1!2025', 74141000]);
  });
});
