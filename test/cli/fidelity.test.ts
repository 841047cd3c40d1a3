/**
 * Right against every 4D server, not only our emulator. The emulator plays each server
 * the references leave possible (URL decoding order, a server that drops $filter, one that
 * recreates lost entity sets without $params, lifeTime in minutes or seconds, transient 4D-shaped
 * 5xx); the CLI must be right under all of them: exact rows, or a loud failure with nothing written.
 * In-process (main(argv, io)) except where a process is needed.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { startServer, URL_DECODINGS, type TestServer } from '../helpers/emulator.js';
import { runMain, type MainResult } from '../helpers/run.js';

afterAll(cleanupTempDirs);

type Row = Record<string, unknown>;

const ndjson = (r: MainResult): Row[] =>
  r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Row);
const oneLine = (r: MainResult) => expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
/** 4D's text `=`: case-insensitive. */
const same = (a: unknown, b: string) => typeof a === 'string' && a.toLowerCase() === b.toLowerCase();

describe.each(URL_DECODINGS)('filters mean the same under %s URL decoding', (urlDecoding) => {
  let server: TestServer;
  let all: Row[];
  let city: string;
  beforeAll(async () => {
    server = await startServer({ urlDecoding, rows: { Kunden: 400 } });
    const r = await runMain(['get-table', 'Kunden', '--ndjson'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    all = ndjson(r);
    expect(all).toHaveLength(400);
    // A city with some customers, but not most of them.
    const counts = new Map<string, number>();
    for (const row of all) counts.set(String(row.Ort), (counts.get(String(row.Ort)) ?? 0) + 1);
    city = [...counts.entries()].filter(([, n]) => n >= 5 && n < 200).sort((a, b) => b[1] - a[1])[0]![0];
  });
  afterAll(() => server.stop());

  const keys = (rows: Row[]) => rows.map((r) => r.KundenNr);

  it('--where Ort=<city> returns exactly the matching rows; --count the matching count', async () => {
    const expected = all.filter((r) => same(r.Ort, city));
    const r = await runMain(['get-table', 'Kunden', '--where', `Ort=${city}`, '--ndjson'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(keys(ndjson(r))).toEqual(keys(expected));
    const count = await runMain(['get-table', 'Kunden', '--where', `Ort=${city}`, '--count'], { env: server.env });
    expect(count.stdout).toBe(`${expected.length}\n`);
  });

  it("--where 'KundenNr>=N', --filter \"Ort = 'X'\", and both together", async () => {
    const n = Number(all[300]!.KundenNr);
    const ge = await runMain(['get-table', 'Kunden', '--where', `KundenNr>=${n}`, '--fields', 'KundenNr', '--ndjson'], { env: server.env });
    expect(keys(ndjson(ge))).toEqual(keys(all.filter((r) => Number(r.KundenNr) >= n)));
    const raw = await runMain(['get-table', 'Kunden', '--filter', `Ort = '${city}'`, '--ndjson'], { env: server.env });
    expect(raw.code, raw.stderr).toBe(0);
    expect(keys(ndjson(raw))).toEqual(keys(all.filter((r) => same(r.Ort, city))));
    const both = await runMain(['get-table', 'Kunden', '--filter', `Ort = '${city}'`, '--where', `KundenNr>=${n}`, '--count'], { env: server.env });
    expect(both.stdout).toBe(`${all.filter((r) => same(r.Ort, city) && Number(r.KundenNr) >= n).length}\n`);
  });

  it('values with URL-special characters arrive intact (& = + # % quotes, a backslash)', async () => {
    for (const value of [`O'Brien & "Partner" = 100% #1 + 2`, 'a\\b', 'x%3D1', '+']) {
      const r = await runMain(['get-table', 'Kunden', '--where', `Firma=${value}`, '--count'], { env: server.env });
      expect(r.code, `${value}: ${r.stderr}`).toBe(0);
      expect(r.stdout, value).toBe('0\n');
    }
  });
});

describe('a server that ignores $filter (--ignore-filters)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ ignoreFilters: true, rows: { Kunden: 200, Artikel: 300 } });
  });
  afterAll(() => server.stop());

  it('every filtered read exits 65 with one line and writes no output file', async () => {
    const dir = tempDir();
    const out = join(dir, 'out.csv');
    for (const args of [
      ['--where', 'Ort=Dresden', '-o', out],
      ['--filter', "Ort = 'Dresden'", '-o', out],
      ['--where', 'KundenNr>=10100', '--ndjson', '-o', join(dir, 'out.ndjson')],
      ['--where', 'Ort=Dresden', '--count'],
      ['--where', 'Ort=Dresden', '--ndjson'],
    ]) {
      const r = await runMain(['get-table', 'Kunden', ...args], { env: server.env });
      expect(r.code, args.join(' ')).toBe(65);
      oneLine(r);
      expect(r.stderr).toMatch(/does not apply \$filter/);
      expect(r.stdout).toBe('');
    }
    expect(readdirSync(dir)).toEqual([]);
    // An unfiltered export is still fine.
    expect((await runMain(['get-table', 'Kunden', '--count'], { env: server.env })).stdout).toBe('200\n');
  });

  it('a server that starts dropping filters after a good canary: rows give it away; a raw --filter and a --count ask again', async () => {
    const env = { ...server.env, LEGACY_CONFIG_DIR: tempDir() };
    await server.control('options', { ignoreFilters: false });
    try {
      const good = await runMain(['get-table', 'Kunden', '--where', 'Ort=Dresden', '--count'], { env });
      expect(good.code, good.stderr).toBe(0);
      await server.control('options', { ignoreFilters: true });
      // --where conditions are checked on the rows, so the cached canary may stand: the rows give it away.
      const dir = tempDir();
      const r = await runMain(['get-table', 'Kunden', '--where', 'Ort=Dresden', '--fields', 'KundenNr', '-o', join(dir, 'k.csv')], { env });
      expect(r.code).toBe(65);
      oneLine(r);
      expect(r.stderr).toMatch(/did not apply the filter Ort=Dresden: it sent a row of Kunden with Ort=/);
      // No row check covers a raw --filter or a --count: the canary is asked again (issue 22 item 3).
      const raw = await runMain(['get-table', 'Kunden', '--filter', "Ort = 'Dresden'", '-o', join(dir, 'f.csv')], { env });
      expect(raw.code).toBe(65);
      oneLine(raw);
      expect(raw.stderr).toMatch(/does not apply \$filter/);
      const count = await runMain(['get-table', 'Kunden', '--where', 'Ort=Dresden', '--count'], { env });
      expect(count.code).toBe(65);
      expect(count.stdout).toBe('');
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      await server.control('options', { ignoreFilters: true });
    }
  });

  it('sync says the window was not applied and still ends equal (it reads everything)', async () => {
    const env = { ...server.env, LEGACY_CONFIG_DIR: tempDir(), LEGACY_DATA_DIR: tempDir() };
    const first = await runMain(['sync', 'Artikel', '--json'], { env });
    expect(first.code, first.stderr).toBe(0);
    const second = await runMain(['sync', 'Artikel', '--json'], { env });
    expect(second.code, second.stderr).toBe(0);
    const t = JSON.parse(second.stdout).tables[0];
    expect([t.mode, t.reason]).toEqual(['full', 'window not applied by the server']);
    expect(t.fetched).toBe(300);
    expect(second.stderr).toMatch(/incremental window cannot be applied/);
  });

  it('push-field --from: the batch read is verified and replaced by reads per record', async () => {
    const keys = ndjson(await runMain(['get-table', 'Kunden', '--fields', 'KundenNr', '--ndjson', '--limit', '3', '--skip', '50'], { env: server.env })).map(
      (r) => r.KundenNr,
    );
    const r = await runMain(['push-field', 'Kunden', '--from', '-', '--yes', '--report', 'ndjson'], {
      env: server.env,
      input: `KundenNr,Notiz\n${keys.map((k) => `${k},geprüft ${k}`).join('\n')}\n`,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/did not apply the batch read's filter/);
    expect(ndjson(r).map((x) => x.result)).toEqual(['updated', 'updated', 'updated']);
    for (const k of keys) expect((await server.control<Row>(`row/Kunden/${k}`)).Notiz).toBe(`geprüft ${k}`);
  });
});

describe('lost entity sets recreated without $params (--saved-filter-without-params)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ savedFilterWithoutParams: true, rows: { Kunden: 400 }, maxSessions: 20 });
  });
  afterAll(() => server.stop());

  it('a --where export is exact or fails cleanly, never wider', async () => {
    const expected = ndjson(await runMain(['get-table', 'Kunden', '--where', 'KundenNr>=10200', '--ndjson'], { env: server.env }));
    expect(expected).toHaveLength(201);
    let restarts = 0;
    let failures = 0;
    for (const expireEvery of [4, 7, 9]) {
      // The server drops the session (and its entity sets) every n data requests; the client adopts
      // the new session, and the next page asks for the set by id with $savedfilter.
      await server.control('options', { faults: { expireEvery } });
      const dir = tempDir();
      const out = join(dir, 'k.ndjson');
      const r = await runMain(['get-table', 'Kunden', '--where', 'KundenNr>=10200', '--ndjson', '--page-size', '40', '--concurrency', '1', '-o', out], {
        env: server.env,
      });
      if (r.code === 0) {
        expect(
          readFileSync(out, 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l)),
        ).toEqual(expected);
        if (/starting the export again/.test(r.stderr)) restarts++;
      } else {
        // Failed again after its one restart: the warning, then the error.
        expect(r.code, r.stderr).toBe(75);
        expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^legacy: the server lost the stored selection of Kunden .* \(run the export again\)$/);
        expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
        // Nothing under the final name: at most the complete pages, resumable (get-table-resume.test.ts).
        expect([[], ['.k.ndjson.partial', '.k.ndjson.resume.json']]).toContainEqual(readdirSync(dir).sort());
        failures++;
      }
    }
    await server.control('options', { faults: { expireEvery: 0 } });
    // The widening really happened (or this test proves nothing).
    expect(restarts + failures).toBeGreaterThan(0);
    expect((await server.stats()).faults.expire).toBeGreaterThan(0);
  });
});

describe('pages not as asked (--broken-paging): never repeated or missing rows with exit 0', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ rows: { Artikel: 1000 } });
  });
  afterAll(() => server.stop());
  afterEach(() => server.control('options', { brokenPaging: 'none' }));

  const MODES = [
    ['ignore-top', /sent \d+ rows where at most 300 were asked/],
    ['ignore-skip', /started the page at row 0 where row 300 was asked/],
    ['short', /(holds 1000 rows but its pages gave 996|started the page)/],
  ] as const;
  const PATHS = [
    ['entity set, bytes', [], {}],
    ['entity set, JSON.parse', [], { LEGACY_TRANSCODE: '0' }],
    ['$skip/$top, bytes', ['--no-entityset'], {}],
  ] as const;

  it.each(MODES.flatMap(([mode, message]) => PATHS.map(([path, args, env]) => [mode, path, message, args, env] as const)))(
    '%s, %s: exit 65, one line, no file',
    async (mode, path, message, args, env) => {
      await server.control('options', { brokenPaging: mode });
      const dir = tempDir();
      const r = await runMain(['get-table', 'Artikel', '--csv', '--page-size', '300', '-o', join(dir, 'a.csv'), ...args], { env: { ...server.env, ...env } });
      if (mode === 'short' && path.startsWith('$skip')) {
        // Plain paging cannot tell a short page from a table that shrank: the count check warns.
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(/wrote 996 rows but the server counted 1000/);
        return;
      }
      expect(r.code, r.stderr).toBe(65);
      oneLine(r);
      expect(r.stderr).toMatch(message);
      expect(readdirSync(dir)).toEqual([]);
    },
  );
});

describe('pages not as asked in an incremental sync', () => {
  it('exit 65 naming the page, not a fallback to a full read as if the server rejected the window', async () => {
    const server = await startServer({ rows: { Artikel: 1500 } });
    try {
      const db = join(tempDir(), 's.sqlite');
      expect((await runMain(['sync', 'Artikel', '--db', db], { env: server.env })).code).toBe(0);
      await server.control('mutate', { table: 'Artikel', update: 20 });
      await server.control('options', { brokenPaging: 'ignore-top' });
      const r = await runMain(['sync', 'Artikel', '--db', db, '--page-size', '5'], { env: server.env });
      expect(r.code, r.stderr).toBe(65);
      expect(r.stderr).toMatch(/where at most 5 were asked/);
      expect(r.stderr).not.toMatch(/rejected the incremental filter/);
    } finally {
      await server.stop();
    }
  });
});

describe('integers beyond 2^53 (long64): carried exactly, never a rounded number (test/cli/long64.test.ts has the rest)', () => {
  let server: TestServer;
  beforeAll(async () => {
    const fixture = join(tempDir(), 'big.json');
    const rows = [
      { ID: 1, Menge: 9007199254740991 },
      { ID: 2, Menge: 2 ** 53 + 2 },
    ];
    writeFileSync(
      fixture,
      JSON.stringify({
        dataClasses: [
          {
            name: 'Zaehler',
            key: 'ID',
            attributes: [
              { name: 'ID', type: 'long' },
              { name: 'Menge', type: 'long64' },
            ],
            rows,
          },
        ],
      }),
    );
    server = await startServer({ data: fixture });
  });
  afterAll(() => server.stop());

  it.each([
    [['--csv'], 'ID,Menge\n1,9007199254740991\n2,9007199254740994\n'],
    [['--csv', '--raw'], 'ID,Menge\n1,9007199254740991\n2,9007199254740994\n'],
    [['--ndjson'], '{"ID":1,"Menge":9007199254740991}\n{"ID":2,"Menge":9007199254740994}\n'],
    [['--json'], '[\n{"ID":1,"Menge":9007199254740991},\n{"ID":2,"Menge":9007199254740994}\n]\n'],
  ])('get-table %j: the digits the server sent, exit 0', async (args, want) => {
    const dir = tempDir();
    const file = join(dir, 'z.out');
    const r = await runMain(['get-table', 'Zaehler', '-o', file, ...(args as string[])], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(want);
  });

  it('sync stores it exactly (exit 0), where it used to stop with 65', async () => {
    const db = join(tempDir(), 'z.sqlite');
    const r = await runMain(['sync', 'Zaehler', '--db', db], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    const copy = new Database(db, { readonly: true });
    try {
      const rows = copy.prepare('SELECT "Menge" FROM "Zaehler" ORDER BY "ID"').safeIntegers(true).all() as Array<{ Menge: bigint }>;
      expect(rows.map((row) => row.Menge)).toEqual([9007199254740991n, 9007199254740994n]);
    } finally {
      copy.close();
    }
  });
});

describe('4D-shaped 5xx answers', () => {
  let server: TestServer;
  let clean: string;
  beforeAll(async () => {
    server = await startServer({ rows: { Artikel: 3000 }, maxSessions: 10 });
    const r = await runMain(['get-table', 'Artikel', '--csv', '--page-size', '200'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    clean = r.stdout;
  });
  afterAll(() => server.stop());
  afterEach(() => server.control('options', { faults: { rate: 0 } }));

  it('a 10% mix of 500 and 503 with __ERROR bodies: retried, the CSV is byte-identical', async () => {
    await server.control('options', { faults: { rate: 0.1, kinds: ['4d500', '4d503'], seed: 7 } });
    const r = await runMain(['--retries', '5', 'get-table', 'Artikel', '--csv', '--page-size', '200'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout === clean).toBe(true);
    const faults = (await server.stats()).faults as Record<string, number>;
    expect(faults['4d500']! + faults['4d503']!).toBeGreaterThan(0);
  });

  it('a query error is final: exit 65 after one request', async () => {
    const before = (await server.stats()).dataRequests;
    const r = await runMain(['get-table', 'Artikel', '--filter', 'Nummer >> 1', '--count'], { env: server.env });
    expect(r.code).toBe(65);
    oneLine(r);
    expect(r.stderr).toMatch(/rejected.*errCode 1162/);
    // The canary's two reads (a count is never left to a cached answer), then the query once: no retry.
    expect((await server.stats()).dataRequests - before).toBe(3);
  });

  it('a server that keeps failing with an unknown code: exit 69 naming its message', async () => {
    await server.control('options', { faults: { rate: 1, kinds: ['4d500'], seed: 1 } });
    const r = await runMain(['--retries', '2', 'get-table', 'Artikel', '--limit', '5'], { env: server.env });
    expect(r.code).toBe(69);
    oneLine(r);
    expect(r.stderr).toMatch(/HTTP 500 \(3 tries\): Error processing the REST request \(errCode 1000\)/);
  });
});

describe('warm runs, doctor --probe, session lifetime', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ data: join(import.meta.dirname, '../fixtures/small.json'), maxSessions: 50 });
  });
  afterAll(() => server.stop());

  const requests = async (args: string[], env = server.env) => {
    const before = (await server.stats()).requests;
    const r = await runMain(args, { env });
    expect(r.code, r.stderr).toBe(0);
    return (await server.stats()).requests - before;
  };

  it('a warm get-table --limit 10 sends what it did before; a warm filtered one no canary', async () => {
    await requests(['get-table', 'Teile', '--where', 'ID>=1', '--count']); // cold: session, canary
    // $catalog, $catalog/Teile, the first page (making the entity set), its release.
    expect(await requests(['get-table', 'Teile', '--limit', '10'])).toBe(4);
    expect(await requests(['get-table', 'Teile', '--limit', '10', '--where', 'ID>=1'])).toBe(4);
    // A fresh config dir has no canary answer: two requests more, once.
    const env = { ...server.env, LEGACY_CONFIG_DIR: tempDir() };
    await requests(['tables'], env);
    expect(await requests(['get-table', 'Teile', '--limit', '10', '--where', 'ID>=1'], env)).toBe(6);
    expect(await requests(['get-table', 'Teile', '--limit', '10', '--where', 'ID>=1'], env)).toBe(4);
  });

  it('numbers are read exactly (no 0x10, no 1e3 for an integer, nothing past 2^53); a lone surrogate is sent, not a crash', async () => {
    for (const value of ['0x10', '1e3', '9007199254740993', '']) {
      const r = await runMain(['get-table', 'Teile', '--where', `ID=${value}`, '--count'], { env: server.env });
      if (value === '')
        expect(r.code, r.stderr).toBe(0); // ID= compares with null
      else {
        expect(r.code, value).toBe(65);
        oneLine(r);
      }
    }
    const lone = await runMain(['get-table', 'Teile', '--where', 'Name=a\ud800b', '--count'], { env: server.env });
    expect(lone.code, lone.stderr).toBe(0);
    expect(lone.stdout).toBe('0\n');
  });

  it('a --filter with a double quote is refused before anything is sent (64)', async () => {
    const before = (await server.stats()).requests;
    const r = await runMain(['get-table', 'Teile', '--filter', 'Name = "x"'], { env: server.env });
    expect(r.code).toBe(64);
    oneLine(r);
    expect(r.stderr).toMatch(/double quote.*single quotes/);
    expect((await server.stats()).requests - before).toBeLessThanOrEqual(2); // the catalog only
  });

  const variants: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
    [
      'whole decoding',
      { urlDecoding: 'whole' },
      { urlDecoding: 'whole', paramsHonoured: true, entitySets: true, savedFilterRecreation: 'with-params', strictDateCompare: true },
    ],
    ['split decoding', { urlDecoding: 'split' }, { urlDecoding: 'split', paramsHonoured: true }],
    ['filters ignored', { ignoreFilters: true }, { paramsHonoured: false }],
    ['recreation without $params', { savedFilterWithoutParams: true }, { savedFilterRecreation: 'without-params' }],
    ['strict dates rejected', { strictDateCompare: 'reject' }, { strictDateCompare: false }],
    ['lifeTime in seconds', { lifeTimeUnit: 'seconds' }, { lifeTime: { value: 3600, unit: 'seconds', seconds: 3600 } }],
    ['lifeTime in minutes', { lifeTimeUnit: 'minutes' }, { lifeTime: { value: 60, unit: 'minutes', seconds: 3600 } }],
  ];
  it.each(variants)('doctor --probe --json against a server with %s', async (_name, options, expected) => {
    await server.control('options', {
      urlDecoding: 'whole',
      ignoreFilters: false,
      savedFilterWithoutParams: false,
      strictDateCompare: 'allow',
      lifeTimeUnit: 'minutes',
      ...options,
    });
    try {
      const env = { ...server.env, LEGACY_CONFIG_DIR: tempDir() };
      const r = await runMain(['doctor', '--probe', '--json'], { env });
      const report = JSON.parse(r.stdout);
      expect(report.probe).toMatchObject({ ...expected, table: expect.any(String), cookies: ['WASID4D', '4DSID_WSZ-DB'], loginRequired: false });
      expect(r.code).toBe(report.probe.paramsHonoured === false ? 65 : 0);
      // Stored for later runs: doctor without --probe shows it without asking again.
      const again = JSON.parse((await runMain(['doctor', '--json'], { env })).stdout);
      expect(again.probe).toEqual(report.probe);
      const file = JSON.parse(readFileSync(join(env.LEGACY_CONFIG_DIR, 'servers.json'), 'utf8'));
      expect(Object.values(file.servers as Record<string, { probe: unknown }>)[0]!.probe).toEqual(report.probe);
    } finally {
      await server.control('options', {
        urlDecoding: 'whole',
        ignoreFilters: false,
        savedFilterWithoutParams: false,
        strictDateCompare: 'allow',
        lifeTimeUnit: 'minutes',
      });
    }
  });

  it.each(['minutes', 'seconds'] as const)('session status --server shows the idle timeout right when lifeTime is in %s', async (lifeTimeUnit) => {
    await server.control('options', { lifeTimeUnit });
    try {
      const r = await runMain(['session', 'status', '--server', '--json'], { env: server.env });
      expect(r.code, r.stderr).toBe(0);
      const ours = JSON.parse(r.stdout).server.sessions.find((s: { ours: boolean }) => s.ours);
      expect(ours.lifeTimeSeconds).toBe(3600);
      const text = await runMain(['session', 'status', '--server'], { env: server.env });
      expect(text.stdout).toMatch(/\b60 min\b/);
      expect(text.stdout).not.toMatch(/3600 min/);
    } finally {
      await server.control('options', { lifeTimeUnit: 'minutes' });
    }
  });
});

describe('--har', () => {
  const PASSWORD = 'Har-Pw-4e1b!';
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ auth: { user: 'erp', password: PASSWORD }, rows: { Kunden: 120 } });
  });
  afterAll(() => server.stop());

  it('records every exchange as HAR 1.2, 0600, with cookies and the password masked, also at -vv', async () => {
    const dir = tempDir();
    const har = join(dir, 'run.har');
    const env = { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: PASSWORD };
    const r = await runMain(['-vv', '--har', har, 'get-table', 'Kunden', '--where', 'Ort=Dresden', '--page-size', '10', '--csv'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(har).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['run.har']);
    const text = readFileSync(har, 'utf8');
    const log = JSON.parse(text).log;
    expect(log.version).toBe('1.2');
    expect(log.creator.name).toBe('legacy');
    const stats = await server.stats();
    expect(log.entries.length).toBe(stats.requests);
    for (const e of log.entries) {
      expect(e).toMatchObject({
        startedDateTime: expect.any(String),
        time: expect.any(Number),
        request: { method: expect.any(String), url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/rest\//), httpVersion: expect.any(String) },
        response: { status: expect.any(Number), content: { mimeType: expect.any(String) } },
        cache: {},
        timings: { wait: expect.any(Number) },
      });
      expect(Array.isArray(e.request.headers) && Array.isArray(e.request.queryString) && Array.isArray(e.response.headers)).toBe(true);
    }
    const login = log.entries.find((e: any) => e.request.url.endsWith('$directory/login'));
    expect(login.request.headers.find((h: any) => h.name.toLowerCase() === 'password-4d').value).toBe('***');
    const page = log.entries.find((e: any) => e.request.queryString.some((q: any) => q.name === '$filter' && q.value === '"Ort = :1"'));
    expect(page.response.status).toBe(200);
    expect(JSON.parse(page.response.content.text).__ENTITIES.length).toBeGreaterThan(0);
    expect(page.request.cookies.map((c: any) => c.value)).toEqual(expect.arrayContaining(['***']));
    const setCookie = log.entries.flatMap((e: any) => e.response.headers).filter((h: any) => h.name.toLowerCase() === 'set-cookie');
    expect(setCookie.length).toBeGreaterThan(0);
    for (const h of setCookie) expect(h.value).toMatch(/^(WASID4D|4DSID_[\w-]+)=\*\*\*;/);
    expect(text).not.toContain(PASSWORD);
    for (const s of await server.control<Array<{ id: string }>>('sessions')) expect(text).not.toContain(s.id);
    const cookies = JSON.parse(readFileSync(join(server.configDir, 'sessions.json'), 'utf8')).sessions.flatMap((s: any) => Object.values(s.cookies));
    for (const c of cookies) expect(text).not.toContain(c);
  });

  it('bodies are cut at 64 KiB; a failed run still leaves its archive; an unwritable place is 73', async () => {
    const dir = tempDir();
    const env = { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: PASSWORD };
    const big = join(dir, 'big.har');
    expect((await runMain(['--har', big, 'get-table', 'Kunden', '--page-size', '120', '--csv'], { env })).code).toBe(0);
    const content = JSON.parse(readFileSync(big, 'utf8')).log.entries.map((e: any) => e.response.content);
    const cut = content.find((c: any) => c.comment);
    expect(cut.text.length).toBe(64 * 1024);
    expect(cut.size).toBeGreaterThan(64 * 1024);
    const failed = join(dir, 'failed.har');
    const r = await runMain(['--har', failed, 'get-table', 'Kundn'], { env });
    expect(r.code).toBe(65);
    expect(JSON.parse(readFileSync(failed, 'utf8')).log.entries.length).toBeGreaterThan(0);
    const nowhere = await runMain(['--har', join(dir, 'missing', 'x.har'), 'tables'], { env });
    expect(nowhere.code).toBe(73);
    oneLine(nowhere);
    expect(existsSync(join(dir, 'missing'))).toBe(false);
  });

  it('the CSV of a run with --har is the same as without', async () => {
    const env = { ...server.env, LEGACY_USERNAME: 'erp', LEGACY_PASSWORD: PASSWORD };
    const plain = await runMain(['get-table', 'Kunden', '--csv'], { env });
    const recorded = await runMain(['--har', join(tempDir(), 'r.har'), 'get-table', 'Kunden', '--csv'], { env });
    expect(recorded.stdout).toBe(plain.stdout);
    expect(parse(plain.stdout, { columns: true })).toHaveLength(120);
  });
});
