/**
 * Server variants a client must survive (issue 13): how the request target is decoded (`urlDecoding`), a server
 * that drops filters (`ignoreFilters`), entity-set recreation without `$params` (`savedFilterWithoutParams`) and
 * the unit of `$info.sessionInfo[].lifeTime` (`lifeTimeUnit`). Demo data: 500 Kunden, keys 10001…10500.
 */
import { describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { type Client, errCodes, jsonParams, quoted, useEmulator } from './helpers.js';

let emu: RunningEmulator;
let c: Client;
useEmulator({}, (e, client) => {
  emu = e;
  c = client;
});

const ALL = 500;

/** How many Kunden live in `ort` (counted client-side from the unfiltered list). */
async function inOrt(ort: string): Promise<number> {
  const all = (await c.ok('/rest/Kunden?$top=-1&$attributes=Ort')).__ENTITIES as Array<{ Ort: string }>;
  return all.filter((e) => e.Ort === ort).length;
}

/** The filter and params of "Kunden in Dresden", in the form that reads the same under both decodings. */
const DRESDEN = `$filter=${quoted('Ort = :1')}&$params=${jsonParams(['Dresden'])}`;

describe.each(['whole', 'split'] as const)('urlDecoding=%s: what holds under both decodings', (mode) => {
  const use = () => emu.control.setOptions({ urlDecoding: mode });

  it('a double-quoted filter with a single-quoted $params, all percent-encoded, filters exactly', async () => {
    use();
    const dresden = await inOrt('Dresden');
    expect(dresden).toBeGreaterThan(0);
    expect(dresden).toBeLessThan(ALL);
    const page = await c.ok('/rest/Kunden?$filter=%22Ort%20%3D%20%3A1%22&$params=%27%5B%22Dresden%22%5D%27&$top=0');
    expect(page.__COUNT).toBe(dresden);
    expect((await c.ok(`/rest/Kunden?${DRESDEN}&$top=0`)).__COUNT).toBe(dresden);
  });

  it('a $params value with & = \' " + # % as JSON escapes, single-quoted and percent-encoded, arrives intact', async () => {
    use();
    const firma = `A&B = "C" + 'D' #1 100% \\ Ende`;
    emu.control.setRow('Kunden', '10007', { Firma: firma });
    const p = jsonParams([firma]);
    expect(decodeURIComponent(p)).toMatch(/\\u0026.*\\u003d.*\\u0022.*\\u002b.*\\u0027.*\\u0023.*\\u0025/);
    const page = await c.ok(`/rest/Kunden?$filter=${quoted('Firma === :1')}&$params=${p}&$attributes=Firma`);
    expect(page.__ENTITIES).toEqual([expect.objectContaining({ __KEY: '10007', Firma: firma })]);
  });

  it('%24top is $top; $TOP is $top; a quoted $attributes list works', async () => {
    use();
    expect((await c.ok('/rest/Kunden?%24top=2')).__SENT).toBe(2);
    expect((await c.ok('/rest/Kunden?$TOP=3')).__SENT).toBe(3);
    const e = (await c.ok('/rest/Kunden?$top=1&$attributes=%22Ort%2CPLZ%22')).__ENTITIES[0];
    expect(Object.keys(e)).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', 'Ort', 'PLZ']);
  });

  it('a quoted / in the path does not split it; an unclosed quote in the query is 400 with 1808/1809 + 1806', async () => {
    use();
    const key = await c.get('/rest/Kunden("100/01")');
    expect([key.status, ...errCodes(key)]).toEqual([404, 1543]);
    expect(key.json.__ERROR[0].message).toContain('100/01');
    for (const [q, code] of [
      [`$filter='Ort = 1`, 1808],
      [`$filter="Ort = 1`, 1809],
      [`$top=1&$filter="Ort = 'x'`, 1809],
    ] as const) {
      const r = await c.get(`/rest/Kunden?${q}`);
      expect([r.status, ...errCodes(r)], q).toEqual([400, code, 1806]);
    }
  });
});

describe('urlDecoding=whole (default): the 4D source decodes the whole URL before splitting it', () => {
  it('an unquoted percent-encoded "Ort = :1" is no filter at all: a variable "Ort " and every row, HTTP 200', async () => {
    const r = await c.get('/rest/Kunden?$filter=Ort%20%3D%20%3A1&$params=%27%5B%22Dresden%22%5D%27&$top=0');
    expect(r.status).toBe(200);
    expect(r.json.__COUNT).toBe(ALL);
    emu.control.setOptions({ urlDecoding: 'split' });
    expect((await c.ok('/rest/Kunden?$filter=Ort%20%3D%20%3A1&$params=%27%5B%22Dresden%22%5D%27&$top=0')).__COUNT).toBe(await inOrt('Dresden'));
  });

  it("requests' form Ort+%3D+%27Dresden%27 is lost under whole and filters under split (+ = space)", async () => {
    expect((await c.ok('/rest/Kunden?$filter=Ort+%3D+%27Dresden%27&$top=0')).__COUNT).toBe(ALL);
    emu.control.setOptions({ urlDecoding: 'split' });
    expect((await c.ok('/rest/Kunden?$filter=Ort+%3D+%27Dresden%27&$top=0')).__COUNT).toBe(await inOrt('Dresden'));
  });

  it('+ stays +: "created_date+>+…" names the unknown attribute created_date+ (500/1500), not a date rule', async () => {
    const r = await c.get('/rest/Kunden?$filter=created_date+>+%272020-01-01%27&$top=0');
    expect([r.status, ...errCodes(r)]).toEqual([500, 1500]);
    expect(r.json.__ERROR[0].message).toContain('"created_date+"');
    emu.control.setOptions({ urlDecoding: 'split' });
    expect((await c.get('/rest/Kunden?$filter=created_date+>+%272020-01-01%27&$top=0')).status).toBe(200);
  });

  it('a repeated parameter: the last wins under whole, the first under split', async () => {
    expect((await c.ok('/rest/Kunden?$top=1&$top=3')).__SENT).toBe(3);
    emu.control.setOptions({ urlDecoding: 'split' });
    expect((await c.ok('/rest/Kunden?$top=1&$top=3')).__SENT).toBe(1);
  });

  it('%22 and %27 are real quotes: an encoded open quote is 400 under whole, a literal character under split', async () => {
    const r = await c.get('/rest/Kunden?$top=1&$filter=%22Ort%20%3D%201');
    expect([r.status, ...errCodes(r)]).toEqual([400, 1809, 1806]);
    emu.control.setOptions({ urlDecoding: 'split' });
    expect((await c.get('/rest/Kunden?$top=1&$filter=%22Ort%20%3D%201')).status).toBe(500); // a broken filter
  });

  it('the mode changes at runtime through the HTTP control API and is validated', async () => {
    const post = (body: unknown) => fetch(`${emu.url}/__emulator/options`, { method: 'POST', body: JSON.stringify(body) });
    expect((await post({ urlDecoding: 'split' })).status).toBe(200);
    expect((await c.ok('/rest/Kunden?$top=1&$top=3')).__SENT).toBe(1);
    expect((await post({ urlDecoding: 'both' })).status).toBe(400);
    emu.control.reset();
    expect((await c.ok('/rest/Kunden?$top=1&$top=3')).__SENT).toBe(3);
  });
});

describe('ignoreFilters: a server that silently drops $filter', () => {
  it('list reads: 200 with every row, even for a bad filter; $orderby still applies', async () => {
    emu.control.setOptions({ ignoreFilters: true });
    expect((await c.ok(`/rest/Kunden?${DRESDEN}&$top=0`)).__COUNT).toBe(ALL);
    expect((await c.ok(`/rest/Kunden?$filter=${quoted('Nope = 1')}&$top=0`)).__COUNT).toBe(ALL);
    const sorted = await c.ok(`/rest/Kunden?${DRESDEN}&$orderby=${quoted('KundenNr desc')}&$top=2&$attributes=KundenNr`);
    expect(sorted.__ENTITIES.map((e: { __KEY: string }) => e.__KEY)).toEqual(['10500', '10499']);
    emu.control.setOptions({ ignoreFilters: false });
    expect((await c.ok(`/rest/Kunden?${DRESDEN}&$top=0`)).__COUNT).toBe(await inOrt('Dresden'));
  });

  it('entity set creation stores the unfiltered selection; a $filter on a stored set is dropped too', async () => {
    emu.control.setOptions({ ignoreFilters: true });
    const made = await c.ok(`/rest/Kunden?${DRESDEN}&$method=entityset&$top=0`);
    expect(made.__COUNT).toBe(ALL);
    expect((await c.ok('/rest/$info')).entitySet[0].selectionSize).toBe(ALL);
    const within = await c.ok(`${made.__ENTITYSET}?${DRESDEN}&$top=0`);
    expect([within.__COUNT, within.__ENTITYSET]).toEqual([ALL, made.__ENTITYSET]);
  });

  it('recreation from $savedfilter ignores the saved filter ($savedorderby still applies)', async () => {
    const made = await c.ok(`/rest/Kunden?${DRESDEN}&$method=entityset&$top=0`);
    const dresden = made.__COUNT as number;
    const uri = made.__ENTITYSET as string;
    const recreate = `$savedfilter=${quoted('Ort = :1')}&$params=${jsonParams(['Dresden'])}&$savedorderby=${quoted('KundenNr desc')}&$top=1`;
    expect((await c.get(`${uri}?$method=release`)).status).toBe(200);
    expect((await c.ok(`${uri}?${recreate}`)).__COUNT).toBe(dresden);
    expect((await c.get(`${uri}?$method=release`)).status).toBe(200);
    emu.control.setOptions({ ignoreFilters: true });
    const back = await c.ok(`${uri}?${recreate}`);
    expect([back.__COUNT, back.__ENTITYSET, back.__ENTITIES[0].__KEY]).toEqual([ALL, uri, '10500']);
  });
});

describe('savedFilterWithoutParams: the 2014 source recreates a lost set from $savedfilter without $params', () => {
  /** Creates "Kunden in Dresden" as a stored set; returns its URI and size. */
  async function dresdenSet(): Promise<{ uri: string; count: number }> {
    const made = await c.ok(`/rest/Kunden?${DRESDEN}&$method=entityset&$top=0`);
    return { uri: made.__ENTITYSET, count: made.__COUNT };
  }
  const RECREATE = `$savedfilter=${quoted('Ort = :1')}&$params=${jsonParams(['Dresden'])}&$top=0`;

  it('off (default): a released set comes back with the exact selection', async () => {
    const { uri, count } = await dresdenSet();
    await c.get(`${uri}?$method=release`);
    const back = await c.ok(`${uri}?${RECREATE}`);
    expect([back.__COUNT, back.__ENTITYSET]).toEqual([count, uri]);
  });

  it('on: the recreated set silently widens to every row (after release, or after the session was lost)', async () => {
    emu.control.setOptions({ savedFilterWithoutParams: true });
    const { uri, count } = await dresdenSet();
    expect(count).toBeLessThan(ALL);
    expect((await c.ok(`${uri}?$top=0`)).__COUNT).toBe(count); // a live set is not affected
    await c.get(`${uri}?$method=release`);
    const back = await c.ok(`${uri}?${RECREATE}`);
    expect([back.__COUNT, back.__ENTITYSET]).toEqual([ALL, uri]);
    const second = await dresdenSet();
    emu.control.expireSessions(); // the sets of the lost session are gone; the next request gets a new session
    expect((await c.ok(`${second.uri}?${RECREATE}`)).__COUNT).toBe(ALL);
  });

  it('on: only the comparison with the unfilled placeholder matches every row; the rest of the filter applies', async () => {
    emu.control.setOptions({ savedFilterWithoutParams: true });
    const saved = `$savedfilter=${quoted('Ort = :1 and KundenNr <= 10100')}&$params=${jsonParams(['Dresden'])}&$top=0`;
    const back = await c.ok(`/rest/Kunden/$entityset/0123456789ABCDEF0123456789ABCDEF?${saved}`);
    expect(back.__COUNT).toBe(100);
  });

  it('on: ordinary reads still use $params, and a missing placeholder there is still 500/1279', async () => {
    emu.control.setOptions({ savedFilterWithoutParams: true });
    await c.ok(`/rest/Kunden/$entityset/0123456789ABCDEF0123456789ABCDEF?${RECREATE}`); // caches the widened query
    expect((await c.ok(`/rest/Kunden?${DRESDEN}&$top=0`)).__COUNT).toBe(await inOrt('Dresden'));
    const r = await c.get(`/rest/Kunden?$filter=${quoted('Ort = :1')}&$top=0`);
    expect([r.status, ...errCodes(r)]).toEqual([500, 1279]);
  });
});

describe('lifeTimeUnit: the unit of $info.sessionInfo[].lifeTime', () => {
  it('seconds by default (the docs), minutes on request (real v16/v17 output); expiration is the real expiry either way', async () => {
    await c.get('/rest/$info');
    const session = async () => (await c.ok('/rest/$info')).sessionInfo[0] as { lifeTime: number; expiration: string };
    emu.control.setOptions({ lifeTimeUnit: 'minutes' });
    expect((await session()).lifeTime).toBe(60);
    emu.control.setOptions({ lifeTimeUnit: 'seconds' });
    const s = await session();
    expect(s.lifeTime).toBe(3600);
    const left = Date.parse(s.expiration) - Date.now();
    expect(left).toBeGreaterThan(3590_000);
    expect(left).toBeLessThanOrEqual(3600_000);
    await c.post('/rest/$directory/login', '', { headers: { 'session-4D-length': '120' } });
    expect((await session()).lifeTime).toBe(7200);
    emu.control.setOptions({ lifeTimeUnit: 'minutes' });
    expect((await session()).lifeTime).toBe(120);
  });
});
