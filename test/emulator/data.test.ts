/** Catalog shapes, value encodings, single entities and navigation, entity sets, demo data. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, enc, errCodes, quoted, startTestEmulator } from './helpers.js';

const FIXTURE = new URL('./fixtures/erp.json', import.meta.url).pathname;
const ENGEL = '7464FEB39C516942B01E62F44B1ED454';

describe('fixture data', () => {
  let emu: RunningEmulator;
  let c: Client;
  beforeAll(async () => {
    emu = await startTestEmulator({ data: FIXTURE, seed: 7 });
  });
  afterAll(() => emu.stop());
  beforeEach(() => {
    emu.control.reset();
    c = new Client(emu);
  });

  describe('$catalog', () => {
    it('lists dataclasses with relative URIs', async () => {
      const cat = await c.ok('/rest/$catalog');
      expect(cat.__UNIQID).toMatch(/^[0-9A-F]{32}$/);
      expect(cat.dataClasses).toEqual([
        { name: 'Gruppe', uri: '/rest/$catalog/Gruppe', dataURI: '/rest/Gruppe' },
        { name: 'Kunde', uri: '/rest/$catalog/Kunde', dataURI: '/rest/Kunde' },
      ]);
    });

    it('describes attributes: kind, type, fieldPos, scope; indexed and identifying only when true; simpleDate on dates', async () => {
      const dc = await c.ok('/rest/$catalog/Kunde');
      expect(Object.keys(dc)).toEqual(['name', 'className', 'collectionName', 'tableNumber', 'scope', 'dataURI', 'attributes', 'key']);
      expect(dc).toMatchObject({
        name: 'Kunde',
        className: 'Kunde',
        collectionName: 'KundeSelection',
        tableNumber: 2,
        scope: 'public',
        dataURI: '/rest/Kunde',
        key: [{ name: 'ID' }],
      });
      const byName = Object.fromEntries(dc.attributes.map((a: { name: string }) => [a.name, a]));
      expect(byName.ID).toEqual({ name: 'ID', kind: 'storage', fieldPos: 1, scope: 'public', indexed: true, type: 'long', identifying: true });
      expect(byName.Name).toEqual({ name: 'Name', kind: 'storage', fieldPos: 2, scope: 'public', type: 'string' });
      expect(byName.PLZ.indexed).toBe(true);
      expect(byName.Seit).toEqual({ name: 'Seit', kind: 'storage', fieldPos: 9, scope: 'public', type: 'date', simpleDate: true });
      expect(byName.Gruppe).toEqual({ name: 'Gruppe', kind: 'relatedEntity', scope: 'public', type: 'Gruppe', path: 'Gruppe' });
      expect(dc.attributes.map((a: { type: string }) => a.type)).toEqual([
        'long',
        'string',
        'string',
        'string',
        'number',
        'word',
        'long64',
        'bool',
        'date',
        'date',
        'duration',
        'object',
        'image',
        'blob',
        'uuid',
        'string',
        'string',
        'date',
        'duration',
        'Gruppe',
      ]);
      const g = await c.ok('/rest/$catalog/Gruppe');
      expect(g.attributes[2]).toEqual({
        name: 'Mitglieder',
        kind: 'relatedEntities',
        scope: 'public',
        type: 'KundeSelection',
        reversePath: true,
        path: 'Gruppe',
      });
    });

    it('$catalog/$all, several names, and 404/1800 for unknown dataclasses', async () => {
      const all = await c.ok('/rest/$catalog/$all');
      expect(all.dataClasses.map((d: { name: string }) => d.name)).toEqual(['Gruppe', 'Kunde']);
      expect(all.dataClasses[1].attributes).toHaveLength(20);
      expect((await c.ok('/rest/$catalog/Kunde,Gruppe')).dataClasses).toHaveLength(2);
      for (const path of ['/rest/$catalog/Nope', '/rest/Nope', '/rest/Nope(1)', '/rest/$nope']) {
        const r = await c.get(path);
        expect(r.status, path).toBe(404);
        expect(errCodes(r)).toEqual([1800]);
      }
    });

    it('the fixture appName names the scalable cookie', async () => {
      const r = await c.get('/rest/$info');
      expect(r.setCookies[1]).toMatch(/^4DSID_TEST-APP=[0-9A-F]{32}; Path=\/; HttpOnly; SameSite=Strict$/);
    });
  });

  describe('value encodings', () => {
    it('every type renders as 4D does', async () => {
      const one = await c.ok('/rest/Kunde(1)');
      expect(one).toEqual({
        __entityModel: 'Kunde',
        __KEY: '1',
        __TIMESTAMP: one.__TIMESTAMP,
        __STAMP: 1,
        ID: 1,
        Name: 'Müller & Söhne',
        Straße: 'Hauptstraße 1',
        PLZ: '01067',
        Umsatz: 1500.5,
        Anzahl: 3,
        Gross: 5000000000,
        Aktiv: true,
        Seit: '5!3!2024',
        Ende: '0!0!0',
        Zeit: 74141000,
        Daten: {
          Coll: [
            { Art: 'Laden', Preis: 39.5, VE: 1 },
            { Art: 'Handel', Preis: 17.8, VE: 1 },
          ],
        },
        Foto: { __deferred: { uri: '/rest/Kunde[1]/Foto?$imageformat=best&$version=1&$expand=Foto', image: true } },
        Doc: null,
        Ref: '00000000000000000000000000000000',
        Familie_: ENGEL,
        modified_name: null,
        modified_date: null,
        modified_time: null,
        Gruppe: { __deferred: { uri: `/rest/Gruppe[${ENGEL}]`, __KEY: ENGEL } },
      });
      const two = await c.ok('/rest/Kunde(2)');
      expect(two).toMatchObject({ Name: 'O\'Reilly "Books"', Ende: null, Foto: null, Umsatz: 0, Zeit: 0, Daten: { Coll: [] } });
      expect(two.Doc).toEqual({ __deferred: { uri: '/rest/Kunde[2]/Doc?$binary=true&$expand=Doc' } });
      expect((await c.ok('/rest/Kunde(4)')).Name).toBe('Zeile1\nZeile2');
    });

    it('fixture __TIMESTAMPs are fixed by the seed; __STAMP starts at 1', async () => {
      const a = (await c.ok('/rest/Kunde?$top=3')).__ENTITIES.map((e: { __TIMESTAMP: string; __STAMP: number }) => [e.__TIMESTAMP, e.__STAMP]);
      const other = await startTestEmulator({ data: FIXTURE, seed: 7 });
      try {
        const b = (await new Client(other).ok('/rest/Kunde?$top=3')).__ENTITIES.map((e: { __TIMESTAMP: string; __STAMP: number }) => [
          e.__TIMESTAMP,
          e.__STAMP,
        ]);
        expect(b).toEqual(a);
        expect(a.every(([, stamp]: [string, number]) => stamp === 1)).toBe(true);
      } finally {
        await other.stop();
      }
    });
  });

  describe('single entities and navigation', () => {
    it('(key), [key], quoted keys; __entityModel first; missing → 404/1543', async () => {
      for (const path of ['/rest/Kunde(3)', '/rest/Kunde[3]', '/rest/Kunde("3")', "/rest/Kunde['3']", '/rest/Kunde(003)']) {
        const e = await c.ok(path);
        expect(Object.keys(e)[0]).toBe('__entityModel');
        expect(e.__KEY).toBe('3');
      }
      expect((await c.ok(`/rest/Gruppe[${ENGEL}]`)).Name).toBe('Engel');
      const missing = await c.get('/rest/Kunde(99)');
      expect(missing.status).toBe(404);
      expect(errCodes(missing)).toEqual([1543]);
    });

    it('deferred URIs can be followed: relatedEntity, relatedEntities, attributes, pictures and blobs', async () => {
      expect((await c.ok('/rest/Kunde(1)/Gruppe')).__KEY).toBe(ENGEL);
      const members = await c.ok(`/rest/Gruppe[${ENGEL}]/Mitglieder?$expand=Mitglieder`);
      expect(members.__DATACLASS).toBe('Kunde');
      expect(members.__ENTITIES.map((e: { ID: number }) => e.ID)).toEqual([1, 3, 7]);
      expect(await c.ok('/rest/Kunde(1)/Name')).toEqual({
        __entityModel: 'Kunde',
        __KEY: '1',
        __TIMESTAMP: expect.any(String),
        __STAMP: 1,
        Name: 'Müller & Söhne',
      });
      const pic = await c.get('/rest/Kunde[1]/Foto?$imageformat=best&$version=1&$expand=Foto');
      expect([pic.status, pic.headers['content-type']]).toEqual([200, 'image/png']);
      const blob = await c.get('/rest/Kunde[2]/Doc?$binary=true&$expand=Doc');
      expect([blob.status, blob.headers['content-type']]).toEqual([200, 'application/octet-stream']);
      expect((await c.get('/rest/Kunde(1)/Nope')).status).toBe(404);
    });
  });

  describe('entity sets', () => {
    it('belong to the session that made them: another session gets 404/1802', async () => {
      const set = (await c.ok('/rest/Kunde?$method=entityset&$top=1')).__ENTITYSET;
      const other = new Client(emu);
      const r = await other.get(set);
      expect(r.status).toBe(404);
      expect(errCodes(r)).toEqual([1802]);
      expect((await c.get(set)).status).toBe(200);
    });

    it('rows deleted later render as {__KEY, __STAMP:0} and __COUNT stays; changed rows show current values', async () => {
      const made = await c.ok('/rest/Kunde?$orderby=ID&$method=entityset&$top=0');
      emu.control.setRow('Kunde', '2', { Name: 'Neu' });
      await c.post('/rest/Kunde(3)?$method=delete', '');
      emu.control.mutate({ table: 'Kunde', insert: 2 });
      const page = await c.ok(`${made.__ENTITYSET}?$top=4`);
      expect(page.__COUNT).toBe(8);
      expect(page.__ENTITIES[1]).toMatchObject({ __KEY: '2', __STAMP: 2, Name: 'Neu' });
      expect(page.__ENTITIES[2]).toEqual({ __KEY: '3', __STAMP: 0 });
      expect((await c.ok('/rest/Kunde?$top=0')).__COUNT).toBe(9);
    });

    it('$filter/$orderby apply within a set; $method=entityset on a set stores a new one; wrong dataclass → 1803', async () => {
      const made = await c.ok(`/rest/Kunde?$filter=${quoted('Aktiv = true')}&$method=entityset&$top=0`);
      const sub = await c.ok(`${made.__ENTITYSET}?$filter=${quoted('Umsatz > 50')}&$orderby=${quoted('Umsatz desc')}&$method=entityset`);
      expect(sub.__ENTITYSET).not.toBe(made.__ENTITYSET);
      expect(sub.__ENTITIES.map((e: { ID: number }) => e.ID)).toEqual([1, 4]);
      const id = made.__ENTITYSET.split('/').pop();
      const wrong = await c.get(`/rest/Gruppe/$entityset/${id}`);
      expect(errCodes(wrong)).toEqual([1803]);
    });

    it('$savedorderby recreates a lost set sorted; an unknown $method is 400/1812', async () => {
      const r = await c.ok(
        `/rest/Kunde/$entityset/0123456789ABCDEF0123456789ABCDEF?$savedfilter=${quoted('Umsatz >= 100')}&$savedorderby=${quoted('Umsatz desc')}`,
      );
      expect(r.__ENTITYSET).toBe('/rest/Kunde/$entityset/0123456789ABCDEF0123456789ABCDEF');
      expect(r.__ENTITIES.map((e: { ID: number }) => e.ID)).toEqual([5, 1, 8]);
      const bad = await c.get('/rest/Kunde?$method=explode');
      expect([bad.status, ...errCodes(bad)]).toEqual([400, 1812]);
    });
  });
});

describe('demo data', () => {
  let emu: RunningEmulator;
  let c: Client;
  beforeAll(async () => {
    emu = await startTestEmulator({ rows: { Artikel: 3000, Belege: 50, Belege_Pos: 200 } });
    c = new Client(emu);
  });
  afterAll(() => emu.stop());

  it('has the six tables with the default (or overridden) row counts', async () => {
    expect(emu.control.tables()).toEqual([
      { name: 'Artikel_Familie', count: 200 },
      { name: 'Artikel', count: 3000 },
      { name: 'Artikel_Variante', count: 2000 },
      { name: 'Kunden', count: 500 },
      { name: 'Belege', count: 50 },
      { name: 'Belege_Pos', count: 200 },
    ]);
  });

  it('is deterministic for a seed and differs for another seed', async () => {
    const first = (await c.get('/rest/Artikel?$top=50')).text;
    const same = await startTestEmulator({ rows: { Artikel: 3000 } });
    const other = await startTestEmulator({ rows: { Artikel: 3000 }, seed: 2 });
    try {
      expect((await new Client(same).get('/rest/Artikel?$top=50')).text).toBe(first);
      expect((await new Client(other).get('/rest/Artikel?$top=50')).text).not.toBe(first);
    } finally {
      await same.stop();
      await other.stop();
    }
  });

  it('contains the hard cases: quotes, commas, semicolons, newlines, leading = + - @, umlauts, long text, leading zeros', async () => {
    const arts = (await c.ok('/rest/Artikel?$top=1000&$attributes=Bezeichnung,Beschreibung,alteNummer,Nummer')).__ENTITIES as Array<Record<string, any>>;
    const bez = arts.map((a) => a.Bezeichnung as string);
    for (const re of [/,/, /"/, /;/, /\n/, /^=/, /^\+/, /^-/, /^@/, /[äöüÄÖÜß]/, /'/])
      expect(
        bez.some((b) => re.test(b)),
        String(re),
      ).toBe(true);
    expect(arts.some((a) => typeof a.Beschreibung === 'string' && a.Beschreibung.length > 10_000)).toBe(true);
    expect(arts.some((a) => a.Beschreibung === null)).toBe(true);
    expect(arts.some((a) => a.Beschreibung === '')).toBe(true);
    expect(arts.every((a) => /^\d{5}A?-[A-Z]{2}$/.test(a.alteNummer) && Number.isInteger(a.Nummer))).toBe(true);
    expect(new Set(arts.map((a) => a.Nummer)).size).toBe(1000);
    const kunden = (await c.ok('/rest/Kunden?$top=500&$attributes=PLZ,Straße')).__ENTITIES as Array<Record<string, string>>;
    expect(kunden.some((k) => k.PLZ.startsWith('0'))).toBe(true);
    expect(kunden.some((k) => /ß/.test(k.Straße))).toBe(true);
  });

  it('relations resolve: Belege → Kunden, Belege_Pos → Belege, Artikel_Variante → Artikel_Familie', async () => {
    const pos = (await c.ok('/rest/Belege_Pos?$top=5&$attributes=AbsNr,PosNr,Beleg')).__ENTITIES;
    for (const p of pos) {
      expect(p.Beleg.__deferred.__KEY).toBe(String(p.AbsNr));
      expect((await c.ok(p.Beleg.__deferred.uri)).AbsNr).toBe(p.AbsNr);
    }
    expect(pos.map((p: { PosNr: number }) => p.PosNr)).toEqual([1, 2, 3, 4, 1]);
    const beleg = await c.ok('/rest/Belege(200001)');
    const kunde = await c.ok(beleg.Kunde.__deferred.uri);
    expect(kunde.KundenNr).toBe(beleg.KundenNr);
    const positions = await c.ok('/rest/Belege(200001)/Positionen?$expand=Positionen');
    const sum = positions.__ENTITIES.reduce((s: number, p: { Pos_Betrag: number }) => s + p.Pos_Betrag, 0);
    expect(beleg.Netto).toBeCloseTo(sum, 2);
    const v = (await c.ok('/rest/Artikel_Variante?$top=1')).__ENTITIES[0];
    expect(v.ArtikelFamilie.__deferred.__KEY).toBe(v.Familie_);
    expect((await c.ok(`/rest/Artikel_Variante?$filter=${enc(`'Familie_ = "${v.Familie_}"'`)}&$top=0`)).__COUNT).toBeGreaterThan(0);
  });

  it('audit fields agree with __TIMESTAMP (server time = UTC)', async () => {
    const arts = (await c.ok('/rest/Artikel?$top=200')).__ENTITIES as Array<Record<string, any>>;
    for (const a of arts) {
      const [d, m, y] = (a.modified_date ?? a.created_date).split('!').map(Number);
      const t = a.modified_date === null ? a.created_time : a.modified_time;
      expect(Date.parse(a.__TIMESTAMP) - Date.UTC(y, m - 1, d) - t).toBeGreaterThanOrEqual(0);
      expect(Date.parse(a.__TIMESTAMP) - Date.UTC(y, m - 1, d) - t).toBeLessThan(1000);
      expect(a.modified_time === null).toBe(a.modified_date === null);
    }
  });
});
