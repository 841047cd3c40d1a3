/** POST $method=update: saves, no-ops, conflicts, errors, creates, value input forms, $atomic, stats. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, errCodes, startTestEmulator } from './helpers.js';

const FIXTURE = new URL('./fixtures/erp.json', import.meta.url).pathname;
const KRIPPEN = '5E6A0C0FFEE000000000000000000A01';

let emu: RunningEmulator;
let c: Client;

beforeAll(async () => {
  emu = await startTestEmulator({ data: FIXTURE });
});
afterAll(() => emu.stop());
beforeEach(() => {
  emu.control.reset();
  c = new Client(emu);
});

const update = (body: unknown, query = '') => c.post(`/rest/Kunde?$method=update${query}`, body);
const today = () => {
  const d = new Date();
  return `${d.getUTCDate()}!${d.getUTCMonth() + 1}!${d.getUTCFullYear()}`;
};

describe('saving', () => {
  it('one object: the saved entity with uri; stamp + 1, __TIMESTAMP and modified_* refreshed; counted', async () => {
    const before = Date.now();
    const r = await update({ __KEY: '1', __STAMP: 1, Name: 'Müller & Töchter', Umsatz: 1600 });
    expect(r.status).toBe(200);
    expect(Object.keys(r.json).slice(0, 4)).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', 'uri']);
    expect(r.json).toMatchObject({ __KEY: '1', __STAMP: 2, uri: '/rest/Kunde[1]', Name: 'Müller & Töchter', Umsatz: 1600, PLZ: '01067' });
    expect(Date.parse(r.json.__TIMESTAMP)).toBeGreaterThanOrEqual(before - 1);
    expect(r.json.modified_date).toBe(today());
    expect(r.json.modified_time % 1000).toBe(0);
    expect(r.json.modified_name).toBe('REST');
    expect(await c.ok('/rest/Kunde(1)')).toMatchObject({ __STAMP: 2, Name: 'Müller & Töchter' });
    expect(emu.stats().updates).toBe(1);
  });

  it('a save that changes nothing keeps the stamp and is not counted', async () => {
    const r = await update({ __KEY: '1', __STAMP: 1, Name: 'Müller & Söhne', PLZ: '01067' });
    expect([r.status, r.json.__STAMP, r.json.modified_date]).toEqual([200, 1, null]);
    expect(emu.stats().updates).toBe(0);
  });

  it('an array answers {"__ENTITIES":[...]}; /rest/T/?$method=update and POST without $method also update', async () => {
    const r = await update([
      { __KEY: '1', __STAMP: 1, Anzahl: 4 },
      { __KEY: '2', __STAMP: 1, Anzahl: 5 },
    ]);
    expect(r.status).toBe(200);
    expect(r.json.__ENTITIES.map((e: { Anzahl: number }) => e.Anzahl)).toEqual([4, 5]);
    expect((await c.post('/rest/Kunde/?$method=update', { __KEY: '3', __STAMP: 1, Anzahl: 6 })).json.__STAMP).toBe(2);
    expect((await c.post('/rest/Kunde', { __KEY: '4', __STAMP: 1, Anzahl: 7 })).json.__STAMP).toBe(2);
    expect(emu.stats().updates).toBe(4);
  });

  it('the user of an authenticated session becomes modified_name', async () => {
    emu.control.setOptions({ auth: { user: 'Tropp', password: 'x' } });
    const r = await c.post('/rest/Kunde?$method=update', { __KEY: '1', __STAMP: 1, Anzahl: 9 }, { headers: { 'username-4D': 'Tropp', 'password-4D': 'x' } });
    expect(r.json.modified_name).toBe('Tropp');
  });
});

describe('value input forms', () => {
  it('dates: D!M!YYYY (padded or not), YYYY-MM-DD, ISO date-times (UTC day), "" and 0!0!0 (empty), null', async () => {
    const cases: Array<[unknown, string | null]> = [
      ['05!03!2024', '5!3!2024'],
      ['2024-12-24', '24!12!2024'],
      ['2010-10-05T23:00:00Z', '5!10!2010'],
      ['2010-10-05T23:00:00+02:00', '5!10!2010'],
      ['', '0!0!0'],
      ['0!0!0', '0!0!0'],
      [null, null],
    ];
    let stamp = 1;
    for (const [input, stored] of cases) {
      const r = await update({ __KEY: '3', __STAMP: stamp, Ende: input });
      expect(r.status, String(input)).toBe(200);
      expect(r.json.Ende, String(input)).toBe(stored);
      stamp = r.json.__STAMP;
    }
  });

  it('numbers from numeric strings, booleans from "true", durations from HH:MM:SS, objects, uuids, relations by key', async () => {
    const r = await update({
      __KEY: '2',
      __STAMP: 1,
      Umsatz: '12.5',
      Anzahl: 7.9,
      Aktiv: 'true',
      Zeit: '01:30:00',
      Daten: { Coll: [{ Art: 'Laden', Preis: 1 }] },
      Ref: '6f9619ff-8b86-d011-b42d-00cf4fc964ff',
      Gruppe: { __KEY: '7464FEB39C516942B01E62F44B1ED454' },
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      Umsatz: 12.5,
      Anzahl: 7,
      Aktiv: true,
      Zeit: 5_400_000,
      Daten: { Coll: [{ Art: 'Laden', Preis: 1 }] },
      Ref: '6F9619FF8B86D011B42D00CF4FC964FF',
    });
    expect(r.json.Gruppe.__deferred.__KEY).toBe('7464FEB39C516942B01E62F44B1ED454');
    const back = await update({ __KEY: '2', __STAMP: r.json.__STAMP, Gruppe: KRIPPEN });
    expect(back.json.Gruppe.__deferred.__KEY).toBe(KRIPPEN);
  });
});

describe('failures', () => {
  it('unknown attribute → 1500, nothing saved (the whole item)', async () => {
    const r = await update({ __KEY: '1', __STAMP: 1, Name: 'x', Nope: 1 });
    expect(r.status).toBe(500);
    expect(errCodes(r)).toEqual([1500, 1517]);
    expect(r.json.__STATUS).toMatchObject({ success: false });
    expect(r.json.Name).toBe('Müller & Söhne');
    expect((await c.ok('/rest/Kunde(1)')).__STAMP).toBe(1);
  });

  it('an unusable value → 1280, nothing saved', async () => {
    for (const body of [{ Umsatz: 'viel' }, { Seit: '31.12.2024' }, { Aktiv: 'ja' }, { Ref: 'xyz' }]) {
      const r = await update({ __KEY: '1', __STAMP: 1, ...body });
      expect(r.status, JSON.stringify(body)).toBe(500);
      expect(errCodes(r)[0]).toBe(1280);
    }
    expect(emu.stats().updates).toBe(0);
  });

  it('a missing __STAMP is checked as stamp 1', async () => {
    expect((await update({ __KEY: '1', Anzahl: 2 })).status).toBe(200);
    const r = await update({ __KEY: '1', Anzahl: 3 });
    expect(r.status).toBe(500);
    expect(errCodes(r)).toEqual([1263, 1046, 1517]);
  });

  it('a key that does not exist → 1542 + __STATUS 5; a changed primary key → 1517', async () => {
    const gone = await update({ __KEY: '404', __STAMP: 1, Name: 'x' });
    expect(gone.json).toEqual({
      __KEY: '404',
      __STATUS: { status: 5, statusText: 'Entity does not exist anymore', success: false },
      __ERROR: [{ message: 'Cannot find entity with "404" key in the "Kunde" dataclass', componentSignature: 'dbmg', errCode: 1542 }],
    });
    const pk = await update({ __KEY: '1', __STAMP: 1, ID: 77 });
    expect(pk.status).toBe(500);
    expect(errCodes(pk)).toContain(1517);
  });

  it('invalid JSON → 400; GET with $method=update → 400/1813', async () => {
    const r = await c.post('/rest/Kunde?$method=update', '{"__KEY": ');
    expect(r.status).toBe(400);
    expect(r.json.__ERROR).toBeDefined();
    const g = await c.get('/rest/Kunde?$method=update');
    expect([g.status, ...errCodes(g)]).toEqual([400, 1813]);
  });

  it("conflict with another user (before-update hook): 1263 with the other user's values; conflicts counted", async () => {
    emu.control.beforeUpdate('Kunde', '1', { Name: 'Von Kollegin' });
    const r = await update({ __KEY: '1', __STAMP: 1, Name: 'Von mir' });
    expect(r.status).toBe(500);
    expect(r.json.__STATUS.status).toBe(2);
    expect(r.json).toMatchObject({ __STAMP: 2, Name: 'Von Kollegin' });
    expect(r.json.modified_name).not.toBe('REST');
    const retry = await update({ __KEY: '1', __STAMP: 2, Name: 'Von mir' });
    expect(retry.status).toBe(200);
    const s = emu.stats();
    expect([s.conflicts, s.updates]).toEqual([1, 1]);
  });
});

describe('creating', () => {
  it('no __KEY creates: key max+1 (or given), stamp 1, created_* now; a duplicate key → 1545', async () => {
    const fx = await startTestEmulator(); // demo data has created_* fields
    try {
      const d = new Client(fx);
      const r = await d.post('/rest/Kunden?$method=update', { Firma: 'Neu & Co. KG', PLZ: '01099', Liefersperre: false });
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({
        __KEY: '10501',
        __STAMP: 1,
        uri: '/rest/Kunden[10501]',
        KundenNr: 10501,
        Firma: 'Neu & Co. KG',
        PLZ: '01099',
        created_date: today(),
        modified_date: null,
      });
      expect((await d.ok('/rest/Kunden?$top=0')).__COUNT).toBe(501);
      const uid = await d.post('/rest/Artikel?$method=update', { Bezeichnung: 'Neu', Nummer: 1 });
      expect(uid.json.__KEY).toMatch(/^[0-9A-F]{32}$/);
      expect(uid.json.UID).toBe(uid.json.__KEY);
      const dup = await d.post('/rest/Kunden?$method=update', { KundenNr: 10001, Firma: 'x' });
      expect(dup.status).toBe(500);
      expect(errCodes(dup)).toEqual([1545, 1534]);
      expect(fx.stats().updates).toBe(2);
    } finally {
      await fx.stop();
    }
  });
});

describe('$atomic', () => {
  it('all good → all saved; one bad → nothing saved, the good items report the rollback', async () => {
    const ok = await update([{ __KEY: '1', __STAMP: 1, Anzahl: 10 }, { Name: 'Neu' }], '&$atomic=true');
    expect(ok.status).toBe(200);
    expect(emu.stats().updates).toBe(2);
    const bad = await update([{ __KEY: '2', __STAMP: 1, Anzahl: 11 }, { Name: 'Neu2' }, { __KEY: '3', __STAMP: 99 }], '&$atomic=true');
    expect(bad.status).toBe(500);
    const [first, second, third] = bad.json.__ENTITIES;
    expect(first).toMatchObject({ __KEY: '2', __STAMP: 1, __STATUS: { status: 4, success: false } });
    expect(errCodes({ json: first } as never)).toEqual([1517]);
    expect(second.__STATUS.success).toBe(false);
    expect(third.__STATUS.status).toBe(2);
    expect((await c.ok('/rest/Kunde?$top=0')).__COUNT).toBe(9);
    expect((await c.ok('/rest/Kunde(2)')).__STAMP).toBe(1);
    expect(emu.stats().updates).toBe(2);
  });
});

describe('$method=delete', () => {
  it('deletes one entity by key; a missing key is 404', async () => {
    expect((await c.post('/rest/Kunde(8)?$method=delete', '')).json).toEqual({ ok: true });
    expect((await c.get('/rest/Kunde(8)')).status).toBe(404);
    expect((await c.post('/rest/Kunde(8)?$method=delete', '')).status).toBe(404);
  });
});
