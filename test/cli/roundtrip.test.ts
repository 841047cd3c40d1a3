/**
 * The round trip: export, edit in a spreadsheet, push back, and never overwrite a change you did not see.
 * Every file here is written by `get-table` against the emulator, edited the way a person (or
 * German Excel, or openpyxl) would, and pushed back over real HTTP.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditLines as readAudit, auditOutcomes, ndjson } from '../helpers/audit.js';
import { cleanupTempDirs, runCli, tempDir } from '../helpers/cli.js';
import { itOnce, startServer, type TestServer } from '../helpers/emulator.js';
import { openpyxlPython } from '../helpers/services.mjs';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const python = openpyxlPython();

let server: TestServer;
let dir: string;
beforeEach(async () => {
  server = await startServer({ data: FIXTURE });
  dir = tempDir();
});
afterEach(() => server.stop());
afterAll(cleanupTempDirs);

const row = (key: string) => server.control<Record<string, any>>(`row/Teile/${key}`);
const rows = async () => Object.fromEntries(await Promise.all(['1', '2', '3', '10'].map(async (k) => [k, await row(k)])));
const auditLines = () => readAudit(server.dataDir);
const outcomes = () => auditOutcomes(server.dataDir);
const reports = ndjson;
const exportTable = async (args: string[], file: string) => {
  const r = await runCli(['get-table', 'Teile', '--meta', ...args, '-o', file], { env: server.env });
  expect(r.code, r.stderr).toBe(0);
};
const push = (args: string[]) => runCli(['push-field', 'Teile', ...args], { env: server.env });

/** Only `edited` changed on the server: every other record keeps its values and its stamp. */
async function expectOnly(before: Record<string, any>, edited: Record<string, Record<string, unknown>>) {
  const after = await rows();
  for (const key of Object.keys(before)) {
    if (edited[key]) {
      expect(after[key], key).toEqual({ ...before[key], ...edited[key], __STAMP: before[key].__STAMP + 1, __TIMESTAMP: after[key].__TIMESTAMP });
    } else {
      expect(after[key], key).toEqual(before[key]);
    }
  }
}

describe('round trip: only the edited fields are written', () => {
  it('CSV: an untouched export pushes back as all unchanged; one edited cell is one update of one field', async () => {
    const file = join(dir, 'teile.csv');
    await exportTable(['--csv'], file);
    const before = await rows();
    const untouched = await push(['--from', file, '--yes']);
    expect(untouched.code, untouched.stderr).toBe(0);
    expect(reports(untouched.stdout).map((r) => r.result)).toEqual(['unchanged', 'unchanged', 'unchanged', 'unchanged']);
    expect((await server.stats()).updateRequests).toBe(0);

    const records = parse(readFileSync(file), { columns: true }) as Array<Record<string, string>>;
    records.find((r) => r.ID === '3')!.Notiz = 'neu, mit "Zitat"';
    writeFileSync(file, stringify(records, { header: true }));
    const r = await push(['--from', file, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/not detected/);
    const out = reports(r.stdout);
    // The export is in key order: 1, 2, 3, 10.
    expect(out.map((x) => [x.key, x.result])).toEqual([
      ['1', 'unchanged'],
      ['2', 'unchanged'],
      ['3', 'updated'],
      ['10', 'unchanged'],
    ]);
    expect(out[2]).toMatchObject({ fields: ['Notiz'], old: { Notiz: '@home' }, new: { Notiz: 'neu, mit "Zitat"' }, stampExported: before['3'].__STAMP });
    expect(await server.stats()).toMatchObject({ updateRequests: 1, updates: 1 });
    await expectOnly(before, { '3': { Notiz: 'neu, mit "Zitat"' } });
    // The audit log holds the write: the pending line before it and the outcome, with the export's stamp.
    expect(auditLines().map((a) => [a.key, a.field, a.result])).toEqual([
      ['3', 'Notiz', 'pending'],
      ['3', 'Notiz', 'updated'],
    ]);
    expect(outcomes()[0]).toMatchObject({ old: '@home', new: 'neu, mit "Zitat"', stampExported: before['3'].__STAMP, stampBefore: before['3'].__STAMP });
    expect(outcomes()[0].forced).toBeUndefined();
  });

  itOnce('a semicolon CSV with BOM and CRLF as German Excel saves it: decimal comma, DD.MM.YYYY, WAHR/FALSCH', async () => {
    const file = join(dir, 'teile.csv');
    await exportTable(['--csv', '--delimiter', ';', '--bom'], file);
    const before = await rows();
    // What German Excel makes of the file when it is opened and saved again as "CSV (Trennzeichen-getrennt)".
    const records = parse(readFileSync(file), { columns: true, delimiter: ';', bom: true }) as Array<Record<string, string>>;
    for (const r of records) {
      r.Preis = r.Preis!.replace('.', ',');
      r.Aktiv = r.Aktiv === 'true' ? 'WAHR' : 'FALSCH';
      for (const f of ['Datum', 'Leer'] as const) r[f] = r[f]!.replace(/^(\d{4})-(\d{2})-(\d{2})$/, '$3.$2.$1');
    }
    records.find((r) => r.ID === '1')!.Preis = '41,25';
    writeFileSync(file, `\ufeff${stringify(records, { header: true, delimiter: ';', record_delimiter: '\r\n' })}`);
    expect(readFileSync(file, 'utf8')).toMatch(/^\ufeff__KEY;__STAMP;/);
    expect(readFileSync(file, 'utf8')).toMatch(/;27\.01\.2025;/);

    const r = await push(['--from', file, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(reports(r.stdout).filter((x) => x.result !== 'unchanged')).toEqual([
      expect.objectContaining({ key: '1', result: 'updated', fields: ['Preis'], old: { Preis: 39.5 }, new: { Preis: 41.25 } }),
    ]);
    expect(await server.stats()).toMatchObject({ updateRequests: 1, updates: 1 });
    await expectOnly(before, { '1': { Preis: 41.25 } });
  });

  itOnce('NDJSON: one edited line, one updated field', async () => {
    const file = join(dir, 'teile.ndjson');
    await exportTable(['--ndjson'], file);
    const before = await rows();
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    lines.find((l) => l.ID === 2).Aktiv = true;
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const r = await push(['--from', file, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(reports(r.stdout).filter((x) => x.result !== 'unchanged')).toEqual([expect.objectContaining({ key: '2', result: 'updated', fields: ['Aktiv'] })]);
    expect(await server.stats()).toMatchObject({ updateRequests: 1, updates: 1 });
    await expectOnly(before, { '2': { Aktiv: true } });
  });

  itOnce('JSON (a get-table --json array): one edited element, one updated field', async () => {
    const file = join(dir, 'teile.json');
    await exportTable(['--json'], file);
    const before = await rows();
    const all = JSON.parse(readFileSync(file, 'utf8'));
    all.find((l: { ID: number }) => l.ID === 10).Zeit = '01:02:03';
    writeFileSync(file, JSON.stringify(all, null, 2));
    const r = await push(['--from', file, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(await server.stats()).toMatchObject({ updateRequests: 1, updates: 1 });
    await expectOnly(before, { '10': { Zeit: 3723000 } });
  });

  describe.skipIf(!python)('xlsx', () => {
    itOnce('the workbook of get-table --xlsx --meta, edited and saved by openpyxl: only the edited cells are written', async () => {
      const file = join(dir, 'teile.xlsx');
      await exportTable(['--xlsx'], file);
      const before = await rows();
      // openpyxl saves as Excel does: shared strings for every text, dates as serial numbers with a date style.
      execFileSync(python!, [
        '-c',
        `
import sys, datetime, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
head = [c.value for c in ws[1]]
for row in ws.iter_rows(min_row=2):
    cells = dict(zip(head, row))
    if cells['ID'].value == 2:
        cells['Name'].value = 'Krippe groß & <klein>'
    if cells['ID'].value == 3:
        cells['Datum'].value = datetime.datetime(2026, 12, 31)
        cells['Preis'].value = 12.75
wb.save(sys.argv[1])
`,
        file,
      ]);
      const r = await push(['--from', file, '--yes']);
      expect(r.code, r.stderr).toBe(0);
      const changed = reports(r.stdout).filter((x) => x.result !== 'unchanged');
      expect(changed.map((x) => [x.key, x.result, x.fields])).toEqual([
        ['2', 'updated', ['Name']],
        ['3', 'updated', ['Preis', 'Datum']],
      ]);
      expect(await server.stats()).toMatchObject({ updateRequests: 1, updates: 2 });
      await expectOnly(before, { '2': { Name: 'Krippe groß & <klein>' }, '3': { Preis: 12.75, Datum: '31!12!2026' } });
    });

    itOnce('a text field retyped as a number in Excel is refused for its row (no silent 01067 → 1067)', async () => {
      const file = join(dir, 'teile.xlsx');
      await exportTable(['--xlsx'], file);
      execFileSync(python!, [
        '-c',
        `
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb.active
head = [c.value for c in ws[1]]
for row in ws.iter_rows(min_row=2):
    cells = dict(zip(head, row))
    if cells['ID'].value == 1:
        cells['PLZ'].value = 1069
wb.save(sys.argv[1])
`,
        file,
      ]);
      const r = await push(['--from', file, '--yes', '--continue-on-error']);
      expect(r.code).toBe(65);
      expect(reports(r.stdout).find((x) => x.key === '1')).toMatchObject({
        result: 'invalid',
        message: expect.stringMatching(/number 1069 where the field is text/),
      });
      expect((await row('1')).PLZ).toBe('01067');
    });
  });
});

describe('a record saved on the server since the export', () => {
  async function editedCsv() {
    const file = join(dir, 'teile.csv');
    await exportTable(['--csv'], file);
    const records = parse(readFileSync(file), { columns: true }) as Array<Record<string, string>>;
    records.find((r) => r.ID === '1')!.Name = 'Meine Änderung';
    records.find((r) => r.ID === '3')!.Preis = '13';
    writeFileSync(file, stringify(records, { header: true }));
    return file;
  }

  itOnce('is a conflict: left as the server has it, reported with file and server values, and a command to re-export it', async () => {
    const file = await editedCsv();
    await server.control('row', { table: 'Teile', key: '1', set: { Name: 'Fremdänderung' } });
    const before = await rows();
    const report = join(dir, 'konflikte.csv');
    const r = await push(['--from', file, '--yes', '--continue-on-error', '--conflicts', report]);
    expect(r.code).toBe(65);
    const out = reports(r.stdout);
    expect(out.find((x) => x.key === '1')).toMatchObject({
      result: 'conflict',
      fields: ['Name'],
      old: { Name: 'Fremdänderung' },
      new: { Name: 'Meine Änderung' },
      stampExported: before['1'].__STAMP - 1,
    });
    expect(out.find((x) => x.key === '3')).toMatchObject({ result: 'updated' });
    await expectOnly(before, { '3': { Preis: 13 } });
    // Nothing was attempted for the conflict: the audit log holds the one write.
    expect(outcomes().map((a) => [a.key, a.field, a.result])).toEqual([['3', 'Preis', 'updated']]);

    const conflicts = parse(readFileSync(report), { columns: true }) as Array<Record<string, string>>;
    expect(conflicts).toEqual([
      expect.objectContaining({
        key: '1',
        field: 'Name',
        file_value: 'Meine Änderung',
        exported_value: '',
        server_value: 'Fremdänderung',
        exported_stamp: String(before['1'].__STAMP - 1),
        server_stamp: String(before['1'].__STAMP),
      }),
    ]);
    expect(r.stderr).toMatch(/1 record\(s\) in conflict were left as the server has them; see .*konflikte\.csv/);
    const followUp = /re-export them with: (legacy get-table .*)$/m.exec(r.stderr)![1]!;
    expect(followUp).toBe(`legacy get-table Teile --meta --filter 'ID in [1]' -o ${file.replace(/\.csv$/, '-conflicts.csv')}`);
    // The follow-up command re-exports exactly the conflicting records, at their new stamp.
    const args = followUp
      .replace(/^legacy /, '')
      .match(/'[^']*'|\S+/g)!
      .map((a) => a.replace(/^'|'$/g, ''));
    const again = await runCli(args, { env: server.env });
    expect(again.code, again.stderr).toBe(0);
    const reexported = parse(readFileSync(file.replace(/\.csv$/, '-conflicts.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(reexported.map((x) => [x.__KEY, x.__STAMP, x.Name])).toEqual([['1', String(before['1'].__STAMP), 'Fremdänderung']]);
  });

  itOnce('saved between the read and the write: 4D refuses the stamp, the conflict carries the exported value too', async () => {
    const file = await editedCsv();
    await server.control('before-update', { table: 'Teile', key: '1', set: { Name: 'Gleichzeitig' } });
    const report = join(dir, 'konflikte.xlsx');
    const r = await push(['--from', file, '--yes', '--continue-on-error', '--conflicts', report]);
    expect(r.code).toBe(65);
    expect(reports(r.stdout).find((x) => x.key === '1')).toMatchObject({
      result: 'conflict',
      exported: { Name: 'Straße "Süd", Nr. 5' },
      old: { Name: 'Gleichzeitig' },
      new: { Name: 'Meine Änderung' },
    });
    expect((await row('1')).Name).toBe('Gleichzeitig');
    expect((await server.stats()).conflicts).toBe(1);
    // A workbook report: its first bytes are a zip's.
    expect(readFileSync(report).subarray(0, 2).toString()).toBe('PK');
  });

  itOnce('--force overwrites it, and the audit log says the write was forced', async () => {
    const file = await editedCsv();
    await server.control('row', { table: 'Teile', key: '1', set: { Name: 'Fremdänderung' } });
    const r = await push(['--from', file, '--yes', '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect((await row('1')).Name).toBe('Meine Änderung');
    const forced = outcomes().find((a) => a.key === '1')!;
    expect(forced).toMatchObject({ field: 'Name', result: 'updated', forced: true, old: 'Fremdänderung', new: 'Meine Änderung' });
    expect(reports(r.stdout).find((x) => x.key === '1')).toMatchObject({ result: 'updated', forced: true });
  });

  itOnce('without __STAMP in the file: today’s behaviour, and one line saying later edits are not protected', async () => {
    const file = join(dir, 'ohne.csv');
    writeFileSync(file, 'ID,Name\n1,Ohne Stempel\n');
    const r = await push(['--from', file, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/has no __STAMP column: changes made on the server since the file was exported are not detected/),
    ]);
    expect((await row('1')).Name).toBe('Ohne Stempel');
  });
});

describe('--dry-run and bad values', () => {
  itOnce('--dry-run shows the diff and writes nothing', async () => {
    const file = join(dir, 'teile.csv');
    await exportTable(['--csv'], file);
    const records = parse(readFileSync(file), { columns: true }) as Array<Record<string, string>>;
    records.find((r) => r.ID === '2')!.Preis = '-4';
    writeFileSync(file, stringify(records, { header: true }));
    const before = await rows();
    const r = await push(['--from', file, '--dry-run', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(reports(r.stdout).filter((x) => x.result !== 'unchanged')).toEqual([
      expect.objectContaining({ key: '2', result: 'would-update', fields: ['Preis'], old: { Preis: -3 }, new: { Preis: -4 } }),
    ]);
    expect(await rows()).toEqual(before);
    expect((await server.stats()).updateRequests).toBe(0);
    expect(auditLines()).toEqual([]);
  });

  itOnce('a value that would lose precision or change type is a per-row error; without --continue-on-error nothing is written', async () => {
    const file = join(dir, 'teile.csv');
    await exportTable(['--csv'], file);
    const records = parse(readFileSync(file), { columns: true }) as Array<Record<string, string>>;
    records.find((r) => r.ID === '1')!.Preis = '39.50000000000000001';
    records.find((r) => r.ID === '3')!.Name = 'geändert';
    writeFileSync(file, stringify(records, { header: true }));
    const stopped = await push(['--from', file, '--yes']);
    expect(stopped.code).toBe(65);
    expect(stopped.stderr).toMatch(/line 1: invalid value for Preis \(number\): "39.50000000000000001" cannot be stored exactly.*nothing was written/);
    expect((await server.stats()).updateRequests).toBe(0);

    const r = await push(['--from', file, '--yes', '--continue-on-error']);
    expect(r.code).toBe(65);
    expect(reports(r.stdout).map((x) => [x.key, x.result])).toEqual([
      ['1', 'invalid'],
      ['2', 'unchanged'],
      ['3', 'updated'],
      ['10', 'unchanged'],
    ]);
    expect((await row('1')).Preis).toBe(39.5);
    expect((await row('3')).Name).toBe('geändert');
  });
});
