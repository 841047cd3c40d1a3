/**
 * The round trip through a spreadsheet program: what it does to an export on its way back
 * (rendered text, cut cells, formulas without results, copied sheets, grouped thousands), the
 * --excel-safe escape both ways, keys on two rows, Ctrl-C, one confirmation for the whole file,
 * and what --force marks. Every file is written by `get-table` (or by hand where a spreadsheet
 * would have), edited as a person or openpyxl would, and pushed back over real HTTP.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InterruptedError } from '../../src/errors/index.js';
import { cleanupTempDirs, runCli, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { openpyxlPython } from '../helpers/services.mjs';
import { auditOutcomes, ndjson } from '../helpers/audit.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const python = openpyxlPython();

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});
afterAll(cleanupTempDirs);

/** The small fixture (Teile: keys 1, 2, 3, 10), or `rows` records of a plain table Teile (ID, Name, PLZ, Preis). */
async function start(rows?: number): Promise<{ s: TestServer; dir: string }> {
  const dir = tempDir();
  let data = FIXTURE;
  if (rows !== undefined) {
    data = join(dir, 'fixture.json');
    writeFileSync(
      data,
      JSON.stringify({
        appName: 'WSZ-DB',
        dataClasses: [
          {
            name: 'Teile',
            key: 'ID',
            attributes: [
              { name: 'ID', type: 'long' },
              { name: 'Name', type: 'string' },
              { name: 'PLZ', type: 'string' },
              { name: 'Preis', type: 'number' },
            ],
            rows: Array.from({ length: rows }, (_, i) => ({ ID: i + 1, Name: `Teil ${i + 1}`, PLZ: String(10000 + i).padStart(5, '0'), Preis: i + 0.5 })),
          },
        ],
      }),
    );
  }
  server = await startServer({ data });
  return { s: server, dir };
}

const row = (s: TestServer, key: string) => s.control<Record<string, any>>(`row/Teile/${key}`);
const setRow = (s: TestServer, key: string, set: Record<string, unknown>) => s.control('row', { table: 'Teile', key, set });
const reports = ndjson;
const outcomes = (s: TestServer) => auditOutcomes(s.dataDir);
async function exportTable(s: TestServer, args: string[], file: string) {
  const r = await runCli(['get-table', 'Teile', '--meta', ...args, '-o', file], { env: s.env });
  expect(r.code, r.stderr).toBe(0);
}
const push = (s: TestServer, args: string[]) => runCli(['push-field', 'Teile', ...args], { env: s.env });
/** Edit a CSV the way a person would, and save it as the export was (delimiter, BOM). */
function editCsv(file: string, edit: (records: Array<Record<string, string>>) => void, delimiter = ',', bom = false) {
  const records = parse(readFileSync(file), { columns: true, delimiter, bom: true }) as Array<Record<string, string>>;
  edit(records);
  writeFileSync(file, `${bom ? '\ufeff' : ''}${stringify(records, { header: true, delimiter })}`);
}
const byId = (records: Array<Record<string, string>>, id: string) => records.find((r) => (r.__KEY ?? r.ID) === id)!;
/** Run a Python script on a workbook (openpyxl). */
const openpyxl = (script: string, file: string) => execFileSync(python!, ['-c', `import sys, openpyxl\n${script}`, file]);

describe('finding 1: a CSV that went through a spreadsheet program', () => {
  it('text the spreadsheet rendered (leading zeros lost, E-notation, a formula run, an error value) is refused for its row, never written', async () => {
    const { s, dir } = await start();
    await setRow(s, '10', { PLZ: '12345678901234567' });
    const file = join(dir, 'de.csv');
    await exportTable(s, ['--csv', '--delimiter', ';', '--bom'], file);
    // What German Excel saves: 01067 → 1067, =SUMME(A1) → its result, a failed formula → #NAME?, a long number → 1,23457E+16.
    editCsv(
      file,
      (records) => {
        byId(records, '1').PLZ = '1067';
        byId(records, '2').Name = '0';
        byId(records, '3').Notiz = '#NAME?';
        byId(records, '10').PLZ = '1,23457E+16';
      },
      ';',
      true,
    );
    const stopped = await push(s, ['--from', file, '--dry-run', '--json']);
    expect(stopped.code).toBe(65);
    expect(stopped.stdout).toBe('');
    expect(stopped.stderr).toMatch(
      /line 1: PLZ: the file has "1067" where the server has "01067": the same number written differently.*leading zeros.*format the column as Text/,
    );
    expect(stopped.stderr).toMatch(/and 3 more row\(s\).*nothing was written/);

    const r = await push(s, ['--from', file, '--yes', '--json', '--continue-on-error']);
    expect(r.code).toBe(65);
    const out = reports(r.stdout);
    expect(out.map((x) => [x.key, x.result])).toEqual([
      ['1', 'invalid'],
      ['2', 'invalid'],
      ['3', 'invalid'],
      ['10', 'invalid'],
    ]);
    expect(out[1].message).toMatch(/Name: the file has "0" where the server has "=SUMME\(A1\)": a spreadsheet ran the server's text as a formula/);
    expect(out[2].message).toMatch(/"#NAME\?".*a spreadsheet's error value/);
    expect(out[3].message).toMatch(/"1,23457E\+16".*E-notation and lost its digits/);
    expect((await s.stats()).updates).toBe(0);
    expect((await row(s, '1')).PLZ).toBe('01067');
    expect((await row(s, '10')).PLZ).toBe('12345678901234567');
  });
});

describe('finding 7: grouped thousands in a decimal-comma file', () => {
  it('1.234 in a ; CSV is ambiguous (German Excel writes 1234 so) and refused when it would change the value; an untouched 1.234 is unchanged', async () => {
    const { s, dir } = await start();
    await setRow(s, '3', { Preis: 1.234 });
    const file = join(dir, 'de.csv');
    await exportTable(s, ['--csv', '--delimiter', ';', '--bom'], file);
    expect(readFileSync(file, 'utf8')).toMatch(/;1\.234;/);
    const untouched = await push(s, ['--from', file, '--dry-run', '--json']);
    expect(untouched.code, untouched.stderr).toBe(0);
    expect(reports(untouched.stdout).every((x) => x.result === 'unchanged')).toBe(true);

    editCsv(file, (records) => (byId(records, '1').Preis = '1.234'), ';', true);
    const r = await push(s, ['--from', file, '--dry-run', '--json']);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/line 1: invalid value for Preis \(number\): "1\.234" is ambiguous in a file with decimal commas/);
    editCsv(file, (records) => (byId(records, '1').Preis = '1.234,5'), ';', true);
    expect((await push(s, ['--from', file, '--dry-run', '--json'])).stderr).toMatch(/"1\.234,5" is ambiguous/);
  });
});

describe('finding 4: --excel-safe both ways', () => {
  it("text that already starts with ' before = + - @ comes back exactly; an untouched export is all unchanged", async () => {
    const { s, dir } = await start();
    const tricky: Record<string, Record<string, string>> = {
      '1': { Notiz: "'+49 30 1234" },
      '3': { Notiz: "'-5 Rabatt" },
      '10': { Name: "''=x", Notiz: "'" },
    };
    for (const [key, set] of Object.entries(tricky)) await setRow(s, key, set);
    const file = join(dir, 'safe.csv');
    await exportTable(s, ['--csv', '--excel-safe'], file);
    const text = readFileSync(file, 'utf8');
    // One more ' before text that starts with 's and one of = + - @; a lone ' or =SUMME as before.
    expect(text).toContain(",''-5 Rabatt,");
    expect(text).toContain(",'''=x,");
    expect(text).toContain(",'=SUMME(A1),");
    expect(text).toMatch(/,',/);
    const untouched = await push(s, ['--from', file, '--excel-safe', '--dry-run', '--json']);
    expect(untouched.code, untouched.stderr).toBe(0);
    expect(reports(untouched.stdout).map((x) => x.result)).toEqual(['unchanged', 'unchanged', 'unchanged', 'unchanged']);

    // Edits in the escaped form: '=neu is =neu, ''-7 is '-7.
    editCsv(file, (records) => {
      byId(records, '1').Name = "'=neu";
      byId(records, '3').Notiz = "''-7 Rabatt";
    });
    const r = await push(s, ['--from', file, '--excel-safe', '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((await row(s, '1')).Name).toBe('=neu');
    expect((await row(s, '3')).Notiz).toBe("'-7 Rabatt");
    expect((await row(s, '10')).Name).toBe("''=x");
    // Exported again, the file is what was pushed.
    const again = join(dir, 'again.csv');
    await exportTable(s, ['--csv', '--excel-safe', '--fields', 'ID,Name,Notiz'], again);
    expect(readFileSync(again, 'utf8')).toContain(",'=neu,");
    expect(readFileSync(again, 'utf8')).toContain(",''-7 Rabatt");
  });
});

describe.skipIf(!python)('workbooks (findings 2, 3, 5, 6)', () => {
  it('finding 2: text over 32,767 characters, cut by the export, is refused when the untouched workbook comes back', async () => {
    const { s, dir } = await start();
    const long = `Anfang ${'Lorem ipsum '.repeat(3000)}Ende`;
    await setRow(s, '3', { Notiz: long });
    const file = join(dir, 'teile.xlsx');
    const exported = await runCli(['get-table', 'Teile', '--meta', '--xlsx', '-o', file], { env: s.env });
    expect(exported.stderr).toMatch(/cut to fit/);
    const r = await push(s, ['--from', file, '--yes', '--json', '--continue-on-error']);
    expect(r.code).toBe(65);
    expect(reports(r.stdout).find((x) => x.key === '3')).toMatchObject({
      result: 'invalid',
      message: expect.stringMatching(/Notiz: the file has "Anfang Lorem.*the server's text of 36011 characters cut to Excel's 32767; not written/),
    });
    expect((await row(s, '3')).Notiz).toBe(long);
    expect((await s.stats()).updates).toBe(0);
  });

  it('finding 3: a formula cell without a cached result (openpyxl) is a row error, not an empty value that clears the field', async () => {
    const { s, dir } = await start();
    const file = join(dir, 'teile.xlsx');
    await exportTable(s, ['--xlsx'], file);
    openpyxl(
      `wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
head = [c.value for c in ws[1]]
for row in ws.iter_rows(min_row=2):
    cells = dict(zip(head, row))
    if cells['ID'].value == 3:
        cells['Notiz'].value = '=B2&"x"'
wb.save(sys.argv[1])`,
      file,
    );
    const r = await push(s, ['--from', file, '--yes', '--json', '--continue-on-error']);
    expect(r.code).toBe(65);
    expect(reports(r.stdout).find((x) => x.key === '3')).toMatchObject({
      result: 'invalid',
      message: expect.stringMatching(/Notiz \(string\): "=B2&\\"x\\"" is a formula the file holds no result for/),
    });
    expect((await row(s, '3')).Notiz).toBe('@home');
  });

  it('finding 5: a header that names a column twice is refused (the last one would win)', async () => {
    const { s, dir } = await start();
    const file = join(dir, 'teile.xlsx');
    await exportTable(s, ['--xlsx'], file);
    openpyxl(
      `wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
head = [c.value for c in ws[1]]
ws.cell(row=1, column=head.index('Notiz') + 1).value = 'Name'
ws.cell(row=2, column=head.index('Name') + 1).value = 'meine Änderung'
wb.save(sys.argv[1])`,
      file,
    );
    const r = await push(s, ['--from', file, '--yes']);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/the header of sheet 'Teile' names the column 'Name' twice/);
    expect((await s.stats()).updates).toBe(0);
  });

  it("finding 6: a copied sheet with the export's columns (Excel names it 'Teile (2)') is refused, after or before the export's sheet", async () => {
    const { s, dir } = await start();
    const file = join(dir, 'teile.xlsx');
    await exportTable(s, ['--xlsx'], file);
    const copy = (before: boolean) =>
      openpyxl(
        `wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
original = wb.copy_worksheet(ws)
original.title = 'Teile (2)'
head = [c.value for c in ws[1]]
for row in ws.iter_rows(min_row=2):
    cells = dict(zip(head, row))
    if cells['ID'].value == 1:
        cells['Name'].value = 'meine Änderung'
if ${before ? 'True' : 'False'}:
    wb.move_sheet(original, offset=-1)
    wb.active = 0
wb.save(sys.argv[1])`,
        file,
      );
    copy(false);
    const after = await push(s, ['--from', file, '--yes']);
    expect(after.code).toBe(65);
    expect(after.stderr).toMatch(
      /sheet 'Teile \(2\)' has the columns of 'Teile' but is not its continuation.*nothing was written|sheet 'Teile \(2\)' has the columns of 'Teile' but is not its continuation/,
    );
    await exportTable(s, ['--xlsx'], file);
    copy(true);
    const before = await push(s, ['--from', file, '--yes']);
    expect(before.code).toBe(65);
    expect(before.stderr).toMatch(/sheet 'Teile' has the columns of 'Teile \(2\)' but is not its continuation/);
    expect((await s.stats()).updates).toBe(0);
    expect((await row(s, '1')).Name).toBe('Straße "Süd", Nr. 5');
  });
});

describe('finding 6: a key on two rows', () => {
  it('an unchanged copy of a row after the 1,000-row chunk never undoes the edit', async () => {
    const { s, dir } = await start(1100);
    const file = join(dir, 'teile.csv');
    const lines = ['ID,Name', ...Array.from({ length: 1100 }, (_, i) => `${i + 1},${i === 4 ? 'neu' : `Teil ${i + 1}`}`), '5,Teil 5'];
    writeFileSync(file, `${lines.join('\n')}\n`);
    const r = await push(s, ['--from', file, '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((await row(s, '5')).Name).toBe('neu');
    const out = reports(r.stdout);
    expect(out.filter((x) => x.key === '5').map((x) => [x.line, x.result])).toEqual([
      [5, 'updated'],
      [1101, 'unchanged'],
    ]);
    expect((await s.stats()).updates).toBe(1);
  });

  it('two rows changing one record: both refused, in one chunk or across chunks; nothing written without --continue-on-error', async () => {
    const { s, dir } = await start(1100);
    const file = join(dir, 'teile.csv');
    const lines = [
      'ID,Name',
      ...Array.from({ length: 1100 }, (_, i) => `${i + 1},${i === 6 ? 'erste' : i === 8 ? 'neun' : `Teil ${i + 1}`}`),
      '7,zweite',
      '9,noch eine',
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    const stopped = await push(s, ['--from', file, '--yes']);
    expect(stopped.code).toBe(65);
    expect(stopped.stderr).toMatch(
      /line 1101: the key 7 is on line 7 too, and both rows change it.*\(and 3 more row\(s\) that cannot be written\); nothing was written/,
    );
    expect((await s.stats()).updates).toBe(0);

    writeFileSync(file, `${lines.join('\n')}\n11,geändert\n`);
    const r = await push(s, ['--from', file, '--yes', '--json', '--continue-on-error']);
    expect(r.code).toBe(65);
    const out = reports(r.stdout);
    expect(out.filter((x) => ['7', '9'].includes(x.key)).map((x) => [x.key, x.line, x.result])).toEqual([
      ['7', 7, 'invalid'],
      ['9', 9, 'invalid'],
      ['7', 1101, 'invalid'],
      ['9', 1102, 'invalid'],
    ]);
    expect((await row(s, '7')).Name).toBe('Teil 7');
    expect((await row(s, '9')).Name).toBe('Teil 9');
    expect((await row(s, '11')).Name).toBe('geändert');
  });
});

describe('finding 8: Ctrl-C during a bulk push', () => {
  it('exits 130 with one line, sends no further update, and leaves no conflict report as if complete', async () => {
    const { s, dir } = await start(1100);
    const file = join(dir, 'teile.csv');
    await exportTable(s, ['--csv'], file);
    editCsv(file, (records) => {
      byId(records, '5').Name = 'fünf';
      byId(records, '6').Name = 'sechs';
      byId(records, '1050').Name = 'tausendfünfzig';
    });
    await setRow(s, '6', { Name: 'Fremdänderung' });
    const conflicts = join(dir, 'konflikte.csv');
    const controller = new AbortController();
    // Ctrl-C once the first chunk's report reaches stdout (the bin aborts with this error on SIGINT).
    const r = await runMain(['push-field', 'Teile', '--from', file, '--yes', '--continue-on-error', '--conflicts', conflicts], {
      env: s.env,
      signal: controller.signal,
      onStdout: () => controller.abort(new InterruptedError('interrupted (SIGINT)')),
      cwd: dir,
    });
    expect(r.code).toBe(130);
    expect(r.stderr.trim().split('\n')).toEqual(['legacy: interrupted (SIGINT)']);
    expect(existsSync(conflicts)).toBe(false);
    expect((await row(s, '5')).Name).toBe('fünf');
    expect((await row(s, '1050')).Name).toBe('Teil 1050');
  });
});

describe('finding 9: one confirmation for the whole file', () => {
  it('a terminal is asked once with the totals of every chunk; "no" writes nothing', async () => {
    const { s, dir } = await start(1100);
    const file = join(dir, 'teile.csv');
    await exportTable(s, ['--csv'], file);
    editCsv(file, (records) => {
      byId(records, '5').Name = 'fünf';
      byId(records, '1050').Name = 'tausendfünfzig';
      byId(records, '1050').Preis = '1';
    });
    const declined = await runMain(['push-field', 'Teile', '--from', file], { env: s.env, stdinTty: true, input: 'n\n' });
    expect(declined.code).toBe(1);
    expect(declined.stderr.match(/\[y\/N\]/g)).toHaveLength(1);
    expect(declined.stderr).toMatch(/write 2 change\(s\) \(3 field\(s\) in 2 record\(s\)\) to http/);
    expect(declined.stderr).toMatch(/cancelled: nothing was written/);
    expect((await s.stats()).updates).toBe(0);

    const yes = await runMain(['push-field', 'Teile', '--from', file, '--report', 'ndjson'], { env: s.env, stdinTty: true, input: 'y\n' });
    expect(yes.code, yes.stderr).toBe(0);
    expect(yes.stderr.match(/\[y\/N\]/g)).toHaveLength(1);
    expect((await row(s, '5')).Name).toBe('fünf');
    expect((await row(s, '1050')).Name).toBe('tausendfünfzig');
  });

  it('a record saved since the export that the file changes nothing of is skipped, not a conflict', async () => {
    const { s, dir } = await start();
    const file = join(dir, 'teile.csv');
    await exportTable(s, ['--csv'], file);
    // Someone else moved record 3 to another group; nobody touched the file.
    await setRow(s, '3', { Familie: 'B2' });
    const r = await push(s, ['--from', file, '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(reports(r.stdout).find((x) => x.key === '3')).toMatchObject({
      result: 'unchanged',
      message: expect.stringMatching(/saved on the server since the export .* which changed Familie; the file changes nothing here, skipped/),
    });
  });
});

describe('finding 10: --force marks only what it overwrote', () => {
  it('the audit log says forced for the record saved since the export, not for the others', async () => {
    const { s, dir } = await start();
    const file = join(dir, 'teile.csv');
    await exportTable(s, ['--csv'], file);
    editCsv(file, (records) => {
      byId(records, '1').Name = 'Meine Änderung';
      byId(records, '3').Preis = '13';
    });
    await setRow(s, '1', { Name: 'Fremdänderung' });
    const r = await push(s, ['--from', file, '--yes', '--force', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const audit = outcomes(s);
    expect(audit.find((a) => a.key === '1')).toMatchObject({ result: 'updated', forced: true });
    expect(audit.find((a) => a.key === '3')).toMatchObject({ result: 'updated' });
    expect(audit.find((a) => a.key === '3')!.forced).toBeUndefined();
    expect(reports(r.stdout).find((x) => x.key === '3')!.forced).toBeUndefined();
  });
});

describe('delimiters and numbers beyond 2^53', () => {
  it('TAB and | are detected from the header; --delimiter names one; 2^53 + 1 is refused, from CSV and NDJSON', async () => {
    const { s, dir } = await start();
    const tab = join(dir, 'tab.tsv');
    writeFileSync(tab, 'ID\tName\n1\tTab, mit Komma; und Semikolon\n');
    expect((await push(s, ['--from', tab, '--yes'])).code).toBe(0);
    expect((await row(s, '1')).Name).toBe('Tab, mit Komma; und Semikolon');
    const pipe = join(dir, 'pipe.txt');
    writeFileSync(pipe, 'ID|Notiz\n3|a;b,c\tTab\n');
    expect((await push(s, ['--from', pipe, '--yes'])).code).toBe(0);
    expect((await row(s, '3')).Notiz).toBe('a;b,c\tTab');
    const semi = join(dir, 'semi.csv');
    writeFileSync(semi, 'ID;Name\n3;x y\n');
    const wrong = await push(s, ['--from', semi, '--yes', '--delimiter', ',']);
    expect(wrong.code).toBe(65);
    expect(wrong.stderr).toMatch(/no key column 'ID' \(columns: ID;Name\)/);
    expect((await push(s, ['--from', semi, '--yes', '--delimiter', ';'])).code).toBe(0);
    expect((await row(s, '3')).Name).toBe('x y');
    const tabGiven = join(dir, 'given.csv');
    writeFileSync(tabGiven, 'ID\tName\n10\tmit | Strich\n');
    expect((await push(s, ['--from', tabGiven, '--yes', '--delimiter', 'tab'])).code).toBe(0);
    expect((await row(s, '10')).Name).toBe('mit | Strich');

    const big = join(dir, 'big.csv');
    writeFileSync(big, 'ID,Preis\n1,9007199254740993\n');
    const csv = await push(s, ['--from', big, '--yes']);
    expect(csv.code).toBe(65);
    expect(csv.stderr).toMatch(/"9007199254740993" cannot be stored exactly/);
    const nd = join(dir, 'big.ndjson');
    writeFileSync(nd, '{"ID":1,"Preis":9007199254740993}\n');
    const ndjson = await push(s, ['--from', nd, '--yes']);
    expect(ndjson.code).toBe(65);
    expect(ndjson.stderr).toMatch(/is beyond 2\^53 and cannot be carried exactly/);
    expect((await row(s, '1')).Preis).toBe(39.5);
  });
});
