/** Pure pieces: URL decoding and tokenizers, date encodings, the JSON writer (must equal JSON.stringify), CLI parsing. */
import { describe, expect, it } from 'vitest';
import { parseCliArgs, parseDuration } from '../../src/emulator/cli.js';
import type { RestError } from '../../src/emulator/errors.js';
import { JsonWriter, numberText, valueText } from '../../src/emulator/util/jsonwriter.js';
import { Permutation32, Rng } from '../../src/emulator/util/random.js';
import { resolveOptions } from '../../src/emulator/options.js';
import { decodeWhole, parseEntityRef, parseFullUrl, parseRestUrl, stripWrappingQuotes, tokenizeQuery } from '../../src/emulator/url.js';
import { civilFromDays, dateOrdinal, daysFromCivil, isoTimestamp, parseDateInput } from '../../src/emulator/wire.js';

/** The 400 RestError a parse throws. */
function urlError(parse: () => unknown): RestError {
  try {
    parse();
  } catch (err) {
    return err as RestError;
  }
  throw new Error('no error');
}

describe('split mode: quote-aware tokenizer on the raw query, then decoding', () => {
  it.each([
    ['$filter="lastName=Smith"', [['$filter', 'lastName=Smith']]],
    [`$filter="name='a b'"`, [['$filter', "name='a b'"]]],
    [`$filter='f > '2023-01-01''`, [['$filter', 'f > 2023-01-01']]],
    [
      '$filter="a=1&b=2"&$top=5',
      [
        ['$filter', 'a=1&b=2'],
        ['$top', '5'],
      ],
    ],
    [`$params='["O\\u0027Reilly"]'`, [['$params', '["O\\u0027Reilly"]']]],
    [
      '$top=10&&$skip=3&',
      [
        ['$top', '10'],
        ['$skip', '3'],
      ],
    ],
    ['$expand', [['$expand', '']]],
  ])('%s', (raw, expected) => {
    expect(tokenizeQuery(raw)).toEqual(expected);
  });

  it('an open quote is 400 with 1808 (single) or 1809 (double) and 1806', () => {
    for (const [raw, code] of [
      [`$filter='x`, 1808],
      [`$filter="x`, 1809],
    ] as const) {
      const e = urlError(() => tokenizeQuery(raw));
      expect(e.status).toBe(400);
      expect(e.errors.map((x) => x.errCode)).toEqual([code, 1806]);
    }
  });

  it('decodes after splitting (%26 is a literal &, + is a space), first wins, strips one wrapping quote pair', () => {
    const u = parseRestUrl('/rest/Kunden/?%24filter=%22Firma%20%3D%20%27A%26B%27%22&$TOP=1&$orderby=Name+desc&$top=9&$attributes=%22ID%2CName%22', 'split');
    expect(u.segments).toEqual(['Kunden']);
    expect([...u.query]).toEqual([
      ['$filter', "Firma = 'A&B'"],
      ['$top', '1'],
      ['$orderby', 'Name desc'],
      ['$attributes', 'ID,Name'],
    ]);
    expect(stripWrappingQuotes(`'a = 1' or 'a = 2'`)).toBe(`'a = 1' or 'a = 2'`);
    expect(stripWrappingQuotes(`"x"`)).toBe('x');
    expect(stripWrappingQuotes(`"`)).toBe('"');
  });

  it('path segments split outside quotes; entity references with () [] and quoted keys', () => {
    for (const mode of ['whole', 'split'] as const) {
      expect(parseRestUrl('/rest/T("a/b")/x', mode).segments).toEqual(['T("a/b")', 'x']);
      expect(parseRestUrl('/rest/Stra%C3%9Fe', mode).segments).toEqual(['Straße']);
    }
    expect(parseEntityRef('Artikel[ABC]')).toEqual({ name: 'Artikel', key: 'ABC' });
    expect(parseEntityRef("Artikel('A B')")).toEqual({ name: 'Artikel', key: 'A B' });
    expect(parseEntityRef('Artikel')).toEqual({ name: 'Artikel', key: null });
  });
});

describe('whole mode: VURL::Decode on the whole target, then VFullURL::ParseURL', () => {
  it.each([
    ['%24filter%3DID%3D3', '$filter=ID=3'],
    ['a+b%20c', 'a+b c'],
    ['%C3%A9%E2%82%AC', 'é€'],
    ['%E9', 'é'], // one byte alone is read as ISO-8859-1
    ['%E9%E9', '\uFFFD\uFFFD'], // two or more bytes are UTF-8
    ['100%', '100%'],
    ['%zz%4', '%zz%4'],
    ['%2541', '%41'], // one pass only
    ['e%CC%81', 'é'], // composed (NFC)
  ])('decodeWhole(%j) → %j', (raw, decoded) => {
    expect(decodeWhole(raw)).toBe(decoded);
  });

  it.each([
    [
      '/rest/K?$filter="a=1&b=2"&$top=5',
      [
        ['$filter', 'a=1&b=2'],
        ['$top', '5'],
      ],
    ],
    [`/rest/K?$filter="name='a b'"`, [['$filter', "name='a b'"]]],
    [`/rest/K?$filter='f > '2023-01-01''`, [['$filter', 'f > 2023-01-01']]],
    [`/rest/K?$params='["O\\u0027Reilly"]'`, [['$params', '["O\\u0027Reilly"]']]],
    [
      '/rest/K?$filter=Ort = :1&$params=x',
      [
        ['Ort ', ' :1'],
        ['$params', 'x'],
      ],
    ], // the second = replaces the name
    ['/rest/K?$filter=a=b=c', [['b', 'c']]],
    [
      '/rest/K?$top=10&&$skip=3&',
      [
        ['$top', '10'],
        ['$skip', '3'],
      ],
    ],
    ['/rest/K?$expand&$top=1', [['$top', '1']]], // a bare name is never stored
    ['/rest/K?=x&$top=', [['$top', '']]],
    [
      '/rest/K?$top=1&$top=2',
      [
        ['$top', '1'],
        ['$top', '2'],
      ],
    ],
  ])('parseFullUrl(%j)', (url, query) => {
    expect(parseFullUrl(url)).toEqual({ path: ['rest', 'K'], query });
  });

  it('the path keeps quotes; an unclosed quote in the path swallows the rest (no error); empty segments vanish', () => {
    expect(parseFullUrl(`/rest//T("a/b?")/x/`).path).toEqual(['rest', 'T("a/b?")', 'x']);
    expect(parseRestUrl("/rest/T('a/b?c')/x?$top=1", 'whole')).toEqual({ segments: ["T('a/b?c')", 'x'], query: new Map([['$top', '1']]) });
    expect(parseFullUrl(`/rest/T(O'Reilly)/x?$top=1`)).toEqual({ path: ['rest', "T(O'Reilly)/x?$top=1"], query: [] });
  });

  it('an open quote in the query is 400 with 1808 (single) or 1809 (double) and 1806', () => {
    for (const [target, code] of [
      ["/rest/K?$filter='x", 1808],
      ['/rest/K?$filter="x', 1809],
      ['/rest/K?$filter=%22x', 1809],
    ] as const) {
      const e = urlError(() => parseRestUrl(target, 'whole'));
      expect(e.status).toBe(400);
      expect(e.errors.map((x) => x.errCode)).toEqual([code, 1806]);
    }
  });

  it('decodes before splitting: %3D and %26 split, + stays, last wins, raw quotes are dropped', () => {
    const u = parseRestUrl('/rest/Kunden/?%24filter=%22Firma%20%3D%20%27A%26B%27%22&$TOP=1&$orderby=Name+desc&$top=9', 'whole');
    expect(u.segments).toEqual(['Kunden']);
    expect([...u.query]).toEqual([
      ['$filter', "Firma = 'A&B'"],
      ['$top', '9'],
      ['$orderby', 'Name+desc'],
    ]);
    const lost = parseRestUrl('/rest/Kunden?$filter=Ort%20%3D%20%3A1&$params=%27%5B%22Dresden%22%5D%27', 'whole');
    expect([...lost.query]).toEqual([
      ['Ort ', ' :1'],
      ['$params', '["Dresden"]'],
    ]);
    expect(parseRestUrl('/rest/Kunden%2F%24entityset%2FX%3F%24top%3D1', 'whole')).toEqual({
      segments: ['Kunden', '$entityset', 'X'],
      query: new Map([['$top', '1']]),
    });
  });
});

describe('dates and timestamps', () => {
  it('day numbers round-trip over four centuries', () => {
    for (let z = daysFromCivil(1800, 1, 1); z < daysFromCivil(2200, 1, 1); z += 97) {
      const [y, m, d] = civilFromDays(z);
      expect(daysFromCivil(y, m, d)).toBe(z);
      expect(new Date(z * 86_400_000).toISOString().slice(0, 10)).toBe(`${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`);
    }
  });

  it('isoTimestamp equals Date#toISOString', () => {
    const rng = new Rng(3);
    for (let k = 0; k < 2000; k++) {
      const t = Math.floor(rng.next() * 4e12) - 1e12;
      expect(isoTimestamp(t)).toBe(new Date(t).toISOString());
    }
  });

  it.each([
    ['5!3!2024', '5!3!2024'],
    ['05!03!2024', '5!3!2024'],
    ['2024-02-29', '29!2!2024'],
    ['2023-02-29', undefined],
    ['31!4!2024', undefined],
    ['2024-01-01T23:30:00-02:00', '2!1!2024'],
    ['2024-01-01T10:00:00', '1!1!2024'],
    ['', '0!0!0'],
    ['0000-00-00', '0!0!0'],
    ['24.12.2024', undefined],
  ])('parseDateInput(%j) → %j', (input, out) => {
    expect(parseDateInput(input)).toBe(out);
  });

  it('dateOrdinal sorts dates; empty is 0; null/garbage is null', () => {
    expect(dateOrdinal('27!1!2025')).toBe(20250127);
    expect(dateOrdinal('0!0!0')).toBe(0);
    expect(dateOrdinal(null)).toBeNull();
    expect(dateOrdinal('x')).toBeNull();
  });
});

describe('JSON writer', () => {
  it('numbers are written exactly as JSON.stringify writes them', () => {
    const special = [
      0,
      -0,
      1,
      -1,
      0.1,
      0.2 + 0.1,
      39.5,
      17.8,
      1e21,
      1e-7,
      123456789.123,
      999999999999.999,
      1e12 + 0.5,
      -20.25,
      2 ** 53,
      5e-324,
      NaN,
      Infinity,
      0.001,
      0.01,
      1.005,
      99.99,
    ];
    const rng = new Rng(11);
    const random = Array.from({ length: 5000 }, (_, i) => {
      const scale = 10 ** ((i % 7) - 2);
      const v = (rng.next() - 0.5) * 1e6 * scale;
      return i % 3 === 0 ? Math.round(v * 100) / 100 : i % 3 === 1 ? Math.round(v * 1000) / 1000 : v;
    });
    for (const v of [...special, ...random]) expect(numberText(v), String(v)).toBe(JSON.stringify(v));
  });

  it('values (strings with escapes, surrogates, nested objects) equal JSON.stringify; bytes are UTF-8', () => {
    const values: unknown[] = [
      'plain',
      'Müller & "Söhne"',
      'a\\b',
      'tab\there',
      'nl\nnl',
      '\u0000\u001f\u007f',
      'emoji 😀',
      'lone \ud800 surrogate',
      '\u2028\u2029',
      { Coll: [{ Art: 'Laden', Preis: 39.5, VE: 1 }], geerbt: true, n: null, u: undefined, d: new Date(0) },
      [1, 'two', null, undefined, [3], {}],
      'x'.repeat(70_000),
    ];
    const w = new JsonWriter(16);
    for (const v of values) {
      expect(valueText(v)).toBe(JSON.stringify(v));
      w.value(v).raw(',');
    }
    expect(w.toString()).toBe(values.map((v) => `${JSON.stringify(v)},`).join(''));
    expect(w.bytes().length).toBe(Buffer.byteLength(w.toString()));
  });
});

describe('keyed permutation (demo UID keys map back to row indexes)', () => {
  it('inverse undoes forward', () => {
    const p = new Permutation32(12345);
    for (const x of [0, 1, 2, 999_999, 2 ** 31, 2 ** 32 - 1]) expect(p.inverse(p.forward(x))).toBe(x);
  });
});

describe('CLI arguments', () => {
  it('maps every option', () => {
    expect(
      parseCliArgs([
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--rows',
        'Artikel=200000,Kunden=5',
        '--seed',
        '4',
        '--max-sessions',
        '2',
        '--session-timeout',
        '90m',
        '--auth',
        'erp:pw:x',
        '--app-name',
        'X-Y',
        '--no-scalable',
        '--latency',
        '5ms',
        '--faults',
        '0.1:500,503,reset,slow',
        '--fault-seed',
        '7',
        '--slow',
        '2s',
        '--expire-every',
        '10',
        '--duplicate-cookie',
        'first-wins',
        '--strict-date-compare',
        'reject',
        '--url-decoding',
        'split',
        '--ignore-filters',
        '--saved-filter-without-params',
        '--lifetime-unit',
        'seconds',
        '--quoted-timestamps',
        '-v',
        '--quiet',
      ]),
    ).toEqual({
      kind: 'run',
      options: {
        host: '127.0.0.1',
        port: 0,
        rows: { Artikel: 200000, Kunden: 5 },
        seed: 4,
        maxSessions: 2,
        sessionTimeoutMs: 5_400_000,
        auth: { user: 'erp', password: 'pw:x' },
        appName: 'X-Y',
        scalable: false,
        latencyMs: 5,
        faults: { rate: 0.1, kinds: ['500', '503', 'reset', 'slow'], seed: 7, slowMs: 2000, expireEvery: 10 },
        duplicateCookie: 'first-wins',
        strictDateCompare: 'reject',
        urlDecoding: 'split',
        ignoreFilters: true,
        savedFilterWithoutParams: true,
        lifeTimeUnit: 'seconds',
        quotedTimestamps: true,
        verbose: true,
        quiet: true,
      },
    });
    expect(parseCliArgs(['-h'])).toEqual({ kind: 'help' });
    expect(parseCliArgs(['--version'])).toEqual({ kind: 'version' });
    expect(parseCliArgs(['--faults', '0.5'])).toEqual({ kind: 'run', options: { faults: { rate: 0.5 } } });
  });

  it.each([
    [['--port', 'x']],
    [['--port', '70000']],
    [['--rows', 'Artikel']],
    [['--faults', '2']],
    [['--faults', '0.1:boom']],
    [['--auth', 'nocolon']],
    [['--latency', '5 parsecs']],
    [['--bogus']],
    [['positional']],
  ])('rejects %j', (argv) => {
    expect(() => parseCliArgs(argv)).toThrow();
  });

  it('defaults of the server variants; bad values are option errors', () => {
    const { runtime } = resolveOptions({});
    expect(runtime).toMatchObject({
      urlDecoding: 'whole',
      strictDateCompare: 'allow',
      ignoreFilters: false,
      savedFilterWithoutParams: false,
      lifeTimeUnit: 'seconds',
      generation: 'v20r',
      refusalStatus: 401,
      authentifyUserField: 'name',
      readOnlyTables: [],
      infoAdminOnly: false,
      loginRefusal: 'result-false',
      headerDecoding: 'utf8',
    });
    expect(runtime.faults.kinds).toEqual(['500', '503', 'reset', 'truncate', 'reset-after-update']);
    for (const bad of [
      { urlDecoding: 'raw' },
      { lifeTimeUnit: 'hours' },
      { ignoreFilters: 'yes' },
      { savedFilterWithoutParams: 1 },
      { generation: 'v19' },
      { refusalStatus: 402 },
      { authentifyUserField: 'user' },
      { readOnlyTables: 'Kunden' },
      { readOnlyTables: [''] },
      { infoAdminOnly: 'yes' },
      { loginRefusal: 'false' },
      { headerDecoding: 'ascii' },
    ]) {
      expect(() => resolveOptions(bad as never), JSON.stringify(bad)).toThrow(/must be/);
    }
    const cli = parseCliArgs(['--url-decoding', 'raw']) as { options: object };
    expect(() => resolveOptions(cli.options)).toThrow(/urlDecoding must be one of whole, split/);
  });

  it('durations', () => {
    expect([parseDuration('250', 'x'), parseDuration('250ms', 'x'), parseDuration('1.5s', 'x'), parseDuration('60m', 'x'), parseDuration('1h', 'x')]).toEqual([
      250, 250, 1500, 3_600_000, 3_600_000,
    ]);
  });
});
