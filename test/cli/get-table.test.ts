/** `get-table` streams whole tables out, byte-exact, under faults, safely to files. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanupTempDirs, collect, interruptCli, runCli, runShell, spawnCli, tempDir } from '../helpers/cli.js';
import { itOnce, startServer, URL_DECODINGS, type TestServer } from '../helpers/emulator.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));

afterAll(cleanupTempDirs);

describe.each(URL_DECODINGS)('exact output for a small fixture (%s URL decoding)', (urlDecoding) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ data: FIXTURE, urlDecoding });
  });
  afterAll(() => server.stop());

  it('CSV: RFC 4180, catalog order, key order, converted values', async () => {
    const r = await runCli(['get-table', 'Teile', '--csv'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      [
        'ID,Name,Notiz,PLZ,Preis,Aktiv,Datum,Leer,Zeit,Daten,Familie',
        '1,"Straße ""Süd"", Nr. 5","Zeile 1\nZeile 2; mit Semikolon",01067,39.5,true,2025-01-27,,20:35:41,"{""Coll"":[{""Art"":""Laden"",""Preis"":39.5}]}",A1',
        '2,=SUMME(A1),,00100,-3,false,,1999-12-01,,,',
        '3,"O\'Reilly & ""Söhne"" #1",@home,20095,12,false,1999-12-31,,01:00:00,{},A1',
        '10,Ärger & Co,"Komma, ""Zitat""",80331,0.1,true,2024-03-05,,00:00:00,"{""values"":[],""geerbt"":true}",B2',
        '',
      ].join('\n'),
    );
  });

  itOnce('every format carries the same data for the same row', async () => {
    const csv = await runCli(['get-table', 'Teile', '--csv', '--meta'], { env: server.env });
    const ndjson = await runCli(['get-table', 'Teile', '--ndjson', '--meta'], { env: server.env });
    const json = await runCli(['get-table', 'Teile', '--json', '--meta'], { env: server.env });
    for (const r of [csv, ndjson, json]) expect(r.code, r.stderr).toBe(0);
    const fromNd = ndjson.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const fromJson = JSON.parse(json.stdout);
    expect(fromJson).toEqual(fromNd);
    const rows = parse(csv.stdout, { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(fromNd.length);
    const asCell = (v: unknown) => (v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
    rows.forEach((row, i) => {
      for (const [k, v] of Object.entries(fromNd[i])) expect(row[k], `${k} of row ${i}`).toBe(asCell(v));
    });
    expect(fromNd[0]).toMatchObject({
      __KEY: '1',
      __STAMP: 1,
      ID: 1,
      Datum: '2025-01-27',
      Leer: null,
      Zeit: '20:35:41',
      Daten: { Coll: [{ Art: 'Laden', Preis: 39.5 }] },
      Familie: 'A1',
    });
  });

  itOnce('--raw keeps the server encoding', async () => {
    const r = await runCli(['get-table', 'Teile', '--ndjson', '--raw', '--fields', 'ID,Datum,Leer,Zeit,Familie'], { env: server.env });
    const first = JSON.parse(r.stdout.split('\n')[0]!);
    expect(first).toMatchObject({ ID: 1, Datum: '27!1!2025', Leer: '0!0!0', Zeit: 74141000 });
    expect(first.Familie.__deferred.__KEY).toBe('A1');
  });

  itOnce('--fields order, --delimiter, --bom, --no-header, --excel-safe', async () => {
    const r = await runCli(['get-table', 'Teile', '--fields', 'Name,ID', '--delimiter', ';', '--bom', '--excel-safe', '--where', 'ID<=3'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.startsWith('\ufeffName;ID\n')).toBe(true);
    expect(r.stdout).toContain("'=SUMME(A1);2\n");
    const nh = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header'], { env: server.env });
    expect(nh.stdout).toBe('1\n2\n3\n10\n');
  });

  itOnce('--where builds placeholders: quotes, & and # in a value are safe', async () => {
    const r = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header', '--where', `Name=O'Reilly & "Söhne" #1`], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('3\n');
    const wild = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header', '--where', 'Name=Str@', '--where', 'Preis>=1'], { env: server.env });
    expect(wild.stdout).toBe('1\n');
    const dates = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header', '--where', 'Datum>=2024-01-01'], { env: server.env });
    expect(dates.stdout).toBe('1\n10\n');
    const begin = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header', '--where', 'Name begin Ä'], { env: server.env });
    expect(begin.stdout).toBe('10\n');
  });

  itOnce('--count, --limit, --skip, --order-by', async () => {
    expect((await runCli(['get-table', 'Teile', '--count'], { env: server.env })).stdout).toBe('4\n');
    expect((await runCli(['get-table', 'Teile', '--count', '--where', 'Aktiv=true'], { env: server.env })).stdout).toBe('2\n');
    const page = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header', '--skip', '1', '--limit', '2'], { env: server.env });
    expect(page.stdout).toBe('2\n3\n');
    const ordered = await runCli(['get-table', 'Teile', '--fields', 'ID', '--no-header', '--order-by', 'Preis desc'], { env: server.env });
    expect(ordered.stdout).toBe('1\n3\n10\n2\n');
  });

  itOnce('unknown table or field: exit 65 with a suggestion', async () => {
    const table = await runCli(['get-table', 'teile'], { env: server.env });
    expect(table.code).toBe(65);
    expect(table.stderr).toMatch(/unknown table 'teile'.*did you mean Teile/);
    const field = await runCli(['get-table', 'Teile', '--fields', 'ID,Nmae'], { env: server.env });
    expect(field.code).toBe(65);
    expect(field.stderr).toMatch(/did you mean Name/);
    const where = await runCli(['get-table', 'Teile', '--where', 'Prise>1'], { env: server.env });
    expect(where.code).toBe(65);
    const order = await runCli(['get-table', 'Teile', '--order-by', 'Preiss'], { env: server.env });
    expect(order.code).toBe(65);
    const value = await runCli(['get-table', 'Teile', '--where', 'Preis>abc'], { env: server.env });
    expect(value.code).toBe(65);
    expect(value.stderr).toMatch(/not a number/);
    const malformed = await runCli(['get-table', 'Teile', '--where', 'Preis'], { env: server.env });
    expect(malformed.code).toBe(64);
  });

  itOnce('a filter the server rejects: exit 65 with its message, and no output file', async () => {
    const dir = tempDir();
    const out = join(dir, 'out.csv');
    const r = await runCli(['get-table', 'Teile', '--filter', 'Nmae = 1', '-o', out], { env: server.env });
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/rejected/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  itOnce('tables and describe', async () => {
    const t = await runCli(['tables'], { env: server.env });
    expect(t.stdout).toBe('Gruppe\nTeile\n');
    const d = await runCli(['describe', 'Teile', '--json'], { env: server.env });
    const json = JSON.parse(d.stdout);
    expect(json.key).toEqual(['ID']);
    expect(json.attributes.map((a: { name: string }) => a.name)).toContain('Familie');
    expect((await runCli(['describe', 'Teil'], { env: server.env })).code).toBe(65);
  });

  itOnce('--table shows a capped, width-fitted table and the total on stderr', async () => {
    const r = await runCli(['get-table', 'Teile', '--table', '--limit', '2'], { env: { ...server.env, COLUMNS: '80' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Straße');
    expect(r.stdout.split('\n').every((line) => [...line].length <= 120)).toBe(true);
    expect(r.stderr).toMatch(/showing 2 of 4 rows/);
  });
});

describe('large tables, faults, files and signals', () => {
  let server: TestServer;
  let clean: string;
  beforeAll(async () => {
    server = await startServer({ rows: { Artikel: 6000 }, maxSessions: 10 });
    const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '500'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    clean = r.stdout;
  });
  afterAll(() => server.stop());
  afterEach(async () => {
    await server.control('options', { faults: { rate: 0, expireEvery: 0 }, latencyMs: 0 });
    await server.control('faults', undefined, 'DELETE');
  });

  itOnce('the clean export has every row once, in key order', () => {
    const rows = parse(clean, { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(6000);
    const keys = rows.map((r) => r.UID!);
    expect(new Set(keys).size).toBe(6000);
    expect([...keys].sort()).toEqual(keys);
  });

  it('10% injected faults plus forced session expiry → byte-identical CSV', async () => {
    await server.control('options', { faults: { rate: 0.1, kinds: ['500', '503', 'reset', 'truncate'], seed: 42, expireEvery: 5 } });
    const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '500', '--retries', '6'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout === clean).toBe(true);
    const stats = await server.stats();
    expect(stats.faults.expire).toBeGreaterThan(0);
    expect(Object.values(stats.faults as Record<string, number>).reduce((a, b) => a + b, 0)).toBeGreaterThan(3);
  });

  it('concurrency does not change the output', async () => {
    const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '300', '--concurrency', '6'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout === clean).toBe(true);
  });

  itOnce('-o writes the same bytes atomically', async () => {
    const dir = tempDir();
    const out = join(dir, 'artikel.csv');
    const r = await runCli(['get-table', 'Artikel', '--csv', '--page-size', '500', '-o', out], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(readFileSync(out, 'utf8') === clean).toBe(true);
    expect(readdirSync(dir)).toEqual(['artikel.csv']);
  });

  itOnce('retries exhausted: a clean failure (69), never a silently short file', async () => {
    const dir = tempDir();
    const out = join(dir, 'artikel.csv');
    await server.control('options', { faults: { rate: 1, kinds: ['503'], seed: 1 } });
    const r = await runCli(['get-table', 'Artikel', '-o', out, '--retries', '1'], { env: server.env });
    expect(r.code).toBe(69);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([]);
  });

  itOnce('| head -n 3 ends with exit 0 and no EPIPE trace', async () => {
    const r = await runShell(`node ${BIN} get-table Artikel --csv --page-size 200 | head -n 3; echo "status=\${PIPESTATUS[0]}"`, { env: server.env });
    expect(r.stdout).toContain('status=0');
    expect(r.stdout.split('\n').slice(0, 3).join('\n')).toBe(clean.split('\n').slice(0, 3).join('\n'));
    expect(r.stderr).toBe('');
  });

  itOnce('Ctrl-C during -o: exit 130 and no file under the final name; only a resumable partial export beside it, or nothing', async () => {
    await server.control('options', { latencyMs: 300 });
    const dir = tempDir();
    const out = join(dir, 'artikel.csv');
    const r = await interruptCli(['get-table', 'Artikel', '-o', out, '--page-size', '100', '--concurrency', '1'], { env: server.env });
    expect(r.code).toBe(130);
    expect(existsSync(out)).toBe(false);
    // Before the first page: nothing; after it: the partial file with its record (get-table-resume.test.ts), no temporary file.
    const left = readdirSync(dir).sort();
    expect([[], ['.artikel.csv.partial', '.artikel.csv.resume.json']]).toContainEqual(left);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  itOnce('the server down: exit 69 naming the URL', async () => {
    const r = await runCli(['get-table', 'Artikel', '--retries', '1'], {
      env: { ...server.env, LEGACY_BASE_URL: 'http://127.0.0.1:9', LEGACY_CONFIG_DIR: tempDir() },
    });
    expect(r.code).toBe(69);
    expect(r.stderr).toContain('http://127.0.0.1:9');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('-o picks the format from its extension (issue 22 item 7)', () => {
  itOnce('.json, .ndjson and .xlsx without a flag write that format; a contradicting flag is exit 64 and writes nothing', async () => {
    const server = await startServer({ maxSessions: 3 });
    try {
      const dir = tempDir();
      const base = ['get-table', 'Kunden', '--limit', '5'];
      expect((await runCli([...base, '-o', join(dir, 'k.json')], { env: server.env })).code).toBe(0);
      expect(JSON.parse(readFileSync(join(dir, 'k.json'), 'utf8'))).toHaveLength(5);
      expect((await runCli([...base, '-o', join(dir, 'k.ndjson')], { env: server.env })).code).toBe(0);
      expect(
        readFileSync(join(dir, 'k.ndjson'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l)),
      ).toHaveLength(5);
      expect((await runCli([...base, '-o', join(dir, 'k.xlsx')], { env: server.env })).code).toBe(0);
      expect(readFileSync(join(dir, 'k.xlsx')).subarray(0, 2).toString('latin1')).toBe('PK');
      expect((await runCli([...base, '-o', join(dir, 'k.txt')], { env: server.env })).code).toBe(0);
      expect(readFileSync(join(dir, 'k.txt'), 'utf8').split('\n')[0]).toMatch(/^KundenNr,/);
      const clash = await runCli([...base, '--csv', '-o', join(dir, 'clash.json')], { env: server.env });
      expect(clash.code).toBe(64);
      expect(clash.stderr).toMatch(/names a JSON file, but --csv asks for CSV/);
      expect(existsSync(join(dir, 'clash.json'))).toBe(false);
      expect((await runCli([...base, '--json', '-o', join(dir, 'same.json')], { env: server.env })).code).toBe(0);
    } finally {
      await server.stop();
    }
  });
});

describe('--where on a date (issue 22 item 10)', () => {
  itOnce('> and < on a date work on a server that refuses strict comparisons on dates, with exactly the rows they mean', async () => {
    // Some servers answer `created_date > …` with 4D error 1112 "Wrong comparison operator"; on a
    // date (no time of day) `> D` is `>= D+1` and `< D` is `<= D-1`, which every server takes.
    const server = await startServer({ strictDateCompare: 'reject' });
    try {
      const all = await runCli(['get-table', 'Kunden', '--fields', 'KundenNr,created_date', '--csv'], { env: server.env });
      expect(all.code, all.stderr).toBe(0);
      const rows = parse(all.stdout, { columns: true }) as Array<{ KundenNr: string; created_date: string }>;
      const dates = rows.map((r) => r.created_date).filter(Boolean);
      // A day that some rows were created on, so the boundary itself is tested.
      const day = dates.sort()[Math.floor(dates.length / 2)]!;
      const keys = (out: string) => (parse(out, { columns: true }) as Array<{ KundenNr: string }>).map((r) => r.KundenNr).sort();
      for (const [op, keep] of [
        ['>', (d: string) => d > day],
        ['<', (d: string) => d < day],
      ] as const) {
        const r = await runCli(['get-table', 'Kunden', '--fields', 'KundenNr', '--where', `created_date${op}${day}`, '--csv'], { env: server.env });
        expect(r.code, r.stderr).toBe(0);
        const expected = rows
          .filter((x) => x.created_date !== '' && keep(x.created_date))
          .map((x) => x.KundenNr)
          .sort();
        expect(expected.length).toBeGreaterThan(0);
        expect(keys(r.stdout), `created_date${op}${day}`).toEqual(expected);
        const count = await runCli(['get-table', 'Kunden', '--where', `created_date${op}${day}`, '--count'], { env: server.env });
        expect(count.stdout.trim()).toBe(String(expected.length));
      }
      expect(rows.some((x) => x.created_date === day)).toBe(true);
    } finally {
      await server.stop();
    }
  });
});

describe('Ctrl-C and the export entity set (issue 22 item 10)', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('%s during an export releases its entity set before exit 130, in the same session', async (signal) => {
    const server = await startServer({ rows: { Artikel: 3000 }, latencyMs: 200 });
    try {
      const child = spawnCli(['get-table', 'Artikel', '--csv', '--page-size', '100', '--concurrency', '1'], { env: server.env });
      const done = collect(child);
      // Wait until the export is under way: its entity set exists on the server.
      for (let i = 0; i < 100 && (await server.stats()).entitySets === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await server.stats()).entitySets).toBe(1);
      const before = await server.stats();
      child.kill(signal);
      const r = await done;
      expect(r.code).toBe(130);
      expect(r.stderr).toContain(`legacy: interrupted (${signal})`);
      const after = await server.stats();
      expect(after.entitySets).toBe(0);
      expect(after.sessionsCreated).toBe(before.sessionsCreated); // released in the run's session, none opened for it
    } finally {
      await server.stop();
    }
  });
});
