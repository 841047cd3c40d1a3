/** push-field updates safely, with optimistic locking, an audit log, and no blind re-sends. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, runCli, tempDir } from '../helpers/cli.js';
import { runMain } from '../helpers/run.js';
import { itOnce, startServer, URL_DECODINGS, type TestServer } from '../helpers/emulator.js';
import { auditLines as readAudit, auditOutcomes } from '../helpers/audit.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));

let server: TestServer;
let urlDecoding: (typeof URL_DECODINGS)[number] = 'whole';
beforeEach(async () => {
  server = await startServer({ data: FIXTURE, urlDecoding });
});
afterEach(() => server.stop());
afterAll(cleanupTempDirs);

const row = (key: string) => server.control<Record<string, any>>(`row/Teile/${key}`);
const auditLines = () => readAudit(server.dataDir);
const outcomes = () => auditOutcomes(server.dataDir);
const push = (args: string[], extra: Record<string, string> = {}) => runCli(['push-field', 'Teile', ...args], { env: { ...server.env, ...extra } });

describe('single record', () => {
  it('updates the value, increments the stamp, and audits the write', async () => {
    const before = await row('1');
    const r = await push(['1', 'Name', 'Neuer Name', '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      key: '1',
      result: 'updated',
      old: { Name: 'Straße "Süd", Nr. 5' },
      new: { Name: 'Neuer Name' },
      stampBefore: before.__STAMP,
      stampAfter: before.__STAMP + 1,
    });
    const after = await row('1');
    expect(after.Name).toBe('Neuer Name');
    expect(after.__STAMP).toBe(before.__STAMP + 1);
    expect((await server.stats()).updates).toBe(1);
    // Write-ahead: a pending line before the request, the outcome after it, same request id.
    const audit = auditLines();
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({ key: '1', field: 'Name', result: 'pending', stampBefore: before.__STAMP, old: 'Straße "Süd", Nr. 5', new: 'Neuer Name' });
    expect(audit[1]).toMatchObject({
      env: 'test',
      baseUrl: server.url,
      table: 'Teile',
      key: '1',
      field: 'Name',
      result: 'updated',
      stampBefore: before.__STAMP,
      stampAfter: before.__STAMP + 1,
    });
    expect(audit[1].requestId).toMatch(/^[0-9a-f]{8}$/);
    expect(audit[0].requestId).toBe(audit[1].requestId);
  });

  itOnce('coerces with the catalog type: dates, numbers, booleans, times, objects', async () => {
    expect((await push(['2', 'Datum', '2026-02-03', '--yes'])).code).toBe(0);
    expect((await row('2')).Datum).toBe('3!2!2026');
    expect((await push(['2', 'Preis', '12.5', '--yes'])).code).toBe(0);
    expect((await row('2')).Preis).toBe(12.5);
    expect((await push(['2', 'Aktiv', 'yes', '--yes'])).code).toBe(0);
    expect((await row('2')).Aktiv).toBe(true);
    expect((await push(['2', 'Zeit', '08:30', '--yes'])).code).toBe(0);
    expect((await row('2')).Zeit).toBe(30600000);
    expect((await push(['2', 'Daten', '{"a":[1,2]}', '--yes'])).code).toBe(0);
    expect((await row('2')).Daten).toEqual({ a: [1, 2] });
    expect((await push(['1', 'Datum', '', '--yes'])).code).toBe(0);
    expect((await row('1')).Datum).toBe('0!0!0');
  });

  itOnce('the same value already: no write, exit 0', async () => {
    const r = await push(['1', 'PLZ', '01067', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/nothing written/);
    expect((await server.stats()).updates).toBe(0);
    expect(auditLines()).toHaveLength(0);
    // Equal in meaning, different in spelling: still unchanged.
    expect((await push(['1', 'Datum', '2025-01-27', '--yes'])).code).toBe(0);
    expect((await server.stats()).updates).toBe(0);
  });

  itOnce('invalid values: exit 65 naming field, type and value; no write', async () => {
    for (const [field, value, pattern] of [
      ['Preis', 'zwölf', /Preis \(number\).*zwölf.*not a number/],
      ['Datum', '2025-02-30', /Datum \(date\).*not a date/],
      ['Aktiv', 'vielleicht', /Aktiv \(bool\)/],
      ['Zeit', '25:99', /Zeit \(duration\)/],
      ['Daten', '{broken', /Daten \(object\)/],
    ] as const) {
      const r = await push(['1', field, value, '--yes']);
      expect(r.code, `${field}=${value}`).toBe(65);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect((await server.stats()).updates).toBe(0);
  });

  itOnce('unknown field, table or key: exit 65 with suggestions', async () => {
    const field = await push(['1', 'Nmae', 'x', '--yes']);
    expect(field.code).toBe(65);
    expect(field.stderr).toMatch(/did you mean Name/);
    const table = await runCli(['push-field', 'Teil', '1', 'Name', 'x', '--yes'], { env: server.env });
    expect(table.code).toBe(65);
    expect(table.stderr).toMatch(/did you mean Teile/);
    const key = await push(['999', 'Name', 'x', '--yes']);
    expect(key.code).toBe(65);
    expect(key.stderr).toMatch(/no record with key 999/);
  });

  itOnce('not on a terminal without --yes: exit 64 and no write; --dry-run writes nothing', async () => {
    const r = await push(['1', 'Name', 'x']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--yes/);
    const dry = await push(['1', 'Name', 'x', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/dry run/);
    expect((await server.stats()).updates).toBe(0);
    expect((await row('1')).Name).toBe('Straße "Süd", Nr. 5');
  });

  itOnce('someone changed the same field meanwhile: conflict, exit 65, their value stays', async () => {
    await server.control('before-update', { table: 'Teile', key: '1', set: { Name: 'Von Kollegin' } });
    const r = await push(['1', 'Name', 'Von mir', '--yes']);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/Name was changed by someone else from "Straße \\"Süd\\", Nr. 5" to "Von Kollegin"; re-run to overwrite/);
    expect((await row('1')).Name).toBe('Von Kollegin');
    expect((await server.stats()).conflicts).toBe(1);
    expect(outcomes()).toEqual([expect.objectContaining({ result: 'conflict', key: '1' })]);
  });

  itOnce('someone changed another field meanwhile: retried with the new stamp and succeeds', async () => {
    await server.control('before-update', { table: 'Teile', key: '1', set: { Notiz: 'andere Änderung' } });
    const r = await push(['1', 'Name', 'Von mir', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    const after = await row('1');
    expect(after.Name).toBe('Von mir');
    expect(after.Notiz).toBe('andere Änderung');
  });

  itOnce('--force overwrites a concurrent change of the same field', async () => {
    await server.control('before-update', { table: 'Teile', key: '1', set: { Name: 'Von Kollegin' } });
    const r = await push(['1', 'Name', 'Von mir', '--yes', '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect((await row('1')).Name).toBe('Von mir');
  });

  it('a reset after the server saved the write: reported updated, no double write', async () => {
    await server.control('faults', { queue: [{ kind: 'reset-after-update', match: 'update', count: 1 }] });
    const r = await push(['1', 'Name', 'Einmal', '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).result).toBe('updated');
    expect((await server.stats()).updates).toBe(1);
    expect((await row('1')).Name).toBe('Einmal');
  });

  it('a reset before the server saved it: retried once, saved once', async () => {
    await server.control('faults', { queue: [{ kind: 'reset', match: 'update', count: 1 }] });
    const r = await push(['1', 'Name', 'Zweimal?', '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((await server.stats()).updates).toBe(1);
  });
});

describe.each(URL_DECODINGS)('bulk (%s URL decoding)', (mode) => {
  beforeAll(() => {
    urlDecoding = mode;
  });
  afterAll(() => {
    urlDecoding = 'whole';
  });

  itOnce('a mix of good, unchanged, conflicting, not-found and invalid rows gives an exact report', async () => {
    const dir = tempDir();
    const file = join(dir, 'in.csv');
    writeFileSync(file, 'ID,Preis,Name\n1,40,Straße "Süd" neu\n2,-3,=SUMME(A1)\n3,13,O\'Reilly & "Söhne" #1\n999,1,x\n10,abc,y\n');
    await server.control('before-update', { table: 'Teile', key: '3', set: { Preis: 99 } });
    const r = await runCli(['push-field', 'Teile', '--from', file, '--yes', '--continue-on-error'], { env: server.env });
    expect(r.code).toBe(65);
    const reports = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(reports.map((x: { key: string; result: string }) => [x.key, x.result])).toEqual([
      ['1', 'updated'],
      ['2', 'unchanged'],
      ['3', 'conflict'],
      ['999', 'not-found'],
      ['10', 'invalid'],
    ]);
    expect(reports[0]).toMatchObject({ line: 1, fields: ['Preis', 'Name'], old: { Preis: 39.5 }, new: { Preis: 40, Name: 'Straße "Süd" neu' } });
    expect((await row('1')).Preis).toBe(40);
    expect((await row('3')).Preis).toBe(99);
    // One audit line per attempted write (row 1: two fields; row 3: one conflicting field... per field).
    const audit = outcomes();
    expect(audit.filter((a) => a.key === '1')).toHaveLength(2);
    expect(audit.filter((a) => a.key === '3').every((a) => a.result === 'conflict')).toBe(true);
    expect(audit.some((a) => a.key === '2' || a.key === '999' || a.key === '10')).toBe(false);
  });

  itOnce('NDJSON input, batches, and stdin', async () => {
    const input = '{"ID":1,"Aktiv":false}\n{"ID":2,"Aktiv":true}\n{"ID":10,"Aktiv":false}\n';
    const r = await runCli(['push-field', 'Teile', '--from', '-', '--yes', '--batch-size', '2'], { env: server.env, input });
    expect(r.code, r.stderr).toBe(0);
    // The batch read (ID IN :1) was applied by the server, not replaced by one read per record.
    expect(r.stderr).not.toMatch(/one by one/);
    expect((await row('1')).Aktiv).toBe(false);
    expect((await row('2')).Aktiv).toBe(true);
    expect((await row('10')).Aktiv).toBe(false);
  });

  itOnce('stops at the first failing batch without --continue-on-error', async () => {
    const dir = tempDir();
    const file = join(dir, 'in.csv');
    writeFileSync(file, 'ID,Preis\n999,1\n1,41\n');
    const r = await runCli(['push-field', 'Teile', '--from', file, '--yes', '--batch-size', '1'], { env: server.env });
    expect(r.code).toBe(65);
    expect((await row('1')).Preis).toBe(39.5);
  });

  itOnce('bad input files: unknown column, empty file, invalid UTF-8, missing key column', async () => {
    const dir = tempDir();
    const cases: Array<[string, Buffer | string, RegExp, number]> = [
      ['unknown.csv', 'ID,Prise\n1,2\n', /did you mean Preis/, 65],
      ['empty.csv', '', /has no rows/, 65],
      ['latin1.csv', Buffer.concat([Buffer.from('ID,Name\n1,Stra'), Buffer.from([0xdf]), Buffer.from('e\n')]), /not valid UTF-8/, 65],
      ['nokey.csv', 'Name\nx\n', /no key column 'ID'/, 65],
      ['missing.csv', '', /cannot read/, 64],
    ];
    for (const [name, content, pattern, code] of cases) {
      const file = join(dir, name);
      if (name !== 'missing.csv') writeFileSync(file, content);
      const r = await runCli(['push-field', 'Teile', '--from', file, '--yes'], { env: server.env });
      expect(r.code, name).toBe(code);
      expect(r.stderr, name).toMatch(pattern);
    }
    expect((await server.stats()).updates).toBe(0);
  });
});

describe('permissions (4D privileges)', () => {
  it('a table that can be read but not updated: every row is reported forbidden, exit 77, nothing written', async () => {
    await server.stop();
    server = await startServer({ data: FIXTURE, urlDecoding, readOnlyTables: ['Teile'] });
    const dir = tempDir();
    const file = join(dir, 'in.csv');
    writeFileSync(file, 'ID,Preis\n1,40\n2,41\n');
    const bulk = await runCli(['push-field', 'Teile', '--from', file, '--yes', '--continue-on-error'], { env: server.env });
    expect(bulk.code, bulk.stderr).toBe(77);
    const reports = bulk.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(reports.map((x: { key: string; result: string }) => [x.key, x.result])).toEqual([
      ['1', 'forbidden'],
      ['2', 'forbidden'],
    ]);
    expect(reports[0].message).toMatch(/not allowed to update Teile/);
    expect((await row('1')).Preis).toBe(39.5);
    const single = await push(['1', 'Preis', '40', '--yes']);
    expect(single.code).toBe(77);
    expect(single.stderr).toMatch(/not allowed to update Teile/);
    expect(single.stderr).not.toMatch(/conflict|unavailable/);
    expect(single.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('the confirmation prompt', () => {
  itOnce('answering no writes nothing, says the write was cancelled and exits 1 (never "already set")', async () => {
    const r = await runMain(['push-field', 'Teile', '1', 'Preis', '40'], { env: server.env, stdinTty: true, input: 'n\n' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cancelled: nothing was written/);
    expect(r.stderr).not.toMatch(/already set|bug/);
    expect(r.stdout).toBe('');
    expect((await row('1')).Preis).toBe(39.5);
    expect(outcomes()).toHaveLength(0);
    const yes = await runMain(['push-field', 'Teile', '1', 'Preis', '40'], { env: server.env, stdinTty: true, input: 'y\n' });
    expect(yes.code, yes.stderr).toBe(0);
    expect((await row('1')).Preis).toBe(40);
  });
});
