/**
 * $filter (every operator, placeholders, dates, wildcards, paths, errors), $orderby and $attributes, on a fixture.
 * Filter semantics must not depend on the URL decoding, so the whole file runs under both `urlDecoding` modes,
 * sending values in the form that reads the same under both (`quoted`, `jsonParams`; see helpers.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, errCodes, jsonParams, quoted, startTestEmulator } from './helpers.js';

const FIXTURE = new URL('./fixtures/erp.json', import.meta.url).pathname;
const ENGEL = '7464FEB39C516942B01E62F44B1ED454';
const KRIPPEN = '5E6A0C0FFEE000000000000000000A01';

let emu: RunningEmulator;
let c: Client;

/** IDs of the Kunde rows matching a filter. */
async function ids(filter: string, extra = ''): Promise<number[]> {
  const page = await c.ok(`/rest/Kunde?$filter=${quoted(filter)}${extra}&$attributes=ID&$top=-1`);
  return page.__ENTITIES.map((e: { ID: number }) => e.ID);
}

async function rejected(filter: string, extra = ''): Promise<number[]> {
  const r = await c.get(`/rest/Kunde?$filter=${quoted(filter)}${extra}`);
  expect(r.status, filter).toBe(500);
  expect(r.headers['content-type']).toBe('application/json; charset=UTF-8');
  return errCodes(r);
}

describe.each(['whole', 'split'] as const)('urlDecoding=%s', (mode) => {
  beforeAll(async () => {
    emu = await startTestEmulator({ data: FIXTURE, urlDecoding: mode });
    c = new Client(emu);
  });
  afterAll(() => emu.stop());

  describe('comparison operators', () => {
    it.each([
      ['ID = 3', [3]],
      ['ID == 3', [3]],
      ['ID === 3', [3]],
      ['ID != 3', [1, 2, 4, 5, 6, 7, 8]],
      ['ID # 3', [1, 2, 4, 5, 6, 7, 8]],
      ['ID !== 3', [1, 2, 4, 5, 6, 7, 8]],
      ['Umsatz < 10', [2, 3]],
      ['Umsatz <= 10', [2, 3, 6]],
      ['Umsatz > 250', [1, 5]],
      ['Umsatz >= 250', [1, 5, 8]],
      ['Umsatz = -20.25', [3]],
      ['Name begin "m"', [1, 8]],
      ['Name % "Apotheke"', [3]],
      ['Name % "Apo"', []],
      ['ID IN [1, 3, 5]', [1, 3, 5]],
      ['PLZ in ["01067", \'00100\']', [1, 5]],
      ['Aktiv = true', [1, 3, 4, 6, 7]],
      ['Aktiv = false', [2, 5, 8]],
      ['Aktiv != true', [2, 5, 8]],
      ['Zeit >= 3600000', [1, 3]],
      ['Gross > 4000000000', [1]],
      ['Anzahl = 0', [2]],
      ['Ref = "00000000000000000000000000000000"', [1]],
    ] as const)('%s', async (filter, expected) => {
      expect(await ids(filter)).toEqual(expected);
    });
  });

  describe('strings: case- and diacritic-insensitive, @ is the only wildcard', () => {
    it.each([
      ['Name = "m@"', [1, 8]],
      ['Name = "*er"', []],
      ['Name = "@er"', [8]],
      ['Name = "m*"', []],
      ['Name IS "Engel@"', []],
      ['Name is "engel@home"', [7]],
      ['Name IS NOT "Meier"', [1, 2, 3, 4, 5, 6, 7]],
      ['Name is not "Meier" and ID < 3', [1, 2]],
      ['Name = "@ü@"', [1, 3, 5]],
      ['Name = "angstrom"', [6]],
      ['Name = "ÅNGSTRÖM"', [6]],
      ['Name = "Engel@"', [7]],
      ['Name === "Engel@"', []],
      ['Name === "engel@home"', [7]],
      ['Name !== "Meier"', [1, 2, 3, 4, 5, 6, 7]],
      ['Name != "m@"', [2, 3, 4, 5, 6, 7]],
      ['Name = "Müller & Söhne"', [1]],
      ['Name = "Zeile1\nZeile2"', [4]],
      ['Name = "=SUMME(A1)"', [5]],
      ['Straße = "Schloßallee@"', [2]],
    ] as const)('%s', async (filter, expected) => {
      expect(await ids(filter)).toEqual(expected);
    });
  });

  describe('placeholders ($params, a JSON array)', () => {
    it('strings with quotes, numbers, lists; @ in a placeholder is a wildcard', async () => {
      expect(await ids('Name = :1', `&$params=${jsonParams(['O\'Reilly "Books"'])}`)).toEqual([2]);
      expect(await ids('Name = :1 and Umsatz > :2', `&$params=${jsonParams(['m@', 100])}`)).toEqual([1, 8]);
      expect(await ids('ID in :1', `&$params=${jsonParams([[2, 4]])}`)).toEqual([2, 4]);
      expect(await ids('ID = :1', `&$params=${jsonParams(['3'])}`)).toEqual([3]);
      expect(await ids('Aktiv = :1', `&$params=${jsonParams(['false'])}`)).toEqual([2, 5, 8]);
    });

    it('the documented form $params=\'["O\\u0027Reilly..."]\' works raw (the tokenizer drops the outer quotes)', async () => {
      const page = await c.ok(`/rest/Kunde?$filter="Name=:1"&$params='["O\\u0027Reilly \\u0022Books\\u0022"]'&$attributes=ID`);
      expect(page.__ENTITIES.map((e: { ID: number }) => e.ID)).toEqual([2]);
    });

    it('missing or null placeholders → 1279; unusable values → 1280; bad $params → 1162', async () => {
      expect(await rejected('ID = :2', `&$params=${jsonParams([1])}`)).toEqual([1279]);
      expect(await rejected('ID = :1', `&$params=${jsonParams([null])}`)).toEqual([1279]);
      expect(await rejected('ID = :1')).toEqual([1279]);
      expect(await rejected('ID = :1', `&$params=${jsonParams(['abc'])}`)).toEqual([1280]);
      expect(await rejected('ID = :1', `&$params=${quoted('{"a":1}')}`)).toEqual([1162]);
      expect(await rejected('ID = :1', '&$params=%5Bnot-json')).toEqual([1162]);
    });
  });

  describe('dates: YYYY-MM-DD literals against D!M!YYYY values', () => {
    it.each([
      ["Seit >= '2024-01-02'", [1, 4, 6, 7, 8]],
      ["Seit <= '2024-01-01'", [2, 3]],
      ["Seit = '2024-01-02'", [6, 7]],
      ["Seit = '2!1!2024'", [6, 7]],
      ["Seit >= '2024-01-15T00:00:00Z'", [1, 4]],
      ['Seit = null', [5]],
      ['Seit != null', [1, 2, 3, 4, 6, 7, 8]],
      ["Ende = '0!0!0'", [1, 4, 5]],
      ['Ende = null', [2, 6, 7, 8]],
      ["Ende >= '2000-01-01'", [3]],
      ["Ende != '2025-06-01'", []],
    ] as const)('%s', async (filter, expected) => {
      expect(await ids(filter)).toEqual(expected);
    });

    it('strict < and > on a date attribute are evaluated by default; strictDateCompare=reject → 500/1162', async () => {
      expect(await ids("Seit > '2024-01-02'")).toEqual([1, 4, 8]);
      expect(await ids("Ende < '2030-01-01'")).toEqual([3]);
      emu.control.setOptions({ strictDateCompare: 'reject' });
      try {
        expect(await rejected("Seit > '2024-01-02'")).toEqual([1162]);
        expect(await rejected("Seit < '2024-01-02'")).toEqual([1162]);
        expect(await ids("Seit >= '2024-01-02'")).toEqual([1, 4, 6, 7, 8]);
      } finally {
        emu.control.setOptions({ strictDateCompare: 'allow' });
      }
    });

    it('a non-date literal for a date attribute → 1280', async () => {
      expect(await rejected("Seit >= 'gestern'")).toEqual([1280]);
    });
  });

  describe('object and relation paths', () => {
    it.each([
      ['Daten.Coll[].Art = "Handel"', [1]],
      ['Daten.Coll[].Preis > 30', [1]],
      ['Daten.geerbt = true', [3]],
      ['Daten.values[] = "Web@"', [3]],
      ['Gruppe.Name = "Engel"', [1, 3, 7]],
      ['Gruppe = null', [4, 5, 6, 8]],
      [`Gruppe = "${KRIPPEN}"`, [2]],
      [`Familie_ = "${ENGEL}"`, [1, 3]],
      ['Foto = null', [2, 3, 4, 5, 6, 7, 8]],
    ] as const)('%s', async (filter, expected) => {
      expect(await ids(filter)).toEqual(expected);
    });

    it('relatedEntities paths match when any related entity matches', async () => {
      const page = await c.ok(`/rest/Gruppe?$filter=${quoted('Mitglieder.Umsatz > 1000')}`);
      expect(page.__ENTITIES.map((e: { __KEY: string }) => e.__KEY)).toEqual([ENGEL]);
    });
  });

  describe('logical operators, NOT, parentheses, the quoted-condition form', () => {
    it.each([
      ['Aktiv = true and Umsatz > 50', [1, 4]],
      ['Aktiv = true AND Umsatz > 50', [1, 4]],
      ['Aktiv = true & Umsatz > 50', [1, 4]],
      ['Aktiv = true && Umsatz > 50', [1, 4]],
      ['Umsatz > 500 or ID = 2', [1, 2, 5]],
      ['Umsatz > 500 | ID = 2', [1, 2, 5]],
      ['Umsatz > 500 || ID = 2', [1, 2, 5]],
      ['Aktiv = true except Umsatz > 50', [3, 6, 7]],
      ['Aktiv = true ^ Umsatz > 50', [3, 6, 7]],
      ['not(Aktiv = true)', [2, 5, 8]],
      ['NOT (Aktiv = true)', [2, 5, 8]],
      ['!(Aktiv = true)', [2, 5, 8]],
      ['ID = 1 or ID = 2 and Aktiv = true', [1]],
      ['(ID = 1 or ID = 2) and Aktiv = false', [2]],
      ["'ID = 1' or 'ID = 8'", [1, 8]],
      [`'Familie_ = "${KRIPPEN}"'`, [2]],
      [`('PLZ = "01067"' or 'PLZ = "80331"') and Aktiv = true`, [1]],
    ] as const)('%s', async (filter, expected) => {
      expect(await ids(filter)).toEqual(expected);
    });
  });

  describe('rejected filters', () => {
    it.each([
      ['ID eq 1', 1162],
      ['ID gt 1', 1162],
      ['ID = 1 and', 1162],
      ['(ID = 1', 1162],
      ['ID 1', 1162],
      ['ID = "1', 1162],
      ['Nope = 1', 1500],
      ['Gruppe.Nope = 1', 1500],
      ['__KEY = "1"', 1500],
      ['__STAMP = 1', 1500],
      ['Umsatz = "abc"', 1280],
      ['Aktiv > true', 1162],
      ['Foto = true', 1162],
      ['Daten = 1', 1162],
      ['Name = null or Umsatz > null', 1162],
    ] as const)('%s → %i', async (filter, code) => {
      expect(await rejected(filter)).toContain(code);
    });

    it('an empty $filter is an error, not "no filter"', async () => {
      expect((await c.get('/rest/Kunde?$filter=')).status).toBe(500);
    });

    it('the unknown-attribute message names the attribute and the dataclass', async () => {
      const r = await c.get(`/rest/Kunde?$filter=${quoted('Gruppe.Nope = 1')}`);
      expect(r.json.__ERROR[0].message).toBe('The "Nope" attribute cannot be found in the "Gruppe" dataclass');
    });
  });

  describe('$orderby', () => {
    const order = async (o: string, extra = '') =>
      (await c.ok(`/rest/Kunde?$orderby=${quoted(o)}${extra}&$attributes=ID`)).__ENTITIES.map((e: { ID: number }) => e.ID);

    it.each([
      ['Umsatz desc', [5, 1, 8, 4, 7, 6, 2, 3]],
      ['Umsatz', [3, 2, 6, 7, 4, 8, 1, 5]],
      ['Aktiv desc, ID asc', [1, 3, 4, 6, 7, 2, 5, 8]],
      ['Seit', [5, 2, 3, 6, 7, 8, 4, 1]],
      ['Name ASC', [5, 6, 3, 7, 8, 1, 2, 4]],
      ['Gruppe.Name desc, ID', [2, 1, 3, 7, 4, 5, 6, 8]],
    ] as const)('%s', async (o, expected) => {
      expect(await order(o)).toEqual(expected);
    });

    it('combines with $filter and paging', async () => {
      expect(await order('Umsatz desc', `&$filter=${quoted('Aktiv = true')}&$skip=1&$top=2`)).toEqual([4, 7]);
    });

    it('unknown or unsortable attributes → 404/1810', async () => {
      for (const o of ['Nope', 'Daten', 'Umsatz sideways']) {
        const r = await c.get(`/rest/Kunde?$orderby=${quoted(o)}`);
        expect(r.status, o).toBe(404);
        expect(errCodes(r)).toEqual([1810]);
      }
    });
  });

  describe('$attributes and attribute paths', () => {
    it('only the listed attributes (plus __KEY, __TIMESTAMP, __STAMP)', async () => {
      const e = (await c.ok('/rest/Kunde?$top=1&$attributes=Name,PLZ')).__ENTITIES[0];
      expect(Object.keys(e)).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', 'Name', 'PLZ']);
      const viaPath = (await c.ok('/rest/Kunde/Name,PLZ?$top=1')).__ENTITIES[0];
      expect(viaPath).toEqual(e);
    });

    it('relation.attr and relation.* render the related entity inline; unset relations stay null', async () => {
      const page = await c.ok('/rest/Kunde?$top=4&$attributes=ID,Gruppe.Name');
      expect(page.__ENTITIES[0].Gruppe).toMatchObject({ __KEY: ENGEL, __STAMP: 1, Name: 'Engel' });
      expect(Object.keys(page.__ENTITIES[0].Gruppe)).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', 'Name']);
      expect(page.__ENTITIES[3].Gruppe).toBeNull();
      const all = await c.ok('/rest/Kunde(2)?$attributes=Gruppe.*');
      expect(all.Gruppe.Mitglieder).toEqual({ __deferred: { uri: `/rest/Gruppe[${KRIPPEN}]/Mitglieder?$expand=Mitglieder` } });
    });

    it('unknown attributes → 404 with 1500 + 1804', async () => {
      const r = await c.get('/rest/Kunde?$attributes=Name,Nope');
      expect(r.status).toBe(404);
      expect(errCodes(r)).toEqual([1500, 1804]);
    });
  });
});
